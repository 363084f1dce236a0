"""What the server does ahead of and beside the model, through a real `replit-lsp --stdio`:
the prompt computed where the cursor rests, the recent suggestions that answer with no model
run, and the suggestion started when one is accepted. Work is counted with the engine's
counters and the completion records, never timed; answers are checked against the reference
model."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient

from lsp_server.lsp.completion_log import CompletionRecord
from lsp_server.lsp.prompt import WINDOW_SLACK
from testkit.lsp_client import (
    MAX_NEW_TOKENS,
    ClientSetup,
    after,
    complete,
    completion_count,
    completion_stats,
    completion_text,
    expected_completion,
    insert,
    open_document,
    status,
)
from testkit.reference import ReferenceMPT

pytestmark = pytest.mark.asyncio(loop_scope="session")

DEMO_DIR = Path(__file__).resolve().parents[1] / "model" / "assets" / "replit-code-demo"
DOCUMENT = "".join(f"def step_{i}(value):\n    return value + {i}\n\n\n" for i in range(6))


@pytest.fixture(scope="module")
def lsp_setup() -> ClientSetup:
    return ClientSetup(
        options={"replitLsp": {"maxNewTokens": MAX_NEW_TOKENS, "recentSuggestions": 16}}
    )


async def counters(client: LanguageClient) -> tuple[int, int]:
    answer = await status(client)
    return int(answer.graph_runs), int(answer.computed_tokens)


async def records_until(client: LanguageClient, since: int, finish: str, timeout: float = 30):
    """The records after `since`, once one whose finish starts with `finish` is among them."""
    deadline = time.monotonic() + timeout
    while True:
        records = await completion_stats(client, since)
        if any(r.finish.startswith(finish) for r in records):
            return records
        assert time.monotonic() < deadline, f"no {finish!r} record in {records}"
        await asyncio.sleep(0.05)


def cursor_idle(client: LanguageClient, uri: str, at: types.Position) -> None:
    params = {
        "textDocument": {"uri": uri},
        "position": {"line": at.line, "character": at.character},
    }
    client.protocol.notify("replitLsp/cursorIdle", params)


async def test_a_prewarm_computes_the_prompt_and_the_request_there_reuses_it(
    lsp_client: LanguageClient, tiny_model_dir: Path, tiny_reference: ReferenceMPT
) -> None:
    uri = "file:///work/prewarm.py"
    open_document(lsp_client, uri, DOCUMENT)
    at = types.Position(line=9, character=len("    return value"))
    since = await completion_count(lsp_client)
    cursor_idle(lsp_client, uri, at)
    (warm,) = await records_until(lsp_client, since, "prewarm")
    assert warm.finish == "prewarm" and warm.prompt_tokens > 30
    assert (warm.line, warm.character) == (at.line, at.character)
    runs, computed = await counters(lsp_client)
    answer = completion_text(await complete(lsp_client, uri, at.line, at.character))
    # Everything but the prompt's last token was cached: one token, then the decode steps.
    (record,) = await completion_stats(lsp_client, warm.sequence)
    assert record.prompt_tokens == warm.prompt_tokens
    assert record.reused_tokens == record.prompt_tokens - 1
    steps = (await counters(lsp_client))[1] - computed
    assert steps <= record.generated_tokens + 1
    assert answer == expected_completion(
        tiny_model_dir, tiny_reference, DOCUMENT, at.line, at.character
    )
    assert (await counters(lsp_client))[0] > runs


async def test_a_request_interrupts_a_prewarm_and_answers_as_without_it(
    lsp_client: LanguageClient, tiny_model_dir: Path, tiny_reference: ReferenceMPT
) -> None:
    uri = "file:///work/interrupted.py"
    text = DOCUMENT.replace("value", "amount")
    open_document(lsp_client, uri, text)
    at = types.Position(line=17, character=len("    return amount"))
    since = await completion_count(lsp_client)
    cursor_idle(lsp_client, uri, at)
    answer = completion_text(await complete(lsp_client, uri, at.line, at.character))
    assert answer == expected_completion(
        tiny_model_dir, tiny_reference, text, at.line, at.character
    )
    records = await completion_stats(lsp_client, since)
    # The pre-warm ran to its end before the request or was stopped by it; the request
    # computed the rest, never the same tokens twice.
    assert all(r.finish in ("prewarm", "prewarm stopped") or r.generated_tokens for r in records)


async def test_backspace_and_typing_through_an_older_suggestion_run_no_model(
    lsp_client: LanguageClient,
) -> None:
    uri = "file:///work/recent.py"
    open_document(lsp_client, uri, DOCUMENT)
    at = types.Position(line=21, character=len("    return value"))
    first = completion_text(await complete(lsp_client, uri, at.line, at.character))
    if len(first) < 2:
        pytest.skip(f"the tiny model's suggestion {first!r} is too short to type through")
    other = "@" if first[0] != "@" else "#"  # not what the suggestion says: the model runs
    insert(lsp_client, uri, 2, at, other)
    await complete(lsp_client, uri, at.line, at.character + 1)
    runs, _ = await counters(lsp_client)
    since = await completion_count(lsp_client)
    # Backspace: the text the first suggestion was made for.
    deleted = types.TextDocumentContentChangePartial(
        range=types.Range(start=at, end=after(at, other)), text=""
    )
    lsp_client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=3),
            content_changes=[deleted],
        )
    )
    again = completion_text(await complete(lsp_client, uri, at.line, at.character))
    # Typing what the older suggestion says.
    insert(lsp_client, uri, 4, at, first[0])
    rest = completion_text(await complete(lsp_client, uri, at.line, at.character + 1))
    assert (again, rest) == (first, first[1:])
    assert (await counters(lsp_client))[0] == runs
    records = await completion_stats(lsp_client, since)
    assert [(r.finish, r.generated_tokens) for r in records] == [
        ("cached", 0),
        ("typed through", 0),
    ]


async def test_accepting_a_suggestion_starts_the_next_one(
    lsp_client: LanguageClient, tiny_model_dir: Path, tiny_reference: ReferenceMPT
) -> None:
    uri = "file:///work/accept.py"
    open_document(lsp_client, uri, DOCUMENT)
    at = types.Position(line=13, character=len("    return value"))
    answer = await complete(lsp_client, uri, at.line, at.character)
    (item,) = answer.items
    suggestion = str(item.insert_text)
    assert item.command is not None
    text = DOCUMENT.replace("    return value + 3\n", "    return value" + suggestion + " + 3\n")
    insert(lsp_client, uri, 2, at, suggestion)
    end = after(at, suggestion)
    since = await completion_count(lsp_client)
    await lsp_client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=item.command.command, arguments=item.command.arguments)
    )
    (prefetch,) = [r for r in await records_until(lsp_client, since, "") if r.generated_tokens]
    assert (prefetch.line, prefetch.character) == (end.line, end.character)
    runs, _ = await counters(lsp_client)
    following = completion_text(await complete(lsp_client, uri, end.line, end.character))
    assert (await counters(lsp_client))[0] == runs  # the prefetch's answer, no model run
    assert following == expected_completion(
        tiny_model_dir, tiny_reference, text, end.line, end.character
    )


async def prompt_after_typing(
    client: LanguageClient, uri: str, version: int, at: types.Position, text: str
) -> tuple[types.Position, CompletionRecord]:
    """Types `text` at `at` and asks there: the cursor after it, and the request's record."""
    insert(client, uri, version, at, text)
    at = after(at, text)
    since = await completion_count(client)
    await complete(client, uri, at.line, at.character)
    (record,) = [r for r in await completion_stats(client, since) if r.generated_tokens]
    return at, record


