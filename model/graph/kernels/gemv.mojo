"""`replit_gemv`: y[M, N] = x[M, K] @ W[N, K].T for the few-row products of decode.

Why it exists: on CPU, MAX's built-in matmul reads W far below memory bandwidth when x has a
single row (worst with bfloat16 weights), and a decode step is nothing but such products. This
kernel streams each weight row once, converts bfloat16 to float32 in registers, accumulates in
float32, and splits the rows of W across the CPU's cores. Several rows of x are allowed (each
block of W rows is reused for every row of x while it is in cache), but the graph only sends
one: the built-in matmul is faster for prefill.
"""

import extensibility
from extensibility import InputTensor, OutputTensor
from max.gpu.host import DeviceContext
from std.sys.info import num_physical_cores, simd_width_of, size_of
from std.sys.intrinsics import PrefetchOptions, prefetch

from .parallel import parallel_chunks

# float32 lanes per vector (16 with AVX-512): one x load serves ROWS weight rows.
comptime WIDTH = simd_width_of[DType.float32]()
# Weight rows computed together: independent FMA chains, and fewer reloads of x.
comptime ROWS = 4
# Rows are claimed by the cores in chunks of about this many weight bytes: 1-4 MiB ran
# fastest, smaller chunks restart the hardware prefetcher more often.
comptime CHUNK_BYTES = 2 << 20
comptime CHUNKS_PER_CORE = 4
# How far ahead of the loads each weight row is prefetched: the hardware prefetcher alone
# leaves bfloat16 rows about a tenth below the rate this reaches.
comptime PREFETCH_BYTES = 2048
# Weights smaller than this are read by the calling thread alone: waking the other cores
# costs more than it saves (the small model's matrices run about 1.2-1.6x faster so).
comptime SERIAL_BYTES = 4 << 20


@always_inline
def _dot_rows[
    rows: Int, wtype: DType
](
    x: Pointer[Scalar[DType.float32], ImmutAnyOrigin],
    w: Pointer[Scalar[wtype], ImmutAnyOrigin],
    k: Int,
    y: Pointer[Scalar[DType.float32], MutAnyOrigin],
):
    """Writes y[r] = dot(x[:k], w[r * k : (r + 1) * k]) for r < rows (rows known at compile time).
    """
    comptime ahead = PREFETCH_BYTES // size_of[wtype]()
    var acc = Array[SIMD[DType.float32, WIDTH], rows](fill=0)
    var vector_end = k - k % WIDTH
    for i in range(0, vector_end, WIDTH):
        var xv = x.unsafe_load[width=WIDTH](i)
        comptime for r in range(rows):
            prefetch[PrefetchOptions().for_read().high_locality()](
                w.unsafe_offset(r * k + i + ahead)
            )
            var wv = w.unsafe_load[width=WIDTH](r * k + i).cast[DType.float32]()
            acc[r] = wv.fma(xv, acc[r])
    comptime for r in range(rows):
        var total = acc[r].reduce_add()
        for i in range(vector_end, k):
            total += w.unsafe_load(r * k + i).cast[DType.float32]() * x.unsafe_load(i)
        y.unsafe_store(r, total)


def gemv_rows[
    wtype: DType
](
    x_ptr: Pointer[Scalar[DType.float32], ImmutAnyOrigin],
    w_ptr: Pointer[Scalar[wtype], ImmutAnyOrigin],
    y_ptr: Pointer[Scalar[DType.float32], MutAnyOrigin],
    m: Int,
    n: Int,
    k: Int,
    first: Int,
    last: Int,
):
    """Writes columns [first, last) of y[m, n] = x[m, k] @ w[n, k].T in the calling thread."""
    var row = first
    while row + ROWS <= last:
        for i in range(m):
            _dot_rows[ROWS, wtype](
                x_ptr.unsafe_offset(i * k),
                w_ptr.unsafe_offset(row * k),
                k,
                y_ptr.unsafe_offset(i * n + row),
            )
        row += ROWS
    while row < last:
        for i in range(m):
            _dot_rows[1, wtype](
                x_ptr.unsafe_offset(i * k),
                w_ptr.unsafe_offset(row * k),
                k,
                y_ptr.unsafe_offset(i * n + row),
            )
        row += 1


def gemv_chunk(n: Int, row_bytes: Int, cores: Int) -> Int:
    """Rows a core claims at a time: about CHUNK_BYTES, and a few chunks a core at least."""
    var rows = min(CHUNK_BYTES // row_bytes, n // (CHUNKS_PER_CORE * cores))
    return max(1, rows // ROWS) * ROWS


def gemv[
    wtype: DType
](
    x_ptr: Pointer[Scalar[DType.float32], ImmutAnyOrigin],
    w_ptr: Pointer[Scalar[wtype], ImmutAnyOrigin],
    y_ptr: Pointer[Scalar[DType.float32], MutAnyOrigin],
    m: Int,
    n: Int,
    k: Int,
):
    """Writes y[m, n] = x[m, k] @ w[n, k].T, on every core when w is large."""

    def rows(first: Int, last: Int) {imm}:
        gemv_rows[wtype](x_ptr, w_ptr, y_ptr, m, n, k, first, last)

    var row_bytes = k * size_of[wtype]()
    if n * row_bytes <= SERIAL_BYTES:
        rows(0, n)
    else:
        parallel_chunks(rows, n, gemv_chunk(n, row_bytes, num_physical_cores()))


@extensibility.register("replit_gemv")
struct ReplitGemv:
    """Computes y = x @ W.T with x, y float32 and W float32 or bfloat16, all row-major and contiguous."""

    @staticmethod
    def execute[
        target: StaticString
    ](
        y: OutputTensor[dtype=DType.float32, rank=2, ...],
        x: InputTensor[dtype=DType.float32, rank=2, ...],
        w: InputTensor[rank=2, ...],
        ctx: DeviceContext,
    ) raises:
        comptime if target != "cpu":
            raise Error("replit_gemv runs on the CPU only")
        var m = x.dim_size(0)
        var k = x.dim_size(1)
        var n = w.dim_size(0)
        if w.dim_size(1) != k or y.dim_size(0) != m or y.dim_size(1) != n:
            raise Error("replit_gemv: shapes do not match x[M, K] @ W[N, K].T = y[M, N]")
        gemv[w.dtype](x.unsafe_ptr(), w.unsafe_ptr(), y.unsafe_ptr(), m, n, k)
