"""The language server under malformed input and lifecycle edge cases, over raw stdio bytes.

A real `replit-lsp --stdio` process on the tiny checkpoint gets frames no client library would
send: wrong and huge lengths, header names in any case, bodies that are not JSON, messages
that are not JSON-RPC, requests before `initialize` and after `shutdown`, `exit` at every
stage of loading. After every case the server must still answer a known completion with the
text the independent reference model gives; a client mistake is never an internal error.
"""

from __future__ import annotations

import json
import string
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from hypothesis import given
from hypothesis import strategies as st

from testkit.environment import SERVER_ENV
from testkit.lsp_client import FIBONACCI, MAX_NEW_TOKENS, expected_completion
from testkit.raw_lsp import (
    ROOT,
    RawLsp,
    completion_text,
    frame,
    inline_params,
    loaded_server,
    open_document,
)
from testkit.reference import ReferenceMPT
from testkit.robustness import EXAMPLES, robustness
from testkit.servers import lsp_server_command

KNOWN_URI = "file:///work/known.py"
OPTIONS = {"maxNewTokens": MAX_NEW_TOKENS, "maxLines": 8}
INTERNAL_ERROR = -32603
# Written into stderr by a process that ends badly: a C++ abort, a fatal error, pygls's exit
# closing stdout under running threads, a handler that failed inside the event loop. (pygls
# also logs a traceback for params that do not convert, which is a client's mistake.)
CRASH_MARKS = (
    b"terminate called",
    b"Fatal Python error",
    b"I/O operation on closed file",
    b"Exception in callback",
    b"exception was never retrieved",
)
# Where no malformed message was sent, stderr has no traceback at all.
CLEAN_MARKS = (*CRASH_MARKS, b"Traceback")


@pytest.fixture(scope="module")
def known_answer(tiny_model_dir: Path, tiny_reference: ReferenceMPT) -> str:
    """The completion at the end of `def fibonacci(n):`, from the reference model."""
    return expected_completion(tiny_model_dir, tiny_reference, FIBONACCI, 3, 17)


@pytest.fixture(scope="module")
def lsp(tiny_model_dir: Path) -> Iterator[RawLsp]:
    with loaded_server(lsp_server_command(tiny_model_dir), OPTIONS) as server:
        open_document(server, KNOWN_URI, FIBONACCI)
        yield server
    assert not any(mark in server.stderr for mark in CRASH_MARKS), server.stderr[-3000:]


def assert_alive(lsp: RawLsp, known_answer: str) -> None:
    """The server still answers the known request, with the reference model's text."""
    assert lsp.process.poll() is None, lsp.stderr[-3000:]
    answer = lsp.request("textDocument/inlineCompletion", inline_params(KNOWN_URI, 3, 17))
    assert completion_text(answer) == known_answer


def assert_not_internal(answer: dict[str, Any]) -> None:
    assert answer.get("error", {}).get("code") != INTERNAL_ERROR, answer


def status_message(msg_id: int) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": msg_id, "method": "replitLsp/status"}


# --------------------------------------------------------------------------- framing


@pytest.mark.parametrize(
    "header",
    [b"content-length", b"CONTENT-LENGTH", b"Content-length", b"Content-Length "],
)
def test_header_names_are_case_insensitive(lsp: RawLsp, known_answer: str, header: bytes) -> None:
    lsp.send_bytes(frame(status_message(9001), header=header))
    assert lsp.response(9001)["result"]["state"] == "ready"
    assert_alive(lsp, known_answer)


def test_other_headers_and_stray_line_breaks(lsp: RawLsp, known_answer: str) -> None:
    body = json.dumps(status_message(9002)).encode()
    lsp.send_bytes(
        b"\r\n\r\nContent-Type: application/vscode-jsonrpc; charset=utf-8\r\n"
        + b"X-Unknown: 1\r\nContent-Length:%d\n\n" % len(body)
        + body
    )
    assert lsp.response(9002)["result"]["state"] == "ready"
    assert_alive(lsp, known_answer)


