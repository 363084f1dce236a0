"""Prompt building: LSP positions to string indices, and fitting the text before the cursor."""

from __future__ import annotations

import pytest

from lsp_server.lsp.positions import column_to_index, index_to_column, resolve_cursor
from lsp_server.lsp.prompt import (
    MAX_CHARS_PER_TOKEN,
    build_prompt,
    longest_fitting_tail,
    path_header,
)
from lsp_server.lsp.snapshot import text_after


class CharTokenizer:
    """One token per character, and a count of characters encoded, to see what was read."""

    def __init__(self) -> None:
        self.encoded_chars = 0

    def encode(self, text: str) -> list[int]:
        self.encoded_chars += len(text)
        return [ord(c) for c in text]


def decode(ids: list[int]) -> str:
    return "".join(map(chr, ids))


# 'x = "' then an emoji (2 UTF-16 units, 4 UTF-8 bytes), 'é' (1 unit, 2 bytes), '"'
LINE = 'x = "\U0001f600é"'


@pytest.mark.parametrize(
    ("encoding", "character", "index"),
    [
        ("utf-16", 5, 5),  # before the emoji
        ("utf-16", 6, 5),  # inside the surrogate pair: rounded down to the emoji's start
        ("utf-16", 7, 6),  # after the emoji
        ("utf-16", 8, 7),  # after é
        ("utf-16", 9, 8),
        ("utf-16", 500, 8),  # past the end of the line: clamped
        ("utf-8", 5, 5),
        ("utf-8", 7, 5),  # inside the emoji's bytes
        ("utf-8", 9, 6),
        ("utf-8", 10, 6),  # inside é's bytes
        ("utf-8", 11, 7),
        ("utf-32", 6, 6),
        ("utf-32", 99, 8),
        ("utf-16", -3, 0),
    ],
)
def test_column_to_index(encoding: str, character: int, index: int) -> None:
    assert column_to_index(LINE, character, encoding) == index


@pytest.mark.parametrize(("encoding", "columns"), [("utf-16", 9), ("utf-8", 12), ("utf-32", 8)])
def test_index_to_column_round_trips(encoding: str, columns: int) -> None:
    assert index_to_column(LINE, len(LINE), encoding) == columns
    for index in range(len(LINE) + 1):
        assert column_to_index(LINE, index_to_column(LINE, index, encoding), encoding) == index


def test_lone_surrogate_counts_as_one_utf16_unit() -> None:
    line = "a\ud800b"
    assert column_to_index(line, 2) == 2
    assert index_to_column(line, 3) == 3


def test_resolve_cursor_splits_the_cursor_line() -> None:
    text = "def f(x):\r\n    return x + 1\rprint(f(2))\n"
    cursor = resolve_cursor(text, 1, 11)
    assert (cursor.line_prefix, cursor.line_suffix) == ("    return ", "x + 1")
    assert text[: cursor.offset] == "def f(x):\r\n    return "
    cursor = resolve_cursor(text, 2, 5)
    assert (cursor.line_prefix, cursor.line_suffix) == ("print", "(f(2))")


def test_resolve_cursor_ignores_form_feeds_as_line_breaks() -> None:
    """LSP lines end only at \\n, \\r\\n and \\r; str.splitlines would also split here."""
    cursor = resolve_cursor("a\x0cb\nc", 1, 1)
    assert (cursor.line_prefix, cursor.line_suffix) == ("c", "")


@pytest.mark.parametrize(
    ("line", "character", "expected"),
    [(0, 99, (0, 3, 3)), (7, 0, (2, 2, 10)), (2, 99, (2, 2, 10))],
)
def test_resolve_cursor_clamps(line: int, character: int, expected: tuple[int, int, int]) -> None:
    cursor = resolve_cursor("abc\ndef\ngh", line, character)
    assert (cursor.line, cursor.character, cursor.offset) == expected


def test_resolve_cursor_in_an_empty_document() -> None:
    cursor = resolve_cursor("", 3, 4)
    assert (cursor.line, cursor.character, cursor.offset) == (0, 0, 0)


def test_fit_prompt_keeps_everything_that_fits() -> None:
    tokenizer = CharTokenizer()
    assert decode(longest_fitting_tail("ab\ncd\nef", tokenizer, 8)) == "ab\ncd\nef"


@pytest.mark.parametrize(
    ("budget", "expected"),
    [(7, "cd\nef"), (5, "cd\nef"), (4, "ef"), (2, "ef"), (1, "f")],
)
def test_fit_prompt_cuts_from_the_front_on_line_boundaries(budget: int, expected: str) -> None:
    assert decode(longest_fitting_tail("ab\ncd\nef", CharTokenizer(), budget)) == expected


