"""The resident model: the compiled graphs, KV cache slots with prefix reuse, and generation.

Both front doors (the language server and the HTTP endpoint) share one `Engine`. Generation
runs in the caller's thread; graph executions are serialized by a lock, so several
generations interleave token by token, each in its own cache slot.

Greedy generation speculates: where the last tokens occur earlier in the context, the tokens
that followed them there (`model.drafting`) are checked in one verify run with the last
accepted token, and every drafted token that equals the model's own greedy choice is kept,
plus the model's choice after the last one kept. A decode step is bound by reading the
weights, so such a run costs about one step and can yield several tokens.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from cachetools import LRUCache
from max.driver import CPU, Accelerator, Buffer, Device, accelerator_count
from max.dtype import DType
from max.engine import InferenceSession, Model

from model.compiled import default_cache_dir, obtain_compiled
from model.config import ModelConfig, load_config
from model.drafting import draft
from model.graph.block_layout import group_rows
from model.graph.builder import DECODE_GRAPH, PREFILL_GRAPH, VERIFY_GRAPH
from model.graph.ops import decodes_whole_blocks
from model.graph.options import DEFAULT_GRAPH, GraphOptions, encoding_graph
from model.hub import model_name
from model.progress import BINDING, READY, LoadProgress, ProgressCallback, ignore_progress
from model.sampling import Sampler, SamplingParams, check_prompt_fits
from model.tokenizer import Tokenizer
from model.weights.encodings import ENCODINGS
from model.weights.files import weight_files
from model.weights.quantized_cache import load_quantized_weights
from model.weights.tensors import BLOCK_FORMATS, stored_shapes

# Longest run of prompt tokens sent through the graph at once: bounds the attention score
# tensor (heads x chunk x context) and lets other requests interleave with a long prefill.
# MAX's allocator keeps a run's activations for the next run: after a 1,000-token prompt the
# 3B model in Q4_0 held 2.37 GB in chunks of 128 against 2.54 GB in chunks of 512, at the same
# prefill rate (bfloat16: 41 against 39 tokens/s).
PREFILL_CHUNK = 128


# Drafted tokens checked per verify run where speculation is on by default.
SPECULATIVE_TOKENS = 4


class EngineError(RuntimeError):
    """The engine cannot be built as asked (no accelerator, bad option)."""


class OptionError(EngineError):
    """An option the engine cannot honour, named by its `EngineOptions` field so that each
    front door can name it in its own terms (the CLI as a flag)."""

    def __init__(self, option: str, problem: str) -> None:
        super().__init__(f"{option} {problem}")
        self.option = option
        self.problem = problem


@dataclass(frozen=True)
class EngineOptions:
    model_dir: Path
    quantization_encoding: str = "float32"
    max_length: int = 512
    max_cache_batch_size: int = 4
    use_gpu: bool = False
    serialized_model_path: Path | None = None
    save_to_serialized_model_path: Path | None = None
    cache_dir: Path | None = None  # compiled models and weights quantized at load
    prefix_reuse: bool = True
    # Most drafted tokens checked in one verify run of greedy generation; 0 turns speculation
    # off. None: SPECULATIVE_TOKENS where a decode step reads the weights op by op (a large
    # model, where a verify run of a few rows costs about one step), 0 where each block decodes
    # as one kernel (a small model, where the verify run's many ops cost more than the steps
    # saved: demo model, 1.7x fewer graph runs but 0.6x the speed), and 0 for Q8_0 and Q4_0
    # blocks (full-size model in Q4_0, drafts that agree: 1.4x fewer graph runs, each 1.5x as
    # long on average with 3 drafts, so 0.92x the speed of plain decoding; 0.69x with 4).
    speculative_tokens: int | None = None
    graph: GraphOptions = DEFAULT_GRAPH


@dataclass(frozen=True)
class EngineCounters:
    """What the engine has computed since it started: the measure of a keystroke's cost
    that does not depend on the machine's speed."""

    graph_runs: int = 0
    computed_tokens: int = 0  # tokens sent through a graph (prompt and generated)
    verify_runs: int = 0  # graph runs that checked a draft (counted in graph_runs too)
    draft_tokens: int = 0  # drafted tokens those runs checked
    accepted_tokens: int = 0  # drafted tokens the model chose itself, so kept


@dataclass(eq=False)
class _Slot:
    """One sequence's K/V buffers and the tokens whose K/V they hold."""

    caches: list[Buffer]
    tokens: list[int] = field(default_factory=list)


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def relative_positions(start: int, count: int) -> np.ndarray:
    """[count, start+count]: key minus query position where visible, -inf for future keys."""
    query = np.arange(start, start + count, dtype=np.int64)[:, None]
    key = np.arange(start + count, dtype=np.int64)[None, :]
    rel = (key - query).astype(np.float32)
    rel[key > query] = -np.inf
    return rel


