"""Checks the `--use-gpu` path on a machine with a MAX-supported GPU.

Parity: a small random checkpoint on the GPU against the independent float64 reference
(float32 and bfloat16 weights), greedy continuations, and prefix reuse. `bench/gpu.sh` runs
it before timing the throughput table on the GPU. Usage: `python -m bench.gpu_check [--quick]`.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from model.engine.engine import Engine
from model.engine.options import EngineOptions
from model.sampling import SamplingParams
from testkit.checkpoints import make_random_checkpoint
from testkit.reference import ReferenceMPT

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cpu", action="store_true", help="dry run of this script on the CPU")
    parser.add_argument("--quick", action="store_true", help="float32 parity only")
    args = parser.parse_args()
    gpu = not args.cpu
    with tempfile.TemporaryDirectory() as tmp:
        tiny = make_random_checkpoint(Path(tmp) / "tiny")
        check_parity(tiny, "float32", 1e-3, gpu)
        if not args.quick:
            check_parity(tiny, "bfloat16", 2e-2, gpu)
    print("GPU CHECK PASSED")


if __name__ == "__main__":
    main()
