"""The client's word that the cursor rests at a place (`replitLsp/cursorIdle`), and the
pre-warm it starts: the prompt a request there would use, computed while the user pauses."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from lsprotocol import types

from lsp_server.lsp.completion import PrewarmOutcome


@dataclass
class Prewarm:
    """The pre-warm running for a document: the flag that stops it and its worker's future."""

    uri: str
    cancel: threading.Event = field(default_factory=threading.Event)
    future: Future[PrewarmOutcome] | None = None


def cursor_of(params: Any) -> tuple[str, types.Position] | None:
    """The document and position a `replitLsp/cursorIdle` names; None when its params are
    not `{"textDocument": {"uri": ...}, "position": {"line": ..., "character": ...}}` (a
    notification has no answer to refuse it with, so it is ignored)."""
    uri = getattr(getattr(params, "textDocument", None), "uri", None)
    position = getattr(params, "position", None)
    line = getattr(position, "line", None)
    character = getattr(position, "character", None)
    numbers = (line, character)
    if not isinstance(uri, str) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in numbers
    ):
        return None
    return uri, types.Position(line=line, character=character)
