"""Weights quantized at load, kept on disk so that a restart reads blocks instead of quantizing.

`gguf.quants` quantizes the 3B model's float weights in 30-45 s for Q8_0 (about 15 s for Q4_0)
on two cores, and a server would pay that at every start; reading the same blocks back costs
what reading a checkpoint of their size does. An entry is a directory next to the compiled
models holding one GGUF file of the quantized tensors, the layout a GGUF checkpoint in the
encoding has, so that it loads by the same code, and a record of the checkpoint files it came
from. The key is those files' paths, sizes and modification times, the encoding and the gguf
package's version: a changed checkpoint is quantized again, and entries whose files changed or
went are dropped as stale. At most KEPT_ENTRIES are kept, the least recently used going first
(each is gigabytes for the real model).

A cache that cannot be written (a full disk, a read-only directory) or an entry that cannot be
read costs a quantization, never the load.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import gguf
import numpy as np

from model.config import ModelConfig
from model.progress import READING, LoadProgress, ProgressCallback, ignore_progress
from model.weights.files import WeightsError, weight_files
from model.weights.gguf_export import add_tensors
from model.weights.loading import load_weights
from model.weights.tensors import BLOCK_FORMATS

log = logging.getLogger(__name__)

# Where a load's weights came from (`Engine.weights_source`).
FROM_CHECKPOINT = "checkpoint"  # as the files hold them, or converted without blocks
QUANTIZED_NOW = "quantized at load"
FROM_CACHE = "quantized cache"

KEPT_ENTRIES = 4
# A partial entry this old was left by a process that died writing it (writing the real
# model's takes seconds).
ABANDONED_SECONDS = 3600
WEIGHTS_FILE = "model.gguf"
SOURCE_FILE = "source.json"  # the checkpoint files an entry was quantized from


def _file_facts(files: list[Path]) -> list[list]:
    facts = []
    for file in files:
        stat = file.stat()
        facts.append([str(file.resolve()), stat.st_size, stat.st_mtime_ns])
    return facts


def _key(facts: list[list], encoding: str) -> str:
    record = {"files": facts, "encoding": encoding, "gguf": version("gguf")}
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:32]


def _entries(cache_dir: Path) -> list[Path]:
    return [
        path
        for path in cache_dir.glob("*.*")
        if path.is_dir() and path.suffix[1:] in BLOCK_FORMATS and (path / SOURCE_FILE).is_file()
    ]


def _stale(entry: Path) -> bool:
    try:
        record = json.loads((entry / SOURCE_FILE).read_text())
        facts = _file_facts([Path(name) for name, _, _ in record["files"]])
    except (OSError, ValueError, KeyError, TypeError):
        return True
    return facts != record["files"]


def _prune(cache_dir: Path, keep: Path) -> None:
    """Drops stale entries and abandoned partial ones, then the least recently used beyond
    KEPT_ENTRIES."""
    for staging in cache_dir.glob(".*.tmp"):
        if time.time() - staging.stat().st_mtime > ABANDONED_SECONDS:
            shutil.rmtree(staging, ignore_errors=True)
    live = []
    for entry in _entries(cache_dir):
        if entry != keep and _stale(entry):
            shutil.rmtree(entry, ignore_errors=True)
        else:
            live.append(entry)
    live.sort(key=lambda entry: (entry == keep, entry.stat().st_mtime), reverse=True)
    for entry in live[KEPT_ENTRIES:]:
        shutil.rmtree(entry, ignore_errors=True)


def _save(entry: Path, weights: dict[str, np.ndarray], encoding: str, facts: list[list]) -> None:
    """Writes the entry in a directory of its own and renames it into place whole."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=entry.parent, prefix=f".{entry.name}.", suffix=".tmp"))
    try:
        writer = gguf.GGUFWriter(str(staging / WEIGHTS_FILE), "mpt")
        add_tensors(writer, weights, encoding)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        (staging / SOURCE_FILE).write_text(json.dumps({"files": facts}) + "\n")
        os.replace(staging, entry)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load_quantized_weights(
    model_dir: Path,
    config: ModelConfig,
    encoding: str,
    cache_dir: Path,
    *,
    progress: ProgressCallback = ignore_progress,
) -> tuple[dict[str, np.ndarray], str]:
    """`load_weights`, reading the blocks a float checkpoint was quantized to at an earlier
    start where `cache_dir` has them, and saving them there for the next start otherwise.

    Returns the weights and where they came from: FROM_CHECKPOINT, QUANTIZED_NOW or FROM_CACHE.
    """
    if encoding not in BLOCK_FORMATS:
        weights = load_weights(model_dir, config, encoding, progress=progress).tensors
        return weights, FROM_CHECKPOINT
    facts = _file_facts(weight_files(Path(model_dir)))
    entry = Path(cache_dir) / f"{_key(facts, encoding)}.{encoding}"
    if (entry / WEIGHTS_FILE).is_file():
        message = f"reading the {encoding} weights quantized at an earlier start: {entry}"
        progress(LoadProgress(READING, message))
        try:
            weights = load_weights(entry, config, encoding, progress=progress).tensors
        except WeightsError as error:
            progress(LoadProgress(READING, f"quantizing again: unreadable {entry} ({error})"))
            shutil.rmtree(entry, ignore_errors=True)
        else:
            os.utime(entry)  # most recently used
            return weights, FROM_CACHE
    loaded = load_weights(model_dir, config, encoding, progress=progress)
    if not loaded.quantized:  # a GGUF in the encoding's blocks: read as it lies, nothing to keep
        return loaded.tensors, FROM_CHECKPOINT
    progress(LoadProgress(READING, f"saving the {encoding} weights for the next start: {entry}"))
    try:
        _save(entry, loaded.tensors, encoding, facts)
        _prune(entry.parent, keep=entry)
    except OSError as error:
        log.warning("could not keep the %s weights in %s: %s", encoding, entry, error)
    return loaded.tensors, QUANTIZED_NOW
