"""Loads a checkpoint's tensors by their Hugging Face names, checked against the config.

Formats: safetensors and PyTorch `.bin` (each one file, or shards with an index), and GGUF
(the `token_embd.weight` / `blk.N.*` names of the GGUF files MAX's original Replit pipeline
used, any quantization the `gguf` package can dequantize). `.bin` files are read without
torch. bfloat16 is carried as its raw 16-bit pattern in a uint16 array, because NumPy has no
bfloat16 type.

The block encodings (q8_0, q4_0) carry each weight matrix as the uint8 rows of llama.cpp's
blocks (`model.checkpoint.BLOCK_FORMATS`) and the norms as float32: float weights are
quantized as they load (by `gguf.quants`, as llama.cpp's own converter does), and GGUF tensors
already in the encoding's blocks are taken as they lie, never widened.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterator
from pathlib import Path

import gguf
import numpy as np
from gguf.quants import dequantize, quantize

from model.checkpoint import BLOCK_FORMATS, QUANT_BLOCK, hf_name, stored_shapes, weight_shapes
from model.config import ModelConfig
from model.gguf_metadata import model_gguf
from model.progress import ProgressCallback, ignore_progress, reading_weights
from model.torch_checkpoint import TorchCheckpointError, read_torch_checkpoint

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
# Reading is reported in steps of this many percent: a line on stderr each, and one
# `$/progress` report.
PROGRESS_STEP_PERCENT = 5


class WeightsError(ValueError):
    """A weight file that is missing, unreadable or does not match the config."""


def float32_to_bfloat16_bits(x: np.ndarray) -> np.ndarray:
    """Rounds to nearest bfloat16 (ties to even); NaN stays NaN."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    return np.where(np.isnan(x), np.uint16(0x7FC0), rounded)


def bfloat16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


# ---------------------------------------------------------------- safetensors

_SAFETENSORS_DTYPES = {
    "F32": np.float32,
    "F16": np.float16,
    "BF16": np.uint16,
    "F64": np.float64,
}


