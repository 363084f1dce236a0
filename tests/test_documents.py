"""The server's copy of a document against the client's, through storms of incremental edits.

The client's copy is kept here by an independent model written from the LSP specification:
a line ends at `\\n`, `\\r\\n` or `\\r` and nowhere else; a position's character counts code
units of the negotiated encoding; a character past the end of its line means the line's end.
(Where the specification leaves a case open, this server's documented choice: a line past
the last one means the end of the document, a position inside a character means its start,
and a range given end first covers the same span.) After each storm the server's digest
(`replitLsp/status` with the document) must equal the model's text.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from testkit.lsp_client import MAX_NEW_TOKENS, expected_completion
from testkit.raw_lsp import RawLsp, completion_text, inline_params, open_document
from testkit.reference import ReferenceMPT
from testkit.robustness import robustness
from testkit.servers import lsp_server_command

# Every character that some line-splitting function treats as a line break, and characters
# that take 2 (UTF-16) or up to 4 (UTF-8) code units.
ALPHABET = "ab \t\n\r\f\v\x1c\x1d\x1e\x85\u2028\u2029é€😀\x00\ud800"
BREAK = re.compile("\r\n|\r|\n")


# ------------------------------------------------------------------- the model


def code_units(char: str, encoding: str) -> int:
    if encoding == "utf-8":
        return len(char.encode("utf-8", "surrogatepass"))
    if encoding == "utf-16":
        return len(char.encode("utf-16-le", "surrogatepass")) // 2
    return 1


def model_offset(text: str, line: int, character: int, encoding: str) -> int:
    starts = [0] + [m.end() for m in BREAK.finditer(text)]
    if line >= len(starts):
        return len(text)
    index = starts[line]
    match = BREAK.search(text, index)
    end = match.start() if match else len(text)
    used = 0
    while index < end and used + code_units(text[index], encoding) <= character:
        used += code_units(text[index], encoding)
        index += 1
    return index


def model_apply(text: str, change: dict[str, Any], encoding: str) -> str:
    if "range" not in change:
        return change["text"]
    start, end = (
        model_offset(text, change["range"][side]["line"], change["range"][side]["character"],
                     encoding)
        for side in ("start", "end")
    )  # fmt: skip
    start, end = min(start, end), max(start, end)
    return text[:start] + change["text"] + text[end:]


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def test_the_model_follows_the_specification() -> None:
    """The model's own rules, on cases worked out by hand from the specification."""
    text = "a\fb\r\nc\u2028d\re😀f"
    assert model_offset(text, 1, 0, "utf-16") == text.index("c")
    assert model_offset(text, 1, 99, "utf-16") == text.index("\r", 4)  # clamped to line 1's end
    assert model_offset(text, 2, 1, "utf-16") == text.index("😀")
    assert model_offset(text, 2, 2, "utf-16") == text.index("😀")  # inside the pair
    assert model_offset(text, 2, 3, "utf-16") == text.index("f")
    assert model_offset(text, 2, 5, "utf-8") == text.index("f")
    assert model_offset(text, 9, 0, "utf-32") == len(text)


# ------------------------------------------------------------------- the servers


