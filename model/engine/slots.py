"""The KV cache as slots, one sequence each, handed to generations with prefix reuse.

A slot's buffers stay on the device between generations with the tokens whose K/V they hold,
so the next request that starts with those tokens (the same text plus a keystroke) computes
only the rest. Generations that run at once each hold a slot; one more waits for a slot.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from cachetools import LRUCache
from max.driver import Buffer, Device
from max.dtype import DType

from model.config import ModelConfig


@dataclass(eq=False)
class Slot:
    """One sequence's K/V buffers and the tokens whose K/V they hold."""

    caches: list[Buffer]
    tokens: list[int] = field(default_factory=list)
    # How many of `tokens` were its last prompt's (the rest were generated after it).
    prompt_tokens: int = 0


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class SlotPool:
    """Up to `capacity` slots, made as they are first needed. Without `prefix_reuse` a slot is
    always handed out empty."""

    def __init__(
        self,
        config: ModelConfig,
        max_length: int,
        device: Device,
        capacity: int,
        prefix_reuse: bool,
    ) -> None:
        self._config = config
        self._max_length = max_length
        self._device = device
        self._capacity = capacity
        self._prefix_reuse = prefix_reuse
        self._changed = threading.Condition()
        self._all: list[Slot] = []
        self._idle: LRUCache[int, Slot] = LRUCache(maxsize=capacity)

    def _new_slot(self) -> Slot:
        c = self._config
        shape = (c.kv_n_heads, self._max_length, c.head_dim)
        caches = [Buffer(DType.float32, shape, self._device) for _ in range(2 * c.n_layers)]
        self._all.append(Slot(caches))
        return self._all[-1]

    def acquire(self, prompt: Sequence[int]) -> Slot:
        """The idle slot sharing the longest prefix, unless that prefix is shorter than the
        prompt tokens it would drop from the slot (a prompt that starts with the same header
        or context as another, or a window moved on, must not wipe the other's cache); else
        a fresh one, else the LRU idle one (which keeps what it shares with the prompt)."""
        with self._changed:
            while True:
                best_index, best_length = None, 0
                for index in list(self._idle.keys()):
                    length = common_prefix_length(self._all[index].tokens, prompt)
                    if length > best_length:
                        best_index, best_length = index, length
                if best_index is not None and self._prefix_reuse:
                    dropped = self._all[best_index].prompt_tokens - best_length
                    if best_length >= dropped:
                        return self._idle.pop(best_index)
                if len(self._all) < self._capacity:
                    return self._new_slot()
                if self._idle:
                    _, slot = self._idle.popitem()
                    if not self._prefix_reuse:
                        slot.tokens.clear()
                    return slot
                self._changed.wait()

    def release(self, slot: Slot) -> None:
        with self._changed:
            self._idle[self._all.index(slot)] = slot
            self._changed.notify()
