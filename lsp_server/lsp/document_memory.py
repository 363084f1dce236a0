"""What a document keeps between keystrokes, so that the next request can reuse it: the prompt
window, its recent suggestions (which the user may be typing through or come back to), and the
workspace context at the front of its prompt.
"""

from __future__ import annotations

import math
from collections.abc import Hashable

from lsp_server.context.provider import ContextBlock
from lsp_server.lsp.completion import CompletionOutcome
from lsp_server.lsp.recent_suggestions import RecentSuggestions, Suggestion
from lsp_server.lsp.snapshot import CursorSnapshot


class DocumentMemory:
    """What a document keeps between keystrokes: where its prompt window starts, its recent
    suggestions, and the workspace context at the front of its prompt, with when it was last
    asked for (to tell typing from a pause)."""

    def __init__(self) -> None:
        self.window_start: int | None = None
        self.next_window_start: int | None = None  # prepared by a pre-warm
        self.suggestions = RecentSuggestions()
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

    def move_window(self, start: int | None) -> None:
        """Keeps the prompt window a request used; the prepared next one is spent once the
        window has moved."""
        if start != self.window_start:
            self.next_window_start = None
        self.window_start = start

    def remember(self, snapshot: CursorSnapshot, outcome: CompletionOutcome, keep: int) -> None:
        """Keeps the window a completion used and, when it suggested anything, the suggestion
        (with the newest `keep` others)."""
        self.move_window(outcome.window_start)
        if outcome.text:
            suggestion = Suggestion(snapshot.text_before, snapshot.header, outcome.text)
            self.suggestions.add(suggestion, keep)
