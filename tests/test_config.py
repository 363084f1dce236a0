import json

import pytest

from lsp_server.cli import build_parser, engine_options
from model.config import ConfigError, load_config, mpt_config_dict, parse_config
from model.engine.options import AUTO, machine_encoding
from testkit.checkpoints import full_width_config

# The published config.json of replit/replit-code-v1_5-3b (fields that matter to the math).
REPLIT_V1_5_3B = {
    "architectures": ["MPTForCausalLM"],
    "attn_config": {
        "alibi": True,
        "alibi_bias_max": 8,
        "attn_impl": "triton",
        "attn_pdrop": 0,
        "attn_type": "grouped_query_attention",
        "attn_uses_sequence_id": False,
        "clip_qkv": None,
        "kv_n_heads": 8,
        "prefix_lm": False,
        "qk_ln": False,
        "softmax_scale": None,
    },
    "d_model": 3072,
    "emb_pdrop": 0,
    "embedding_fraction": 1.0,
    "expansion_ratio": 4,
    "learned_pos_emb": True,
    "logit_scale": None,
    "max_seq_len": 4096,
    "model_type": "mpt",
    "n_heads": 24,
    "n_layers": 32,
    "no_bias": True,
    "norm_type": "low_precision_layernorm",
    "resid_pdrop": 0,
    "torch_dtype": "bfloat16",
    "use_cache": False,
    "vocab_size": 32768,
}


def test_replit_3b_config_is_read_with_its_real_sizes():
    config = parse_config(REPLIT_V1_5_3B)
    assert (config.d_model, config.n_heads, config.kv_n_heads) == (3072, 24, 8)
    assert (config.head_dim, config.n_layers, config.vocab_size) == (128, 32, 32768)
    assert config.ffn_hidden_size == 12288
    assert config.qkv_size == 3072 + 2 * 8 * 128
    assert config.layer_norm_eps == 1e-5


def test_alibi_slopes_follow_mpt_for_power_of_two_and_other_head_counts():
    eight = parse_config(
        mpt_config_dict(
            d_model=64, n_heads=8, kv_n_heads=8, n_layers=1, vocab_size=10, max_seq_len=8
        )
    )
    assert eight.alibi_slopes() == [2.0 ** -(i + 1) for i in range(8)]
    # 6 heads: computed for 8 (slopes 2^-1 .. 2^-8), then odd positions first, then even.
    six = parse_config(
        mpt_config_dict(
            d_model=48, n_heads=6, kv_n_heads=2, n_layers=1, vocab_size=10, max_seq_len=8
        )
    )
    assert six.alibi_slopes() == [2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8, 2.0**-1, 2.0**-3]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"attn_config": {**REPLIT_V1_5_3B["attn_config"], "qk_ln": True}}, "qk_ln"),
        ({"attn_config": {**REPLIT_V1_5_3B["attn_config"], "clip_qkv": 6.0}}, "clip_qkv"),
        ({"attn_config": {**REPLIT_V1_5_3B["attn_config"], "alibi": False}}, "alibi"),
        ({"attn_config": {**REPLIT_V1_5_3B["attn_config"], "kv_n_heads": 5}}, "kv_n_heads"),
        ({"no_bias": False}, "no_bias"),
        ({"logit_scale": 0.5}, "logit_scale"),
        ({"d_model": 3070}, "divisible"),
        ({"n_layers": 0}, "n_layers"),
        ({"vocab_size": "big"}, "vocab_size"),
        ({"model_type": "llama"}, "model_type"),
        ({"norm_type": "rmsnorm"}, "norm_type"),
    ],
)
def test_unsupported_values_are_rejected_by_name(change, message):
    with pytest.raises(ConfigError, match=message):
        parse_config({**REPLIT_V1_5_3B, **change})


def test_missing_and_broken_config_files_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="config.json: file not found"):
        load_config(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="config.json: not a readable JSON file"):
        load_config(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(REPLIT_V1_5_3B))
    assert load_config(tmp_path).n_layers == 32


@pytest.mark.parametrize(
    ("layers", "use_gpu", "stored", "encoding"),
    [
        (32, False, None, "q4_0"),  # the 3B on a CPU: read-bound decode, quantized
        (32, False, "q8_0", "q8_0"),  # a GGUF's blocks run as they lie
        (32, True, None, "bfloat16"),
        (32, True, "q4_0", "bfloat16"),
        (2, False, None, "float32"),  # a two-layer slice is small enough to stay exact
        (2, False, "q4_0", "float32"),
        (2, True, None, "bfloat16"),
    ],
)
def test_auto_encoding_suits_the_device_the_model_size_and_its_blocks(
    layers, use_gpu, stored, encoding
):
    config = parse_config(full_width_config(layers))
    assert machine_encoding(config, use_gpu, stored) == encoding
    # The real model's count of weights, 3.3 billion as its model card says.
    if layers == 32:
        assert round(parse_config(REPLIT_V1_5_3B).weight_count / 1e8) == 33


def test_the_servers_default_to_auto_and_prompt_to_the_exact_model(tmp_path):
    parser = build_parser()
    stdio = engine_options(parser.parse_args(["--stdio", "--weight-path", str(tmp_path)]))
    prompt = engine_options(parser.parse_args(["--prompt", "x", "--weight-path", str(tmp_path)]))
    chosen = parser.parse_args(["--stdio", "--quantization-encoding", "q8_0", "--weight-path", "m"])
    assert (stdio.quantization_encoding, prompt.quantization_encoding) == (AUTO, "float32")
    assert chosen.quantization_encoding == "q8_0"
