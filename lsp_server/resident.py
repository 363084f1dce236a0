"""The one model instance of the process, loaded in the background and shared by front doors.

The language server must answer `initialize` at once and the HTTP server must bind its port
at once, while loading and compiling take seconds to minutes: so the engine is built on a
worker thread, and each request waits (up to its own limit) for it to be ready.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable

from lsp_server.feedback import Feedback
from model.engine import Engine, EngineOptions
from model.progress import FAILED, LoadProgress, ProgressCallback

log = logging.getLogger("replit_lsp")


class ResidentModel:
    def __init__(self, options: Callable[[], EngineOptions]) -> None:
        """`options` is called on the loader thread: finding or downloading the model is slow."""
        self._options = options
        self.engine: Engine | None = None
        self.error: BaseException | None = None
        # How many engines this process built: 1 proves every front door shares one model.
        self.loads = 0
        # What became of the suggestions, for every front door's status.
        self.feedback = Feedback()
        self._ready = threading.Event()
        self._listeners: list[ProgressCallback] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.progress = LoadProgress("idle", "not started")

    @property
    def state(self) -> str:
        if self.engine is not None:
            return "ready"
        if self.error is not None:
            return "error"
        return "loading" if self._thread is not None else "idle"

    @property
    def last_message(self) -> str:
        return self.progress.message

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
            engine = Engine(self._options(), progress=self._progress)
            self.loads += 1
            self.engine = engine
        except BaseException as error:  # reported to every waiter and listener
            self.error = error
            self._progress(LoadProgress(FAILED, f"model failed to load: {error}"))
        finally:
            self._ready.set()

    def wait(self, timeout: float | None = None) -> Engine | None:
        """The engine once ready; None if it is still loading after `timeout` or failed."""
        self.start()
        self._ready.wait(timeout)
        return self.engine
