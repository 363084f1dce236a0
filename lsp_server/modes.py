"""What one run of `replit-lsp` does, chosen once from the mode flags.

`--prompt` completes once; `--stdio` and `--tcp` are the language server's two transports;
`--serve` is the HTTP endpoint, alone or beside the language server, sharing its model. Any
other combination is refused with the reason rather than resolved by picking one.
"""

from __future__ import annotations

from enum import Enum

from lsp_server.options import flag


class Mode(Enum):
    PROMPT = "prompt"
    STDIO = "stdio"
    TCP = "tcp"
    SERVE = "serve"
    STDIO_SERVE = "stdio+serve"
    TCP_SERVE = "tcp+serve"

    @property
    def transport(self) -> str | None:
        """The language server's transport, "stdio" or "tcp"; None where none runs."""
        return next((part for part in self.value.split("+") if part in ("stdio", "tcp")), None)

    @property
    def serves_http(self) -> bool:
        return "serve" in self.value.split("+")


class ModeConflict(ValueError):
    """Mode flags that cannot run together; the message says why."""


class NoMode(ValueError):
    """No mode flag was given."""


def choose_mode(prompt: str | None, stdio: bool, tcp: bool, serve: bool) -> Mode:
    """The one mode the flags ask for (`prompt` is `--prompt`'s text, None when absent)."""
    if stdio and tcp:
        raise ModeConflict(
            f"{flag('stdio')} and {flag('tcp')} cannot be combined: "
            "the language server has one transport"
        )
    parts = [name for name, given in (("stdio", stdio), ("tcp", tcp), ("serve", serve)) if given]
    if prompt is not None:
        if parts:
            raise ModeConflict(
                f"{flag('prompt')} completes once and exits: give it without "
                f"{flag('stdio')}, {flag('tcp')} or {flag('serve')}"
            )
        return Mode.PROMPT
    if not parts:
        raise NoMode(
            f"give {flag('prompt')} TEXT, {flag('stdio')}, {flag('tcp')} or {flag('serve')}"
        )
    return Mode("+".join(parts))
