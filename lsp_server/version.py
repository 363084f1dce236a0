"""The server's name and version, as the language server and `--help` report them."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

PACKAGE = "replit-lsp"


def package_version() -> str:
    """The installed package's version, which pyproject.toml sets; a source tree that was
    never installed has no metadata, and says so."""
    try:
        return version(PACKAGE)
    except PackageNotFoundError:
        return "0+unknown"