def test_a_message_over_the_limit_is_refused_and_skipped(lsp: RawLsp, known_answer: str) -> None:
    """The body is really sent: the server reads past it and answers what follows."""
    size = 64 * 1024 * 1024 + 1
    lsp.send_bytes(b"Content-Length: %d\r\n\r\n" % size)
    chunk = b" " * (1024 * 1024)
    for _ in range(size // len(chunk)):
        lsp.send_bytes(chunk)
    lsp.send_bytes(b" " * (size % len(chunk)) + frame(status_message(9003)))
    assert lsp.response(9003, timeout=120)["result"]["state"] == "ready"
    assert any(f"refused a message of {size} bytes" in m for m in lsp.log_messages())
    assert_alive(lsp, known_answer)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", -32700),
        (b"\xff\xfe\x00garbage", -32700),
        (b"[" * 100_000 + b"]" * 100_000, -32700),
        (b"[]", -32600),
        (b"5", -32600),
        (b'{"jsonrpc": "1.0", "id": 7, "method": "replitLsp/status"}', -32600),
        (b'{"id": 7, "method": "replitLsp/status"}', -32600),
        (b'{"jsonrpc": "2.0", "method": 5}', -32600),
    ],
)
def test_bodies_that_are_not_json_rpc_get_errors(
    lsp: RawLsp, known_answer: str, body: bytes, code: int
) -> None:
    lsp.send_bytes(frame(body))
    expected_id = 7 if b'"id": 7' in body else None
    assert lsp.response(expected_id)["error"]["code"] == code
    assert_alive(lsp, known_answer)


@pytest.mark.parametrize(
    "headers",
    [
        b"Content-Length: twelve\r\n\r\n",
        b"Content-Length: -5\r\n\r\n",
        b"Content-Type: text/plain\r\n\r\n",
        b"not a header at all\r\n\r\n",
        b"X-Long: " + b"x" * 100_000 + b"\r\n\r\n",
    ],
)
def test_header_blocks_without_a_usable_length_are_skipped(
    lsp: RawLsp, known_answer: str, headers: bytes
) -> None:
    lsp.send_bytes(headers + frame(status_message(9004)))
    assert lsp.response(9004)["result"]["state"] == "ready"
    assert_alive(lsp, known_answer)


def test_stray_writes_to_stdout_never_reach_the_protocol_channel() -> None:
    """A native library or a child process writing to descriptor 1 would shift every frame
    after it: on stdio, only the server's own channel reaches the client's stdout."""
    code = (
        "import os, subprocess, sys\n"
        "from lsp_server.lsp.framing import private_stdout\n"
        "channel = private_stdout()\n"
        "os.write(1, b'native noise;')\n"
        "print('python noise;', flush=True)\n"
        "subprocess.run(['echo', 'child noise'])\n"
        "channel.write(b'Content-Length: 2\\r\\n\\r\\n{}')\n"
        "channel.flush()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, cwd=ROOT, timeout=60, check=True
    )
    assert done.stdout == b"Content-Length: 2\r\n\r\n{}"
    for noise in (b"native noise;", b"python noise;", b"child noise"):
        assert noise in done.stderr


@pytest.mark.parametrize(
    "lengths",
    [
        b"Content-Length: %d\r\nContent-Length: %d\r\n",
        b"Content-Length: %d\r\ncontent-length: %d\r\n",
        b"Content-Length: %d, %d\r\n",
    ],
)
def test_a_length_given_twice_alike_is_one_length(
    lsp: RawLsp, known_answer: str, lengths: bytes
) -> None:
    body = json.dumps(status_message(9006)).encode()
    lsp.send_bytes(lengths % (len(body), len(body)) + b"\r\n" + body)
    assert lsp.response(9006)["result"]["state"] == "ready"
    assert_alive(lsp, known_answer)


@pytest.mark.parametrize(
    "headers",
    [
        b"Content-Length: %d\r\nContent-Length: 3\r\n\r\n",
        b"Content-Length: 3, %d\r\n\r\n",
        b"Content-Type: application/vscode-jsonrpc\r\n\r\n",
    ],
)
def test_a_message_of_unknown_length_is_dropped_and_the_next_one_read(
    lsp: RawLsp, known_answer: str, headers: bytes
) -> None:
    """Lengths that disagree, or none: the body is not taken for the next message's headers."""
    body = json.dumps(status_message(9007)).encode()
    block = headers % len(body) if b"%d" in headers else headers
    lsp.send_bytes(block + body + frame(status_message(9008)))
    assert lsp.response(9008)["result"]["state"] == "ready"
    if b"3" in block:
        assert any("conflicting Content-Length" in m for m in lsp.log_messages())
    assert_alive(lsp, known_answer)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@robustness()
@given(
    header=st.sampled_from([b"Content-Length", b"content-length", b"CoNtEnT-LeNgTh"]),
    extra=st.lists(st.text(string.ascii_letters, min_size=1, max_size=10), max_size=3),
    body=st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()),
)
def test_any_correctly_framed_body_leaves_the_server_in_step(
    lsp: RawLsp, known_answer: str, header: bytes, extra: list[str], body: bytes
) -> None:
    """Whatever the body holds, the next message is read from the right place."""
    headers = b"".join(f"X-{name}: {name}\r\n".encode() for name in extra)
    lsp.send_bytes(headers + header + b": %d\r\n\r\n" % len(body) + body)
    lsp.send_bytes(frame(status_message(9005)))
    assert lsp.response(9005)["result"]["state"] == "ready"
    assert_alive(lsp, known_answer)


