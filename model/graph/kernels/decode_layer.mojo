"""`replit_decode_layer`: one transformer block of a decode step, as a single MAX op.

Why it exists: a decode step of a small model costs less in arithmetic than in running ops.
MAX spends about 9 us launching each op on this CPU, and a block built from ops is about ten
of them (two layer norms, four products, attention, GELU, two residual adds). Here the block
is one op whose seven phases (each product with its GELU or residual add, the attention heads,
the layer norms) run on every core from one launch (`parallel_phases`), in float32 whatever
the weights' dtype. The graph uses it for blocks small enough that those costs matter (the
demo model's decode graph: 1.46 -> 0.97 ms a step in float32).

Per block (MPT): a = LN1(h); q|k|v = a @ Wqkv.T; h += attention(q, k, v) @ Wout.T;
h += GELU(LN2(h) @ Wup.T) @ Wdown.T, with layer norms without bias and the exact (erf) GELU.
"""

import extensibility
from extensibility import InputTensor, OutputTensor
from extensibility.managed_tensor_slice import _MutableInputTensor as MutableInputTensor
from max.gpu.host import DeviceContext
from std.math import ceildiv, erf, sqrt
from std.sys.info import num_physical_cores, simd_width_of, size_of

from .decode_attention import decode_attention_heads
from .gemv import gemv_chunk, gemv_rows
from .parallel import MAX_PHASES, parallel_phases

comptime WIDTH = simd_width_of[DType.float32]()
comptime F32Ptr = Pointer[Scalar[DType.float32], MutAnyOrigin]


def _layer_norm[
    wtype: DType
](
    x: Pointer[Scalar[DType.float32], ImmutAnyOrigin],
    gamma: Pointer[Scalar[wtype], ImmutAnyOrigin],
    eps: Float32,
    normed: F32Ptr,
    d: Int,
):
    """Writes normed = (x - mean) / sqrt(variance + eps) * gamma over x[:d]."""
    var total = Float32(0)
    for i in range(d):
        total += x.unsafe_load(i)
    var mean = total / Float32(d)
    var squares = Float32(0)
    for i in range(d):
        var centered = x.unsafe_load(i) - mean
        squares += centered * centered
    var inverse = Float32(1.0) / sqrt(squares / Float32(d) + eps)
    for i in range(d):
        normed.unsafe_store(
            i, (x.unsafe_load(i) - mean) * inverse * gamma.unsafe_load(i).cast[DType.float32]()
        )


def _gelu(x: F32Ptr, n: Int):
    """x = x * (1 + erf(x / sqrt(2))) / 2 in place."""
    var vector_end = n - n % WIDTH
    for i in range(0, vector_end, WIDTH):
        var v = x.unsafe_load[width=WIDTH](i)
        x.unsafe_store(i, v * (erf(v * Float32(0.7071067811865476)) + 1) * Float32(0.5))
    for i in range(vector_end, n):
        var v = x.unsafe_load(i)
        x.unsafe_store(i, v * (erf(v * Float32(0.7071067811865476)) + 1) * Float32(0.5))


def _add(x: F32Ptr, y: Pointer[Scalar[DType.float32], ImmutAnyOrigin], n: Int):
    """x += y over n values."""
    for i in range(n):
        x.unsafe_store(i, x.unsafe_load(i) + y.unsafe_load(i))


