"""One inline completion, from the request snapshot to the text to insert.

Runs on a worker thread: it turns the snapshot into a prompt, runs the engine's text stream
with the completion rules as its stop rule, and post-processes the text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from lsp_server.generation.protocol import TextGenerator
from lsp_server.generation.sampling import GenerationParams
from lsp_server.generation.stream import GenerationStats
from lsp_server.lsp.postprocess import CompletionContext, postprocess
from lsp_server.lsp.prompt import Prompt, build_prompt, next_window
from lsp_server.lsp.snapshot import CursorSnapshot
from lsp_server.lsp.stop_rule import CompletionRules
from model.engine.prefill import Prefill


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


def _budget(engine: TextGenerator, snapshot: CursorSnapshot) -> int:
    return prompt_budget(engine.max_length, snapshot.settings.max_new_tokens)


def completion_prompt(engine: TextGenerator, snapshot: CursorSnapshot) -> Prompt:
    """The prompt a completion at `snapshot` is made from, within the room its settings leave."""
    return build_prompt(
        snapshot.text_before,
        engine.tokenizer,
        _budget(engine, snapshot),
        snapshot.header,
        snapshot.window_start,
        snapshot.next_window_start,
    )


@dataclass(frozen=True)
class PrewarmOutcome:
    """The prompt window a pre-warm used and what its prefill did (None where the generator
    keeps no cache, or there was nothing to compute); and, where the window is nearly full,
    the next window's start and what its prefill did."""

    window_start: int | None
    prefill: Prefill | None
    next_window_start: int | None = None
    next_prefill: Prefill | None = None


def prewarm(
    engine: TextGenerator, snapshot: CursorSnapshot, cancelled: Callable[[], bool]
) -> PrewarmOutcome:
    """Runs on a worker thread: brings the prompt a completion at `snapshot` would use into
    the cache, with no generation, so the first keystroke there computes only its own tokens.
    Where that prompt nearly fills the window, the window the text will move to next is
    brought into the cache too (`prewarm_next_window`)."""
    prompt = completion_prompt(engine, snapshot)
    if not prompt.ids or cancelled():
        return PrewarmOutcome(prompt.window_start, None)
    prefill = engine.prefill(prompt.ids, cancelled)
    outcome = PrewarmOutcome(prompt.window_start, prefill)
    if prefill is None or not prefill.complete:
        return outcome
    return _with_next_window(engine, snapshot, prompt, outcome, cancelled)


def prewarm_next_window(
    engine: TextGenerator, snapshot: CursorSnapshot, cancelled: Callable[[], bool]
) -> PrewarmOutcome:
    """Runs on a worker thread, after a suggestion at `snapshot` (whose prompt is cached):
    where its prompt nearly fills the window, brings the window the text will move to next
    into the cache, in another slot, so that the keystroke that outgrows the current window
    does not compute a whole window."""
    prompt = completion_prompt(engine, snapshot)
    outcome = PrewarmOutcome(prompt.window_start, None)
    return _with_next_window(engine, snapshot, prompt, outcome, cancelled)


def _with_next_window(
    engine: TextGenerator,
    snapshot: CursorSnapshot,
    prompt: Prompt,
    outcome: PrewarmOutcome,
    cancelled: Callable[[], bool],
) -> PrewarmOutcome:
    budget = _budget(engine, snapshot)
    upcoming = next_window(snapshot.text_before, engine.tokenizer, budget, prompt)
    if upcoming is None or cancelled():
        return outcome
    next_prefill = engine.prefill(upcoming.ids, cancelled)
    if next_prefill is None:
        return outcome
    return replace(outcome, next_window_start=upcoming.window_start, next_prefill=next_prefill)


class Progress:
    """The completion's text as the worker releases it, which the event loop reads while the
    worker runs (one string replaced at a time, so every read sees a whole one)."""

    def __init__(self) -> None:
        self.text = ""


def generate_completion(
    engine: TextGenerator,
    snapshot: CursorSnapshot,
    cancelled: Callable[[], bool],
    progress: Progress | None = None,
) -> CompletionOutcome:
    """Runs on a worker thread: builds the prompt and streams the completion into `progress`,
    stopping when the completion rules say it is over, or when `cancelled()` turns true. A
    time budget does not stop it: the server may answer with the lines so far while the rest
    is still made for the requests that follow."""
    progress = progress or Progress()
    max_new_tokens = min(snapshot.settings.max_new_tokens, engine.max_length // 2)
    prompt = completion_prompt(engine, snapshot)
    if not prompt.ids or cancelled():
        return CompletionOutcome("", window_start=prompt.window_start)
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
        cancelled=cancelled,
        stop=rules,
        speculate=snapshot.settings.speculation,
        draft_context=draft_context if snapshot.previous_suggestion else (),
    ) as stream:
        for piece in stream:
            progress.text += piece
    stats = stream.stats
    assert stats is not None
    return CompletionOutcome(
        postprocess(progress.text, snapshot.context), stats, prompt.window_start
    )


def early_text(raw: str, context: CompletionContext) -> str:
    """What of a completion still being generated may be shown now: its complete lines,
    post-processed; nothing in single-line mode, where the one line is the whole answer."""
    return "" if context.single_line else postprocess(complete_lines(raw), context)
