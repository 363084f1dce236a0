"""What a loading model is doing, for people waiting on a long first start.

A first start of the real model reads gigabytes of weights, compiles for minutes and then
binds the weights; each front door shows the same record (stderr, `$/progress`, `/health`),
so the stage names and percentages are defined once, here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

READING = "reading weights"
COMPILING = "compiling"
LOADING_COMPILED = "loading the compiled model"
BINDING = "binding weights"
READY = "ready"
FAILED = "failed"

# How often a stage without a known end says that it is still running.
HEARTBEAT_SECONDS = 10.0


@dataclass(frozen=True)
class LoadProgress:
    stage: str
    message: str
    percent: int | None = None  # of the current stage, where its end is known

    def __str__(self) -> str:
        return self.message


ProgressCallback = Callable[[LoadProgress], None]


def ignore_progress(progress: LoadProgress) -> None:
    """The default listener: loading without anybody watching."""


def reading_weights(done: int, total: int) -> LoadProgress:
    percent = 100 if total <= 0 else min(100, done * 100 // total)
    scale, unit = (1e9, "GB") if total >= 1e9 else (1e6, "MB")
    message = f"reading weights: {done / scale:.1f} of {total / scale:.1f} {unit} ({percent}%)"
    return LoadProgress(READING, message, percent)


@contextmanager
def heartbeat(report: ProgressCallback, stage: str, message: str) -> Iterator[None]:
    """Reports `stage` now and every HEARTBEAT_SECONDS with the time spent, until the block ends.

    Compiling the real model takes minutes with nothing else to show: the elapsed time says
    that it is still at work.
    """
    started = time.monotonic()
    report(LoadProgress(stage, message))
    done = threading.Event()

    def beat() -> None:
        while not done.wait(HEARTBEAT_SECONDS):
            report(LoadProgress(stage, f"{message}: {time.monotonic() - started:.0f} s"))

    thread = threading.Thread(target=beat, name=f"{stage}-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
