"""The checkpoints the tests and benchmarks make: small random ones in Hugging Face layout, made
in a second, and full-width Replit slices.

A slice has the real model's width (d_model 3072, 24 heads, 8 kv heads, FFN 12288, vocab
32768) with random weights and fewer layers, so its per-layer and per-token costs are the real
model's while it loads and compiles in minutes on this machine; 32 layers is the real shape.
"""

from __future__ import annotations

import json
import sysconfig
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file
from tokenizers import Tokenizer

from model.config import load_config, mpt_config_dict, parse_config
from model.training.bpe import train_byte_level_bpe
from model.training.export import save_bfloat16_safetensors, save_checkpoint, save_metadata
from model.weights.encodings import float32_to_bfloat16_bits
from model.weights.tensors import BLOCK_FORMATS, stored_shapes, weight_shapes

# The context length the tests run the tiny random checkpoint with.
TINY_MAX_LENGTH = 256
REAL_LAYERS = 32  # Replit Code v1.5 3B
LAYERS_PER_SHARD = 4


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


def full_width_config(layers: int) -> dict:
    """The real model's config dict (`mpt_config_dict`) with `layers` blocks."""
    return mpt_config_dict(
        d_model=3072,
        n_heads=24,
        kv_n_heads=8,
        n_layers=layers,
        vocab_size=32768,
        max_seq_len=4096,
    )


def full_width_slice(
    out_dir: Path, layers: int, tokenizer_dir: Path, encoding: str = "float32"
) -> Path:
    """Writes a random `layers`-block checkpoint of the real width, borrowing the tokenizer of
    `tokenizer_dir`; 32 layers is the real model's shape.

    Shards of LAYERS_PER_SHARD blocks (with the index Hugging Face writes) keep the memory this
    takes to a shard's worth, so the 13 GB float32 model can be written next to other work.
    """
    config = full_width_config(layers)
    shapes = weight_shapes(parse_config(config))
    rng = np.random.default_rng(0)
    out_dir.mkdir(parents=True, exist_ok=True)
    shards: dict[str, list[str]] = {}
    for name in shapes:
        block = name.split(".")[2] if ".blocks." in name else None
        group = 0 if block is None else 1 + int(block) // LAYERS_PER_SHARD
        shards.setdefault(f"model-{group:05d}.safetensors", []).append(name)
    weight_map = {}
    for file, names in shards.items():
        tensors = {}
        for name in names:
            shape = shapes[name]
            values = rng.standard_normal(shape, dtype=np.float32)
            values = values + 1.0 if len(shape) == 1 else values * 0.02
            tensors[name] = values if encoding == "float32" else float32_to_bfloat16_bits(values)
        if encoding == "float32":
            save_file(tensors, str(out_dir / file), metadata={"format": "pt"})
        else:
            save_bfloat16_safetensors(out_dir / file, tensors)
        weight_map |= dict.fromkeys(names, file)
        del tensors
    index = {"metadata": {}, "weight_map": weight_map}
    (out_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=1) + "\n")
    tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    return save_metadata(out_dir, config, tokenizer)


def weight_bytes(model_dir: Path, encoding: str) -> int:
    """Bytes of weights one decode step reads (the tied embedding counted once); in a block
    encoding, the blocks' bytes and the float32 norms."""
    config = load_config(model_dir)
    if encoding in BLOCK_FORMATS:
        shapes = stored_shapes(config, BLOCK_FORMATS[encoding])
        return sum(int(np.prod(s)) * (4 if len(s) == 1 else 1) for s in shapes.values())
    size = 2 if encoding == "bfloat16" else 4
    return sum(int(np.prod(shape)) for shape in weight_shapes(config).values()) * size
