"""What a generator backed by a server lets its users see and steer: the server's state as
its answers show it, with listeners for each change, and where requests go.

A generator exposes it as `backend` (None for the local engine), so that a front door can
show the state in the editor and apply the editor's settings without knowing which
generator it has.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol


class BackendState(enum.Enum):
    UNKNOWN = "unknown"  # not asked yet
    READY = "ready"
    UNREACHABLE = "unreachable"
    UNAUTHORIZED = "unauthorized"
    MODEL_NOT_FOUND = "model_not_found"
    OVERLOADED = "overloaded"
    FAILED = "failed"

    @property
    def transient(self) -> bool:
        """Whether the state may pass by itself; the others need the user to change
        something (the key, the URL, the model)."""
        return self in (BackendState.UNREACHABLE, BackendState.OVERLOADED)


@dataclass(frozen=True)
class BackendStatus:
    state: BackendState
    message: str
    retry_at: float | None = None  # time.monotonic() before which nothing is sent


BackendListener = Callable[[BackendStatus], None]


class BackendControl(Protocol):
    @property
    def url(self) -> str:
        """The server's root URL, as requests use it."""
        ...

    @property
    def status(self) -> BackendStatus: ...

    def add_listener(self, listener: BackendListener) -> None:
        """`listener` hears each change of state, on whichever thread noticed it."""
        ...

    def reconfigure(self, url: str, model: str | None) -> None:
        """Points later completions at the server at `url` and its `model` (None: the
        first it serves)."""
        ...

    def use_fields(self, fields: Mapping[str, Any]) -> None:
        """Adds `fields` (an editor setting) to later requests, over the command line's."""
        ...
