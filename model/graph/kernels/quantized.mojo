"""Products and rows of weights in llama.cpp's Q8_0 and Q4_0 blocks, in groups of 16 rows.

Why they exist: decode on the CPU is bound by the bytes of weights it reads, and a Q8_0 block
(32 weights in 34 bytes) or a Q4_0 block (32 in 18) is a half or a quarter of bfloat16's bytes.
Nothing widened is kept: the kernels read the blocks' own bytes.

A block is 32 consecutive weights of a row: a float16 scale d, then its quants. Q8_0: 32 int8
values q, weight q * d. Q4_0: 16 bytes, byte j holding weight j in its low nibble and weight
j + 16 in its high nibble, each an unsigned 4-bit n with weight (n - 8) * d. GGUF stores a
matrix W[N, K] as each row's K / 32 blocks in order; the kernels take the same bytes
interleaved in groups of GROUP_ROWS (16) rows (`model/graph/block_layout.py` lays them out as
weights load): for each group and each block of its rows, the 16 rows' scales, then for each
4 bytes of a block's quants the 16 rows' 4 bytes side by side (64 bytes: Q8_0 has 8 such
vectors a block, Q4_0 4). A uint8 tensor [N rounded up to 16, K / 32 * block bytes], the
rounding's rows zero.

The products multiply those bytes with int8 activations by `vpdpbusd` (AVX-512 VNNI: 16 lanes
of four unsigned-by-signed byte products each; AVX2's `vpmaddubsw` where it is missing), as
llama.cpp does: one vector of a group is 16 rows' products with 4 values of x broadcast, so
each block's float32 scaling is done once per 16 rows of W, and Q4_0's nibbles are split once
per 128 weights. (Read row by row, the blocks cost a gather of their scales and a permute of
their nibbles per 64 weights, and kept Q4_0 decode at about 60% of llama.cpp's rate, bound by
its arithmetic rather than by memory.) Unlike llama.cpp's one int8 value per activation, each
block of 32 activations is split in two int8 parts, x ~ (256 * hi + lo) * d / 256
(`SplitActivations`): each activation within 1/65,000 of its block's largest, where one part is
within 1/254. The products are exact integers, so that rounding and the order of the float32
sums are all that differs from the dequantized weights' arithmetic, and a step's logits stay
within the float32 engine's tolerance of the reference's.

`replit_qgemv` (decode's one-row products, and up to FEW_ROWS rows) reads each group of W
once, front to back, for all of its rows of x; the cores claim groups in chunks.
`replit_qmatmul` (prefill's many rows): each core unpacks a panel of NC rows of W into
scratch of its own (the bytes of each group of four weights of every row side by side, 1 byte
a weight) and multiplies each tile of TILE_ROWS rows of x by it, both parts at once.
`replit_dequantize` widens the rows of W that tokens name (the embedding's rows of a prompt).
"""

import extensibility
from extensibility import InputTensor, OutputTensor
from max.gpu.host import DeviceContext
from std.math import ceildiv
from std.memory import bitcast
from std.sys.info import CompilationTarget, num_physical_cores
from std.sys.intrinsics import PrefetchOptions, llvm_intrinsic, prefetch

from .gemv import PREFETCH_BYTES, SERIAL_BYTES, gemv_chunk
from .matmul import NC
from .parallel import parallel_chunks

# Weights per block, in both formats.
comptime QK = 32
# Rows of W interleaved in a group: one int32 lane of an AVX-512 vector each.
comptime GROUP_ROWS = 16
# Bytes of the 16 rows' float16 scales that start a group's block.
comptime SCALE_BYTES = 2 * GROUP_ROWS
# Bytes of one vector of a group's block: 4 bytes of quants of each of its 16 rows.
comptime VECTOR_BYTES = 4 * GROUP_ROWS

comptime U8Ptr = Pointer[Scalar[DType.uint8], ImmutAnyOrigin]
comptime F32Ptr = Pointer[Scalar[DType.float32], MutAnyOrigin]
comptime U32Ptr = Pointer[Scalar[DType.uint32], MutAnyOrigin]
comptime X32Ptr = Pointer[Scalar[DType.float32], ImmutAnyOrigin]
comptime I64Ptr = Pointer[Scalar[DType.int64], ImmutAnyOrigin]
comptime Sums = SIMD[DType.int32, GROUP_ROWS]
comptime Floats = SIMD[DType.float32, GROUP_ROWS]
comptime Bytes = SIMD[DType.uint8, VECTOR_BYTES]

