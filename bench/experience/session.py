"""One trace through one server process, as an editor drives it over stdio.

The client waits for each answer before it types on, and times each request from the moment
it is sent to its answer. Around each request it reads the engine's counters
(`replitLsp/status`), and after it the server's own record of the request
(`replitLsp/completions`): how it finished and what it reused and generated.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from bench.experience.traces import Step, Trace
from testkit.editor import Editor, utf16_position
from testkit.raw_lsp import RawLsp

ANSWER_LIMIT = 900.0  # seconds; a full-size suggestion takes tens of them
LOAD_LIMIT = 1800.0  # seconds; the first start of a full-size model compiles it
COUNTERS = ("graph_runs", "computed_tokens")
# Record finishes of work no request asked for.
BACKGROUND = ("prewarm", "prefetch")
# Record finishes of answers the model did not run for.
NO_MODEL_RUN = ("cached", "typed through")
POLL_SECONDS = 0.05
RECORD_FIELDS = ("finish", "prompt_tokens", "reused_tokens", "generated_tokens", "milliseconds")


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

    def records(self) -> list[dict[str, Any]]:
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


def at_position(record: dict[str, Any], uri: str, position: dict[str, int]) -> bool:
    """Whether a completion record is for `position` in `uri`."""
    where = (record["uri"], record["line"], record["character"])
    return where == (uri, position["line"], position["character"])


def wait_for_prewarm(
    session: Session, uri: str, position: dict[str, int], limit: float
) -> tuple[float, dict[str, Any] | None]:
    """Waits until the server records a pre-warm at `position`, at most `limit` seconds; the
    seconds waited and the record."""
    started = time.perf_counter()
    while (waited := time.perf_counter() - started) < limit:
        for record in session.records():
            if record["finish"].startswith("prewarm") and at_position(record, uri, position):
                return waited, record
        time.sleep(POLL_SECONDS)
    return limit, None


def own_record(
    session: Session, uri: str, position: dict[str, int]
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The record of the request just answered at `position`, and those of background work
    that finished meanwhile. The record may follow the answer by a moment."""
    records: list[dict[str, Any]] = []
    deadline = time.monotonic() + 1.0
    while True:
        records += session.records()
        mine = [
            r
            for r in records
            if at_position(r, uri, position) and not r["finish"].startswith(BACKGROUND)
        ]
        if mine or time.monotonic() > deadline:
            others = [r for r in records if not mine or r is not mine[-1]]
            return (mine[-1] if mine else None), others
        time.sleep(POLL_SECONDS)


def ask(session: Session, editor: Editor, action: str) -> dict[str, Any]:
    """One request at the cursor, answered, with what it cost."""
    position = utf16_position(editor.text, editor.cursor)
    at = place(editor.text, editor.cursor)
    before = session.counters()
    editor.send()
    editor.collect(ANSWER_LIMIT)
    milliseconds = 1000 * editor.seconds[-1]
    after = session.counters()
    record, background = own_record(session, editor.uri, position)
    deltas = {name: after[name] - before[name] for name in COUNTERS}
    finish = record["finish"] if record else None
    return {
        "action": action,
        "ms": milliseconds,
        **deltas,
        "no_model_run": deltas["graph_runs"] == 0 or finish in NO_MODEL_RUN,
        "record": {name: record[name] for name in RECORD_FIELDS} if record else None,
        "at": at,
        "answer": editor.shown,
        "background": [
            {name: r[name] for name in ("line", "character", *RECORD_FIELDS)} for r in background
        ],
    }


def act(editor: Editor, step: Step) -> bool:
    """Does what `step` says; False when there is nothing to do (no suggestion to take)."""
    if step.action in ("type", "retype"):
        editor.type(step.count)
    elif step.action == "backspace":
        removed = editor.text[max(0, editor.cursor - step.count) : editor.cursor]
        editor.backspace(step.count)
        editor.to_type = removed + editor.to_type  # typed again by the steps after it
    elif step.action == "accept":
        if not editor.shown:
            return False
        editor.accept()
    return True


def run_trace(
    session: Session, trace: Trace, pause: float | None, pause_limit: float
) -> dict[str, Any]:
    """Drives `trace` in a document of its own. With `trace.jump`, the client says where the
    cursor rests and pauses: for `pause` seconds, or (None) until the server has pre-warmed
    there, at most `pause_limit`."""
    uri = f"file:///experience/{trace.name}/{trace.file}"
    editor = Editor.open(session.lsp, uri, trace.text, trace.cursor, trace.to_type)
    result: dict[str, Any] = {"load_seconds": session.load_seconds}
    if trace.jump:
        position = utf16_position(editor.text, editor.cursor)
        params = {"textDocument": {"uri": uri}, "position": position}
        session.lsp.notify("replitLsp/cursorIdle", params)
        if pause is None:
            result["pause_seconds"], result["prewarm"] = wait_for_prewarm(
                session, uri, position, pause_limit
            )
        else:
            time.sleep(pause)
            result["pause_seconds"] = pause
            prewarms = [r for r in session.records() if r["finish"].startswith("prewarm")]
            result["prewarm"] = prewarms[-1] if prewarms else None
    keystrokes = []
    for step in trace.steps:
        if act(editor, step):
            keystrokes.append(ask(session, editor, step.action))
    editor.close()
    return result | {"keystrokes": keystrokes}
