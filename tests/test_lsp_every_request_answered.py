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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from testkit.lsp_client import MAX_NEW_TOKENS
from testkit.raw_lsp import RawLsp, inline_params, open_document
from testkit.robustness import robustness
from testkit.servers import lsp_server_command

REQUEST_CANCELLED = -32800
ANSWER_TIMEOUT = 120.0
SOURCE = Path(argparse.__file__).read_text()
# Where the generated sessions type: a method in the middle of the file, removed and retyped.
BLOCK_START = SOURCE.index("    def add_parser(self, name, **kwargs):")
BLOCK_END = SOURCE.index("    def _get_subactions(self):")
_documents = itertools.count()


@pytest.fixture(scope="module")
def lsp(tiny_model_dir: Path) -> Iterator[RawLsp]:
    server = RawLsp(lsp_server_command(tiny_model_dir))
    server.initialize({"maxNewTokens": MAX_NEW_TOKENS, "maxLines": 8})
    server.wait_until_loaded()
    yield server
    server.request("shutdown")
    server.notify("exit")
    assert server.wait() == 0


def utf16_position(text: str, offset: int) -> dict[str, int]:
    before = text[:offset]
    line_start = before.rfind("\n") + 1
    units = len(before[line_start:].encode("utf-16-le")) // 2
    return {"line": before.count("\n"), "character": units}


@dataclass
class Editor:
    """The client's side of one document: its text, the cursor and the suggestion shown."""

    lsp: RawLsp
    uri: str
    text: str
    cursor: int
    typed: int = 0  # how much of the removed block has been typed back
    version: int = 1
    shown: str = ""
    command: dict[str, Any] | None = None
    answered: int = 0
    sent: list[tuple[int, bool]] = field(default_factory=list)  # (id, cancelled) awaiting answers

    def edit(self, start: int, end: int, new: str) -> None:
        change = {
            "range": {
                "start": utf16_position(self.text, start),
                "end": utf16_position(self.text, end),
            },
            "text": new,
        }
        self.version += 1
        self.lsp.notify(
            "textDocument/didChange",
            {
                "textDocument": {"uri": self.uri, "version": self.version},
                "contentChanges": [change],
            },
        )
        self.text = self.text[:start] + new + self.text[end:]
        self.cursor = start + len(new)
        self.shown = ""

    def insert(self, new: str) -> None:
        self.edit(self.cursor, self.cursor, new)

    def type_source(self, count: int) -> None:
        block = SOURCE[BLOCK_START:BLOCK_END]
        piece = block[self.typed : self.typed + count] or SOURCE[:count]
        self.typed += len(piece)
        self.insert(piece)

    def send(self, cancel: bool = False) -> None:
        position = utf16_position(self.text, self.cursor)
        params = inline_params(self.uri, position["line"], position["character"])
        msg_id = self.lsp.send_request("textDocument/inlineCompletion", params)
        if cancel:
            self.lsp.notify("$/cancelRequest", {"id": msg_id})
        self.sent.append((msg_id, cancel))

    def collect(self) -> None:
        """Waits for every request sent; the last one's suggestion is what the editor shows."""
        for msg_id, cancelled in self.sent:
            answer = self.lsp.response(msg_id, timeout=ANSWER_TIMEOUT)
            if "error" in answer:
                assert cancelled and answer["error"]["code"] == REQUEST_CANCELLED, answer
                continue
            items = answer["result"]["items"]
            assert len(items) <= 1, answer
            self.shown = items[0]["insertText"] if items else ""
            self.command = items[0].get("command") if items else None
            self.answered += 1
        self.sent.clear()


def type_through(editor: Editor, count: int) -> None:
    if editor.shown:
        editor.insert(editor.shown[:count])
    else:
        editor.type_source(count)


def type_past_the_end(editor: Editor, count: int) -> None:
    editor.insert(editor.shown + SOURCE[BLOCK_START:BLOCK_END][:count])


def backspace(editor: Editor, count: int) -> None:
    editor.edit(max(0, editor.cursor - count), editor.cursor, "")


def accept(editor: Editor, _count: int) -> None:
    command = editor.command
    editor.insert(editor.shown)
    if command is not None:
        answer = editor.lsp.request(
            "workspace/executeCommand",
            {"command": command["command"], "arguments": command.get("arguments", [])},
        )
        assert "result" in answer, answer


def jump(editor: Editor, count: int) -> None:
    """To the end of a line elsewhere in the document, as a click or a search does."""
    lines = editor.text.split("\n")
    line = (count * 997) % len(lines)
    editor.cursor = sum(len(text) + 1 for text in lines[:line]) + len(lines[line])
    editor.shown = ""


def burst(editor: Editor, count: int) -> None:
    """Keystrokes faster than the answers: each request supersedes the one before."""
    for _ in range(count):
        editor.type_source(1)
        editor.send()


def cancelled(editor: Editor, count: int) -> None:
    editor.type_source(count)
    editor.send(cancel=True)


ACTIONS = {
    "type": lambda editor, count: editor.type_source(count),
    "through": type_through,
    "past": type_past_the_end,
    "backspace": backspace,
    "accept": accept,
    "jump": jump,
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
    uri = f"file:///work/session_{next(_documents)}.py"
    text = SOURCE[:BLOCK_START] + SOURCE[BLOCK_END:]
    open_document(lsp, uri, text)
    editor = Editor(lsp, uri, text, BLOCK_START)
    for action, count in [("type", 3), *steps]:
        ACTIONS[action](editor, count)
        editor.send()
        editor.collect()
    status = lsp.request("replitLsp/status", {"textDocument": {"uri": uri}})["result"]
    digest = hashlib.sha256(editor.text.encode("utf-8", "surrogatepass")).hexdigest()
    assert status["document"]["sha256"] == digest
    assert editor.answered > 0
    lsp.notify("textDocument/didClose", {"textDocument": {"uri": uri}})


def finished_records(lsp: RawLsp, since: int, count: int) -> list[dict[str, Any]]:
    """The statistics of the next `count` completions to finish after record `since`."""
    deadline = time.monotonic() + ANSWER_TIMEOUT
    while len(records := lsp.request("replitLsp/completions", {"since": since})["result"]) < count:
        assert time.monotonic() < deadline, records
        time.sleep(0.05)
    return records


def test_a_request_that_outlasts_its_limit_is_answered_empty_and_stops(lsp: RawLsp) -> None:
    """With a limit no generation meets, the answer is an empty list instead of none, and the
    generation stops; the next request, with time enough, runs to its end."""
    uri = f"file:///work/session_{next(_documents)}.py"
    text = SOURCE[:BLOCK_START]
    open_document(lsp, uri, text)
    where = utf16_position(text, len(text))
    params = inline_params(uri, where["line"], where["character"])
    since = lsp.request("replitLsp/status")["result"]["completions"]
    lsp.notify("workspace/didChangeConfiguration", {"settings": {"answerTimeoutSeconds": 1e-6}})
    try:
        assert lsp.request("textDocument/inlineCompletion", params)["result"] == {"items": []}
        assert any("had no result after" in message for message in lsp.log_messages())
        assert finished_records(lsp, since, 1)[0]["finish"] == "cancelled"
    finally:
        lsp.notify("workspace/didChangeConfiguration", {"settings": {"answerTimeoutSeconds": 60}})
    assert "result" in lsp.request("textDocument/inlineCompletion", params)
    assert finished_records(lsp, since, 2)[1]["finish"] != "cancelled"
    lsp.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
