"""The model's prompt: the text before the cursor, cut to the window that fits the budget.

The prompt is the document text before the cursor and nothing else: the model was trained on
raw source files, and a prompt that only grows at its end while the user types keeps the
engine's prefix cache hot.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from lsp_server.lsp.positions import LINE_BREAK, line_starts

# A token of the model's tokenizer never covers more characters than this (the longest are runs
# of spaces). The text before the cursor is first cut to `budget * MAX_CHARS_PER_TOKEN`
# characters, so a megabyte document never goes through the tokenizer whole; a tail that really
# needs more characters per token only gets a shorter prompt than the budget allows.
MAX_CHARS_PER_TOKEN = 32


class Encoder(Protocol):
    def encode(self, text: str) -> list[int]: ...


def _window(text: str, limit: int) -> str:
    """The last `limit` characters of `text`, from the first line start inside them if any."""
    if len(text) <= limit:
        return text
    tail = text[-limit:]
    match = LINE_BREAK.search(tail, 1)  # a break at 0 may be the second half of a \r\n
    return tail[match.end() :] if match and match.end() < len(tail) else tail


def _first_fitting(count: int, fits: Callable[[int], bool], guess: int) -> int | None:
    """The smallest i in [0, count) with fits(i), assuming fits is monotone; None if none.

    Gallops from `guess` and then bisects, so a good guess costs a few calls."""
    guess = min(max(guess, 0), count - 1)
    if fits(guess):
        bad, good, step = guess, guess, 1
        while bad > 0:
            bad = max(0, good - step)
            if not fits(bad):
                break
            good, step = bad, step * 2
        else:
            return 0
    else:
        bad, step = guess, 1
        while True:
            good = min(count - 1, bad + step)
            if fits(good):
                break
            if good == count - 1:
                return None
            bad, step = good, step * 2
    while good - bad > 1:
        middle = (good + bad) // 2
        if fits(middle):
            good = middle
        else:
            bad = middle
    return good


def _fitting_tail(text: str, tokenizer: Encoder, budget: int) -> tuple[int | None, list[int]]:
    """Where the longest tail of `text` that starts on a line boundary and fits in `budget`
    tokens begins, and its tokens; when even the last line does not fit, None and its last
    `budget` tokens."""
    if budget < 1 or not text:
        return len(text), []
    window = _window(text, budget * MAX_CHARS_PER_TOKEN)
    offset = len(text) - len(window)
    if offset and not _on_line_start(text, offset):
        offset = None  # the last line alone is longer than the character window
    # Lone surrogates (JSON allows them) cannot reach the tokenizer: one '?' each.
    window = window.encode("utf-8", "replace").decode()
    ids = tokenizer.encode(window)
    if len(ids) <= budget:
        return offset, ids
    starts = [start for start in line_starts(window) if 0 < start < len(window)]
    encoded: dict[int, list[int]] = {}

    def fits(i: int) -> bool:
        encoded[i] = tokenizer.encode(window[starts[i] :])
        return len(encoded[i]) <= budget

    if starts:
        cut_chars = len(window) * (len(ids) - budget) / len(ids)
        guess = bisect.bisect_left(starts, cut_chars)
        first = _first_fitting(len(starts), fits, guess)
        if first is not None:
            return len(text) - len(window) + starts[first], encoded[first]
        return None, encoded[len(starts) - 1][-budget:]
    return None, ids[-budget:]


def longest_fitting_tail(text: str, tokenizer: Encoder, budget: int) -> list[int]:
    """The tokens of the longest tail of `text` that starts on a line boundary and fits in
    `budget` tokens (the model saw whole source files, so a prompt starts on a line); when
    even the last line does not fit, its last `budget` tokens."""
    return _fitting_tail(text, tokenizer, budget)[1]


def _on_line_start(text: str, offset: int) -> bool:
    """Whether `offset` starts a line of `text` (not the middle of a \r\n)."""
    if offset == 0:
        return True
    if not 0 < offset <= len(text):
        return False
    before = text[offset - 1]
    return before == "\n" or (before == "\r" and text[offset : offset + 1] != "\n")


# Line-comment syntax by LSP language id, for the optional file path header.
_COMMENT_PREFIX = {
    **dict.fromkeys(
        [
            "c",
            "cpp",
            "csharp",
            "go",
            "java",
            "javascript",
            "javascriptreact",
            "typescript",
            "typescriptreact",
            "rust",
            "swift",
            "kotlin",
            "scala",
            "dart",
            "php",
            "objective-c",
            "jsonc",
            "zig",
        ],
        "//",
    ),
    **dict.fromkeys(["sql", "lua", "haskell", "elm"], "--"),
    **dict.fromkeys(["clojure", "lisp", "scheme"], ";;"),
    **dict.fromkeys(["latex", "tex", "erlang", "matlab"], "%"),
}


def path_header(path: str, language_id: str) -> str:
    """A first line naming the file, as Replit's own prompts did, in the language's comment
    syntax (`#` where unknown)."""
    if language_id in ("html", "xml", "markdown", "vue", "svelte"):
        return f"<!-- {path} -->\n"
    return f"{_COMMENT_PREFIX.get(language_id, '#')} {path}\n"


# When the text before the cursor outgrows the prompt, the window's start moves forward so
# that this fraction of the budget is free again, and stays put while the user types into
# it: one full recompute per that many typed tokens, instead of one per typed line.
WINDOW_SLACK = 0.25


@dataclass(frozen=True)
class Prompt:
    """The prompt's token ids, and where its text starts in the text before the cursor (None
    when even one line does not fit and the prompt is that line's last tokens)."""

    ids: list[int]
    window_start: int | None
    header_tokens: int = 0  # the first of `ids`, the header's