# Where the target has AVX-512 VNNI, `vpdpbusd` sums four products of unsigned and signed
# bytes into each int32 lane: 64 products in one instruction.
comptime HAS_VNNI = CompilationTarget._has_feature["avx512vnni"]()
# Without it, AVX2's `vpmaddubsw` sums two products of unsigned and signed bytes into int16
# lanes (saturating) and `vpmaddwd` pairs those into int32: exact where the unsigned bytes are
# at most 128, so that no sum of two products can saturate. Q4_0's nibbles are; Q8_0's quants
# are read as their magnitudes, with x taking their signs (`_pairs_avx2`).
comptime HAS_AVX2 = CompilationTarget._has_feature["avx2"]()
# Whether the products are AVX2's pairs of bytes (no VNNI). Then Q8_0's quants are multiplied
# as signed bytes rather than biased to unsigned ones, and Q4_0's products of a block are
# summed in the int16 pairs `vpmaddubsw` gives, widened to int32 once a block (`_widened`)
# rather than once per four weights: a pair of nibbles by int8 is at most 2 * 15 * 127, so
# the 8 of a block's 32 weights fit.
comptime BYTE_PAIRS = HAS_AVX2 and not HAS_VNNI
# Rows of x that the one-row products take at once, each vector of W unpacked once for all of
# them, and the most that `replit_qmatmul` sends there: packing panels costs about as much
# for 2 rows as for 100.
comptime FEW_ROWS = 4
# Rows of x per tile of the many-row products: each vector of W loaded is multiplied by both
# parts of both rows, so with NC // 16 vectors of W's rows the tile holds 12 int32 sums, 6
# float32 totals and the 3 loaded vectors in registers. (4 rows, one part after the other, took
# as many registers only if each vector of W was loaded twice, which the compiler merged into
# one load and spilled: a fifth less throughput.)
comptime TILE_ROWS = 2
# Rows of x a core splits at a time when there are many.
comptime SPLIT_CHUNK_ROWS = 16
# Groups of four weights in a block: `vpdpbusd` sums four products into each lane.
comptime GROUPS = QK // 4
# Vectors of 16 rows of W in a panel.
comptime PANEL_VECTORS = NC // GROUP_ROWS


def block_bytes[bits: Int]() -> Int:
    """Bytes of a block: the float16 scale and 32 quants of `bits` bits."""
    comptime assert bits == 8 or bits == 4, "Q8_0 (bits 8) or Q4_0 (bits 4)"
    return 2 + QK * bits // 8


def group_block_bytes[bits: Int]() -> Int:
    """Bytes of one block of a group: its 16 rows' scales and quants (a group of W's rows is
    K / 32 of these)."""
    return GROUP_ROWS * block_bytes[bits]()


def vectors[bits: Int]() -> Int:
    """Vectors of 16 rows' 4 bytes in a group's block: a block's quant bytes over 4."""
    return QK * bits // 8 // 4


@always_inline
def _narrow[bits: Int]() -> Bool:
    """Whether `_dot4` sums `bits` products in int16 pairs (`BYTE_PAIRS`)."""
    return bits == 4 and BYTE_PAIRS


@always_inline
def _dot4[
    lanes: Int, bits: Int
](
    acc: SIMD[DType.int32, lanes],
    u: SIMD[DType.uint8, 4 * lanes],
    s: SIMD[DType.int8, 4 * lanes],
) -> SIMD[DType.int32, lanes]:
    """acc plus, in each lane, the sum of four adjacent products of the weights' bytes u, as
    `_unpacked` gives them for `bits`, and the activations' bytes s. Where `_narrow[bits]`,
    acc holds each lane's two int16 sums of pairs, which `_widened` adds up."""
    comptime signed = bits == 8 and BYTE_PAIRS
    comptime if HAS_VNNI and (lanes == 16 or lanes == 8):
        comptime name = "llvm.x86.avx512.vpdpbusd.512" if lanes == 16 else (
            "llvm.x86.avx512.vpdpbusd.256"
        )
        return llvm_intrinsic[name, SIMD[DType.int32, lanes]](
            acc, bitcast[DType.int8, 4 * lanes](u), s
        )
    elif HAS_AVX2 and lanes == 16:
        var low = _pairs_avx2[signed](u.slice[32, offset=0](), s.slice[32, offset=0]())
        var high = _pairs_avx2[signed](u.slice[32, offset=32](), s.slice[32, offset=32]())
        comptime if _narrow[bits]():
            var pairs = bitcast[DType.int16, 2 * lanes](acc) + rebind[
                SIMD[DType.int16, 2 * lanes]
            ](low.join(high))
            return bitcast[DType.int32, lanes](pairs)
        var fours = _pairs_to_int32(low).join(_pairs_to_int32(high))
        return acc + rebind[SIMD[DType.int32, lanes]](fours)
    else:
        var weights = bitcast[DType.int8, 4 * lanes](u).cast[DType.int32]() if signed else (
            u.cast[DType.int32]()
        )
        var products = weights * s.cast[DType.int32]()
        var pairs = products.deinterleave()
        var fours = (pairs[0] + pairs[1]).deinterleave()
        return acc + rebind[SIMD[DType.int32, lanes]](fours[0] + fours[1])


