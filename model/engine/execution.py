"""Running the bound graphs on a cache slot, one run at a time, and counting what they compute.

Generations run in their callers' threads; a lock serializes the graph runs, so several
generations interleave run by run, each in its own slot.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from max.driver import CPU, Buffer, Device

from model.engine.binding import BoundModels
from model.engine.draft_lengths import RunSeconds
from model.engine.slots import Slot


@dataclass(frozen=True)
class EngineCounters:
    """What the engine has computed since it started: the measure of a keystroke's cost
    that does not depend on the machine's speed."""

    graph_runs: int = 0
    computed_tokens: int = 0  # tokens sent through a graph (prompt and generated)
    verify_runs: int = 0  # graph runs that checked a draft (counted in graph_runs too)
    draft_tokens: int = 0  # drafted tokens those runs checked
    accepted_tokens: int = 0  # drafted tokens the model chose itself, so kept


def relative_positions(start: int, count: int) -> np.ndarray:
    """[count, start+count]: key minus query position where visible, -inf for future keys."""
    query = np.arange(start, start + count, dtype=np.int64)[:, None]
    key = np.arange(start + count, dtype=np.int64)[None, :]
    rel = (key - query).astype(np.float32)
    rel[key > query] = -np.inf
    return rel


class GraphRunner:
    def __init__(self, models: BoundModels, device: Device) -> None:
        self.models = models
        self._device = device
        self._lock = threading.Lock()
        self._counters = EngineCounters()
        self._counters_lock = threading.Lock()
        self.run_seconds = RunSeconds()  # decode steps and verify runs, by rows

    @property
    def counters(self) -> EngineCounters:
        return self._counters

    def count(self, **added: int) -> None:
        with self._counters_lock:
            counters = self._counters
            self._counters = replace(
                counters, **{name: getattr(counters, name) + n for name, n in added.items()}
            )

    def run(
        self,
        slot: Slot,
        tokens: Sequence[int],
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
            model = self.models.verify
        else:
            model = self.models.decode if len(tokens) == 1 else self.models.prefill
        # Buffers over the arrays' memory: `execute` takes longer per call when handed the
        # NumPy arrays themselves, by a noticeable part of a small model's decode step.
        ids_input, rel_input = Buffer.from_numpy(ids), Buffer.from_numpy(rel)
        if not isinstance(self._device, CPU):
            ids_input, rel_input = ids_input.to(self._device), rel_input.to(self._device)
        with self._lock:
            started = time.perf_counter()
            try:
                logits = model.execute(
                    ids_input, Buffer.from_numpy(position), rel_input, *slot.caches
                )[0]
            except BaseException:
                slot.tokens.clear()  # the cache may be partly written: trust none of it
                raise
            slot.tokens.extend(tokens)
            self.count(
                graph_runs=1,
                computed_tokens=len(tokens),
                verify_runs=int(every_row),
                draft_tokens=len(tokens) - 1 if every_row else 0,
            )
            logits = logits.to_numpy()
            if every_row or len(tokens) == 1:
                self.run_seconds.record(len(tokens), time.perf_counter() - started)
            return logits
