"""How a graph is traced: one set of ops per path, chosen once by `graph_ops`.

The GPU, and the CPU with its kernels off, trace with MAX's built-in ops only. On the CPU
the decode graph, fixed to one new token, uses the kernels of `model/graph/kernels/`: every
`x @ W.T` there is a one-row product, which MAX's built-in matmul runs far below memory
bandwidth, so they call `replit_gemv` (or, for bfloat16 weights on a CPU with AVX-512 BF16,
`replit_matmul`, whose bfloat16 dot products stream them faster), and each layer's attention
is one `replit_decode_attention` call instead of about ten small ops. A small model's block is
one `replit_decode_layer` call instead (its products, attention, layer norms and GELU), since
launching an op costs about as much as its arithmetic. Prefill keeps the built-in ops (faster
for many rows) except for the one-row logits head and, with bfloat16 weights, the products,
which `replit_matmul` computes from the weights as they lie. Weights in llama.cpp's Q8_0 or
Q4_0 blocks (`GraphOptions.block_format`) take the kernels of
`model/graph/kernels/quantized.mojo` for every product and the embedding's rows, in every
graph. The verify graph's products are all `replit_matmul`, which reads each weight once for
all rows: a run of a few rows then costs about one decode step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from max.driver import Device
from max.dtype import DType
from max.graph import BufferValue, DeviceRef, TensorValue, Weight, ops

from model.config import ModelConfig
from model.graph.block_layout import grouped_rows, grouped_shape
from model.graph.kernel_ops import (
    KERNEL_HEAD_DIM_MULTIPLE,
    KERNELS_DIR,
    decode_attention,
    decode_layer,
    dequantize,
    gemv,
    matmul,
    quantized_gemv,
    quantized_matmul,
)
from model.graph.options import GraphOptions
from model.weights.tensors import (
    BLOCK_FORMATS,
    BLOCK_WEIGHTS,
    EMBEDDING,
    BlockFormat,
    block_shapes,
    block_tensor_name,
    stored_shapes,
    weight_shapes,
)


@dataclass(frozen=True)
class LayerCache:
    """Where a layer's new tokens go: cache rows [start, end), their positions relative to
    every key (`rel_pos`, -inf where masked), and the layer's K and V buffers."""

    start: TensorValue
    end: TensorValue
    rel_pos: TensorValue
    k: BufferValue
    v: BufferValue


class BuiltinOps:
    """A graph of MAX's built-in ops only: the GPU's, and the CPU's with the kernels off.

    The subclasses below replace what the CPU kernels do better; which one traces a graph is
    chosen once, by `graph_ops`, so no method asks which path it is on.
    """

    def __init__(self, config: ModelConfig, dtype: DType, device: DeviceRef) -> None:
        self.config = config
        self.dtype = dtype
        self.device = device
        self.shapes = weight_shapes(config)
        self.weights: dict[str, Weight] = {}

    def weight(self, name: str) -> Weight:
        """One Weight per name: the tied embedding is read twice but stored once."""
        if name not in self.weights:
            self.weights[name] = Weight(name, self.dtype, self.shapes[name], self.device)
        return self.weights[name]

    def linear(self, x: TensorValue, name: str, *, one_row: bool = False) -> TensorValue:
        """x @ W.T with W in the checkpoint's dtype; activations stay float32 between ops.

        `one_row` says that x has a single row even when the graph's sequence length is
        symbolic (the logits head), for the paths that run such products differently.
        """
        w = self.weight(name)
        if self.dtype == DType.float32:
            return x @ w.T
        return ops.cast(ops.cast(x, self.dtype) @ w.T, DType.float32)

    def embed(self, tokens: TensorValue) -> TensorValue:
        """The embedding's rows of `tokens`, in float32."""
        return ops.cast(ops.gather(self.weight(EMBEDDING), tokens, axis=0), DType.float32)

    def layer_norm(self, x: TensorValue, name: str) -> TensorValue:
        gamma = ops.cast(self.weight(name), DType.float32)
        beta = ops.constant(0.0, DType.float32, self.device).broadcast_to(gamma.shape)
        return ops.layer_norm(x, gamma, beta, self.config.layer_norm_eps)

    def attention(self, x: TensorValue, layer: int, cache: LayerCache) -> TensorValue:
        c = self.config
        hd, kvh, group = c.head_dim, c.kv_n_heads, c.n_heads // c.kv_n_heads
        seq = x.shape[0]
        qkv = self.linear(x, block_tensor_name(layer, "attn.Wqkv.weight"))
        kv_width = kvh * hd
        q = qkv[:, : c.d_model]
        k = qkv[:, c.d_model : c.d_model + kv_width].reshape([seq, kvh, hd])
        v = qkv[:, c.d_model + kv_width :].reshape([seq, kvh, hd])

        # The caches are [kv head, position, head_dim]: each head's keys and values are
        # contiguous rows, which the value product reads as they lie and the key product takes
        # as its transposed operand, instead of a three-axis permute of the whole cache.
        new_rows = (slice(cache.start, cache.end), seq)
        at_new_rows = [slice(None), new_rows, slice(None)]
        ops.buffer_store_slice(cache.k, k.permute([1, 0, 2]), at_new_rows)
        ops.buffer_store_slice(cache.v, v.permute([1, 0, 2]), at_new_rows)
        total = cache.rel_pos.shape[1]
        all_rows = (slice(0, cache.end), total)
        keys = ops.buffer_load(cache.k)[:, all_rows, :]  # [kvh, total, hd]
        values = ops.buffer_load(cache.v)[:, all_rows, :]

        # Query head i reads kv head i // group: group the query heads under their kv head so
        # one batched matmul per kv head serves the whole group without repeating K/V.
        q = q.reshape([seq, kvh, group, hd]).permute([1, 2, 0, 3]).reshape([kvh, group * seq, hd])
        scores = q @ keys.transpose(1, 2)  # [kvh, group*seq, total]
        scores = scores.reshape([kvh, group, seq, total]) * (1.0 / math.sqrt(hd))
        slopes = ops.constant(c.alibi_slopes(), DType.float32, self.device).reshape(
            [kvh, group, 1, 1]
        )
        # rel_pos holds j - i for visible keys and -inf for future ones: ALiBi and the causal
        # mask in one tensor (slopes are positive, so -inf stays -inf).
        probs = ops.softmax(scores + slopes * cache.rel_pos)
        out = probs.reshape([kvh, group * seq, total]) @ values
        out = out.reshape([kvh, group, seq, hd]).permute([2, 0, 1, 3]).reshape([seq, c.d_model])
        return self.linear(out, block_tensor_name(layer, "attn.out_proj.weight"))

    def block(self, h: TensorValue, layer: int, cache: LayerCache) -> TensorValue:
        """The residual stream after block `layer`."""
        a = self.layer_norm(h, block_tensor_name(layer, "norm_1.weight"))
        h = h + self.attention(a, layer, cache)
        return h + self.mlp(self.layer_norm(h, block_tensor_name(layer, "norm_2.weight")), layer)

    def mlp(self, x: TensorValue, layer: int) -> TensorValue:
        up = self.linear(x, block_tensor_name(layer, "ffn.up_proj.weight"))
        return self.linear(ops.gelu(up), block_tensor_name(layer, "ffn.down_proj.weight"))


