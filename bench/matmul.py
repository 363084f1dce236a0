"""Prefill's many-row products, y = x @ W.T: the `replit_matmul` kernel against MAX's built-in.

The 3B model's four weight shapes at M = 128 and 512 rows of x (float32), with the weights as
graph constants, as in the model. Sides, each its own graph:

- `f32`: MAX's float32 matmul on float32 weights: today's CPU prefill with bfloat16 weights,
  whose `ops.cast(w, float32)` MAX folds at load into a float32 copy of every weight;
- `bf16`: MAX's bfloat16 matmul, `cast(cast(x, bfloat16) @ w.T, float32)`;
- `kernel`: `replit_matmul` on the bfloat16 weights;
- `kernel_wide`: `replit_matmul` on the bfloat16 weights by its path for CPUs without
  AVX-512 BF16 (pairs widened to float32 in registers);
- `kernel_f32`: `replit_matmul` on the float32 weights;
- `q8_0`, `q4_0`: `replit_qmatmul` on the same weights in llama.cpp's blocks (checked against
  the blocks dequantized).

The sides run alternately and the medians are printed as GFLOP/s (2 * M * N * K per product),
with the kernel's ratio to `f32` and `bf16`, and each side's largest error against NumPy in
float64, relative to the largest output. Usage: `python -m bench.matmul [--repeats 7]
[--rows 128 512] [--shapes 5120x3072 ...]`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
from gguf.quants import quantize
from max.driver import Buffer
from max.dtype import DType
from max.graph import DeviceRef, Graph, Module, TensorType, Weight, ops

from bench.gemv import compile_kernel_module
from model.graph.block_layout import group_rows, grouped_shape
from model.graph.kernel_ops import KERNELS_DIR, matmul, quantized_matmul
from model.graph.options import cpu_has_bf16_dot
from model.weights.encodings import GGML_TYPES, bfloat16_bits_to_float32, float32_to_bfloat16_bits
from model.weights.tensors import BLOCK_FORMATS, block_tensor_shape
from testkit.reference import dequantize_blocks

# (N, K): Wqkv, out_proj, up_proj, down_proj of the 3B model.
SHAPES = ((5120, 3072), (3072, 3072), (12288, 3072), (3072, 12288))
SIDES = ("f32", "bf16", "kernel", "kernel_wide", "kernel_f32", *BLOCK_FORMATS)
WEIGHT_DTYPES = {"bf16": DType.bfloat16, "kernel": DType.bfloat16, "kernel_wide": DType.bfloat16}


def weight_dtype(side: str) -> DType:
    return WEIGHT_DTYPES.get(side, DType.float32)


def graph_name(side: str, n: int, k: int) -> str:
    return f"{side}_{n}x{k}"


def weight_name(kind: str, n: int, k: int) -> str:
    """A weight's name by what it holds: a dtype's name, or a block format's."""
    return f"w_{kind}_{n}x{k}"


def add_graph(module: Module, side: str, n: int, k: int) -> None:
    """x[M, K] @ W.T for any M, by one side."""
    cpu = DeviceRef.CPU()
    dtype = weight_dtype(side)
    with Graph(
        graph_name(side, n, k),
        input_types=[TensorType(DType.float32, ["m", k], cpu)],
        custom_extensions=[] if side in ("f32", "bf16") else [KERNELS_DIR],
        module=module,
    ) as graph:
        x = graph.inputs[0].tensor
        if side in BLOCK_FORMATS:
            shape = grouped_shape(block_tensor_shape((n, k), BLOCK_FORMATS[side]))
            blocks = Weight(weight_name(side, n, k), DType.uint8, shape, cpu)
            graph.output(quantized_matmul(x, blocks, BLOCK_FORMATS[side].bits))
            return
        w = Weight(weight_name(dtype.name, n, k), dtype, [n, k], cpu)
        if side.startswith("kernel"):
            y = matmul(x, w, native=False if side == "kernel_wide" else None)
        elif side == "f32":
            y = x @ w.T
        else:
            y = ops.cast(ops.cast(x, DType.bfloat16) @ w.T, DType.float32)
        graph.output(y)


def make_weights(shapes: list[tuple[int, int]], blocks: list[str]) -> tuple[dict, dict]:
    """The registry MAX binds (bfloat16 as raw bits) and the float32 values NumPy checks with,
    by (N, K), and by (kind, N, K) for the `blocks` kinds.

    The float32 weights hold the bfloat16 values widened, as the widened path's do, and the
    blocks are those values quantized.
    """
    rng = np.random.default_rng(0)
    registry, exact = {}, {}
    for n, k in shapes:
        bits = float32_to_bfloat16_bits(rng.standard_normal((n, k), dtype=np.float32) * 0.02)
        widened = bfloat16_bits_to_float32(bits)
        bfloat16 = Buffer.from_numpy(bits).view(DType.bfloat16)
        registry[weight_name(DType.bfloat16.name, n, k)] = bfloat16
        registry[weight_name(DType.float32.name, n, k)] = widened
        exact[(n, k)] = widened
        for kind in blocks:
            quantized = quantize(widened, GGML_TYPES[kind])
            registry[weight_name(kind, n, k)] = group_rows(quantized, BLOCK_FORMATS[kind])
            exact[(kind, n, k)] = dequantize_blocks(quantized, kind)
    return registry, exact


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--rows", type=int, nargs="*", default=[128, 512])
    parser.add_argument("--shapes", nargs="*", default=[f"{n}x{k}" for n, k in SHAPES])
    parser.add_argument("--sides", nargs="*", default=list(SIDES), choices=SIDES)
    args = parser.parse_args()
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes]
    sides = args.sides

    module = Module()
    for n, k in shapes:
        for side in sides:
            add_graph(module, side, n, k)
    registry, exact = make_weights(shapes, [s for s in sides if s in BLOCK_FORMATS])
    models = compile_kernel_module(module, registry)
    print(f"AVX-512 BF16: {cpu_has_bf16_dot()}; load average before: {os.getloadavg()}")
    header = f"{'M':>4} {'N x K':>11}" + "".join(f" {s + ' GFLOP/s':>18}" for s in sides)
    ratios = [s for s in ("f32", "bf16") if s in sides and "kernel" in sides]
    header += "".join(f" {'kernel/' + s:>12}" for s in ratios)
    print(header + "  max rel. error per side")

    rng = np.random.default_rng(1)
    for m in args.rows:
        for n, k in shapes:
            x = rng.standard_normal((m, k), dtype=np.float32)
            x_buffer = Buffer.from_numpy(x)
            errors, speeds = {}, {side: [] for side in sides}
            for side in sides:
                weights = exact.get((side, n, k), exact[(n, k)]).astype(np.float64)
                expected = x.astype(np.float64) @ weights.T
                y = models[graph_name(side, n, k)].execute(x_buffer)[0].to_numpy()
                errors[side] = float(np.abs(y - expected).max() / np.abs(expected).max())
            flop = 2 * m * n * k
            for _ in range(args.repeats):
                for side in sides:  # alternate, so that load from elsewhere hits every side
                    model = models[graph_name(side, n, k)]
                    start = time.perf_counter()
                    model.execute(x_buffer)
                    speeds[side].append(flop / (time.perf_counter() - start) / 1e9)
            medians = {side: statistics.median(speeds[side]) for side in sides}
            line = f"{m:>4} {n:>5}x{k:<5}" + "".join(f" {medians[s]:>18.1f}" for s in sides)
            line += "".join(f" {medians['kernel'] / medians[s]:>12.2f}" for s in ratios)
            print(line + "  " + " ".join(f"{errors[s]:.0e}" for s in sides))
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
