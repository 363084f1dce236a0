"""Products and rows of weights in llama.cpp's Q8_0 and Q4_0 blocks, read as they lie.

Why they exist: decode on the CPU is bound by the bytes of weights it reads, and a Q8_0 block
(32 weights in 34 bytes) or a Q4_0 block (32 in 18) is a half or a quarter of bfloat16's bytes.
The weights stay in their blocks in memory, as GGUF stores them, so one file serves this engine
and llama.cpp, and nothing widened is kept.

A weight matrix W[N, K] is uint8 [N, K / 32 * block bytes]: each row its K / 32 blocks in
order, each block a float16 scale d and then its quants. Q8_0: 32 int8 values q, weight
q * d. Q4_0: 16 bytes, byte j holding weight j in its low nibble and weight j + 16 in its
high nibble, each an unsigned 4-bit n with weight (n - 8) * d.

`replit_qgemv` (decode's one-row products) multiplies the blocks' bytes as they lie with
int8 activations, as llama.cpp does, by `vpdpbusd` (AVX-512 VNNI: 64 byte products a
step), so that it keeps up with memory: widening each quant to float32 and multiplying there
read Q8_0 at about half of this machine's bandwidth and Q4_0 at about a third. Unlike
llama.cpp's one int8 value per activation, each block of 32 activations is split in two int8
parts, x ~ (256 * hi + lo) * d / 256 (`SplitActivations`): each activation within 1/65,000
of its block's largest, where one part is within 1/254. The products are exact integers,
so that rounding and the order of the float32 sums are all that differs from the
dequantized weights' arithmetic, and a step's logits stay within the float32 engine's
tolerance of the reference's. Rows are split across the cores as `replit_gemv` splits them,
each core reading its rows front to back (`qgemv_rows`).
`replit_qmatmul` (prefill's many rows) takes x in the same two parts. Each core packs a panel
of NC rows of W into scratch of its own, the bytes of each group of four weights of every row
side by side (gathered from 16 rows at once; the panel's bytes: nothing is widened), and
multiplies each tile of rows of x by it with `vpdpbusd` against four values of x broadcast,
so that a block's float32 scaling is done once per 16 rows of W and row of x rather than once
per block product: 1.2-1.6x the rate of widening panels to float32 and multiplying there, on
the 3B model.
`replit_dequantize` widens whole rows (the embedding's rows of the prompt's tokens).
"""

import extensibility
from extensibility import InputTensor, OutputTensor
from max.gpu.host import DeviceContext
from std.math import ceildiv, iota
from std.utils import IndexList
from std.memory import bitcast
from std.sys.info import CompilationTarget, num_physical_cores, simd_width_of, size_of
from std.sys.intrinsics import PrefetchOptions, gather, llvm_intrinsic, masked_load, prefetch

from .gemv import SERIAL_BYTES, gemv_chunk
from .matmul import NC
from .parallel import parallel_chunks

comptime WIDTH = simd_width_of[DType.float32]()
# Weights per block, in both formats.
comptime QK = 32

comptime U8Ptr = Pointer[Scalar[DType.uint8], ImmutAnyOrigin]
comptime F32Ptr = Pointer[Scalar[DType.float32], MutAnyOrigin]
comptime U32Ptr = Pointer[Scalar[DType.uint32], MutAnyOrigin]
comptime X32Ptr = Pointer[Scalar[DType.float32], ImmutAnyOrigin]