class KernelProductOps(BuiltinOps):
    """The CPU prefill graph: products by the kernels where they beat MAX's matmul.

    One-row products (every product of a decode graph, and prefill's logits head) stream the
    weights through `replit_gemv`, or `replit_matmul` for bfloat16 weights where the CPU has
    `vdpbf16ps`; bfloat16 products of many rows run `replit_matmul` on the weights as they lie.
    """

    def __init__(
        self,
        config: ModelConfig,
        dtype: DType,
        device: DeviceRef,
        *,
        one_row: bool,
        bfloat16_dot: bool,
    ) -> None:
        super().__init__(config, dtype, device)
        self.one_row = one_row  # every activation has exactly one row (a decode graph)
        self.bfloat16_dot = bfloat16_dot

    def linear(self, x: TensorValue, name: str, *, one_row: bool = False) -> TensorValue:
        w = self.weight(name)
        if self.one_row or one_row:
            if self.dtype == DType.bfloat16 and self.bfloat16_dot:
                return matmul(x, w)
            return gemv(x, w)
        if self.dtype == DType.float32:
            return x @ w.T
        # bfloat16 weights as they lie: about twice MAX's float32 matmul where the CPU has
        # AVX-512 BF16 (3B shapes, 128-512 rows). Widening the weights with `ops.cast`
        # instead let MAX fold a float32 copy of every weight at load, three times the
        # bfloat16 model's memory.
        return matmul(x, w)


class KernelDecodeOps(KernelProductOps):
    """The CPU decode graph: one-row products and each layer's attention by the kernels."""

    def __init__(
        self, config: ModelConfig, dtype: DType, device: DeviceRef, *, bfloat16_dot: bool
    ) -> None:
        super().__init__(config, dtype, device, one_row=True, bfloat16_dot=bfloat16_dot)

    def attention(self, x: TensorValue, layer: int, cache: LayerCache) -> TensorValue:
        qkv = self.linear(x, block_tensor_name(layer, "attn.Wqkv.weight"))
        out = decode_attention(qkv, cache.start.reshape([1]), cache.k, cache.v, self.config)
        return self.linear(out, block_tensor_name(layer, "attn.out_proj.weight"))


class FusedBlockOps(KernelDecodeOps):
    """The CPU decode graph of a small model: each block is one `replit_decode_layer` call."""

    def block(self, h: TensorValue, layer: int, cache: LayerCache) -> TensorValue:
        weights = [self.weight(block_tensor_name(layer, name)) for name in BLOCK_WEIGHTS]
        return decode_layer(h, weights, cache.start.reshape([1]), cache.k, cache.v, self.config)


