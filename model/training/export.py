"""Writes a checkpoint in the Hugging Face layout the product loads."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file
from tokenizers import Tokenizer

from model.training.bpe import EOS_TOKEN, PAD_TOKEN


def save_checkpoint(
    out_dir: Path,
    config: dict[str, Any],
    tensors: dict[str, np.ndarray],
    tokenizer: Tokenizer,
) -> Path:
    """Saves config.json, model.safetensors, tokenizer.json and tokenizer_config.json."""
    save_file(
        {name: np.ascontiguousarray(value) for name, value in tensors.items()},
        str(save_metadata(out_dir, config, tokenizer) / "model.safetensors"),
        metadata={"format": "pt"},
    )
    return Path(out_dir)


def save_metadata(out_dir: Path, config: dict[str, Any], tokenizer: Tokenizer) -> Path:
    """Saves everything of a checkpoint but its weights: config.json and the tokenizer files."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    tokenizer.save(str(out_dir / "tokenizer.json"))
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "eos_token": EOS_TOKEN,
        "bos_token": None,
        "pad_token": PAD_TOKEN,
        "unk_token": None,
        "model_max_length": config["max_seq_len"],
        "clean_up_tokenization_spaces": False,
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n")
    return out_dir


def save_bfloat16_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    """Writes bfloat16 tensors given as uint16 bit patterns, which `safetensors.numpy` cannot
    (NumPy has no bfloat16 type): the header and the raw bytes, as the format defines them."""
    header, offset = {}, 0
    for name, bits in tensors.items():
        size = bits.size * 2
        header[name] = {
            "dtype": "BF16",
            "shape": list(bits.shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    raw = json.dumps(header).encode()
    with Path(path).open("wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for bits in tensors.values():
            f.write(np.ascontiguousarray(bits, dtype=np.uint16).tobytes())