# Where the target has AVX-512 VNNI, `vpdpbusd` sums four products of unsigned and signed
# bytes into each int32 lane: 64 products in one instruction.
comptime HAS_VNNI = CompilationTarget._has_feature["avx512vnni"]()
# Where the target has AVX-512 VBMI: `vpermb`, any byte of a register to any place.
comptime HAS_VBMI = CompilationTarget._has_feature["avx512vbmi"]()
# Blocks in one step of the one-row products: their 64 quants fill an AVX-512 register.
comptime PAIR = 2
# Int32 lanes a block's sums of four products take, and a step's.
comptime BLOCK_LANES = QK // 4
comptime LANES = PAIR * BLOCK_LANES
# Floats of x's scales and biases per step (`SplitActivations`).
comptime STEP_FLOATS = 2 * LANES
# Blocks of a slice of x's row whose parts and lanes (12 KiB) stay in L1 while every row of W
# passes: a row of the 3B model's d_model. Even, so that slices start at pairs. Its FFN's
# K = 12288 ran 1.1-1.2x faster in slices than whole.
comptime SLICE_BLOCKS = 96
# Rows of x that the one-row products take at once, each pair of W's blocks unpacked once for
# all of them (`_dot_rows`), and the most that `replit_qmatmul` sends there. Each row past the
# first still costs about half of a decode step's work in the 3B model (its integer products
# and float32 scaling), while packing panels costs about three steps whatever the rows: in
# Q4_0, 4 rows took 2.6 steps here and 3.5 in panels, 5 rows 4.1 here and 3.7 in panels.
comptime FEW_ROWS = 4
# Rows of x per tile of the many-row products: with NC // 16 vectors of W's rows, their int32
# sums and float32 totals, and the loaded vectors, 28 of the 32 AVX-512 registers.
comptime TILE_ROWS = 4
# Groups of four weights in a block: `vpdpbusd` sums four products into each lane.
comptime GROUPS = QK // 4
# Vectors of 16 rows of W in a panel.
comptime PANEL_VECTORS = NC // 16


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
def _dot4[
    lanes: Int
](
    acc: SIMD[DType.int32, lanes],
    u: SIMD[DType.uint8, 4 * lanes],
    s: SIMD[DType.int8, 4 * lanes],
) -> SIMD[DType.int32, lanes]:
    """acc plus, in each lane, the sum of four adjacent products u * s (unsigned by signed)."""
    comptime if HAS_VNNI and (lanes == 16 or lanes == 8):
        comptime name = "llvm.x86.avx512.vpdpbusd.512" if lanes == 16 else (
            "llvm.x86.avx512.vpdpbusd.256"
        )
        return llvm_intrinsic[name, SIMD[DType.int32, lanes]](
            acc, bitcast[DType.int8, 4 * lanes](u), s
        )
    else:
        var products = u.cast[DType.int32]() * s.cast[DType.int32]()
        var pairs = products.deinterleave()
        var fours = (pairs[0] + pairs[1]).deinterleave()
        return acc + rebind[SIMD[DType.int32, lanes]](fours[0] + fours[1])


@always_inline
def _split_dot[
    lanes: Int
](
    u: SIMD[DType.uint8, 4 * lanes],
    hi: SIMD[DType.int8, 4 * lanes],
    lo: SIMD[DType.int8, 4 * lanes],
) -> SIMD[DType.int32, lanes]:
    """Lane sums of u * (256 * hi + lo): the products with both parts of x, in one int32."""
    return _dot4[lanes](_dot4[lanes](SIMD[DType.int32, lanes](0), u, hi) << 8, u, lo)


@always_inline
def _bias[bits: Int]() -> UInt8:
    """What the unsigned bytes the products read add to each weight's quant: Q8_0's int8 q is
    read as q + 128 (its top bit flipped), Q4_0's n - 8 as its nibble n."""
    return 128 if bits == 8 else 8


@always_inline
def _permute[
    dtype: DType, size: Int, //, index: IndexList[size]
](v: SIMD[dtype, size]) -> SIMD[dtype, size]:
    """v's lanes in the order of `index`: one `vpermb` or `vpermw` where the target has them
    (AVX-512 VBMI; LLVM's own lowering of the shuffle ran Q4_0 products slower)."""
    comptime if HAS_VBMI and size * size_of[dtype]() == 64 and size_of[dtype]() <= 2:
        comptime name = "llvm.x86.avx512.permvar.qi.512" if size_of[dtype]() == 1 else (
            "llvm.x86.avx512.permvar.hi.512"
        )
        var lanes = SIMD[dtype, size](0)
        comptime for i in range(size):
            lanes[i] = Scalar[dtype](index[i])
        return llvm_intrinsic[name, SIMD[dtype, size]](v, lanes)
    else:
        return v.shuffle[index]()


