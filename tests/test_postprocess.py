"""Completion stopping rules and trimming, one hand-written case per rule."""

from __future__ import annotations

import pytest

from lsp_server.lsp.postprocess import (
    CompletionContext,
    Indentation,
    detect_indentation,
    postprocess,
    reindent,
    truncate,
)

AT_DEF = CompletionContext(line_prefix="def fibonacci(n):")
IN_BODY = CompletionContext(line_prefix="    x = 1")


def test_single_line_stops_at_the_first_line_break() -> None:
    ctx = CompletionContext(line_prefix="print(", line_suffix=")")
    assert truncate("'hi', end=''", ctx) == ("'hi', end=''", False)
    assert truncate("'hi'\nprint('more')", ctx) == ("'hi'", True)
    assert postprocess("'hi'\nprint('more')", ctx) == "'hi'"


def test_single_line_drops_a_tail_that_repeats_the_suffix() -> None:
    ctx = CompletionContext(line_prefix="total = sum(", line_suffix="):  ")
    assert postprocess("values):\n", ctx) == "values"


def test_single_line_that_only_repeats_the_suffix_is_empty() -> None:
    ctx = CompletionContext(line_prefix="f(", line_suffix=") + 1")
    assert postprocess(")", ctx) == ""
    assert postprocess(") +\n", ctx) == ""


def test_whitespace_after_the_cursor_means_multi_line() -> None:
    ctx = CompletionContext(line_prefix="def f():", line_suffix="   ")
    assert not ctx.single_line
    assert postprocess("\n    return 1\n", ctx) == "\n    return 1"


def test_multi_line_ends_at_a_new_top_level_statement() -> None:
    raw = "\n    if n < 2:\n        return n\n    return fibonacci(n - 1)\ndef main"
    text, over = truncate(raw, AT_DEF)
    assert over
    assert text == "\n    if n < 2:\n        return n\n    return fibonacci(n - 1)"


def test_top_level_line_is_judged_by_its_first_character() -> None:
    """Generation can stop as soon as the 'd' of 'def' arrives."""
    assert truncate("\n    return 1\nd", AT_DEF) == ("\n    return 1", True)
    assert truncate("\n    return 1\n   ", AT_DEF) == ("\n    return 1\n   ", False)


def test_first_content_line_may_be_top_level() -> None:
    ctx = CompletionContext(line_prefix="")
    assert truncate("import sys\nimport re\n", ctx) == ("import sys", True)
    after_statement = CompletionContext(line_prefix="import os")
    assert postprocess("\nimport sys\nimport re\n", after_statement) == "\nimport sys"


def test_multi_line_ends_when_indentation_drops_below_the_cursor_line() -> None:
    raw = "\n    y = 2\n    return x + y\n\nclass A:\n"
    assert truncate(raw, IN_BODY) == ("\n    y = 2\n    return x + y\n", True)
    assert postprocess(raw, IN_BODY) == "\n    y = 2\n    return x + y"


def test_dedent_inside_the_block_is_fine_down_to_the_cursor_level() -> None:
    ctx = CompletionContext(line_prefix="        for i in range(3):")
    raw = "\n            print(i)\n        print('done')\n    return\n"
    assert postprocess(raw, ctx) == "\n            print(i)\n        print('done')"


def test_multi_line_ends_at_two_blank_lines() -> None:
    raw = "\n    a = 1\n\n    b = 2\n\n\n    c = 3\n"
    text, over = truncate(raw, IN_BODY)
    assert over
    assert postprocess(raw, IN_BODY) == "\n    a = 1\n\n    b = 2"


def test_a_closing_bracket_at_top_level_is_kept_and_ends_the_completion() -> None:
    ctx = CompletionContext(line_prefix="function f() {")
    raw = "\n  return 1;\n}\n\nfunction g() {"
    assert truncate(raw, ctx) == ("\n  return 1;\n}", True)
    assert truncate("\n  return 1;\n}", ctx) == ("\n  return 1;\n}", False)


@pytest.mark.parametrize(("max_lines", "expected"), [(1, "\n    a = 1"), (2, "\n    a = 1\n    b")])
def test_max_lines_does_not_count_an_empty_rest_of_the_cursor_line(
    max_lines: int, expected: str
) -> None:
    ctx = CompletionContext(line_prefix="    x = 1", max_lines=max_lines)
    assert postprocess("\n    a = 1\n    b\n    c = 3\n", ctx) == expected