class Generation(Iterator[int]):
    """An in-progress completion: iterate for token ids; the stats fill in as it runs.

    Use it as a context manager (or call `close`) so its cache slot is released even when the
    consumer stops early.
    """

    def __init__(self, prompt_tokens: int) -> None:
        self.prompt_tokens = prompt_tokens
        self.reused_tokens = 0
        self.tokens: list[int] = []
        self.finish_reason: str | None = None  # "stop" (eos), "length" or "cancelled"
        self.prefill_seconds = 0.0
        self.graph_runs = 0  # prefill chunks, decode steps and verify runs
        self.draft_tokens = 0  # drafted tokens checked by verify runs
        self.accepted_tokens = 0  # drafted tokens kept, each a decode step saved
        self._steps: Iterator[int] = iter(())

    @property
    def generated_tokens(self) -> int:
        return len(self.tokens)

    def __next__(self) -> int:
        return next(self._steps)

    def close(self) -> None:
        self._steps.close()  # type: ignore[attr-defined]

    def __enter__(self) -> Generation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def select_device(use_gpu: bool) -> Device:
    if not use_gpu:
        return CPU()
    if accelerator_count() == 0:
        raise OptionError("use_gpu", "was given but MAX finds no supported GPU on this machine")
    return Accelerator()


class Engine:
    def _graph_encoding(self, options: EngineOptions) -> tuple[DType, GraphOptions]:
        """The graph's dtype and options for the weight encoding, refused before a compile of
        minutes where the graph cannot take it."""
        encoding = options.quantization_encoding
        if encoding not in ENCODINGS:
            raise OptionError("quantization_encoding", f"must be one of {', '.join(ENCODINGS)}")
        dtype, graph = encoding_graph(encoding, options.graph)
        if graph.block_format is not None:
            if options.use_gpu or not graph.cpu_kernels:
                raise OptionError(
                    "quantization_encoding",
                    f"{encoding} runs on the CPU kernels only; the GPU (and the CPU without "
                    "its kernels) takes float32 or bfloat16",
                )
            try:
                stored_shapes(self.config, BLOCK_FORMATS[encoding])
            except ValueError as error:
                raise OptionError("quantization_encoding", f"{encoding}: {error}") from None
        return dtype, graph

    def __init__(
        self,
        options: EngineOptions,
        progress: ProgressCallback = ignore_progress,
    ) -> None:
        started = time.perf_counter()
        if options.max_cache_batch_size < 1:
            raise OptionError("max_cache_batch_size", "must be at least 1")
        if options.speculative_tokens is not None and options.speculative_tokens < 0:
            raise OptionError("speculative_tokens", "must be at least 0")
        self.options = options
        self.config: ModelConfig = load_config(options.model_dir)
        if not 2 <= options.max_length <= self.config.max_seq_len:
            raise OptionError(
                "max_length",
                f"must be between 2 and the model's max_seq_len {self.config.max_seq_len}, "
                f"got {options.max_length}",
            )
        self.tokenizer = Tokenizer(options.model_dir)
        self.eos_id = self.tokenizer.eos_id
        if self.eos_id is None:
            self.eos_id = self.config.eos_token_id
        self.max_length = options.max_length
        dtype, graph_options = self._graph_encoding(options)
        self.device = select_device(options.use_gpu)
        self.speculative_tokens = options.speculative_tokens
        if self.speculative_tokens is None:
            fused = decodes_whole_blocks(self.config, dtype, self.device, graph_options)
            blocks = graph_options.block_format is not None
            self.speculative_tokens = 0 if fused or blocks else SPECULATIVE_TOKENS

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
        # On the CPU, MAX reads the weights where they lie: in the file's mapping, so that a
        # restart finds them in the page cache instead of copying gigabytes into memory that
        # the process must first be given (bench/results/restart).
        weights, self.weights_source = load_quantized_weights(
            options.model_dir,
            self.config,
            options.quantization_encoding,
            options.cache_dir or default_cache_dir(),
            progress=progress,
        )
        if graph_options.block_format is not None:
            block_format = BLOCK_FORMATS[graph_options.block_format]
            for name, array in weights.items():
                if array.ndim == 2:  # one matrix at a time: the GGUF rows are freed as it goes
                    weights[name] = group_rows(array, block_format)
        registry = {
            name: Buffer.from_numpy(array).view(DType.bfloat16)
            if array.dtype == np.uint16
            else array
            for name, array in weights.items()
        }
        session = InferenceSession(devices=[self.device])
        progress(LoadProgress(BINDING, "binding weights to the compiled model"))
        models = session.init_all(compiled, weights_registry=registry)
        self._prefill_model: Model = models[PREFILL_GRAPH]
        # One new token runs the decode graph where one was built (CPU), else the same graph.
        self._decode_model: Model = models.get(DECODE_GRAPH, self._prefill_model)
        self._verify_model: Model = models[VERIFY_GRAPH]
        self._weights = registry  # the model may alias host arrays: keep them alive

        self._run_lock = threading.Lock()
        self._counters = EngineCounters()
        self._counters_lock = threading.Lock()
        self._slots_changed = threading.Condition()
        self._all_slots: list[_Slot] = []
        self._idle: LRUCache[int, _Slot] = LRUCache(maxsize=options.max_cache_batch_size)
        self.load_seconds = time.perf_counter() - started
        progress(
            LoadProgress(READY, f"model ready in {self.load_seconds:.1f}s ({self.compile_source})")
        )

    # ------------------------------------------------------- what front doors see

    @property
    def slots(self) -> int:
        """How many sequences the KV cache holds: the most generations that run at once."""
        return self.options.max_cache_batch_size

    @property
    def counters(self) -> EngineCounters:
        return self._counters

    @property
    def model_name(self) -> str:
        """The name clients know the model by (a hub repo id where there is one)."""
        return model_name(self.options.model_dir)

    # ------------------------------------------------------------------ slots

    def _new_slot(self) -> _Slot:
        c = self.config
        shape = (c.kv_n_heads, self.max_length, c.head_dim)
        caches = [Buffer(DType.float32, shape, self.device) for _ in range(2 * c.n_layers)]
        self._all_slots.append(_Slot(caches))
        return self._all_slots[-1]

    def _acquire(self, prompt: Sequence[int]) -> _Slot:
        """The idle slot sharing the longest prefix, else a fresh one, else the LRU idle one."""
        with self._slots_changed:
            while True:
                best_index, best_length = None, 0
                for index in list(self._idle.keys()):
                    length = common_prefix_length(self._all_slots[index].tokens, prompt)
                    if length > best_length:
                        best_index, best_length = index, length
                if best_index is not None and self.options.prefix_reuse:
                    return self._idle.pop(best_index)
                if len(self._all_slots) < self.options.max_cache_batch_size:
                    return self._new_slot()
                if self._idle:
                    _, slot = self._idle.popitem()
                    slot.tokens.clear()
                    return slot
                self._slots_changed.wait()

    def _release(self, slot: _Slot) -> None:
        with self._slots_changed:
            self._idle[self._all_slots.index(slot)] = slot
            self._slots_changed.notify()

    # -------------------------------------------------------------- execution

    def _count(self, **added: int) -> None:
        with self._counters_lock:
            counters = self._counters
            self._counters = replace(
                counters, **{name: getattr(counters, name) + n for name, n in added.items()}
            )

    def _run(
        self,
        slot: _Slot,
        tokens: Sequence[int],
        generation: Generation | None = None,
        *,
        every_row: bool = False,
    ) -> np.ndarray:
        """Appends `tokens` to the slot's cache and returns the logits after the last one, or
        with `every_row` (the verify graph) those after each, [len(tokens), vocab]."""
        start = len(slot.tokens)
        ids = np.asarray(tokens, dtype=np.int64)
        rel = relative_positions(start, len(tokens))
        position = np.array([start], dtype=np.int64)
        if every_row:
            model = self._verify_model
        else:
            model = self._decode_model if len(tokens) == 1 else self._prefill_model
        # Buffers over the arrays' memory: `execute` takes about 0.1 ms longer per call when
        # handed the NumPy arrays themselves (146 against 41 us for a two-op graph here), a
        # tenth of a small model's decode step.
        ids_input, rel_input = Buffer.from_numpy(ids), Buffer.from_numpy(rel)
        if not isinstance(self.device, CPU):
            ids_input, rel_input = ids_input.to(self.device), rel_input.to(self.device)
        with self._run_lock:
            try:
                logits = model.execute(
                    ids_input, Buffer.from_numpy(position), rel_input, *slot.caches
                )[0]
            except BaseException:
                slot.tokens.clear()  # the cache may be partly written: trust none of it
                raise
            slot.tokens.extend(tokens)
            self._count(
                graph_runs=1,
                computed_tokens=len(tokens),
                verify_runs=int(every_row),
                draft_tokens=len(tokens) - 1 if every_row else 0,
            )
            if generation is not None:
                generation.graph_runs += 1
            return logits.to_numpy()

    def _prefill(
        self,
        slot: _Slot,
        prompt: Sequence[int],
        cancelled: Callable[[], bool],
        generation: Generation | None = None,
    ) -> int:
        """Brings the slot's cache to `prompt` minus its last token; returns the reused count."""
        reused = common_prefix_length(slot.tokens, prompt) if self.options.prefix_reuse else 0
        reused = min(reused, len(prompt) - 1)
        del slot.tokens[reused:]
        for begin in range(reused, len(prompt) - 1, PREFILL_CHUNK):
            if cancelled():
                break
            chunk = prompt[begin : min(begin + PREFILL_CHUNK, len(prompt) - 1)]
            self._run(slot, chunk, generation)
        return reused

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

        Greedy completions speculate unless `speculate` is False or the engine's
        `speculative_tokens` is 0 (see EngineOptions); the tokens are the same either way, up
        to the rounding in which the verify and decode graphs differ (which can flip a near tie
        of two logits).
        `draft_context` is more tokens to draft from besides the prompt, such as the previous
        suggestion at this spot.
        """
        prompt = list(prompt)
        check_prompt_fits(len(prompt), self.max_length)
        # Drafts are checked against the greedy choice only: sampled tokens would need the
        # speculative acceptance rule to keep their distribution.
        draft_limit = self.speculative_tokens if speculate and params.greedy else 0
        generation = Generation(len(prompt))
        generation._steps = self._steps(
            generation, prompt, params, cancelled, draft_limit, list(draft_context)
        )
        return generation

    def _steps(
        self,
        generation: Generation,
        prompt: list[int],
        params: SamplingParams,
        cancelled: Callable[[], bool],
        draft_limit: int,
        draft_context: list[int],
    ) -> Iterator[int]:
        # The caller's limit, and the cache's: a slot holds `max_length` tokens.
        budget = min(params.max_new_tokens, self.max_length - len(prompt))
        sample = Sampler(params)
        slot = self._acquire(prompt)
        try:
            started = time.perf_counter()
            generation.reused_tokens = self._prefill(slot, prompt, cancelled, generation)
            history = list(prompt)  # the context drafts are looked up in
            while len(generation.tokens) < budget:
                if cancelled():
                    generation.finish_reason = "cancelled"
                    return
                # A verify run yields at most one token more than it drafted, so the budget
                # (and with it the cache's capacity) bounds the draft.
                left = budget - len(generation.tokens)
                guess = draft(history, min(draft_limit, left - 1), draft_context)
                inputs = [history[-1], *guess]
                if guess:
                    rows = self._run(slot, inputs, generation, every_row=True)
                else:
                    rows = self._run(slot, inputs, generation)[None]
                if not generation.tokens:
                    generation.prefill_seconds = time.perf_counter() - started
                chosen = self._accept(slot, generation, guess, rows, sample)
                for index, token in enumerate(chosen):
                    if index and cancelled():
                        generation.finish_reason = "cancelled"
                        return
                    if token == self.eos_id:
                        generation.finish_reason = "stop"
                        return
                    generation.tokens.append(token)
                    history.append(token)
                    yield token
            generation.finish_reason = "length"
        finally:
            self._release(slot)

    def _accept(
        self,
        slot: _Slot,
        generation: Generation,
        guess: list[int],
        rows: np.ndarray,
        sample: Sampler,
    ) -> list[int]:
        """The tokens one run chose: row i's choice follows the input before it and the
        drafted tokens up to i, so the choices are kept up to the first that differs from the
        draft (or is the end of text), the K/V of their inputs with them, and the rest of the
        run is dropped from the slot."""
        chosen: list[int] = []
        for row in rows:
            chosen.append(sample(row))
            if len(chosen) > len(guess) or chosen[-1] != guess[len(chosen) - 1]:
                break
            if chosen[-1] == self.eos_id:
                break
        accepted = len(chosen) - 1
        del slot.tokens[len(slot.tokens) - len(rows) + len(chosen) :]
        generation.draft_tokens += len(guess)
        generation.accepted_tokens += accepted
        self._count(accepted_tokens=accepted)
        return chosen

    def logits(self, prompt: Sequence[int]) -> np.ndarray:
        """Next-token logits after `prompt`, through the same cache path as generation."""
        prompt = list(prompt)
        slot = self._acquire(prompt)
        try:
            self._prefill(slot, prompt, lambda: False)
            return self._run(slot, prompt[-1:])
        finally:
            self._release(slot)
