"""The language server as an editor sees it: a real `replit-lsp --stdio` process, the tiny
random checkpoint on CPU, and an LSP client over its stdin/stdout.

Completions are checked against the independent float64 reference: the expected prompt is
built here from the document text, the reference continues it greedily, and the result goes
through the same post-processing rules the server applies.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import LanguageClient

from lsp_server.feedback import ACCEPT_COMMAND, PARTIAL_ACCEPT_COMMAND
from lsp_server.lsp.completion_log import CompletionRecord
from testkit.checkpoints import TINY_MAX_LENGTH
from testkit.lsp_client import (
    FIBONACCI,
    MAX_NEW_TOKENS,
    ClientSetup,
    cancel,
    complete,
    completion_count,
    completion_stats,
    completion_text,
    configure,
    expected_completion,
    open_document,
    send_completion,
    status,
)
from testkit.reference import ReferenceMPT

pytestmark = pytest.mark.asyncio(loop_scope="session")

MAX_LENGTH = TINY_MAX_LENGTH


@pytest.fixture(scope="module")
def lsp_setup() -> ClientSetup:
    options = {"replitLsp": {"maxNewTokens": MAX_NEW_TOKENS, "unknownKey": True}}
    return ClientSetup(args=("--log-level", "DEBUG"), options=options)


async def test_initialize_advertises_inline_completion_and_reports_loading(
    lsp_client: LanguageClient,
) -> None:
    capabilities = lsp_client.initialize_result.capabilities  # type: ignore[attr-defined]
    assert capabilities.inline_completion_provider is not None
    sync = capabilities.text_document_sync
    assert isinstance(sync, types.TextDocumentSyncOptions)
    assert sync.change == types.TextDocumentSyncKind.Incremental and sync.open_close
    assert capabilities.position_encoding == types.PositionEncodingKind.Utf16

    (reports,) = lsp_client.progress_reports.values()
    assert isinstance(reports[0], types.WorkDoneProgressBegin)
    assert isinstance(reports[-1], types.WorkDoneProgressEnd)
    assert any(isinstance(r, types.WorkDoneProgressReport) for r in reports[1:-1])
    messages = [m.message for m in lsp_client.log_messages]
    assert any("model ready" in m for m in messages)
    assert any("unknown setting 'unknownKey'" in m for m in messages)

    answer = await status(lsp_client)
    assert answer.state == "ready" and answer.pid != os.getpid()
    assert isinstance(answer.engine_id, int)


async def test_multi_line_completion_matches_the_reference(
    lsp_client: LanguageClient, tiny_model_dir: Path, tiny_reference: ReferenceMPT
) -> None:
    uri = "file:///work/fib_multi.py"
    open_document(lsp_client, uri, FIBONACCI)
    line, index = 3, len("def fibonacci(n):")
    result = await complete(lsp_client, uri, line, index)
    expected = expected_completion(tiny_model_dir, tiny_reference, FIBONACCI, line, index)
    assert completion_text(result) == expected
    if not expected:
        pytest.skip("the reference completes nothing here: no range to check")
    cursor = types.Position(line=line, character=index)
    assert result.items[0].range == types.Range(start=cursor, end=cursor)


async def test_single_line_completion_matches_the_reference(
    lsp_client: LanguageClient, tiny_model_dir: Path, tiny_reference: ReferenceMPT
) -> None:
    uri = "file:///work/fib_single.py"
    open_document(lsp_client, uri, FIBONACCI)
    line, index = 7, len("    return fibonacci(")
    result = await complete(lsp_client, uri, line, index)
    expected = expected_completion(tiny_model_dir, tiny_reference, FIBONACCI, line, index)
    assert completion_text(result) == expected
    assert "\n" not in expected


async def test_utf16_position_inside_a_surrogate_pair(
    lsp_client: LanguageClient, tiny_model_dir: Path, tiny_reference: ReferenceMPT
) -> None:
    """Column 9 falls between the two halves of the emoji: the cursor goes before it."""
    uri = "file:///work/emoji.py"
    text = 'name = "\U0001f600\U0001f600"\nprint(name)\n'
    open_document(lsp_client, uri, text)
    result = await complete(lsp_client, uri, 0, 9)
    expected = expected_completion(tiny_model_dir, tiny_reference, text, 0, 8)
    assert completion_text(result) == expected
    if not expected:
        pytest.skip("the reference completes nothing before the emoji: no range to check")
    assert result.items[0].range.start == types.Position(line=0, character=8)


async def test_typing_reuses_the_prompt_cache(
    lsp_client: LanguageClient, tiny_model_dir: Path, tiny_reference: ReferenceMPT
) -> None:
    """50 keystrokes sent as incremental edits, each followed by a request."""
    uri = "file:///work/typing.py"
    text = "import os\n\n\ndef main():\n    "
    typed = "values = [1, 2, 3]\n    total = sum(values)\n    print(total, os.sep)\n"[:50]
    open_document(lsp_client, uri, text)
    since = await completion_count(lsp_client)
    line, character = 4, 4
    for version, char in enumerate(typed, start=2):
        cursor = types.Position(line=line, character=character)
        lsp_client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
                content_changes=[
                    types.TextDocumentContentChangePartial(
                        range=types.Range(start=cursor, end=cursor), text=char
                    )
                ],
            )
        )
        text += char
        line, character = (line + 1, 0) if char == "\n" else (line, character + 1)
        result = await complete(lsp_client, uri, line, character)

    # The server's document followed every edit: its last answer is the reference's.
    last_line = text.split("\n")[line]
    assert completion_text(result) == expected_completion(
        tiny_model_dir, tiny_reference, text, line, len(last_line)
    )
    stats = await completion_stats(lsp_client, since)
    assert len(stats) == len(typed) == 50
    reused = [s.reused_tokens for s in stats[1:]]
    prompt = [s.prompt_tokens for s in stats[1:]]
    assert sum(r > 0 for r in reused) >= 45
    assert sum(reused) >= 0.8 * sum(prompt)


async def generate_long(client: LanguageClient, uri: str) -> CompletionRecord:
    """Sets up a request known to generate all of its 128 tokens, and returns its stats."""
    configure(client, maxNewTokens=128, maxLines=1000)
    since = await completion_count(client)
    await complete(client, uri, 0, 12)
    (stats,) = await completion_stats(client, since)
    return stats


async def test_cancel_request_stops_generation(lsp_client: LanguageClient) -> None:
    """A $/cancelRequest that arrives mid-generation stops it before its token limit.

    The tiny model writes 128 tokens in well under a second, so the cancel is sent after a
    few short delays until one lands while the tokens are being generated."""
    uri = "file:///work/cancel.txt"
    open_document(lsp_client, uri, "lorem ipsum dolor sit amet", language="plaintext")
    try:
        baseline = await generate_long(lsp_client, uri)
        if baseline.finish != "length":
            pytest.fail(f"the request must run to its token limit first: {baseline}")
        stopped_early = []
        for delay in (0.002, 0.005, 0.01, 0.02, 0.04):
            since = await completion_count(lsp_client)
            msg_id, future = await send_completion(lsp_client, uri, 0, 12)
            await asyncio.sleep(delay)
            cancel(lsp_client, msg_id)
            try:
                await asyncio.wait_for(future, 5)
            except JsonRpcException as error:
                assert "cancel" in str(error).lower()
            await asyncio.sleep(0.3)  # the worker records when it lets go of the model
            recorded = await completion_stats(lsp_client, since)
            stopped_early += [s for s in recorded if s.finish == "cancelled"]
        assert stopped_early, "no cancel landed mid-generation"
        assert all(s.generated_tokens < 128 for s in stopped_early)
        assert (await status(lsp_client)).state == "ready"
    finally:
        configure(lsp_client)


async def test_newer_request_supersedes_older_ones(lsp_client: LanguageClient) -> None:
    uri = "file:///work/supersede.txt"
    open_document(lsp_client, uri, "lorem ipsum dolor sit amet", language="plaintext")
    try:
        baseline = await generate_long(lsp_client, uri)
        started = time.monotonic()
        pending = [(await send_completion(lsp_client, uri, 0, 12))[1] for _ in range(5)]
        results = await asyncio.wait_for(asyncio.gather(*pending), timeout=30)
        elapsed = time.monotonic() - started
        assert [len(r.items) for r in results[:-1]] == [0, 0, 0, 0]
        assert completion_text(results[-1]) != ""
        # Superseded generations stop early: all five cost little more than one.
        single = baseline.milliseconds / 1000
        assert elapsed < 3 * single + 2
    finally:
        configure(lsp_client)


async def test_rapid_requests_and_cancels_all_settle(lsp_client: LanguageClient) -> None:
    uri = "file:///work/rapid.py"
    open_document(lsp_client, uri, FIBONACCI)
    pending = []
    for i in range(20):
        msg_id, future = await send_completion(lsp_client, uri, 3 + i % 5, 4)
        if i % 2:
            cancel(lsp_client, msg_id)
        pending.append(future)
    results = await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), 30)
    for i, result in enumerate(results):
        if i % 2:
            # Cancelled, or answered before the cancel arrived.
            assert isinstance(result, JsonRpcException | types.InlineCompletionList)
        else:
            assert isinstance(result, types.InlineCompletionList)
    assert (await status(lsp_client)).state == "ready"
    assert await complete(lsp_client, uri, 3, len("def fibonacci(n):"))


async def execute(client: LanguageClient, command: str, *arguments: Any) -> None:
    params = types.ExecuteCommandParams(command=command, arguments=list(arguments))
    await asyncio.wait_for(client.workspace_execute_command_async(params), 30)


async def test_acceptance_is_counted_once_per_suggestion(lsp_client: LanguageClient) -> None:
    """Each item carries the command an editor runs when the user accepts it; the server
    counts what it showed and what was accepted, whole or in part, in its status and log."""
    uri = "file:///work/feedback.py"
    open_document(lsp_client, uri, FIBONACCI)
    before = (await status(lsp_client)).suggestions
    first = await complete(lsp_client, uri, 3, len("def fibonacci(n):"))
    second = await complete(lsp_client, uri, 7, len("    return fibonacci("))
    (whole,), (part,) = first.items, second.items
    for item in (whole, part):
        assert item.command is not None and item.command.command == ACCEPT_COMMAND
    assert whole.command.arguments != part.command.arguments  # type: ignore[union-attr]
    logged = len(lsp_client.log_messages)

    await execute(lsp_client, ACCEPT_COMMAND, *whole.command.arguments)  # type: ignore[union-attr]
    await execute(lsp_client, ACCEPT_COMMAND, *whole.command.arguments)  # type: ignore[union-attr]
    for _ in range(2):  # a word, then another: one suggestion accepted in part
        await execute(lsp_client, PARTIAL_ACCEPT_COMMAND, *part.command.arguments)  # type: ignore[union-attr]
    await execute(lsp_client, ACCEPT_COMMAND, "not-a-suggestion")

    after = (await status(lsp_client)).suggestions
    assert after.shown == before.shown + 2
    assert after.accepted == before.accepted + 1
    assert after.partially_accepted == before.partially_accepted + 1
    assert after.mean_latency_ms > 0
    accepted = [m.message for m in lsp_client.log_messages[logged:] if " accepted" in m.message]
    assert len(accepted) == 2, accepted
    assert f"{after.accepted} of {after.shown} suggestions accepted" in accepted[-1]


async def test_an_invoked_suggestion_may_be_longer(
    lsp_client: LanguageClient, tiny_model_dir: Path, tiny_reference: ReferenceMPT
) -> None:
    """A suggestion the user asks for may have `invokedMaxNewTokens`, one that comes while
    typing `maxNewTokens`."""
    uri = "file:///work/invoked.py"
    open_document(lsp_client, uri, FIBONACCI)
    line, index = 3, len("def fibonacci(n):")
    configure(lsp_client, maxNewTokens=6, invokedMaxNewTokens=MAX_NEW_TOKENS)
    try:
        typing = await complete(lsp_client, uri, line, index)
        invoked = await complete(
            lsp_client, uri, line, index, trigger=types.InlineCompletionTriggerKind.Invoked
        )
    finally:
        configure(lsp_client)
    expected = expected_completion(tiny_model_dir, tiny_reference, FIBONACCI, line, index)
    short = expected_completion(
        tiny_model_dir, tiny_reference, FIBONACCI, line, index, max_new_tokens=6
    )
    assert len(short) < len(expected)
    assert completion_text(typing) == short
    assert completion_text(invoked) == expected
