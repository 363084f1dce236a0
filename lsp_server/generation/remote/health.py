"""The remote server's state as its answers show it: each answer moves it (ready,
unreachable, key refused, model unknown, busy until a time, failed), listeners hear each
change, and the error for the request that found it is worded here."""

from __future__ import annotations

import contextlib
import logging
import threading
import time

from lsp_server.generation.backend import BackendListener, BackendState, BackendStatus
from lsp_server.generation.errors import Busy, GenerationError, Refused, Unavailable
from lsp_server.generation.remote.options import API_KEY_ENV

log = logging.getLogger("replit_lsp.remote")


class BackendHealth:
    """The state of the server at `url`; building it sends nothing."""

    def __init__(self, url: str) -> None:
        self._lock = threading.Lock()
        self._listeners: list[BackendListener] = []
        self._status = BackendStatus(BackendState.UNKNOWN, f"connecting to {url}")

    @property
    def status(self) -> BackendStatus:
        return self._status

    @property
    def problem(self) -> str | None:
        status = self._status
        return None if status.state is BackendState.READY else status.message

    def add_listener(self, listener: BackendListener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def admit(self) -> None:
        """Refuses at once while the server has asked for time (Retry-After)."""
        status = self._status
        if status.retry_at is not None and (wait := status.retry_at - time.monotonic()) > 0:
            raise Busy(status.message, wait)

    def available(self, url: str, model: str | None) -> None:
        message = f"the backend at {url} is available ({model or 'its model'})"
        self._set(BackendStatus(BackendState.READY, message))

    def unreachable(self, message: str) -> Unavailable:
        self._set(BackendStatus(BackendState.UNREACHABLE, message))
        return Unavailable(message)

    def model_missing(self, url: str, model: str, served: list[str]) -> None:
        message = (
            f"the backend at {url} does not serve the model {model!r}; it serves "
            f"{', '.join(served)}: check --backend-model"
        )
        self._set(BackendStatus(BackendState.MODEL_NOT_FOUND, message))

    def answered_error(
        self, url: str, model: str | None, code: int, detail: str, retry_after: float
    ) -> GenerationError:
        """The state an error answer (`code`, the server's `detail`) puts the server in,
        and the error for this request; `retry_after` is what the answer asks of a busy
        client."""
        retry_at = None
        if code in (401, 403):
            state = BackendState.UNAUTHORIZED
            message = (
                f"the backend at {url} refused the API key ({code}: {detail}); "
                f"set --backend-api-key or ${API_KEY_ENV}"
            )
        elif code == 404 and model is None:
            state = BackendState.MODEL_NOT_FOUND
            message = f"the backend at {url} has no /v1/completions ({detail}): check --backend-url"
        elif code == 404:
            state = BackendState.MODEL_NOT_FOUND
            message = (
                f"the backend at {url} does not serve the model {model!r} "
                f"({code}: {detail}); check --backend-model"
            )
        elif code in (429, 503):
            state, retry_at = BackendState.OVERLOADED, time.monotonic() + retry_after
            message = (
                f"the backend at {url} is busy ({code}: {detail}); retrying in {retry_after:g} s"
            )
        elif 400 <= code < 500:  # this request only: says nothing about the server
            return Refused(f"the backend refused the request: {detail}")
        else:
            state, message = BackendState.FAILED, f"the backend at {url} failed ({code}: {detail})"
        self._set(BackendStatus(state, message, retry_at))
        if state is BackendState.OVERLOADED:
            return Busy(message, retry_after)
        return Unavailable(message)

    def _set(self, status: BackendStatus) -> None:
        with self._lock:
            changed = status.state != self._status.state
            self._status = status
            listeners = list(self._listeners) if changed else []
        if changed:
            level = logging.INFO if status.state is BackendState.READY else logging.WARNING
            log.log(level, "%s", status.message)
        for listener in listeners:
            with contextlib.suppress(Exception):  # a broken listener must not stop requests
                listener(status)
