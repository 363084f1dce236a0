"""The suggestions a document made recently, each with the text before the cursor it was made
for, so that a request can be answered with no model run: backspace, undo and re-trigger come
back to a text one was made for, and typing what one says extends it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass


def typed_since(origin: str, origin_header: str, text_before: str, header: str) -> str | None:
    """What was typed to go from the text before the cursor `origin` to `text_before`, with
    the same `header` ahead of both in the prompt; None when the prompt changed otherwise."""
    if header != origin_header or not text_before.startswith(origin):
        return None
    return text_before[len(origin) :]


@dataclass(frozen=True)
class Suggestion:
    """A completion made at `text_before` with `header` (workspace context and path line)
    ahead of it in the prompt."""

    text_before: str
    header: str
    text: str

    def rest_after(self, text_before: str, header: str) -> str | None:
        """What is left of the suggestion once the text before the cursor is `text_before`:
        all of it when nothing was typed since, the rest when a prefix of it was typed, and
        None when the prompt differs in any other way or the whole suggestion was typed."""
        typed = typed_since(self.text_before, self.header, text_before, header)
        if typed is None or len(typed) >= len(self.text) or not self.text.startswith(typed):
            return None
        return self.text[len(typed) :]


@dataclass(frozen=True)
class Remembered:
    """An answer from memory: the text to show, and whether the user typed part of the
    suggestion since it was made."""

    text: str
    typed_through: bool


class RecentSuggestions:
    """The last suggestions of one document, newest last; safe to use from any thread (the
    workers add the suggestions they finish, the event loop looks them up)."""

    def __init__(self) -> None:
        self._items: list[Suggestion] = []
        self._lock = threading.Lock()

    def add(self, suggestion: Suggestion, keep: int) -> None:
        """Remembers `suggestion` in place of any made for the same prompt, keeping the newest
        `keep` (at least the last one, which the user may be typing through)."""
        with self._lock:
            items = [
                item
                for item in self._items
                if (item.text_before, item.header) != (suggestion.text_before, suggestion.header)
            ]
            items.append(suggestion)
            self._items = items[-max(keep, 1) :]

    def answer(self, text_before: str, header: str, keep: int) -> Remembered | None:
        """The newest suggestion's rest for this prompt. With `keep` 0 only the last
        suggestion is looked at, and only while the user types through it."""
        with self._lock:
            items = self._items[-max(keep, 1) :]
        for item in reversed(items):
            rest = item.rest_after(text_before, header)
            typed = len(text_before) > len(item.text_before)
            if rest and (typed or keep > 0):
                return Remembered(rest, typed)
        return None

    @property
    def last_text(self) -> str:
        """The newest suggestion, empty when there is none: drafts may copy from it."""
        with self._lock:
            return self._items[-1].text if self._items else ""
