"""The Replit Code (MPT) forward pass as one MAX Graph, with an in-place KV cache.

One graph serves both prefill and decode: `seq_len` (new tokens), `total_len` (cached plus new
tokens) and the cache capacity are symbolic, so a single compiled model runs any prompt length
and any `--max-length`. Each layer's K and V live in preallocated buffers that the graph writes
at `[start, start + seq_len)` and reads back as `[0, total_len)`; nothing is concatenated or
copied back to the host between steps. Only the last position's logits leave the graph.

On the CPU a second graph, fixed to one new token, serves decode with the kernels of
`model/kernels/`: every `x @ W.T` there is a one-row product, which MAX's built-in matmul runs
far below memory bandwidth, so they call `replit_gemv` (or, for bfloat16 weights on a CPU
with AVX-512 BF16, `replit_matmul`, whose bfloat16 dot products stream them faster), and each
layer's attention is one
`replit_decode_attention` call instead of about ten small ops. A small model's block is one
`replit_decode_layer` call instead (its products, attention, layer norms and GELU), since
launching an op costs about as much as its arithmetic. Prefill keeps the built-in ops (faster
for many rows) except for the one-row logits head and, with bfloat16 weights, the products,
which `replit_matmul` computes from the weights as they lie. Both graphs live in one `Module`,
compiled together and bound to the same weights.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

from max.dtype import DType
from max.graph import (
    BufferType,
    BufferValue,
    DeviceRef,
    Graph,
    Module,
    TensorType,
    TensorValue,
    Weight,
    ops,
)

from model.config import ModelConfig

# Bump when the graph below changes in a way the compiled-model cache must notice.
GRAPH_VERSION = 9

# Mojo source of the custom ops; MAX builds it into a package when the graph is compiled.
KERNELS_DIR = Path(__file__).parent / "kernels"
# The decode attention kernel works in whole SIMD vectors of a head (16 float32 with AVX-512);
# other head sizes take the graph's own ops.
KERNEL_HEAD_DIM_MULTIPLE = 16
# Blocks up to this size (the last-level cache here) run as one `replit_decode_layer` call:
# the demo model's decode graph went from 1.46 to 0.97 ms a step so, where its ops' launches
# had cost about as much as its arithmetic. A full-width block (hundreds of MB) measured
# slower as one call (bfloat16 slice step 44.7 -> 48.9 ms), so it keeps one op per product.
FUSED_BLOCK_BYTES = 32 << 20
PREFILL_GRAPH = "replit_mpt"
DECODE_GRAPH = "replit_mpt_decode"


def cpu_has_bf16_dot() -> bool:
    """Whether this CPU has AVX-512 BF16, where `replit_matmul` runs bfloat16 weights at about
    twice the float32 rate and one-row products faster than `replit_gemv`; elsewhere it widens
    them in registers (about MAX's float32 rate).
    """
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return any(
                line.startswith("flags") and "avx512_bf16" in line.split() for line in cpuinfo
            )
    except OSError:
        return False


@dataclass(frozen=True)
class GraphOptions:
    """The choices that shape the compiled graphs beyond the config, dtype and device.

    They are part of the compiled-model key, so that models built with other choices (for
    comparison, or to test each decode path on a small model) never share a cache entry.
    """

    cpu_kernels: bool = True  # the Mojo kernels of KERNELS_DIR on the CPU; else built-in ops
    fused_block_bytes: int = FUSED_BLOCK_BYTES  # decode blocks up to this size as one kernel
    # One-row products of bfloat16 weights by `replit_matmul`'s `vdpbf16ps` tiles rather than
    # `replit_gemv`: 3B shapes, 4 copies each, alternating: 23-28 -> 30-32 GB/s.
    bfloat16_dot: bool = field(default_factory=cpu_has_bf16_dot)


DEFAULT_GRAPH = GraphOptions()


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


# What `replit_matmul`'s scratch adds to each row of x (ROW_PAD in model/kernels/matmul.mojo).
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


# A block's tensors, as `replit_decode_layer` takes them.
BLOCK_WEIGHTS = (
    "norm_1.weight",
    "attn.Wqkv.weight",
    "attn.out_proj.weight",
    "norm_2.weight",
    "ffn.up_proj.weight",
    "ffn.down_proj.weight",
)


def cache_type(config: ModelConfig, device: DeviceRef) -> BufferType:
    """One layer's K or V cache: [kv_n_heads, capacity, head_dim] float32, capacity symbolic."""
    return BufferType(DType.float32, [config.kv_n_heads, "capacity", config.head_dim], device)


def weight_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor the graph reads, by its Hugging Face name, with its [out, in] shape."""
    d, ffn = config.d_model, config.ffn_hidden_size
    shapes: dict[str, tuple[int, ...]] = {"transformer.wte.weight": (config.vocab_size, d)}
    for n in range(config.n_layers):
        p = f"transformer.blocks.{n}."
        shapes[p + "norm_1.weight"] = (d,)
        shapes[p + "attn.Wqkv.weight"] = (config.qkv_size, d)
        shapes[p + "attn.out_proj.weight"] = (d, d)
        shapes[p + "norm_2.weight"] = (d,)
        shapes[p + "ffn.up_proj.weight"] = (ffn, d)
        shapes[p + "ffn.down_proj.weight"] = (d, ffn)
    shapes["transformer.norm_f.weight"] = (d,)
    return shapes


class _Builder:
    """Holds what every layer needs while the graph is traced."""

    def __init__(
        self,
        config: ModelConfig,
        dtype: DType,
        device: DeviceRef,
        options: GraphOptions,
        *,
        one_row: bool,
    ) -> None:
        self.config = config
        self.dtype = dtype
        self.device = device
        self.one_row = one_row  # every activation has exactly one row (the decode graph)
        # Products and decode's attention may use the CPU kernels.
        self.kernels = bool(module_extensions(device, options))
        self.bfloat16_dot = self.kernels and options.bfloat16_dot
        self.shapes = weight_shapes(config)
        self.weights: dict[str, Weight] = {}
        # The CPU decode graph's attention may use the kernels, and small blocks whole.
        self.decode_kernels = (
            one_row and self.kernels and config.head_dim % KERNEL_HEAD_DIM_MULTIPLE == 0
        )
        block_params = sum(
            math.prod(self.shapes[f"transformer.blocks.0.{w}"]) for w in BLOCK_WEIGHTS
        )
        self.fused_blocks = (
            self.decode_kernels and block_params * dtype.size_in_bytes <= options.fused_block_bytes
        )

    def weight(self, name: str) -> Weight:
        """One Weight per name: the tied embedding is read twice but stored once."""
        if name not in self.weights:
            self.weights[name] = Weight(name, self.dtype, self.shapes[name], self.device)
        return self.weights[name]

    def linear(self, x: TensorValue, name: str, *, one_row: bool = False) -> TensorValue:
        """x @ W.T with W in the checkpoint's dtype; activations stay float32 between ops.

        `one_row` says that x has a single row even when the graph's sequence length is
        symbolic; such products go to the GEMV kernel when it is enabled.
        """
        w = self.weight(name)
        if self.kernels and (self.one_row or one_row):
            if self.dtype == DType.bfloat16 and self.bfloat16_dot:
                return matmul(x, w)
            return gemv(x, w)
        if self.dtype == DType.float32:
            return x @ w.T
        if self.kernels:
            # bfloat16 weights as they lie: about twice MAX's float32 matmul where the CPU has
            # AVX-512 BF16 (3B shapes, 128-512 rows). Widening the weights with `ops.cast`
            # instead let MAX fold a float32 copy of every weight at load (19.3 GB resident
            # for the 6.6 GB model).
            return matmul(x, w)
        return ops.cast(ops.cast(x, self.dtype) @ w.T, DType.float32)

    def layer_norm(self, x: TensorValue, name: str) -> TensorValue:
        gamma = ops.cast(self.weight(name), DType.float32)
        beta = ops.constant(0.0, DType.float32, self.device).broadcast_to(gamma.shape)
        return ops.layer_norm(x, gamma, beta, self.config.layer_norm_eps)

    def attention(
        self,
        x: TensorValue,
        layer: int,
        start: TensorValue,
        end: TensorValue,
        rel_pos: TensorValue,
        k_cache: BufferValue,
        v_cache: BufferValue,
    ) -> TensorValue:
        c = self.config
        hd, kvh, group = c.head_dim, c.kv_n_heads, c.n_heads // c.kv_n_heads
        seq = x.shape[0]
        qkv = self.linear(x, f"transformer.blocks.{layer}.attn.Wqkv.weight")
        out_proj = f"transformer.blocks.{layer}.attn.out_proj.weight"
        if self.decode_kernels:
            return self.linear(
                decode_attention(qkv, start.reshape([1]), k_cache, v_cache, c), out_proj
            )
        kv_width = kvh * hd
        q = qkv[:, : c.d_model]
        k = qkv[:, c.d_model : c.d_model + kv_width].reshape([seq, kvh, hd])
        v = qkv[:, c.d_model + kv_width :].reshape([seq, kvh, hd])

        # The caches are [kv head, position, head_dim]: each head's keys and values are
        # contiguous rows, which the value product reads as they lie and the key product takes
        # as its transposed operand, instead of a three-axis permute of the whole cache.
        new_rows = (slice(start, end), seq)
        ops.buffer_store_slice(k_cache, k.permute([1, 0, 2]), [slice(None), new_rows, slice(None)])
        ops.buffer_store_slice(v_cache, v.permute([1, 0, 2]), [slice(None), new_rows, slice(None)])
        total = rel_pos.shape[1]
        all_rows = (slice(0, end), total)
        keys = ops.buffer_load(k_cache)[:, all_rows, :]  # [kvh, total, hd]
        values = ops.buffer_load(v_cache)[:, all_rows, :]

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
        probs = ops.softmax(scores + slopes * rel_pos)
        out = probs.reshape([kvh, group * seq, total]) @ values
        out = out.reshape([kvh, group, seq, hd]).permute([2, 0, 1, 3]).reshape([seq, c.d_model])
        return self.linear(out, out_proj)

    def block(
        self,
        h: TensorValue,
        layer: int,
        start: TensorValue,
        end: TensorValue,
        rel_pos: TensorValue,
        k_cache: BufferValue,
        v_cache: BufferValue,
    ) -> TensorValue:
        """The residual stream after block `layer`; one kernel call in a small model's decode."""
        p = f"transformer.blocks.{layer}."
        if self.fused_blocks:
            weights = [self.weight(p + name) for name in BLOCK_WEIGHTS]
            return decode_layer(h, weights, start.reshape([1]), k_cache, v_cache, self.config)
        a = self.layer_norm(h, p + "norm_1.weight")
        h = h + self.attention(a, layer, start, end, rel_pos, k_cache, v_cache)
        return h + self.mlp(self.layer_norm(h, p + "norm_2.weight"), layer)

    def mlp(self, x: TensorValue, layer: int) -> TensorValue:
        p = f"transformer.blocks.{layer}.ffn."
        return self.linear(ops.gelu(self.linear(x, p + "up_proj.weight")), p + "down_proj.weight")


def module_extensions(device: DeviceRef, options: GraphOptions) -> list[Path]:
    """The kernel packages that `build_module` uses; `session.compile` needs them too."""
    return [KERNELS_DIR] if options.cpu_kernels and device.is_cpu() else []


def build_module(
    config: ModelConfig, dtype: DType, device: DeviceRef, options: GraphOptions
) -> Module:
    """The graphs to compile together: PREFILL_GRAPH always, DECODE_GRAPH on the CPU.

    On a GPU (or with `cpu_kernels` off) the prefill graph serves decode too. Call it on the
    thread that imported MAX: MLIR's current context is per thread, and `Module` (unlike
    `Graph`) does not enter MAX's default context on other threads.
    """
    module = Module()
    build_graph(config, dtype, device, options, module=module)
    if module_extensions(device, options):
        decode = build_graph(config, dtype, device, options, module=module, decode=True)
        # What `session.compile(graph)` does for a lone graph: put the kernel declarations the
        # graph already loaded into the module, so the compiler does not load every kernel
        # package again (about a third of a small module's compile time here).
        library = getattr(decode, "_kernel_library", None)
        if library is not None:
            library._analysis.seed_kernel_decls(module.mlir_module)
    return module


def build_graph(
    config: ModelConfig,
    dtype: DType,
    device: DeviceRef,
    options: GraphOptions,
    *,
    module: Module | None = None,
    decode: bool = False,
) -> Graph:
    """Traces the model for `config` with weights in `dtype` on `device`.

    Inputs: `tokens` [seq_len] int64; `start` (host scalar) the cache position of the first new
    token; `rel_pos` [seq_len, total_len] float32 (key minus query position, -inf when masked);
    then the K and V cache buffers of each layer, [kv_n_heads, capacity, head_dim] float32.
    Output: float32 logits [vocab_size] of the last new token. With `decode`, seq_len is 1 and
    the graph is named DECODE_GRAPH (whose `rel_pos` the kernel path leaves unread). With
    `options.cpu_kernels` on the CPU, products and decode's attention run the CPU kernels.
    """
    b = _Builder(config, dtype, device, options, one_row=decode)
    seq_len: int | str = 1 if decode else "seq_len"
    input_types = [
        TensorType(DType.int64, [seq_len], device),
        TensorType(DType.int64, [1], DeviceRef.CPU()),
        TensorType(DType.float32, [seq_len, "total_len"], device),
        *[cache_type(config, device)] * (2 * config.n_layers),
    ]
    with Graph(
        DECODE_GRAPH if decode else PREFILL_GRAPH,
        input_types=input_types,
        custom_extensions=module_extensions(device, options),
        module=module,
    ) as graph:
        tokens, start, rel_pos, *caches = graph.inputs
        tokens, start, rel_pos = tokens.tensor, start.tensor, rel_pos.tensor
        end = start + ops.shape_to_tensor([tokens.shape[0]])
        start, end = start.reshape([]), end.reshape([])

        h = ops.cast(ops.gather(b.weight("transformer.wte.weight"), tokens, axis=0), DType.float32)
        for n in range(config.n_layers):
            h = b.block(h, n, start, end, rel_pos, caches[2 * n].buffer, caches[2 * n + 1].buffer)

        last = b.layer_norm(h[(slice(-1, None), 1), :], "transformer.norm_f.weight")
        logits = b.linear(last, "transformer.wte.weight", one_row=True)
        graph.output(logits.reshape([config.vocab_size]))
    return graph