def _read_safetensors(path: Path) -> Iterator[tuple[str, np.ndarray, str]]:
    """Yields (name, array, FLOAT or BFLOAT16) mapped from the file, validating every offset."""
    size = path.stat().st_size
    with path.open("rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise WeightsError(f"{path}: truncated safetensors file (no header)")
        (header_len,) = struct.unpack("<Q", prefix)
        if header_len > size - 8:
            raise WeightsError(f"{path}: truncated safetensors file (header runs past the end)")
        try:
            header = json.loads(f.read(header_len))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise WeightsError(f"{path}: corrupt safetensors header ({error})") from None
    data_start = 8 + header_len
    # Copy-on-write: the arrays are writable views of the page cache, which MAX binds as
    # they lie (it copies a read-only array); nothing writes to weights.
    data = np.memmap(path, dtype=np.uint8, mode="c")
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _SAFETENSORS_DTYPES.get(info.get("dtype"))
        if dtype is None:
            raise WeightsError(f"{path}: tensor {name} has unsupported dtype {info.get('dtype')}")
        begin, end = info["data_offsets"]
        shape = tuple(info["shape"])
        expected = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        if end - begin != expected or data_start + end > size:
            raise WeightsError(f"{path}: tensor {name} is truncated or corrupt")
        array = data[data_start + begin : data_start + end].view(dtype).reshape(shape)
        yield name, array, BFLOAT16 if info["dtype"] == "BF16" else FLOAT


def _sharded_files(index: Path) -> list[Path]:
    """The shards a `*.index.json` maps tensors to, each checked to exist."""
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
        names = sorted(set(weight_map.values()))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise WeightsError(f"{index}: not a valid weights index ({error})") from None
    files = [index.parent / name for name in names]
    for file in files:
        if not file.exists():
            raise WeightsError(f"{index}: shard {file.name} is missing")
    return files


def _checkpoint_files(model_dir: Path, index_name: str, pattern: str) -> list[Path]:
    index = model_dir / index_name
    return _sharded_files(index) if index.exists() else sorted(model_dir.glob(pattern))


# ----------------------------------------------------------------------- GGUF


def _read_gguf(path: Path) -> Iterator[tuple[str, np.ndarray, str]]:
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


# ------------------------------------------------------------------ torch .bin


def _read_torch_bin(path: Path) -> list[tuple[str, np.ndarray, str]]:
    """Views of the zip's stored tensors."""
    try:
        return [
            (name, array, BFLOAT16 if is_bf16 else FLOAT)
            for name, array, is_bf16 in read_torch_checkpoint(path)
        ]
    except TorchCheckpointError as error:
        raise WeightsError(str(error)) from None


# -------------------------------------------------------------------- loading


def weight_files(model_dir: Path) -> list[Path]:
    """The files the weights come from, in the order of preference safetensors > GGUF > .bin."""
    model_dir = Path(model_dir)
    safetensors = _checkpoint_files(model_dir, "model.safetensors.index.json", "*.safetensors")
    if safetensors:
        return safetensors
    gguf_file = model_gguf(model_dir)
    if gguf_file is not None:
        return [gguf_file]
    bins = _checkpoint_files(model_dir, "pytorch_model.bin.index.json", "pytorch_model*.bin")
    if bins:
        return bins
    raise WeightsError(
        f"{model_dir}: no weights found (expected *.safetensors, *.gguf or pytorch_model.bin)"
    )


def _tensors(model_dir: Path) -> Iterator[tuple[str, np.ndarray, str, Path]]:
    files = weight_files(model_dir)
    readers = {".gguf": _read_gguf, ".bin": _read_torch_bin}
    reader = readers.get(files[0].suffix, _read_safetensors)
    for file in files:
        for name, array, holds in reader(file):
            yield name, array, holds, file


def _float32(array: np.ndarray, holds: str, shape: tuple[int, ...]) -> np.ndarray:
    """The values of a read array in float32, whatever it holds."""
    if holds == BFLOAT16:
        return bfloat16_bits_to_float32(array)
    if holds in GGML_TYPES:
        return dequantize(array, GGML_TYPES[holds]).reshape(shape)
    return np.ascontiguousarray(array, dtype=np.float32)


def _quantizes(holds: str, encoding: str, shape: tuple[int, ...]) -> bool:
    """Whether `_convert` makes blocks of an array: a matrix in a block encoding that it does
    not hold already (norms stay float32)."""
    return encoding in GGML_TYPES and len(shape) == 2 and holds != encoding


def _convert(array: np.ndarray, holds: str, encoding: str, shape: tuple[int, ...]) -> np.ndarray:
    """A read array (of logical `shape`) as `encoding` stores it: norms stay float32 in the
    block encodings, and a matrix already in the encoding's blocks is kept as it is."""
    if holds == encoding:
        return array
    if encoding == BFLOAT16:
        return float32_to_bfloat16_bits(_float32(array, holds, shape))
    if not _quantizes(holds, encoding, shape):
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


def load_weights(
    model_dir: Path,
    config: ModelConfig,
    encoding: str = "float32",
    *,
    progress: ProgressCallback = ignore_progress,
    quantized: list[str] | None = None,
) -> dict[str, np.ndarray]:
    """Returns every tensor the graph needs, cast to `encoding` (bfloat16 as uint16 bits; in a
    block encoding, matrices as uint8 block rows of `stored_shapes` and norms as float32).

    A tensor that the file holds in `encoding` already is a writable copy-on-write view of the
    file's mapping: bound as it lies, the weights a restart finds in the page cache are neither
    copied nor held twice. The names of the tensors quantized as they loaded are appended to
    `quantized` (whether the blocks are worth keeping is known only once the tensors' types
    are).
    """
    if encoding not in ENCODINGS:
        raise WeightsError(f"unsupported quantization encoding {encoding!r}; use {ENCODINGS}")
    expected = weight_shapes(config)
    total = sum(path.stat().st_size for path in weight_files(Path(model_dir)))
    done, last_percent = 0, -PROGRESS_STEP_PERCENT
    found: dict[str, np.ndarray] = {}
    source: dict[str, Path] = {}
    if encoding in BLOCK_FORMATS:
        try:
            stored_shapes(config, BLOCK_FORMATS[encoding])
        except ValueError as error:
            raise WeightsError(
                f"{model_dir}: cannot store the weights as {encoding}: {error}"
            ) from None
    for name, array, holds, file in _tensors(Path(model_dir)):
        done += array.nbytes
        if name not in expected:
            continue  # e.g. wpe, unused with ALiBi
        shape = logical_shape(array, holds)
        if shape != expected[name]:
            raise WeightsError(
                f"{file}: tensor {name} has shape {shape}, "
                f"expected {expected[name]} from config.json"
            )
        try:
            converted = _convert(array, holds, encoding, shape)
        except ValueError as error:
            raise WeightsError(f"{file}: tensor {name} {error}") from None
        found[name] = converted
        if quantized is not None and _quantizes(holds, encoding, shape):
            quantized.append(name)
        source[name] = file
        update = reading_weights(done, total)
        if update.percent >= last_percent + PROGRESS_STEP_PERCENT:
            last_percent = update.percent
            progress(update)
    if last_percent != 100:  # headers and unused tensors are the rest of the files
        progress(reading_weights(total, total))
    missing = [name for name in expected if name not in found]
    if missing:
        files = ", ".join(sorted({str(p) for p in source.values()})) or str(model_dir)
        raise WeightsError(
            f"{files}: missing tensor {missing[0]}"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        )
    return found
