"""Text generation: the one interface through which every front door runs the model.

The language server, the HTTP endpoint and the one-shot CLI all hand the engine prompt tokens,
sampling parameters, a cancel flag and a stop rule, and receive text pieces as they become
final, then one `GenerationStats` record. What differs between them (when a completion is
over, how text is shaped for the client) lives in their stop rules and their own layers.

Two generators implement it: the local engine (`model/engine.py`), whose pieces are token ids
decoded here, and a remote OpenAI-compatible server (`lsp_server/remote.py`), whose pieces
arrive as text. The front doors see only `TextGenerator`, so neither knows where the model runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from model.sampling import SamplingParams

Piece = TypeVar("Piece")


class StopRule(Protocol):
    """Decides, piece by piece, how much generated text to release and when to stop."""

    def feed(self, text: str) -> tuple[str, bool]:
        """The text that is safe to release now, and whether the completion is over."""
        ...

    def flush(self) -> str:
        """What was held back, once the model has stopped by itself."""
        ...


class NoStop:
    """Releases every piece at once; only the model's end of text or the length stops it."""

    def feed(self, text: str) -> tuple[str, bool]:
        return text, False

    def flush(self) -> str:
        return ""


class StopStrings:
    """Cuts generated text before the first stop string, even one split across tokens.

    Text that could be the beginning of a stop string is held back until the next piece shows
    whether it is one, so no part of a stop string is ever released.
    """

    def __init__(self, stops: list[str]) -> None:
        self._stops = stops
        self._pending = ""

    def feed(self, text: str) -> tuple[str, bool]:
        self._pending += text
        cut = min((i for s in self._stops if (i := self._pending.find(s)) >= 0), default=-1)
        if cut >= 0:
            out, self._pending = self._pending[:cut], ""
            return out, True
        hold = self._held_length()
        out = self._pending[: len(self._pending) - hold]
        self._pending = self._pending[len(self._pending) - hold :]
        return out, False

    def _held_length(self) -> int:
        """The longest end of the pending text that a stop string starts with."""
        longest = max((len(s) for s in self._stops), default=1)
        for length in range(min(len(self._pending), longest - 1), 0, -1):
            tail = self._pending[-length:]
            if any(s.startswith(tail) for s in self._stops):
                return length
        return 0

    def flush(self) -> str:
        out, self._pending = self._pending, ""
        return out


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


class TextTokenizer(Protocol):
    """What the front doors need of a tokenizer: the model's, or a stand-in that counts
    characters when a remote server's tokenizer is not available here."""

    vocab_size: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...


class TextGenerator(Protocol):
    """What every front door uses of the process's model, local or remote."""

    tokenizer: TextTokenizer
    max_length: int
    load_seconds: float
    compile_source: str
    weights_source: str

    @property
    def slots(self) -> int:
        """How many generations run at once."""
        ...

    @property
    def counters(self) -> Any:
        """A dataclass of what the generator has done, for status and health answers."""
        ...

    @property
    def model_name(self) -> str: ...

    @property
    def problem(self) -> str | None:
        """Why generation cannot run now (a remote server that is down), else None."""
        ...

    def stream_text(
        self,
        prompt: Sequence[int],
        params: SamplingParams,
        *,
        cancelled: Callable[[], bool] = ...,
        stop: StopRule | None = None,
        speculate: bool = True,
        draft_context: Sequence[int] = (),
    ) -> TextStream: ...
