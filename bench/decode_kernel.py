"""Decode tokens/s of the engine with and without the CPU kernels, side by side.

A full-width Replit slice (d_model 3072, 24 heads, 8 kv heads, FFN 12288, vocab 32768, random
weights, `--layers` blocks) is loaded four times: float32 and bfloat16 weights, each with the
built-in ops everywhere (`cpu_kernels=False`) and with the decode graph on the kernels. The
four engines decode in turn, round after round, so load from other processes hits all of them;
medians are printed with the load average. Usage: `python -m bench.decode_kernel [--layers 2]`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

import numpy as np

from bench.runners import engine_decode_seconds
from model.engine.engine import Engine
from model.engine.options import EngineOptions
from model.graph.options import GraphOptions
from testkit.checkpoints import full_width_slice, make_random_checkpoint, weight_bytes


def decode_rate(engine: Engine, prompt: list[int], tokens: int) -> float:
    steps, seconds = engine_decode_seconds(engine, prompt, tokens)
    return steps / seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=24)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tiny = make_random_checkpoint(Path(tmp) / "tiny")
        model_dir = full_width_slice(Path(tmp) / "slice", args.layers, tiny)
        engines = {}
        for encoding in ("float32", "bfloat16"):
            for kernels in (False, True):
                options = EngineOptions(
                    model_dir=model_dir,
                    quantization_encoding=encoding,
                    max_length=256,
                    max_cache_batch_size=1,
                    prefix_reuse=False,
                    graph=GraphOptions(cpu_kernels=kernels),
                )
                engines[encoding, kernels] = Engine(options, progress=print)
        rng = np.random.default_rng(0)
        prompt = rng.integers(2, 400, size=16).tolist()
        rates: dict[tuple[str, bool], list[float]] = {key: [] for key in engines}
        print(f"load average before: {os.getloadavg()}")
        for engine in engines.values():
            decode_rate(engine, prompt, 4)  # warm-up
        for _ in range(args.rounds):
            for key, engine in engines.items():
                rates[key].append(decode_rate(engine, prompt, args.tokens))
        print(f"load average after: {os.getloadavg()}")
        for encoding in ("float32", "bfloat16"):
            builtin = statistics.median(rates[encoding, False])
            kernel = statistics.median(rates[encoding, True])
            gigabytes = weight_bytes(model_dir, encoding) / 1e9
            print(
                f"{args.layers} layers {encoding}: decode {builtin:.2f} -> {kernel:.2f} tokens/s "
                f"({kernel / builtin:.2f}x; {gigabytes:.2f} GB of weights: "
                f"{builtin * gigabytes:.1f} -> {kernel * gigabytes:.1f} GB/s); "
                f"rounds built-in {[round(r, 2) for r in rates[encoding, False]]}, "
                f"kernel {[round(r, 2) for r in rates[encoding, True]]}"
            )


if __name__ == "__main__":
    main()
