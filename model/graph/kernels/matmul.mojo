"""`replit_matmul`: y[M, N] = x[M, K] @ W[N, K].T for the many-row products of prefill.

Why it exists: with bfloat16 weights on the CPU, MAX's built-in bfloat16 matmul runs below its
float32 rate, so prefill used to widen the weights to float32, and MAX folds that cast at load:
the process then held a float32 copy of every weight, three times the bfloat16 model. This
kernel reads the weights where they lie (row-major [N, K], as `replit_gemv` does), at about
twice the float32 rate where the CPU has AVX-512 BF16.

How: x is first copied into `scratch` in W's dtype (rounded to bfloat16 to nearest, ties to
even), with rows a little longer than K: rows of W and x 4 KiB apart (K = 12288) would all
fall in the same L1 sets. Then each tile of MR rows of x and NR rows of W keeps MR * NR float32
vectors of partial dot products: each step over one vector of k loads MR + NR vectors and does
MR * NR vector products (with bfloat16, `vdpbf16ps` where the target has AVX-512 BF16: 32
multiply-adds in one instruction, twice a float32 FMA's), and each vector is summed once its
slice of k is done. Products of two bfloat16 values are exact in float32 and summed in
float32, on either path; without the instruction each pair is widened in registers (shifts
and masks) and multiplied by two FMAs.

Blocking: the cores claim blocks of NC rows of W; within a block, for each slice of k (about
KC_BYTES of a row), every MR rows of x (24 KB, kept in L1) meet every NR rows of the block
(which stays in L2 while x passes over it), so W is read from memory once per call. While a
row of tiles runs, its tiles prefetch the next tiles' rows of x, which come from L3 in MR
strided streams otherwise (M = 512, K = 12288: 333 -> 357 GFLOP/s). Measured at M = 128 and
512 on the 3B model's four shapes, the bfloat16 tiles run at 83-97% of the peak rate of
`vdpbf16ps` on these cores (an idle loop's, measured alongside).
"""

import extensibility
from extensibility import InputTensor, OutputTensor
from max.gpu.host import DeviceContext
from std.math import ceildiv
from std.memory import bitcast
from std.sys.info import CompilationTarget, simd_width_of, size_of
from std.sys.intrinsics import PrefetchOptions, llvm_intrinsic, prefetch

from .parallel import MAX_PHASES, parallel_phases

comptime WIDTH = simd_width_of[DType.float32]()
# Whether the target has the bfloat16 pair dot product `vdpbf16ps` (AVX-512 BF16).
comptime NATIVE_DOT = CompilationTarget._has_feature["avx512bf16"]() and WIDTH == 16
# What `scratch` adds to each row of x: one 64-byte line or more, so that rows are not a
# multiple of 4 KiB apart (the graph sizes `scratch` [M, K + ROW_PAD]).
comptime ROW_PAD = 32
# Bytes of a row of x and W per slice of k: MR rows of x (24 KB) stay in L1 across a block of
# W. 3072 bfloat16 values ran faster than 2048 (fewer partial sums to add up) and level with
# 4096; 2048 ran about 5% slower.
comptime KC_BYTES = 6144
# Rows of W a core claims at a time: NC rows of a slice (288 KB) stay in L2 while every row of
# x passes. A multiple of every NR, so that only the last block has a ragged end; 96 ran level.
comptime NC = 48
# Rows of x copied into `scratch` per claimed chunk of the first phase.
comptime COPY_ROWS = 32

comptime F32Ptr = Pointer[Scalar[DType.float32], MutAnyOrigin]


def tile_rows[dtype: DType, native: Bool]() -> Int:
    """MR: rows of x per tile."""
    return 4 if WIDTH == 16 else 2


def tile_cols[dtype: DType, native: Bool]() -> Int:
    """NR: rows of W per tile. MR * NR accumulators, MR vectors of x and one of W fit the 32
    vector registers of AVX-512 (the widened bfloat16 path needs two per loaded vector: 4 x 4);
    16 registers (AVX2) take 2 x 3 and 2 x 2. 4 x 6 ran level with 5 x 5.
    """
    comptime if WIDTH != 16:
        return 3 if dtype == DType.float32 else 2
    return 4 if dtype == DType.bfloat16 and not (native and NATIVE_DOT) else 6


