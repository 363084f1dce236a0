"""The language server over llama.cpp's own OpenAI-compatible server: llama-cpp-python's
`python -m llama_cpp.server` (which `make test` builds and installs) serving the bundled demo
model exported to GGUF by `model/weights/gguf_export.py`, and a real `replit-lsp --stdio
--backend-url` in front of it, as a team that already runs llama.cpp would use it.

Suggestions must equal the local engine's on the same model (greedy), where the server's own
sampling defaults would have changed them; keystrokes must reuse the server's cache (its log
says how much of each prompt it kept); a cancel must close the stream (the server logs its
client leaving); a server killed and started again must be reported and then used again,
without a restart.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from pytest_lsp import LanguageClient

from lsp_server.generation.remote.request_fields import NEUTRAL_FIELDS
from model.engine.engine import Engine
from model.hub import DEMO_DIR
from model.tokenizer import Tokenizer
from testkit.backend_cases import (
    CURSOR_IDS,
    CURSORS,
    LONG_CURSOR,
    LONG_DOCUMENT,
    LONG_TOKENS,
    assert_suggestion_is_the_local_engines,
    text_before,
)
from testkit.checkpoints import TINY_MAX_LENGTH
from testkit.environment import SERVER_ENV
from testkit.lsp_client import (
    MAX_NEW_TOKENS,
    cancelled_mid_stream,
    complete,
    completion_count,
    completion_stats,
    completion_text,
    configure,
    engine_completion,
    open_document,
    remote_client,
    shown_message,
    status,
    stop_client,
)
from testkit.servers import ROOT, ServerProcess, free_port, start_llama_cpp_server

if not os.environ.get("CI"):  # CI installs it with `make test`: there it must be found
    pytest.importorskip("llama_cpp.server.app", reason="`make test` installs llama-cpp-python")

session_loop = pytest.mark.asyncio(loop_scope="session")

PREFIX_HIT = re.compile(r"Llama\.generate: (\d+) prefix-match hit, remaining (\d+) prompt tokens")
CLIENT_LEFT = "Disconnected from client"


@pytest.fixture(scope="module")
def demo_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The README's command: `python -m model.weights.gguf_export --model demo --out FILE`."""
    out = tmp_path_factory.mktemp("gguf") / "replit-code-demo.gguf"
    command = [
        sys.executable,
        "-m",
        "model.weights.gguf_export",
        "--model",
        "demo",
        "--out",
        str(out),
    ]
    subprocess.run(command, check=True, timeout=300, cwd=ROOT, env=SERVER_ENV)
    return out