@always_inline
def _widened[bits: Int](acc: Sums) -> Sums:
    """What `_dot4` summed into acc, as one int32 sum a lane."""
    comptime if _narrow[bits]():
        var pairs = bitcast[DType.int16, 2 * GROUP_ROWS](acc)
        return _pairs_to_int32(pairs.slice[16, offset=0]()).join(
            _pairs_to_int32(pairs.slice[16, offset=16]())
        )
    return acc


@always_inline
def _pairs_avx2[
    signed: Bool
](u: SIMD[DType.uint8, 32], s: SIMD[DType.int8, 32]) -> SIMD[DType.int16, 16]:
    """In each of 16 int16 lanes, the sum of two adjacent products u * s, with every u at most
    128; or, `signed`, of u's bits read as int8 times s, as |u| times s with u's sign (s is
    never -128, whose negation would not fit a byte: `_split_block`)."""
    var magnitude = u
    var x = s
    comptime if signed:
        comptime sign = "llvm.x86.avx2.psign.b"
        var q = bitcast[DType.int8, 32](u)
        magnitude = bitcast[DType.uint8, 32](llvm_intrinsic[sign, SIMD[DType.int8, 32]](q, q))
        x = llvm_intrinsic[sign, SIMD[DType.int8, 32]](s, q)
    return llvm_intrinsic["llvm.x86.avx2.pmadd.ub.sw", SIMD[DType.int16, 16]](
        bitcast[DType.int8, 32](magnitude), x
    )


@always_inline
def _pairs_to_int32(pairs: SIMD[DType.int16, 16]) -> SIMD[DType.int32, 8]:
    """Each two adjacent int16 lanes summed into an int32 (`vpmaddwd` by ones)."""
    return llvm_intrinsic["llvm.x86.avx2.pmadd.wd", SIMD[DType.int32, 8]](
        pairs, SIMD[DType.int16, 16](1)
    )


@always_inline
def _bias[bits: Int]() -> Int32:
    """What the bytes the products read add to each weight's quant: Q8_0's int8 q is read as
    q + 128 (its top bit flipped) unless the products take signed bytes, Q4_0's n - 8 as its
    nibble n."""
    comptime if bits == 8:
        return 0 if BYTE_PAIRS else 128
    return 8


