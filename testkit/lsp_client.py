"""A real language client for the tests and benchmarks: starts `replit-lsp --stdio` as an
editor does and speaks to it over its stdin/stdout, with helpers for the requests they send."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import LanguageClient, client_capabilities, make_test_lsp_client

from lsp_server.generation.local import LocalGenerator
from lsp_server.generation.protocol import TextTokenizer
from lsp_server.generation.sampling import GenerationParams
from lsp_server.lsp.completion_log import CompletionRecord
from lsp_server.lsp.postprocess import CompletionContext, detect_indentation, postprocess
from model.tokenizer import Tokenizer
from testkit.environment import SERVER_ENV
from testkit.reference import ReferenceMPT
from testkit.servers import lsp_server_command

if TYPE_CHECKING:
    from model.engine.engine import Engine

MAX_NEW_TOKENS = 24  # the tests' completion length, short enough for many requests

# A short Python document that the tests complete in.
FIBONACCI = '''import os


def fibonacci(n):
    """Return the n-th Fibonacci number."""
    if n < 2:
        return n
    return fibonacci(n - 1) + fibonacci(n - 2)
'''


@dataclass(frozen=True)
class ClientSetup:
    """How a test module's language server is started: its extra command-line arguments, and
    the capabilities and initialization options its client sends."""

    args: tuple[str, ...] = ()
    capabilities: types.ClientCapabilities = field(
        default_factory=lambda: client_capabilities("neovim@v0.10.0")
    )
    options: Any = None


async def start_client(
    command: list[str],
    capabilities: types.ClientCapabilities,
    options: Any,
    env: dict[str, str] = SERVER_ENV,
) -> tuple[LanguageClient, types.InitializeResult]:
    client = make_test_lsp_client()
    await client.start_io(*command, env=env)
    result = await asyncio.wait_for(
        client.initialize_session(
            types.InitializeParams(capabilities=capabilities, initialization_options=options)
        ),
        timeout=30,
    )
    return client, result


async def remote_client(
    model_dir: Path, *args: str, options: Any = None, env: dict[str, str] = SERVER_ENV
) -> LanguageClient:
    """`replit-lsp --stdio ARGS`, initialized and past loading (ready, or in error)."""
    lsp, _ = await start_client(
        lsp_server_command(model_dir, *args), client_capabilities("neovim@v0.10.0"), options, env
    )
    await wait_until_loaded(lsp)
    return lsp


async def stop_client(lsp: LanguageClient) -> None:
    await asyncio.wait_for(lsp.shutdown_session(), 30)
    await lsp.stop()


async def status(client: LanguageClient) -> Any:
    return await asyncio.wait_for(client.protocol.send_request_async("replitLsp/status", {}), 30)


async def wait_until_loaded(client: LanguageClient, timeout: float = 300) -> Any:
    """Polls the status request: also proves the server answers while the model loads."""
    deadline = time.monotonic() + timeout
    while (answer := await status(client)).state in ("idle", "loading"):
        assert time.monotonic() < deadline, "the model did not load in time"
        await asyncio.sleep(0.2)
    return answer


def open_document(client: LanguageClient, uri: str, text: str, language: str = "python") -> None:
    item = types.TextDocumentItem(uri=uri, language_id=language, version=1, text=text)
    client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=item))


def inline_params(
    uri: str,
    line: int,
    character: int,
    trigger: types.InlineCompletionTriggerKind = types.InlineCompletionTriggerKind.Automatic,
) -> types.InlineCompletionParams:
    return types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=types.Position(line=line, character=character),
        context=types.InlineCompletionContext(trigger_kind=trigger),
    )


async def complete(
    client: LanguageClient,
    uri: str,
    line: int,
    character: int,
    timeout: float = 60,
    trigger: types.InlineCompletionTriggerKind = types.InlineCompletionTriggerKind.Automatic,
) -> types.InlineCompletionList:
    result = await asyncio.wait_for(
        client.text_document_inline_completion_async(inline_params(uri, line, character, trigger)),
        timeout,
    )
    assert isinstance(result, types.InlineCompletionList)
    return result


async def send_completion(
    client: LanguageClient, uri: str, line: int, character: int
) -> tuple[str, asyncio.Future[Any]]:
    """Sends a request without waiting for its answer; returns its id (for $/cancelRequest).

    The client's request method is a coroutine: it is started here, so the request is on
    the wire before anything sent after this returns."""
    msg_id = str(uuid.uuid4())
    future = asyncio.ensure_future(
        client.protocol.send_request_async(
            types.TEXT_DOCUMENT_INLINE_COMPLETION, inline_params(uri, line, character), msg_id
        )
    )
    await asyncio.sleep(0)
    return msg_id, future


def cancel(client: LanguageClient, msg_id: str) -> None:
    client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=msg_id))


async def cancelled_mid_stream(
    client: LanguageClient,
    uri: str,
    line: int,
    character: int,
    delays: tuple[float, ...],
    answer_timeout: float = 30,
) -> list[CompletionRecord]:
    """Sends a completion and a `$/cancelRequest` for it after each of `delays` seconds;
    the records of those cancelled after some tokens streamed (a cancel may also land
    before the first token, or after the last)."""
    stopped: list[CompletionRecord] = []
    for delay in delays:
        since = await completion_count(client)
        msg_id, future = await send_completion(client, uri, line, character)
        await asyncio.sleep(delay)
        cancel(client, msg_id)
        with contextlib.suppress(JsonRpcException):
            await asyncio.wait_for(future, answer_timeout)
        await asyncio.sleep(0.3)  # the worker records once the stream is closed
        records = await completion_stats(client, since)
        stopped += [r for r in records if r.finish == "cancelled" and r.generated_tokens]
    return stopped


def completion_text(result: types.InlineCompletionList) -> str:
    assert len(result.items) <= 1
    return str(result.items[0].insert_text) if result.items else ""


def configure(client: LanguageClient, **settings: Any) -> None:
    values = {"maxNewTokens": MAX_NEW_TOKENS, "maxLines": 8, **settings}
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"replitLsp": values})
    )


def expected_completion(
    model_dir: Path,
    reference: ReferenceMPT,
    text: str,
    line: int,
    index: int,
    max_new_tokens: int = MAX_NEW_TOKENS,
    max_lines: int = 8,
    window_start: int = 0,
) -> str:
    """What the server should answer at string index `index` of line `line`, per the spec:
    the prompt is the text before the cursor from `window_start` (short documents need no
    cutting), continued greedily by the reference model, decoded, then post-processed."""
    tokenizer = Tokenizer(model_dir)

    def continuation(prompt: list[int]) -> str:
        return tokenizer.decode(reference.greedy(prompt, max_new_tokens, tokenizer.eos_id))

    return postprocessed(tokenizer, continuation, text, line, index, max_lines, window_start)


def engine_completion(
    engine: Engine,
    text: str,
    line: int,
    index: int,
    max_new_tokens: int = MAX_NEW_TOKENS,
    max_lines: int = 8,
) -> str:
    """The same as `expected_completion`, with the prompt continued by a local engine."""

    def continuation(prompt: list[int]) -> str:
        params = GenerationParams(max_new_tokens=max_new_tokens, top_k=1)
        with LocalGenerator(engine).stream_text(prompt, params) as stream:
            return "".join(stream)

    return postprocessed(engine.tokenizer, continuation, text, line, index, max_lines)


def postprocessed(
    tokenizer: TextTokenizer,
    continuation: Callable[[list[int]], str],
    text: str,
    line: int,
    index: int,
    max_lines: int,
    window_start: int = 0,
) -> str:
    """The completion rules applied to `continuation` of the text before the cursor."""
    lines = text.split("\n")
    before = "\n".join(lines[:line] + [lines[line][:index]])
    context = CompletionContext(
        line_prefix=lines[line][:index],
        line_suffix=lines[line][index:],
        text_after="\n".join(lines[line + 1 :]),
        max_lines=max_lines,
        indentation=detect_indentation(before),
    )
    return postprocess(continuation(tokenizer.encode(before[window_start:])), context)


def insert(client: LanguageClient, uri: str, version: int, at: types.Position, text: str) -> None:
    """Sends one incremental edit inserting `text` at `at`."""
    change = types.TextDocumentContentChangePartial(range=types.Range(start=at, end=at), text=text)
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[change],
        )
    )


def after(at: types.Position, text: str) -> types.Position:
    """The position after `text` inserted at `at` (text without \r; ASCII for UTF-16)."""
    lines = text.split("\n")
    if len(lines) == 1:
        return types.Position(line=at.line, character=at.character + len(text))
    return types.Position(line=at.line + len(lines) - 1, character=len(lines[-1]))


async def completion_count(client: LanguageClient) -> int:
    """How many completions the server has recorded statistics for so far."""
    return int((await status(client)).completions)


async def completion_stats(client: LanguageClient, since: int = 0) -> list[CompletionRecord]:
    """The statistics of the completions recorded after the first `since`, oldest first."""
    request = client.protocol.send_request_async("replitLsp/completions", {"since": since})
    return [CompletionRecord(**record) for record in await asyncio.wait_for(request, 30)]


async def shown_message(client: LanguageClient, text: str, timeout: float = 60) -> str:
    """The first `window/showMessage` containing `text`, waiting for it if need be."""
    deadline = time.monotonic() + timeout
    while True:
        for message in client.messages:
            if text in message.message:
                return message.message
        shown = [m.message for m in client.messages]
        assert time.monotonic() < deadline, f"no message with {text!r} among {shown}"
        await asyncio.sleep(0.05)
