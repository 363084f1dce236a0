"""`replit_decode_attention`: one new token's ALiBi attention over the in-place KV cache.

`decode_attention_heads` is the attention of `replit_decode_layer` too.

Why it exists: built from MAX's generic ops, a decode step's attention is about ten small
kernels per layer (cache stores, two batched products, bias, softmax, permutes) that cost more
than the arithmetic while the context is short, and whose batched products read the cache well
below memory bandwidth once it is long. This does it in one pass: it stores the new token's
key and value rows in the cache, then streams each kv head's keys and values once for all the
query heads that share them, with an online softmax over blocks of keys (a running maximum and
sum), so nothing of context length is stored.

The cache layout is the graph's: [kv head, position, head_dim], float32. Query head h reads kv
head h // group, and its score for key j at query position p is q.k / sqrt(head_dim) plus
slope[h] * (j - p).
"""

import extensibility
from extensibility import InputTensor, OutputTensor
from extensibility.managed_tensor_slice import _MutableInputTensor as MutableInputTensor
from max.gpu.host import DeviceContext
from std.math import exp, sqrt
from std.sys.info import simd_width_of

from .parallel import parallel_chunks

comptime WIDTH = simd_width_of[DType.float32]()
# Caches smaller than this (keys plus values to read) are read by the calling thread alone:
# waking the other cores costs more than it saves while the context is short (the demo model's
# 500 KB a layer at 980 positions is already faster split across two cores).
comptime SERIAL_BYTES = 1 << 17
# Below every score: exp(LOWEST - s) is 0 for any finite score s, without an infinity.
comptime LOWEST = Float32(-3.0e38)
# Keys scored together before their softmax weights are taken, in whole vectors.
comptime BLOCK = 4 * WIDTH
comptime BLOCK_VECTORS = BLOCK // WIDTH


def decode_attention_heads[
    head_dim: Int, group: Int
](
    qkv_ptr: Pointer[Scalar[DType.float32], ImmutAnyOrigin],
    slope_ptr: Pointer[Scalar[DType.float32], ImmutAnyOrigin],
    pos: Int,
    k_ptr: Pointer[Scalar[DType.float32], MutAnyOrigin],
    v_ptr: Pointer[Scalar[DType.float32], MutAnyOrigin],
    out_ptr: Pointer[Scalar[DType.float32], MutAnyOrigin],
    kv_heads: Int,
    capacity: Int,
    first: Int,
    last: Int,
):
    """For kv heads [first, last): stores the new token's key and value rows (from
    qkv[q | k | v]) at `pos` of the [kv head, capacity, head_dim] caches, then writes the
    attention output of the query heads that read them into out[n_heads * head_dim].
    """
    comptime assert head_dim % WIDTH == 0, "head_dim must be a multiple of the SIMD width"
    comptime vectors = head_dim // WIDTH
    var q_width = kv_heads * group * head_dim
    var kv_width = kv_heads * head_dim
    var scale = Float32(1.0) / sqrt(Float32(head_dim))

    def task(kv: Int) {imm}:
        var keys = k_ptr.unsafe_offset(kv * capacity * head_dim)
        var values = v_ptr.unsafe_offset(kv * capacity * head_dim)
        var new_key = qkv_ptr.unsafe_offset(q_width + kv * head_dim)
        var new_value = qkv_ptr.unsafe_offset(q_width + kv_width + kv * head_dim)
        comptime for i in range(vectors):
            keys.unsafe_store(
                pos * head_dim + i * WIDTH, new_key.unsafe_load[width=WIDTH](i * WIDTH)
            )
            values.unsafe_store(
                pos * head_dim + i * WIDTH, new_value.unsafe_load[width=WIDTH](i * WIDTH)
            )

        var query = Array[SIMD[DType.float32, WIDTH], group * vectors](fill=0)
        var acc = Array[SIMD[DType.float32, WIDTH], group * vectors](fill=0)
        var slope = Array[Float32, group](fill=0)
        var running_max = Array[Float32, group](fill=LOWEST)
        var total = Array[Float32, group](fill=0)
        comptime for h in range(group):
            var head = kv * group + h
            slope[h] = slope_ptr.unsafe_load(head)
            comptime for i in range(vectors):
                query[h * vectors + i] = (
                    qkv_ptr.unsafe_load[width=WIDTH](head * head_dim + i * WIDTH) * scale
                )
        var lane = SIMD[DType.float32, WIDTH](0)
        comptime for i in range(WIDTH):
            lane[i] = Float32(i)

        # Keys go in blocks: each block's scores are kept (in registers and L1), so the
        # softmax's max, exp and sum run on whole vectors instead of one key at a time.
        var scores = Array[Float32, group * BLOCK](fill=LOWEST)
        var score = scores.unsafe_ptr()
        for first in range(0, pos + 1, BLOCK):
            var count = min(BLOCK, pos + 1 - first)
            comptime for v in range(group * BLOCK_VECTORS):
                score.unsafe_store(v * WIDTH, SIMD[DType.float32, WIDTH](LOWEST))
            for b in range(count):
                var key = keys.unsafe_offset((first + b) * head_dim)
                comptime for h in range(group):
                    var dot = SIMD[DType.float32, WIDTH](0)
                    comptime for i in range(vectors):
                        dot = key.unsafe_load[width=WIDTH](i * WIDTH).fma(
                            query[h * vectors + i], dot
                        )
                    score.unsafe_store(h * BLOCK + b, dot.reduce_add())

            comptime for h in range(group):
                var block_max = LOWEST
                comptime for v in range(BLOCK_VECTORS):
                    var distance = lane + Float32(first + v * WIDTH - pos)
                    var biased = distance.fma(
                        slope[h], score.unsafe_load[width=WIDTH](h * BLOCK + v * WIDTH)
                    )
                    score.unsafe_store(h * BLOCK + v * WIDTH, biased)
                    block_max = max(block_max, biased.reduce_max())
                var new_max = max(running_max[h], block_max)
                var shrink = exp(running_max[h] - new_max)
                total[h] *= shrink
                comptime for i in range(vectors):
                    acc[h * vectors + i] *= shrink
                running_max[h] = new_max
                comptime for v in range(BLOCK_VECTORS):
                    var weights = exp(
                        score.unsafe_load[width=WIDTH](h * BLOCK + v * WIDTH) - new_max
                    )
                    score.unsafe_store(h * BLOCK + v * WIDTH, weights)
                    total[h] += weights.reduce_add()

            for b in range(count):
                var value = values.unsafe_offset((first + b) * head_dim)
                comptime for h in range(group):
                    var weight = score.unsafe_load(h * BLOCK + b)
                    comptime for i in range(vectors):
                        acc[h * vectors + i] = value.unsafe_load[width=WIDTH](i * WIDTH).fma(
                            weight, acc[h * vectors + i]
                        )

        comptime for h in range(group):
            var inverse = Float32(1.0) / total[h]
            comptime for i in range(vectors):
                out_ptr.unsafe_store(
                    (kv * group + h) * head_dim + i * WIDTH, acc[h * vectors + i] * inverse
                )

    for kv in range(first, last):
        task(kv)


