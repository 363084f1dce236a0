"""Long typing sessions: every keystroke's request is answered, and both copies agree.

The reported sessions: a dozen lines in the middle of a standard-library file removed, then
retyped at the same place a few characters per incremental `didChange`, each followed by an
`inlineCompletion` at the new cursor and awaited, on the bundled demo model with
`--max-length 1024`: the prompt then fills the context, its window slides as lines are typed,
suggestions are typed through, and the engine's cache slots are reused with every length of
shared prefix. The request after such a keystroke was once never answered.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
from pathlib import Path
from types import ModuleType

import pytest

from testkit.raw_lsp import RawLsp, completion_text, inline_params, open_document
from testkit.servers import server_command

DEMO_DIR = Path(__file__).resolve().parents[1] / "model" / "assets" / "replit-code-demo"
# (module, first and last line retyped, one-based and inclusive, characters per didChange)
SESSIONS = [(argparse, 1201, 1212, 3), (shutil, 706, 717, 2)]


def end_position(text: str) -> dict[str, int]:
    """Where the cursor is after typing `text` (ASCII, `\\n` lines): LSP line and character."""
    lines = text.split("\n")
    return {"line": len(lines) - 1, "character": len(lines[-1])}


@pytest.mark.skipif(
    not (DEMO_DIR / "config.json").is_file(), reason="the bundled demo model is not built"
)
@pytest.mark.parametrize(
    ("module", "first", "last", "keystroke"), SESSIONS, ids=[s[0].__name__ for s in SESSIONS]
)
def test_retyping_twelve_lines_answers_every_keystroke(
    module: ModuleType, first: int, last: int, keystroke: int
) -> None:
    source = Path(str(module.__file__)).read_text()
    assert source.isascii()
    lines = source.split("\n")
    head = "\n".join(lines[: first - 1]) + "\n"
    removed = "\n".join(lines[first - 1 : last]) + "\n"
    tail = "\n".join(lines[last:])
    lsp = RawLsp(server_command(DEMO_DIR, "--stdio", max_length=1024))
    try:
        lsp.initialize()
        lsp.wait_until_loaded()
        uri = f"file:///work/{module.__name__}_copy.py"
        open_document(lsp, uri, head + tail)
        typed = ""
        for version, start in enumerate(range(0, len(removed), keystroke), start=2):
            where = end_position(head + typed)
            typed += removed[start : start + keystroke]
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
