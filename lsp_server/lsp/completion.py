"""One inline completion, from the document at the cursor to the text to insert.

The event loop takes a `CursorSnapshot` (everything the completion needs, copied while the
document cannot change); a worker thread turns it into a prompt, runs the engine's text stream
with the completion rules as its stop rule, and post-processes the text.
"""

from __future__ import annotations

import collections
import math
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import asdict, dataclass

from lsprotocol import types

from lsp_server.context.provider import ContextBlock
from lsp_server.generation.protocol import TextGenerator
from lsp_server.generation.sampling import GenerationParams
from lsp_server.generation.stream import GenerationStats
from lsp_server.lsp.postprocess import (
    CompletionContext,
    detect_indentation,
    postprocess,
    truncate,
)
from lsp_server.lsp.prompt import Cursor, build_prompt, text_after
from lsp_server.lsp.settings import Settings

# How many completions' statistics `replitLsp/completions` can return.
RECENT_COMPLETIONS = 512

# The indentation style is learned from this much text before the cursor.
INDENT_SAMPLE_CHARS = 100_000


@dataclass(frozen=True)
class CursorSnapshot:
    """Everything the worker thread needs, taken on the event loop."""

    text_before: str
    header: str
    context: CompletionContext
    settings: Settings
    seed: int | None
    window_start: int | None = None  # the document's prompt window so far, kept if it fits
    deadline: float | None = None  # time.monotonic() by which to answer, from the time budget
    previous_suggestion: str = ""  # drafts for speculation may copy it as well as the prompt


def cursor_snapshot(
    text: str,
    cursor: Cursor,
    settings: Settings,
    seed: int | None = None,
    header: str = "",
    window_start: int | None = None,
    deadline: float | None = None,
    previous_suggestion: str = "",
) -> CursorSnapshot:
    """The snapshot of a document's `text` at `cursor`: the text before it and the context
    the completion rules need."""
    text_before = text[: cursor.offset]
    context = CompletionContext(
        line_prefix=cursor.line_prefix,
        line_suffix=cursor.line_suffix,
        text_after=text_after(text, cursor),
        max_lines=settings.max_lines,
        indentation=detect_indentation(text_before[-INDENT_SAMPLE_CHARS:]),
    )
    return CursorSnapshot(
        text_before, header, context, settings, seed, window_start, deadline, previous_suggestion
    )


@dataclass(frozen=True)
class ShownSuggestion:
    """The last suggestion shown for a document, and the text before the cursor it was
    made for: while the user types exactly what it says, the rest is the answer."""

    text_before: str
    text: str

    def rest_after(self, text_before: str) -> str | None:
        """What is left of the suggestion once `text_before` is typed, or None when the user
        typed nothing, something else, or all of it."""
        if len(text_before) < len(self.text_before) or not text_before.startswith(self.text_before):
            return None
        typed = text_before[len(self.text_before) :]
        if not typed or len(typed) >= len(self.text) or not self.text.startswith(typed):
            return None
        return self.text[len(typed) :]


class CompletionRules:
    """The completion rules as the engine's stop rule: every piece is released, and the
    generation stops once the rules say the completion is over (a line limit, a closed
    block, the text after the cursor)."""

    def __init__(self, context: CompletionContext) -> None:
        self._context = context
        self._raw = ""

    def feed(self, text: str) -> tuple[str, bool]:
        self._raw += text
        return text, truncate(self._raw, self._context)[1]

    def flush(self) -> str:
        return ""


class DocumentMemory:
    """What a document keeps between keystrokes: where its prompt window starts, the
    suggestion last shown, which the user may be typing through, and the workspace context
    at the front of its prompt, with when it was last asked for (to tell typing from a
    pause)."""

    def __init__(self) -> None:
        self.window_start: int | None = None
        self.shown: ShownSuggestion | None = None
        self.command: types.Command | None = None  # what reports the shown one accepted
        self.context: ContextBlock | None = None
        self.context_sources: Hashable = None  # what the context was chosen from
        self.last_request = -math.inf  # time.monotonic() of the document's last request

    def context_due(self, now: float, idle_seconds: float, sources: Hashable) -> bool:
        """Whether the context is to be chosen again: never chosen yet, or after a pause
        when what it is chosen from has changed (other documents, the cursor's region, the
        settings). Choosing again for nothing would only cost the prompt's cached front."""
        if self.context is None:
            return True
        return now - self.last_request >= idle_seconds and sources != self.context_sources

    def rest_of_suggestion(self, text_before: str) -> str | None:
        """The answer with no model run, when the user is typing the shown suggestion."""
        return self.shown.rest_after(text_before) if self.shown is not None else None

    def remember(self, snapshot: CursorSnapshot, outcome: CompletionOutcome) -> None:
        self.window_start = outcome.window_start
        if outcome.text:
            self.shown = ShownSuggestion(snapshot.text_before, outcome.text)


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


@dataclass(frozen=True)
class CompletionRecord:
    """One answered completion request, as `replitLsp/completions` reports it."""

    sequence: int
    uri: str
    line: int
    character: int
    prompt_tokens: int
    reused_tokens: int
    generated_tokens: int
    # "end of completion", "stop", "length", "cancelled", "out of time" or "typed through",
    # with ", superseded" when a newer request replaced it
    finish: str
    milliseconds: float
    context: tuple[str, ...] = ()  # the workspace snippets ahead of the file, `path:lines`


def finish_of(stats: GenerationStats, superseded: bool, deadline: float | None) -> str:
    """Why a completion ended, in the words of the completion log."""
    finish = "end of completion" if stats.stopped_by_rule else stats.finish_reason
    if finish == "cancelled" and not superseded and deadline is not None:
        finish = "out of time"
    if superseded and finish != "cancelled":
        finish += ", superseded"
    return finish


class CompletionLog:
    """The statistics of recent completions, bounded, numbered in the order they finished."""

    def __init__(self, size: int = RECENT_COMPLETIONS) -> None:
        self._records: collections.deque[CompletionRecord] = collections.deque(maxlen=size)
        self._count = 0
        self._lock = threading.Lock()  # worker threads add, the event loop reads

    def add(
        self,
        uri: str,
        line: int,
        character: int,
        finish: str,
        milliseconds: float,
        stats: GenerationStats | None = None,
        context: tuple[str, ...] = (),
    ) -> CompletionRecord:
        """Records one answer; `stats` is None when the model did not run for it."""
        with self._lock:
            self._count += 1
            record = CompletionRecord(
                sequence=self._count,
                uri=uri,
                line=line,
                character=character,
                prompt_tokens=stats.prompt_tokens if stats else 0,
                reused_tokens=stats.reused_tokens if stats else 0,
                generated_tokens=stats.generated_tokens if stats else 0,
                finish=finish,
                milliseconds=round(milliseconds, 1),
                context=context,
            )
            self._records.append(record)
        return record

    def since(self, sequence: int) -> list[dict[str, object]]:
        """The records numbered after `sequence`, oldest first."""
        with self._lock:
            return [asdict(r) for r in self._records if r.sequence > sequence]

    @property
    def count(self) -> int:
        return self._count
