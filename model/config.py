"""The MPT hyperparameters the graph is built from, read from a Hugging Face `config.json`
(or, in a directory without one, from the metadata of its GGUF file).

Only the subset of MPT that Replit Code v1.5 uses is implemented; everything else is rejected
here, with the offending key named, rather than silently computing a different model.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model.gguf_metadata import GGUFMetadataError, gguf_config_dict, model_gguf


class ConfigError(ValueError):
    """A config (config.json, or GGUF metadata) the graph cannot implement faithfully."""


@dataclass(frozen=True)
class ModelConfig:
    d_model: int
    n_heads: int
    kv_n_heads: int
    n_layers: int
    vocab_size: int
    max_seq_len: int
    ffn_hidden_size: int
    alibi_bias_max: float
    layer_norm_eps: float
    eos_token_id: int | None = None

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def qkv_size(self) -> int:
        return self.d_model + 2 * self.kv_n_heads * self.head_dim

    @property
    def weight_count(self) -> int:
        """The model's weights: the tied embedding, and per layer the attention's and MLP's
        matrices (norms and biases are too few to matter where this is used)."""
        attention = self.d_model * (self.qkv_size + self.d_model)
        mlp = 2 * self.d_model * self.ffn_hidden_size
        return self.vocab_size * self.d_model + self.n_layers * (attention + mlp)

    def alibi_slopes(self) -> list[float]:
        """Per-head ALiBi slopes exactly as MPT computes them (also for non-power-of-two heads)."""
        n = self.n_heads
        n2 = 2 ** math.ceil(math.log2(n))
        slopes = [2.0 ** -((i + 1) * self.alibi_bias_max / n2) for i in range(n2)]
        if n2 != n:
            slopes = (slopes[1::2] + slopes[::2])[:n]
        return slopes

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _require(condition: bool, source: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{source}: {message}")


def parse_config(raw: dict[str, Any], source: str = "config.json") -> ModelConfig:
    """Validates an MPT config dict and returns the typed config."""
    _require(isinstance(raw, dict), source, "expected a JSON object")
    model_type = raw.get("model_type", "mpt")
    _require(model_type == "mpt", source, f"model_type {model_type!r} is not 'mpt'")

    def integer(key: str, minimum: int = 1) -> int:
        value = raw.get(key)
        _require(
            isinstance(value, int) and not isinstance(value, bool) and value >= minimum,
            source,
            f"{key} must be an integer >= {minimum}, got {value!r}",
        )
        return value

    d_model = integer("d_model")
    n_heads = integer("n_heads")
    n_layers = integer("n_layers")
    vocab_size = integer("vocab_size")
    max_seq_len = integer("max_seq_len")
    _require(d_model % n_heads == 0, source, f"d_model {d_model} not divisible by n_heads")

    attn = raw.get("attn_config") or {}
    ffn = raw.get("ffn_config") or {}
    _require(isinstance(attn, dict), source, "attn_config must be an object")
    _require(isinstance(ffn, dict), source, "ffn_config must be an object")

    attn_type = attn.get("attn_type", "multihead_attention")
    if attn_type == "multihead_attention":
        kv_n_heads = n_heads
    elif attn_type == "multiquery_attention":
        kv_n_heads = 1
    elif attn_type == "grouped_query_attention":
        kv_n_heads = attn.get("kv_n_heads")
        _require(
            isinstance(kv_n_heads, int) and kv_n_heads >= 1,
            source,
            f"attn_config.kv_n_heads must be a positive integer, got {kv_n_heads!r}",
        )
    else:
        raise ConfigError(f"{source}: attn_config.attn_type {attn_type!r} is not supported")
    _require(
        n_heads % kv_n_heads == 0,
        source,
        f"n_heads {n_heads} is not a multiple of attn_config.kv_n_heads {kv_n_heads}",
    )

    _require(attn.get("alibi", False) is True, source, "attn_config.alibi must be true")
    _require(not attn.get("qk_ln", False), source, "attn_config.qk_ln is not supported")
    _require(attn.get("clip_qkv") is None, source, "attn_config.clip_qkv is not supported")
    _require(not attn.get("prefix_lm", False), source, "attn_config.prefix_lm is not supported")
    _require(
        attn.get("softmax_scale") is None,
        source,
        "attn_config.softmax_scale other than 1/sqrt(head_dim) is not supported",
    )
    _require(
        not attn.get("attn_uses_sequence_id", False),
        source,
        "attn_config.attn_uses_sequence_id is not supported",
    )
    _require(not attn.get("sliding_window_size", -1) > 0, source, "sliding windows unsupported")
    _require(not attn.get("rope", False), source, "attn_config.rope is not supported")
    alibi_bias_max = attn.get("alibi_bias_max", 8)
    _require(
        isinstance(alibi_bias_max, int | float) and alibi_bias_max > 0,
        source,
        f"attn_config.alibi_bias_max must be positive, got {alibi_bias_max!r}",
    )

    _require(raw.get("no_bias", False) is True, source, "no_bias must be true (biases unsupported)")
    _require(
        raw.get("norm_type", "low_precision_layernorm") in ("layernorm", "low_precision_layernorm"),
        source,
        f"norm_type {raw.get('norm_type')!r} is not supported",
    )
    logit_scale = raw.get("logit_scale")
    _require(logit_scale is None, source, f"logit_scale {logit_scale!r} is not supported")
    _require(
        raw.get("tie_word_embeddings", True) is True,
        source,
        "untied output embeddings are not supported",
    )

    ffn_type = ffn.get("ffn_type", "mptmlp")
    _require(ffn_type == "mptmlp", source, f"ffn_config.ffn_type {ffn_type!r} is not supported")
    act = (ffn.get("ffn_act_fn") or {}).get("name", "gelu")
    approximate = (ffn.get("ffn_act_fn") or {}).get("approximate", "none")
    _require(
        act == "gelu" and approximate == "none",
        source,
        "only exact GELU activation is supported",
    )
    expansion_ratio = raw.get("expansion_ratio", 4)
    ffn_hidden_size = ffn.get("ffn_hidden_size") or int(d_model * expansion_ratio)
    _require(
        isinstance(ffn_hidden_size, int) and ffn_hidden_size >= 1,
        source,
        f"bad FFN width {ffn_hidden_size!r}",
    )

    eps = raw.get("layer_norm_epsilon", 1e-5)
    _require(isinstance(eps, int | float) and eps > 0, source, f"bad layer_norm_epsilon {eps!r}")
    eos = raw.get("eos_token_id")
    return ModelConfig(
        d_model=d_model,
        n_heads=n_heads,
        kv_n_heads=kv_n_heads,
        n_layers=n_layers,
        vocab_size=vocab_size,
        max_seq_len=max_seq_len,
        ffn_hidden_size=ffn_hidden_size,
        alibi_bias_max=float(alibi_bias_max),
        layer_norm_eps=float(eps),
        eos_token_id=eos if isinstance(eos, int) else None,
    )


def load_config(model_dir: Path) -> ModelConfig:
    """Reads `config.json` from a model directory in Hugging Face layout, or the same fields
    from the GGUF file of a directory that has no `config.json`."""
    path = Path(model_dir) / "config.json"
    gguf_file = None if path.exists() else model_gguf(model_dir)
    if gguf_file is not None:
        try:
            return parse_config(gguf_config_dict(gguf_file), str(gguf_file))
        except GGUFMetadataError as error:
            raise ConfigError(str(error)) from None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"{path}: not a readable JSON file ({error})") from None
    return parse_config(raw, str(path))


def mpt_config_dict(
    *,
    d_model: int,
    n_heads: int,
    kv_n_heads: int,
    n_layers: int,
    vocab_size: int,
    max_seq_len: int,
    expansion_ratio: int = 4,
    alibi_bias_max: int = 8,
    eos_token_id: int | None = None,
) -> dict[str, Any]:
    """A config.json in the layout of `replit/replit-code-v1_5-3b`, for checkpoints we make."""
    return {
        "architectures": ["MPTForCausalLM"],
        "model_type": "mpt",
        "d_model": d_model,
        "n_heads": n_heads,
        "n_layers": n_layers,
        "expansion_ratio": expansion_ratio,
        "max_seq_len": max_seq_len,
        "vocab_size": vocab_size,
        "no_bias": True,
        "learned_pos_emb": False,
        "norm_type": "low_precision_layernorm",
        "layer_norm_epsilon": 1e-5,
        "logit_scale": None,
        "resid_pdrop": 0.0,
        "emb_pdrop": 0.0,
        "embedding_fraction": 1.0,
        "use_cache": False,
        "attn_config": {
            "alibi": True,
            "alibi_bias_max": alibi_bias_max,
            "attn_impl": "torch",
            "attn_pdrop": 0.0,
            "attn_type": "grouped_query_attention",
            "kv_n_heads": kv_n_heads,
            "clip_qkv": None,
            "prefix_lm": False,
            "qk_ln": False,
            "softmax_scale": None,
        },
        "ffn_config": {"ffn_type": "mptmlp"},
        "eos_token_id": eos_token_id,
        "torch_dtype": "float32",
    }
