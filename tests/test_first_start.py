"""First starts as a new user has them: a checkpoint never seen before and an empty
compiled-model cache, from each front door that loads the model on a worker thread.

Each test compiles its own model (about a minute and a half here), so none of them can pass on
caches warmed by the rest of the suite: each asserts that its server compiled, and that the
compiled model landed in its own cache directory.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from lsprotocol import types
from openai import OpenAI
from pytest_lsp import LanguageClient, client_capabilities

from testkit.checkpoints import make_random_checkpoint
from testkit.environment import SERVER_ENV
from testkit.lsp_client import complete, open_document, start_client, wait_until_loaded
from testkit.servers import ServerProcess, free_port, server_command

ASYNC = pytest.mark.asyncio(loop_scope="session")

DOCUMENT = "import os\n\n\ndef fibonacci(n):\n    "
FIRST_START_TIMEOUT = 600


@pytest.fixture
def fresh_model_dir(tmp_path: Path) -> Path:
    """A checkpoint of a shape no other test compiles (one layer, four heads)."""
    return make_random_checkpoint(
        tmp_path / "fresh-mpt", d_model=64, n_heads=4, kv_n_heads=2, n_layers=1, seed=7
    )


@pytest.fixture
def empty_cache(tmp_path: Path) -> Path:
    cache = tmp_path / "cache"
    cache.mkdir()
    return cache


def compiled_models(cache: Path) -> list[Path]:
    return sorted(cache.rglob("*.mef"))


async def lsp_completion(client: LanguageClient) -> types.InlineCompletionList:
    uri = "file:///work/first_start.py"
    open_document(client, uri, DOCUMENT)
    return await complete(client, uri, 4, 4, timeout=120)


def assert_loading_was_reported(reports: list[object]) -> None:
    """The stages of a first start in order (compiled before the weights are read, so the
    compiler's memory and the weights are never held at once), the weights' percentage
    climbing to 100."""
    progress = [r for r in reports if isinstance(r, types.WorkDoneProgressReport)]
    messages = [r.message or "" for r in progress]
    stages = ["compiling", "reading weights", "binding weights"]
    positions = [next(i for i, m in enumerate(messages) if m.startswith(s)) for s in stages]
    assert positions == sorted(positions), messages
    reading = [r.percentage for r in progress if (r.message or "").startswith("reading weights")]
    assert reading[-1] == 100 and reading == sorted(reading)


def start_http(model_dir: Path, cache: Path, log_dir: Path, *extra: str) -> ServerProcess:
    port = free_port()
    stdout, stderr = log_dir / "stdout.log", log_dir / "stderr.log"
    command = server_command(model_dir, "--serve", "--http-port", str(port), *extra)
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=err,
            env={**SERVER_ENV, "REPLIT_LSP_CACHE_DIR": str(cache)},
        )
    return ServerProcess(process, port, stdout, stderr)


def health_until_ready(server: ServerProcess) -> tuple[dict, set[str]]:
    """Polls /health through the whole first start; returns the ready body and stages seen."""
    deadline = time.monotonic() + FIRST_START_TIMEOUT
    stages: set[str] = set()
    while time.monotonic() < deadline:
        assert server.process.poll() is None, server.stderr.read_text()[-2000:]
        try:
            response = httpx.get(server.url + "/health", timeout=5)
        except httpx.TransportError:
            time.sleep(0.2)
            continue
        body = response.json()
        stages.add(body["stage"])
        if body["state"] == "ready":
            return body, stages
        assert body["state"] == "loading", body
        assert response.status_code == 503
        time.sleep(0.2)
    raise TimeoutError(server.stderr.read_text()[-2000:])


@ASYNC
async def test_language_server_compiles_on_first_start(
    fresh_model_dir: Path, empty_cache: Path
) -> None:
    command = server_command(fresh_model_dir, "--stdio")
    capabilities = client_capabilities("visual-studio-code")
    env = {**SERVER_ENV, "REPLIT_LSP_CACHE_DIR": str(empty_cache)}
    client, _ = await start_client(command, capabilities, None, env=env)
    try:
        answer = await wait_until_loaded(client, timeout=FIRST_START_TIMEOUT)
        assert answer.state == "ready", answer.message
        assert answer.stage == "ready" and "(compiled)" in answer.message
        assert len(compiled_models(empty_cache)) == 1
        (reports,) = client.progress_reports.values()
        assert_loading_was_reported(reports)
        result = await lsp_completion(client)
        assert result.items and result.items[0].insert_text
        await asyncio.wait_for(client.shutdown_session(), 30)
    finally:
        await client.stop()


def test_http_server_compiles_on_first_start(
    fresh_model_dir: Path, empty_cache: Path, tmp_path: Path
) -> None:
    server = start_http(fresh_model_dir, empty_cache, tmp_path)
    try:
        health, stages = health_until_ready(server)
        assert health["compile_source"] == "compiled"
        assert health["weights_source"] == "checkpoint"  # float weights, nothing quantized
        assert "compiling" in stages
        assert len(compiled_models(empty_cache)) == 1
        openai = OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
        completion = openai.completions.create(
            model=health["model"], prompt="def add(a, b):\n", max_tokens=16, temperature=0
        )
        assert completion.choices[0].text
        assert completion.usage is not None and completion.usage.completion_tokens > 0
        log = server.stderr.read_text()
        for stage in ("compiling", "reading weights", "binding weights", "model ready"):
            assert stage in log, log[-2000:]
    finally:
        server.stop()


@ASYNC
async def test_both_front_doors_compile_one_model_on_first_start(
    fresh_model_dir: Path, empty_cache: Path
) -> None:
    port = free_port()
    command = server_command(fresh_model_dir, "--stdio", "--serve", "--http-port", str(port))
    env = {**SERVER_ENV, "REPLIT_LSP_CACHE_DIR": str(empty_cache)}
    client, _ = await start_client(command, types.ClientCapabilities(), None, env=env)
    try:
        answer = await wait_until_loaded(client, timeout=FIRST_START_TIMEOUT)
        assert answer.state == "ready" and "(compiled)" in answer.message, answer.message
        result = await lsp_completion(client)
        assert result.items and result.items[0].insert_text
        async with httpx.AsyncClient(timeout=60) as http:
            health = (await http.get(f"http://127.0.0.1:{port}/health")).json()
            body = {"prompt": "def add(a, b):\n", "max_tokens": 16, "temperature": 0}
            response = await http.post(f"http://127.0.0.1:{port}/v1/completions", json=body)
        assert response.status_code == 200 and response.json()["choices"][0]["text"]
        assert health["compile_source"] == "compiled" and health["loads"] == 1
        assert health["engine_id"] == answer.engine_id
        assert len(compiled_models(empty_cache)) == 1
        await asyncio.wait_for(client.shutdown_session(), 30)
    finally:
        await client.stop()
