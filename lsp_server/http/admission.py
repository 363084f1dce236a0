"""Admission control: how many generations run at once and how many may wait their turn.

Active generations are bounded by the engine's KV cache slots, and the requests beyond them
wait in a bounded FIFO queue: past that, clients get 429 at once instead of piling up.
"""

from __future__ import annotations

import asyncio
import collections


class QueueFull(Exception):
    pass


class AdmissionGate:
    """At most `capacity` generations run; up to `max_queue` more wait their turn, FIFO.

    Lives on the event loop; the generation threads hand their place back through
    `loop.call_soon_threadsafe(gate.release)`.
    """

    def __init__(self, capacity: int, max_queue: int) -> None:
        self.capacity = capacity
        self.max_queue = max_queue
        self.active = 0
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def queued(self) -> int:
        return len(self._waiting)

    def reserve(self) -> asyncio.Future[None]:
        """A future that resolves when it is this request's turn; QueueFull if none is left."""
        ticket: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.active < self.capacity and not self._waiting:
            self.active += 1
            ticket.set_result(None)
        elif len(self._waiting) >= self.max_queue:
            raise QueueFull
        else:
            self._waiting.append(ticket)
        return ticket

    def release(self) -> None:
        """Hands a finished generation's place to the first waiter still waiting."""
        while self._waiting:
            ticket = self._waiting.popleft()
            if not ticket.done():
                ticket.set_result(None)
                return
        self.active -= 1

    def abandon(self, ticket: asyncio.Future[None]) -> None:
        """For a request that leaves before its generation started."""
        if ticket.done() and not ticket.cancelled():
            self.release()
            return
        ticket.cancel()
        if ticket in self._waiting:
            self._waiting.remove(ticket)
