"""What each keystroke costs in model work, through a real `replit-lsp --stdio`: the prompt
window that stays put while typing, typing through a suggestion with no model run, and the
time budget. Costs are counted with the engine's counters and the completion records, never
timed."""

from __future__ import annotations

from pathlib import Path

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient

from model.tokenizer import Tokenizer
from testkit.lsp_client import (
    FIBONACCI,
    MAX_NEW_TOKENS,
    ClientSetup,
    after,
    complete,
    completion_count,
    completion_stats,
    completion_text,
    configure,
    expected_completion,
    insert,
    open_document,
    status,
)
from testkit.reference import ReferenceMPT

pytestmark = pytest.mark.asyncio(loop_scope="session")

# Longer than the tests' prompt budget (256 - 24 tokens of the tiny tokenizer).
LONG_DOCUMENT = "".join(f"def step_{i}(value):\n    return value + {i}\n\n\n" for i in range(40))


@pytest.fixture(scope="module")
def lsp_setup() -> ClientSetup:
    return ClientSetup(
        # Speculating (a small model does not by default): its answers must not change.
        args=("--speculative-tokens", "4"),
        options={"replitLsp": {"maxNewTokens": MAX_NEW_TOKENS}},
    )


async def graph_runs(client: LanguageClient) -> int:
    return int((await status(client)).graph_runs)


async def test_typing_in_a_long_file_keeps_the_window_and_reuses_the_cache(
    lsp_client: LanguageClient, tiny_model_dir: Path, tiny_reference: ReferenceMPT
) -> None:
    uri = "file:///work/long.py"
    tokenizer = Tokenizer(tiny_model_dir)
    assert len(tokenizer.encode(LONG_DOCUMENT)) > 256  # the window must cut it
    open_document(lsp_client, uri, LONG_DOCUMENT)
    since = await completion_count(lsp_client)
    cursor = types.Position(line=LONG_DOCUMENT.count("\n"), character=0)
    await complete(lsp_client, uri, cursor.line, cursor.character)
    text = LONG_DOCUMENT
    for version, char in enumerate("def last(value):\n    return value * 2\n", start=2):
        insert(lsp_client, uri, version, cursor, char)
        text, cursor = text + char, after(cursor, char)
        result = await complete(lsp_client, uri, cursor.line, cursor.character)
    records = [r for r in await completion_stats(lsp_client, since) if r.finish != "typed through"]
    assert len(records) > 20
    # After the first request, every keystroke's prompt extends the cached one: no recompute.
    assert all(r.reused_tokens >= r.prompt_tokens - 8 for r in records[1:]), records
    # The last answer is the reference's continuation of the text from the window's start,
    # a line start whose text is as long as the server's prompt.
    prompt_tokens = records[-1].prompt_tokens
    starts = [i + 1 for i, c in enumerate(text) if c == "\n" and i + 1 < len(text)]
    window = [s for s in starts if len(tokenizer.encode(text[s:])) == prompt_tokens]
    assert window, "the prompt is the text from a line start"
    expected = expected_completion(
        tiny_model_dir, tiny_reference, text, cursor.line, cursor.character, window_start=window[0]
    )
    assert completion_text(result) == expected


async def test_typing_through_a_suggestion_runs_no_model(lsp_client: LanguageClient) -> None:
    uri = "file:///work/through.py"
    open_document(lsp_client, uri, FIBONACCI)
    cursor = types.Position(line=3, character=len("def fibonacci(n):"))
    suggestion = completion_text(await complete(lsp_client, uri, cursor.line, cursor.character))
    if len(suggestion) < 4 or "\r" in suggestion:
        pytest.skip(f"the tiny model's suggestion {suggestion!r} is too short to type through")
    runs = await graph_runs(lsp_client)
    since = await completion_count(lsp_client)
    for version, char in enumerate(suggestion[:3], start=2):
        insert(lsp_client, uri, version, cursor, char)
        cursor = after(cursor, char)
        answer = await complete(lsp_client, uri, cursor.line, cursor.character)
        typed = version - 1
        assert completion_text(answer) == suggestion[typed:]
        assert answer.items[0].range.start == cursor
    assert await graph_runs(lsp_client) == runs
    records = await completion_stats(lsp_client, since)
    assert [r.finish for r in records] == ["typed through"] * 3
    assert all(r.generated_tokens == 0 for r in records)
    # Typing something else asks the model again.
    other = "#" if suggestion[3] != "#" else "@"
    insert(lsp_client, uri, 5, cursor, other)
    cursor = after(cursor, other)
    await complete(lsp_client, uri, cursor.line, cursor.character)
    assert await graph_runs(lsp_client) > runs


async def test_a_time_budget_shows_whole_lines_and_the_rest_comes_next(
    lsp_client: LanguageClient,
) -> None:
    text = "lorem ipsum dolor sit amet\n"
    try:
        configure(lsp_client, maxNewTokens=128, maxLines=1000)
        open_document(lsp_client, "file:///work/unlimited.txt", text, language="plaintext")
        unlimited = completion_text(await complete(lsp_client, "file:///work/unlimited.txt", 1, 0))
        # A millisecond is less than any completion takes, cached prompt or not.
        configure(lsp_client, maxNewTokens=128, maxLines=1000, timeBudgetMs=1, recentSuggestions=4)
        uri = "file:///work/budget.txt"
        open_document(lsp_client, uri, text, language="plaintext")
        cut = completion_text(await complete(lsp_client, uri, 1, 0))
        since = await completion_count(lsp_client)
        configure(lsp_client, maxNewTokens=128, maxLines=1000, recentSuggestions=4)
        again = completion_text(await complete(lsp_client, uri, 1, 0))
    finally:
        configure(lsp_client, timeBudgetMs=0, recentSuggestions=0)
    # Whole lines of the unlimited answer, never a part of one ...
    kept = cut.split("\n") if cut else []
    assert kept == unlimited.split("\n")[: len(kept)]
    # ... and the rest was generated on: asking again there gets all of it, with no new run.
    assert again == unlimited
    finishes = [r.finish for r in await completion_stats(lsp_client, since)]
    assert sum(finish in ("joined", "cached") for finish in finishes) == 1, finishes
