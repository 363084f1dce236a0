"""One inline completion, from the document at the cursor to the text to insert.

The event loop takes a `CursorSnapshot` (everything the completion needs, copied while the
document cannot change); a worker thread turns it into a prompt, runs the engine's text stream
with the completion rules as its stop rule, and post-processes the text.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass

from lsp_server.lsp.postprocess import CompletionContext, postprocess, truncate
from lsp_server.lsp.prompt import build_prompt
from lsp_server.lsp.settings import Settings
from model.engine import Engine
from model.generation import GenerationStats
from model.sampling import SamplingParams

# How many completions' statistics `replitLsp/completions` can return.
RECENT_COMPLETIONS = 512


@dataclass(frozen=True)
class CursorSnapshot:
    """Everything the worker thread needs, taken on the event loop."""

    text_before: str
    header: str
    context: CompletionContext
    settings: Settings
    seed: int | None


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


@dataclass(frozen=True)
class CompletionOutcome:
    """The completion to show, and what producing it cost (None when the model never ran)."""

    text: str
    stats: GenerationStats | None = None
    skipped: str = ""  # why the model did not run: "empty prompt" or "cancelled"


def generate_completion(
    engine: Engine, snapshot: CursorSnapshot, cancelled: Callable[[], bool]
) -> CompletionOutcome:
    """Runs on a worker thread: builds the prompt and streams the completion, which stops
    when the completion rules say it is over, or when `cancelled()` turns true."""
    max_new_tokens = min(snapshot.settings.max_new_tokens, engine.max_length // 2)
    prompt = build_prompt(
        snapshot.text_before, engine.tokenizer, engine.max_length - max_new_tokens, snapshot.header
    )
    if not prompt or cancelled():
        return CompletionOutcome("", skipped="empty prompt" if not prompt else "cancelled")
    params = SamplingParams(
        max_new_tokens=max_new_tokens,
        top_k=snapshot.settings.top_k,
        temperature=snapshot.settings.temperature,
        seed=snapshot.seed,
    )
    rules = CompletionRules(snapshot.context)
    with engine.stream_text(prompt, params, cancelled=cancelled, stop=rules) as stream:
        raw = stream.text()
    return CompletionOutcome(postprocess(raw, snapshot.context), stream.stats)


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
    finish: str  # "end of completion", "stop", "length" or "cancelled", maybe ", superseded"
    milliseconds: float


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
        stats: GenerationStats,
        superseded: bool,
        milliseconds: float,
    ) -> CompletionRecord:
        finish = "end of completion" if stats.stopped_by_rule else stats.finish_reason
        if superseded and finish != "cancelled":
            finish += ", superseded"
        with self._lock:
            self._count += 1
            record = CompletionRecord(
                sequence=self._count,
                uri=uri,
                line=line,
                character=character,
                prompt_tokens=stats.prompt_tokens,
                reused_tokens=stats.reused_tokens,
                generated_tokens=stats.generated_tokens,
                finish=finish,
                milliseconds=round(milliseconds, 1),
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