@always_inline
def _unpacked[bits: Int](vector: Bytes, half: Int) -> Bytes:
    """A vector's bytes as the quants of `_bias`: Q8_0's with the top bit flipped (as they
    are where the products take signed bytes); Q4_0's low nibbles (half 0: weights 4v to
    4v + 3 of vector v) or high ones (half 1: weights 16 + 4v on)."""
    comptime if bits == 8:
        comptime if BYTE_PAIRS:
            return vector
        return vector ^ 0x80
    else:
        if half == 0:
            return vector & 15
        return bitcast[DType.uint8, VECTOR_BYTES](
            bitcast[DType.uint16, VECTOR_BYTES // 2](vector) >> 4
        ) & 15


@always_inline
def _group_of_four[bits: Int](v: Int, half: Int) -> Int:
    """Which four weights of a block (as 4g to 4g + 3) `_unpacked` gives of vector v."""
    comptime if bits == 8:
        return v
    else:
        return v + half * (GROUPS // 2)


@always_inline
def _halves[bits: Int]() -> Int:
    """Unsigned vectors `_unpacked` makes of one loaded vector: Q4_0's two nibbles."""
    return 1 if bits == 8 else 2


@always_inline
def _scales(at: U8Ptr) -> Floats:
    """The 16 rows' float16 scales that start a group's block."""
    return at.unsafe_bitcast[Scalar[DType.float16]]().unsafe_load[width=GROUP_ROWS](0).cast[
        DType.float32
    ]()


struct SplitActivations(Movable):
    """Rows of x as two int8 parts per block of 32: x ~ (256 * hi + lo) * d / 256.

    With d the block's largest |x| / 127, hi = round(x / d) and lo the rest in 256ths of d
    (both within -127 to 127, so that either negated is a byte), each value is within d / 512
    of x (16 bits of the block's largest), where one int8 part, as llama.cpp takes, is within d
    / 2. The weights' bytes are multiplied by both parts in int8 products, so the float32 work
    is one scale per block and row.

    Per row: the parts' bytes, in order; then per block two float32: its d / 256, and what
    `_bias` adds to its products (`_bias` times the sum of its 256 * hi + lo, times d / 256),
    to subtract.
    """

    var hi: List[Int8]
    var lo: List[Int8]
    var scales: List[Float32]

    def __init__(out self, m: Int, k: Int):
        self.hi = List[Int8](unsafe_uninit_length=m * k)
        self.lo = List[Int8](unsafe_uninit_length=m * k)
        self.scales = List[Float32](unsafe_uninit_length=m * k // QK * 2)


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
    var lo = round(rest * (inverse * 256)).clamp(-127, 127)
    return (hi.cast[DType.int8](), lo.cast[DType.int8](), d / 256)


def _split_rows[
    bits: Int
](x: X32Ptr, k: Int, split: SplitActivations, first: Int, last: Int):
    """Writes rows [first, last) of x[., k] into `split`, in the layout that products with
    `bits` weights read."""
    # Every call writes rows of its own, so the cores may share the split.
    var hi = split.hi.unsafe_ptr().unsafe_mut_cast[True]().unsafe_origin_cast[MutAnyOrigin]()
    var lo = split.lo.unsafe_ptr().unsafe_mut_cast[True]().unsafe_origin_cast[MutAnyOrigin]()
    var scales = split.scales.unsafe_ptr().unsafe_mut_cast[True]().unsafe_origin_cast[MutAnyOrigin]()
    for b in range(first * k // QK, last * k // QK):
        var parts = _split_block(x.unsafe_load[width=QK](b * QK))
        hi.unsafe_store(b * QK, parts[0])
        lo.unsafe_store(b * QK, parts[1])
        var whole = parts[0].cast[DType.int32]() * 256 + parts[1].cast[DType.int32]()
        var bias = _bias[bits]() * whole.reduce_add()
        scales.unsafe_store(2 * b, parts[2])
        scales.unsafe_store(2 * b + 1, parts[2] * bias.cast[DType.float32]())


def split_activations[bits: Int](x: X32Ptr, m: Int, k: Int) -> SplitActivations:
    """The rows of x[m, k], split in the layout that products with `bits` weights read: on
    every core for a prompt's rows (a few percent of its products' time on one core)."""
    var split = SplitActivations(m, k)
    if m <= FEW_ROWS:
        _split_rows[bits](x, k, split, 0, m)
        return split^

    def rows(first: Int, last: Int) {imm}:
        _split_rows[bits](x, k, split, first, last)

    parallel_chunks(rows, m, SPLIT_CHUNK_ROWS)
    return split^


@always_inline
def _group_dot[
    bits: Int, count: Int
](x: SplitActivations, first_row: Int, blocks: Int, group: U8Ptr) -> Array[Floats, count]:
    """The products of rows [first_row, first_row + count) of x (of `blocks` blocks) with the
    16 rows of the group of W at `group`: each vector of W is loaded and unpacked once for all
    `count` rows. Each row's sums of either part run in two chains (the two halves of the
    block's vectors), so that no chain waits on the one before it every step."""
    comptime size = group_block_bytes[bits]()
    comptime V = vectors[bits]()
    var k = blocks * QK
    var hi = x.hi.unsafe_ptr().unsafe_offset(first_row * k).unsafe_bitcast[Int32]()
    var lo = x.lo.unsafe_ptr().unsafe_offset(first_row * k).unsafe_bitcast[Int32]()
    var scales = x.scales.unsafe_ptr().unsafe_offset(first_row * blocks * 2)
    var acc = Array[Floats, count](fill=0)
    for b in range(blocks):
        var at = group.unsafe_offset(b * size)
        # [part * 2 * count + chain * count + r]: part 0 hi, 1 lo.
        var sums = Array[Sums, 4 * count](fill=0)
        comptime for v in range(V):
            var line = at.unsafe_offset(SCALE_BYTES + v * VECTOR_BYTES)
            prefetch[PrefetchOptions().for_read().high_locality()](
                line.unsafe_offset(PREFETCH_BYTES)
            )
            var vector = line.unsafe_load[width=VECTOR_BYTES](0)
            comptime for half in range(_halves[bits]()):
                var u = _unpacked[bits](vector, half)
                comptime g = _group_of_four[bits](v, half)
                comptime chain = g % 2
                comptime for r in range(count):
                    var at_x = r * (k // 4) + b * GROUPS + g
                    comptime for part in range(2):
                        var four = (hi if part == 0 else lo).unsafe_load(at_x)
                        comptime i = part * 2 * count + chain * count + r
                        sums[i] = _dot4[GROUP_ROWS, bits](
                            sums[i], u, bitcast[DType.int8, VECTOR_BYTES](Sums(four))
                        )
        var w_scales = _scales(at)
        comptime for r in range(count):
            var high = _widened[bits](sums[r]) + _widened[bits](sums[count + r])
            var low = _widened[bits](sums[2 * count + r]) + _widened[bits](sums[3 * count + r])
            var block = scales.unsafe_offset((r * blocks + b) * 2)
            var scaled = ((high << 8) + low).cast[DType.float32]().fma(
                Floats(block.unsafe_load(0)), Floats(-block.unsafe_load(1))
            )
            acc[r] = w_scales.fma(scaled, acc[r])
    return acc^


def qgemv_rows[
    bits: Int
](x: SplitActivations, w: U8Ptr, y: F32Ptr, m: Int, n: Int, k: Int, first: Int, last: Int):
    """Writes the columns of groups [first, last) of y[m, n] = x[m, k] @ W.T in the calling
    thread, each group of W read once (and its rows of x from cache) for up to FEW_ROWS rows
    of x at a time."""
    var blocks = k // QK
    var group_bytes = blocks * group_block_bytes[bits]()
    for group in range(first, last):
        var rows_of_w = w.unsafe_offset(group * group_bytes)
        for i in range(0, m, FEW_ROWS):
            comptime for count in range(1, FEW_ROWS + 1):
                if min(FEW_ROWS, m - i) == count:
                    var sums = _group_dot[bits, count](x, i, blocks, rows_of_w)
                    comptime for r in range(count):
                        y.unsafe_store((i + r) * n + group * GROUP_ROWS, sums[r])


def qgemv[bits: Int](x: X32Ptr, w: U8Ptr, y: F32Ptr, m: Int, n: Int, k: Int):
    """Writes y[m, n] = x[m, k] @ W.T (n a multiple of 16), on every core when W is large."""
    var split = split_activations[bits](x, m, k)
    var groups = n // GROUP_ROWS

    def rows(first: Int, last: Int) {imm}:
        qgemv_rows[bits](split, w, y, m, n, k, first, last)

    var group_bytes = k // QK * group_block_bytes[bits]()
    if groups * group_bytes <= SERIAL_BYTES:
        rows(0, groups)
    else:
        parallel_chunks(rows, groups, gemv_chunk(groups, group_bytes, num_physical_cores()))
    _ = split^


def dequantize_rows[bits: Int](w: U8Ptr, tokens: I64Ptr, widened: F32Ptr, m: Int, k: Int):
    """Writes widened[m, k]: the float32 weights of the rows of W that tokens[m] name."""
    comptime size = group_block_bytes[bits]()
    var blocks = k // QK
    for i in range(m):
        var token = Int(tokens.unsafe_load(i))
        var lane = token % GROUP_ROWS
        var rows_of_w = w.unsafe_offset(token // GROUP_ROWS * blocks * size)
        for b in range(blocks):
            var at = rows_of_w.unsafe_offset(b * size)
            var scale = _scales(at)[lane]
            var out = widened.unsafe_offset(i * k + b * QK)
            comptime for v in range(vectors[bits]()):
                var four = at.unsafe_offset(SCALE_BYTES + v * VECTOR_BYTES + 4 * lane).unsafe_load[
                    width=4
                ](0)
                comptime if bits == 8:
                    var q = bitcast[DType.int8, 4](four).cast[DType.float32]()
                    out.unsafe_store(4 * v, q * scale)
                else:
                    var low = (four & 15).cast[DType.float32]() - 8
                    var high = (four >> 4).cast[DType.float32]() - 8
                    out.unsafe_store(4 * v, low * scale)
                    out.unsafe_store(QK // 2 + 4 * v, high * scale)


def _pack_panel[
    bits: Int
](w: U8Ptr, groups: Int, blocks: Int, packed: U32Ptr, scales: F32Ptr):
    """Writes the `groups` groups of 16 rows of W at w (NC // 16 at most, the rest zero) as
    the many-row products read them: for each group of four weights of a row, the four
    unsigned bytes of `_bias` of each of the NC rows side by side (packed[blocks * GROUPS,
    NC] of four bytes), and each block's scale of every row (scales[blocks, NC]), so that one
    load gives 16 rows' bytes for one `vpdpbusd` against four values of x broadcast."""
    comptime size = group_block_bytes[bits]()
    for c in range(PANEL_VECTORS):
        var first = c * GROUP_ROWS
        var rows_of_w = w.unsafe_offset(c * blocks * size)
        for b in range(blocks):
            var out = packed.unsafe_offset(b * GROUPS * NC + first)
            if c >= groups:
                scales.unsafe_store(b * NC + first, Floats(0))
                comptime for g in range(GROUPS):
                    out.unsafe_store(g * NC, SIMD[DType.uint32, GROUP_ROWS](0))
                continue
            var at = rows_of_w.unsafe_offset(b * size)
            scales.unsafe_store(b * NC + first, _scales(at))
            comptime for v in range(vectors[bits]()):
                var vector = at.unsafe_offset(SCALE_BYTES + v * VECTOR_BYTES).unsafe_load[
                    width=VECTOR_BYTES
                ](0)
                comptime for half in range(_halves[bits]()):
                    var words = bitcast[DType.uint32, GROUP_ROWS](_unpacked[bits](vector, half))
                    out.unsafe_store(_group_of_four[bits](v, half) * NC, words)


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
    `rows`, c < `cols`: per block, the int32 sums of either part of x (8 `vpdpbusd` each per
    vector of 16 rows of W, every vector loaded once for both parts of every row), then one
    float32 scaling of each vector."""
    comptime V = PANEL_VECTORS
    var blocks = k // QK
    var hi = x.hi.unsafe_ptr().unsafe_offset(first_row * k).unsafe_bitcast[Int32]()
    var lo = x.lo.unsafe_ptr().unsafe_offset(first_row * k).unsafe_bitcast[Int32]()
    var x_scales = x.scales.unsafe_ptr().unsafe_offset(first_row * blocks * 2)
    var acc = Array[Floats, rows * V](fill=0)
    for b in range(blocks):
        # [part * rows * V + r * V + c]: part 0 hi, 1 lo.
        var sums = Array[Sums, 2 * rows * V](fill=0)
        comptime for g in range(GROUPS):
            var group = packed.unsafe_offset((b * GROUPS + g) * NC)
            var wv = Array[Bytes, V](fill=0)
            comptime for c in range(V):
                wv[c] = bitcast[DType.uint8, VECTOR_BYTES](
                    group.unsafe_load[width=GROUP_ROWS](c * GROUP_ROWS)
                )
            comptime for r in range(rows):
                comptime for part in range(2):
                    var four = (hi if part == 0 else lo).unsafe_load(r * (k // 4) + b * GROUPS + g)
                    var xb = bitcast[DType.int8, VECTOR_BYTES](Sums(four))
                    comptime for c in range(V):
                        comptime i = part * rows * V + r * V + c
                        sums[i] = _dot4[GROUP_ROWS, bits](sums[i], wv[c], xb)
        comptime for r in range(rows):
            var block = x_scales.unsafe_offset((r * blocks + b) * 2)
            var d = Floats(block.unsafe_load(0))
            var bias = Floats(-block.unsafe_load(1))
            comptime for c in range(V):
                var high = _widened[bits](sums[r * V + c])
                var whole = (high << 8) + _widened[bits](sums[rows * V + r * V + c])
                var scaled = whole.cast[DType.float32]().fma(d, bias)
                var scale = scales.unsafe_load[width=GROUP_ROWS](b * NC + c * GROUP_ROWS)
                acc[r * V + c] = scale.fma(scaled, acc[r * V + c])
    comptime for r in range(rows):
        var out = y.unsafe_offset((first_row + r) * n + first_col)
        comptime for c in range(V):
            if (c + 1) * GROUP_ROWS <= cols:
                out.unsafe_store(c * GROUP_ROWS, acc[r * V + c])


def qmatmul[bits: Int](x: X32Ptr, w: U8Ptr, y: F32Ptr, m: Int, n: Int, k: Int):
    """Writes y[m, n] = x[m, k] @ W.T (n a multiple of 16) on every core.

    x is split as for the one-row products; each core claims a panel of NC rows of W, unpacks
    its groups into `_pack_panel`'s layout (scratch of its own, NC bytes per k) and multiplies
    every TILE_ROWS rows of x by it in int8 products. Up to FEW_ROWS rows (a keystroke's typed
    tokens) take the one-row products instead.
    """
    if m <= FEW_ROWS:
        qgemv[bits](x, w, y, m, n, k)
        return
    var split = split_activations[bits](x, m, k)
    var blocks = k // QK
    var group_bytes = blocks * group_block_bytes[bits]()

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
            var rows_of_w = w.unsafe_offset(first_col // GROUP_ROWS * group_bytes)
            _pack_panel[bits](rows_of_w, cols // GROUP_ROWS, blocks, packed_ptr, scales_ptr)
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


def _check_blocks[
    bits: Int
](name: StaticString, k: Int, row_bytes: Int, w_rows: Int, n: Int) raises:
    if k % QK != 0 or row_bytes != k // QK * block_bytes[bits]():
        raise Error(
            String(name, ": K = ", k, " must be a multiple of 32 with W's rows K / 32 blocks of ")
            + String(block_bytes[bits](), " bytes, got rows of ", row_bytes)
        )
    if n % GROUP_ROWS != 0 or w_rows != n:
        raise Error(
            String(name, ": W's rows come in groups of 16 (", w_rows, " rows), and y has as ")
            + String("many columns (", n, ")")
        )


@extensibility.register("replit_qgemv")
struct ReplitQGemv:
    """Computes y = x @ W.T with x, y float32 and W uint8 [N, K / 32 * block bytes] in Q8_0
    (`bits` 8) or Q4_0 (`bits` 4) blocks, in groups of 16 rows (N a multiple of 16), all
    row-major and contiguous. Built for one row of x.
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
        var n = y.dim_size(1)
        _check_blocks[bits]("replit_qgemv", k, w.dim_size(1), w.dim_size(0), n)
        if y.dim_size(0) != m:
            raise Error("replit_qgemv: y must have as many rows as x")
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
        var n = y.dim_size(1)
        _check_blocks[bits]("replit_qmatmul", k, w.dim_size(1), w.dim_size(0), n)
        if y.dim_size(0) != m:
            raise Error("replit_qmatmul: y must have as many rows as x")
        qmatmul[bits](x.unsafe_ptr(), w.unsafe_ptr(), y.unsafe_ptr(), m, n, k)


@extensibility.register("replit_dequantize")
struct ReplitDequantize:
    """Widens the rows of W (Q8_0 (`bits` 8) or Q4_0 (`bits` 4) blocks in groups of 16 rows,
    uint8 [N, K / 32 * block bytes]) that tokens [M] name, to float32 [M, K]."""

    @staticmethod
    def execute[
        target: StaticString, bits: Int
    ](
        widened: OutputTensor[dtype=DType.float32, rank=2, ...],
        w: InputTensor[dtype=DType.uint8, rank=2, ...],
        tokens: InputTensor[dtype=DType.int64, rank=1, ...],
        ctx: DeviceContext,
    ) raises:
        comptime if target != "cpu":
            raise Error("replit_dequantize runs on the CPU only")
        var m = tokens.dim_size(0)
        var k = widened.dim_size(1)
        var rows = w.dim_size(0)
        _check_blocks[bits]("replit_dequantize", k, w.dim_size(1), rows, rows)
        if widened.dim_size(0) != m:
            raise Error("replit_dequantize: the widened rows must be as many as the tokens")
        var ids = tokens.unsafe_ptr()
        for i in range(m):
            var token = Int(ids.unsafe_load(i))
            if token < 0 or token >= rows:
                raise Error(String("replit_dequantize: token ", token, " outside W's ", rows, " rows"))
        dequantize_rows[bits](w.unsafe_ptr(), ids, widened.unsafe_ptr(), m, k)
