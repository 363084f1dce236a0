"""The endpoint's protections, on a server with one KV cache slot and a queue of one: the API
key, the body size limit, 429 when the queue is full, a client that disconnects mid-stream,
and a model that fails to load.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openai import AuthenticationError, OpenAI

from testkit.servers import ServerProcess, start_server

KEY = "sk-local-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
# This prompt makes the tiny model run to max_tokens (checked below): about two seconds here.
LONG = {"prompt": "def fibonacci(n):\n", "max_tokens": 1000}


@pytest.fixture(scope="module")
def server(
    tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    process = start_server(
        tiny_model_dir,
        tmp_path_factory.mktemp("http-limits"),
        "--max-cache-batch-size",
        "1",
        "--max-queue",
        "1",
        max_length=1024,
        env={"REPLIT_LSP_API_KEY": KEY},
    )
    yield process
    process.stop()


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> str:
    return tiny_model_dir.name


def health(server: ServerProcess) -> dict:
    return httpx.get(server.url + "/health").json()


def test_api_key_is_required_on_v1(server: ServerProcess, model: str) -> None:
    missing = httpx.get(server.url + "/v1/models")
    wrong = httpx.get(server.url + "/v1/models", headers={"Authorization": "Bearer nope"})
    for response in (missing, wrong):
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_api_key"
        assert response.json()["error"]["type"] == "invalid_request_error"
    assert httpx.get(server.url + "/v1/models", headers=AUTH).status_code == 200
    assert httpx.get(server.url + "/health").status_code == 200

    with pytest.raises(AuthenticationError):
        OpenAI(base_url=server.url + "/v1", api_key="nope", max_retries=0).models.list()
    client = OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0)
    assert (
        client.completions.create(model=model, prompt="x = ", max_tokens=3).usage.completion_tokens
        == 3
    )


def test_oversized_body_gets_413(server: ServerProcess) -> None:
    body = b'{"prompt": "' + b" " * (5 * 1024 * 1024) + b'"}'
    declared = httpx.post(server.url + "/v1/completions", content=body, headers=AUTH)
    assert declared.status_code == 413
    assert declared.json()["error"]["code"] == "request_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit applies as it streams
        for start in range(0, len(body), 65536):
            yield body[start : start + 65536]

    streamed = httpx.post(server.url + "/v1/completions", content=chunks(), headers=AUTH)
    assert streamed.status_code == 413


def test_full_queue_answers_429_at_once(server: ServerProcess) -> None:
    """One slot, one queued: of six simultaneous long requests, the rest are turned away."""
    responses: list[httpx.Response] = []
    lock = threading.Lock()

    def post() -> None:
        response = httpx.post(server.url + "/v1/completions", json=LONG, headers=AUTH, timeout=60)
        with lock:
            responses.append(response)

    threads = [threading.Thread(target=post) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    served = [r for r in responses if r.status_code == 200]
    rejected = [r for r in responses if r.status_code == 429]
    assert len(served) + len(rejected) == 6
    assert len(served) >= 2 and rejected
    for response in served:
        assert response.json()["usage"]["completion_tokens"] == LONG["max_tokens"]
        assert response.json()["choices"][0]["finish_reason"] == "length"
    for response in rejected:
        assert response.json()["error"]["code"] == "rate_limit_exceeded"
        assert response.headers["Retry-After"]
        assert response.elapsed.total_seconds() < 1.0


def test_disconnect_mid_stream_stops_generation_and_frees_the_slot(
    server: ServerProcess, model: str
) -> None:
    before = health(server)
    client = OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0)
    stream = client.completions.create(model=model, stream=True, **LONG)
    first = next(iter(stream))
    assert first.choices[0].text
    stream.close()

    deadline = time.monotonic() + 10
    while (after := health(server))["active"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert after["active"] == 0
    assert after["disconnected"] == before["disconnected"] + 1
    # Stopped long before its 1000 tokens (it runs to all of them when read to the end).
    assert after["generated_tokens"] - before["generated_tokens"] < 200

    # The only slot is free again: the next request is served, not queued behind a ghost.
    started = time.monotonic()
    response = client.completions.create(model=model, prompt="x = ", max_tokens=5)
    assert response.usage.completion_tokens == 5
    assert time.monotonic() - started < 5


def test_model_that_fails_to_load_answers_503(tmp_path: Path) -> None:
    broken = start_server(tmp_path / "no-such-model", tmp_path)
    try:
        state = httpx.get(broken.url + "/health")
        assert state.status_code == 503
        assert state.json()["state"] == "error"
        response = httpx.post(broken.url + "/v1/completions", json={"prompt": "x"})
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["type"] == "server_error"
        assert "failed to load" in error["message"] and "no-such-model" in error["message"]
    finally:
        broken.stop()