@pytest.mark.parametrize("length", [b"1000000000000", b"9" * 20, b"9" * 5000])
def test_an_impossible_length_is_refused_without_a_crash(tmp_path: Path, length: bytes) -> None:
    """Nothing after such a header can be read as a message, so the stream is skipped to its
    end: the server says why, and exits like any server whose client hung up."""
    lsp = RawLsp(lsp_server_command(tmp_path / "no-model"))
    try:
        lsp.send_bytes(b"Content-Length: " + length + b"\r\n\r\n" + frame(status_message(1)))
        lsp.close_stdin()
        assert lsp.wait() == 0
    finally:
        lsp.stop()
    assert b"refused a message of " + length[:40] in lsp.stderr
    assert not any(mark in lsp.stderr for mark in CLEAN_MARKS), lsp.stderr[-3000:]


# ------------------------------------------------------------------------- lifecycle


def test_requests_before_initialize_get_server_not_initialized(tmp_path: Path) -> None:
    lsp = RawLsp(lsp_server_command(tmp_path / "no-model"))
    try:
        for method, params in [
            ("textDocument/inlineCompletion", inline_params("file:///a.py", 0, 0)),
            ("replitLsp/status", None),
            ("replitLsp/noSuchMethod", {}),
        ]:
            assert lsp.request(method, params)["error"]["code"] == -32002
        open_document(lsp, "file:///a.py", "x = 1\n")  # dropped: not initialized yet
        lsp.initialize()
        assert lsp.request("initialize", {"capabilities": {}})["error"]["code"] == -32600
        answer = lsp.request(
            "replitLsp/status", {"textDocument": {"uri": "file:///a.py"}}
        )  # the notification before initialize opened nothing
        assert answer["result"]["document"] is None
    finally:
        lsp.stop()


def test_after_shutdown_only_exit_is_accepted(tmp_path: Path) -> None:
    lsp = RawLsp(lsp_server_command(tmp_path / "no-model"))
    try:
        lsp.initialize()
        assert lsp.request("shutdown") == {"jsonrpc": "2.0", "id": 2, "result": None}
        for method, params in [
            ("replitLsp/status", None),
            ("textDocument/inlineCompletion", inline_params("file:///a.py", 0, 0)),
            ("shutdown", None),
        ]:
            assert lsp.request(method, params)["error"]["code"] == -32600
        lsp.notify("exit")
        assert lsp.wait() == 0
    finally:
        lsp.stop()
    assert not any(mark in lsp.stderr for mark in CLEAN_MARKS), lsp.stderr[-3000:]


def loading_children(process: psutil.Process) -> list[psutil.Process]:
    try:
        return process.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


@pytest.mark.parametrize("shutdown", [True, False], ids=["shutdown", "no-shutdown"])
@pytest.mark.parametrize("stage", [0.0, 0.02, 0.1, 0.3, 1.0, "compiling", "ready"])
def test_exit_at_every_stage_of_loading(
    tiny_model_dir: Path, tmp_path: Path, shutdown: bool, stage: float | str
) -> None:
    """`exit` ends the process at once, with 0 after `shutdown` and 1 without, whatever the
    loader is doing; a compile running in a child process ends with it."""
    env = dict(SERVER_ENV)
    if stage == "compiling":  # an empty compiled-model cache: loading starts with a compile
        env["REPLIT_LSP_CACHE_DIR"] = str(tmp_path / "cache")
    lsp = RawLsp(lsp_server_command(tiny_model_dir), env=env)
    try:
        lsp.initialize()
        children: list[psutil.Process] = []
        if stage == "ready":
            lsp.wait_until_loaded()
        elif stage == "compiling":
            deadline = time.monotonic() + 60
            while lsp.request("replitLsp/status")["result"]["stage"] != "compiling":
                assert time.monotonic() < deadline, "the compile did not start"
                time.sleep(0.05)
            children = loading_children(psutil.Process(lsp.process.pid))
            assert children, "the compile runs in a child process"
        else:
            assert isinstance(stage, float)
            time.sleep(stage)
        if shutdown:
            assert "result" in lsp.request("shutdown")
        lsp.notify("exit")
        assert lsp.wait(timeout=30) == (0 if shutdown else 1)
        _, alive = psutil.wait_procs(children, timeout=15)
        assert not alive, "the compiler outlived the server"
    finally:
        lsp.stop()
    assert not any(mark in lsp.stderr for mark in CLEAN_MARKS), lsp.stderr[-3000:]


# ------------------------------------------------------------------- protocol misuse


