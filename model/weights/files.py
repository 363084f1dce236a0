"""Which files of a model directory the weights come from, checked to be all there."""

from __future__ import annotations

import json
from pathlib import Path

from model.gguf_metadata import model_gguf


class WeightsError(ValueError):
    """A weight file that is missing, unreadable or does not match the config."""


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
