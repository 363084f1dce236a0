"""The choices that shape the compiled graphs beyond the config: the weights' dtype and block
format, and which CPU kernels trace them."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from max.dtype import DType

from model.weights.tensors import BLOCK_FORMATS

# Blocks up to this size (the last-level cache here) run as one `replit_decode_layer` call: a
# small model's ops' launches cost about as much as their arithmetic, so one call per block
# decodes faster. A full-width block (hundreds of MB) measured slower as one call, so it keeps
# one op per product.
FUSED_BLOCK_BYTES = 32 << 20


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
    # `replit_gemv`, which stream the 3B model's shapes faster.
    bfloat16_dot: bool = field(default_factory=cpu_has_bf16_dot)
    # The weight matrices in these llama.cpp blocks (a key of BLOCK_FORMATS), the norms in
    # float32; None: every weight in the graph's dtype.
    block_format: str | None = None


DEFAULT_GRAPH = GraphOptions()


def encoding_graph(encoding: str, options: GraphOptions) -> tuple[DType, GraphOptions]:
    """The graph dtype and options for weights in `encoding` (one of
    `model.weights.encodings.ENCODINGS`): a block encoding keeps its float tensors (the norms)
    in float32."""
    if encoding in BLOCK_FORMATS:
        return DType.float32, replace(options, block_format=encoding)
    return (DType.bfloat16 if encoding == "bfloat16" else DType.float32), options
