"""The completion rules as the engine's stop rule, so that generation ends as soon as the
suggestion is known to be over rather than at its token limit."""

from __future__ import annotations

from lsp_server.lsp.postprocess import CompletionContext, truncate


class CompletionRules:
    """The completion rules as the engine's stop rule: every piece is released, and the
    generation stops once the rules say the completion is over (a line limit, a closed
    block, the text after the cursor)."""

    def __init__(self, context: CompletionContext) -> None:
        self._context = context
        self._raw = ""

    def feed(self, text: str) -> tuple[str, bool]:
        self._raw += text
        return text, truncate(self._raw, self._context)[1]

    def flush(self) -> str:
        return ""
