"""Memory read bandwidth of this machine, measured in the same run as the numbers it bounds.

A decode step must read every weight once, so weight bytes / read bandwidth is the fastest a
step can be. The bound is the best of three plain streaming reads of buffers far larger than
the last-level cache, each on all cores: OpenBLAS's matrix-vector product (NumPy's `A @ x`)
and an integer OR-reduction with one slice per thread (NumPy releases the GIL inside it). Two
buffers are read in turn so that no read finds its data in cache. Run it in a process where MAX
has not executed anything (`measure_in_fresh_process`): once MAX's worker threads exist, other
code in the process reads memory about a fifth slower, which would understate the bound.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np

ROW = 4096  # float32 elements per row of each buffer
BUFFER_BYTES = 1 << 30
BUFFERS = 2


def measure_read_bandwidth(
    repeats: int = 5, threads: int | None = None, buffer_bytes: int = BUFFER_BYTES
) -> dict[str, float]:
    """GB/s of each method (median of `repeats`) and "best", the bound the benchmarks use."""
    threads = threads or os.cpu_count() or 1
    rows = buffer_bytes // (ROW * 4)
    buffers = [np.full((rows, ROW), 1.0 + i, dtype=np.float32) for i in range(BUFFERS)]
    ones = np.ones(ROW, dtype=np.float32)
    with ThreadPoolExecutor(threads) as pool:

        def or_reduce(buffer: np.ndarray) -> None:
            slices = np.array_split(buffer.view(np.uint64), threads)
            list(pool.map(lambda part: np.bitwise_or.reduce(part, axis=None), slices))

        methods = {
            "openblas_gemv": lambda buffer: buffer @ ones,
            "numpy_or_reduce": or_reduce,
        }
        speeds: dict[str, list[float]] = {name: [] for name in methods}
        for repeat in range(repeats + 1):
            for name, read in methods.items():
                buffer = buffers[repeat % BUFFERS]
                started = time.perf_counter()
                read(buffer)
                if repeat:  # the first round warms up
                    speeds[name].append(buffer.nbytes / (time.perf_counter() - started) / 1e9)
    result = {name: statistics.median(values) for name, values in speeds.items()}
    result["best"] = max(result.values())
    return result


def measure_in_fresh_process(**kwargs: int) -> dict[str, float]:
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(measure_read_bandwidth, **kwargs).result()


if __name__ == "__main__":
    print(measure_read_bandwidth())
