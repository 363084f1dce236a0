"""Stop rules: how much of the generated text each front door releases, and when a
completion is over (the language server's completion rules, the HTTP endpoint's stop
strings, or none for the CLI)."""

from __future__ import annotations

from typing import Protocol


class StopRule(Protocol):
    """Decides, piece by piece, how much generated text to release and when to stop."""

    def feed(self, text: str) -> tuple[str, bool]:
        """The text that is safe to release now, and whether the completion is over."""
        ...

    def flush(self) -> str:
        """What was held back, once the model has stopped by itself."""
        ...


class NoStop:
    """Releases every piece at once; only the model's end of text or the length stops it."""

    def feed(self, text: str) -> tuple[str, bool]:
        return text, False

    def flush(self) -> str:
        return ""


class StopStrings:
    """Cuts generated text before the first stop string, even one split across tokens.

    Text that could be the beginning of a stop string is held back until the next piece shows
    whether it is one, so no part of a stop string is ever released.
    """

    def __init__(self, stops: list[str]) -> None:
        self._stops = stops
        self._pending = ""

    def feed(self, text: str) -> tuple[str, bool]:
        self._pending += text
        cut = min((i for s in self._stops if (i := self._pending.find(s)) >= 0), default=-1)
        if cut >= 0:
            out, self._pending = self._pending[:cut], ""
            return out, True
        hold = self._held_length()
        out = self._pending[: len(self._pending) - hold]
        self._pending = self._pending[len(self._pending) - hold :]
        return out, False

    def _held_length(self) -> int:
        """The longest end of the pending text that a stop string starts with."""
        longest = max((len(s) for s in self._stops), default=1)
        for length in range(min(len(self._pending), longest - 1), 0, -1):
            tail = self._pending[-length:]
            if any(s.startswith(tail) for s in self._stops):
                return length
        return 0

    def flush(self) -> str:
        out, self._pending = self._pending, ""
        return out
