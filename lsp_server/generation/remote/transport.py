"""HTTP requests on an event loop thread of their own, bridged to blocking worker threads.

The front doors consume generations on worker threads as blocking iterators. The requests run
on one event loop thread with an `httpx.AsyncClient`, and each streamed request hands its
events to its worker through a queue: a blocking read in a worker could not be interrupted
when a newer keystroke supersedes it (closing a socket from another thread does not wake a
thread blocked reading it), while cancelling the request's task closes its connection at once.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

import httpx

T = TypeVar("T")
Event = TypeVar("Event")

# How long cancelling a request waits for its connection to be closed.
CLOSE_WAIT_SECONDS = 5.0


class EventFeed(Generic[Event]):
    """One request running on the loop, as its worker thread reads it: the events it emits,
    and cancellation, which ends the request's task and so closes its connection."""

    def __init__(
        self, future: Future[None], events: queue.SimpleQueue[Event], ended: threading.Event
    ) -> None:
        self._future = future
        self._events = events
        self._ended = ended

    def get(self, timeout: float) -> Event | None:
        """The next event, or None when none came within `timeout` seconds."""
        try:
            return self._events.get(timeout=timeout)
        except queue.Empty:
            return None

    def cancel(self) -> None:
        """Ends the request, waiting (bounded) until its connection is closed."""
        self._future.cancel()
        self._ended.wait(CLOSE_WAIT_SECONDS)


class Transport:
    """An `httpx.AsyncClient` on an event loop thread, with at most `max_connections`."""

    def __init__(self, connect_timeout: float, read_timeout: float, max_connections: int) -> None:
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, name="remote-backend", daemon=True).start()
        timeout = httpx.Timeout(read_timeout, connect=connect_timeout)
        limits = httpx.Limits(max_connections=max_connections)
        self.client = self.run(self._make_client(timeout, limits))

    @staticmethod
    async def _make_client(timeout: httpx.Timeout, limits: httpx.Limits) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=timeout, limits=limits)

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Runs `coroutine` on the loop and waits for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Starts `coroutine` on the loop without waiting for it."""
        asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    def open(
        self, request: Callable[[Callable[[Event], None]], Coroutine[Any, Any, None]]
    ) -> EventFeed[Event]:
        """Starts `request(emit)` on the loop; what it emits reaches the returned feed."""
        events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        ended = threading.Event()

        async def run() -> None:
            try:
                await request(events.put)
            finally:
                ended.set()

        future = asyncio.run_coroutine_threadsafe(run(), self._loop)
        return EventFeed(future, events, ended)
