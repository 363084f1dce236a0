"""Bad input, settings, the UTF-8 position encoding, TCP, and a model that fails to load.

Every bad request must get a valid answer (an empty completion list or a JSON-RPC error),
and the server must keep answering afterwards.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time
import uuid
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.protocol.json_rpc import JsonRPCRequestMessage
from pytest_lsp import LanguageClient, client_capabilities, make_test_lsp_client

from testkit.checkpoints import TINY_MAX_LENGTH
from testkit.environment import SERVER_ENV
from testkit.lsp_client import (
    FIBONACCI,
    MAX_NEW_TOKENS,
    ClientSetup,
    complete,
    completion_count,
    completion_stats,
    completion_text,
    configure,
    expected_completion,
    open_document,
    status,
    wait_until_loaded,
)
from testkit.reference import ReferenceMPT
from testkit.servers import lsp_server_command

pytestmark = pytest.mark.asyncio(loop_scope="session")


def utf8_capabilities() -> types.ClientCapabilities:
    capabilities = client_capabilities("neovim@v0.10.0")
    capabilities.general = types.GeneralClientCapabilities(
        position_encodings=[types.PositionEncodingKind.Utf8, types.PositionEncodingKind.Utf16]
    )
    return capabilities


@pytest.fixture(scope="module")
def lsp_setup() -> ClientSetup:
    """A client that prefers UTF-8 positions, and sends flat (top-level) settings."""
    options = {"maxNewTokens": MAX_NEW_TOKENS, "maxLines": 8}
    return ClientSetup(("--log-level", "DEBUG"), utf8_capabilities(), options)


@pytest.fixture(scope="module")
def utf8_client(lsp_client: LanguageClient) -> LanguageClient:
    """The module's client, which the server granted UTF-8 positions."""
    result = lsp_client.initialize_result  # type: ignore[attr-defined]
    assert result.capabilities.position_encoding == types.PositionEncodingKind.Utf8
    return lsp_client


async def assert_alive(client: LanguageClient) -> None:
    assert (await status(client)).state == "ready"


async def test_utf8_positions_count_bytes(
    utf8_client: LanguageClient, tiny_model_dir: Path, tiny_reference: ReferenceMPT
) -> None:
    uri = "file:///work/accents.py"
    text = 'name = "José Müller"  # naïve\nprint(name)\n'
    open_document(utf8_client, uri, text)
    index = text.index("Müller") + 2  # after "Mü"
    byte_column = len(text[:index].encode("utf-8"))
    result = await complete(utf8_client, uri, 0, byte_column)
    assert completion_text(result) == expected_completion(
        tiny_model_dir, tiny_reference, text, 0, index
    )
    # Inside the two bytes of "ü": the cursor goes before it.
    result = await complete(utf8_client, uri, 0, byte_column - 1)
    expected = expected_completion(tiny_model_dir, tiny_reference, text, 0, index - 1)
    assert completion_text(result) == expected
    if not expected:
        pytest.skip("the reference completes nothing before the 'ü': no range to check")
    assert result.items[0].range.start.character == byte_column - 2


async def test_position_past_the_end_of_a_line_is_clamped(
    utf8_client: LanguageClient, tiny_model_dir: Path, tiny_reference: ReferenceMPT
) -> None:
    uri = "file:///work/clamp_line.py"
    text = "def f(x):\n    return x\n"
    open_document(utf8_client, uri, text)
    result = await complete(utf8_client, uri, 0, 10_000)
    expected = expected_completion(tiny_model_dir, tiny_reference, text, 0, len("def f(x):"))
    assert completion_text(result) == expected
    if not expected:
        pytest.skip("the reference completes nothing at the line's end: no range to check")
    assert result.items[0].range.start == types.Position(line=0, character=9)
    await assert_alive(utf8_client)


async def test_position_past_the_end_of_the_document_is_clamped(
    utf8_client: LanguageClient, tiny_model_dir: Path, tiny_reference: ReferenceMPT
) -> None:
    uri = "file:///work/clamp_doc.py"
    text = "def f(x):\n    return x"
    open_document(utf8_client, uri, text)
    result = await complete(utf8_client, uri, 99, 3)
    expected = expected_completion(tiny_model_dir, tiny_reference, text, 1, len("    return x"))
    assert completion_text(result) == expected
    if not expected:
        pytest.skip("the reference completes nothing at the document's end: no range to check")
    assert result.items[0].range.start == types.Position(line=1, character=12)
    await assert_alive(utf8_client)


