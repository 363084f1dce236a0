"""The statistics of recent completions, which `replitLsp/completions` reports: what each
request cost and why it ended."""

from __future__ import annotations

import collections
import logging
import threading
from dataclasses import asdict, dataclass

from lsp_server.generation.stream import GenerationStats
from model.engine.prefill import Prefill

log = logging.getLogger("replit_lsp.lsp")

# How many completions' statistics `replitLsp/completions` can return.
RECENT_COMPLETIONS = 512


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
    # "end of completion", "stop", "length" or "cancelled" for a generation, with
    # ", superseded" when a newer request replaced it; "typed through" or "cached" for an
    # answer from the document's recent suggestions, "joined" for one from a suggestion
    # already being generated; "prewarm" or "prewarm stopped" for a prompt computed ahead
    finish: str
    milliseconds: float
    context: tuple[str, ...] = ()  # the workspace snippets ahead of the file, `path:lines`


def finish_of(stats: GenerationStats, superseded: bool) -> str:
    """Why a completion ended, in the words of the completion log."""
    finish = "end of completion" if stats.stopped_by_rule else stats.finish_reason
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
        tokens = (0, 0, 0)
        if stats is not None:
            tokens = (stats.prompt_tokens, stats.reused_tokens, stats.generated_tokens)
        return self._append(uri, line, character, tokens, finish, milliseconds, context)

    def add_prefill(
        self, uri: str, line: int, character: int, prefill: Prefill, milliseconds: float
    ) -> CompletionRecord:
        """Records a pre-warm: the prompt computed where the cursor rests."""
        finish = "prewarm" if prefill.complete else "prewarm stopped"
        tokens = (prefill.prompt_tokens, prefill.reused_tokens, 0)
        return self._append(uri, line, character, tokens, finish, milliseconds)

    def _append(
        self,
        uri: str,
        line: int,
        character: int,
        tokens: tuple[int, int, int],
        finish: str,
        milliseconds: float,
        context: tuple[str, ...] = (),
    ) -> CompletionRecord:
        """Numbers and keeps one record; `tokens` are the prompt's, the reused and the
        generated ones."""
        prompt, reused, generated = tokens
        with self._lock:
            self._count += 1
            record = CompletionRecord(
                sequence=self._count,
                uri=uri,
                line=line,
                character=character,
                prompt_tokens=prompt,
                reused_tokens=reused,
                generated_tokens=generated,
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


def log_record(record: CompletionRecord) -> None:
    """Writes one record to the debug log."""
    log.debug(
        "completion at %s:%d:%d: reused %d/%d prompt tokens, generated %d tokens (%s), %.1f ms",
        record.uri,
        record.line,
        record.character,
        record.reused_tokens,
        record.prompt_tokens,
        record.generated_tokens,
        record.finish,
        record.milliseconds,
    )
