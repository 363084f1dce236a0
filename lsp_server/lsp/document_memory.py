"""What a document keeps between keystrokes, so that the next request can reuse it: the prompt
window, the suggestion shown (which the user may be typing through), and the workspace
context at the front of its prompt.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass

from lsprotocol import types

from lsp_server.context.provider import ContextBlock
from lsp_server.lsp.completion import CompletionOutcome
from lsp_server.lsp.snapshot import CursorSnapshot


@dataclass(frozen=True)
class ShownSuggestion:
    """The last suggestion shown for a document, and the text before the cursor it was
    made for: while the user types exactly what it says, the rest is the answer."""

    text_before: str
    text: str

    def rest_after(self, text_before: str) -> str | None:
        """What is left of the suggestion once `text_before` is typed, or None when the user
        typed nothing, something else, or all of it."""
        if len(text_before) < len(self.text_before) or not text_before.startswith(self.text_before):
            return None
        typed = text_before[len(self.text_before) :]
        if not typed or len(typed) >= len(self.text) or not self.text.startswith(typed):
            return None
        return self.text[len(typed) :]


class DocumentMemory:
    """What a document keeps between keystrokes: where its prompt window starts, the
    suggestion last shown, which the user may be typing through, and the workspace context
    at the front of its prompt, with when it was last asked for (to tell typing from a
    pause)."""

    def __init__(self) -> None:
        self.window_start: int | None = None
        self.shown: ShownSuggestion | None = None
        self.command: types.Command | None = None  # what reports the shown one accepted
        self.context: ContextBlock | None = None
        self.context_sources: Hashable = None  # what the context was chosen from
        self.last_request = -math.inf  # time.monotonic() of the document's last request

    def context_due(self, now: float, idle_seconds: float, sources: Hashable) -> bool:
        """Whether the context is to be chosen again: never chosen yet, or after a pause
        when what it is chosen from has changed (other documents, the cursor's region, the
        settings). Choosing again for nothing would only cost the prompt's cached front."""
        if self.context is None:
            return True
        return now - self.last_request >= idle_seconds and sources != self.context_sources

    @property
    def shown_text(self) -> str:
        """The suggestion last shown, empty when there is none: drafts may copy from it."""
        return self.shown.text if self.shown is not None else ""

    def rest_of_suggestion(self, text_before: str) -> str | None:
        """The answer with no model run, when the user is typing the shown suggestion."""
        return self.shown.rest_after(text_before) if self.shown is not None else None

    def remember(self, snapshot: CursorSnapshot, outcome: CompletionOutcome) -> None:
        self.window_start = outcome.window_start
        if outcome.text:
            self.shown = ShownSuggestion(snapshot.text_before, outcome.text)
