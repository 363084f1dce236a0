"""How the tests (and benchmarks) start the server: as editors do, from this interpreter."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.conftest import TINY_MAX_LENGTH


def server_command(
    model_dir: Path | str, *args: str, max_length: int = TINY_MAX_LENGTH
) -> list[str]:
    """`replit-lsp ARGS` on `model_dir`, with the tests' context length unless told otherwise."""
    return [
        sys.executable,
        "-m",
        "lsp_server.cli",
        *args,
        "--weight-path",
        str(model_dir),
        "--max-length",
        str(max_length),
    ]


def lsp_server_command(model_dir: Path, *extra: str) -> list[str]:
    """`replit-lsp --stdio` on `model_dir`."""
    return server_command(model_dir, "--stdio", *extra)
