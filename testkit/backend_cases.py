"""The documents and cursors at which the tests of a team's server (llama.cpp, vLLM) compare
the language server's suggestions with the local engine's."""

from __future__ import annotations

from pytest_lsp import LanguageClient

from model.engine.engine import Engine
from testkit.lsp_client import (
    FIBONACCI,
    complete,
    completion_text,
    engine_completion,
    open_document,
    status,
)

LIST_FILES = "import os\n\n\ndef list_files(path):\n    "
# (document, line, character), with their test ids.
CURSORS = [
    (LIST_FILES, 4, 4),
    (FIBONACCI, 3, len("def fibonacci(n):")),
    (FIBONACCI, 5, len("    if n < 2:")),
    (FIBONACCI, 7, len("    return fibonacci(")),
]
CURSOR_IDS = ["body", "def", "if", "call"]

# The bundled demo model writes past LONG_TOKENS tokens at the end of this document.
LONG_DOCUMENT = "def main():\n    print("
LONG_CURSOR = (1, len("    print("))
LONG_TOKENS = 128


def text_before(document: str, line: int, character: int) -> str:
    """The document up to the cursor: the prompt of a short document."""
    lines = document.split("\n")
    return "\n".join(lines[:line] + [lines[line][:character]])


async def assert_suggestion_is_the_local_engines(
    client: LanguageClient, engine: Engine, backend: str, document: str, line: int, character: int
) -> None:
    """The language server over `backend` suggests what `engine` completes locally, and the
    backend is still reported ready."""
    uri = f"file:///work/{backend}_{line}_{character}.py"
    open_document(client, uri, document)
    result = await complete(client, uri, line, character)
    assert completion_text(result) == engine_completion(engine, document, line, character)
    assert (await status(client)).state == "ready"