async def fill_the_window(
    client: LanguageClient, uri: str
) -> tuple[types.Position, int, CompletionRecord]:
    """Opens a file longer than the prompt with the cursor at its end, and types lines there
    (a request after each, with no pause) until less than an eighth of the window is free:
    the cursor then, the document's version and the last request's record."""
    lines = [f"total_{i} = total_{i - 1} + {i}\n" for i in range(1, 90)]
    open_document(client, uri, "".join(lines))
    at = types.Position(line=len(lines), character=0)
    since = await completion_count(client)
    await complete(client, uri, at.line, at.character)
    (first,) = await completion_stats(client, since)
    # The first window leaves a quarter of the room free; the room is about first / 0.75.
    nearly_full = first.prompt_tokens / (1 - WINDOW_SLACK) * (1 - WINDOW_SLACK / 4)
    version, record = 2, first
    while record.prompt_tokens < nearly_full:
        at, record = await prompt_after_typing(client, uri, version, at, f"step_{version} = 0\n")
        assert record.prompt_tokens > first.prompt_tokens, "the window moved before it was full"
        version += 1
    return at, version, record


async def type_until_the_window_moves(
    client: LanguageClient, uri: str, version: int, at: types.Position, full: CompletionRecord
) -> CompletionRecord:
    """Types lines at `at` until a request's prompt is shorter than `full`'s: the record of
    the request whose window moved on."""
    record = full
    while True:
        at, moved = await prompt_after_typing(client, uri, version, at, f"step_{version} = 0\n")
        version += 1
        if moved.prompt_tokens < record.prompt_tokens:
            return moved
        record = moved


async def prewarm_records(client: LanguageClient, since: int, count: int) -> list:
    deadline = time.monotonic() + 30
    while len(records := await completion_stats(client, since)) < count:
        assert time.monotonic() < deadline, f"fewer than {count} pre-warm records: {records}"
        await asyncio.sleep(0.05)
    assert all(r.finish == "prewarm" and not r.generated_tokens for r in records)
    return records


async def test_a_pause_after_a_suggestion_prepares_the_window_the_text_moves_to(
    lsp_client: LanguageClient,
) -> None:
    """Typing at the end of a file longer than the prompt: the window keeps its start while
    the text fits, then must move on. A pause after a suggestion where the window is nearly
    full computes the next window, and the keystroke that outgrows the window reuses it."""
    uri = "file:///work/window.py"
    at, version, full = await fill_the_window(lsp_client, uri)
    (upcoming,) = await prewarm_records(lsp_client, full.sequence, 1)
    assert upcoming.prompt_tokens < full.prompt_tokens
    moved = await type_until_the_window_moves(lsp_client, uri, version, at, full)
    assert moved.reused_tokens >= upcoming.prompt_tokens - 1
    assert 0 < moved.prompt_tokens - upcoming.prompt_tokens < upcoming.prompt_tokens


async def test_the_cursor_resting_in_a_nearly_full_window_prepares_the_next_one(
    lsp_client: LanguageClient,
) -> None:
    uri = "file:///work/resting.py"
    at, version, full = await fill_the_window(lsp_client, uri)
    since = await completion_count(lsp_client)
    cursor_idle(lsp_client, uri, at)  # before the pause after the suggestion ends
    current, upcoming = (await prewarm_records(lsp_client, since, 2))[:2]
    assert current.prompt_tokens == full.prompt_tokens
    assert current.reused_tokens == full.prompt_tokens - 1
    assert upcoming.prompt_tokens < current.prompt_tokens
    moved = await type_until_the_window_moves(lsp_client, uri, version, at, full)
    assert moved.reused_tokens >= upcoming.prompt_tokens - 1