@pytest.mark.parametrize(
    ("message", "check"),
    [
        ({"id": 11, "method": "replitLsp/status"}, lambda a: a["result"]["state"] == "ready"),
        ({"id": 12, "method": "replitLsp/noSuchMethod"}, lambda a: a["error"]["code"] == -32601),
        (
            {"id": 13, "method": "textDocument/inlineCompletion"},
            lambda a: a["error"]["code"] == -32602,
        ),
        (
            {"id": 14, "method": "textDocument/inlineCompletion", "params": [1, 2]},
            lambda a: a["error"]["code"] == -32602,
        ),
        (
            {
                "id": 15,
                "method": "textDocument/inlineCompletion",
                "params": {"textDocument": {"uri": 5}, "position": {"line": "x"}},
            },
            lambda a: a["error"]["code"] == -32602,
        ),
        ({"id": 16, "method": 5}, lambda a: a["error"]["code"] == -32600),
        ({"id": 17, "method": None}, lambda a: a["error"]["code"] == -32600),
        ({"id": 18}, lambda a: a["error"]["code"] == -32600),
        ({"id": "text-id", "method": "replitLsp/status"}, lambda a: "result" in a),
    ],
)
def test_protocol_misuse_gets_the_right_error(
    lsp: RawLsp, known_answer: str, message: dict[str, Any], check: Any
) -> None:
    lsp.send_bytes(frame({"jsonrpc": "2.0", **message}))
    answer = lsp.response(message["id"])
    assert check(answer), answer
    assert_alive(lsp, known_answer)


def test_notifications_and_responses_nobody_asked_for_are_ignored(
    lsp: RawLsp, known_answer: str
) -> None:
    lsp.notify("replitLsp/noSuchNotification", {"x": 1})
    lsp.notify("$/cancelRequest", {"id": "never-sent"})
    lsp.notify("textDocument/didChange", {"textDocument": {"uri": "file:///nowhere.py"}})
    lsp.send_bytes(frame({"jsonrpc": "2.0", "id": "never-asked", "result": {"x": 1}}))
    lsp.send_bytes(frame({"jsonrpc": "2.0", "id": 77, "error": {"code": 1, "message": "x"}}))
    assert_alive(lsp, known_answer)


# Everything but the lifecycle and the settings, which change what the known request answers.
METHODS = [
    "replitLsp/status",
    "textDocument/inlineCompletion",
    "textDocument/didOpen",
    "textDocument/didChange",
    "textDocument/didClose",
    "$/cancelRequest",
    "$/setTrace",
    "workspace/executeCommand",
    "textDocument/completion",
    "replitLsp/unknown",
]


@robustness()
@given(
    method=st.sampled_from(METHODS) | st.text(max_size=20),
    params=json_values,
    msg_id=st.integers(-(2**31), 2**31) | st.text(max_size=10),
    with_params=st.booleans(),
)
def test_any_request_gets_an_answer_that_is_not_an_internal_error(
    lsp: RawLsp, known_answer: str, method: str, params: Any, msg_id: int | str, with_params: bool
) -> None:
    if method in ("initialize", "shutdown", "exit") or method.startswith("workspace/didChange"):
        return  # the lifecycle has its own tests; settings would change the known answer
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id, "method": method}
    if with_params:
        message["params"] = params
    lsp.send_bytes(frame(message))
    assert_not_internal(lsp.response(msg_id))
    assert_alive(lsp, known_answer)


def configure(lsp: RawLsp, **settings: Any) -> None:
    lsp.notify("workspace/didChangeConfiguration", {"settings": {**OPTIONS, **settings}})


def test_a_subnormal_temperature_samples_like_greedy(lsp: RawLsp, known_answer: str) -> None:
    """temperature 1e-310 with topK 5 is inside the documented ranges; it once made every
    completion fail with `Probabilities contain NaN`. So cold, sampling is the argmax."""
    configure(lsp, temperature=1e-310, topK=5)
    try:
        assert_alive(lsp, known_answer)
    finally:
        configure(lsp, temperature=1.0, topK=1)


@robustness(examples=max(5, EXAMPLES // 3))
@given(
    temperature=st.floats(0, 2) | st.sampled_from([5e-324, 1e-310, 1e-300]),
    top_k=st.integers(1, 10**6),
    max_new_tokens=st.integers(1, 10**6),
    max_lines=st.integers(1, 10**4),
)
def test_settings_within_their_ranges_never_break_completions(
    lsp: RawLsp, known_answer: str, temperature: float, top_k: int, max_new_tokens: int,
    max_lines: int,
) -> None:  # fmt: skip
    configure(lsp, temperature=temperature, topK=top_k, maxNewTokens=max_new_tokens,
              maxLines=max_lines)  # fmt: skip
    try:
        answer = lsp.request("textDocument/inlineCompletion", inline_params(KNOWN_URI, 3, 17))
        assert "result" in answer, answer
    finally:
        configure(lsp, temperature=1.0, topK=1)
    assert_alive(lsp, known_answer)
