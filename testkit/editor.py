"""An editor's side of one open document, driven over a raw language server connection.

It keeps the client's copy of the text, the cursor and the suggestion shown, sends the edits
a person makes as incremental `didChange` notifications (positions in UTF-16, as editors
count), and sends inline completion requests at the cursor. Requests may be left waiting
(keystrokes faster than answers, or cancelled at once) and collected later: what the tests
and the soak benchmark check is that every one of them is answered.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from testkit.raw_lsp import RawLsp, inline_params, open_document

REQUEST_CANCELLED = -32800


def utf16_position(text: str, offset: int) -> dict[str, int]:
    """The LSP position of string index `offset`, its character in UTF-16 code units."""
    before = text[:offset]
    line_start = before.rfind("\n") + 1
    units = len(before[line_start:].encode("utf-16-le", "surrogatepass")) // 2
    return {"line": before.count("\n"), "character": units}


@dataclass(frozen=True)
class Sent:
    msg_id: int
    cancelled: bool
    at: float  # time.perf_counter() when it was sent


class Unanswered(AssertionError):
    """A request that got no answer in time."""


@dataclass
class Editor:
    lsp: RawLsp
    uri: str
    text: str
    cursor: int
    to_type: str = ""  # what the person types next, in order
    version: int = 1
    shown: str = ""
    command: dict[str, Any] | None = None
    answered: int = 0
    sent: list[Sent] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)  # send to answer, answered requests

    @classmethod
    def open(cls, lsp: RawLsp, uri: str, text: str, cursor: int, to_type: str = "") -> Editor:
        open_document(lsp, uri, text)
        return cls(lsp, uri, text, cursor, to_type)

    def close(self) -> None:
        self.lsp.notify("textDocument/didClose", {"textDocument": {"uri": self.uri}})

    # ----------------------------------------------------------------- edits

    def edit(self, start: int, end: int, new: str) -> None:
        """Replaces [start, end) with `new`; the cursor ends after it, nothing is shown."""
        change = {
            "range": {
                "start": utf16_position(self.text, start),
                "end": utf16_position(self.text, end),
            },
            "text": new,
        }
        self.version += 1
        document = {"uri": self.uri, "version": self.version}
        self.lsp.notify(
            "textDocument/didChange", {"textDocument": document, "contentChanges": [change]}
        )
        self.text = self.text[:start] + new + self.text[end:]
        self.cursor = start + len(new)
        self.shown = ""

    def insert(self, new: str) -> None:
        self.edit(self.cursor, self.cursor, new)

    def type(self, count: int) -> None:
        """The next `count` characters of `to_type`."""
        piece, self.to_type = self.to_type[:count], self.to_type[count:]
        self.insert(piece)

    def type_through(self, count: int) -> None:
        """The first characters of the suggestion shown, as the person reads and types it."""
        self.insert(self.shown[:count])

    def backspace(self, count: int) -> None:
        self.edit(max(0, self.cursor - count), self.cursor, "")

    def accept(self) -> None:
        """Inserts the suggestion shown and runs its command, as Tab does."""
        command = self.command
        self.insert(self.shown)
        if command is not None:
            params = {"command": command["command"], "arguments": command.get("arguments", [])}
            answer = self.lsp.request("workspace/executeCommand", params)
            assert "result" in answer, answer

    def jump(self, line: int) -> None:
        """To the end of `line` (modulo the line count), as a click or a search does."""
        lines = self.text.split("\n")
        line %= len(lines)
        self.cursor = sum(len(text) + 1 for text in lines[:line]) + len(lines[line])
        self.shown = ""

    # -------------------------------------------------------------- requests

    def rest(self) -> None:
        """Tells the server the cursor rests here, as the editor clients do after a move."""
        position = utf16_position(self.text, self.cursor)
        params = {"textDocument": {"uri": self.uri}, "position": position}
        self.lsp.notify("replitLsp/cursorIdle", params)

    def send(self, cancel: bool = False) -> None:
        """An inline completion request at the cursor, cancelled at once with `cancel`."""
        position = utf16_position(self.text, self.cursor)
        params = inline_params(self.uri, position["line"], position["character"])
        msg_id = self.lsp.send_request("textDocument/inlineCompletion", params)
        if cancel:
            self.lsp.notify("$/cancelRequest", {"id": msg_id})
        self.sent.append(Sent(msg_id, cancel, time.perf_counter()))

    def collect(self, timeout: float = 120.0) -> None:
        """Waits for every request sent: each gets a list, or the cancelled error when the
        client cancelled it. The last suggestion is what the editor shows."""
        sent, self.sent = self.sent, []
        for request in sent:
            try:
                answer = self.lsp.response(request.msg_id, timeout=timeout)
            except Exception as error:  # the client's timeout, or a closed stdout
                raise Unanswered(f"request {request.msg_id} at {self.uri}: {error}") from None
            if "error" in answer:
                cancelled = answer["error"]["code"] == REQUEST_CANCELLED
                assert request.cancelled and cancelled, answer
                continue
            items = answer["result"]["items"]
            assert len(items) <= 1, answer
            self.shown = items[0]["insertText"] if items else ""
            self.command = items[0].get("command") if items else None
            self.answered += 1
            self.seconds.append(time.perf_counter() - request.at)
