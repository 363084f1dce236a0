"""What became of the suggestions: how many were shown, accepted or partly accepted, and how
long they took to come.

Each inline completion item carries a `command` (LSP 3.18) that the editor runs when the user
accepts the item, with the item's id as its argument; editors that accept a word or a line
send the partial command the same way. These numbers say whether completions help (an
acceptance rate near zero means they only get in the way), so they are shown in
`replitLsp/status`, `/health` and the debug log, and by both editor clients.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lsprotocol import types

log = logging.getLogger("replit_lsp.lsp")

ACCEPT_COMMAND = "replitLsp.didAcceptSuggestion"
PARTIAL_ACCEPT_COMMAND = "replitLsp.didPartiallyAcceptSuggestion"

# Ids of the latest suggestions kept to match acceptances against: an editor accepts only what
# it shows now, so older ones can be forgotten.
REMEMBERED = 256


class Feedback:
    """Counts for the process, shared by its front doors; safe to use from any thread."""

    def __init__(self) -> None:
        self.shown = 0
        self.accepted = 0
        self.partially_accepted = 0
        self._latency_seconds = 0.0
        self._ids = itertools.count(1)
        # id -> whether it was already counted as accepted / partially accepted
        self._recent: OrderedDict[str, set[str]] = OrderedDict()
        self._lock = threading.Lock()

    def shown_item(self, latency_seconds: float) -> types.Command:
        """Records a suggestion sent to the editor; returns the command that reports its
        acceptance."""
        # Imported here: only the language server shows items, and lsprotocol's types are a
        # large part of the imports of every start, `replit-lsp --prompt`'s included.
        from lsprotocol import types

        with self._lock:
            suggestion_id = str(next(self._ids))
            self.shown += 1
            self._latency_seconds += latency_seconds
            self._recent[suggestion_id] = set()
            while len(self._recent) > REMEMBERED:
                self._recent.popitem(last=False)
        return types.Command(
            title="Accept suggestion", command=ACCEPT_COMMAND, arguments=[suggestion_id]
        )

    def accept(self, suggestion_id: str, partial: bool = False) -> None:
        """Records an acceptance (whole, or a word or line of it); each suggestion counts once
        per kind, and an id this process did not hand out recently not at all."""
        kind = "in part" if partial else "whole"
        with self._lock:
            counted = self._recent.get(str(suggestion_id))
            if counted is None or kind in counted:
                return
            counted.add(kind)
            if partial:
                self.partially_accepted += 1
            else:
                self.accepted += 1
        log.debug("suggestion %s accepted %s: %s", suggestion_id, kind, self)

    def snapshot(self) -> dict[str, Any]:
        """The counts, and the mean time from request to suggestion, in milliseconds."""
        with self._lock:
            mean = 1000 * self._latency_seconds / self.shown if self.shown else None
            return {
                "shown": self.shown,
                "accepted": self.accepted,
                "partially_accepted": self.partially_accepted,
                "mean_latency_ms": None if mean is None else round(mean, 1),
            }

    def __str__(self) -> str:
        counts = self.snapshot()
        mean = counts["mean_latency_ms"]
        return (
            f"{counts['accepted']} of {counts['shown']} suggestions accepted, "
            f"{counts['partially_accepted']} in part, mean latency "
            + ("-" if mean is None else f"{mean:.0f} ms")
        )
