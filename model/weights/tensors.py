"""The checkpoint's tensors: their names in each format, their shapes, and how names map.

Hugging Face checkpoints (safetensors, PyTorch `.bin`) name MPT tensors `transformer.*`; GGUF
files, as llama.cpp writes and reads them, name the same tensors `token_embd.weight` and
`blk.N.*`. The graph, every loader and the GGUF exporter take names and shapes from here, so
that a tensor is spelled once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from model.config import ModelConfig

EMBEDDING = "transformer.wte.weight"  # also the output head: the embedding is tied
FINAL_NORM = "transformer.norm_f.weight"


@dataclass(frozen=True)
class BlockTensor:
    """One tensor of a transformer block: its name after the block prefix in each format."""

    hf: str
    gguf: str


# A block's tensors, in the order `replit_decode_layer` takes them.
BLOCK_TENSORS = (
    BlockTensor("norm_1.weight", "attn_norm.weight"),
    BlockTensor("attn.Wqkv.weight", "attn_qkv.weight"),
    BlockTensor("attn.out_proj.weight", "attn_output.weight"),
    BlockTensor("norm_2.weight", "ffn_norm.weight"),
    BlockTensor("ffn.up_proj.weight", "ffn_up.weight"),
    BlockTensor("ffn.down_proj.weight", "ffn_down.weight"),
)
BLOCK_WEIGHTS = tuple(tensor.hf for tensor in BLOCK_TENSORS)
_TOP_LEVEL_GGUF = {EMBEDDING: "token_embd.weight", FINAL_NORM: "output_norm.weight"}
_GGUF_BLOCK = re.compile(r"blk\.(\d+)\.(.+)")
_HF_BLOCK = re.compile(r"transformer\.blocks\.(\d+)\.(.+)")


def block_tensor_name(layer: int, name: str) -> str:
    """The Hugging Face name of block `layer`'s tensor `name` (one of BLOCK_WEIGHTS)."""
    return f"transformer.blocks.{layer}.{name}"


def block_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """One block's tensors by their name in BLOCK_WEIGHTS, with their [out, in] shapes."""
    d, ffn = config.d_model, config.ffn_hidden_size
    shapes = ((d,), (config.qkv_size, d), (d, d), (d,), (ffn, d), (d, ffn))
    return dict(zip(BLOCK_WEIGHTS, shapes, strict=True))


def weight_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor the model reads, by its Hugging Face name, with its [out, in] shape."""
    shapes: dict[str, tuple[int, ...]] = {EMBEDDING: (config.vocab_size, config.d_model)}
    block = block_shapes(config)
    for layer in range(config.n_layers):
        shapes |= {block_tensor_name(layer, name): shape for name, shape in block.items()}
    shapes[FINAL_NORM] = (config.d_model,)
    return shapes


def gguf_name(hf_name: str) -> str:
    """The GGUF name of a Hugging Face tensor name (KeyError for a name the model lacks)."""
    if hf_name in _TOP_LEVEL_GGUF:
        return _TOP_LEVEL_GGUF[hf_name]
    match = _HF_BLOCK.fullmatch(hf_name)
    if match is None:
        raise KeyError(hf_name)
    layer, rest = match.groups()
    tensor = next((t for t in BLOCK_TENSORS if t.hf == rest), None)
    if tensor is None:
        raise KeyError(hf_name)
    return f"blk.{layer}.{tensor.gguf}"


def hf_name(gguf_tensor_name: str) -> str | None:
    """The Hugging Face name of a GGUF tensor, or None for a tensor the model does not read."""
    for name, gguf_tensor in _TOP_LEVEL_GGUF.items():
        if gguf_tensor == gguf_tensor_name:
            return name
    match = _GGUF_BLOCK.fullmatch(gguf_tensor_name)
    if match is None:
        return None
    layer, rest = match.groups()
    tensor = next((t for t in BLOCK_TENSORS if t.gguf == rest), None)
    return None if tensor is None else block_tensor_name(int(layer), tensor.hf)


# Weights per block of the GGUF block quantizations.
QUANT_BLOCK = 32


@dataclass(frozen=True)
class BlockFormat:
    """A llama.cpp block quantization the kernels read: 32 weights a block, a float16 scale
    first, then the quants of `bits` bits each (`model/graph/kernels/quantized.mojo` has the
    layout).
    """

    name: str  # the encoding's name, GGUF's type name in lower case
    bits: int

    @property
    def block_bytes(self) -> int:
        return 2 + QUANT_BLOCK * self.bits // 8


BLOCK_FORMATS = {fmt.name: fmt for fmt in (BlockFormat("q8_0", 8), BlockFormat("q4_0", 4))}


def block_tensor_shape(shape: tuple[int, ...], fmt: BlockFormat) -> tuple[int, int]:
    """The uint8 shape [N, K / 32 * block bytes] that a [N, K] matrix takes in `fmt`'s blocks."""
    rows, k = shape
    if k % QUANT_BLOCK != 0:
        raise ValueError(f"a row of {k} weights is not a whole number of {QUANT_BLOCK}-blocks")
    return rows, k // QUANT_BLOCK * fmt.block_bytes


def stored_shapes(config: ModelConfig, fmt: BlockFormat) -> dict[str, tuple[int, ...]]:
    """Every tensor the model reads with its matrices in `fmt`'s blocks (the tied embedding
    too: it is the largest matrix a decode step reads), norms as they are."""
    return {
        name: shape if len(shape) == 1 else block_tensor_shape(shape, fmt)
        for name, shape in weight_shapes(config).items()
    }
