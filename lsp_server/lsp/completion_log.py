"""The statistics of recent completions, which `replitLsp/completions` reports: what each
request cost and why it ended."""

from __future__ import annotations

import collections
import threading
from dataclasses import asdict, dataclass

from lsp_server.generation.stream import GenerationStats

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
