"""A language server process driven with raw bytes on its stdin.

The robustness tests must send what no well-behaved client library would (wrong lengths,
lowercase headers, bodies that are not JSON), so this client writes bytes as given and reads
the server's messages off its stdout on a thread of its own.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import queue
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from testkit.environment import SERVER_ENV

ROOT = Path(__file__).resolve().parents[1]


def frame(message: dict[str, Any] | bytes, header: bytes = b"Content-Length") -> bytes:
    """One LSP frame around a JSON message (or bytes sent as the body unchanged)."""
    body = message if isinstance(message, bytes) else json.dumps(message).encode()
    return header + b": %d\r\n\r\n" % len(body) + body


class RawLsp:
    def __init__(self, command: list[str], env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env or SERVER_ENV,
        )
        self._messages: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._pending: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self.stderr = b""
        threading.Thread(target=self._read_stdout, daemon=True).start()
        self._stderr_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._stderr_reader.start()

    # ------------------------------------------------------------------ reading

    def _read_stdout(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        while True:
            length = None
            while (line := stdout.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("ascii").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if not line or length is None:
                self._messages.put(None)
                return
            self._messages.put(json.loads(stdout.read(length)))

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr += line

    def next_message(self, timeout: float = 30) -> dict[str, Any] | None:
        """The next message from the server; None once its stdout has closed."""
        return self._messages.get(timeout=timeout)

    def response(self, msg_id: int | str | None, timeout: float = 60) -> dict[str, Any]:
        """The response to `msg_id`, keeping other messages for `messages_seen`."""
        deadline = time.monotonic() + timeout
        for kept in self._pending:
            if "method" not in kept and kept.get("id") == msg_id:
                self._pending.remove(kept)
                return kept
        while True:
            message = self.next_message(max(0.1, deadline - time.monotonic()))
            assert message is not None, f"stdout closed before the answer to {msg_id!r}"
            if "method" not in message and message.get("id") == msg_id:
                return message
            self._pending.append(message)
            assert time.monotonic() < deadline, f"no answer to {msg_id!r}"

    def log_messages(self) -> list[str]:
        """The `window/logMessage` texts received so far (and set aside)."""
        while not self._messages.empty():
            message = self._messages.get_nowait()
            if message is not None:
                self._pending.append(message)
        return [
            m["params"]["message"] for m in self._pending if m.get("method") == "window/logMessage"
        ]

    # ------------------------------------------------------------------ writing

    def send_bytes(self, data: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(data)
        self.process.stdin.flush()

    def notify(self, method: str, params: Any = None) -> None:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        self.send_bytes(frame(message))

    def send_request(self, method: str, params: Any = None, **fields: Any) -> int:
        """Sends a request (without `params` when None) and returns its id."""
        msg_id = next(self._ids)
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id, "method": method, **fields}
        if params is not None:
            message["params"] = params
        self.send_bytes(frame(message))
        return msg_id

    def request(self, method: str, params: Any = None, timeout: float = 60) -> dict[str, Any]:
        return self.response(self.send_request(method, params), timeout)

    # ---------------------------------------------------------------- lifecycle

    def initialize(self, options: dict[str, Any] | None = None, **capabilities: Any) -> None:
        answer = self.request(
            "initialize",
            {"processId": None, "rootUri": None, "capabilities": capabilities,
             "initializationOptions": options},
        )  # fmt: skip
        assert "result" in answer, answer
        self.notify("initialized", {})

    def wait_until_loaded(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while self.request("replitLsp/status")["result"]["state"] in ("idle", "loading"):
            assert time.monotonic() < deadline, "the model did not load in time"
            time.sleep(0.1)

    def close_stdin(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()

    def wait(self, timeout: float = 60) -> int:
        """The exit status, once the process has ended (and its stderr is read)."""
        code = self.process.wait(timeout)
        self._stderr_reader.join(10)
        return code

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@contextlib.contextmanager
def loaded_server(command: list[str], options: dict[str, Any]) -> Iterator[RawLsp]:
    """A server initialized with `options` and past loading, which must end with exit status
    0 after `shutdown` and `exit` once the block is left."""
    server = RawLsp(command)
    server.initialize(options)
    server.wait_until_loaded()
    yield server
    server.request("shutdown")
    server.notify("exit")
    assert server.wait() == 0


def inline_params(uri: str, line: int, character: int) -> dict[str, Any]:
    return {
        "textDocument": {"uri": uri},
        "position": {"line": line, "character": character},
        "context": {"triggerKind": 2},
    }


def open_document(lsp: RawLsp, uri: str, text: str) -> None:
    item = {"uri": uri, "languageId": "python", "version": 1, "text": text}
    lsp.notify("textDocument/didOpen", {"textDocument": item})


def completion_text(answer: dict[str, Any]) -> str:
    assert "result" in answer, answer
    items = answer["result"]["items"]
    return items[0]["insertText"] if items else ""
