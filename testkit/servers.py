"""How the tests and benchmarks start the servers: as editors and users do, from this
interpreter, as real processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from testkit.checkpoints import TINY_MAX_LENGTH

ROOT = Path(__file__).resolve().parents[1]


def server_command(
    model_dir: Path | str,
    *args: str,
    max_length: int = TINY_MAX_LENGTH,
    context_tokens: int | None = 0,
    recent_suggestions: int | None = 0,
    time_budget_ms: int | None = 0,
) -> list[str]:
    """`replit-lsp ARGS` on `model_dir`, with the tests' context length unless told otherwise,
    no context from other files, no memory of suggestions beyond typing through the last, and
    no time budget: a test's expected answer is the model's whole answer for the current file,
    unless it turns these on with its settings (None: the server's default)."""
    context = [] if context_tokens is None else ["--context-tokens", str(context_tokens)]
    if recent_suggestions is not None:
        context += ["--recent-suggestions", str(recent_suggestions)]
    if time_budget_ms is not None:
        context += ["--time-budget-ms", str(time_budget_ms)]
    return [
        sys.executable,
        "-m",
        "lsp_server.cli",
        *args,
        "--weight-path",
        str(model_dir),
        "--max-length",
        str(max_length),
        *context,
    ]


def lsp_server_command(model_dir: Path, *extra: str) -> list[str]:
    """`replit-lsp --stdio` on `model_dir`."""
    return server_command(model_dir, "--stdio", *extra)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    port: int
    stdout: Path
    stderr: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def launch(
    command: list[str], log_dir: Path, port: int, env: dict[str, str] | None = None
) -> ServerProcess:
    """Starts `command` (a server on `port`) from the project's root, its output to files."""
    stdout, stderr = log_dir / "stdout.log", log_dir / "stderr.log"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=out,
            stderr=err,
            env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
        )
    return ServerProcess(process, port, stdout, stderr)


def start_server(
    model_dir: Path,
    log_dir: Path,
    *extra: str,
    max_length: int = TINY_MAX_LENGTH,
    env: dict[str, str] | None = None,
    port: int | None = None,
) -> ServerProcess:
    """Starts `replit-lsp --serve` (on `port`, else a free one) and waits until /health
    answers (ready or not)."""
    port = port or free_port()
    command = server_command(
        model_dir, "--serve", "--http-port", str(port), *extra, max_length=max_length
    )
    server = launch(command, log_dir, port, env)
    wait_for_health(server)
    return server


def start_llama_cpp_server(
    gguf: Path, log_dir: Path, *, context: int, port: int | None = None
) -> ServerProcess:
    """Starts llama.cpp's own OpenAI-compatible server (llama-cpp-python's
    `python -m llama_cpp.server`) on `gguf`, serving it as the file's stem, with a context of
    `context` tokens; verbose, so its log shows the cache it reuses. Waits until it lists
    its model."""
    port = port or free_port()
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(gguf),
        "--model_alias",
        gguf.stem,
        "--n_ctx",
        str(context),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--verbose",
        "true",
    ]
    # Unbuffered: the server prints a client leaving to stdout, and the tests read it.
    server = launch(command, log_dir, port, env={"PYTHONUNBUFFERED": "1"})
    wait_for_answer(server, "/v1/models", lambda response: response.status_code == 200)
    return server


def start_vllm_server(
    model_dir: Path, log_dir: Path, *, context: int, port: int | None = None
) -> ServerProcess:
    """Starts vLLM's OpenAI-compatible server on `model_dir` (served as its directory's
    name) with a context of `context` tokens, prefix caching and the cached-token counts in
    its usage, as the README's recipe does. Waits until it lists its model: loading takes
    minutes."""
    port = port or free_port()
    command = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_dir),
        "--served-model-name",
        model_dir.name,
        "--max-model-len",
        str(context),
        "--dtype",
        "float32",
        "--enable-prefix-caching",
        "--enable-prompt-tokens-details",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    server = launch(command, log_dir, port, env={"PYTHONUNBUFFERED": "1"})
    wait_for_answer(server, "/v1/models", lambda response: response.status_code == 200, 900)
    return server


def wait_for_answer(
    server: ServerProcess,
    path: str,
    accept: Callable[[httpx.Response], bool],
    timeout: float = 300,
) -> httpx.Response:
    """The first answer to GET `path` that `accept` takes (compiling may take minutes, once),
    while the server's process runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"the server exited: {server.stderr.read_text()[-2000:]}")
        try:
            response = httpx.get(server.url + path, timeout=5)
            if accept(response):
                return response
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"the server did not become ready: {server.stderr.read_text()[-2000:]}")


def wait_for_health(server: ServerProcess, timeout: float = 300) -> dict:
    """The first /health answer that is not 'loading'."""
    answer = wait_for_answer(
        server, "/health", lambda response: response.json().get("state") != "loading", timeout
    )
    return answer.json()
