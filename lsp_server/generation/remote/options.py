"""How to reach a remote server and what to ask of it, as the command line and the editor's
settings give it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

API_KEY_ENV = "REPLIT_LSP_BACKEND_API_KEY"


def normalized_url(url: str) -> str:
    """The server's root: `http://host:8000`, `.../v1` and a trailing slash all name it."""
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"--backend-url must start with http:// or https://, got {url!r}")
    return url.removesuffix("/v1")


@dataclass(frozen=True)
class RemoteOptions:
    """The command line's defaults (`lsp_server/options.py`) fill what the user leaves out."""

    url: str
    max_length: int  # the remote's context, prompt and completion tokens
    slots: int  # completions streaming at once
    read_timeout: float  # between two pieces of a stream
    api_key: str | None = None
    model: str | None = None  # None: the first model the server lists
    tokenizer_dir: Path | None = None  # None: budget the prompt in characters
    connect_timeout: float = 3.0
    # Added to every request (--backend-fields), over the sampling fields the client sets.
    extra_fields: Mapping[str, Any] = field(default_factory=dict)