def build_prompt(
    text_before: str,
    tokenizer: Encoder,
    budget: int,
    header: str = "",
    window_start: int | None = None,
    next_start: int | None = None,
) -> Prompt:
    """The prompt: the optional header, then the text before the cursor from the window's
    start. Keeps the previous `window_start` while the text from it still fits, so that
    each keystroke's prompt extends the previous one (and reuses its cached K/V); else moves
    it to `next_start` (the window prepared while the cursor rested, `next_window`) if the
    text from there fits, else to the line that leaves WINDOW_SLACK of the budget free.
    Empty when there is no text before the cursor: a completion of nothing is not asked
    for."""
    header_ids = tokenizer.encode(header) if header else []
    if len(header_ids) * 2 > budget:  # a path longer than half the room is not worth it
        header_ids = []
    room = budget - len(header_ids)
    if not text_before or room < 1:
        return Prompt([], None)
    start, body = _kept_window(text_before, tokenizer, room, window_start, next_start)
    if not body:
        return Prompt([], start)
    return Prompt(header_ids + body, start, len(header_ids))


def next_window(text_before: str, tokenizer: Encoder, budget: int, prompt: Prompt) -> Prompt | None:
    """The prompt the window will move to once the text outgrows `prompt` (which
    `build_prompt` made within `budget`), prepared ahead: None until less than half of
    WINDOW_SLACK of the room is left. It is cut so that, when the current window is full,
    WINDOW_SLACK of the room is free in it, and it starts after the current window's start."""
    room = budget - prompt.header_tokens
    free = budget - len(prompt.ids)
    if prompt.window_start is None or not prompt.ids or free * 2 > room * WINDOW_SLACK:
        return None
    start, body = _fitting_tail(
        text_before, tokenizer, max(1, room - int(room * WINDOW_SLACK) - free)
    )
    if start is None or start <= prompt.window_start or not body:
        return None
    header_ids = prompt.ids[: prompt.header_tokens]
    return Prompt(header_ids + body, start, prompt.header_tokens)


def _fits_from(text: str, tokenizer: Encoder, room: int, start: int) -> list[int] | None:
    """The tokens of `text` from `start`, where they fit in `room`."""
    # Every token covers at most MAX_CHARS_PER_TOKEN characters: longer text cannot fit.
    if len(text) - start > room * MAX_CHARS_PER_TOKEN:
        return None
    ids = tokenizer.encode(text[start:].encode("utf-8", "replace").decode())
    return ids if len(ids) <= room else None


def _kept_window(
    text: str, tokenizer: Encoder, room: int, window_start: int | None, next_start: int | None
) -> tuple[int | None, list[int]]:
    """The window to use: the previous one while it fits, else (with no usable previous one)
    the whole text if it fits, else the prepared next one if it fits, else a new one with
    slack."""
    if window_start is None or not _on_line_start(text, window_start):
        window_start = 0
    for start in (window_start, next_start):
        if start is not None and _on_line_start(text, start):
            ids = _fits_from(text, tokenizer, room, start)
            if ids:
                return start, ids
    slack_room = max(1, room - int(room * WINDOW_SLACK))
    return _fitting_tail(text, tokenizer, slack_room)
