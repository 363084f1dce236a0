"""Loads a checkpoint's tensors by their Hugging Face names, checked against the config and
cast to an encoding (`model.weights.encodings`).

Formats: safetensors and PyTorch `.bin` (each one file, or shards with an index), and GGUF.
`.bin` files are read without torch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model.config import ModelConfig
from model.progress import ProgressCallback, ignore_progress, reading_weights
from model.weights.encodings import (
    BFLOAT16,
    ENCODINGS,
    FLOAT,
    convert,
    logical_shape,
    quantizes,
)
from model.weights.files import WeightsError, weight_files
from model.weights.gguf_tensors import read_gguf
from model.weights.safetensors import read_safetensors
from model.weights.tensors import BLOCK_FORMATS, stored_shapes, weight_shapes
from model.weights.torch_checkpoint import TorchCheckpointError, read_torch_checkpoint

# Reading is reported in steps of this many percent: a line on stderr each, and one
# `$/progress` report.
PROGRESS_STEP_PERCENT = 5


@dataclass
class LoadedWeights:
    """What a load produced: the tensors, and which of them were quantized as they loaded
    (whether the blocks are worth keeping is known only once the tensors' types are)."""

    tensors: dict[str, np.ndarray]
    quantized: list[str] = field(default_factory=list)


def _read_torch_bin(path: Path) -> list[tuple[str, np.ndarray, str]]:
    """Views of the zip's stored tensors."""
    try:
        return [
            (name, array, BFLOAT16 if is_bf16 else FLOAT)
            for name, array, is_bf16 in read_torch_checkpoint(path)
        ]
    except TorchCheckpointError as error:
        raise WeightsError(str(error)) from None


def _tensors(model_dir: Path) -> Iterator[tuple[str, np.ndarray, str, Path]]:
    files = weight_files(model_dir)
    readers = {".gguf": read_gguf, ".bin": _read_torch_bin}
    reader = readers.get(files[0].suffix, read_safetensors)
    for file in files:
        for name, array, holds in reader(file):
            yield name, array, holds, file


def load_weights(
    model_dir: Path,
    config: ModelConfig,
    encoding: str = "float32",
    *,
    progress: ProgressCallback = ignore_progress,
) -> LoadedWeights:
    """Every tensor the graph needs, cast to `encoding` (bfloat16 as uint16 bits; in a block
    encoding, matrices as uint8 block rows of `stored_shapes` and norms as float32).

    A tensor that the file holds in `encoding` already is a writable copy-on-write view of the
    file's mapping: bound as it lies, the weights a restart finds in the page cache are neither
    copied nor held twice.
    """
    if encoding not in ENCODINGS:
        raise WeightsError(f"unsupported quantization encoding {encoding!r}; use {ENCODINGS}")
    expected = weight_shapes(config)
    total = sum(path.stat().st_size for path in weight_files(Path(model_dir)))
    done, last_percent = 0, -PROGRESS_STEP_PERCENT
    loaded = LoadedWeights({})
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
            converted = convert(array, holds, encoding, shape)
        except ValueError as error:
            raise WeightsError(f"{file}: tensor {name} {error}") from None
        loaded.tensors[name] = converted
        if quantizes(holds, encoding, shape):
            loaded.quantized.append(name)
        source[name] = file
        update = reading_weights(done, total)
        if update.percent >= last_percent + PROGRESS_STEP_PERCENT:
            last_percent = update.percent
            progress(update)
    if last_percent != 100:  # headers and unused tensors are the rest of the files
        progress(reading_weights(total, total))
    missing = [name for name in expected if name not in loaded.tensors]
    if missing:
        files = ", ".join(sorted({str(p) for p in source.values()})) or str(model_dir)
        raise WeightsError(
            f"{files}: missing tensor {missing[0]}"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        )
    return loaded
