"""One inline completion, from the request snapshot to the text to insert.

Runs on a worker thread: it turns the snapshot into a prompt, runs the engine's text stream
with the completion rules as its stop rule, and post-processes the text.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from lsp_server.generation.protocol import TextGenerator
from lsp_server.generation.sampling import GenerationParams
from lsp_server.generation.stream import GenerationStats
from lsp_server.lsp.postprocess import postprocess
from lsp_server.lsp.prompt import build_prompt
from lsp_server.lsp.snapshot import CursorSnapshot
from lsp_server.lsp.stop_rule import CompletionRules


@dataclass(frozen=True)
class CompletionOutcome:
    """The completion to show, what producing it cost (None when the model never ran), and
    the prompt window it used (for the document's next request)."""

    text: str
    stats: GenerationStats | None = None
    window_start: int | None = None


def complete_lines(text: str) -> str:
    """`text` up to its last line break: what a multi-line suggestion cut short may show."""
    end = text.rfind("\n")
    return text[:end] if end >= 0 else ""


def prompt_budget(max_length: int, max_new_tokens: int) -> int:
    """The prompt's tokens: the context less the completion's room (at most half of it)."""
    return max_length - min(max_new_tokens, max_length // 2)


def generate_completion(
    engine: TextGenerator,
    snapshot: CursorSnapshot,
    cancelled: Callable[[], bool],
    clock: Callable[[], float] = time.monotonic,
) -> CompletionOutcome:
    """Runs on a worker thread: builds the prompt and streams the completion, which stops
    when the completion rules say it is over, or when `cancelled()` turns true."""
    max_new_tokens = min(snapshot.settings.max_new_tokens, engine.max_length // 2)
    budget = prompt_budget(engine.max_length, snapshot.settings.max_new_tokens)
    prompt = build_prompt(
        snapshot.text_before, engine.tokenizer, budget, snapshot.header, snapshot.window_start
    )
    if not prompt.ids or cancelled():
        return CompletionOutcome("", window_start=prompt.window_start)
    deadline = snapshot.deadline

    def stopped() -> bool:
        """Cancelled, or out of time: the engine checks between prefill chunks and tokens."""
        return cancelled() or (deadline is not None and clock() >= deadline)

    params = GenerationParams(
        max_new_tokens=max_new_tokens,
        top_k=snapshot.settings.top_k,
        temperature=snapshot.settings.temperature,
        seed=snapshot.seed,
    )
    rules = CompletionRules(snapshot.context)
    draft_context = engine.tokenizer.encode(snapshot.previous_suggestion)
    with engine.stream_text(
        prompt.ids,
        params,
        cancelled=stopped,
        stop=rules,
        speculate=snapshot.settings.speculation,
        draft_context=draft_context if snapshot.previous_suggestion else (),
    ) as stream:
        raw = stream.text()
    stats = stream.stats
    assert stats is not None
    if stats.finish_reason == "cancelled" and not snapshot.context.single_line:
        raw = complete_lines(raw)  # at the deadline: never half a line in multi-line mode
    return CompletionOutcome(postprocess(raw, snapshot.context), stats, prompt.window_start)
