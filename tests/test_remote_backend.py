"""The language server over a remote engine: a real `replit-lsp --serve` process on the tiny
checkpoint as the backend, and a real `replit-lsp --stdio` sending its completions there.

Suggestions must equal the local engine's (the independent reference, greedy); a stream closed
early must show in the backend's own counters; a backend that dies, refuses the key, lacks the
model, is busy or stalls must be reported, and used again once it is back, without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pytest_lsp import LanguageClient

from lsp_server.generation.remote.character_budget import CHARS_PER_TOKEN, CharacterBudget
from lsp_server.generation.remote.request_fields import NEUTRAL_FIELDS
from lsp_server.http.server import bind
from lsp_server.lsp.completion_log import CompletionRecord
from model.tokenizer import Tokenizer
from testkit.environment import SERVER_ENV
from testkit.lsp_client import (
    FIBONACCI,
    MAX_NEW_TOKENS,
    cancelled_mid_stream,
    complete,
    completion_count,
    completion_stats,
    completion_text,
    configure,
    expected_completion,
    open_document,
    remote_client,
    send_completion,
    shown_message,
    status,
    stop_client,
)
from testkit.reference import ReferenceMPT
from testkit.servers import ROOT, ServerProcess, free_port, start_server

# The async tests share the session loop that the module's LSP client fixture runs on.
session_loop = pytest.mark.asyncio(loop_scope="session")

DEF_LINE, DEF_INDEX = 3, len("def fibonacci(n):")
LONG_DOCUMENT = "lorem ipsum dolor sit amet"  # the tiny model writes all 128 tokens after it


def health(server: ServerProcess) -> dict[str, Any]:
    return httpx.get(server.url + "/health", timeout=10).json()


@pytest.fixture(scope="module")
def backend(
    tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    process = start_server(tiny_model_dir, tmp_path_factory.mktemp("backend"))
    yield process
    process.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(tiny_model_dir: Path, backend: ServerProcess) -> AsyncIterator[LanguageClient]:
    """Pointed at the backend by the editor setting rather than the flag."""
    options = {"replitLsp": {"maxNewTokens": MAX_NEW_TOKENS, "backendUrl": backend.url}}
    lsp = await remote_client(tiny_model_dir, "--log-level", "DEBUG", options=options)
    yield lsp
    await stop_client(lsp)


@session_loop
@pytest.mark.parametrize(
    ("line", "index"), [(DEF_LINE, DEF_INDEX), (7, len("    return fibonacci("))]
)
async def test_suggestions_equal_the_local_engine(
    client: LanguageClient,
    backend: ServerProcess,
    tiny_model_dir: Path,
    tiny_reference: ReferenceMPT,
    line: int,
    index: int,
) -> None:
    uri = f"file:///work/remote_{line}.py"
    open_document(client, uri, FIBONACCI)
    since = await completion_count(client)
    before = health(backend)
    result = await complete(client, uri, line, index)
    expected = expected_completion(tiny_model_dir, tiny_reference, FIBONACCI, line, index)
    assert completion_text(result) == expected

    answer = await status(client)
    assert answer.state == "ready" and answer.backend_requests >= 1
    # The statistics are the local engine's kind: the prompt counted by the model's tokenizer.
    (record,) = await completion_stats(client, since)
    text_before = "\n".join(FIBONACCI.split("\n")[:line] + [FIBONACCI.split("\n")[line][:index]])
    assert record.prompt_tokens == len(Tokenizer(tiny_model_dir).encode(text_before))
    assert record.generated_tokens >= 1
    after = health(backend)
    assert after["served"] + after["disconnected"] == before["served"] + before["disconnected"] + 1


@session_loop
async def test_keystrokes_reuse_the_backend_cache(client: LanguageClient) -> None:
    """Each keystroke's prompt extends the last one: the backend reports its cached prefix,
    and the records show it as reused, as for the local engine."""
    base = "import os\n\n\ndef main():\n    "
    since = await completion_count(client)
    for typed in range(6):
        text = base + "values"[:typed]
        uri = f"file:///work/remote_typing_{typed}.py"
        open_document(client, uri, text)
        await complete(client, uri, 4, 4 + typed)
    records = await completion_stats(client, since)
    assert len(records) == 6
    assert all(0 < r.reused_tokens < r.prompt_tokens for r in records[1:])


async def run_to_the_limit(client: LanguageClient, uri: str) -> CompletionRecord:
    """A completion known to run to its 128-token limit, after `configure`."""
    configure(client, maxNewTokens=128, maxLines=1000)
    since = await completion_count(client)
    await complete(client, uri, 0, 12)
    (record,) = await completion_stats(client, since)
    if record.finish != "length":
        pytest.fail(f"the request must run to its token limit first: {record}")
    return record


@session_loop
async def test_cancel_closes_the_backend_stream(
    client: LanguageClient, backend: ServerProcess
) -> None:
    """A `$/cancelRequest` mid-stream closes the connection: the backend counts a client that
    left, and generates fewer tokens than asked. The cancel is sent after a few delays until
    one lands while the tokens stream."""
    uri = "file:///work/remote_cancel.txt"
    open_document(client, uri, LONG_DOCUMENT, language="plaintext")
    try:
        await run_to_the_limit(client, uri)
        before = health(backend)
        delays = (0.005, 0.01, 0.02, 0.04, 0.08)
        stopped = await cancelled_mid_stream(client, uri, 0, 12, delays, answer_timeout=10)
        assert stopped, "no cancel landed mid-stream"
        assert all(r.generated_tokens < 128 for r in stopped)
        after = health(backend)
        assert after["disconnected"] - before["disconnected"] >= len(stopped)
    finally:
        configure(client)


@session_loop
async def test_supersede_closes_the_backend_stream(
    client: LanguageClient, backend: ServerProcess
) -> None:
    uri = "file:///work/remote_supersede.txt"
    open_document(client, uri, LONG_DOCUMENT, language="plaintext")
    try:
        await run_to_the_limit(client, uri)
        before, lsp_before = health(backend), await status(client)
        since = await completion_count(client)
        pending = [(await send_completion(client, uri, 0, 12))[1] for _ in range(5)]
        results = await asyncio.wait_for(asyncio.gather(*pending), timeout=30)
        assert [len(r.items) for r in results[:-1]] == [0, 0, 0, 0]
        assert completion_text(results[-1]) != ""
        await asyncio.sleep(0.3)  # the backend counts a stream once its client has left
        records = await completion_stats(client, since)
        superseded = [r for r in records if r.finish == "cancelled"]
        after, lsp_after = health(backend), await status(client)
        # The last request was served to its end; each superseded one that had started to
        # stream (a supersede may also land while it is still connecting) left the backend.
        streamed = [r for r in superseded if r.generated_tokens > 0]
        assert after["served"] - before["served"] == 1
        assert after["disconnected"] - before["disconnected"] >= len(streamed)
        assert after["disconnected"] - before["disconnected"] <= len(superseded)
        closed = lsp_after.backend_closed_early - lsp_before.backend_closed_early
        assert closed == len(superseded)
    finally:
        configure(client)


@session_loop
async def test_changing_the_backend_setting_repoints_the_client(
    client: LanguageClient, backend: ServerProcess, secured_backend: ServerProcess
) -> None:
    """A running remote client follows `backendUrl`: to a server that wants a key this client
    does not have, then back."""
    try:
        configure(client, backendUrl=secured_backend.url)
        await shown_message(client, "refused the API key")
        assert any(secured_backend.url in m.message for m in client.log_messages)
        open_document(client, "file:///work/repoint.py", FIBONACCI)
        assert completion_text(await complete(client, "file:///work/repoint.py", 3, 4)) == ""
    finally:
        configure(client, backendUrl=backend.url)
    await shown_message(client, "is available")
    assert (await status(client)).state == "ready"


@session_loop
async def test_backend_killed_mid_stream_then_restarted(
    tiny_model_dir: Path, tiny_reference: ReferenceMPT, tmp_path: Path
) -> None:
    port = free_port()
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    backend = start_server(tiny_model_dir, tmp_path / "first", port=port)
    lsp = await remote_client(tiny_model_dir, "--backend-url", backend.url)
    try:
        uri = "file:///work/restart.txt"
        open_document(lsp, uri, LONG_DOCUMENT, language="plaintext")
        configure(lsp)
        expected = expected_completion(tiny_model_dir, tiny_reference, LONG_DOCUMENT, 0, 12)
        assert completion_text(await complete(lsp, uri, 0, 12)) == expected

        configure(lsp, maxNewTokens=128, maxLines=1000)
        _, future = await send_completion(lsp, uri, 0, 12)
        await asyncio.sleep(0.05)
        backend.process.kill()
        backend.process.wait()
        await asyncio.wait_for(future, 30)  # answered: empty if the kill came mid-stream
        assert completion_text(await complete(lsp, uri, 0, 12)) == ""
        message = await shown_message(lsp, backend.url)
        assert "unreachable" in message or "broke" in message
        answer = await status(lsp)
        assert answer.state == "error" and backend.url in answer.message

        backend = start_server(tiny_model_dir, tmp_path / "second", port=port)
        configure(lsp)
        assert completion_text(await complete(lsp, uri, 0, 12)) == expected
        await shown_message(lsp, "is available")
        assert (await status(lsp)).state == "ready"
    finally:
        await stop_client(lsp)
        backend.stop()


@pytest.fixture(scope="module")
def secured_backend(
    tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    process = start_server(
        tiny_model_dir, tmp_path_factory.mktemp("secured"), "--api-key", "right-key"
    )
    yield process
    process.stop()


@session_loop
async def test_wrong_key_is_reported(tiny_model_dir: Path, secured_backend: ServerProcess) -> None:
    env = {**SERVER_ENV, "REPLIT_LSP_BACKEND_API_KEY": "wrong-key"}
    lsp = await remote_client(tiny_model_dir, "--backend-url", secured_backend.url, env=env)
    try:
        message = await shown_message(lsp, "refused the API key")
        assert "401" in message and "REPLIT_LSP_BACKEND_API_KEY" in message
        answer = await status(lsp)
        assert answer.state == "error" and "refused the API key" in answer.message
        open_document(lsp, "file:///work/key.py", FIBONACCI)
        assert (
            completion_text(await complete(lsp, "file:///work/key.py", DEF_LINE, DEF_INDEX)) == ""
        )
    finally:
        await stop_client(lsp)


@session_loop
async def test_unknown_model_is_reported(
    tiny_model_dir: Path, secured_backend: ServerProcess
) -> None:
    lsp = await remote_client(
        tiny_model_dir,
        "--backend-url",
        secured_backend.url + "/v1",
        "--backend-api-key",
        "right-key",
        "--backend-model",
        "no-such-model",
    )
    try:
        message = await shown_message(lsp, "'no-such-model'")
        assert tiny_model_dir.name in message  # what the backend does serve
        open_document(lsp, "file:///work/model.py", FIBONACCI)
        assert (
            completion_text(await complete(lsp, "file:///work/model.py", DEF_LINE, DEF_INDEX)) == ""
        )
        answer = await status(lsp)
        assert answer.state == "error" and "(404: " in answer.message
    finally:
        await stop_client(lsp)


class FlakyBackend:
    """An OpenAI-compatible server in this process that is busy for its first completion
    request (429 with Retry-After) when `busy`, and stalls mid-stream on a prompt ending in
    `stall`; otherwise it streams ` = 42`. It keeps the completion requests that reach it."""

    RETRY_AFTER = 3
    STALL_SECONDS = 5

    def __init__(self, busy: bool = True) -> None:
        self.busy = busy
        self.bodies: list[dict[str, Any]] = []
        self.app = FastAPI()
        self.app.get("/v1/models")(self.models)
        self.app.post("/v1/completions")(self.completions)

    @property
    def requests(self) -> int:
        return len(self.bodies)

    async def models(self) -> dict[str, Any]:
        return {"object": "list", "data": [{"id": "flaky", "object": "model"}]}

    async def completions(self, request: Request) -> Response:
        self.bodies.append(await request.json())
        if self.busy and self.requests == 1:
            body = {"error": {"message": "too many requests", "type": "requests"}}
            headers = {"Retry-After": str(self.RETRY_AFTER)}
            return JSONResponse(body, status_code=429, headers=headers)
        stall = self.bodies[-1]["prompt"].endswith("stall")
        return StreamingResponse(self.events(stall), media_type="text/event-stream")

    async def events(self, stall: bool) -> AsyncIterator[str]:
        def event(payload: object) -> str:
            return f"data: {json.dumps(payload)}\n\n"

        yield event({"choices": [{"index": 0, "text": " = ", "finish_reason": None}]})
        if stall:
            await asyncio.sleep(self.STALL_SECONDS)
        yield event({"choices": [{"index": 0, "text": "42", "finish_reason": "stop"}]})
        yield event({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}})
        yield "data: [DONE]\n\n"


@contextlib.contextmanager
def serving(backend: FlakyBackend) -> Iterator[str]:
    """`backend` on a free loopback port, for as long as the block runs; yields its URL."""
    sock = bind("127.0.0.1", 0)
    config = uvicorn.Config(backend.app, log_config=None, timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        thread.join(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(15)


@pytest.fixture
def flaky_backend() -> Iterator[tuple[str, FlakyBackend]]:
    flaky = FlakyBackend()
    with serving(flaky) as url:
        yield url, flaky


@session_loop
async def test_requests_name_every_sampling_field(tiny_model_dir: Path) -> None:
    """A server fills in each sampling option a request leaves out (llama.cpp a repeat
    penalty of 1.1, vLLM the model's generation config), so every request names them all: as
    the user set them or turned off; `--backend-fields` and the `backendFields` setting go
    over them."""
    backend = FlakyBackend(busy=False)
    fields = json.dumps({"repeat_penalty": 1.1, "cache_prompt": True})
    with serving(backend) as url:
        lsp = await remote_client(tiny_model_dir, "--backend-url", url, "--backend-fields", fields)
        try:
            uri = "file:///work/fields.txt"
            open_document(lsp, uri, "answer", language="plaintext")
            assert completion_text(await complete(lsp, uri, 0, 6)) == " = 42"
            greedy = backend.bodies[-1]
            assert (greedy["temperature"], greedy["top_k"], greedy["top_p"]) == (0, 1, 1)
            neutral = {**NEUTRAL_FIELDS, "repeat_penalty": 1.1, "cache_prompt": True}
            assert {name: greedy[name] for name in neutral} == neutral
            assert greedy["stream"] is True and greedy["prompt"] == "answer"

            configure(lsp, topK=40, temperature=0.5, backendFields={"mirostat": 2})
            assert completion_text(await complete(lsp, uri, 0, 6)) == " = 42"
            sampled = backend.bodies[-1]
            assert (sampled["temperature"], sampled["top_k"], sampled["top_p"]) == (0.5, 40, 1)
            assert {name: sampled[name] for name in neutral} == {**neutral, "mirostat": 2}

            configure(lsp, topK=100_000, temperature=0.5, backendFields={})
            assert completion_text(await complete(lsp, uri, 0, 6)) == " = 42"
            every = backend.bodies[-1]
            assert every["top_k"] == 0  # every token, as the servers read 0
            assert {name: every[name] for name in neutral} == neutral
        finally:
            await stop_client(lsp)


@session_loop
async def test_busy_and_stalled_backends_are_reported(
    tiny_model_dir: Path, flaky_backend: tuple[str, FlakyBackend]
) -> None:
    url, flaky = flaky_backend
    lsp = await remote_client(tiny_model_dir, "--backend-url", url, "--backend-timeout", "1")
    try:
        open_document(lsp, "file:///work/answer.txt", "answer", language="plaintext")
        open_document(lsp, "file:///work/stall.txt", "stall", language="plaintext")
        assert completion_text(await complete(lsp, "file:///work/answer.txt", 0, 6)) == ""
        message = await shown_message(lsp, "busy")
        assert "429" in message and f"retrying in {FlakyBackend.RETRY_AFTER} s" in message
        # Within Retry-After nothing is sent.
        assert completion_text(await complete(lsp, "file:///work/answer.txt", 0, 6)) == ""
        assert flaky.requests == 1
        assert (await status(lsp)).state == "error"

        await asyncio.sleep(FlakyBackend.RETRY_AFTER + 0.2)
        result = await complete(lsp, "file:///work/answer.txt", 0, 6)
        assert completion_text(result) == " = 42"
        await shown_message(lsp, "is available")
        assert (await status(lsp)).state == "ready"

        assert completion_text(await complete(lsp, "file:///work/stall.txt", 0, 5)) == ""
        message = await shown_message(lsp, "did not answer within 1 s (read timeout)")
        assert (await status(lsp)).state == "error"
        assert completion_text(await complete(lsp, "file:///work/answer.txt", 0, 6)) == " = 42"
        assert (await status(lsp)).state == "ready"
    finally:
        await stop_client(lsp)


def test_http_proxy_forwards_to_the_backend(
    tiny_model_dir: Path,
    backend: ServerProcess,
    secured_backend: ServerProcess,
    tmp_path: Path,
) -> None:
    """`--serve --backend-url` answers as the backend does, and names a failing backend."""
    (tmp_path / "open").mkdir()
    (tmp_path / "secured").mkdir()
    body = {"prompt": "def fibonacci(n):\n", "max_tokens": 16, "temperature": 0}
    direct = httpx.post(backend.url + "/v1/completions", json=body, timeout=60).json()
    proxy = start_server(tiny_model_dir, tmp_path / "open", "--backend-url", backend.url)
    refused = start_server(
        tiny_model_dir, tmp_path / "secured", "--backend-url", secured_backend.url
    )
    try:
        proxied = httpx.post(proxy.url + "/v1/completions", json=body, timeout=60).json()
        assert proxied["choices"][0]["text"] == direct["choices"][0]["text"]
        assert proxied["usage"]["completion_tokens"] == direct["usage"]["completion_tokens"]
        assert health(proxy)["state"] == "ready"

        response = httpx.post(refused.url + "/v1/completions", json=body, timeout=60)
        assert response.status_code == 502
        assert "refused the API key" in response.json()["error"]["message"]
        answer = httpx.get(refused.url + "/health", timeout=10)
        assert answer.status_code == 503 and answer.json()["state"] == "error"
    finally:
        proxy.stop()
        refused.stop()


def test_without_a_local_tokenizer_the_prompt_is_budgeted_in_characters(
    backend: ServerProcess,
) -> None:
    """`--prompt` through a backend, with no local copy of the model: the text goes as it
    is, and the backend's greedy completion comes back."""
    prompt = "def fibonacci(n):\n"
    body = {"prompt": prompt, "max_tokens": 8, "temperature": 0}
    direct = httpx.post(backend.url + "/v1/completions", json=body, timeout=60).json()
    command = [sys.executable, "-m", "lsp_server.cli", "--backend-url", backend.url]
    result = subprocess.run(
        [*command, "--model", "nobody/nothing", "--max-new-tokens", "8", "--prompt", prompt],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=SERVER_ENV,
        check=True,
    )
    assert result.stdout == direct["choices"][0]["text"] + "\n"
    assert "budgeting the prompt in characters" in result.stderr


@pytest.mark.parametrize("text", ["", "x", "def f(a, b):\n    return a + b\n", "é\U0001f600中\t "])
def test_character_budget_round_trips(text: str) -> None:
    budget = CharacterBudget()
    ids = budget.encode(text)
    assert len(ids) == -(-len(text) // CHARS_PER_TOKEN)
    assert budget.decode(ids) == text
    assert budget.decode(ids[1:]) == text[CHARS_PER_TOKEN:]
