"""A suggestion being generated for one place in a document, which requests may share.

A job starts for a request, or ahead of one after a suggestion is accepted. Its text grows as
the worker releases it, so a request may be answered with the complete lines so far while the
rest is still generated into the document's memory, and a request that comes while it runs,
at a text the job's output agrees with (the user typing what it suggests), waits for it
instead of starting another.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future

from lsp_server.lsp.completion import CompletionOutcome, Progress, early_text
from lsp_server.lsp.recent_suggestions import typed_since
from lsp_server.lsp.snapshot import CursorSnapshot


class SuggestionJob:
    """One generation for `snapshot`, its cancel flag, its progress and its worker's future.

    `waiters` counts the requests waiting for it; `keep_running` says that its result is
    wanted even when none is (it answered one already, or it was started ahead of one).
    """

    def __init__(self, snapshot: CursorSnapshot, keep_running: bool = False) -> None:
        self.snapshot = snapshot
        self.cancel = threading.Event()
        self.progress = Progress()
        self.future: Future[CompletionOutcome] | None = None
        self.waiters = 0
        self.keep_running = keep_running

    @property
    def running(self) -> bool:
        return self.future is not None and not self.future.done() and not self.cancel.is_set()

    def typed_since(self, text_before: str, header: str) -> str | None:
        """What was typed since the job's text, when a request at `text_before` can use its
        output: the same prompt so far, and typed text that the output so far agrees with."""
        typed = typed_since(self.snapshot.text_before, self.snapshot.header, text_before, header)
        return typed if typed is not None and self.progress.text.startswith(typed) else None

    def early_answer(self, typed: str) -> str:
        """What may be shown now to a request that typed `typed` since the job's text: the
        complete lines generated so far, less what was typed; empty when nothing more is
        complete."""
        text = early_text(self.progress.text, self.snapshot.context)
        return text[len(typed) :] if text.startswith(typed) else ""

    def stop(self) -> None:
        self.cancel.set()
