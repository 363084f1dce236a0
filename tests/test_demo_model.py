"""The PyTorch training model and the independent float64 reference compute the same MPT.

If they disagree, the bundled demo weights were trained for a different function than the one
the product runs, and every parity test downstream would be comparing against the wrong thing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is only installed with the 'train' extra")

from tokenizers import Tokenizer  # noqa: E402

from model.config import mpt_config_dict, parse_config  # noqa: E402
from model.training.bpe import train_byte_level_bpe  # noqa: E402
from model.training.export import save_checkpoint  # noqa: E402
from model.training.mpt_torch import MPTForCausalLM, load_model  # noqa: E402
from testkit.reference import ReferenceMPT  # noqa: E402

DEMO_DIR = Path(__file__).resolve().parents[1] / "model" / "assets" / "replit-code-demo"

# Not from the standard library, so the demo model has not seen it.
SNIPPET = '''def merge_intervals(intervals):
    """Merge overlapping [start, end] pairs."""
    result = []
    for start, end in sorted(intervals):
        if result and start <= result[-1][1]:
            result[-1][1] = max(result[-1][1], end)
        else:
            result.append([start, end])
    return result
'''


def torch_logits(model_dir: Path, tokens: list[int]) -> np.ndarray:
    model = load_model(model_dir, torch.float32)
    with torch.no_grad():
        return model(torch.tensor([tokens]))[0].double().numpy()


def assert_close_to_reference(model_dir: Path, tokens: list[int]) -> None:
    expected = ReferenceMPT(model_dir).logits(tokens)
    actual = torch_logits(model_dir, tokens)
    scale = np.abs(expected).max()
    error = np.abs(actual - expected).max()
    assert error <= 1e-4 * scale, f"max |torch - reference| = {error:.3g}, logit scale {scale:.3g}"


def test_state_dict_uses_hugging_face_names() -> None:
    config = parse_config(
        mpt_config_dict(
            d_model=32, n_heads=4, kv_n_heads=2, n_layers=2, vocab_size=300, max_seq_len=64
        )
    )
    names = set(MPTForCausalLM(config).state_dict())
    expected = {"transformer.wte.weight", "transformer.norm_f.weight"}
    for n in range(2):
        p = f"transformer.blocks.{n}."
        expected |= {
            p + "norm_1.weight",
            p + "attn.Wqkv.weight",
            p + "attn.out_proj.weight",
            p + "norm_2.weight",
            p + "ffn.up_proj.weight",
            p + "ffn.down_proj.weight",
        }
    assert names == expected


def test_random_model_matches_reference(tmp_path: Path) -> None:
    """Six heads: exercises the non-power-of-two ALiBi slopes and a query/kv group of three."""
    tokenizer = train_byte_level_bpe([SNIPPET] * 4, vocab_size=300)
    config = mpt_config_dict(
        d_model=48,
        n_heads=6,
        kv_n_heads=2,
        n_layers=2,
        vocab_size=tokenizer.get_vocab_size(),
        max_seq_len=128,
    )
    model = MPTForCausalLM(parse_config(config))
    model.init_weights(seed=1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name:
                param.add_(0.1 * torch.randn(param.shape))
            else:
                param.mul_(20.0)  # large enough that attention is far from uniform
    tensors = {name: t.numpy() for name, t in model.state_dict().items()}
    save_checkpoint(tmp_path, config, tensors, tokenizer)
    assert_close_to_reference(tmp_path, tokenizer.encode(SNIPPET).ids)


def test_demo_model_matches_reference() -> None:
    tokenizer = Tokenizer.from_file(str(DEMO_DIR / "tokenizer.json"))
    tokens = tokenizer.encode(SNIPPET, add_special_tokens=False).ids
    assert_close_to_reference(DEMO_DIR, tokens)


def test_max_graph_runs_the_demo_weights_as_trained() -> None:
    """The compiled MAX model and the training code give the same logits on held-out text, at
    every position (fed one token at a time through the KV cache), and the same greedy text."""
    from model.engine.engine import Engine
    from model.engine.options import EngineOptions
    from model.sampling import SamplingParams

    engine = Engine(EngineOptions(model_dir=DEMO_DIR, max_length=512))
    tokens = engine.tokenizer.encode(SNIPPET)
    trained = torch_logits(DEMO_DIR, tokens)
    scale = np.abs(trained).max()
    for end in (1, 10, len(tokens) // 2, len(tokens)):
        error = np.abs(engine.logits(tokens[:end]) - trained[end - 1]).max()
        assert error <= 1e-4 * scale, f"position {end - 1}: |MAX - torch| = {error:.3g}"
    prompt = engine.tokenizer.encode("def merge_intervals(intervals):\n")
    with engine.generate(prompt, SamplingParams(max_new_tokens=12)) as generation:
        generated = list(generation)
    expected = []
    for token in load_model(DEMO_DIR, torch.float32).greedy(prompt, window=512):
        if token == engine.eos_id or len(expected) == 12:
            break
        expected.append(token)
    assert generated == expected
