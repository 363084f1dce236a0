"""A long typing session: every keystroke's request is answered, and both copies agree.

The reported session: `argparse.py` with lines 1201-1212 removed, retyped at the same place
three characters per incremental `didChange`, each followed by an `inlineCompletion` at the new
cursor and awaited, on the bundled demo model with `--max-length 1024`: the prompt then fills
the context, its window slides as lines are typed, and the engine's cache slots are reused
with every length of shared prefix. The request after one keystroke was once never answered.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import pytest

from testkit.raw_lsp import RawLsp, completion_text, inline_params, open_document
from testkit.servers import server_command

DEMO_DIR = Path(__file__).resolve().parents[1] / "model" / "assets" / "replit-code-demo"
FIRST, LAST = 1201, 1212  # one-based, inclusive
KEYSTROKE = 3  # characters per didChange


def end_position(text: str) -> dict[str, int]:
    """Where the cursor is after typing `text` (ASCII, `\\n` lines): LSP line and character."""
    lines = text.split("\n")
    return {"line": len(lines) - 1, "character": len(lines[-1])}


@pytest.mark.skipif(
    not (DEMO_DIR / "config.json").is_file(), reason="the bundled demo model is not built"
)
def test_retyping_twelve_lines_of_argparse_answers_every_keystroke() -> None:
    source = Path(argparse.__file__).read_text()
    assert source.isascii()
    lines = source.split("\n")
    head = "\n".join(lines[: FIRST - 1]) + "\n"
    removed = "\n".join(lines[FIRST - 1 : LAST]) + "\n"
    tail = "\n".join(lines[LAST:])
    lsp = RawLsp(server_command(DEMO_DIR, "--stdio", max_length=1024))
    try:
        lsp.initialize()
        lsp.wait_until_loaded()
        uri = "file:///work/argparse_copy.py"
        open_document(lsp, uri, head + tail)
        typed = ""
        for version, start in enumerate(range(0, len(removed), KEYSTROKE), start=2):
            where = end_position(head + typed)
            typed += removed[start : start + KEYSTROKE]
            change = {"range": {"start": where, "end": where}, "text": typed[start:]}
            lsp.notify(
                "textDocument/didChange",
                {"textDocument": {"uri": uri, "version": version}, "contentChanges": [change]},
            )
            cursor = end_position(head + typed)
            answer = lsp.request(
                "textDocument/inlineCompletion",
                inline_params(uri, cursor["line"], cursor["character"]),
                timeout=120,
            )
            completion_text(answer)  # a completion list, not an error
            status = lsp.request("replitLsp/status", {"textDocument": {"uri": uri}})["result"]
            text = head + typed + tail
            assert status["document"]["sha256"] == hashlib.sha256(text.encode()).hexdigest(), (
                f"the copies differ after keystroke {version - 1} at {cursor}"
            )
        assert typed == removed
        lsp.request("shutdown")
        lsp.notify("exit")
        assert lsp.wait() == 0
    finally:
        lsp.stop()
