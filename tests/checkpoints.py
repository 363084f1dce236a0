"""Small random checkpoints in Hugging Face layout, made on the fly for tests."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import numpy as np

from model.config import mpt_config_dict, parse_config
from model.graph import weight_shapes
from model.training.bpe import train_byte_level_bpe
from model.training.export import save_checkpoint


def local_texts(limit: int = 40) -> list[str]:
    """Python sources that every machine has, to train a tokenizer in a second."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(stdlib.glob("*.py"))[:limit]
    return [f.read_text(encoding="utf-8", errors="replace") for f in files]


def make_random_checkpoint(
    out_dir: Path,
    *,
    d_model: int = 96,
    n_heads: int = 6,
    kv_n_heads: int = 2,
    n_layers: int = 2,
    vocab_size: int = 512,
    max_seq_len: int = 1024,
    seed: int = 0,
) -> Path:
    """GQA with n_heads not a power of two, so the slopes' interleaving branch is exercised."""
    tokenizer = train_byte_level_bpe(local_texts(), vocab_size)
    config = mpt_config_dict(
        d_model=d_model,
        n_heads=n_heads,
        kv_n_heads=kv_n_heads,
        n_layers=n_layers,
        vocab_size=tokenizer.get_vocab_size(),
        max_seq_len=max_seq_len,
        eos_token_id=tokenizer.token_to_id("<|endoftext|>"),
    )
    rng = np.random.default_rng(seed)
    tensors = {}
    for name, shape in weight_shapes(parse_config(config)).items():
        if len(shape) == 1:
            tensors[name] = (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
        else:
            scale = 0.1 if name.endswith("wte.weight") else 1.0 / np.sqrt(shape[1])
            tensors[name] = (scale * rng.standard_normal(shape)).astype(np.float32)
    return save_checkpoint(out_dir, config, tensors, tokenizer)
