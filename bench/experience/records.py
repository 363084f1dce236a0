"""Which of the server's completion records (`replitLsp/completions`) belongs to which request.

An answer from the document's recent suggestions ("cached", "typed through") or from a
suggestion already being generated ("joined") is recorded before it is sent; a generation
when it ends, which is after the answer when the server answered at its time budget with the
complete lines so far. The client reads the records right after each answer without waiting,
so that it types on at once as a person does, and gives a generation's record that comes
later to the earliest request at its place still without one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

BEFORE_THE_ANSWER = ("cached", "typed through", "joined")
NO_MODEL_RUN = ("cached", "typed through")
PREWARM = "prewarm"  # "prewarm" or "prewarm stopped": a prompt computed where the cursor rests
FIELDS = ("finish", "prompt_tokens", "reused_tokens", "generated_tokens", "milliseconds")
POLL_SECONDS = 0.05

Record = dict[str, Any]


def at_place(record: Record, uri: str, position: dict[str, int]) -> bool:
    where = (record["uri"], record["line"], record["character"])
    return where == (uri, position["line"], position["character"])


def without_model_run(keystroke: dict[str, Any]) -> bool:
    """Whether a request was answered with no graph run, or from the recent suggestions."""
    record = keystroke["record"]
    return keystroke["graph_runs"] == 0 or (record is not None and record["finish"] in NO_MODEL_RUN)


class RequestRecords:
    """The records of one document's requests, read with `read` (the new ones each call)."""

    def __init__(self, read: Callable[[], list[Record]], uri: str) -> None:
        self._read = read
        self.uri = uri
        self._waiting: list[tuple[dict[str, int], dict[str, Any]]] = []  # (position, request)
        self.others: list[Record] = []  # no request's: pre-warms, suggestions started ahead

    def _new(self) -> list[Record]:
        """The new records, less the late ones, which go to the requests waiting for them."""
        left = []
        for record in self._read():
            waiting = None
            if not record["finish"].startswith((PREWARM, *BEFORE_THE_ANSWER)):
                waiting = next((w for w in self._waiting if at_place(record, self.uri, w[0])), None)
            if waiting is None:
                left.append(record)
                continue
            self._waiting.remove(waiting)
            waiting[1]["record"] = {name: record[name] for name in FIELDS}
        return left

    def give(self, request: dict[str, Any], position: dict[str, int]) -> None:
        """Sets `request["record"]`: the record of the request just answered at `position`,
        or None until it comes."""
        records = self._new()
        mine = next(
            (
                r
                for r in records
                if at_place(r, self.uri, position) and not r["finish"].startswith(PREWARM)
            ),
            None,
        )
        request["record"] = None if mine is None else {name: mine[name] for name in FIELDS}
        if mine is None:
            self._waiting.append((position, request))
        self.others += [r for r in records if r is not mine]

    def wait(self, limit: float) -> None:
        """Waits for the records still to come, at most `limit` seconds."""
        deadline = time.monotonic() + limit
        while self._waiting and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
            self.others += self._new()
