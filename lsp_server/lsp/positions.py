"""LSP positions as string indices, as the specification defines lines and columns.

Positions arrive in the client's negotiated encoding (UTF-16 code units unless it offered
UTF-8 or UTF-32), so they are converted here, clamped rather than trusted: a stale or hostile
position must give a sensible cursor, never an exception.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

# The LSP line terminators. `str.splitlines` also splits on form feeds, U+2028 and others, which
# would shift line numbers against the client's in files that contain them.
LINE_BREAK = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class Cursor:
    """A cursor resolved against one document snapshot."""

    offset: int  # index into the document string
    line: int
    character: int  # in the client's position encoding, after clamping
    line_prefix: str  # the cursor line up to the cursor
    line_suffix: str  # the cursor line after the cursor, without its line break


def _units(char: str, encoding: str) -> int:
    """Code units of one character (a lone surrogate counts as the one unit it is in UTF-16)."""
    code = ord(char)
    if encoding == "utf-8":
        return 1 if code < 0x80 else 2 if code < 0x800 else 3 if code < 0x10000 else 4
    if encoding == "utf-16":
        return 2 if code >= 0x10000 else 1
    return 1


def column_to_index(line: str, character: int, encoding: str = "utf-16") -> int:
    """The string index for an LSP column: clamped to the line, and rounded down to the start
    of the character when it points inside one (the middle of a surrogate pair, say)."""
    character = max(0, character)
    if encoding == "utf-32" or line.isascii():
        return min(character, len(line))
    units = 0
    for index, char in enumerate(line):
        units += _units(char, encoding)
        if units > character:
            return index
    return len(line)


def index_to_column(line: str, index: int, encoding: str = "utf-16") -> int:
    """The LSP column of a string index within a line."""
    head = line[:index]
    if encoding == "utf-32" or head.isascii():
        return len(head)
    return sum(_units(char, encoding) for char in head)


def line_starts(text: str) -> Iterator[int]:
    """The index where each line of `text` starts, first to last."""
    yield 0
    for match in LINE_BREAK.finditer(text):
        yield match.end()


def line_end(text: str, start: int) -> int:
    """The index of the line break ending the line at `start`, or the end of `text`."""
    match = LINE_BREAK.search(text, start)
    return match.start() if match else len(text)


def resolve_cursor(text: str, line: int, character: int, encoding: str = "utf-16") -> Cursor:
    """Finds the cursor in `text`; a line past the end clamps to the end of the document."""
    line = max(0, line)
    number = start = 0
    for number, start in enumerate(line_starts(text)):  # noqa: B007 (the last values are used)
        if number == line:
            break
    end = line_end(text, start)
    line_text = text[start:end]
    index = column_to_index(line_text, character, encoding) if number == line else len(line_text)
    return Cursor(
        offset=start + index,
        line=number,
        character=index_to_column(line_text, index, encoding),
        line_prefix=line_text[:index],
        line_suffix=line_text[index:],
    )
