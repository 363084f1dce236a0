"""One trace through one server process, as an editor drives it over stdio.

The client waits for each answer before it types on, and times each request from the moment
it is sent to its answer. Around each request it reads the engine's counters
(`replitLsp/status`), and the server's own record of the request (`bench.experience.records`):
how it finished and what it reused and generated.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

from bench.experience.records import (
    POLL_SECONDS,
    PREWARM,
    Record,
    RequestRecords,
    at_place,
)
from bench.experience.traces import Step, Trace
from testkit.editor import Editor, utf16_position
from testkit.raw_lsp import RawLsp
from testkit.servers import server_command

ANSWER_LIMIT = 900.0  # seconds; a full-size suggestion takes tens of them
LOAD_LIMIT = 1800.0  # seconds; the first start of a full-size model compiles it
COUNTERS = ("graph_runs", "computed_tokens")
LATE_RECORDS_LIMIT = 60.0  # seconds a trace's end waits for the records of its generations


def default_server(model_dir: Path, encoding: str, max_length: int) -> list[str]:
    """`replit-lsp --stdio` on `model_dir` in `encoding` with the server's own defaults, as
    an editor user gets it (the client's settings override them)."""
    return server_command(
        model_dir,
        "--stdio",
        "--quantization-encoding",
        encoding,
        max_length=max_length,
        context_tokens=None,
        recent_suggestions=None,
        time_budget_ms=None,
    )


def place(text: str, cursor: int) -> str:
    """A short digest of the document and the cursor: equal where two runs asked at the same
    text."""
    return hashlib.sha1(f"{cursor}\0{text}".encode()).hexdigest()[:16]


class Session:
    """A server started with the client's `settings`, loaded, and the records read so far."""

    def __init__(self, command: list[str], settings: dict[str, Any]) -> None:
        started = time.perf_counter()
        self.lsp = RawLsp(command)
        self.lsp.initialize({"replitLsp": settings})
        self.lsp.wait_until_loaded(LOAD_LIMIT)
        self.load_seconds = time.perf_counter() - started
        self.seen = 0  # the sequence number of the last completion record read

    def counters(self) -> dict[str, int]:
        status = self.lsp.request("replitLsp/status")["result"]
        return {name: status[name] for name in COUNTERS}

    def records(self) -> list[Record]:
        """The completion records the server added since the last call."""
        new = self.lsp.request("replitLsp/completions", {"since": self.seen})["result"]
        self.seen = new[-1]["sequence"] if new else self.seen
        return new

    def close(self) -> int:
        """Shuts the server down; its exit status."""
        try:
            self.lsp.request("shutdown")
            self.lsp.notify("exit")
            return self.lsp.wait()
        finally:
            self.lsp.stop()


def wait_for_prewarm(
    session: Session, uri: str, position: dict[str, int], limit: float
) -> tuple[float, Record | None]:
    """Waits until the server records a pre-warm at `position`, at most `limit` seconds; the
    seconds waited and the record."""
    started = time.perf_counter()
    while (waited := time.perf_counter() - started) < limit:
        for record in session.records():
            if record["finish"].startswith(PREWARM) and at_place(record, uri, position):
                return waited, record
        time.sleep(POLL_SECONDS)
    return limit, None


def pause_for_prewarm(
    session: Session, uri: str, position: dict[str, int], pause: float | None, limit: float
) -> tuple[float, Record | None]:
    """The person pauses: for `pause` seconds, or (None) until the server records a pre-warm
    at `position`, at most `limit`. The seconds paused, and the last pre-warm recorded."""
    if pause is None:
        return wait_for_prewarm(session, uri, position, limit)
    time.sleep(pause)
    prewarms = [r for r in session.records() if r["finish"].startswith(PREWARM)]
    return pause, prewarms[-1] if prewarms else None


def ask(session: Session, editor: Editor, action: str, records: RequestRecords) -> dict[str, Any]:
    """One request at the cursor, answered, with what it cost."""
    position = utf16_position(editor.text, editor.cursor)
    at = place(editor.text, editor.cursor)
    before = session.counters()
    editor.send()
    editor.collect(ANSWER_LIMIT)
    milliseconds = 1000 * editor.seconds[-1]
    after = session.counters()
    request = {
        "action": action,
        "ms": milliseconds,
        **{name: after[name] - before[name] for name in COUNTERS},
        "at": at,
        "answer": editor.shown,
    }
    records.give(request, position)
    return request


def act(editor: Editor, step: Step) -> None:
    """Does what `step` says."""
    if step.action in ("type", "retype"):
        editor.type(step.count)
    elif step.action == "type through":
        if editor.shown:
            editor.type_through(step.count)
        else:
            editor.type(step.count)
    elif step.action == "backspace":
        removed = editor.text[max(0, editor.cursor - step.count) : editor.cursor]
        editor.backspace(step.count)
        editor.to_type = removed + editor.to_type  # typed again by the steps after it
    elif step.action == "accept":
        editor.accept()


def run_trace(
    session: Session, trace: Trace, pause: float | None, pause_limit: float, gap: float = 0.0
) -> dict[str, Any]:
    """Drives `trace` in a document of its own, each step `gap` seconds after the one before
    (the request after taking a suggestion is "after accept"). With `trace.jump`, the client
    says where the cursor rests and pauses: for `pause` seconds, or (None) until the server
    has pre-warmed there, at most `pause_limit`."""
    uri = f"file:///experience/{trace.name}/{trace.file}"
    editor = Editor.open(session.lsp, uri, trace.text, trace.cursor, trace.to_type)
    result: dict[str, Any] = {"load_seconds": session.load_seconds}
    if trace.jump:
        position = utf16_position(editor.text, editor.cursor)
        editor.rest()
        result["pause_seconds"], result["prewarm"] = pause_for_prewarm(
            session, uri, position, pause, pause_limit
        )
    records = RequestRecords(session.records, uri)
    keystrokes = []
    accepted = False
    for step in trace.steps:
        if step.action == "accept" and not editor.shown:
            continue  # nothing to take
        time.sleep(gap)
        act(editor, step)
        if step.action == "accept":
            accepted = True
            continue
        action = "after accept" if accepted else step.action
        keystrokes.append(ask(session, editor, action, records))
        accepted = False
    records.wait(LATE_RECORDS_LIMIT)
    editor.close()
    return result | {"keystrokes": keystrokes, "other_records": records.others}
