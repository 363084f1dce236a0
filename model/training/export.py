"""Writes a checkpoint in the Hugging Face layout the product loads."""

from __future__ import annotations

import json
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
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    save_file(
        {name: np.ascontiguousarray(value) for name, value in tensors.items()},
        str(out_dir / "model.safetensors"),
        metadata={"format": "pt"},
    )
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
