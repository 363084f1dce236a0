"""The Mojo kernels of `model/graph/kernels/` as MAX graph ops, for the CPU graphs.

A graph that calls any of them must list KERNELS_DIR in its `custom_extensions`; MAX builds
the sources into a package when the graph is compiled.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from max.dtype import DType
from max.graph import BufferValue, TensorType, TensorValue, ops

from model.config import ModelConfig

KERNELS_DIR = Path(__file__).parent / "kernels"
# The decode attention kernel works in whole SIMD vectors of a head (16 float32 with AVX-512);
# other head sizes take the graph's own ops.
KERNEL_HEAD_DIM_MULTIPLE = 16


def kernels_digest() -> str:
    """A digest of the kernel sources, so that a changed kernel invalidates compiled models."""
    digest = hashlib.sha256()
    for path in sorted(KERNELS_DIR.rglob("*.mojo")):
        digest.update(path.relative_to(KERNELS_DIR).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def gemv(x: TensorValue, w: TensorValue) -> TensorValue:
    """x[M, K] @ w[N, K].T in float32 by the CPU kernel `replit_gemv` (w float32 or bfloat16).

    Built for M == 1; the graph calling it must list KERNELS_DIR in its `custom_extensions`.
    """
    out_type = TensorType(DType.float32, [x.shape[0], w.shape[0]], x.device)
    return ops.custom("replit_gemv", x.device, [x, w], [out_type])[0].tensor


# What `replit_matmul`'s scratch adds to each row of x (ROW_PAD in model/graph/kernels/matmul.mojo).
MATMUL_ROW_PAD = 32


def matmul(x: TensorValue, w: TensorValue, *, native: bool | None = None) -> TensorValue:
    """x[M, K] @ w[N, K].T in float32 by the CPU kernel `replit_matmul` (w float32 or bfloat16).

    Built for the many rows of prefill; reads w as it lies, with x copied into a scratch
    tensor in w's dtype. `native=False` makes bfloat16 take the widening path even where the
    CPU has `vdpbf16ps` (for tests). The graph calling it must list KERNELS_DIR in its
    `custom_extensions`.
    """
    m, k = x.shape
    out_types = [
        TensorType(DType.float32, [m, w.shape[0]], x.device),
        TensorType(w.dtype, [m, k + MATMUL_ROW_PAD], x.device),
    ]
    parameters = {} if native is None else {"native": native}
    return ops.custom("replit_matmul", x.device, [x, w], out_types, parameters=parameters)[0].tensor


def decode_attention(
    qkv: TensorValue,
    position: TensorValue,
    k_cache: BufferValue,
    v_cache: BufferValue,
    config: ModelConfig,
) -> TensorValue:
    """One new token's attention by the CPU kernel `replit_decode_attention`.

    qkv is the token's [1, q | k | v] row and position its [1] cache index on the host; the
    kernel stores k and v at that index, so the caches are updated in place. Returns
    [1, d_model]. The graph calling it must list KERNELS_DIR in its `custom_extensions`.
    """
    device = qkv.device
    slopes = ops.constant(config.alibi_slopes(), DType.float32, device)
    out_type = TensorType(DType.float32, [1, config.d_model], device)
    parameters = {"head_dim": config.head_dim, "group": config.n_heads // config.kv_n_heads}
    values = [qkv, slopes, position, k_cache, v_cache]
    return ops.inplace_custom(
        "replit_decode_attention", device, values, [out_type], parameters=parameters
    )[0].tensor


def decode_layer(
    h: TensorValue,
    weights: list[TensorValue],
    position: TensorValue,
    k_cache: BufferValue,
    v_cache: BufferValue,
    config: ModelConfig,
) -> TensorValue:
    """One block of a decode step by the CPU kernel `replit_decode_layer`.

    h is the token's [1, d_model] residual stream, `weights` the block's tensors in the order
    of BLOCK_WEIGHTS and position its [1] cache index on the host; the kernel stores the
    token's key and value rows at that index, so the caches are updated in place. Returns the
    new [1, d_model]. The graph calling it must list KERNELS_DIR in its `custom_extensions`.
    """
    device = h.device
    constants = ops.constant([*config.alibi_slopes(), config.layer_norm_eps], DType.float32, device)
    scratch = 2 * config.d_model + config.qkv_size + config.ffn_hidden_size
    out_types = [
        TensorType(DType.float32, [1, config.d_model], device),
        TensorType(DType.float32, [scratch], device),
    ]
    parameters = {"head_dim": config.head_dim, "group": config.n_heads // config.kv_n_heads}
    values = [h, *weights, constants, position, k_cache, v_cache]
    return ops.inplace_custom(
        "replit_decode_layer", device, values, out_types, parameters=parameters
    )[0].tensor


def _block_product(kernel: str, x: TensorValue, w: TensorValue, bits: int) -> TensorValue:
    out_type = TensorType(DType.float32, [x.shape[0], w.shape[0]], x.device)
    return ops.custom(kernel, x.device, [x, w], [out_type], parameters={"bits": bits})[0].tensor


def quantized_gemv(x: TensorValue, w: TensorValue, bits: int) -> TensorValue:
    """x[M, K] @ W.T in float32 by `replit_qgemv`, W uint8 [N, K / 32 * block bytes] in Q8_0
    (`bits` 8) or Q4_0 (`bits` 4) blocks, in the kernels' groups of 16 rows
    (`model.graph.block_layout`): [M, N] with N a multiple of 16. Built for M == 1; the graph
    calling it must list KERNELS_DIR in its `custom_extensions`.
    """
    return _block_product("replit_qgemv", x, w, bits)


def quantized_matmul(x: TensorValue, w: TensorValue, bits: int) -> TensorValue:
    """x[M, K] @ W.T as `quantized_gemv`, by `replit_qmatmul` for the many rows of prefill
    (each core unpacks a panel of W's rows at a time for int8 tiles). The graph calling it
    must list KERNELS_DIR in its `custom_extensions`.
    """
    return _block_product("replit_qmatmul", x, w, bits)


def dequantize(w: TensorValue, tokens: TensorValue, k: int, bits: int) -> TensorValue:
    """The rows of W (as `quantized_gemv` takes it) that int64 `tokens` [M] name, widened to
    float32 [M, K] by `replit_dequantize`. The graph calling it must list KERNELS_DIR in its
    `custom_extensions`.
    """
    out_type = TensorType(DType.float32, [tokens.shape[0], k], w.device)
    return ops.custom(
        "replit_dequantize", w.device, [w, tokens], [out_type], parameters={"bits": bits}
    )[0].tensor
