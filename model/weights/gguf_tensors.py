"""Reads the tensors of a GGUF file (the `token_embd.weight` / `blk.N.*` names of the GGUF
files MAX's original Replit pipeline used, any quantization the `gguf` package can
dequantize) by their Hugging Face names."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import gguf
import numpy as np
from gguf.quants import dequantize

from model.weights.encodings import BFLOAT16, FLOAT, GGML_TYPES
from model.weights.files import WeightsError
from model.weights.tensors import hf_name


def read_gguf(path: Path) -> Iterator[tuple[str, np.ndarray, str]]:
    """Yields (name, array, what it holds): plain tensors as they lie, Q8_0 and Q4_0 as their
    uint8 block rows, other quantizations dequantized to float32 (their GGUF type's name)."""
    blocks = {kind: name for name, kind in GGML_TYPES.items()}
    try:
        reader = gguf.GGUFReader(str(path), mode="c")  # writable views, as for safetensors
    except Exception as error:  # the reader raises assorted errors on corrupt files
        raise WeightsError(f"{path}: not a readable GGUF file ({error})") from None
    for tensor in reader.tensors:
        name = hf_name(tensor.name)
        if name is None:
            continue
        shape = tuple(int(n) for n in reversed(tensor.shape))
        kind = tensor.tensor_type
        plain = {
            gguf.GGMLQuantizationType.BF16: np.uint16,
            gguf.GGMLQuantizationType.F32: np.float32,
            gguf.GGMLQuantizationType.F16: np.float16,
        }
        if kind in plain or kind in blocks:
            dtype = np.dtype(plain.get(kind, np.uint8))
            if kind in blocks:
                shape = (math.prod(shape[:-1]), int(tensor.n_bytes) // math.prod(shape[:-1]))
            array = np.asarray(tensor.data).view(dtype).reshape(shape)
            holds = blocks.get(kind, BFLOAT16 if kind == gguf.GGMLQuantizationType.BF16 else FLOAT)
        else:
            array, holds = dequantize(tensor.data, kind).reshape(shape), kind.name
        yield name, array, holds


def gguf_block_format(path: Path) -> str | None:
    """The block encoding (q8_0, q4_0) that most of a GGUF file's matrices are stored in, if
    any: the encoding that runs them as they lie, with no requantization."""
    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as error:  # the reader raises assorted errors on corrupt files
        raise WeightsError(f"{path}: not a readable GGUF file ({error})") from None
    formats = {kind: name for name, kind in GGML_TYPES.items()}
    stored = Counter(formats[t.tensor_type] for t in reader.tensors if t.tensor_type in formats)
    return stored.most_common(1)[0][0] if stored else None
