"""The checkpoints the benchmarks run: the bundled demo model and full-width Replit slices.

A slice has the real model's width (d_model 3072, 24 heads, 8 kv heads, FFN 12288, vocab
32768) with random weights and fewer layers, so its per-layer and per-token costs are the real
model's while it loads and compiles in minutes on this machine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from model.config import load_config, mpt_config_dict, parse_config
from model.graph import weight_shapes
from model.training.export import save_checkpoint

REAL_LAYERS = 32  # Replit Code v1.5 3B


def full_width_slice(out_dir: Path, layers: int, tokenizer_dir: Path) -> Path:
    """Writes a random `layers`-block slice, borrowing the tokenizer of `tokenizer_dir`."""
    config = mpt_config_dict(
        d_model=3072,
        n_heads=24,
        kv_n_heads=8,
        n_layers=layers,
        vocab_size=32768,
        max_seq_len=4096,
    )
    rng = np.random.default_rng(0)
    tensors = {}
    for name, shape in weight_shapes(parse_config(config)).items():
        scale = 1.0 if len(shape) == 1 else 0.02
        tensors[name] = (scale * rng.standard_normal(shape, dtype=np.float32)).astype(np.float32)
        if len(shape) == 1:
            tensors[name] += 1.0
    tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    return save_checkpoint(out_dir, config, tensors, tokenizer)


def weight_bytes(model_dir: Path, encoding: str) -> int:
    """Bytes of weights one decode step reads (the tied embedding counted once)."""
    config = load_config(model_dir)
    size = 2 if encoding == "bfloat16" else 4
    return sum(int(np.prod(shape)) for shape in weight_shapes(config).values()) * size
