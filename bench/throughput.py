"""Prefill and decode tokens/s of the engine for one checkpoint and encoding.

Usage: `python -m bench.throughput --weight-path DIR [--quantization-encoding bfloat16]`.
Prefill is timed on fresh prompts (no prefix reuse); decode is the generation rate after the
first token.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from model.engine import Engine, EngineOptions
from model.hub import resolve_model_dir
from model.sampling import SamplingParams


def prefill_rate(engine: Engine, length: int, repeats: int, rng: np.random.Generator) -> float:
    rates = []
    for _ in range(repeats + 1):
        prompt = rng.integers(2, engine.config.vocab_size, size=length).tolist()
        started = time.perf_counter()
        engine.logits(prompt)
        rates.append(length / (time.perf_counter() - started))
    return statistics.median(rates[1:])  # the first run warms up


def decode_rate(engine: Engine, tokens: int, repeats: int, rng: np.random.Generator) -> float:
    rates = []
    for _ in range(repeats + 1):
        prompt = rng.integers(2, engine.config.vocab_size, size=16).tolist()
        started = time.perf_counter()
        with engine.generate(prompt, SamplingParams(max_new_tokens=tokens)) as generation:
            count = len(list(generation))
        elapsed = time.perf_counter() - started - generation.prefill_seconds
        rates.append((count - 1) / elapsed)
    return statistics.median(rates[1:])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--weight-path")
    parser.add_argument("--model", default="demo")
    parser.add_argument("--quantization-encoding", default="float32")
    parser.add_argument("--prefill", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--decode-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    started = time.perf_counter()
    engine = Engine(
        EngineOptions(
            model_dir=resolve_model_dir(args.weight_path, args.model),
            max_length=max(args.prefill) + 8,
            quantization_encoding=args.quantization_encoding,
        )
    )
    print(f"load {time.perf_counter() - started:.1f}s ({engine.compile_source})")
    rng = np.random.default_rng(0)
    for length in args.prefill:
        rate = prefill_rate(engine, length, args.repeats, rng)
        print(f"prefill {length}: {rate:.0f} tokens/s")
    print(f"decode: {decode_rate(engine, args.decode_tokens, args.repeats, rng):.1f} tokens/s")


if __name__ == "__main__":
    main()