@extensibility.register("replit_decode_layer")
struct ReplitDecodeLayer:
    """Output[1, d] = the block applied to h[1, d] for the token at `position`, whose key and value
    rows it stores in the caches. `scratch` holds the block's intermediate vectors; the graph
    allocates it and never reads it.
    """

    @staticmethod
    def execute[
        target: StaticString, head_dim: Int, group: Int
    ](
        output: OutputTensor[dtype=DType.float32, rank=2, ...],
        scratch: OutputTensor[dtype=DType.float32, rank=1, ...],
        h: InputTensor[dtype=DType.float32, rank=2, ...],
        norm_1: InputTensor[rank=1, ...],
        w_qkv: InputTensor[rank=2, ...],
        w_out: InputTensor[rank=2, ...],
        norm_2: InputTensor[rank=1, ...],
        w_up: InputTensor[rank=2, ...],
        w_down: InputTensor[rank=2, ...],
        constants: InputTensor[dtype=DType.float32, rank=1, ...],
        position: InputTensor[dtype=DType.int64, rank=1, ...],
        k_cache: MutableInputTensor[dtype=DType.float32, rank=3, ...],
        v_cache: MutableInputTensor[dtype=DType.float32, rank=3, ...],
        ctx: DeviceContext,
    ) raises:
        comptime if target != "cpu":
            raise Error("replit_decode_layer runs on the CPU only")
        var d = h.dim_size(1)
        var qkv_size = w_qkv.dim_size(0)
        var ffn = w_up.dim_size(0)
        var kv_heads = k_cache.dim_size(0)
        var capacity = k_cache.dim_size(1)
        var n_heads = kv_heads * group
        var pos = Int(position.unsafe_ptr().unsafe_load(0))
        if (
            h.dim_size(0) != 1
            or output.dim_size(1) != d
            or n_heads * head_dim != d
            or qkv_size != d + 2 * kv_heads * head_dim
            or norm_1.dim_size(0) != d
            or norm_2.dim_size(0) != d
            or w_qkv.dim_size(1) != d
            or w_out.dim_size(0) != d
            or w_out.dim_size(1) != d
            or w_up.dim_size(1) != d
            or w_down.dim_size(0) != d
            or w_down.dim_size(1) != ffn
            or scratch.dim_size(0) != 2 * d + qkv_size + ffn
            or constants.dim_size(0) != n_heads + 1
            or k_cache.dim_size(2) != head_dim
            or v_cache.dim_size(0) != kv_heads
            or v_cache.dim_size(1) != capacity
            or v_cache.dim_size(2) != head_dim
        ):
            raise Error("replit_decode_layer: shapes do not match the block and cache")
        if pos < 0 or pos >= capacity:
            raise Error("replit_decode_layer: position outside the cache")

        # constants = [ALiBi slope of each head | layer norm epsilon]
        var slopes = constants.unsafe_ptr()
        var eps = slopes.unsafe_load(n_heads)
        var h_ptr = h.unsafe_ptr()
        var out_ptr = output.unsafe_ptr()
        var normed = scratch.unsafe_ptr()
        var qkv = normed.unsafe_offset(d)
        var attended = qkv.unsafe_offset(qkv_size)
        var hidden = attended.unsafe_offset(d)

        var cores = num_physical_cores()
        var qkv_chunk = gemv_chunk(qkv_size, d * size_of[w_qkv.dtype](), cores)
        var out_chunk = gemv_chunk(d, d * size_of[w_out.dtype](), cores)
        var up_chunk = gemv_chunk(ffn, d * size_of[w_up.dtype](), cores)
        var down_chunk = gemv_chunk(d, ffn * size_of[w_down.dtype](), cores)

        def phase(step: Int, i: Int) {imm}:
            if step == 0:
                _layer_norm(h_ptr, norm_1.unsafe_ptr(), eps, normed, d)
            elif step == 1:
                var first = i * qkv_chunk
                var last = min(first + qkv_chunk, qkv_size)
                gemv_rows(normed, w_qkv.unsafe_ptr(), qkv, 1, qkv_size, d, first, last)
            elif step == 2:
                decode_attention_heads[head_dim, group](
                    qkv,
                    slopes,
                    pos,
                    k_cache.unsafe_ptr(),
                    v_cache.unsafe_ptr(),
                    attended,
                    kv_heads,
                    capacity,
                    i,
                    i + 1,
                )
            elif step == 3:
                var first = i * out_chunk
                var last = min(first + out_chunk, d)
                gemv_rows(attended, w_out.unsafe_ptr(), out_ptr, 1, d, d, first, last)
                _add(out_ptr.unsafe_offset(first), h_ptr.unsafe_offset(first), last - first)
            elif step == 4:
                _layer_norm(out_ptr, norm_2.unsafe_ptr(), eps, normed, d)
            elif step == 5:
                var first = i * up_chunk
                var last = min(first + up_chunk, ffn)
                gemv_rows(normed, w_up.unsafe_ptr(), hidden, 1, ffn, d, first, last)
                _gelu(hidden.unsafe_offset(first), last - first)
            else:
                # The attention's inputs are spent: their space holds the down product.
                var first = i * down_chunk
                var last = min(first + down_chunk, d)
                gemv_rows(hidden, w_down.unsafe_ptr(), qkv, 1, d, ffn, first, last)
                _add(out_ptr.unsafe_offset(first), qkv.unsafe_offset(first), last - first)

        var chunks = Array[Int, MAX_PHASES](fill=0)
        chunks[0] = 1
        chunks[1] = ceildiv(qkv_size, qkv_chunk)
        chunks[2] = kv_heads
        chunks[3] = ceildiv(d, out_chunk)
        chunks[4] = 1
        chunks[5] = ceildiv(ffn, up_chunk)
        chunks[6] = ceildiv(d, down_chunk)
        parallel_phases(phase, chunks)