async def test_unknown_and_closed_documents_get_nothing(utf8_client: LanguageClient) -> None:
    assert not (await complete(utf8_client, "file:///nowhere/never_opened.py", 0, 0)).items
    uri = "file:///work/closed.py"
    open_document(utf8_client, uri, FIBONACCI)
    utf8_client.text_document_did_close(
        types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
    )
    assert not (await complete(utf8_client, uri, 3, 17)).items
    await assert_alive(utf8_client)


async def test_empty_document_gets_nothing(utf8_client: LanguageClient) -> None:
    uri = "file:///work/empty.py"
    open_document(utf8_client, uri, "")
    assert not (await complete(utf8_client, uri, 0, 0)).items
    assert not (await complete(utf8_client, uri, 5, 5)).items
    await assert_alive(utf8_client)


async def test_huge_document_tokenizes_only_the_tail(utf8_client: LanguageClient) -> None:
    uri = "file:///work/huge.py"
    line = "value_{0} = compute(value_{0}, factor=3.14159)  # filler\n"
    text = "".join(line.format(i) for i in range(90_000))
    assert len(text) > 5_000_000
    open_document(utf8_client, uri, text)
    since = await completion_count(utf8_client)
    started = time.monotonic()
    await complete(utf8_client, uri, 90_000, 0, timeout=60)
    assert time.monotonic() - started < 20
    (stats,) = await completion_stats(utf8_client, since)
    assert 0 < stats.prompt_tokens <= TINY_MAX_LENGTH - MAX_NEW_TOKENS
    await assert_alive(utf8_client)


async def test_binary_junk_gets_a_valid_answer(utf8_client: LanguageClient) -> None:
    uri = "file:///work/junk.bin"
    junk = "".join(chr(c) for c in range(0, 0x800, 7)) + "\x00\x00\ud800\udfff\x85\u2028\x0c"
    text = "\x00header\x00\n" + junk * 20 + "\nend\x00"
    open_document(utf8_client, uri, text, language="plaintext")
    for line, character in [(0, 3), (1, 40), (1, 10_000), (2, 2), (3, 0)]:
        result = await complete(utf8_client, uri, line, character)
        assert isinstance(result, types.InlineCompletionList)
    await assert_alive(utf8_client)


async def send_raw_request(client: LanguageClient, method: str, params: Any) -> Any:
    """Sends `params` exactly as given, past the client's typed serialization."""
    msg_id = str(uuid.uuid4())
    future: Future[Any] = Future()
    client.protocol._request_futures[msg_id] = future
    message = JsonRPCRequestMessage(id=msg_id, method=method, jsonrpc="2.0", params=params)
    client.protocol._send_data(message)
    return await asyncio.wait_for(asyncio.wrap_future(future), 10)


async def test_malformed_requests_get_json_rpc_errors(utf8_client: LanguageClient) -> None:
    uri = "file:///work/malformed.py"
    open_document(utf8_client, uri, FIBONACCI)
    document = {"uri": uri}
    for method, params in [
        (types.TEXT_DOCUMENT_INLINE_COMPLETION, {"textDocument": document}),
        (
            types.TEXT_DOCUMENT_INLINE_COMPLETION,
            {"textDocument": document, "position": {"line": -1, "character": "x"}},
        ),
        (types.TEXT_DOCUMENT_INLINE_COMPLETION, None),
        ("replitLsp/noSuchMethod", {}),
    ]:
        with pytest.raises(JsonRpcException):
            await send_raw_request(utf8_client, method, params)
    await assert_alive(utf8_client)


def warnings_since(client: LanguageClient, since: int) -> list[str]:
    return [
        m.message
        for m in client.log_messages[since:]
        if m.type == types.MessageType.Warning and "replit-lsp" in m.message
    ]


async def wait_for_warnings(client: LanguageClient, since: int, count: int) -> list[str]:
    deadline = time.monotonic() + 10
    while len(found := warnings_since(client, since)) < count:
        assert time.monotonic() < deadline, f"expected {count} warnings, got {found}"
        await asyncio.sleep(0.05)
    return found


async def test_invalid_settings_are_reported_and_ignored(
    utf8_client: LanguageClient, tiny_model_dir: Path, tiny_reference: ReferenceMPT
) -> None:
    since = len(utf8_client.log_messages)
    utf8_client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(
            settings={"maxNewTokens": "many", "topK": 0, "colour": "blue"}
        )
    )
    found = await wait_for_warnings(utf8_client, since, 3)
    assert any("'maxNewTokens' must be an integer >= 1" in w and "keeping 24" in w for w in found)
    assert any("unknown setting 'colour'" in w for w in found)
    # The previous values still hold: the answer is the 24-token greedy reference.
    uri = "file:///work/after_bad_settings.py"
    open_document(utf8_client, uri, FIBONACCI)
    result = await complete(utf8_client, uri, 3, 17)
    assert completion_text(result) == expected_completion(
        tiny_model_dir, tiny_reference, FIBONACCI, 3, 17
    )


