"""The resident model that both front doors (the language server and the HTTP endpoint)
share: one `Engine`, composed of the parts this package prepares.

Generation runs in the caller's thread; graph runs are serialized, so several generations
interleave token by token, each in its own cache slot (`model.engine.execution`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from model.engine.binding import bind_weights
from model.engine.compiled import default_cache_dir, obtain_compiled
from model.engine.device import select_device
from model.engine.draft_lengths import NO_DRAFTS
from model.engine.execution import EngineCounters, GraphRunner
from model.engine.generation_loop import PREFILL_CHUNK, Generation, GenerationLoop
from model.engine.model_files import read_model_files
from model.engine.options import (
    EngineOptions,
    check_counts,
    graph_encoding,
    resolve_encoding,
)
from model.engine.prefill import Prefill
from model.engine.slots import SlotPool
from model.engine.speculation import draft_plan
from model.hub import model_name
from model.progress import READY, LoadProgress, ProgressCallback, ignore_progress
from model.sampling import SamplingParams
from model.weights.files import weight_files


class Engine:
    def __init__(
        self,
        options: EngineOptions,
        progress: ProgressCallback = ignore_progress,
    ) -> None:
        started = time.perf_counter()
        check_counts(options)
        files = read_model_files(options)
        options = resolve_encoding(options, files.config)
        self.options = options
        self.config = files.config
        self.tokenizer = files.tokenizer
        self.eos_id = files.eos_id
        self.max_length = options.max_length
        dtype, graph_options = graph_encoding(options, self.config)
        self.device = select_device(options.use_gpu)
        self.drafts = draft_plan(
            options.speculative_tokens, self.config, dtype, self.device, graph_options
        )

        weight_files(options.model_dir)  # no weights: say so before a compile of minutes
        # Compiled first, in a child process that then exits: this process never holds the
        # compiler's memory and the weights at once.
        compiled, self.compile_source = obtain_compiled(
            self.config,
            dtype,
            self.device,
            graph_options,
            serialized_path=options.serialized_model_path,
            save_path=options.save_to_serialized_model_path,
            cache_dir=options.cache_dir,
            progress=progress,
        )
        models, self.weights_source = bind_weights(
            compiled,
            options.model_dir,
            self.config,
            options.quantization_encoding,
            graph_options,
            self.device,
            options.cache_dir or default_cache_dir(),
            progress,
        )
        self._runner = GraphRunner(models, self.device)
        self._draft_lengths = self.drafts.lengths(self._runner.run_seconds)
        slots = SlotPool(
            self.config,
            self.max_length,
            self.device,
            options.max_cache_batch_size,
            options.prefix_reuse,
        )
        self._loop = GenerationLoop(self._runner, slots, self.eos_id, self.max_length)
        self.load_seconds = time.perf_counter() - started
        progress(
            LoadProgress(READY, f"model ready in {self.load_seconds:.1f}s ({self.compile_source})")
        )

    @property
    def slots(self) -> int:
        """How many sequences the KV cache holds: the most generations that run at once."""
        return self.options.max_cache_batch_size

    @property
    def counters(self) -> EngineCounters:
        return self._runner.counters

    @property
    def model_name(self) -> str:
        """The name clients know the model by (a hub repo id where there is one)."""
        return model_name(self.options.model_dir)

    def generate(
        self,
        prompt: Sequence[int],
        params: SamplingParams,
        cancelled: Callable[[], bool] = lambda: False,
        *,
        speculate: bool = True,
        draft_context: Sequence[int] = (),
    ) -> Generation:
        """Starts a completion of `prompt` (token ids); nothing runs until it is iterated.

        Greedy completions speculate unless `speculate` is False or the engine's draft plan
        (`drafts`, from EngineOptions.speculative_tokens) has none; the tokens are the same
        either way, up to the rounding in which the verify and decode graphs differ (which
        can flip a near tie of two logits).
        `draft_context` is more tokens to draft from besides the prompt, such as the previous
        suggestion at this spot.
        """
        # Drafts are checked against the greedy choice only: sampled tokens would need the
        # speculative acceptance rule to keep their distribution.
        lengths = self._draft_lengths if speculate and params.greedy else NO_DRAFTS
        return self._loop.start(prompt, params, cancelled, lengths, draft_context)

    def prefill(
        self, prompt: Sequence[int], cancelled: Callable[[], bool], chunk: int = PREFILL_CHUNK
    ) -> Prefill:
        """Computes the cache for `prompt` with no generation (see `GenerationLoop.prefill`):
        what an editor's cursor resting at a new place is worth before the first keystroke
        there."""
        return self._loop.prefill(prompt, cancelled, chunk)

    def logits(self, prompt: Sequence[int]) -> np.ndarray:
        """Next-token logits after `prompt`, through the same cache path as generation."""
        return self._loop.logits(prompt)
