"""Why a generator did not give a completion, in words a user can act on.

Generators raise these; each front door words them once in its own terms (the HTTP
endpoint as a status with Retry-After, the language server as an empty answer and a log
line, the CLI as one sentence)."""

from __future__ import annotations


class GenerationError(RuntimeError):
    """A completion the generator could not give."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Unavailable(GenerationError):
    """The generator cannot generate now: its server is down, refuses the key, does not
    serve the model, or failed. Later requests try again."""


class Busy(GenerationError):
    """The generator is busy and has asked for `retry_after` seconds before the next try."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Refused(GenerationError):
    """This request was refused as it stands; it says nothing about the next one."""
