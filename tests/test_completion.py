"""One completion from a cursor snapshot, in process: the recent suggestions that answer
with no model run, and what may be shown of a completion still being generated."""

from __future__ import annotations

import pytest

from lsp_server.generation.local import LocalGenerator
from lsp_server.lsp.completion import Progress, complete_lines, early_text, generate_completion
from lsp_server.lsp.postprocess import CompletionContext
from lsp_server.lsp.recent_suggestions import RecentSuggestions, Remembered, Suggestion
from lsp_server.lsp.settings import Settings
from lsp_server.lsp.snapshot import CursorSnapshot
from model.engine.engine import Engine


@pytest.mark.parametrize(
    ("text_before", "rest"),
    [
        ("x = f", "oo(1)"),  # typed the first character
        ("x = foo(", "1)"),
        ("x = ", "foo(1)"),  # typed nothing: backspace, undo or asked again
        ("x = foo(1)", None),  # typed all of it: nothing is left to show
        ("x = g", None),  # typed something else
        ("y = f", None),  # the text before changed
        ("x =", None),  # deleted a character
    ],
)
def test_the_rest_of_a_suggestion_while_typing_it(text_before: str, rest: str | None) -> None:
    assert Suggestion("x = ", "", "foo(1)").rest_after(text_before, "") == rest


def test_a_suggestion_made_with_other_context_ahead_is_not_used() -> None:
    assert Suggestion("x = ", "# a.py\n", "foo(1)").rest_after("x = f", "# b.py\n") is None


def test_recent_suggestions_answer_the_newest_that_fits() -> None:
    recent = RecentSuggestions()
    recent.add(Suggestion("a", "", "bc"), keep=2)
    recent.add(Suggestion("x", "", "yz"), keep=2)
    recent.add(Suggestion("a", "", "bd"), keep=2)  # the same prompt: replaces the first
    assert recent.answer("ab", "", keep=2) == Remembered("d", typed_through=True)
    assert recent.answer("x", "", keep=2) == Remembered("yz", typed_through=False)
    recent.add(Suggestion("m", "", "no"), keep=2)  # the oldest, "x", goes
    assert recent.answer("x", "", keep=2) is None
    # Keeping none: only typing through the last suggestion, as when the cache is off.
    assert recent.answer("m", "", keep=0) is None
    assert recent.answer("mn", "", keep=0) == Remembered("o", typed_through=True)
    assert recent.answer("ab", "", keep=0) is None


def test_complete_lines_drops_the_line_being_written() -> None:
    assert complete_lines("a\nb\nc") == "a\nb"
    assert complete_lines("a\nb\n") == "a\nb"
    assert complete_lines("partial") == ""


def test_only_complete_lines_are_shown_while_generating(demo_engine: Engine) -> None:
    before = 'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n    '
    context = CompletionContext(
        line_prefix="    ", line_suffix="", text_after="", max_lines=100, indentation=None
    )
    settings = Settings(max_new_tokens=40, max_lines=100)
    progress = Progress()
    seen: list[str] = []

    def cancelled() -> bool:  # read once per token: what could be shown at each
        seen.append(early_text(progress.text, context))
        return False

    full = generate_completion(
        LocalGenerator(demo_engine),
        CursorSnapshot(before, "", context, settings, None),
        cancelled,
        progress,
    )
    assert full.stats is not None and full.stats.generated_tokens > 10
    full_lines = full.text.split("\n")
    for shown in seen:  # whole lines of the final answer, never a part of one
        kept = shown.split("\n") if shown else []
        assert kept == full_lines[: len(kept)], shown
    assert any(seen), f"no complete line before the end of {full.text!r}"
