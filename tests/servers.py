"""How the tests start the language server: as editors do, from this interpreter."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.conftest import TINY_MAX_LENGTH


def lsp_server_command(model_dir: Path, *extra: str) -> list[str]:
    """`replit-lsp --stdio` on `model_dir` with the tests' context length."""
    return [
        sys.executable,
        "-m",
        "lsp_server.cli",
        "--stdio",
        "--weight-path",
        str(model_dir),
        "--max-length",
        str(TINY_MAX_LENGTH),
        *extra,
    ]
