"""Products and rows of weights in llama.cpp's Q8_0 and Q4_0 blocks, read as they lie.

Why they exist: decode on the CPU is bound by the bytes of weights it reads, and a Q8_0 block
(32 weights in 34 bytes) or a Q4_0 block (32 in 18) is a half or a quarter of bfloat16's bytes.
The weights stay in their blocks in memory, as GGUF stores them, so one file serves this engine
and llama.cpp, and nothing widened is kept.

A weight matrix W[N, K] is uint8 [N, K / 32 * block bytes]: each row its K / 32 blocks in
order, each block a float16 scale d and then its quants. Q8_0: 32 int8 values q, weight
q * d. Q4_0: 16 bytes, byte j holding weight j in its low nibble and weight j + 16 in its
high nibble, each an unsigned 4-bit n with weight (n - 8) * d.

`replit_qgemv` (decode's one-row products): each block's quants are widened to float32 in
registers, multiplied by x and summed, then scaled by d into the row's accumulator; x stays in
float32, so the arithmetic is that of the dequantized weights (q * d is exact in float32) and
only the order of the sums differs. Rows are split across the cores as `replit_gemv` splits
them. `replit_qmatmul` (prefill's many rows): each core dequantizes a panel of NC rows of W
into float32 scratch of its own and multiplies it by every row of x with `replit_matmul`'s
float32 tiles, so the widened weights exist one panel per core at a time.
`replit_dequantize` widens whole rows (the embedding's rows of the prompt's tokens).
"""

import extensibility
from extensibility import InputTensor, OutputTensor
from max.gpu.host import DeviceContext
from std.math import ceildiv
from std.sys.info import num_physical_cores, simd_width_of
from std.sys.intrinsics import PrefetchOptions, prefetch

from .gemv import PREFETCH_BYTES, ROWS, SERIAL_BYTES, gemv_chunk
from .matmul import COPY_ROWS, NC, ROW_PAD, copy_row, matmul_columns
from .parallel import MAX_PHASES, parallel_chunks, parallel_phases

comptime WIDTH = simd_width_of[DType.float32]()
# Weights per block, in both formats.
comptime QK = 32

comptime U8Ptr = Pointer[Scalar[DType.uint8], ImmutAnyOrigin]
comptime F32Ptr = Pointer[Scalar[DType.float32], MutAnyOrigin]
comptime X32Ptr = Pointer[Scalar[DType.float32], ImmutAnyOrigin]


def block_bytes[bits: Int]() -> Int:
    """Bytes of a block: the float16 scale and 32 quants of `bits` bits."""
    comptime assert bits == 8 or bits == 4, "Q8_0 (bits 8) or Q4_0 (bits 4)"
    return 2 + QK * bits // 8


@always_inline
def _scale(block: U8Ptr) -> Float32:
    return block.unsafe_bitcast[Scalar[DType.float16]]().unsafe_load(0).cast[DType.float32]()