@extensibility.register("replit_decode_attention")
struct ReplitDecodeAttention:
    """Out[1, n_heads * head_dim] = attention of the new token in qkv[1, q | k | v] at `position`.
    """

    @staticmethod
    def execute[
        target: StaticString, head_dim: Int, group: Int
    ](
        output: OutputTensor[dtype=DType.float32, rank=2, ...],
        qkv: InputTensor[dtype=DType.float32, rank=2, ...],
        slopes: InputTensor[dtype=DType.float32, rank=1, ...],
        position: InputTensor[dtype=DType.int64, rank=1, ...],
        k_cache: MutableInputTensor[dtype=DType.float32, rank=3, ...],
        v_cache: MutableInputTensor[dtype=DType.float32, rank=3, ...],
        ctx: DeviceContext,
    ) raises:
        comptime if target != "cpu":
            raise Error("replit_decode_attention runs on the CPU only")
        var kv_heads = k_cache.dim_size(0)
        var capacity = k_cache.dim_size(1)
        var q_width = kv_heads * group * head_dim
        var pos = Int(position.unsafe_ptr().unsafe_load(0))
        if (
            qkv.dim_size(0) != 1
            or qkv.dim_size(1) != q_width + 2 * kv_heads * head_dim
            or output.dim_size(1) != q_width
            or slopes.dim_size(0) != kv_heads * group
            or k_cache.dim_size(2) != head_dim
            or v_cache.dim_size(0) != kv_heads
            or v_cache.dim_size(1) != capacity
            or v_cache.dim_size(2) != head_dim
        ):
            raise Error("replit_decode_attention: shapes do not match the heads and cache")
        if pos < 0 or pos >= capacity:
            raise Error("replit_decode_attention: position outside the cache")
        var qkv_ptr = qkv.unsafe_ptr()
        var slope_ptr = slopes.unsafe_ptr()
        var k_ptr = k_cache.unsafe_ptr()
        var v_ptr = v_cache.unsafe_ptr()
        var out_ptr = output.unsafe_ptr()

        def heads(first: Int, last: Int) {imm}:
            decode_attention_heads[head_dim, group](
                qkv_ptr, slope_ptr, pos, k_ptr, v_ptr, out_ptr, kv_heads, capacity, first, last
            )

        if 2 * kv_heads * (pos + 1) * head_dim * 4 <= SERIAL_BYTES:
            heads(0, kv_heads)
        else:
            parallel_chunks(heads, kv_heads, 1)
