"""Resident memory of one engine against its weights plus KV cache, in a process of its own.

Builds the engine for a model directory and encoding, reads VmRSS after loading, prefills a
random prompt and reads VmRSS and the peak (VmHWM). Usage:
`python -m bench.resident MODEL_DIR ENCODING [--prompt-tokens 512]`.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from bench.full_size import kv_cache_bytes, memory
from model.engine.engine import Engine
from model.engine.options import EngineOptions
from testkit.checkpoints import weight_bytes


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("encoding")
    parser.add_argument("--prompt-tokens", type=int, default=512)
    args = parser.parse_args()
    max_length = args.prompt_tokens + 16
    options = EngineOptions(
        model_dir=args.model_dir,
        quantization_encoding=args.encoding,
        max_length=max_length,
        max_cache_batch_size=1,
    )
    engine = Engine(options)
    loaded = memory(os.getpid())
    prompt = np.random.default_rng(0).integers(2, engine.config.vocab_size, args.prompt_tokens)
    engine.logits(prompt.tolist())
    done = memory(os.getpid())
    weights = weight_bytes(args.model_dir, args.encoding)
    kv = kv_cache_bytes(args.model_dir, max_length)
    print(
        f"{args.encoding}: weights {weights / 1e9:.3f} GB, KV cache {kv / 1e9:.3f} GB; "
        f"resident {loaded['rss'] / 1e9:.3f} GB loaded, {done['rss'] / 1e9:.3f} GB after a "
        f"{args.prompt_tokens}-token prefill, peak {done['peak'] / 1e9:.3f} GB "
        f"({done['peak'] / (weights + kv):.2f}x weights + KV cache)"
    )


if __name__ == "__main__":
    main()
