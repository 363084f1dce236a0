"""The language server on stdio and the HTTP endpoint in one process, sharing one model.

Both front doors are used at the same time: an LSP inline completion is requested while an
HTTP stream is open, and the two report the same engine object and process.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import httpx
import pytest
from lsprotocol import types
from pytest_lsp import make_test_lsp_client

from testkit.servers import free_port, server_command

pytestmark = pytest.mark.asyncio(loop_scope="session")

ROOT = Path(__file__).resolve().parents[1]
URI = "file:///work/example.py"
DOCUMENT = "import os\n\n\ndef fibonacci(n):\n    "


async def ready_health(url: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            try:
                response = await http.get(url + "/health")
                if response.status_code == 200:
                    return response.json()
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError("the HTTP endpoint did not report a ready model")


async def test_lsp_and_http_share_one_model(tiny_model_dir: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = server_command(tiny_model_dir, "--stdio", "--serve", "--http-port", str(port))
    lsp = make_test_lsp_client()
    await lsp.start_io(*command, env={**os.environ, "HF_HUB_OFFLINE": "1"}, cwd=str(ROOT))
    try:
        await asyncio.wait_for(
            lsp.initialize_session(types.InitializeParams(capabilities=types.ClientCapabilities())),
            30,
        )
        await ready_health(url)
        item = types.TextDocumentItem(uri=URI, language_id="python", version=1, text=DOCUMENT)
        lsp.text_document_did_open(types.DidOpenTextDocumentParams(text_document=item))

        body = {"prompt": "def add(a, b):\n", "max_tokens": 200, "stream": True}
        async with (
            httpx.AsyncClient(timeout=60) as http,
            http.stream("POST", url + "/v1/completions", json=body) as stream,
        ):
            lines = stream.aiter_lines()
            first = await anext(lines)
            assert first.startswith("data: ")
            # The HTTP generation is under way: now the editor asks for a completion.
            inline = await asyncio.wait_for(
                lsp.text_document_inline_completion_async(
                    types.InlineCompletionParams(
                        text_document=types.TextDocumentIdentifier(uri=URI),
                        position=types.Position(line=4, character=4),
                        context=types.InlineCompletionContext(
                            trigger_kind=types.InlineCompletionTriggerKind.Invoked
                        ),
                    )
                ),
                60,
            )
            events = [first] + [line async for line in lines]
        assert isinstance(inline, types.InlineCompletionList)
        assert inline.items and inline.items[0].insert_text
        data = [line[len("data: ") :] for line in events if line.startswith("data: ")]
        assert data[-1] == "[DONE]"
        assert "".join(json.loads(d)["choices"][0]["text"] for d in data[:-1])

        # The editor reports the acceptance; both front doors count it.
        command = inline.items[0].command
        assert command is not None
        await asyncio.wait_for(
            lsp.workspace_execute_command_async(
                types.ExecuteCommandParams(command=command.command, arguments=command.arguments)
            ),
            30,
        )

        status = await asyncio.wait_for(lsp.protocol.send_request_async("replitLsp/status", {}), 30)
        health = await ready_health(url)
        assert health["suggestions"]["shown"] == health["suggestions"]["accepted"] == 1
        assert health["suggestions"]["mean_latency_ms"] > 0
        assert status.suggestions.accepted == 1
        assert status.state == "ready"
        assert status.engine_id == health["engine_id"]
        assert status.pid == health["pid"]
        assert health["loads"] == 1
        assert health["served"] == 1
        await asyncio.wait_for(lsp.shutdown_session(), 30)
    finally:
        await lsp.stop()
