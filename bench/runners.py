"""This project's engine and llama.cpp behind one interface, so a benchmark treats them alike.

Both take token ids (no tokenizer in the timed path), run on the same number of threads, start
every prefill from an empty cache, and pick decode tokens greedily from the logits in Python,
so the per-token overhead each pays is of the same kind. Each runs in a process of its own
(`RemoteRunner`), timed inside that process, and the runners not being measured are stopped
(SIGSTOP): an idle MAX process keeps polling for work, which cost llama.cpp in another process
up to half its decode rate on a small model here.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from model.engine.engine import Engine
from model.engine.options import EngineOptions
from model.engine.slots import common_prefix_length
from model.sampling import SamplingParams


@dataclass(frozen=True)
class Suggestion:
    """One greedy suggestion's costs: to its first token (prefill of what was not cached and
    one step), in all, and the decode steps after the first token."""

    first_token_seconds: float
    total_seconds: float
    steps: int
    reused_tokens: int

    @property
    def decode_tokens_per_s(self) -> float:
        return self.steps / (self.total_seconds - self.first_token_seconds)


class Runner(Protocol):
    name: str

    def logits(self, prompt: list[int]) -> np.ndarray:
        """Next-token logits after `prompt`, computed from an empty cache."""
        ...

    def prefill_seconds(self, prompt: list[int]) -> float: ...

    def decode_seconds(self, prompt: list[int], tokens: int) -> tuple[int, float]:
        """(steps, seconds) of greedy one-token steps after `prompt`, prefill excluded."""
        ...

    def suggestion(self, prompt: list[int], tokens: int) -> Suggestion:
        """A `tokens`-token greedy suggestion after `prompt`, reusing the cached prefix."""
        ...

    def close(self) -> None: ...


def timed_logits(runner: Runner, prompt: list[int]) -> float:
    started = time.perf_counter()
    runner.logits(prompt)
    return time.perf_counter() - started


def engine_decode_seconds(engine: Engine, prompt: list[int], tokens: int) -> tuple[int, float]:
    """(steps, seconds) of the engine's greedy one-token steps after `prompt`. The first new
    token's step is part of `Generation.prefill_seconds`, so it is left out of both."""
    started = time.perf_counter()
    params = SamplingParams(max_new_tokens=tokens, top_k=1)
    with engine.generate(prompt, params) as generation:
        count = len(list(generation))
    if count < 2:
        raise RuntimeError("the model stopped at once: no decode step to time")
    return count - 1, time.perf_counter() - started - generation.prefill_seconds


class MaxRunner:
    """The engine as the server runs it, with prefix reuse off unless asked for, so that
    nothing is skipped."""

    name = "MAX"

    def __init__(
        self,
        model_dir: Path,
        encoding: str,
        max_length: int,
        prefix_reuse: bool = False,
        **options: object,
    ) -> None:
        self.engine = Engine(
            EngineOptions(
                model_dir=model_dir,
                quantization_encoding=encoding,
                max_length=max_length,
                max_cache_batch_size=1,
                prefix_reuse=prefix_reuse,
                **options,
            )
        )

    def logits(self, prompt: list[int]) -> np.ndarray:
        return self.engine.logits(prompt)

    def prefill_seconds(self, prompt: list[int]) -> float:
        return timed_logits(self, prompt)

    def decode_seconds(self, prompt: list[int], tokens: int) -> tuple[int, float]:
        return engine_decode_seconds(self.engine, prompt, tokens)

    def suggestion(self, prompt: list[int], tokens: int) -> Suggestion:
        started = time.perf_counter()
        with self.engine.generate(prompt, SamplingParams(max_new_tokens=tokens)) as generation:
            count = len(list(generation))
        return Suggestion(
            generation.prefill_seconds,
            time.perf_counter() - started,
            count - 1,
            generation.reused_tokens,
        )

    def close(self) -> None:
        del self.engine


