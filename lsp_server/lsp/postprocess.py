"""Where a completion ends, and what of it is worth showing.

The model only sees the text before the cursor and would happily write the rest of the file:
these rules cut its output to what an inline suggestion should be, using the text after the
cursor. `truncate` is applied to the text streamed so far after every token, so generation
stops as soon as the completion is known to be over; it is prefix-consistent (once it says
"over", more model output would not change its answer), which makes the streamed result equal
to post-processing the full output. `finalize` then trims what is kept.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

# Columns per tab when comparing indentation, and spaces per level assumed for model output
# in a tab-indented document.
TAB_WIDTH = 4

# How many lines of the document are read to learn its indentation style.
INDENT_SAMPLE_LINES = 2000

CLOSING_BRACKETS = ")]}"


@dataclass(frozen=True)
class Indentation:
    """A document's indentation style: tabs, or spaces `width` per level."""

    use_tabs: bool
    width: int = TAB_WIDTH


@dataclass(frozen=True)
class CompletionContext:
    """What the rules need to know about the cursor's surroundings."""

    line_prefix: str  # the cursor line before the cursor
    line_suffix: str = ""  # the cursor line after the cursor
    text_after: str = ""  # the lines below the cursor line
    max_lines: int = 8
    indentation: Indentation | None = None  # None: leave the model's indentation alone

    @property
    def single_line(self) -> bool:
        """Text after the cursor on its line means the user is mid-line: complete that line."""
        return bool(self.line_suffix.strip())


def _leading(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" \t"))]


def indent_width(line: str) -> int:
    return len(_leading(line).expandtabs(TAB_WIDTH))


def detect_indentation(text: str) -> Indentation | None:
    """The style most of the indented lines use, or None when no line is indented.

    The space width is the most common increase of indentation from one line to the next."""
    tabs = spaces = 0
    steps: Counter[int] = Counter()
    previous = 0
    for line in text.splitlines()[-INDENT_SAMPLE_LINES:]:
        if not line.strip():
            continue
        lead = _leading(line)
        if lead.startswith("\t"):
            tabs += 1
        elif lead:
            spaces += 1
            width = len(lead.expandtabs(TAB_WIDTH))
            if width > previous:
                steps[width - previous] += 1
        previous = indent_width(line)
    if tabs == spaces == 0:
        return None
    if tabs > spaces:
        return Indentation(use_tabs=True)
    return Indentation(use_tabs=False, width=steps.most_common(1)[0][0] if steps else TAB_WIDTH)


def reindent(line: str, style: Indentation) -> str:
    """Rewrites a line's leading whitespace in the document's style when it mixes the other."""
    lead = _leading(line)
    if style.use_tabs and " " in lead:
        columns = len(lead.expandtabs(style.width))
        return "\t" * (columns // style.width) + " " * (columns % style.width) + line[len(lead) :]
    if not style.use_tabs and "\t" in lead:
        return " " * len(lead.expandtabs(style.width)) + line[len(lead) :]
    return line


def truncate(raw: str, ctx: CompletionContext) -> tuple[str, bool]:
    """The part of the model output `raw` kept so far, and whether the completion is over.

    Single-line (text follows the cursor): over at the first line break. Multi-line: over at
    a non-blank line indented less than the cursor line (excluded), at a new top-level line
    after the first line with content (excluded; a closing bracket there is kept as the end of
    the block), at a run of two blank lines, or after `max_lines` lines (an empty rest of the
    cursor line does not count). A line is judged by its first non-blank character, so the
    model is stopped before it writes the rest of a line that will be dropped.
    """
    if ctx.single_line:
        end = raw.find("\n")
        return (raw, False) if end < 0 else (raw[:end], True)

    lines = raw.split("\n")
    if ctx.indentation is not None:
        first = 0 if not ctx.line_prefix.strip() else 1
        lines = lines[:first] + [reindent(line, ctx.indentation) for line in lines[first:]]
    cursor_indent = indent_width(ctx.line_prefix)
    counted_from = 0 if lines[0].strip() else 1
    seen_content = bool(lines[0].strip())
    blank_run = 0
    for i in range(1, len(lines)):
        line, complete = lines[i], i < len(lines) - 1
        if i - counted_from >= ctx.max_lines:
            return "\n".join(lines[:i]), True
        if not line.strip():
            blank_run += complete
            if blank_run >= 2:
                return "\n".join(lines[:i]), True
            continue
        blank_run = 0
        width = indent_width(line)
        if width < cursor_indent:
            return "\n".join(lines[:i]), True
        if width == 0 and seen_content:
            if line.lstrip()[0] in CLOSING_BRACKETS:
                return "\n".join(lines[: i + 1]), complete
            return "\n".join(lines[:i]), True
        seen_content = True
    return "\n".join(lines), False


def _content_lines(text: str) -> list[str]:
    return [line.strip() for line in text.split("\n") if line.strip()]


def finalize(text: str, ctx: CompletionContext) -> str:
    """Trims trailing whitespace and drops what the document already has after the cursor;
    empty when nothing new is left."""
    lines = [line.rstrip() for line in text.split("\n")]
    while len(lines) > 1 and not lines[-1]:
        lines.pop()
    text = "\n".join(lines)
    if ctx.single_line:
        suffix = ctx.line_suffix.strip()
        if text.endswith(suffix):
            text = text[: -len(suffix)].rstrip()
        return "" if suffix.startswith(text.strip()) else text

    # A tail that repeats the first lines below the cursor is already in the document.
    ours = _content_lines(text)
    theirs = _content_lines(ctx.text_after)[: len(ours)]
    repeated = next((k for k in range(len(theirs), 0, -1) if ours[-k:] == theirs[:k]), 0)
    if repeated:
        keep = len(ours) - repeated
        content_seen = 0
        for index, line in enumerate(lines):
            if line.strip():
                if content_seen == keep:
                    lines = lines[:index]
                    break
                content_seen += 1
        text = "\n".join(lines).rstrip()
    return text if text.strip() else ""


def postprocess(raw: str, ctx: CompletionContext) -> str:
    """The completion to show for the full model output `raw`."""
    return finalize(truncate(raw, ctx)[0], ctx)
