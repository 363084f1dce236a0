"""Reads a safetensors file as views of its mapping, checking every offset against the file."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from model.weights.encodings import BFLOAT16, FLOAT
from model.weights.files import WeightsError

_SAFETENSORS_DTYPES = {
    "F32": np.float32,
    "F16": np.float16,
    "BF16": np.uint16,
    "F64": np.float64,
}


def read_safetensors(path: Path) -> Iterator[tuple[str, np.ndarray, str]]:
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