@pytest.fixture(scope="module", params=["utf-16", "utf-8", "utf-32"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
    tuple[RawLsp, str]
]:  # fmt: skip
    """A server that negotiated `encoding`; document sync needs no model, so none loads."""
    encoding = request.param
    lsp = RawLsp(lsp_server_command(tmp_path_factory.mktemp("docs") / "no-model"))
    answer = lsp.request(
        "initialize",
        {"processId": None, "rootUri": None,
         "capabilities": {"general": {"positionEncodings": [encoding]}}},
    )  # fmt: skip
    assert answer["result"]["capabilities"]["positionEncoding"] == encoding
    yield lsp, encoding
    lsp.stop()


def server_digest(lsp: RawLsp, uri: str) -> dict[str, Any]:
    answer = lsp.request("replitLsp/status", {"textDocument": {"uri": uri}})
    return answer["result"]["document"]


positions = st.fixed_dictionaries(
    {"line": st.integers(0, 12), "character": st.integers(0, 12) | st.integers(0, 2**31 - 1)}
)
changes = st.one_of(
    st.fixed_dictionaries(
        {
            "range": st.fixed_dictionaries({"start": positions, "end": positions}),
            "text": st.text(ALPHABET, max_size=8),
        }
    ),  # fmt: skip
    st.fixed_dictionaries({"text": st.text(ALPHABET, max_size=30)}),
)
storms = st.lists(st.lists(changes, min_size=1, max_size=3), min_size=1, max_size=25)

_documents = iter(range(10**9))


@robustness()
@given(initial=st.text(ALPHABET, max_size=60), storm=storms)
def test_edit_storms_leave_both_copies_equal(
    server: tuple[RawLsp, str], initial: str, storm: list[list[dict[str, Any]]]
) -> None:
    """Each didChange carries one to three changes; all are sent without waiting."""
    lsp, encoding = server
    uri = f"file:///work/storm_{next(_documents)}.txt"
    open_document(lsp, uri, initial)
    text = initial
    for version, content_changes in enumerate(storm, start=2):
        params = {"textDocument": {"uri": uri, "version": version},
                  "contentChanges": content_changes}  # fmt: skip
        lsp.notify("textDocument/didChange", params)
        for change in content_changes:
            text = model_apply(text, change, encoding)
    theirs = server_digest(lsp, uri)
    lsp.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
    assert theirs == {"version": len(storm) + 1, "characters": len(text), "sha256": digest(text)}


# ------------------------------------------------------------ the reported cases


@pytest.fixture(scope="module")
def completing(tiny_model_dir: Path) -> Iterator[RawLsp]:
    lsp = RawLsp(lsp_server_command(tiny_model_dir))
    lsp.initialize({"maxNewTokens": MAX_NEW_TOKENS})
    lsp.wait_until_loaded()
    yield lsp
    lsp.stop()


def test_an_insert_past_the_end_of_a_line_goes_at_its_end(
    completing: RawLsp, tiny_model_dir: Path, tiny_reference: ReferenceMPT
) -> None:
    """Inserting " + 1" at (1, 100) once gave `return  + 1a`; the completion after it must be
    the reference model's continuation of the text the user has."""
    uri = "file:///work/past_the_end.py"
    open_document(completing, uri, "def f(a):\n    return a")
    where = {"line": 1, "character": 100}
    change = {"range": {"start": where, "end": where}, "text": " + 1"}
    completing.notify(
        "textDocument/didChange",
        {"textDocument": {"uri": uri, "version": 2}, "contentChanges": [change]},
    )
    expected = "def f(a):\n    return a + 1"
    assert server_digest(completing, uri)["sha256"] == digest(expected)
    answer = completing.request("textDocument/inlineCompletion", inline_params(uri, 1, 16))
    assert completion_text(answer) == expected_completion(
        tiny_model_dir, tiny_reference, expected, 1, 16
    )


@pytest.mark.parametrize("separator", ["\f", "\x0b", "\x1c", "\x1d", "\x1e", "\x85", "\u2028"])
def test_characters_that_are_not_line_breaks_keep_line_numbers(
    completing: RawLsp, tiny_model_dir: Path, tiny_reference: ReferenceMPT, separator: str
) -> None:
    """With a form feed (or U+2028...) on line 0, line 2 is still the third LSP line."""
    uri = f"file:///work/separator_{ord(separator)}.py"
    initial = f"import os{separator}import sys\n\ndef main():\n    pass\n"
    open_document(completing, uri, initial)
    where = {"line": 2, "character": 8}
    change = {"range": {"start": where, "end": where}, "text": "_loop"}
    completing.notify(
        "textDocument/didChange",
        {"textDocument": {"uri": uri, "version": 2}, "contentChanges": [change]},
    )
    expected = initial.replace("def main", "def main_loop")
    assert server_digest(completing, uri)["sha256"] == digest(expected)
    answer = completing.request("textDocument/inlineCompletion", inline_params(uri, 2, 13))
    assert completion_text(answer) == expected_completion(
        tiny_model_dir, tiny_reference, expected, 2, 13
    )
