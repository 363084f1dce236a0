"""What a GGUF file says about its model besides the tensors: the config and the tokenizer.

A GGUF repository such as `modularai/replit-code-1.5` may hold nothing but the GGUF file, so
the MPT hyperparameters (llama.cpp's `mpt.*` keys) are turned back into the `config.json`
fields they were written from, and the `tokenizer.ggml.*` vocabulary and merges into the
byte-level BPE tokenizer that `tokenizer.json` describes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gguf
import numpy as np
from tokenizers import AddedToken, decoders, models, pre_tokenizers
from tokenizers import Tokenizer as HFTokenizer


class GGUFMetadataError(ValueError):
    """A GGUF file whose metadata does not describe a model this project can run."""


def gguf_preference(name: str) -> tuple[bool, bool, str]:
    """Sort key among GGUF files of one model: bfloat16 first, then float32, then the rest,
    because those are exact and need no dequantization."""
    lower = name.lower()
    return "bf16" not in lower, "f32" not in lower, name


def model_gguf(model_dir: Path) -> Path | None:
    """The one GGUF file of a model directory that its weights, config and tokenizer come from."""
    files = sorted(Path(model_dir).glob("*.gguf"), key=lambda p: gguf_preference(p.name))
    return files[0] if files else None


def _reader(path: Path) -> gguf.GGUFReader:
    try:
        return gguf.GGUFReader(str(path))
    except Exception as error:  # the reader raises assorted errors on corrupt files
        raise GGUFMetadataError(f"{path}: not a readable GGUF file ({error})") from None


def _item(part: np.ndarray, kind: gguf.GGUFValueType) -> Any:
    if kind == gguf.GGUFValueType.STRING:
        return bytes(part).decode("utf-8")
    if kind == gguf.GGUFValueType.FLOAT32:
        # The shortest decimal that rounds to the stored float32 (1e-05, not
        # 9.99999974737875e-06) is the value the writer was handed.
        return float(str(np.float32(part[0])))
    return part[0].item()


def _value(reader: gguf.GGUFReader, key: str) -> Any:
    """A metadata value as Python data (a list for an array), or None when absent."""
    field = reader.get_field(key)
    if field is None:
        return None
    if field.types[0] == gguf.GGUFValueType.ARRAY:
        return [_item(field.parts[i], field.types[-1]) for i in field.data]
    return _item(field.parts[field.data[0]], field.types[0])


def gguf_config_dict(path: Path) -> dict[str, Any]:
    """The `config.json` fields that the GGUF's `mpt.*` metadata records, for parse_config."""
    reader = _reader(path)
    architecture = _value(reader, "general.architecture")
    if architecture != "mpt":
        raise GGUFMetadataError(
            f"{path}: general.architecture is {architecture!r}; only 'mpt' models are supported"
        )

    def required(key: str) -> Any:
        value = _value(reader, f"mpt.{key}")
        if value is None:
            raise GGUFMetadataError(f"{path}: metadata key mpt.{key} is missing")
        return value

    d_model = required("embedding_length")
    n_heads = required("attention.head_count")
    alibi_bias_max = required("attention.max_alibi_bias")
    tensors = {t.name: t for t in reader.tensors}
    if "token_embd.weight" in tensors:
        vocab_size = int(tensors["token_embd.weight"].shape[-1])  # GGUF lists dims reversed
    else:
        vocab_size = len(_value(reader, "tokenizer.ggml.tokens") or [])
    eps = _value(reader, "mpt.attention.layernorm_epsilon")
    return {
        "model_type": "mpt",
        "d_model": d_model,
        "n_heads": n_heads,
        "n_layers": required("block_count"),
        "vocab_size": vocab_size,
        "max_seq_len": required("context_length"),
        "no_bias": not any(name.endswith(".bias") for name in tensors),
        "layer_norm_epsilon": 1e-5 if eps is None else eps,
        "attn_config": {
            "attn_type": "grouped_query_attention",
            # llama.cpp's defaults: as many KV heads as heads, no clamp, max_alibi_bias 0 = off.
            "kv_n_heads": _value(reader, "mpt.attention.head_count_kv") or n_heads,
            "alibi": alibi_bias_max > 0,
            "alibi_bias_max": alibi_bias_max,
            "clip_qkv": _value(reader, "mpt.attention.clamp_kqv"),
        },
        # llama.cpp's converter writes 4 * d_model, MPT's default expansion ratio.
        "ffn_config": {"ffn_hidden_size": _value(reader, "mpt.feed_forward_length")},
        "eos_token_id": _value(reader, "tokenizer.ggml.eos_token_id"),
    }


def gguf_tokenizer(path: Path) -> tuple[HFTokenizer, int | None]:
    """The byte-level BPE tokenizer from `tokenizer.ggml.*`, and its end-of-text id.

    Tokens are stored in the same byte-to-character spelling as `tokenizer.json`'s vocabulary
    and merges as "left right" strings, so the model is rebuilt exactly; control tokens become
    special added tokens and user-defined ones plain added tokens, as in the original. The
    placeholders llama.cpp pads a short vocabulary with (type UNUSED) were never tokens.
    The pre-tokenizer is GPT-2's byte-level split, which Replit Code's tokenizer uses.
    """
    reader = _reader(path)
    model = _value(reader, "tokenizer.ggml.model")
    if model != "gpt2":
        raise GGUFMetadataError(
            f"{path}: tokenizer.ggml.model is {model!r}; only byte-level BPE ('gpt2') is supported"
        )
    tokens = _value(reader, "tokenizer.ggml.tokens")
    merges = _value(reader, "tokenizer.ggml.merges")
    if not tokens or merges is None:
        raise GGUFMetadataError(f"{path}: tokenizer.ggml.tokens or tokenizer.ggml.merges missing")
    types = _value(reader, "tokenizer.ggml.token_type") or [gguf.TokenType.NORMAL] * len(tokens)
    if len(types) != len(tokens):
        raise GGUFMetadataError(f"{path}: tokenizer.ggml.token_type does not match the tokens")
    vocab = {
        token: i
        for i, (token, kind) in enumerate(zip(tokens, types, strict=True))
        if kind != gguf.TokenType.UNUSED
    }
    pairs = []
    for merge in merges:
        split = merge.find(" ", 1)  # from 1, as llama.cpp does: a token may be a lone space
        if split < 0:
            raise GGUFMetadataError(f"{path}: malformed merge {merge!r}")
        pairs.append((merge[:split], merge[split + 1 :]))
    tokenizer = HFTokenizer(models.BPE(vocab, pairs))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    added = [
        AddedToken(token, special=kind == gguf.TokenType.CONTROL, normalized=False)
        for token, kind in zip(tokens, types, strict=True)
        if kind in (gguf.TokenType.CONTROL, gguf.TokenType.USER_DEFINED)
    ]
    tokenizer.add_special_tokens([t for t in added if t.special])
    tokenizer.add_tokens([t for t in added if not t.special])
    return tokenizer, _value(reader, "tokenizer.ggml.eos_token_id")
