"""The one model instance of the process, loaded in the background and shared by front doors.

The language server must answer `initialize` at once and the HTTP server must bind its port
at once, while loading and compiling take seconds to minutes: so the engine is built on a
worker thread, and each request awaits `ready` (up to its own limit) on its own event loop.
The generator is the local engine, or a remote server's client (`lsp_server/generation/remote/`)
when the options say so: the front doors see the same surface either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from lsp_server.feedback import Feedback
from lsp_server.generation.local import LocalGenerator
from lsp_server.generation.protocol import TextGenerator
from lsp_server.generation.remote.engine import RemoteEngine
from lsp_server.generation.remote.options import RemoteOptions
from model.engine.engine import Engine
from model.engine.options import EngineOptions
from model.progress import FAILED, LoadProgress, ProgressCallback

log = logging.getLogger("replit_lsp")

Options = EngineOptions | RemoteOptions


def build_generator(options: Options, progress: ProgressCallback) -> TextGenerator:
    if isinstance(options, RemoteOptions):
        return RemoteEngine(options, progress)
    return LocalGenerator(Engine(options, progress))


@dataclass(frozen=True)
class ModelStatus:
    """The resident model's state as every front door's status answer gives it, built in one
    place so that `replitLsp/status` and `/health` cannot disagree."""

    state: str
    message: str
    stage: str
    percent: int | None
    pid: int
    loads: int
    engine_id: int | None  # the same in every front door: they share one engine
    suggestions: dict[str, Any]
    counters: dict[str, Any]  # what the engine has computed; empty until it is loaded

    def fields(self) -> dict[str, Any]:
        """The status as JSON fields, the engine's counters among them."""
        fields = asdict(self)
        return fields | fields.pop("counters")


class ResidentModel:
    def __init__(
        self,
        options: Callable[[], Options],
        describe_error: Callable[[BaseException], str] = str,
        remote: Callable[[str, str | None], RemoteOptions] | None = None,
    ) -> None:
        """`options` is called on the loader thread: finding or downloading the model is slow.
        `describe_error` words a failure in the terms of the front door that made the options
        (the CLI names its flags). `remote` makes the options for a server URL and model
        named later, by an editor setting, with the rest taken from the command line."""
        self._options = options
        self._describe_error = describe_error
        self._remote = remote
        self.engine: TextGenerator | None = None
        # An editor's extra request fields for a remote server (backendFields).
        self._backend_fields: Mapping[str, Any] = {}
        self.error: BaseException | None = None
        # How many engines this process built: 1 proves every front door shares one model.
        self.loads = 0
        # What became of the suggestions, for every front door's status.
        self.feedback = Feedback()
        self._ready = threading.Event()
        self._listeners: list[ProgressCallback] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        # The futures of `ready` callers, each resolved on its own loop when loading ends.
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self.progress = LoadProgress("idle", "not started")

    @property
    def state(self) -> str:
        if self.engine is not None:
            return "error" if self.engine.problem else "ready"
        if self.error is not None:
            return "error"
        return "loading" if self._thread is not None else "idle"

    @property
    def error_message(self) -> str | None:
        """Why loading failed, in the front door's terms; None unless it failed."""
        return None if self.error is None else self._describe_error(self.error)

    @property
    def last_message(self) -> str:
        """What the model is doing, or why a loaded one cannot generate now."""
        problem = self.engine.problem if self.engine is not None else None
        return problem or self.progress.message

    def status(self) -> ModelStatus:
        engine = self.engine
        return ModelStatus(
            state=self.state,
            message=self.last_message,
            stage=self.progress.stage,
            percent=self.progress.percent,
            pid=os.getpid(),
            loads=self.loads,
            engine_id=None if engine is None else id(engine),
            suggestions=self.feedback.snapshot(),
            counters={} if engine is None else asdict(engine.counters),
        )

    def use_backend(self, url: str, model: str | None) -> str | None:
        """Sends completions to the server at `url`, as an editor setting asks: before loading
        by building its client instead of the local model, once loaded by repointing a
        remote client. A loaded local model stays until a restart. Returns what to tell the
        user, if anything."""
        with self._lock:
            if self._thread is None:
                if url and self._remote is not None:
                    remote = self._remote
                    self._options = lambda: remote(url, model)
                return None
        backend = self.engine.backend if self.engine is not None else None
        if backend is not None and url:
            backend.reconfigure(url, model)
            return f"completions now go to {backend.url}"
        return "the backend setting takes effect when the server restarts"

    def use_backend_fields(self, fields: Mapping[str, Any]) -> None:
        """Adds `fields` (an editor setting) to each request to a remote server, over the
        command line's: at once when one is loaded, else when it is."""
        self._backend_fields = fields
        backend = self.engine.backend if self.engine is not None else None
        if backend is not None:
            backend.use_fields(fields)

    def add_listener(self, listener: ProgressCallback) -> None:
        with self._lock:
            self._listeners.append(listener)

    def _progress(self, progress: LoadProgress) -> None:
        self.progress = progress
        log.info("%s", progress.message)
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            # A broken listener must not stop the model from loading.
            with contextlib.suppress(Exception):
                listener(progress)

    def start(self) -> None:
        """Starts loading once; later calls do nothing."""
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._load, name="model-loader", daemon=True)
        self._thread.start()

    def _load(self) -> None:
        try:
            engine = build_generator(self._options(), self._progress)
            self.loads += 1
            self.engine = engine
            if engine.backend is not None:
                engine.backend.use_fields(self._backend_fields)
        except BaseException as error:  # reported to every waiter and listener
            self.error = error
            self._progress(LoadProgress(FAILED, f"model failed to load: {self.error_message}"))
        finally:
            with self._lock:
                self._ready.set()
                waiters, self._waiters = self._waiters, []
            for loop, future in waiters:
                with contextlib.suppress(RuntimeError):  # that loop has closed
                    loop.call_soon_threadsafe(_resolve, future)

    async def ready(self, timeout: float | None = None) -> TextGenerator | None:
        """The engine once ready, starting the load if nobody has; None if it is still loading
        after `timeout` seconds or failed. Any event loop may await it, and no thread waits."""
        self.start()
        with self._lock:
            if self._ready.is_set():
                return self.engine
            future = asyncio.get_running_loop().create_future()
            self._waiters.append((asyncio.get_running_loop(), future))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(future), timeout)
        return self.engine


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