def test_max_lines_counts_a_non_empty_first_line() -> None:
    ctx = CompletionContext(line_prefix="x = [", max_lines=2)
    assert postprocess("1,\n     2,\n     3,\n]", ctx) == "1,\n     2,"


def test_trailing_whitespace_is_stripped() -> None:
    ctx = CompletionContext(line_prefix="    x =", max_lines=3)
    assert postprocess(" 1   \n    y = 2\t\n\n", ctx) == " 1\n    y = 2"


def test_whitespace_only_is_empty() -> None:
    assert postprocess("\n   \n", IN_BODY) == ""
    assert postprocess("", AT_DEF) == ""


def test_a_tail_already_below_the_cursor_is_dropped() -> None:
    ctx = CompletionContext(line_prefix="def f(xs):", text_after="    return total\n\nf([])\n")
    raw = "\n    total = sum(xs)\n    return total\n"
    assert postprocess(raw, ctx) == "\n    total = sum(xs)"


def test_a_completion_that_only_repeats_the_text_below_is_empty() -> None:
    ctx = CompletionContext(line_prefix="def f(xs):", text_after="    return sum(xs)\n")
    assert postprocess("\n    return  sum(xs)\n", ctx) == "\n    return  sum(xs)"
    assert postprocess("\n    return sum(xs)\n", ctx) == ""


def test_spaces_from_the_model_become_tabs_in_a_tab_document() -> None:
    ctx = CompletionContext(line_prefix="\tif x:", indentation=Indentation(use_tabs=True))
    assert postprocess("\n        y()\n    z()\n", ctx) == "\n\t\ty()\n\tz()"


def test_tabs_from_the_model_become_spaces_in_a_space_document() -> None:
    ctx = CompletionContext(line_prefix="  if x:", indentation=Indentation(False, 2))
    assert postprocess("\n\t\ty()\n", ctx) == "\n    y()"


def test_indentation_is_converted_before_the_block_rule() -> None:
    """Twelve model spaces are three tabs, inside the block; four are one tab, outside it."""
    ctx = CompletionContext(line_prefix="\t\tif x:", indentation=Indentation(use_tabs=True))
    assert postprocess("\n            y()\n    z()\n", ctx) == "\n\t\t\ty()"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("def f():\n    a\n    if b:\n        c\n", Indentation(False, 4)),
        ("def f():\n  a\n  if b:\n    c\n", Indentation(False, 2)),
        ("def f():\n\ta\n\tif b:\n\t\tc\n", Indentation(True)),
        ("x = 1\ny = 2\n", None),
    ],
)
def test_detect_indentation(text: str, expected: Indentation | None) -> None:
    assert detect_indentation(text) == expected


def test_reindent_keeps_alignment_spaces_after_tabs() -> None:
    assert reindent("      x", Indentation(use_tabs=True)) == "\t  x"
    assert reindent("\t  x", Indentation(False, 4)) == "      x"
    assert reindent("    x", Indentation(False, 4)) == "    x"


@pytest.mark.parametrize(
    ("ctx", "raw"),
    [
        (AT_DEF, "\n    if n < 2:\n        return n\n\n\n    x\ndef g():\n    pass\n"),
        (IN_BODY, "\n    y = 2\n  z\n    w\n"),
        (CompletionContext(line_prefix="f(", line_suffix=")"), "a, b)\nmore\n"),
        (CompletionContext(line_prefix="", max_lines=2), "a\nb\nc\nd\n"),
    ],
)
def test_truncation_is_prefix_consistent(ctx: CompletionContext, raw: str) -> None:
    """Once a prefix of the output is judged over, the full output gives the same text, so
    stopping generation early changes nothing."""
    full = postprocess(raw, ctx)
    stopped = [i for i in range(len(raw) + 1) if truncate(raw[:i], ctx)[1]]
    assert stopped, "every case stops before the end of its output"
    for i in stopped:
        assert truncate(raw[:i], ctx)[0] == truncate(raw, ctx)[0]
    assert postprocess(raw[: stopped[0]], ctx) == full
