"""Checks the `--use-gpu` path on a machine with a MAX-supported GPU, and times it.

Parity: a small random checkpoint on the GPU against the independent float64 reference
(float32 and bfloat16 weights), greedy continuations, and prefix reuse. Speed: a full-width
Replit slice (d_model 3072, 24 heads, 8 kv heads, FFN 12288, vocab 32768, random bf16 weights)
for prefill and decode tokens/s. Usage: `python -m bench.gpu_check [--layers N]`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from model.config import mpt_config_dict, parse_config
from model.engine import Engine, EngineOptions
from model.graph import weight_shapes
from model.sampling import SamplingParams
from model.training.export import save_checkpoint
from tests.checkpoints import make_random_checkpoint
from tests.reference import ReferenceMPT

PROMPT = "import os\nimport sys\n\nclass Stack:\n    def __init__(self):\n"


def check_parity(model_dir: Path, encoding: str, tolerance: float, use_gpu: bool) -> None:
    engine = Engine(
        EngineOptions(
            model_dir=model_dir, max_length=256, use_gpu=use_gpu, quantization_encoding=encoding
        ),
        progress=print,
    )
    reference = ReferenceMPT(model_dir, round_to_bfloat16=encoding == "bfloat16")
    ids = engine.tokenizer.encode(PROMPT)
    expected = reference.logits(ids)[-1]
    error = float(np.abs(engine.logits(ids) - expected).max() / np.abs(expected).max())
    print(f"{encoding}: relative logit error {error:.2e} (limit {tolerance:.0e})")
    assert error < tolerance, error
    with engine.generate(ids, SamplingParams(max_new_tokens=16)) as generation:
        tokens = list(generation)
    greedy = reference.greedy(ids, 16, engine.eos_id)
    print(f"{encoding}: greedy equal to reference: {tokens == greedy}")
    if encoding == "float32":
        assert tokens == greedy
        extended = ids + tokens[:6]
        with engine.generate(extended, SamplingParams(max_new_tokens=8)) as again:
            continued = list(again)
        print(f"reuse: {again.reused_tokens} of {len(extended)} prompt tokens reused")
        assert again.reused_tokens == len(extended) - 1
        assert continued == reference.greedy(extended, 8, engine.eos_id)


def full_width_slice(out_dir: Path, layers: int, tokenizer_dir: Path) -> Path:
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


def time_slice(model_dir: Path, layers: int, use_gpu: bool) -> None:
    engine = Engine(
        EngineOptions(
            model_dir=model_dir,
            max_length=2048 + 200,
            use_gpu=use_gpu,
            quantization_encoding="bfloat16",
        ),
        progress=print,
    )
    rng = np.random.default_rng(1)
    for length in (128, 512, 2048):
        prompt = rng.integers(2, 400, size=length).tolist()
        engine.logits(prompt)  # warm-up
        prompt[0] += 1  # defeat prefix reuse
        start = time.perf_counter()
        engine.logits(prompt)
        elapsed = time.perf_counter() - start
        print(f"slice {layers} layers bf16: prefill {length}: {length / elapsed:.0f} tokens/s")
    prompt = rng.integers(2, 400, size=64).tolist()
    params = SamplingParams(max_new_tokens=200)
    with engine.generate(prompt, params) as generation:
        list(generation)
    start = time.perf_counter()
    with engine.generate([p + 1 for p in prompt], params) as generation:
        count = len(list(generation))
    decode = (count - 1) / (time.perf_counter() - start - generation.prefill_seconds)
    weight_gb = sum(np.prod(s) * 2 for s in weight_shapes(engine.config).values()) / 1e9
    print(
        f"slice {layers} layers bf16: decode {decode:.0f} tokens/s "
        f"({weight_gb:.2f} GB of weights -> {decode * weight_gb:.0f} GB/s effective)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--cpu", action="store_true", help="dry run of this script on the CPU")
    parser.add_argument("--quick", action="store_true", help="float32 parity only")
    args = parser.parse_args()
    gpu = not args.cpu
    with tempfile.TemporaryDirectory() as tmp:
        tiny = make_random_checkpoint(Path(tmp) / "tiny")
        check_parity(tiny, "float32", 1e-3, gpu)
        if not args.quick:
            check_parity(tiny, "bfloat16", 2e-2, gpu)
            time_slice(full_width_slice(Path(tmp) / "slice", args.layers, tiny), args.layers, gpu)
    print("GPU CHECK PASSED")


if __name__ == "__main__":
    main()
