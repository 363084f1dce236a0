"""The local engine as a `TextGenerator`: the caller's parameters resolved against the
engine's context and vocabulary, its token ids decoded into final text as they come."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from lsp_server.generation.sampling import GenerationParams
from lsp_server.generation.stops import NoStop, StopRule
from lsp_server.generation.stream import TextStream
from model.engine.engine import Engine
from model.engine.execution import EngineCounters
from model.engine.prefill import Prefill

# Prompt tokens per graph run when bringing a prompt into the cache ahead of a request: a
# request that arrives meanwhile waits for at most one such run.
PREWARM_CHUNK = 32


class LocalGenerator:
    """Generation by the `Engine` in this process, which can always generate once loaded."""

    backend = None
    problem = None

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.tokenizer = engine.tokenizer
        self.max_length = engine.max_length
        self.load_seconds = engine.load_seconds
        self.compile_source = engine.compile_source
        self.weights_source = engine.weights_source

    @property
    def slots(self) -> int:
        return self.engine.slots

    @property
    def counters(self) -> EngineCounters:
        return self.engine.counters

    @property
    def model_name(self) -> str:
        return self.engine.model_name

    def stream_text(
        self,
        prompt: Sequence[int],
        params: GenerationParams,
        *,
        cancelled: Callable[[], bool] = lambda: False,
        stop: StopRule | None = None,
        speculate: bool = True,
        draft_context: Sequence[int] = (),
    ) -> TextStream:
        """See `TextGenerator.stream_text`."""
        resolved = params.resolved(len(prompt), self.max_length, self.tokenizer.vocab_size)
        tokens = self.engine.generate(
            prompt, resolved, cancelled, speculate=speculate, draft_context=draft_context
        )
        return TextStream(tokens, self.tokenizer.stream(), stop or NoStop())

    def prefill(self, prompt: Sequence[int], cancelled: Callable[[], bool]) -> Prefill:
        """See `TextGenerator.prefill`: in short runs, so a request waits little for it."""
        return self.engine.prefill(prompt, cancelled, PREWARM_CHUNK)
