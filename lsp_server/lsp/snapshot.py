"""The request snapshot: everything one completion needs, copied on the event loop while the
document cannot change, so that the worker thread never reads a document being edited.
"""

from __future__ import annotations

from dataclasses import dataclass

from lsprotocol import types

from lsp_server.lsp.documents import Document
from lsp_server.lsp.positions import LINE_BREAK, Cursor, line_end, resolve_cursor
from lsp_server.lsp.postprocess import CompletionContext, detect_indentation
from lsp_server.lsp.prompt import path_header
from lsp_server.lsp.settings import Settings

# The indentation style is learned from this much text before the cursor.
INDENT_SAMPLE_CHARS = 100_000

# How much of the text after the cursor the post-processing looks at.
TEXT_AFTER_LIMIT = 4096


@dataclass(frozen=True)
class CursorSnapshot:
    """Everything the worker thread needs, taken on the event loop."""

    text_before: str
    header: str
    context: CompletionContext
    settings: Settings
    seed: int | None
    window_start: int | None = None  # the document's prompt window so far, kept if it fits
    next_window_start: int | None = None  # where it moves to when it no longer fits, if ready
    previous_suggestion: str = ""  # drafts for speculation may copy it as well as the prompt


def cursor_snapshot(
    text: str,
    cursor: Cursor,
    settings: Settings,
    seed: int | None = None,
    header: str = "",
    window_start: int | None = None,
    previous_suggestion: str = "",
) -> CursorSnapshot:
    """The snapshot of a document's `text` at `cursor`: the text before it and the context
    the completion rules need."""
    text_before = text[: cursor.offset]
    context = CompletionContext(
        line_prefix=cursor.line_prefix,
        line_suffix=cursor.line_suffix,
        text_after=text_after(text, cursor),
        max_lines=settings.max_lines,
        indentation=detect_indentation(text_before[-INDENT_SAMPLE_CHARS:]),
    )
    return CursorSnapshot(
        text_before, header, context, settings, seed, window_start, previous_suggestion
    )


def text_after(text: str, cursor: Cursor) -> str:
    """The lines below the cursor line, bounded: what the post-processing compares against."""
    end = line_end(text, cursor.offset)
    match = LINE_BREAK.match(text, end)
    start = match.end() if match else end
    return text[start : start + TEXT_AFTER_LIMIT]


def snapshot_at(
    document: Document,
    position: types.Position,
    encoding: str,
    settings: Settings,
    seed: int | None,
    display_path: str | None,
    window_start: int | None,
    previous_suggestion: str,
) -> tuple[CursorSnapshot | None, types.Position]:
    """The snapshot of `document` at an LSP `position` in the negotiated `encoding`, and the
    position clamped to the document (where the answer goes); None when there is nothing
    before the cursor to complete from. The prompt starts with a line naming `display_path`
    unless it is None; `window_start` and `previous_suggestion` are what the document kept
    from its previous request."""
    text = document.source
    cursor = resolve_cursor(text, position.line, position.character, encoding)
    clamped = types.Position(line=cursor.line, character=cursor.character)
    if not text[: cursor.offset]:
        return None, clamped
    header = ""
    if display_path is not None:
        header = path_header(display_path, document.language_id or "")
    snapshot = cursor_snapshot(
        text, cursor, settings, seed, header, window_start, previous_suggestion
    )
    return snapshot, clamped