@always_inline
def _quants[bits: Int](block: U8Ptr) -> SIMD[DType.float32, QK]:
    """The block's 32 quants as float32 (exactly): Q8_0's signed values, Q4_0's unsigned
    nibbles n (whose weights are n - 8: `_offset` supplies the 8)."""
    var quants = block.unsafe_offset(2)
    comptime if bits == 8:
        var q = quants.unsafe_bitcast[Scalar[DType.int8]]().unsafe_load[width=QK](0)
        return q.cast[DType.float32]()
    else:
        # Widened to 32 bits before the nibbles are split: one zero-extension and one mask or
        # shift per half, where splitting bytes first costs a mask and a shift each (x86 has
        # no byte shifts) and a sign extension.
        var packed = quants.unsafe_load[width=QK // 2](0).cast[DType.int32]()
        return (packed & 15).join(packed >> 4).cast[DType.float32]()


@always_inline
def _offset[bits: Int](xv: SIMD[DType.float32, QK]) -> SIMD[DType.float32, WIDTH]:
    """What a block's quants add to its dot product with x besides quant * x, in lanes: for
    Q4_0, -8 times x's block (each weight is (n - 8) * d); for Q8_0, nothing."""
    var offset = SIMD[DType.float32, WIDTH](0)
    comptime if bits == 4:
        comptime for part in range(QK // WIDTH):
            offset -= 8 * xv.slice[WIDTH, offset = part * WIDTH]()
    return offset


@always_inline
def _dot_rows[
    rows: Int, bits: Int
](x: X32Ptr, w: U8Ptr, row_bytes: Int, blocks: Int, y: F32Ptr):
    """Writes y[r] = dot(x, row r of w) for r < rows, rows row_bytes apart."""
    comptime size = block_bytes[bits]()
    var acc = Array[SIMD[DType.float32, WIDTH], rows](fill=0)
    for b in range(blocks):
        var xv = x.unsafe_load[width=QK](b * QK)
        var offset = _offset[bits](xv)  # shared by the rows
        comptime for r in range(rows):
            var block = w.unsafe_offset(r * row_bytes + b * size)
            prefetch[PrefetchOptions().for_read().high_locality()](
                block.unsafe_offset(PREFETCH_BYTES)
            )
            var quants = _quants[bits](block)
            var partial = offset
            comptime for part in range(QK // WIDTH):
                comptime at = part * WIDTH
                partial = quants.slice[WIDTH, offset=at]().fma(
                    xv.slice[WIDTH, offset=at](), partial
                )
            acc[r] = partial.fma(SIMD[DType.float32, WIDTH](_scale(block)), acc[r])
    comptime for r in range(rows):
        y.unsafe_store(r, acc[r].reduce_add())


def qgemv_rows[
    bits: Int
](x: X32Ptr, w: U8Ptr, y: F32Ptr, m: Int, n: Int, k: Int, first: Int, last: Int):
    """Writes columns [first, last) of y[m, n] = x[m, k] @ W.T in the calling thread."""
    var blocks = k // QK
    var row_bytes = blocks * block_bytes[bits]()
    var row = first
    while row + ROWS <= last:
        for i in range(m):
            _dot_rows[ROWS, bits](
                x.unsafe_offset(i * k),
                w.unsafe_offset(row * row_bytes),
                row_bytes,
                blocks,
                y.unsafe_offset(i * n + row),
            )
        row += ROWS
    while row < last:
        for i in range(m):
            _dot_rows[1, bits](
                x.unsafe_offset(i * k),
                w.unsafe_offset(row * row_bytes),
                row_bytes,
                blocks,
                y.unsafe_offset(i * n + row),
            )
        row += 1


def qgemv[bits: Int](x: X32Ptr, w: U8Ptr, y: F32Ptr, m: Int, n: Int, k: Int):
    """Writes y[m, n] = x[m, k] @ W.T, on every core when W is large."""

    def rows(first: Int, last: Int) {imm}:
        qgemv_rows[bits](x, w, y, m, n, k, first, last)

    var row_bytes = k // QK * block_bytes[bits]()
    if n * row_bytes <= SERIAL_BYTES:
        rows(0, n)
    else:
        parallel_chunks(rows, n, gemv_chunk(n, row_bytes, num_physical_cores()))


def dequantize_rows[bits: Int](w: U8Ptr, widened: F32Ptr, rows: Int, k: Int):
    """Writes widened[rows, k]: = the float32 weights of `rows` rows of blocks."""
    comptime size = block_bytes[bits]()
    for b in range(rows * (k // QK)):
        var block = w.unsafe_offset(b * size)
        var quants = _quants[bits](block)
        comptime if bits == 4:
            quants -= 8
        widened.unsafe_store(b * QK, quants * _scale(block))


def qmatmul[
    bits: Int
](x: X32Ptr, w: U8Ptr, xs: F32Ptr, ldx: Int, y: F32Ptr, m: Int, n: Int, k: Int):
    """Writes y[m, n] = x[m, k] @ W.T on every core, through xs[m, ldx] (x in rows ldx apart).

    Each claimed block of NC rows of W is widened into a panel of float32 that the claiming
    core owns for that block, then multiplied as `replit_matmul` multiplies float32 weights.
    """
    var row_bytes = k // QK * block_bytes[bits]()

    def phase(step: Int, i: Int) {imm}:
        if step == 0:
            for row in range(i * COPY_ROWS, min((i + 1) * COPY_ROWS, m)):
                copy_row[DType.float32](x.unsafe_offset(row * k), xs.unsafe_offset(row * ldx), k)
        else:
            var first = i * NC
            var rows = min(NC, n - first)
            var panel = List[Float32](unsafe_uninit_length=rows * k)
            var widened = panel.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin]()
            dequantize_rows[bits](w.unsafe_offset(first * row_bytes), widened, rows, k)
            var weights = widened.unsafe_mut_cast[False]().unsafe_origin_cast[ImmutAnyOrigin]()
            matmul_columns[DType.float32, False](
                xs, ldx, weights, y.unsafe_offset(first), m, n, k, 0, rows
            )
            _ = panel^

    var chunks = Array[Int, MAX_PHASES](fill=0)
    chunks[0] = ceildiv(m, COPY_ROWS)
    chunks[1] = ceildiv(n, NC)
    parallel_phases(phase, chunks)


def _check_blocks[bits: Int](name: StaticString, k: Int, row_bytes: Int) raises:
    if k % QK != 0 or row_bytes != k // QK * block_bytes[bits]():
        raise Error(
            String(name, ": K = ", k, " must be a multiple of 32 with W's rows K / 32 blocks of ")
            + String(block_bytes[bits](), " bytes, got rows of ", row_bytes)
        )


@extensibility.register("replit_qgemv")
struct ReplitQGemv:
    """Computes y = x @ W.T with x, y float32 and W uint8 [N, K / 32 * block bytes] in Q8_0
    (`bits` 8) or Q4_0 (`bits` 4) blocks, all row-major and contiguous. Built for one row of x.
    """

    @staticmethod
    def execute[
        target: StaticString, bits: Int
    ](
        y: OutputTensor[dtype=DType.float32, rank=2, ...],
        x: InputTensor[dtype=DType.float32, rank=2, ...],
        w: InputTensor[dtype=DType.uint8, rank=2, ...],
        ctx: DeviceContext,
    ) raises:
        comptime if target != "cpu":
            raise Error("replit_qgemv runs on the CPU only")
        var m = x.dim_size(0)
        var k = x.dim_size(1)
        var n = w.dim_size(0)
        _check_blocks[bits]("replit_qgemv", k, w.dim_size(1))
        if y.dim_size(0) != m or y.dim_size(1) != n:
            raise Error("replit_qgemv: y must be [M, N] for x[M, K] and W[N, K]")
        qgemv[bits](x.unsafe_ptr(), w.unsafe_ptr(), y.unsafe_ptr(), m, n, k)


@extensibility.register("replit_qmatmul")
struct ReplitQMatmul:
    """Computes y = x @ W.T as `replit_qgemv` does, for many rows of x. `scratch`
    [M, K + ROW_PAD] float32 holds x in rows apart from 4 KiB multiples; the graph allocates
    it and never reads it.
    """

    @staticmethod
    def execute[
        target: StaticString, bits: Int
    ](
        y: OutputTensor[dtype=DType.float32, rank=2, ...],
        scratch: OutputTensor[dtype=DType.float32, rank=2, ...],
        x: InputTensor[dtype=DType.float32, rank=2, ...],
        w: InputTensor[dtype=DType.uint8, rank=2, ...],
        ctx: DeviceContext,
    ) raises:
        comptime if target != "cpu":
            raise Error("replit_qmatmul runs on the CPU only")
        var m = x.dim_size(0)
        var k = x.dim_size(1)
        var n = w.dim_size(0)
        _check_blocks[bits]("replit_qmatmul", k, w.dim_size(1))
        if (
            y.dim_size(0) != m
            or y.dim_size(1) != n
            or scratch.dim_size(0) != m
            or scratch.dim_size(1) != k + ROW_PAD
        ):
            raise Error("replit_qmatmul: y must be [M, N] and scratch [M, K + 32]")
        qmatmul[bits](
            x.unsafe_ptr(),
            w.unsafe_ptr(),
            scratch.unsafe_ptr(),
            k + ROW_PAD,
            y.unsafe_ptr(),
            m,
            n,
            k,
        )


@extensibility.register("replit_dequantize")
struct ReplitDequantize:
    """Widens rows of Q8_0 (`bits` 8) or Q4_0 (`bits` 4) blocks, uint8 [M, K / 32 * block
    bytes], to float32 [M, K]."""

    @staticmethod
    def execute[
        target: StaticString, bits: Int
    ](
        widened: OutputTensor[dtype=DType.float32, rank=2, ...],
        w: InputTensor[dtype=DType.uint8, rank=2, ...],
        ctx: DeviceContext,
    ) raises:
        comptime if target != "cpu":
            raise Error("replit_dequantize runs on the CPU only")
        var rows = w.dim_size(0)
        var k = widened.dim_size(1)
        _check_blocks[bits]("replit_dequantize", k, w.dim_size(1))
        if widened.dim_size(0) != rows:
            raise Error("replit_dequantize: the widened rows must be as many as W's")
        dequantize_rows[bits](w.unsafe_ptr(), widened.unsafe_ptr(), rows, k)