def test_fit_prompt_finds_the_longest_fitting_tail_in_many_lines() -> None:
    lines = [f"line {i}" * (1 + i % 5) for i in range(300)]
    text = "\n".join(lines)
    assert (
        decode(longest_fitting_tail(text, CharTokenizer(), 17)) == text[-17:]
    )  # the last line is 40
    for budget in (45, 100, 999, 2000):
        kept = decode(longest_fitting_tail(text, CharTokenizer(), budget))
        assert len(kept) <= budget
        assert text.endswith(kept) and text[len(text) - len(kept) - 1] == "\n"
        longer = text[: len(text) - len(kept) - 1].rsplit("\n", 1)[-1] + "\n" + kept
        assert len(longer) > budget  # one more line would not fit


def test_fit_prompt_reads_only_the_tail_of_a_huge_text() -> None:
    tokenizer = CharTokenizer()
    text = ("x = 1\n" * 1_000_000) + "y ="
    budget = 100
    kept = decode(longest_fitting_tail(text, tokenizer, budget))
    assert kept.endswith("\ny =") and len(kept) <= budget
    assert tokenizer.encoded_chars < 50 * budget * MAX_CHARS_PER_TOKEN


def test_fit_prompt_replaces_lone_surrogates() -> None:
    assert decode(longest_fitting_tail("a\ud800b", CharTokenizer(), 10)) == "a?b"


def test_build_prompt_with_a_path_header() -> None:
    tokenizer = CharTokenizer()
    header = path_header("pkg/mod.py", "python")
    assert header == "# pkg/mod.py\n"
    text = "abcdefghijk\ncd"
    assert decode(build_prompt(text, tokenizer, 100, header).ids) == header + text
    assert decode(build_prompt(text, tokenizer, 26, header).ids) == header + "cd"
    # A header that would take more than half the room is left out.
    assert decode(build_prompt(text, tokenizer, 16, header).ids) == text
    assert build_prompt("", tokenizer, 100, header).ids == []


def test_path_header_comment_syntax() -> None:
    assert path_header("a.rs", "rust") == "// a.rs\n"
    assert path_header("a.sql", "sql") == "-- a.sql\n"
    assert path_header("a.html", "html") == "<!-- a.html -->\n"


def test_text_after_starts_below_the_cursor_line() -> None:
    text = "a = (1,\n     2)\nb = 3\n"
    assert text_after(text, resolve_cursor(text, 0, 3)) == "     2)\nb = 3\n"
    assert text_after(text, resolve_cursor(text, 2, 0)) == ""


def typed_prompts(text: str, typed: str, budget: int) -> list[tuple[str, list[int], int | None]]:
    """Each keystroke's text before the cursor, prompt and window, as the server keeps them."""
    tokenizer, window, steps = CharTokenizer(), None, []
    for i in range(len(typed) + 1):
        before = text + typed[:i]
        prompt = build_prompt(before, tokenizer, budget, window_start=window)
        window = prompt.window_start
        steps.append((before, prompt.ids, window))
    return steps


def test_the_window_stays_put_while_typing_and_moves_in_large_steps() -> None:
    budget = 100
    text = "".join(f"line {i:03d}\n" for i in range(30))  # 300 characters: past the budget
    typed = "".join(f"typed {i:02d}\n" for i in range(40))  # 360 more
    steps = typed_prompts(text, typed, budget)
    moves = 0
    for (_, earlier, start), (before, prompt, next_start) in zip(steps, steps[1:], strict=False):
        assert len(prompt) <= budget
        assert decode(prompt) == before[next_start:]  # the prompt is the text from the window
        assert next_start is not None and before[next_start - 1] == "\n"  # on a line start
        if next_start == start:
            assert prompt[: len(earlier)] == earlier  # the cache holds it: reuse is exact
        else:
            moves += 1
            # A move frees at least the slack (a quarter of the budget) for typing.
            assert len(prompt) <= budget - budget // 4
    # One move per quarter budget typed at most (the first window is made with slack too).
    assert 1 <= moves <= len(typed) // (budget // 4)


def test_a_cursor_above_the_window_re_anchors() -> None:
    tokenizer = CharTokenizer()
    text = "".join(f"line {i:03d}\n" for i in range(30))
    window = build_prompt(text, tokenizer, 100).window_start
    assert window is not None and window > 0
    earlier = text[:150]  # the cursor jumped to line 15, above the window
    prompt = build_prompt(earlier, tokenizer, 100, window_start=window)
    assert decode(prompt.ids) == earlier[prompt.window_start :]
    assert prompt.window_start < window


def test_a_window_that_no_longer_starts_a_line_is_replaced() -> None:
    tokenizer = CharTokenizer()
    text = "".join(f"line {i:03d}\n" for i in range(30))
    window = build_prompt(text, tokenizer, 100).window_start
    assert window is not None
    edited = "x" + text  # an edit above the window shifted it off its line start
    prompt = build_prompt(edited, tokenizer, 100, window_start=window)
    start = prompt.window_start
    assert start is not None and edited[start - 1] == "\n"
    assert decode(prompt.ids) == edited[start:]


def test_text_that_fits_keeps_the_whole_document() -> None:
    steps = typed_prompts("import os\n", "x = 1\ny = 2\n", 100)
    assert all(window == 0 and decode(ids) == before for before, ids, window in steps)
