"""Weights quantized at load, kept on disk: read back exactly, and never a cause of failure.

The blocks read back are compared with a fresh `load_weights` of the checkpoint, which
quantizes by `gguf.quants` without any cache.
"""

import os
import shutil
import time

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from model.config import load_config
from model.weights.gguf_export import export_gguf_dir
from model.weights.loading import load_weights
from model.weights.quantized_cache import (
    ABANDONED_SECONDS,
    FROM_CACHE,
    FROM_CHECKPOINT,
    KEPT_ENTRIES,
    QUANTIZED_NOW,
    WEIGHTS_FILE,
    load_quantized_weights,
)


@pytest.fixture
def checkpoint(tiny_model_dir, tmp_path):
    """A copy of the tiny checkpoint that a test may change."""
    return shutil.copytree(tiny_model_dir, tmp_path / "model")


def entries(cache_dir):
    return sorted(path.name for path in cache_dir.iterdir() if path.is_dir())


def load(model_dir, cache_dir, encoding="q8_0"):
    return load_quantized_weights(model_dir, load_config(model_dir), encoding, cache_dir)


def assert_same_weights(weights, expected):
    assert weights.keys() == expected.keys()
    for name, array in expected.items():
        assert weights[name].dtype == array.dtype, name
        np.testing.assert_array_equal(weights[name], array, err_msg=name)


@pytest.mark.parametrize("encoding", ["q8_0", "q4_0"])
def test_a_float_checkpoint_is_quantized_once_and_read_back_after(checkpoint, tmp_path, encoding):
    cache = tmp_path / "cache"
    first, source = load(checkpoint, cache, encoding)
    assert source == QUANTIZED_NOW
    assert len(entries(cache)) == 1
    again, source = load(checkpoint, cache, encoding)
    assert source == FROM_CACHE
    direct = load_weights(checkpoint, load_config(checkpoint), encoding).tensors
    assert_same_weights(first, direct)
    assert_same_weights(again, direct)


def test_a_changed_checkpoint_is_quantized_again_and_its_old_entry_dropped(checkpoint, tmp_path):
    cache = tmp_path / "cache"
    load(checkpoint, cache)
    (old_entry,) = entries(cache)
    weights_file = checkpoint / "model.safetensors"
    tensors = load_file(weights_file)
    name = next(n for n, a in tensors.items() if a.ndim == 2)
    tensors[name] = tensors[name] * 2
    save_file(tensors, weights_file)
    changed, source = load(checkpoint, cache)
    assert source == QUANTIZED_NOW
    assert_same_weights(changed, load_weights(checkpoint, load_config(checkpoint), "q8_0").tensors)
    assert len(entries(cache)) == 1 and entries(cache) != [old_entry]


def test_an_unreadable_entry_is_quantized_again(checkpoint, tmp_path):
    cache = tmp_path / "cache"
    expected, _ = load(checkpoint, cache)
    (entry,) = entries(cache)
    stored = cache / entry / WEIGHTS_FILE
    stored.write_bytes(stored.read_bytes()[: stored.stat().st_size // 2])
    weights, source = load(checkpoint, cache)
    assert source == QUANTIZED_NOW
    assert_same_weights(weights, expected)
    assert load(checkpoint, cache)[1] == FROM_CACHE  # written again whole


def test_a_cache_that_cannot_be_written_costs_only_the_time(checkpoint, tmp_path):
    not_a_directory = tmp_path / "cache"
    not_a_directory.write_text("a file where the cache directory would be")
    weights, source = load(checkpoint, not_a_directory)
    assert source == QUANTIZED_NOW
    assert_same_weights(weights, load_weights(checkpoint, load_config(checkpoint), "q8_0").tensors)


def test_gguf_blocks_load_as_they_lie_and_a_float_gguf_is_cached(tiny_model_dir, tmp_path):
    cache = tmp_path / "cache"
    blocks, floats = (
        export_gguf_dir(tiny_model_dir, tmp_path / stored, stored).parent
        for stored in ("q8_0", "float32")
    )
    assert load(blocks, cache)[1] == FROM_CHECKPOINT
    assert not cache.exists()
    assert load(floats, cache)[1] == QUANTIZED_NOW
    assert load(floats, cache)[1] == FROM_CACHE


def test_float_encodings_are_not_cached(checkpoint, tmp_path):
    cache = tmp_path / "cache"
    for encoding in ("float32", "bfloat16"):
        assert load(checkpoint, cache, encoding)[1] == FROM_CHECKPOINT
    assert not cache.exists()


def test_the_least_recently_used_entries_beyond_the_limit_are_dropped(checkpoint, tmp_path):
    cache = tmp_path / "cache"
    copies = [shutil.copytree(checkpoint, tmp_path / f"copy{i}") for i in range(KEPT_ENTRIES + 1)]
    load(copies[0], cache)
    for copy in copies[1:]:
        time.sleep(0.01)  # distinct modification times
        load(copy, cache)
    assert len(entries(cache)) == KEPT_ENTRIES
    assert load(copies[0], cache)[1] == QUANTIZED_NOW  # the oldest went
    assert load(copies[-1], cache)[1] == FROM_CACHE


def test_partial_entries_left_by_a_dead_process_are_dropped(checkpoint, tmp_path):
    cache = tmp_path / "cache"
    abandoned, writing = cache / ".old.q8_0.x.tmp", cache / ".new.q8_0.y.tmp"
    for partial in (abandoned, writing):
        partial.mkdir(parents=True)
        (partial / WEIGHTS_FILE).write_bytes(b"GGUF")
    hour_ago = time.time() - ABANDONED_SECONDS - 60
    os.utime(abandoned, (hour_ago, hour_ago))
    load(checkpoint, cache)
    assert not abandoned.exists() and writing.exists()
