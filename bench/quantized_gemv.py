"""Decode's one-row products on block-quantized weights: GB/s of blocks read, against the bound.

The real model's weight shapes, each in Q8_0 and Q4_0 (by `replit_qgemv`) and in bfloat16 (by
the kernel the engine's bfloat16 decode uses), each graph multiplying x by enough copies of W
to read well past the last-level cache. The kinds run alternately, the medians are printed as
GB/s of the bytes each reads and as a fraction of this machine's read bandwidth (measured first,
in a fresh process), with the error of each against NumPy on the dequantized weights. Usage:
`python -m bench.quantized_gemv [--repeats 9] [--shapes 12288x3072 ...]`.
"""

from __future__ import annotations

import math
import os
import statistics
import time

import numpy as np
from gguf.quants import quantize
from max.driver import Buffer
from max.dtype import DType
from max.graph import DeviceRef, Graph, Module, TensorType, Weight

from bench.bandwidth import measure_in_fresh_process
from bench.gemv import ROTATION_BYTES, compile_kernel_module, parse_arguments
from model.graph.block_layout import group_rows, grouped_shape
from model.graph.kernel_ops import KERNELS_DIR, gemv, matmul, quantized_gemv
from model.graph.options import DEFAULT_GRAPH
from model.weights.encodings import GGML_TYPES, bfloat16_bits_to_float32, float32_to_bfloat16_bits
from model.weights.tensors import BLOCK_FORMATS, block_tensor_shape
from testkit.reference import dequantize_blocks

KINDS = ("bfloat16", *BLOCK_FORMATS)


def stored_bytes(kind: str, n: int, k: int) -> int:
    if kind == "bfloat16":
        return n * k * 2
    return math.prod(block_tensor_shape((n, k), BLOCK_FORMATS[kind]))


def copies_for(kind: str, n: int, k: int) -> int:
    return max(2, math.ceil(ROTATION_BYTES / stored_bytes(kind, n, k)))


def add_graph(module: Module, kind: str, n: int, k: int) -> None:
    cpu = DeviceRef.CPU()
    with Graph(
        f"{kind}_{n}x{k}",
        input_types=[TensorType(DType.float32, [1, k], cpu)],
        custom_extensions=[KERNELS_DIR],
        module=module,
    ) as graph:
        x = graph.inputs[0].tensor
        outputs = []
        for copy in range(copies_for(kind, n, k)):
            name = f"w_{kind}_{n}x{k}_{copy}"
            if kind == "bfloat16":
                w = Weight(name, DType.bfloat16, [n, k], cpu)
                outputs.append(matmul(x, w) if DEFAULT_GRAPH.bfloat16_dot else gemv(x, w))
            else:
                fmt = BLOCK_FORMATS[kind]
                shape = grouped_shape(block_tensor_shape((n, k), fmt))
                w = Weight(name, DType.uint8, shape, cpu)
                outputs.append(quantized_gemv(x, w, fmt.bits))
        graph.output(*outputs)


def make_weights(kind: str, n: int, k: int, rng: np.random.Generator) -> tuple[dict, dict]:
    """The registry MAX binds and the float32 values NumPy checks with."""
    registry, exact = {}, {}
    for copy in range(copies_for(kind, n, k)):
        w = rng.standard_normal((n, k), dtype=np.float32) * 0.02
        name = f"w_{kind}_{n}x{k}_{copy}"
        if kind == "bfloat16":
            bits = float32_to_bfloat16_bits(w)
            registry[name] = Buffer.from_numpy(bits).view(DType.bfloat16)
            exact[name] = bfloat16_bits_to_float32(bits)
        else:
            blocks = quantize(w, GGML_TYPES[kind])
            registry[name] = group_rows(blocks, BLOCK_FORMATS[kind])
            exact[name] = dequantize_blocks(blocks, kind)
    return registry, exact


def main() -> None:
    repeats, shapes = parse_arguments()
    bound = measure_in_fresh_process()["best"]
    print(f"read bandwidth bound: {bound:.1f} GB/s")

    module = Module()
    registry, exact = {}, {}
    rng = np.random.default_rng(0)
    for n, k in shapes:
        for kind in KINDS:
            add_graph(module, kind, n, k)
            weights, values = make_weights(kind, n, k, rng)
            registry |= weights
            exact |= values
    models = compile_kernel_module(module, registry)

    print(f"load average before: {os.getloadavg()}")
    print(f"{'shape NxK':>12} {'kind':>9} {'copies':>6} {'GB/s':>6} {'of bound':>8} {'error':>8}")
    for n, k in shapes:
        x = rng.standard_normal((1, k), dtype=np.float32)
        speeds: dict[str, list[float]] = {kind: [] for kind in KINDS}
        errors = {}
        for kind in KINDS:
            outputs = models[f"{kind}_{n}x{k}"].execute(x)
            worst = 0.0
            for copy, y in enumerate(outputs):
                expected = x @ exact[f"w_{kind}_{n}x{k}_{copy}"].T
                error = np.abs(y.to_numpy()[:, :n] - expected).max() / np.abs(expected).max()
                worst = max(worst, float(error))
            errors[kind] = worst
        for _ in range(repeats):
            for kind in KINDS:  # alternate, so that load from elsewhere hits every kind
                start = time.perf_counter()
                models[f"{kind}_{n}x{k}"].execute(x)
                gigabytes = copies_for(kind, n, k) * stored_bytes(kind, n, k) / 1e9
                speeds[kind].append(gigabytes / (time.perf_counter() - start))
        for kind in KINDS:
            rate = statistics.median(speeds[kind])
            print(
                f"{n:>6}x{k:<5} {kind:>9} {copies_for(kind, n, k):>6} {rate:>6.1f} "
                f"{rate / bound:>8.0%} {errors[kind]:>8.1e}"
            )
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