def step_of[dtype: DType]() -> Int:
    """Values of k per vector step: 16 float32, or 16 pairs of bfloat16."""
    return 2 * WIDTH if dtype == DType.bfloat16 else WIDTH


@always_inline
def _widen(v: SIMD[DType.bfloat16, 2 * WIDTH]) -> Tuple[
    SIMD[DType.float32, WIDTH], SIMD[DType.float32, WIDTH]
]:
    """The first and second values of v's pairs, widened to float32 (exactly)."""
    var bits = bitcast[DType.uint32, WIDTH](v)
    var first = bitcast[DType.float32, WIDTH](bits << 16)
    var second = bitcast[DType.float32, WIDTH](bits & 0xFFFF0000)
    return (first, second)


@always_inline
def _tile[
    dtype: DType, native: Bool, mr: Int, nr: Int, prefetch_x: Bool
](
    x: Pointer[Scalar[dtype], ImmutAnyOrigin],
    ldx: Int,
    w: Pointer[Scalar[dtype], ImmutAnyOrigin],
    ldw: Int,
    kc: Int,
    y: F32Ptr,
    ldy: Int,
    accumulate: Bool,
    ahead: Pointer[Scalar[dtype], ImmutAnyOrigin],
):
    """y[r, c] (+)= dot(x[r, :kc], w[c, :kc]) for r < mr, c < nr; rows ldx, ldw, ldy apart.

    Each step also prefetches the line at `ahead` + k, a row of the next tile's x.
    """
    comptime step = step_of[dtype]()
    comptime Vector = SIMD[DType.float32, WIDTH]
    comptime Pairs = SIMD[DType.bfloat16, 2 * WIDTH]
    var acc = Array[Vector, mr * nr](fill=0)
    var main = kc - kc % step
    for k in range(0, main, step):
        comptime if prefetch_x:
            prefetch[PrefetchOptions().for_read().high_locality()](ahead.unsafe_offset(k))
        comptime if dtype == DType.float32:
            var xv = Array[Vector, mr](fill=0)
            comptime for r in range(mr):
                xv[r] = x.unsafe_load[width=WIDTH](r * ldx + k).cast[DType.float32]()
            comptime for c in range(nr):
                var wv = w.unsafe_load[width=WIDTH](c * ldw + k).cast[DType.float32]()
                comptime for r in range(mr):
                    acc[r * nr + c] = xv[r].fma(wv, acc[r * nr + c])
        elif native and NATIVE_DOT:
            var xv = Array[Pairs, mr](fill=0)
            comptime for r in range(mr):
                xv[r] = rebind[Pairs](x.unsafe_load[width=step](r * ldx + k))
            comptime for c in range(nr):
                var wv = rebind[Pairs](w.unsafe_load[width=step](c * ldw + k))
                comptime for r in range(mr):
                    acc[r * nr + c] = llvm_intrinsic[
                        "llvm.x86.avx512bf16.dpbf16ps.512", Vector
                    ](acc[r * nr + c], xv[r], wv)
        else:
            var x_first = Array[Vector, mr](fill=0)
            var x_second = Array[Vector, mr](fill=0)
            comptime for r in range(mr):
                var halves = _widen(rebind[Pairs](x.unsafe_load[width=step](r * ldx + k)))
                x_first[r] = halves[0]
                x_second[r] = halves[1]
            comptime for c in range(nr):
                var halves = _widen(rebind[Pairs](w.unsafe_load[width=step](c * ldw + k)))
                comptime for r in range(mr):
                    var a = x_first[r].fma(halves[0], acc[r * nr + c])
                    acc[r * nr + c] = x_second[r].fma(halves[1], a)
    comptime for r in range(mr):
        comptime for c in range(nr):
            var total = acc[r * nr + c].reduce_add()
            for k in range(main, kc):
                var xk = x.unsafe_load(r * ldx + k).cast[DType.float32]()
                total += xk * w.unsafe_load(c * ldw + k).cast[DType.float32]()
            if accumulate:
                total += y.unsafe_load(r * ldy + c)
            y.unsafe_store(r * ldy + c, total)


