"""The open documents, kept exactly as the client has them.

pygls splits lines with `str.splitlines`, which also breaks at form feeds, vertical tabs,
U+001C-U+001E, U+0085, U+2028 and U+2029, and it places a character past the end of a line
somewhere inside the next one. Either makes the server's copy drift from the editor's with
ordinary edits, and completions then come from text the user does not have. Here a line ends
only at `\\n`, `\\r\\n` or `\\r`, and a position is resolved as the specification says:
a character past the end of its line means the line's end, counted in the negotiated
position encoding (UTF-16 code units unless the client chose otherwise).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from lsprotocol import types
from pygls.uris import to_fs_path

from lsp_server.lsp.positions import resolve_cursor


@dataclass
class Document:
    """One open document: the fields the completion code reads from it."""

    uri: str
    language_id: str
    version: int
    source: str

    @property
    def path(self) -> str:
        """The file system path of a `file:` URI, else the URI's path part."""
        return to_fs_path(self.uri) or urlparse(self.uri).path

    def digest(self) -> dict[str, Any]:
        """What a client can compare with its own copy to see that both hold the same text:
        the version, the length in characters and the SHA-256 of the UTF-8 text (a lone
        surrogate, which JSON can carry, hashed as its own code point's bytes)."""
        data = self.source.encode("utf-8", "surrogatepass")
        return {
            "version": self.version,
            "characters": len(self.source),
            "sha256": hashlib.sha256(data).hexdigest(),
        }


def offset_of(text: str, position: types.Position, encoding: str) -> int:
    """The string index of an LSP position; a line past the last one means the end."""
    return resolve_cursor(text, position.line, position.character, encoding).offset


def apply_change(text: str, change: types.TextDocumentContentChangeEvent, encoding: str) -> str:
    """`text` after one content change of `textDocument/didChange`."""
    if isinstance(change, types.TextDocumentContentChangeWholeDocument):
        return change.text
    start = offset_of(text, change.range.start, encoding)
    end = offset_of(text, change.range.end, encoding)
    # A range must not end before it starts; one that does is read as the same span.
    start, end = min(start, end), max(start, end)
    return text[:start] + change.text + text[end:]


class Documents:
    """The documents the client has opened and not closed, by URI."""

    def __init__(self) -> None:
        self._open: dict[str, Document] = {}

    def get(self, uri: str) -> Document | None:
        return self._open.get(uri)

    def open(self, item: types.TextDocumentItem) -> None:
        self._open[item.uri] = Document(item.uri, item.language_id, item.version, item.text)

    def change(self, params: types.DidChangeTextDocumentParams, encoding: str) -> None:
        """Applies the changes in order, each to the result of the previous one."""
        document = self._open.get(params.text_document.uri)
        if document is None:
            return  # a change to a document that is not open has nothing to apply to
        text = document.source
        for change in params.content_changes:
            text = apply_change(text, change, encoding)
        document.source = text
        document.version = params.text_document.version

    def close(self, uri: str) -> Document | None:
        """Forgets the document; returns it as it was last, if it was open."""
        return self._open.pop(uri, None)

    def all(self) -> list[Document]:
        return list(self._open.values())
