"""Decode's one-row products, y = x @ W.T: MAX's built-in matmul against the `replit_gemv` kernel.

Every weight shape of the real model (K=3072 with N = 3072, 5120, 12288, 32768, and K=12288
with N=3072), float32 and bfloat16 weights, float32 x. Each graph multiplies x by several
copies of W, as many as it takes to read well over the 32 MB last-level cache, so neither side
is flattered by weights left in cache; the weights are graph constants, as in the model. The
two sides run alternately and the medians are printed as GB/s of weights read, with the error
of each against NumPy. Usage: `python -m bench.gemv [--repeats 9] [--shapes 3072x3072 ...]`.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time

import numpy as np
from max.driver import CPU, Buffer
from max.dtype import DType
from max.engine import InferenceSession
from max.graph import DeviceRef, Graph, Module, TensorType, Weight, ops

from model.graph.kernel_ops import KERNELS_DIR, gemv
from model.weights.encodings import bfloat16_bits_to_float32, float32_to_bfloat16_bits

SHAPES = ((3072, 3072), (5120, 3072), (12288, 3072), (32768, 3072), (3072, 12288))  # (N, K)
DTYPES = (DType.float32, DType.bfloat16)
ROTATION_BYTES = 160 * 2**20  # weights read per execute: five times the last-level cache


def copies_for(n: int, k: int, dtype: DType) -> int:
    return max(2, math.ceil(ROTATION_BYTES / (n * k * dtype.size_in_bytes)))


def graph_name(side: str, dtype: DType, n: int, k: int) -> str:
    return f"{side}_{dtype.name}_{n}x{k}"


def weight_name(dtype: DType, n: int, k: int, copy: int) -> str:
    return f"w_{dtype.name}_{n}x{k}_{copy}"


def add_graph(module: Module, side: str, dtype: DType, n: int, k: int) -> None:
    """x[1, K] times every copy of W, by the built-in matmul (as the model's `linear`) or gemv."""
    cpu = DeviceRef.CPU()
    with Graph(
        graph_name(side, dtype, n, k),
        input_types=[TensorType(DType.float32, [1, k], cpu)],
        custom_extensions=[KERNELS_DIR] if side == "kernel" else [],
        module=module,
    ) as graph:
        x = graph.inputs[0].tensor
        outputs = []
        for copy in range(copies_for(n, k, dtype)):
            w = Weight(weight_name(dtype, n, k, copy), dtype, [n, k], cpu)
            if side == "kernel":
                outputs.append(gemv(x, w))
            elif dtype == DType.float32:
                outputs.append(x @ w.T)
            else:
                outputs.append(ops.cast(ops.cast(x, dtype) @ w.T, DType.float32))
        graph.output(*outputs)


def make_weights(shapes: list[tuple[int, int]]) -> tuple[dict, dict]:
    """The registry MAX binds (bfloat16 as raw bits) and the float32 values NumPy checks with."""
    rng = np.random.default_rng(0)
    registry, exact = {}, {}
    for n, k in shapes:
        for dtype in DTYPES:
            for copy in range(copies_for(n, k, dtype)):
                w = rng.standard_normal((n, k), dtype=np.float32) * 0.02
                name = weight_name(dtype, n, k, copy)
                if dtype == DType.bfloat16:
                    bits = float32_to_bfloat16_bits(w)
                    registry[name] = Buffer.from_numpy(bits).view(DType.bfloat16)
                    exact[name] = bfloat16_bits_to_float32(bits)
                else:
                    registry[name] = exact[name] = w
    return registry, exact


def compile_kernel_module(module: Module, registry: dict) -> dict:
    """The module's graphs compiled with the project's kernels and bound to `registry`."""
    session = InferenceSession(devices=[CPU()])
    started = time.perf_counter()
    models = session.init_all(
        session.compile(module, custom_extensions=[KERNELS_DIR]), weights_registry=registry
    )
    print(f"compiled {len(models)} graphs in {time.perf_counter() - started:.0f}s")
    return models


def parse_arguments() -> tuple[int, list[tuple[int, int]]]:
    """`--repeats` and the `--shapes` NxK of W, for the one-row product benchmarks."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--shapes", nargs="*", default=[f"{n}x{k}" for n, k in SHAPES])
    args = parser.parse_args()
    return args.repeats, [tuple(int(v) for v in s.split("x")) for s in args.shapes]


def main() -> None:
    repeats, shapes = parse_arguments()

    module = Module()
    for n, k in shapes:
        for dtype in DTYPES:
            for side in ("builtin", "kernel"):
                add_graph(module, side, dtype, n, k)
    registry, exact = make_weights(shapes)
    models = compile_kernel_module(module, registry)

    rng = np.random.default_rng(1)
    print(f"load average before: {os.getloadavg()}")
    print(
        f"{'shape NxK':>12} {'dtype':>8} {'copies':>6} {'built-in GB/s':>14} "
        f"{'kernel GB/s':>12} {'ratio':>6} {'err built-in':>13} {'err kernel':>11}"
    )
    for n, k in shapes:
        for dtype in DTYPES:
            copies = copies_for(n, k, dtype)
            gigabytes = copies * n * k * dtype.size_in_bytes / 1e9
            x = rng.standard_normal((1, k), dtype=np.float32)
            errors, speeds = {}, {"builtin": [], "kernel": []}
            for side in speeds:
                model = models[graph_name(side, dtype, n, k)]
                outputs = model.execute(x)  # warm-up, and the correctness check
                worst = 0.0
                for copy, y in enumerate(outputs):
                    expected = x @ exact[weight_name(dtype, n, k, copy)].T
                    error = np.abs(y.to_numpy() - expected).max() / np.abs(expected).max()
                    worst = max(worst, float(error))
                errors[side] = worst
            for _ in range(repeats):
                for side in speeds:  # alternate, so that load from elsewhere hits both
                    model = models[graph_name(side, dtype, n, k)]
                    start = time.perf_counter()
                    model.execute(x)
                    speeds[side].append(gigabytes / (time.perf_counter() - start))
            builtin, kernel = (statistics.median(speeds[s]) for s in ("builtin", "kernel"))
            print(
                f"{n:>6}x{k:<5} {dtype.name:>8} {copies:>6} {builtin:>14.1f} {kernel:>12.1f} "
                f"{kernel / builtin:>6.2f} {errors['builtin']:>13.1e} {errors['kernel']:>11.1e}"
            )
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
