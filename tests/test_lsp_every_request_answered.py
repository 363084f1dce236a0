"""Every inline completion request gets an answer, whatever the editing before it.

Generated editing sessions go through a real `replit-lsp --stdio` on the tiny checkpoint, in a
document larger than the prompt window: typing from a source file, typing through the shown
suggestion, typing past its end, backspacing into it, accepting it (with its command), jumping
elsewhere, bursts of requests that supersede each other, and requests cancelled as soon as they
are sent. Each step ends with a request at the cursor; every request must be answered (a list,
or the cancelled error for one the client cancelled), and the server's copy of the document
must equal the client's at the end. A request that is never answered leaves an editor without
suggestions for that document, and stalls a client that waits for it.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from testkit.editor import Editor, utf16_position
from testkit.lsp_client import MAX_NEW_TOKENS
from testkit.raw_lsp import RawLsp, inline_params, loaded_server
from testkit.robustness import robustness
from testkit.servers import lsp_server_command

ANSWER_TIMEOUT = 120.0
SOURCE = Path(argparse.__file__).read_text()
# Where the generated sessions type: a method in the middle of the file, removed and retyped.
BLOCK_START = SOURCE.index("    def add_parser(self, name, **kwargs):")
BLOCK_END = SOURCE.index("    def _get_subactions(self):")
_documents = itertools.count()


@pytest.fixture(scope="module")
def lsp(tiny_model_dir: Path) -> Iterator[RawLsp]:
    options = {"maxNewTokens": MAX_NEW_TOKENS, "maxLines": 8}
    with loaded_server(lsp_server_command(tiny_model_dir), options) as server:
        yield server


def new_uri() -> str:
    return f"file:///work/session_{next(_documents)}.py"


def type_through(editor: Editor, count: int) -> None:
    if editor.shown:
        editor.type_through(count)
    else:
        editor.type(count)


def type_past_the_end(editor: Editor, count: int) -> None:
    editor.insert(editor.shown)
    editor.type(count)


def burst(editor: Editor, count: int) -> None:
    """Keystrokes faster than the answers: each request supersedes the one before."""
    for _ in range(count):
        editor.type(1)
        editor.send()


def cancelled(editor: Editor, count: int) -> None:
    editor.type(count)
    editor.send(cancel=True)


ACTIONS: dict[str, Callable[[Editor, int], None]] = {
    "type": Editor.type,
    "through": type_through,
    "past": type_past_the_end,
    "backspace": Editor.backspace,
    "accept": lambda editor, _count: editor.accept(),
    "jump": lambda editor, count: editor.jump(count * 997),
    "burst": burst,
    "cancel": cancelled,
}


@robustness()
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(sorted(ACTIONS)), st.integers(1, 6)), min_size=4, max_size=14
    )
)
def test_every_request_is_answered_whatever_the_editing(
    lsp: RawLsp, steps: list[tuple[str, int]]
) -> None:
    text = SOURCE[:BLOCK_START] + SOURCE[BLOCK_END:]
    editor = Editor.open(lsp, new_uri(), text, BLOCK_START, SOURCE[BLOCK_START:BLOCK_END])
    for action, count in [("type", 3), *steps]:
        ACTIONS[action](editor, count)
        editor.send()
        editor.collect(ANSWER_TIMEOUT)
    status = lsp.request("replitLsp/status", {"textDocument": {"uri": editor.uri}})["result"]
    digest = hashlib.sha256(editor.text.encode("utf-8", "surrogatepass")).hexdigest()
    assert status["document"]["sha256"] == digest
    assert editor.answered > 0
    editor.close()


def finishes_until_complete(lsp: RawLsp, since: int) -> list[str]:
    """Why each completion after record `since` ended, once one ended other than cancelled."""
    deadline = time.monotonic() + ANSWER_TIMEOUT
    while True:
        records = lsp.request("replitLsp/completions", {"since": since})["result"]
        finishes = [record["finish"] for record in records]
        if any(finish != "cancelled" for finish in finishes):
            return finishes
        assert time.monotonic() < deadline, finishes
        time.sleep(0.05)


def test_a_request_that_outlasts_its_limit_is_answered_empty_and_stops(lsp: RawLsp) -> None:
    """With a limit no generation meets, the answer is an empty list instead of none, and the
    generation stops (before it starts, or as cancelled); the next request, with time enough,
    runs to its end."""
    text = SOURCE[:BLOCK_START]
    editor = Editor.open(lsp, new_uri(), text, len(text))
    where = utf16_position(text, len(text))
    params = inline_params(editor.uri, where["line"], where["character"])
    since = lsp.request("replitLsp/status")["result"]["completions"]
    lsp.notify("workspace/didChangeConfiguration", {"settings": {"answerTimeoutSeconds": 1e-6}})
    try:
        assert lsp.request("textDocument/inlineCompletion", params)["result"] == {"items": []}
        assert any("had no result after" in message for message in lsp.log_messages())
    finally:
        lsp.notify("workspace/didChangeConfiguration", {"settings": {"answerTimeoutSeconds": 60}})
    assert "result" in lsp.request("textDocument/inlineCompletion", params)
    finishes = finishes_until_complete(lsp, since)
    assert len([finish for finish in finishes if finish != "cancelled"]) == 1, finishes
    editor.close()