@pytest.fixture(scope="module")
def llama_server(
    demo_gguf: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    server = start_llama_cpp_server(
        demo_gguf, tmp_path_factory.mktemp("llama-cpp"), context=TINY_MAX_LENGTH
    )
    yield server
    server.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(llama_server: ServerProcess) -> AsyncIterator[LanguageClient]:
    options = {"replitLsp": {"maxNewTokens": MAX_NEW_TOKENS}}
    lsp = await remote_client(
        DEMO_DIR, "--backend-url", llama_server.url + "/v1", "--log-level", "DEBUG", options=options
    )
    yield lsp
    await stop_client(lsp)


def server_text(server: ServerProcess, prompt: str, **fields: object) -> str:
    """The server's own greedy answer to `prompt`, with `fields` added to the request."""
    body = {"prompt": prompt, "max_tokens": MAX_NEW_TOKENS, "temperature": 0, **fields}
    response = httpx.post(server.url + "/v1/completions", json=body, timeout=120)
    response.raise_for_status()
    return str(response.json()["choices"][0]["text"])


@session_loop
@pytest.mark.parametrize(("document", "line", "character"), CURSORS, ids=CURSOR_IDS)
async def test_suggestions_equal_the_local_engine(
    client: LanguageClient, demo_engine: Engine, document: str, line: int, character: int
) -> None:
    await assert_suggestion_is_the_local_engines(
        client, demo_engine, "llama", document, line, character
    )


def test_the_server_defaults_would_change_the_suggestions(llama_server: ServerProcess) -> None:
    """Why each request names the neutral fields: with llama.cpp's own defaults (a repeat
    penalty of 1.1) the server's greedy text differs at some cursor."""
    prompts = [text_before(*cursor) for cursor in CURSORS]
    neutral = [server_text(llama_server, prompt, **NEUTRAL_FIELDS) for prompt in prompts]
    defaults = [server_text(llama_server, prompt) for prompt in prompts]
    assert neutral != defaults


@session_loop
async def test_keystrokes_reuse_the_server_cache(
    client: LanguageClient, llama_server: ServerProcess
) -> None:
    """Each keystroke's prompt extends the last: the server's log shows it keeping the
    prompt it has and evaluating only the new end."""
    base = "import os\n\n\ndef main():\n    "
    typed_word = "values"
    for typed in range(len(typed_word) + 1):
        text = base + typed_word[:typed]
        uri = f"file:///work/llama_typing_{typed}.py"
        open_document(client, uri, text)
        if typed == 1:
            log_start = len(llama_server.stderr.read_text())
        await complete(client, uri, 4, 4 + typed)
    hits = PREFIX_HIT.findall(llama_server.stderr.read_text()[log_start:])
    # The last token of a prompt may merge with the next keystroke's character.
    kept_at_least = len(Tokenizer(DEMO_DIR).encode(base)) - 1
    assert len(hits) == len(typed_word)
    assert all(int(kept) >= kept_at_least and int(left) <= 2 for kept, left in hits), hits


@session_loop
async def test_cancel_closes_the_server_stream(
    client: LanguageClient, llama_server: ServerProcess
) -> None:
    """A `$/cancelRequest` mid-stream closes the connection: the server logs its client
    leaving, and fewer tokens than asked were generated. The cancel is sent after a few
    delays until one lands while the tokens stream."""
    uri = "file:///work/llama_cancel.py"
    open_document(client, uri, LONG_DOCUMENT)
    line, character = LONG_CURSOR
    configure(client, maxNewTokens=LONG_TOKENS, maxLines=1000)
    try:
        since = await completion_count(client)
        await complete(client, uri, line, character)
        (whole,) = await completion_stats(client, since)
        assert whole.finish == "length", f"the request must run to its token limit: {whole}"
        left_before = llama_server.stdout.read_text().count(CLIENT_LEFT)
        closed_before = (await status(client)).backend_closed_early
        delays = (0.02, 0.05, 0.1, 0.2, 0.4)
        stopped = await cancelled_mid_stream(client, uri, line, character, delays)
        assert stopped, "no cancel landed mid-stream"
        assert all(r.generated_tokens < LONG_TOKENS for r in stopped)
        closed = (await status(client)).backend_closed_early - closed_before
        assert closed >= len(stopped)
        await asyncio.sleep(1)  # the server notices at its next token
        left = llama_server.stdout.read_text().count(CLIENT_LEFT) - left_before
        assert left >= len(stopped)
    finally:
        configure(client)


@session_loop
async def test_server_killed_then_restarted(
    demo_gguf: Path, demo_engine: Engine, tmp_path: Path
) -> None:
    port = free_port()
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    server = start_llama_cpp_server(
        demo_gguf, tmp_path / "first", context=TINY_MAX_LENGTH, port=port
    )
    lsp = await remote_client(DEMO_DIR, "--backend-url", server.url)
    try:
        uri = "file:///work/llama_restart.py"
        document, line, character = CURSORS[0]
        open_document(lsp, uri, document)
        configure(lsp)
        expected = engine_completion(demo_engine, document, line, character)
        assert completion_text(await complete(lsp, uri, line, character)) == expected

        server.process.kill()
        server.process.wait()
        assert completion_text(await complete(lsp, uri, line, character)) == ""
        message = await shown_message(lsp, server.url)
        assert "unreachable" in message
        answer = await status(lsp)
        assert answer.state == "error" and server.url in answer.message

        server = start_llama_cpp_server(
            demo_gguf, tmp_path / "second", context=TINY_MAX_LENGTH, port=port
        )
        assert completion_text(await complete(lsp, uri, line, character)) == expected
        await shown_message(lsp, "is available")
        assert (await status(lsp)).state == "ready"
    finally:
        await stop_client(lsp)
        server.stop()
