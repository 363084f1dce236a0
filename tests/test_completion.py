"""One completion from a cursor snapshot, in process: typing through a shown suggestion, and
what a time budget keeps."""

from __future__ import annotations

import pytest

from lsp_server.generation.local import LocalGenerator
from lsp_server.lsp.completion import complete_lines, generate_completion
from lsp_server.lsp.document_memory import ShownSuggestion
from lsp_server.lsp.postprocess import CompletionContext
from lsp_server.lsp.settings import Settings
from lsp_server.lsp.snapshot import CursorSnapshot
from model.engine.engine import Engine


@pytest.mark.parametrize(
    ("text_before", "rest"),
    [
        ("x = f", "oo(1)"),  # typed the first character
        ("x = foo(", "1)"),
        ("x = ", None),  # typed nothing
        ("x = foo(1)", None),  # typed all of it: nothing is left to show
        ("x = g", None),  # typed something else
        ("y = f", None),  # the text before changed
        ("x =", None),  # deleted a character
    ],
)
def test_the_rest_of_a_suggestion_while_typing_it(text_before: str, rest: str | None) -> None:
    assert ShownSuggestion("x = ", "foo(1)").rest_after(text_before) == rest


def test_complete_lines_drops_the_line_being_written() -> None:
    assert complete_lines("a\nb\nc") == "a\nb"
    assert complete_lines("a\nb\n") == "a\nb"
    assert complete_lines("partial") == ""


class TickingClock:
    """A clock that advances one tick each time it is read: the engine reads the deadline
    once per prefill chunk and once per token, so the deadline falls after a known amount
    of work, whatever the machine's speed."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_at_the_deadline_only_complete_lines_are_kept(demo_engine: Engine) -> None:
    before = 'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n    '
    context = CompletionContext(
        line_prefix="    ", line_suffix="", text_after="", max_lines=100, indentation=None
    )
    settings = Settings(max_new_tokens=40, max_lines=100)
    generator = LocalGenerator(demo_engine)
    unlimited = generate_completion(
        generator, CursorSnapshot(before, "", context, settings, None), lambda: False
    )
    assert unlimited.stats is not None and unlimited.stats.generated_tokens > 10
    full_lines = unlimited.text.split("\n")
    longest_kept = 0
    for deadline in range(3, unlimited.stats.generated_tokens, 2):
        cut = generate_completion(
            generator,
            CursorSnapshot(before, "", context, settings, None, deadline=float(deadline)),
            lambda: False,
            clock=TickingClock(),
        )
        assert cut.stats is not None and cut.stats.finish_reason == "cancelled"
        assert cut.stats.generated_tokens < unlimited.stats.generated_tokens
        # Whole lines of the unlimited answer, never a part of one.
        kept = cut.text.split("\n") if cut.text else []
        assert kept == full_lines[: len(kept)], (deadline, cut.text)
        longest_kept = max(longest_kept, len(kept))
    assert longest_kept > 0, f"no deadline fell after a complete line of {unlimited.text!r}"
