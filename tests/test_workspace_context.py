"""Context from the rest of the workspace: what may be read, what is chosen, and that it stays
put between keystrokes, first as parts, then through the real server over stdio."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lsp_server.context.provider import ContextOptions, SourceText, WorkspaceContext
from lsp_server.context.snippets import Snippet
from lsp_server.context.workspace import Workspace, definitions_in, imported_files
from testkit.editor import Editor
from testkit.raw_lsp import RawLsp
from testkit.servers import lsp_server_command

SHAPES = '''"""Shapes."""
import math


def area_of_circle(radius):
    """The area of a circle."""
    return math.pi * radius ** 2


def perimeter_of_square(side):
    return 4 * side
'''
MAIN = """from lib.shapes import area_of_circle


def report(radius):
    area = area_of_circle(radius)
    print("area", area)
    return """
HELPERS = '''def format_area(area):
    """Two decimals and the unit."""
    return f"{area:.2f} m2"
'''


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "lib").mkdir(parents=True)
    (root / "lib" / "__init__.py").write_text("")
    (root / "lib" / "shapes.py").write_text(SHAPES)
    (root / "main.py").write_text(MAIN)
    (root / "helpers.py").write_text(HELPERS)
    # Never to be read: a secret, a git-ignored file and a link out of the workspace, each
    # defining the name the cursor uses.
    (root / ".env").write_text("def area_of_circle(radius):\n    API_KEY = 'hunter2'\n")
    (root / ".gitignore").write_text("generated/\n")
    (root / "generated").mkdir()
    (root / "generated" / "copy.py").write_text("def area_of_circle(r):\n    return 'GENERATED'\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "leak.py").write_text("def area_of_circle(r):\n    return 'OUTSIDE'\n")
    os.symlink(outside, root / "linked")
    os.mkfifo(root / "pipe.py")  # reading it would block for ever
    return root


def tokens(text: str) -> int:
    return len(text) // 4 + 1


def source(root: Path, name: str, text: str | None = None) -> SourceText:
    path = root / name
    return SourceText(path.as_uri(), path, path.read_text() if text is None else text)


# ------------------------------------------------------------------------------ parts


def test_only_workspace_files_that_are_not_excluded_are_read(workspace: Path) -> None:
    files = Workspace([workspace], exclude=("helpers.py",))
    readable = {path.relative_to(workspace).as_posix() for path in files.source_files()}
    assert readable == {"lib/__init__.py", "lib/shapes.py", "main.py"}
    for name in (".env", "generated/copy.py", "linked/leak.py", "helpers.py", "pipe.py"):
        assert files.read(workspace / name) is None, name
    assert files.read(workspace / "main.py") == MAIN


def test_definitions_are_found_in_several_languages() -> None:
    text = (
        "def one():\n    pass\nclass Two:\n    x = 1\nexport async function three() {}\n"
        "func four() {}\npub fn five() {}\nSIX = 6\nconst seven = () => 7\n"
    )
    names = [name for name, _ in definitions_in(text)]
    assert names == ["one", "Two", "three", "four", "five", "seven", "SIX"]
    assert dict(definitions_in(text))["four"] == 5


def test_imports_resolve_to_workspace_files(workspace: Path) -> None:
    files = Workspace([workspace])
    found = imported_files(MAIN, workspace / "main.py", files)
    assert found == {(workspace / "lib" / "shapes.py").resolve()}
    relative = imported_files("from .shapes import x\n", workspace / "lib" / "other.py", files)
    assert relative == {(workspace / "lib" / "shapes.py").resolve()}


def test_the_definition_of_a_name_near_the_cursor_comes_first_and_fits(workspace: Path) -> None:
    context = WorkspaceContext()
    context.set_folders([workspace], ())
    context.index.build(context.workspace)
    main = source(workspace, "main.py")
    others = [main, source(workspace, "helpers.py")]
    options = ContextOptions(tokens=1000)
    block = context.choose(main, MAIN, others, options, "python", tokens)
    assert block.labels[0].startswith("helpers.py:")
    assert "lib/shapes.py:5-7" in block.labels
    assert "def area_of_circle(radius):" in block.text
    for secret in ("hunter2", "GENERATED", "OUTSIDE"):
        assert secret not in block.text
    small = context.choose(main, MAIN, others, ContextOptions(tokens=30), "python", tokens)
    assert tokens(small.text) <= 30
    assert small.labels == ("lib/shapes.py:5-7",)  # the definition before the window
    off = ContextOptions(tokens=1000, definitions=False, open_documents=False)
    assert context.choose(main, MAIN, others, off, "python", tokens).labels == ()


def test_an_excluded_open_document_is_never_quoted(workspace: Path) -> None:
    context = WorkspaceContext()
    context.set_folders([workspace], ())
    main = source(workspace, "main.py")
    secret = source(workspace, ".env")
    options = ContextOptions(tokens=1000, definitions=False)
    assert context.choose(main, MAIN, [main, secret], options, "python", tokens).labels == ()


def test_snippets_are_ordered_by_place_whatever_their_rank() -> None:
    a = Snippet("b.py", 10, "x\n")
    b = Snippet("a.py", 3, "y\n")
    assert not a.overlaps(b)
    assert WorkspaceContext._fill([a, b], 100, "python", tokens).labels == (
        "a.py:4-4",
        "b.py:11-11",
    )


# ------------------------------------------------------------------- real server


@pytest.fixture
def server(tiny_model_dir: Path, workspace: Path) -> Iterator[RawLsp]:
    lsp = RawLsp(lsp_server_command(tiny_model_dir))
    answer = lsp.request(
        "initialize",
        {
            "processId": None,
            "rootUri": workspace.as_uri(),
            "capabilities": {},
            "initializationOptions": {
                "maxNewTokens": 8,
                "contextTokens": 512,
                "contextIdleMs": 60_000,
            },
        },
    )
    assert "result" in answer, answer
    lsp.notify("initialized", {})
    lsp.wait_until_loaded()
    yield lsp
    lsp.request("shutdown")
    lsp.notify("exit")
    assert lsp.wait() == 0


def records(lsp: RawLsp, since: int, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 60
    while len(found := lsp.request("replitLsp/completions", {"since": since})["result"]) < count:
        assert time.monotonic() < deadline, found
        time.sleep(0.05)
    return found


def test_the_server_puts_other_files_ahead_and_keeps_them_while_typing(
    server: RawLsp, workspace: Path
) -> None:
    helpers = Editor.open(server, (workspace / "helpers.py").as_uri(), HELPERS, 0)
    Editor.open(server, (workspace / ".env").as_uri(), "API_KEY='hunter2'\n", 0)
    main = Editor.open(server, (workspace / "main.py").as_uri(), MAIN, len(MAIN), "format_area(")
    since = server.request("replitLsp/status")["result"]["completions"]
    main.send()
    main.collect()
    first = records(server, since, 1)[0]
    assert "lib/shapes.py:5-7" in first["context"]
    assert any(label.startswith("helpers.py:") for label in first["context"])
    assert not any(".env" in label or "generated" in label for label in first["context"])

    # Typing on, with another document changed in between: no pause, so the same context,
    # and the prompt extends the last one (its K/V reused, the context's included).
    helpers.insert("def area_report(radius):\n    return format_area(radius)\n\n\n")
    for _ in range(2):
        main.type(3)
        main.send()
        main.collect()
    typed = records(server, since, 3)[1:]
    for record in typed:
        assert record["context"] == first["context"]
    assert typed[1]["reused_tokens"] >= typed[0]["prompt_tokens"] - 2

    # After a pause the context is chosen again and sees the change.
    server.notify("workspace/didChangeConfiguration", {"settings": {"contextIdleMs": 0}})
    main.type(3)
    main.send()
    main.collect()
    assert records(server, since, 4)[3]["context"] != first["context"]