def _q4_pair_bytes() -> IndexList[PAIR * QK]:
    """Where `_pair_quants` takes two Q4_0 blocks' quant bytes from their 36 bytes: each
    block's 16 (after its scale), twice."""
    var index = IndexList[PAIR * QK]()
    for i in range(PAIR * QK):
        index[i] = 2 + i // QK * block_bytes[4]() + i % (QK // 2)
    return index


def _q4_pair_scales() -> IndexList[QK]:
    """Where `_pair_scales` takes the float16 scale of each of its lanes from two Q4_0
    blocks' words (the first block's is word 0, the second's word 9)."""
    var index = IndexList[QK]()
    for i in range(QK):
        index[i] = block_bytes[4]() // 2 if i >= BLOCK_LANES else 0
    return index


@always_inline
def _q4_pair(block: U8Ptr) -> SIMD[DType.uint8, PAIR * QK]:
    """Two adjacent Q4_0 blocks' 36 bytes in one register (the rest zero): one load, which
    never reads past them (the last blocks of W end its buffer)."""
    comptime mask = iota[DType.uint8, PAIR * QK]().lt(
        SIMD[DType.uint8, PAIR * QK](PAIR * block_bytes[4]())
    )
    return masked_load[PAIR * QK](
        block.unsafe_mut_cast[True](), mask, SIMD[DType.uint8, PAIR * QK](0)
    )


@always_inline
def _pair_quants[bits: Int](block: U8Ptr) -> SIMD[DType.uint8, PAIR * QK]:
    """Two adjacent blocks' quants as the bytes of `_bias`, block by block, in order (Q4_0:
    each block's bytes twice in one permute, the low nibbles kept from the first, the high
    ones from the second)."""
    comptime if bits == 8:
        var first = block.unsafe_offset(2).unsafe_load[width=QK](0)
        var second = block.unsafe_offset(block_bytes[8]() + 2).unsafe_load[width=QK](0)
        return first.join(second) ^ 0x80
    else:
        comptime index = _q4_pair_bytes()
        var twice = bitcast[DType.uint16, QK](_permute[index](_q4_pair(block)))
        comptime shifts = iota[DType.uint16, QK]() // (QK // 4) % 2 * 4  # the second: >> 4
        return bitcast[DType.uint8, PAIR * QK](twice >> shifts) & 15


@always_inline
def _pair_scales[bits: Int](block: U8Ptr) -> SIMD[DType.float32, PAIR * BLOCK_LANES]:
    """Two adjacent blocks' scales d, in the lanes that `_pair_quants`' sums of each fall in.
    (One 64-byte load of a Q8_0 pair for its scales, as Q4_0's are taken, ran its products
    at a third of the rate of these two float16 loads.)"""
    comptime if bits == 8:
        var first = SIMD[DType.float32, BLOCK_LANES](_scale(block))
        var second = SIMD[DType.float32, BLOCK_LANES](_scale(block.unsafe_offset(block_bytes[8]())))
        return first.join(second)
    else:
        comptime index = _q4_pair_scales()
        var words = _permute[index](bitcast[DType.uint16, QK](_q4_pair(block)))
        comptime lanes = PAIR * BLOCK_LANES
        return bitcast[DType.float16, lanes](words.slice[lanes]()).cast[DType.float32]()


