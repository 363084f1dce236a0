"""Pieces of other files, and how much each has to do with the code at the cursor.

Similarity is the Jaccard index of the sets of identifiers, as Copilot's neighbouring-tab
ranking uses: code that names the same things as the code being written is the code worth
showing the model, whatever the language.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Lines in a window of another file, and how far consecutive windows are apart.
WINDOW_LINES = 40
WINDOW_STEP = 20
# The longest definition shown: its first line and the indented lines that follow.
DEFINITION_LINES = 30
# Words that every file of a language has: they say nothing about what two pieces share.
COMMON_WORDS = frozenset(
    [
        "and",
        "as",
        "assert",
        "async",
        "await",
        "break",
        "class",
        "continue",
        "def",
        "del",
        "elif",
        "else",
        "except",
        "False",
        "finally",
        "for",
        "from",
        "global",
        "if",
        "import",
        "in",
        "is",
        "lambda",
        "None",
        "nonlocal",
        "not",
        "or",
        "pass",
        "raise",
        "return",
        "self",
        "True",
        "try",
        "while",
        "with",
        "yield",
        "const",
        "let",
        "var",
        "function",
        "new",
        "this",
        "null",
        "undefined",
        "true",
        "false",
        "void",
        "int",
        "str",
        "bool",
        "float",
        "string",
        "public",
        "private",
        "static",
        "return",
    ]
)


@dataclass(frozen=True)
class Snippet:
    """Lines [first_line, first_line + line count) of the file at `path` (relative to its
    workspace folder); `definition` names what it defines, if it was chosen for that."""

    path: str
    first_line: int
    text: str
    definition: str = ""

    @property
    def line_count(self) -> int:
        return self.text.count("\n") + (0 if self.text.endswith("\n") else 1)

    @property
    def label(self) -> str:
        """`path:first-last`, one-based and inclusive, as the completion statistics show it."""
        return f"{self.path}:{self.first_line + 1}-{self.first_line + self.line_count}"

    def overlaps(self, other: Snippet) -> bool:
        return (
            self.path == other.path
            and self.first_line < other.first_line + other.line_count
            and other.first_line < self.first_line + self.line_count
        )


def identifiers(text: str) -> frozenset[str]:
    return frozenset(IDENTIFIER.findall(text)) - COMMON_WORDS


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 0.0


def windows(path: str, text: str) -> Iterator[Snippet]:
    """Overlapping windows of `WINDOW_LINES` lines covering the file."""
    lines = text.splitlines(keepends=True)
    last_start = max(0, len(lines) - WINDOW_LINES)
    starts = list(range(0, last_start + 1, WINDOW_STEP))
    if starts[-1] != last_start:
        starts.append(last_start)
    for start in starts:
        piece = "".join(lines[start : start + WINDOW_LINES])
        if piece.strip():
            yield Snippet(path, start, piece)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def definition_snippet(path: str, lines: list[str], index: int, name: str) -> Snippet:
    """The definition starting at line `index`: that line and the lines indented deeper
    (blank lines included), at most `DEFINITION_LINES`."""
    end = index + 1
    while end < len(lines) and end - index < DEFINITION_LINES:
        line = lines[end]
        closing = line.lstrip()[:1] in (")", "]", "}")
        if line.strip() and _indent(line) <= _indent(lines[index]) and not closing:
            break
        end += 1
    while end > index + 1 and not lines[end - 1].strip():
        end -= 1
    return Snippet(path, index, "".join(lines[index:end]), definition=name)
