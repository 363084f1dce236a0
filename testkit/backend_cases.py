"""The documents and cursors at which the tests of a team's server (llama.cpp, vLLM) compare
the language server's suggestions with the local engine's."""

from __future__ import annotations

from testkit.lsp_client import FIBONACCI

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
