"""The HTTP endpoint's rules that need no model: chat messages to prompt text, stop strings,
the admission queue, and the served model's name."""

from __future__ import annotations

from pathlib import Path

import pytest

from lsp_server.generation.stops import StopStrings
from lsp_server.http.admission import AdmissionGate, QueueFull
from lsp_server.http.chat_prompt import chat_prompt
from lsp_server.http.schemas import ChatMessage
from model.hub import model_name


def messages(*pairs: tuple[str, object]) -> list[ChatMessage]:
    return [ChatMessage.model_validate({"role": r, "content": c}) for r, c in pairs]


@pytest.mark.parametrize(
    ("conversation", "prompt"),
    [
        ([("user", "def f(x):\n")], "def f(x):\n"),
        ([("system", "You write Python."), ("user", "import os")], "import os"),
        ([("developer", "Be brief."), ("user", "x = 1")], "x = 1"),
        ([("user", "import os"), ("user", "import sys")], "import os\nimport sys"),
        ([("user", "def f():"), ("assistant", "\n    return 1")], "def f():\n    return 1"),
        (
            [("user", "def f():"), ("assistant", "\n    pass"), ("user", "def g():")],
            "def f():\n    pass\ndef g():",
        ),
        (
            [("user", [{"type": "text", "text": "def "}, {"type": "text", "text": "f():"}])],
            "def f():",
        ),
        ([("user", "x = "), ("assistant", None)], "x = "),
        ([("system", "only instructions")], ""),
    ],
)
def test_chat_prompt_rule(conversation: list[tuple[str, object]], prompt: str) -> None:
    assert chat_prompt(messages(*conversation)) == prompt


def run_matcher(stops: list[str], pieces: list[str]) -> tuple[list[str], bool]:
    matcher = StopStrings(stops)
    sent: list[str] = []
    for piece in pieces:
        text, stopped = matcher.feed(piece)
        sent.append(text)
        if stopped:
            return sent, True
    sent.append(matcher.flush())
    return sent, False


def test_stop_string_split_across_pieces_is_never_sent() -> None:
    sent, stopped = run_matcher(["\n\n"], ["a = 1", "\n", "\nb = 2"])
    assert stopped
    assert "".join(sent) == "a = 1"
    assert sent[1] == "", "a newline that may start the stop string is held back"


def test_held_back_text_is_sent_when_it_is_not_a_stop() -> None:
    sent, stopped = run_matcher(["</end>"], ["x </", "en", "d", "ing"])
    assert not stopped
    assert "".join(sent) == "x </ending"


def test_earliest_of_several_stops_wins() -> None:
    sent, stopped = run_matcher(["class", "def"], ["x = 1\ndef f(): pass\nclass C"])
    assert stopped
    assert "".join(sent) == "x = 1\n"


def test_no_stops_sends_everything_at_once() -> None:
    assert StopStrings([]).feed("abc") == ("abc", False)


async def test_admission_gate_is_fifo_and_bounded() -> None:
    gate = AdmissionGate(capacity=1, max_queue=2)
    running = gate.reserve()
    first, second = gate.reserve(), gate.reserve()
    assert running.done() and not first.done() and not second.done()
    with pytest.raises(QueueFull):
        gate.reserve()
    gate.abandon(first)  # a queued client left: its place goes, the next moves up
    gate.release()
    assert second.done() and gate.active == 1 and gate.queued == 0
    gate.release()
    assert gate.active == 0


def test_model_name() -> None:
    snapshot = Path("/home/u/.cache/huggingface/hub/models--replit--replit-code-v1_5-3b")
    assert model_name(snapshot / "snapshots" / "abc123") == "replit/replit-code-v1_5-3b"
    assert model_name(Path("/models/my-replit")) == "my-replit"