class KernelVerifyOps(KernelProductOps):
    """The CPU verify graph: a few rows, every product by `replit_matmul`.

    MAX's matmul and `replit_gemv` read the weights once per row or run far below memory
    bandwidth at a few rows; `replit_matmul` streams each weight once for all of them, in
    float32 as in bfloat16, so checking a draft costs about what one decode step does.
    Attention keeps the built-in ops, as prefill does: its cost at a few rows is small.
    """

    def __init__(
        self, config: ModelConfig, dtype: DType, device: DeviceRef, *, bfloat16_dot: bool
    ) -> None:
        super().__init__(config, dtype, device, one_row=False, bfloat16_dot=bfloat16_dot)

    def linear(self, x: TensorValue, name: str, *, one_row: bool = False) -> TensorValue:
        return matmul(x, self.weight(name))


def decodes_whole_blocks(
    config: ModelConfig, dtype: DType, device: Device, options: GraphOptions
) -> bool:
    """Whether each block of a decode step is one kernel call (a small model on the CPU)."""
    ops_ = graph_ops(config, dtype, DeviceRef.from_device(device), options, decode=True)
    return isinstance(ops_, FusedBlockOps)


class QuantizedKernelOps(KernelProductOps):
    """The CPU graphs of weights in Q8_0 or Q4_0 blocks (uint8 tensors of `stored_shapes`, in
    the kernels' groups of 16 rows: `model.graph.block_layout`).

    Every product reads the blocks as they lie: `replit_qgemv` for one row, `replit_qmatmul`
    for many (it unpacks one panel of rows per core at a time, so no widened copy of a weight
    exists); the embedding's rows of the tokens are widened by `replit_dequantize`. A decode
    graph's attention is the decode attention kernel where the head size allows.
    """

    def __init__(
        self,
        config: ModelConfig,
        device: DeviceRef,
        block_format: BlockFormat,
        *,
        one_row: bool,
    ) -> None:
        super().__init__(config, DType.float32, device, one_row=one_row, bfloat16_dot=False)
        self.block_format = block_format
        self.shapes = stored_shapes(config, block_format)
        self.kernel_attention = one_row and config.head_dim % KERNEL_HEAD_DIM_MULTIPLE == 0

    def weight(self, name: str) -> Weight:
        if name not in self.weights:
            shape = self.shapes[name]
            if len(shape) == 1:
                self.weights[name] = Weight(name, DType.float32, shape, self.device)
            else:
                self.weights[name] = Weight(name, DType.uint8, grouped_shape(shape), self.device)
        return self.weights[name]

    def linear(self, x: TensorValue, name: str, *, one_row: bool = False) -> TensorValue:
        w, bits = self.weight(name), self.block_format.bits
        product = quantized_gemv if self.one_row or one_row else quantized_matmul
        y = product(x, w, bits)
        rows = self.shapes[name][0]
        return y if rows == grouped_rows(rows) else y[:, :rows]

    def embed(self, tokens: TensorValue) -> TensorValue:
        w = self.weight(EMBEDDING)
        return dequantize(w, tokens, self.config.d_model, self.block_format.bits)

    def attention(self, x: TensorValue, layer: int, cache: LayerCache) -> TensorValue:
        if self.kernel_attention:
            return KernelDecodeOps.attention(self, x, layer, cache)
        return super().attention(x, layer, cache)


def graph_ops(
    config: ModelConfig,
    dtype: DType,
    device: DeviceRef,
    options: GraphOptions,
    *,
    decode: bool,
    verify: bool = False,
) -> BuiltinOps:
    """The one choice of how a graph is traced, made from the config, device and options."""
    if options.block_format is not None:
        if not module_extensions(device, options):
            raise ValueError(
                f"{options.block_format} weights need the CPU kernels (the CPU, kernels on)"
            )
        block_format = BLOCK_FORMATS[options.block_format]
        return QuantizedKernelOps(config, device, block_format, one_row=decode)
    if not module_extensions(device, options):
        return BuiltinOps(config, dtype, device)
    if verify:
        return KernelVerifyOps(config, dtype, device, bfloat16_dot=options.bfloat16_dot)
    if not decode or config.head_dim % KERNEL_HEAD_DIM_MULTIPLE != 0:
        # The decode attention kernel works in whole SIMD vectors of a head.
        return KernelProductOps(
            config, dtype, device, one_row=decode, bfloat16_dot=options.bfloat16_dot
        )
    block_bytes = sum(math.prod(shape) for shape in block_shapes(config).values())
    if block_bytes * dtype.size_in_bytes <= options.fused_block_bytes:
        return FusedBlockOps(config, dtype, device, bfloat16_dot=options.bfloat16_dot)
    return KernelDecodeOps(config, dtype, device, bfloat16_dot=options.bfloat16_dot)


def module_extensions(device: DeviceRef, options: GraphOptions) -> list[Path]:
    """The kernel packages that `build_graphs` uses; `session.compile` needs them too."""
    return [KERNELS_DIR] if options.cpu_kernels and device.is_cpu() else []