class LlamaCppRunner:
    """llama.cpp through llama-cpp-python on a GGUF export of the same checkpoint."""

    name = "llama.cpp"

    def __init__(self, gguf_path: Path, max_length: int, threads: int) -> None:
        from llama_cpp import Llama  # optional: only the benchmarks need it

        self.llama = Llama(
            model_path=str(gguf_path),
            n_ctx=max_length,
            n_batch=512,
            n_ubatch=512,
            n_threads=threads,
            n_threads_batch=threads,
            logits_all=False,
            verbose=False,
        )

    def _eval(self, tokens: list[int]) -> np.ndarray:
        """The logits after `tokens`, read from llama.cpp's own buffer (a view, not a copy)."""
        self.llama.eval(tokens)
        return np.ctypeslib.as_array(self.llama._ctx.get_logits(), shape=(self.llama.n_vocab(),))

    def logits(self, prompt: list[int]) -> np.ndarray:
        self.llama.reset()
        return self._eval(prompt).copy()

    def prefill_seconds(self, prompt: list[int]) -> float:
        return timed_logits(self, prompt)

    def decode_seconds(self, prompt: list[int], tokens: int) -> tuple[int, float]:
        next_token = int(np.argmax(self.logits(prompt)))
        started = time.perf_counter()
        for _ in range(tokens - 1):
            next_token = int(np.argmax(self._eval([next_token])))
        return tokens - 1, time.perf_counter() - started

    def suggestion(self, prompt: list[int], tokens: int) -> Suggestion:
        """As llama-cpp-python's own `generate` reuses its cache: keep the longest common
        prefix of what was evaluated (at least one token is evaluated anew)."""
        started = time.perf_counter()
        cached = self.llama.input_ids[: self.llama.n_tokens].tolist()
        keep = min(common_prefix_length(cached, prompt), len(prompt) - 1)
        self.llama.n_tokens = keep
        next_token = int(np.argmax(self._eval(prompt[keep:])))
        first = time.perf_counter() - started
        for _ in range(tokens - 1):
            next_token = int(np.argmax(self._eval([next_token])))
        return Suggestion(first, time.perf_counter() - started, tokens - 1, keep)

    def close(self) -> None:
        self.llama.close()


RUNNERS = {"MAX": MaxRunner, "llama.cpp": LlamaCppRunner}


def _serve(conn: Connection, name: str, kwargs: dict[str, Any]) -> None:
    """The worker process: builds the runner, then answers (method, args) calls until None."""
    try:
        runner = RUNNERS[name](**kwargs)
        conn.send((True, None))
    except Exception as error:
        conn.send((False, f"{type(error).__name__}: {error}"))
        return
    while (message := conn.recv()) is not None:
        method, args = message
        try:
            conn.send((True, getattr(runner, method)(*args)))
        except Exception as error:
            conn.send((False, f"{type(error).__name__}: {error}"))
    runner.close()


class RemoteRunner:
    """A runner of `RUNNERS` in its own process, with the same methods."""

    def __init__(self, name: str, **kwargs: Any) -> None:
        self.name = name
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, name, kwargs), daemon=True)
        self._process.start()
        self._receive()

    def _receive(self) -> Any:
        while not self._conn.poll(1.0):
            if not self._process.is_alive():
                raise RuntimeError(f"{self.name} runner died (exit code {self._process.exitcode})")
        ok, value = self._conn.recv()
        if not ok:
            raise RuntimeError(f"{self.name} runner: {value}")
        return value

    def _call(self, method: str, *args: Any) -> Any:
        self._conn.send((method, args))
        return self._receive()

    def logits(self, prompt: list[int]) -> np.ndarray:
        return self._call("logits", prompt)

    def prefill_seconds(self, prompt: list[int]) -> float:
        return self._call("prefill_seconds", prompt)

    def decode_seconds(self, prompt: list[int], tokens: int) -> tuple[int, float]:
        return self._call("decode_seconds", prompt, tokens)

    def suggestion(self, prompt: list[int], tokens: int) -> Suggestion:
        return self._call("suggestion", prompt, tokens)

    @property
    def pid(self) -> int:
        return self._process.pid

    def pause(self) -> None:
        os.kill(self._process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self._process.pid, signal.SIGCONT)

    def close(self) -> None:
        self.resume()
        if self._process.is_alive():
            self._conn.send(None)
            self._process.join(timeout=60)
        if self._process.is_alive():
            self._process.kill()