@always_inline
def _block_quants[bits: Int](block: U8Ptr) -> SIMD[DType.uint8, QK]:
    """One block's quants as the bytes of `_bias`, in order."""
    var quants = block.unsafe_offset(2)
    comptime if bits == 8:
        return quants.unsafe_load[width=QK](0) ^ 0x80
    else:
        var packed = quants.unsafe_load[width = QK // 2](0)
        return (packed & 15).join(packed >> 4)


struct SplitActivations(Movable):
    """Rows of x as two int8 parts per block of 32: x ~ (256 * hi + lo) * d / 256.

    With d the block's largest |x| / 127, hi = round(x / d) and lo the rest in 256ths of d,
    each value is within d / 512 of x (16 bits of the block's largest), where one int8 part,
    as llama.cpp takes, is within d / 2. The weights' bytes are multiplied by both parts in
    int8 products, so the float32 work is one scale per block and row.

    Per row: the parts' bytes, in order; then, per step of two blocks (and a last single
    block when K / 32 is odd), 32 float32: in each of the step's 16 int32 lanes of sums, its
    block's d / 256, then an eighth of what `_bias` adds to that block's products (`_bias`
    times the sum of its 256 * hi + lo, times d / 256), for each of its 8 lanes to subtract.
    Loaded as they lie: building the lanes from 4 floats a step (two permutes) ran Q4_0
    products about a fifth slower.
    """

    var hi: List[Int8]
    var lo: List[Int8]
    var steps: List[Float32]

    def __init__(out self, m: Int, k: Int):
        self.hi = List[Int8](unsafe_uninit_length=m * k)
        self.lo = List[Int8](unsafe_uninit_length=m * k)
        self.steps = List[Float32](unsafe_uninit_length=m * _steps(k) * STEP_FLOATS)


@always_inline
def _steps(k: Int) -> Int:
    """Steps of a row of K values: pairs of blocks, and a last single block."""
    return ceildiv(k // QK, PAIR)


@always_inline
def _split_block(
    xv: SIMD[DType.float32, QK]
) -> Tuple[SIMD[DType.int8, QK], SIMD[DType.int8, QK], Float32]:
    """A block's two int8 parts and its scale d / 256."""
    var largest = abs(xv).reduce_max()
    if largest == 0:
        return (SIMD[DType.int8, QK](0), SIMD[DType.int8, QK](0), Float32(0))
    var d = largest / 127
    var inverse = 127 / largest
    var hi = round(xv * inverse).clamp(-127, 127)
    var rest = (-hi).fma(SIMD[DType.float32, QK](d), xv)
    var lo = round(rest * (inverse * 256)).clamp(-128, 127)
    return (hi.cast[DType.int8](), lo.cast[DType.int8](), d / 256)


def split_activations[bits: Int](x: X32Ptr, m: Int, k: Int) -> SplitActivations:
    """The rows of x[m, k], split in the layout that products with `bits` weights read."""
    var split = SplitActivations(m, k)
    var hi = split.hi.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin]()
    var lo = split.lo.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin]()
    var steps = split.steps.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin]()
    var blocks = k // QK
    for i in range(m):
        var row = i * k
        for b in range(blocks):
            var parts = _split_block(x.unsafe_load[width=QK](row + b * QK))
            hi.unsafe_store(row + b * QK, parts[0])
            lo.unsafe_store(row + b * QK, parts[1])
            # The bias: the block's parts' products with `_bias`.
            var bias = _split_dot[BLOCK_LANES](
                SIMD[DType.uint8, QK](_bias[bits]()),
                parts[0],
                parts[1],
            ).reduce_add()
            var step = (i * _steps(k) + b // PAIR) * STEP_FLOATS
            var lanes = step + b % PAIR * BLOCK_LANES
            var bias_share = parts[2] * bias.cast[DType.float32]() / BLOCK_LANES
            steps.unsafe_store(lanes, SIMD[DType.float32, BLOCK_LANES](parts[2]))
            steps.unsafe_store(lanes + LANES, SIMD[DType.float32, BLOCK_LANES](bias_share))
    return split^


@always_inline
def _dot_rows[
    bits: Int, count: Int
](
    x: SplitActivations, first_row: Int, blocks: Int, first: Int, last: Int, w: U8Ptr, ahead: Int
) -> Array[Float32, count]:
    """The dot products of blocks [first, last) of rows [first_row, first_row + count) of x (of
    `blocks` blocks) with the same blocks of the row of W at w; first is even. Each pair of
    blocks is unpacked once for all `count` rows: a few rows (a verify run, a keystroke's
    typed tokens) cost the unpacking once and the integer products per row. Prefetches the
    same blocks of the row `ahead` bytes on, which the caller reads next."""
    comptime size = block_bytes[bits]()
    var k = blocks * QK
    var row_steps = _steps(k) * STEP_FLOATS
    var hi = x.hi.unsafe_ptr().unsafe_offset(first_row * k)
    var lo = x.lo.unsafe_ptr().unsafe_offset(first_row * k)
    var steps = x.steps.unsafe_ptr().unsafe_offset(first_row * row_steps)
    var acc = Array[SIMD[DType.float32, LANES], count](fill=0)
    var b = first
    while b + PAIR <= last:
        var block = w.unsafe_offset(b * size)
        prefetch[PrefetchOptions().for_read().high_locality()](block.unsafe_offset(ahead))
        var quants = _pair_quants[bits](block)
        var scales = _pair_scales[bits](block)
        comptime for r in range(count):
            var sums = _split_dot[LANES](
                quants,
                hi.unsafe_load[width = PAIR * QK](r * k + b * QK),
                lo.unsafe_load[width = PAIR * QK](r * k + b * QK),
            )
            var step = steps.unsafe_offset(r * row_steps + b // PAIR * STEP_FLOATS)
            var scaled = step.unsafe_load[width=LANES](0).fma(
                sums.cast[DType.float32](), -step.unsafe_load[width=LANES](LANES)
            )
            acc[r] = scales.fma(scaled, acc[r])
        b += PAIR
    var totals = Array[Float32, count](fill=0)
    comptime for r in range(count):
        totals[r] = acc[r].reduce_add()
    if b < last:  # a last single block
        var block = w.unsafe_offset(b * size)
        var quants = _block_quants[bits](block)
        comptime for r in range(count):
            var sums = _split_dot[BLOCK_LANES](
                quants,
                hi.unsafe_load[width=QK](r * k + b * QK),
                lo.unsafe_load[width=QK](r * k + b * QK),
            )
            var step = steps.unsafe_offset(r * row_steps + b // PAIR * STEP_FLOATS)
            var scaled = step.unsafe_load(0) * sums.reduce_add().cast[
                DType.float32
            ]() - step.unsafe_load(LANES) * BLOCK_LANES
            totals[r] += _scale(block) * scaled
    return totals^


@always_inline
def _store_rows[
    bits: Int, count: Int
](
    x: SplitActivations,
    first_row: Int,
    blocks: Int,
    start: Int,
    end: Int,
    weights: U8Ptr,
    row_bytes: Int,
    y: F32Ptr,
    n: Int,
    row: Int,
):
    """Adds the products of blocks [start, end) of `count` rows of x with a row of W to y's
    column `row` (writes them where start is 0)."""
    var partial = _dot_rows[bits, count](x, first_row, blocks, start, end, weights, row_bytes)
    comptime for r in range(count):
        var at = (first_row + r) * n + row
        var value = partial[r]
        if start > 0:
            value += y.unsafe_load(at)
        y.unsafe_store(at, value)


def qgemv_rows[
    bits: Int
](x: SplitActivations, w: U8Ptr, y: F32Ptr, m: Int, n: Int, k: Int, first: Int, last: Int):
    """Writes columns [first, last) of y[m, n] = x[m, k] @ W.T in the calling thread.

    Row by row, so that each core reads W as one forward stream (four rows at once, as the
    bfloat16 kernel reads them, ran the 3B model's Q8_0 products about a third slower here),
    except that rows longer than SLICE_BLOCKS blocks are read a slice of every row at a time,
    so that the slice of x stays in L1 while the rows pass it.
    """
    var blocks = k // QK
    var row_bytes = blocks * block_bytes[bits]()
    var start = 0
    while start < blocks:
        var end = blocks if blocks - start <= SLICE_BLOCKS else start + SLICE_BLOCKS
        for row in range(first, last):
            var weights = w.unsafe_offset(row * row_bytes)
            for i in range(0, m, FEW_ROWS):
                comptime for count in range(1, FEW_ROWS + 1):
                    if min(FEW_ROWS, m - i) == count:
                        _store_rows[bits, count](
                            x, i, blocks, start, end, weights, row_bytes, y, n, row
                        )
        start = end


def qgemv[bits: Int](x: X32Ptr, w: U8Ptr, y: F32Ptr, m: Int, n: Int, k: Int):
    """Writes y[m, n] = x[m, k] @ W.T, on every core when W is large."""
    var split = split_activations[bits](x, m, k)

    def rows(first: Int, last: Int) {imm}:
        qgemv_rows[bits](split, w, y, m, n, k, first, last)

    var row_bytes = k // QK * block_bytes[bits]()
    if n * row_bytes <= SERIAL_BYTES:
        rows(0, n)
    else:
        parallel_chunks(rows, n, gemv_chunk(n, row_bytes, num_physical_cores()))
    _ = split^


def dequantize_rows[bits: Int](w: U8Ptr, widened: F32Ptr, rows: Int, k: Int):
    """Writes widened[rows, k]: = the float32 weights of `rows` rows of blocks."""
    comptime size = block_bytes[bits]()
    for b in range(rows * (k // QK)):
        var block = w.unsafe_offset(b * size)
        var quants = _quants[bits](block)
        comptime if bits == 4:
            quants -= 8
        widened.unsafe_store(b * QK, quants * _scale(block))


def _pack_panel[
    bits: Int
](w: U8Ptr, rows: Int, row_bytes: Int, blocks: Int, packed: U32Ptr, scales: F32Ptr):
    """Writes NC rows of W (`rows` of them real, the rest zero) as the many-row products read
    them: for each group of four weights of a row, the four bytes of `_bias` of each of the NC
    rows side by side (packed[blocks * GROUPS, NC] of four bytes), and each block's scale of
    every row (scales[blocks, NC]), so that one load gives 16 rows' bytes for one `vpdpbusd`
    against four values of x broadcast. Each vector is gathered from 16 rows at once."""
    comptime size = block_bytes[bits]()
    comptime Words = SIMD[DType.uint32, 16]
    comptime lanes = iota[DType.int, 16]()
    for v in range(PANEL_VECTORS):
        var first = v * 16
        var mask = (lanes + first).lt(SIMD[DType.int, 16](rows))
        var starts = SIMD[DType.int, 16](Int(w)) + (lanes + first) * row_bytes
        for b in range(blocks):
            var block = starts + b * size
            var head = gather[alignment=1](block, mask, Words(0))
            var scale = bitcast[DType.float16, 16](head.cast[DType.uint16]()).cast[DType.float32]()
            scales.unsafe_store(b * NC + first, scale)
            var out = packed.unsafe_offset(b * GROUPS * NC + first)
            comptime if bits == 8:
                comptime for g in range(GROUPS):
                    var words = gather[alignment=1](block + 2 + 4 * g, mask, Words(0))
                    out.unsafe_store(g * NC, words ^ 0x80808080)
            else:
                comptime for g in range(GROUPS // 2):
                    var words = gather[alignment=1](block + 2 + 4 * g, mask, Words(0))
                    out.unsafe_store(g * NC, words & 0x0F0F0F0F)
                    out.unsafe_store((g + GROUPS // 2) * NC, (words >> 4) & 0x0F0F0F0F)


@always_inline
def _panel_tile[
    bits: Int, rows: Int
](
    x: SplitActivations,
    first_row: Int,
    k: Int,
    packed: Pointer[UInt32, ImmutAnyOrigin],
    scales: X32Ptr,
    y: F32Ptr,
    n: Int,
    first_col: Int,
    cols: Int,
):
    """y[first_row + r, first_col + c] = row r of x times row c of a packed panel, for r <
    `rows`, c < `cols`: per block, the int32 sums of both parts of x (16 `vpdpbusd` per
    vector of 16 rows of W), then one float32 scaling of each vector."""
    comptime V = PANEL_VECTORS
    comptime Sums = SIMD[DType.int32, 16]
    var blocks = k // QK
    var row_steps = _steps(k) * STEP_FLOATS
    var hi = x.hi.unsafe_ptr().unsafe_offset(first_row * k).unsafe_bitcast[Int32]()
    var lo = x.lo.unsafe_ptr().unsafe_offset(first_row * k).unsafe_bitcast[Int32]()
    var steps = x.steps.unsafe_ptr().unsafe_offset(first_row * row_steps)
    var acc = Array[SIMD[DType.float32, 16], rows * V](fill=0)
    for b in range(blocks):
        var sums = Array[Sums, rows * V](fill=0)
        comptime for part in range(2):
            var parts = hi if part == 0 else lo
            comptime if part == 1:
                comptime for i in range(rows * V):
                    sums[i] = sums[i] << 8
            comptime for g in range(GROUPS):
                var group = packed.unsafe_offset((b * GROUPS + g) * NC)
                var wv = Array[SIMD[DType.uint8, 64], V](fill=0)
                comptime for c in range(V):
                    wv[c] = bitcast[DType.uint8, 64](group.unsafe_load[width=16](c * 16))
                comptime for r in range(rows):
                    var four = parts.unsafe_load(r * (k // 4) + b * GROUPS + g)
                    var xb = bitcast[DType.int8, 64](Sums(four))
                    comptime for c in range(V):
                        sums[r * V + c] = _dot4[16](sums[r * V + c], wv[c], xb)
        comptime for r in range(rows):
            var step = steps.unsafe_offset(
                r * row_steps + b // PAIR * STEP_FLOATS + b % PAIR * BLOCK_LANES
            )
            var d = SIMD[DType.float32, 16](step.unsafe_load(0))
            var bias = SIMD[DType.float32, 16](-step.unsafe_load(LANES) * BLOCK_LANES)
            comptime for c in range(V):
                var scaled = sums[r * V + c].cast[DType.float32]().fma(d, bias)
                var scale = scales.unsafe_load[width=16](b * NC + c * 16)
                acc[r * V + c] = scale.fma(scaled, acc[r * V + c])
    comptime for r in range(rows):
        var out = y.unsafe_offset((first_row + r) * n + first_col)
        comptime for c in range(V):
            if (c + 1) * 16 <= cols:
                out.unsafe_store(c * 16, acc[r * V + c])
            else:
                for j in range(c * 16, min(cols, (c + 1) * 16)):
                    out.unsafe_store(j, acc[r * V + c][j - c * 16])


def qmatmul[bits: Int](x: X32Ptr, w: U8Ptr, y: F32Ptr, m: Int, n: Int, k: Int):
    """Writes y[m, n] = x[m, k] @ W.T on every core.

    x is split as for the one-row products; each core claims a panel of NC rows of W, packs
    its blocks' bytes into `_pack_panel`'s layout (scratch of its own, NC bytes per k) and
    multiplies every TILE_ROWS rows of x by it in int8 products. Up to FEW_ROWS rows (a
    keystroke's typed tokens) take the one-row products instead: packing a panel costs as
    much for 2 rows as for 100.
    """
    if m <= FEW_ROWS:
        qgemv[bits](x, w, y, m, n, k)
        return
    var split = split_activations[bits](x, m, k)
    var blocks = k // QK
    var row_bytes = blocks * block_bytes[bits]()

    def panels(first: Int, last: Int) {imm}:
        var packed = List[UInt32](unsafe_uninit_length=blocks * GROUPS * NC)
        var scales = List[Float32](unsafe_uninit_length=blocks * NC)
        var packed_ptr = packed.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin]()
        var scales_ptr = scales.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin]()
        var words = packed_ptr.unsafe_mut_cast[False]().unsafe_origin_cast[ImmutAnyOrigin]()
        var block_scales = scales_ptr.unsafe_mut_cast[False]().unsafe_origin_cast[ImmutAnyOrigin]()
        for panel in range(first, last):
            var first_col = panel * NC
            var cols = min(NC, n - first_col)
            var rows_of_w = w.unsafe_offset(first_col * row_bytes)
            _pack_panel[bits](rows_of_w, cols, row_bytes, blocks, packed_ptr, scales_ptr)
            for i in range(0, m, TILE_ROWS):
                comptime for rows in range(1, TILE_ROWS + 1):
                    if min(TILE_ROWS, m - i) == rows:
                        _panel_tile[bits, rows](
                            split, i, k, words, block_scales, y, n, first_col, cols
                        )
        _ = packed^
        _ = scales^

    parallel_chunks(panels, ceildiv(n, NC), 1)
    _ = split^


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
    """Computes y = x @ W.T as `replit_qgemv` does, for many rows of x."""

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
            raise Error("replit_qmatmul runs on the CPU only")
        var m = x.dim_size(0)
        var k = x.dim_size(1)
        var n = w.dim_size(0)
        _check_blocks[bits]("replit_qmatmul", k, w.dim_size(1))
        if y.dim_size(0) != m or y.dim_size(1) != n:
            raise Error("replit_qmatmul: y must be [M, N] for x[M, K] and W[N, K]")
        qmatmul[bits](x.unsafe_ptr(), w.unsafe_ptr(), y.unsafe_ptr(), m, n, k)


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
