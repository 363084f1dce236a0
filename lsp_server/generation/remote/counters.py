"""What the client has sent to the remote server, for the status and health answers."""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class RemoteCounters:
    backend_requests: int = 0
    backend_retries: int = 0  # second attempts after a connection error
    backend_failures: int = 0
    backend_closed_early: int = 0  # streams closed before the server finished them


class CounterTally:
    """`RemoteCounters` added to from any thread; `snapshot` is always a consistent copy."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.snapshot = RemoteCounters()

    def add(self, **increments: int) -> None:
        with self._lock:
            counters = self.snapshot
            self.snapshot = dataclasses.replace(
                counters, **{name: getattr(counters, name) + n for name, n in increments.items()}
            )
