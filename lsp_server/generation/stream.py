"""One completion as final text pieces, whichever generator produced it.

The local engine's pieces are token ids, decoded here as they arrive; a remote server's
arrive as text. Either way the stop rule decides what is released and when the completion
is over, and one `GenerationStats` record says what it cost.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, TypeVar

from lsp_server.generation.stops import StopRule

Piece = TypeVar("Piece")


@dataclass(frozen=True)
class GenerationStats:
    """What one completion cost and why it ended, for logs, usage fields and benchmarks.

    `finish_reason` is OpenAI's: "stop" (the end-of-text token, or the stop rule, which
    `stopped_by_rule` tells apart), "length" or "cancelled". `graph_runs` against
    `generated_tokens` is what speculation saved: `accepted_tokens` of the `draft_tokens`
    checked were kept without a decode step of their own.
    """

    prompt_tokens: int
    reused_tokens: int
    generated_tokens: int
    finish_reason: str
    stopped_by_rule: bool
    prefill_seconds: float
    seconds: float
    graph_runs: int
    draft_tokens: int
    accepted_tokens: int


class PieceSource(Protocol[Piece]):
    """One generation as its producer runs it (token ids from the engine, text from a remote
    server), as `TextStream` consumes it."""

    prompt_tokens: int
    reused_tokens: int
    finish_reason: str | None
    prefill_seconds: float
    graph_runs: int
    draft_tokens: int
    accepted_tokens: int

    @property
    def generated_tokens(self) -> int: ...

    def __iter__(self) -> Iterator[Piece]: ...

    def close(self) -> None: ...


class PieceDecoder(Protocol[Piece]):
    """Turns pieces into final text: `StreamDecoder` for token ids."""

    def push(self, piece: Piece) -> str: ...

    def flush(self) -> str: ...


class TextPieces:
    """The decoder of pieces that already are final text."""

    def push(self, piece: str) -> str:
        return piece

    def flush(self) -> str:
        return ""


class TextStream(Iterator[str]):
    """One completion as text pieces, each final; `stats` is set once it has ended.

    Use it as a context manager (or call `close`): leaving early stops the generation and
    frees its KV cache slot, and still records the statistics.
    """

    def __init__(
        self, tokens: PieceSource[Piece], decoder: PieceDecoder[Piece], stop: StopRule
    ) -> None:
        self.stats: GenerationStats | None = None
        self._tokens = tokens
        self._started = time.perf_counter()
        self._pieces = self._run(decoder, stop)

    def _run(self, decoder: PieceDecoder[Piece], stop: StopRule) -> Iterator[str]:
        stopped = False
        try:
            for token in self._tokens:
                text, stopped = stop.feed(decoder.push(token))
                if text:
                    yield text
                if stopped:
                    break
            if not stopped:
                text, stopped = stop.feed(decoder.flush())
                text += "" if stopped else stop.flush()
                if text:
                    yield text
        finally:
            self._finish(stopped)

    def _finish(self, stopped_by_rule: bool) -> None:
        tokens = self._tokens
        tokens.close()
        finish = tokens.finish_reason or "cancelled"
        self.stats = GenerationStats(
            prompt_tokens=tokens.prompt_tokens,
            reused_tokens=tokens.reused_tokens,
            generated_tokens=tokens.generated_tokens,
            finish_reason="stop" if stopped_by_rule else finish,
            stopped_by_rule=stopped_by_rule,
            prefill_seconds=tokens.prefill_seconds,
            seconds=time.perf_counter() - self._started,
            graph_runs=tokens.graph_runs,
            draft_tokens=tokens.draft_tokens,
            accepted_tokens=tokens.accepted_tokens,
        )

    def __next__(self) -> str:
        return next(self._pieces)

    def text(self) -> str:
        """The rest of the completion, joined."""
        return "".join(self)

    def close(self) -> None:
        self._pieces.close()  # type: ignore[attr-defined]
        if self.stats is None:  # closed before the first piece was asked for
            self._finish(False)

    def __enter__(self) -> TextStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