@always_inline
def _row_block[
    dtype: DType, native: Bool, mr: Int, nr: Int, prefetch_x: Bool
](
    x: Pointer[Scalar[dtype], ImmutAnyOrigin],
    ldx: Int,
    w: Pointer[Scalar[dtype], ImmutAnyOrigin],
    y: F32Ptr,
    n: Int,
    k: Int,
    kc: Int,
    first: Int,
    last: Int,
    accumulate: Bool,
    next_x: Pointer[Scalar[dtype], ImmutAnyOrigin],
):
    """Rows [first, last) of W times mr rows of x over one slice of k (x and w at its start).

    The tiles prefetch the rows of x at `next_x` (the next tiles' x), one row each: x rows of
    the next slice or the next block of rows come from L3 otherwise, in as many streams.
    """
    var j = first
    var row = 0
    while j + nr <= last:
        _tile[dtype, native, mr, nr, prefetch_x](
            x,
            ldx,
            w.unsafe_offset(j * k),
            k,
            kc,
            y.unsafe_offset(j),
            n,
            accumulate,
            next_x.unsafe_offset(row * ldx),
        )
        j += nr
        row = min(row + 1, mr - 1)
    while j < last:
        _tile[dtype, native, mr, 1, prefetch_x](
            x,
            ldx,
            w.unsafe_offset(j * k),
            k,
            kc,
            y.unsafe_offset(j),
            n,
            accumulate,
            next_x.unsafe_offset(row * ldx),
        )
        j += 1
        row = min(row + 1, mr - 1)


def k_slice[dtype: DType](k: Int, kc_bytes: Int) -> Int:
    """The length of k's slices: about equal, whole vector steps, at most about kc_bytes."""
    comptime step = step_of[dtype]()
    var slices = ceildiv(k * size_of[dtype](), kc_bytes)
    return ceildiv(ceildiv(k, slices), step) * step


def matmul_columns[
    dtype: DType,
    native: Bool,
    mr: Int = tile_rows[dtype, native](),
    nr: Int = tile_cols[dtype, native](),
    kc_bytes: Int = KC_BYTES,
    prefetch_x: Bool = True,
](
    xs: Pointer[Scalar[dtype], ImmutAnyOrigin],
    ldx: Int,
    w: Pointer[Scalar[dtype], ImmutAnyOrigin],
    y: F32Ptr,
    m: Int,
    n: Int,
    k: Int,
    first: Int,
    last: Int,
):
    """Writes columns [first, last) of y[m, n] = xs[m, k] @ w[n, k].T (rows of xs ldx apart)."""
    var slice = k_slice[dtype](k, kc_bytes)
    for k0 in range(0, k, slice):
        var kc = min(slice, k - k0)
        var w_slice = w.unsafe_offset(k0)
        var i = 0
        while i < m:
            # The x the next tiles read: the next rows, else the next slice's (or the next
            # block's) first rows.
            var next_x = xs.unsafe_offset(i * ldx + k0 + mr * ldx)
            if i + mr >= m:
                next_x = xs.unsafe_offset(k0 + slice if k0 + slice < k else 0)
            var x_rows = xs.unsafe_offset(i * ldx + k0)
            var y_rows = y.unsafe_offset(i * n)
            if i + mr <= m:
                _row_block[dtype, native, mr, nr, prefetch_x](
                    x_rows, ldx, w_slice, y_rows, n, k, kc, first, last, k0 > 0, next_x
                )
            else:
                comptime for rows in range(1, mr):
                    if m - i == rows:
                        _row_block[dtype, native, rows, nr, prefetch_x](
                            x_rows, ldx, w_slice, y_rows, n, k, kc, first, last, k0 > 0, next_x
                        )
            i += mr


