"""How the tests and benchmarks start the servers: as editors and users do, from this
interpreter, as real processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
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
) -> list[str]:
    """`replit-lsp ARGS` on `model_dir`, with the tests' context length unless told otherwise,
    and no context from other files: a test's expected answer is the current file's, unless
    it turns the context on with its settings (None: the server's default)."""
    context = [] if context_tokens is None else ["--context-tokens", str(context_tokens)]
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
    stdout, stderr = log_dir / "stdout.log", log_dir / "stderr.log"
    command = server_command(
        model_dir, "--serve", "--http-port", str(port), *extra, max_length=max_length
    )
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=out,
            stderr=err,
            env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
        )
    server = ServerProcess(process, port, stdout, stderr)
    wait_for_health(server)
    return server


def wait_for_health(server: ServerProcess, timeout: float = 300) -> dict:
    """The first /health answer that is not 'loading' (compiling may take minutes, once)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"the server exited: {server.stderr.read_text()[-2000:]}")
        try:
            response = httpx.get(server.url + "/health", timeout=5)
            if response.json().get("state") != "loading":
                return response.json()
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"the server did not become ready: {server.stderr.read_text()[-2000:]}")
