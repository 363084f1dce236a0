"""The generation loop: a prompt brought into a cache slot in chunks, then one decode step per
token, or one verify run per draft, until the end of text, the length or a cancel."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from model.engine.draft_lengths import DraftLengths
from model.engine.drafting import draft
from model.engine.execution import GraphRunner
from model.engine.prefill import Prefill
from model.engine.slots import Slot, SlotPool, common_prefix_length
from model.engine.speculation import accepted_choices
from model.sampling import Sampler, SamplingParams, check_prompt_fits

# Longest run of prompt tokens sent through the graph at once: bounds the attention score
# tensor (heads x chunk x context) and lets other requests interleave with a long prefill.
# MAX's allocator keeps a run's activations for the next run, so after a long prompt shorter
# chunks leave less memory held, at the same prefill rate.
PREFILL_CHUNK = 128


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


class GenerationLoop:
    """Generations over the slots of one pool, run by one runner."""

    def __init__(
        self, runner: GraphRunner, slots: SlotPool, eos_id: int | None, max_length: int
    ) -> None:
        self._runner = runner
        self._slots = slots
        self._eos_id = eos_id
        self._max_length = max_length

    def start(
        self,
        prompt: Sequence[int],
        params: SamplingParams,
        cancelled: Callable[[], bool],
        lengths: DraftLengths,
        draft_context: Sequence[int],
    ) -> Generation:
        """A completion of `prompt` whose runs check as many drafted tokens as `lengths`
        chooses; nothing runs until it is iterated."""
        prompt = list(prompt)
        check_prompt_fits(len(prompt), self._max_length)
        generation = Generation(len(prompt))
        generation._steps = self._steps(
            generation, prompt, params, cancelled, lengths, list(draft_context)
        )
        return generation

    def logits(self, prompt: Sequence[int]) -> np.ndarray:
        """Next-token logits after `prompt`, through the same cache path as generation."""
        prompt = list(prompt)
        slot = self._slots.acquire(prompt)
        try:
            self._prefill(slot, prompt, lambda: False)
            return self._runner.run(slot, prompt[-1:])
        finally:
            self._slots.release(slot)

    def prefill(self, prompt: Sequence[int], cancelled: Callable[[], bool], chunk: int) -> Prefill:
        """Brings a slot's cache to `prompt` without generating, in runs of at most `chunk`
        tokens, checking `cancelled` before each: a later generation that starts with
        `prompt` computes only what follows it."""
        prompt = list(prompt)
        check_prompt_fits(len(prompt), self._max_length)
        slot = self._slots.acquire(prompt)
        try:
            reused = self._prefill(slot, prompt, cancelled, chunk=chunk)
            cached = len(slot.tokens)
        finally:
            self._slots.release(slot)
        return Prefill(len(prompt), reused, cached - reused, cached == len(prompt) - 1)

    def _run(
        self,
        slot: Slot,
        tokens: Sequence[int],
        generation: Generation | None,
        *,
        every_row: bool = False,
    ) -> np.ndarray:
        logits = self._runner.run(slot, tokens, every_row=every_row)
        if generation is not None:
            generation.graph_runs += 1
        return logits

    def _prefill(
        self,
        slot: Slot,
        prompt: Sequence[int],
        cancelled: Callable[[], bool],
        generation: Generation | None = None,
        *,
        chunk: int = PREFILL_CHUNK,
    ) -> int:
        """Brings the slot's cache to `prompt` minus its last token; returns the reused count."""
        reused = min(common_prefix_length(slot.tokens, prompt), len(prompt) - 1)
        del slot.tokens[reused:]
        for begin in range(reused, len(prompt) - 1, chunk):
            if cancelled():
                break
            self._run(slot, prompt[begin : min(begin + chunk, len(prompt) - 1)], generation)
        slot.prompt_tokens = len(slot.tokens)
        return reused

    def _steps(
        self,
        generation: Generation,
        prompt: list[int],
        params: SamplingParams,
        cancelled: Callable[[], bool],
        lengths: DraftLengths,
        draft_context: list[int],
    ) -> Iterator[int]:
        # The caller's limit, and the cache's: a slot holds `max_length` tokens.
        budget = min(params.max_new_tokens, self._max_length - len(prompt))
        sample = Sampler(params)
        slot = self._slots.acquire(prompt)
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
                drafted = draft(history, min(lengths.limit, left - 1), draft_context)
                guess = drafted[: lengths.choose(len(drafted))]
                inputs = [history[-1], *guess]
                if guess:
                    rows = self._run(slot, inputs, generation, every_row=True)
                else:
                    rows = self._run(slot, inputs, generation)[None]
                if not generation.tokens:
                    generation.prefill_seconds = time.perf_counter() - started
                chosen = self._accept(slot, generation, guess, rows, sample)
                lengths.observe(drafted, len(guess), chosen)
                for index, token in enumerate(chosen):
                    if index and cancelled():
                        generation.finish_reason = "cancelled"
                        return
                    if token == self._eos_id:
                        generation.finish_reason = "stop"
                        return
                    generation.tokens.append(token)
                    history.append(token)
                    yield token
            generation.finish_reason = "length"
        finally:
            self._slots.release(slot)

    def _accept(
        self,
        slot: Slot,
        generation: Generation,
        guess: list[int],
        rows: np.ndarray,
        sample: Sampler,
    ) -> list[int]:
        """The tokens one run chose (`accepted_choices`), the K/V of their inputs kept with
        them and the rest of the run dropped from the slot."""
        chosen = accepted_choices(guess, rows, sample, self._eos_id)
        accepted = len(chosen) - 1
        del slot.tokens[len(slot.tokens) - len(rows) + len(chosen) :]
        generation.draft_tokens += len(guess)
        generation.accepted_tokens += accepted
        self._runner.count(accepted_tokens=accepted)
        return chosen