def copy_row[
    dtype: DType
](
    x: Pointer[Scalar[DType.float32], ImmutAnyOrigin],
    xs: Pointer[Scalar[dtype], MutAnyOrigin],
    count: Int,
):
    """xs[:count] = x[:count] in dtype (bfloat16: to nearest, ties to even)."""
    var vector_end = count - count % WIDTH
    for i in range(0, vector_end, WIDTH):
        xs.unsafe_store(i, x.unsafe_load[width=WIDTH](i).cast[dtype]())
    for i in range(vector_end, count):
        xs.unsafe_store(i, x.unsafe_load(i).cast[dtype]())


def matmul[
    dtype: DType,
    native: Bool = NATIVE_DOT,
    mr: Int = tile_rows[dtype, native](),
    nr: Int = tile_cols[dtype, native](),
    kc_bytes: Int = KC_BYTES,
    nc: Int = NC,
    prefetch_x: Bool = True,
](
    x: Pointer[Scalar[DType.float32], ImmutAnyOrigin],
    w: Pointer[Scalar[dtype], ImmutAnyOrigin],
    xs: Pointer[Scalar[dtype], MutAnyOrigin],
    ldx: Int,
    y: F32Ptr,
    m: Int,
    n: Int,
    k: Int,
):
    """y[m, n] = x[m, k] @ w[n, k].T on every core, through xs[m, ldx] (x in w's dtype).

    bfloat16 products use `vdpbf16ps` if `native` and the target has it, else widen.
    """
    comptime assert dtype == DType.float32 or dtype == DType.bfloat16, "float32 or bfloat16 W"
    comptime assert nc % nr == 0, "blocks of W must be whole tiles"

    def phase(step: Int, i: Int) {imm}:
        if step == 0:
            for row in range(i * COPY_ROWS, min((i + 1) * COPY_ROWS, m)):
                copy_row[dtype](x.unsafe_offset(row * k), xs.unsafe_offset(row * ldx), k)
        else:
            var first = i * nc
            matmul_columns[dtype, native, mr, nr, kc_bytes, prefetch_x](
                xs, ldx, w, y, m, n, k, first, min(first + nc, n)
            )

    var chunks = Array[Int, MAX_PHASES](fill=0)
    chunks[0] = ceildiv(m, COPY_ROWS)
    chunks[1] = ceildiv(n, nc)
    parallel_phases(phase, chunks)


@extensibility.register("replit_matmul")
struct ReplitMatmul:
    """Computes y = x @ W.T with x, y float32 and W float32 or bfloat16, all row-major and
    contiguous. `scratch` [M, K + ROW_PAD] in W's dtype holds x; the graph allocates it and
    never reads it. `native` False takes the widening path even where `vdpbf16ps` exists.
    """

    @staticmethod
    def execute[
        target: StaticString, native: Bool = NATIVE_DOT
    ](
        y: OutputTensor[dtype=DType.float32, rank=2, ...],
        scratch: OutputTensor[rank=2, ...],
        x: InputTensor[dtype=DType.float32, rank=2, ...],
        w: InputTensor[dtype=scratch.dtype, rank=2, ...],
        ctx: DeviceContext,
    ) raises:
        comptime if target != "cpu":
            raise Error("replit_matmul runs on the CPU only")
        var m = x.dim_size(0)
        var k = x.dim_size(1)
        var n = w.dim_size(0)
        if (
            w.dim_size(1) != k
            or y.dim_size(0) != m
            or y.dim_size(1) != n
            or scratch.dim_size(0) != m
            or scratch.dim_size(1) != k + ROW_PAD
        ):
            raise Error(
                "replit_matmul: shapes do not match x[M, K] @ W[N, K].T = y[M, N] with"
                " scratch[M, K + 32]"
            )
        matmul[scratch.dtype, native](
            x.unsafe_ptr(),
            w.unsafe_ptr(),
            scratch.unsafe_ptr(),
            k + ROW_PAD,
            y.unsafe_ptr(),
            m,
            n,
            k,
        )