async def test_enabled_languages(utf8_client: LanguageClient) -> None:
    uri = "file:///work/disabled.py"
    open_document(utf8_client, uri, FIBONACCI)
    try:
        configure(utf8_client, enabledLanguages=["rust"])
        assert not (await complete(utf8_client, uri, 3, 17)).items
        since = await completion_count(utf8_client)
        configure(utf8_client, enabledLanguages=["python"])
        await complete(utf8_client, uri, 3, 17)
        assert await completion_stats(utf8_client, since), "python is enabled again"
    finally:
        configure(utf8_client, enabledLanguages=[])


async def test_prepend_file_path(
    utf8_client: LanguageClient, tiny_model_dir: Path, tiny_reference: ReferenceMPT
) -> None:
    """The prompt starts with a comment naming the file; the rest of it is unchanged."""
    from lsp_server.lsp.postprocess import CompletionContext, detect_indentation, postprocess
    from model.tokenizer import Tokenizer

    uri = "file:///work/named.py"
    open_document(utf8_client, uri, FIBONACCI)
    try:
        configure(utf8_client, prependFilePath=True)
        result = await complete(utf8_client, uri, 3, 17)
    finally:
        configure(utf8_client)
    tokenizer = Tokenizer(tiny_model_dir)
    before = FIBONACCI[: FIBONACCI.index("(n):") + 4]
    prompt = tokenizer.encode("# /work/named.py\n") + tokenizer.encode(before)
    ids = tiny_reference.greedy(prompt, MAX_NEW_TOKENS, tokenizer.eos_id)
    context = CompletionContext(
        line_prefix="def fibonacci(n):",
        text_after=FIBONACCI[len(before) + 1 :],
        indentation=detect_indentation(before),
    )
    assert completion_text(result) == postprocess(tokenizer.decode(ids), context)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_tcp_server_with_a_model_that_fails_to_load(tmp_path: Path) -> None:
    """The failure is shown to the user, and requests answer at once instead of waiting."""
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    port = free_port()
    command = [
        sys.executable, "-m", "lsp_server.cli", "--tcp", "--lsp-port", str(port),
        "--weight-path", str(broken),
    ]  # fmt: skip
    process = await asyncio.create_subprocess_exec(*command, env=SERVER_ENV)
    client = make_test_lsp_client()
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                await client.start_tcp("127.0.0.1", port)
                break
            except OSError:
                assert time.monotonic() < deadline, "the TCP server did not start"
                await asyncio.sleep(0.2)
        capabilities = client_capabilities("neovim@v0.10.0")
        await asyncio.wait_for(
            client.initialize_session(
                types.InitializeParams(
                    capabilities=capabilities, initialization_options={"requestWaitSeconds": 60}
                )
            ),
            30,
        )
        answer: Any = await wait_until_loaded(client, timeout=60)
        assert answer.state == "error" and answer.engine_id is None
        deadline = time.monotonic() + 10
        while not client.messages:
            assert time.monotonic() < deadline, "no window/showMessage about the failure"
            await asyncio.sleep(0.05)
        assert client.messages[0].type == types.MessageType.Error
        assert "failed to load" in client.messages[0].message

        open_document(client, "file:///work/a.py", FIBONACCI)
        started = time.monotonic()
        assert not (await complete(client, "file:///work/a.py", 3, 17)).items
        assert time.monotonic() - started < 5
        await asyncio.wait_for(client.shutdown_session(), 30)
    finally:
        await client.stop()
        if process.returncode is None:
            process.terminate()
        await asyncio.wait_for(process.wait(), 30)


async def test_stderr_is_quiet_at_the_default_log_level(tmp_path: Path) -> None:
    """Editors show the server's stderr in an output panel: pygls's own INFO lines (one per
    registered feature) must not fill it. A client that hangs up at once is enough to see."""
    broken = tmp_path / "no-model"
    broken.mkdir()
    process = await asyncio.create_subprocess_exec(
        *lsp_server_command(broken),
        stdin=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=SERVER_ENV,
    )
    _, stderr = await asyncio.wait_for(process.communicate(b""), 60)
    assert process.returncode == 0
    assert b"pygls" not in stderr, stderr.decode()[-500:]
