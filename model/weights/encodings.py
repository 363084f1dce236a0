"""The encodings weights are held in, and the conversion of a read tensor to one of them.

bfloat16 is carried as its raw 16-bit pattern in a uint16 array, because NumPy has no
bfloat16 type. The block encodings (q8_0, q4_0) carry each weight matrix as the uint8 rows of
llama.cpp's blocks (`model.weights.tensors.BLOCK_FORMATS`) and the norms as float32: float
weights are quantized as they load (by `gguf.quants`, as llama.cpp's own converter does), and
GGUF tensors already in the encoding's blocks are taken as they lie, never widened.
"""

from __future__ import annotations

import gguf
import numpy as np
from gguf.quants import dequantize, quantize

from model.weights.tensors import BLOCK_FORMATS, QUANT_BLOCK

ENCODINGS = ("float32", "bfloat16", *BLOCK_FORMATS)
# The GGUF tensor type of each block encoding.
GGML_TYPES = {
    "q8_0": gguf.GGMLQuantizationType.Q8_0,
    "q4_0": gguf.GGMLQuantizationType.Q4_0,
}
# What the readers say a yielded array holds, besides a block encoding's name: float values
# (any float dtype), or bfloat16 bits in uint16.
FLOAT = "float"
BFLOAT16 = "bfloat16"


def float32_to_bfloat16_bits(x: np.ndarray) -> np.ndarray:
    """Rounds to nearest bfloat16 (ties to even); NaN stays NaN."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    return np.where(np.isnan(x), np.uint16(0x7FC0), rounded)


def bfloat16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def _float32(array: np.ndarray, holds: str, shape: tuple[int, ...]) -> np.ndarray:
    """The values of a read array in float32, whatever it holds."""
    if holds == BFLOAT16:
        return bfloat16_bits_to_float32(array)
    if holds in GGML_TYPES:
        return dequantize(array, GGML_TYPES[holds]).reshape(shape)
    return np.ascontiguousarray(array, dtype=np.float32)


def quantizes(holds: str, encoding: str, shape: tuple[int, ...]) -> bool:
    """Whether `convert` makes blocks of an array: a matrix in a block encoding that it does
    not hold already (norms stay float32)."""
    return encoding in GGML_TYPES and len(shape) == 2 and holds != encoding


def convert(array: np.ndarray, holds: str, encoding: str, shape: tuple[int, ...]) -> np.ndarray:
    """A read array (of logical `shape`) as `encoding` stores it: norms stay float32 in the
    block encodings, and a matrix already in the encoding's blocks is kept as it is."""
    if holds == encoding:
        return array
    if encoding == BFLOAT16:
        return float32_to_bfloat16_bits(_float32(array, holds, shape))
    if not quantizes(holds, encoding, shape):
        return _float32(array, holds, shape)
    if holds not in (FLOAT, BFLOAT16):
        raise ValueError(
            f"is stored as {holds.upper()}; {encoding} weights load from float tensors or "
            f"{encoding.upper()} blocks, not from another quantization"
        )
    return quantize(_float32(array, holds, shape), GGML_TYPES[encoding])


def logical_shape(array: np.ndarray, holds: str) -> tuple[int, ...]:
    """The [N, K] shape of the weights an array holds (uint8 block rows hold K / 32 blocks)."""
    if holds not in GGML_TYPES:
        return tuple(array.shape)
    rows, row_bytes = array.shape
    return rows, row_bytes // BLOCK_FORMATS[holds].block_bytes * QUANT_BLOCK
