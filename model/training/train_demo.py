"""Trains the small bundled demo model on this Python's standard library sources.

The demo model lets the product be installed, tested and tried offline without the real 3B
checkpoint. It is a faithful MPT (ALiBi, grouped-query attention, tied embeddings) so that every
code path the real weights take is exercised, just at a size one CPU core trains in an hour.

    python -m model.training.train_demo --out model/assets/replit-code-demo --minutes 55 --seed 0

Training is deterministic given the seed and the number of steps. With `--minutes`, the number
of steps is fixed once, from the measured speed of the first steps, and logged; pass it back
with `--steps` to repeat a run exactly.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer

from model.config import mpt_config_dict, parse_config
from model.training.bpe import EOS_TOKEN, train_byte_level_bpe
from model.training.corpus import (
    build_corpus,
    corpus_manifest,
    load_sources,
    load_split,
    stdlib_sources,
    write_manifest,
)
from model.training.export import save_checkpoint
from model.training.mpt_torch import MPTForCausalLM, count_parameters

VALIDATION_FRACTION = 20  # one file in 20 is held out


@dataclass
class TrainArgs:
    seed: int = 0
    vocab_size: int = 8192
    d_model: int = 256
    n_heads: int = 8
    kv_n_heads: int = 2
    n_layers: int = 6
    max_seq_len: int = 1024
    seq_len: int = 512
    batch_size: int = 8
    lr: float = 2e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 100
    eval_chunks: int = 32
    bf16: bool = True
    corpus: str = "packages"  # or "stdlib", the standard library alone (the bundled model)


def is_validation(rel_path: str) -> bool:
    """Held-out split by a hash of the path, so it does not depend on which files exist."""
    digest = hashlib.sha256(rel_path.encode()).digest()
    return int.from_bytes(digest[:4], "little") % VALIDATION_FRACTION == 0


def split_sources(
    sources: list[tuple[str, str]],
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    train = [s for s in sources if not is_validation(s[0])]
    valid = [s for s in sources if is_validation(s[0])]
    return train, valid


def token_stream(tokenizer: Tokenizer, texts: list[str]) -> np.ndarray:
    """All texts as one token array, each followed by the end-of-text token, as the model will
    see file boundaries."""
    eos = tokenizer.token_to_id(EOS_TOKEN)
    ids: list[int] = []
    for encoding in tokenizer.encode_batch(texts, add_special_tokens=False):
        ids.extend(encoding.ids)
        ids.append(eos)
    return np.asarray(ids, dtype=np.int32)


def chunk_batch(stream: np.ndarray, starts: torch.Tensor, seq_len: int) -> tuple[torch.Tensor, ...]:
    rows = np.stack([stream[s : s + seq_len + 1] for s in starts.tolist()])
    data = torch.from_numpy(rows.astype(np.int64))
    return data[:, :-1], data[:, 1:]


def batch_starts(step: int, args: TrainArgs, n_chunks: int) -> torch.Tensor:
    """Chunk offsets for a step: each epoch visits every chunk once in a seeded order, so the
    data order depends only on the seed and the step (and resuming needs no data state)."""
    positions = range(step * args.batch_size, (step + 1) * args.batch_size)
    starts = []
    for position in positions:
        epoch, index = divmod(position, n_chunks)
        starts.append(int(epoch_order(args.seed, epoch, n_chunks)[index]) * args.seq_len)
    return torch.tensor(starts)


@functools.lru_cache(maxsize=2)
def epoch_order(seed: int, epoch: int, n_chunks: int) -> torch.Tensor:
    return torch.randperm(n_chunks, generator=torch.Generator().manual_seed(seed * 1000 + epoch))


def learning_rate(step: int, total_steps: int, args: TrainArgs) -> float:
    if step < args.warmup_steps:
        return args.lr * (step + 1) / args.warmup_steps
    progress = min(1.0, (step - args.warmup_steps) / max(1, total_steps - args.warmup_steps))
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return args.lr * (args.min_lr_ratio + (1.0 - args.min_lr_ratio) * cosine)


def make_optimizer(model: MPTForCausalLM, args: TrainArgs) -> torch.optim.AdamW:
    """Weight decay on matrices only: decaying LayerNorm gains just fights the normalisation."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": args.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.95), eps=1e-8)


def has_bf16_matmul(device: str) -> bool:
    """Whether bfloat16 matrix products run in hardware; elsewhere they are emulated and far
    slower than float32, so autocast would only cost time."""
    if device == "cuda":
        return torch.cuda.is_bf16_supported()
    return torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()


def autocast(args: TrainArgs, device: str) -> torch.autocast:
    return torch.autocast(device, dtype=torch.bfloat16, enabled=args.bf16)


@torch.no_grad()
def held_out_loss(model: MPTForCausalLM, valid: np.ndarray, args: TrainArgs, device: str) -> float:
    """Mean loss over a fixed set of held-out chunks, evenly spaced through the held-out files."""
    n_chunks = (len(valid) - 1) // args.seq_len
    picks = np.linspace(0, n_chunks - 1, num=min(args.eval_chunks, n_chunks)).astype(int)
    model.eval()
    total = 0.0
    for i in range(0, len(picks), args.batch_size):
        starts = torch.tensor(picks[i : i + args.batch_size] * args.seq_len)
        x, y = (t.to(device) for t in chunk_batch(valid, starts, args.seq_len))
        with autocast(args, device):
            total += float(model.loss(x, y)) * len(starts)
    model.train()
    return total / len(picks)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def training_texts(args: TrainArgs, corpus_dir: Path) -> tuple[list[str], list[str]]:
    """(training texts, held-out texts): the standard library split one file in 20, or the
    corpus (built first if it is not there) with its held-out packages."""
    if args.corpus == "stdlib":
        sources = stdlib_sources()
        train, valid = split_sources(sources)
        log(f"{len(sources)} stdlib files: {len(train)} train, {len(valid)} held out")
        return [text for _, text in train], [text for _, text in valid]
    if not (corpus_dir / "manifest.json").exists():
        build_corpus(corpus_dir, corpus_dir.parent / "pypi-cache")
    train_texts = [text for _, _, text in load_split(corpus_dir, "train")]
    valid_texts = [text for _, _, text in load_split(corpus_dir, "held_out")]
    log(f"corpus {corpus_dir}: {len(train_texts)} train files, {len(valid_texts)} held out")
    return train_texts, valid_texts


def prepare_data(
    work: Path, args: TrainArgs, corpus_dir: Path
) -> tuple[Tokenizer, np.ndarray, np.ndarray]:
    """Trains the tokenizer and tokenizes once; later runs (and resumes) reuse the files."""
    tok_path, train_path, valid_path = (
        work / "tokenizer.json",
        work / "train.npy",
        work / "valid.npy",
    )
    if tok_path.exists() and train_path.exists() and valid_path.exists():
        return Tokenizer.from_file(str(tok_path)), np.load(train_path), np.load(valid_path)
    train, valid = training_texts(args, corpus_dir)
    tokenizer = train_byte_level_bpe(train, args.vocab_size)
    train_ids = token_stream(tokenizer, train)
    valid_ids = token_stream(tokenizer, valid)
    work.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(tok_path))
    np.save(train_path, train_ids)
    np.save(valid_path, valid_ids)
    return tokenizer, train_ids, valid_ids


def model_config(args: TrainArgs, tokenizer: Tokenizer) -> dict[str, Any]:
    return mpt_config_dict(
        d_model=args.d_model,
        n_heads=args.n_heads,
        kv_n_heads=args.kv_n_heads,
        n_layers=args.n_layers,
        vocab_size=tokenizer.get_vocab_size(),
        max_seq_len=args.max_seq_len,
        eos_token_id=tokenizer.token_to_id(EOS_TOKEN),
    )


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Writes then renames, so an interrupted save never leaves a truncated checkpoint."""
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def train(
    out: Path,
    work: Path,
    args: TrainArgs,
    minutes: float | None,
    steps: int | None,
    resume: bool,
    corpus_dir: Path,
    device: str = "cpu",
    threads: int | None = None,
    save_every_s: float = 300.0,
) -> None:
    torch.set_num_threads(threads or os.cpu_count() or 1)
    state_path = work / "train_state.pt"
    state: dict[str, Any] | None = None
    if resume and state_path.exists():
        state = torch.load(state_path, weights_only=False, map_location=device)
        args = TrainArgs(**state["args"])
        log(f"resuming from step {state['step']} of {state['total_steps']}")

    tokenizer, train_ids, valid_ids = prepare_data(work, args, corpus_dir)
    config = model_config(args, tokenizer)
    torch.manual_seed(args.seed)
    model = MPTForCausalLM(parse_config(config))
    model.init_weights(args.seed)
    model.to(device)
    optimizer = make_optimizer(model, args)
    step, elapsed, total_steps = 0, 0.0, steps
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        step, elapsed, total_steps = state["step"], state["elapsed"], state["total_steps"]
        # A larger --steps extends a finished run: the cosine restarts from where it now falls.
        total_steps = max(total_steps, steps or 0)

    n_chunks = (len(train_ids) - 1) // args.seq_len
    tokens_per_step = args.batch_size * args.seq_len
    log(
        f"{count_parameters(model) / 1e6:.2f}M parameters, vocab {config['vocab_size']}, "
        f"{len(train_ids):,} train tokens, {len(valid_ids):,} held-out tokens, "
        f"{tokens_per_step} tokens/step"
    )
    (work / "config.json").write_text(json.dumps({"args": asdict(args), "model": config}, indent=2))

    # Long enough to average out start-up costs; within warmup, so the schedule up to here is
    # the same whatever total it then fixes, and `--steps N` repeats the run exactly.
    probe_steps = min(50, args.warmup_steps)
    budget = (minutes or 0.0) * 60.0
    started = time.monotonic() - elapsed
    last_save = time.monotonic()
    eval_time = 0.0
    model.train()
    while total_steps is None or step < total_steps:
        if step % args.eval_every == 0:
            t0 = time.monotonic()
            log(f"step {step}: held-out loss {held_out_loss(model, valid_ids, args, device):.4f}")
            eval_time = time.monotonic() - t0
        lr = learning_rate(step, total_steps or 10**9, args)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = chunk_batch(train_ids, batch_starts(step, args, n_chunks), args.seq_len)
        x, y = (t.to(device) for t in batch)
        with autocast(args, device):
            loss = model.loss(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        optimizer.step()
        step += 1
        now = time.monotonic()
        if step % 10 == 0:
            rate = tokens_per_step * step / (now - started)
            log(f"step {step}: loss {loss.item():.4f} lr {lr:.2e} {rate:.0f} tok/s")
        if total_steps is None and step == probe_steps:
            per_step = (now - started - eval_time) / probe_steps
            per_step += eval_time / args.eval_every
            total_steps = probe_steps + max(1, int((budget - (now - started)) / per_step))
            log(
                f"{per_step:.2f} s/step: training {total_steps} steps "
                f"({total_steps * tokens_per_step / len(train_ids):.2f} epochs); "
                f"repeat with --steps {total_steps}"
            )
        if now - last_save > save_every_s or step == total_steps:
            save_state(
                state_path,
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "rng": torch.get_rng_state(),
                    "step": step,
                    "total_steps": total_steps,
                    "elapsed": now - started,
                    "args": asdict(args),
                },
            )
            last_save = now

    log(f"step {step}: final held-out loss {held_out_loss(model, valid_ids, args, device):.4f}")
    tensors = {name: t.detach().float().cpu().numpy() for name, t in model.state_dict().items()}
    save_checkpoint(out, config, tensors, tokenizer)
    if args.corpus != "stdlib":
        write_model_manifest(out, corpus_dir, tokenizer)
    log(f"exported to {out} after {(time.monotonic() - started) / 60:.1f} minutes")


def write_model_manifest(out: Path, corpus_dir: Path, tokenizer: Tokenizer) -> None:
    """The corpus manifest beside the exported model, its token counts in the model's own
    tokenizer."""
    built = json.loads((corpus_dir / "manifest.json").read_text())
    counts = {key: built[key] for key in ("duplicates_dropped", "lib_test_copies_dropped")}
    manifest = corpus_manifest(
        load_sources(corpus_dir), tokenizer, "tokenizer.json beside it", counts
    )
    write_manifest(out / "corpus-manifest.json", manifest)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="model directory to export")
    parser.add_argument("--work", type=Path, help="default: training-runs/demo-<corpus>")
    parser.add_argument("--corpus-dir", type=Path, default=Path("training-runs/corpus"))
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, help="CPU threads (default: all cores)")
    parser.add_argument("--minutes", type=float, help="training time budget")
    parser.add_argument("--steps", type=int, help="exact number of optimizer steps")
    parser.add_argument("--resume", action="store_true", help="continue from --work's state")
    defaults = TrainArgs()
    for name, value in asdict(defaults).items():
        if name == "seed":
            parser.add_argument("--seed", type=int, default=value)
        elif name == "bf16":
            parser.add_argument(
                "--bf16",
                action=argparse.BooleanOptionalAction,
                help="bfloat16 autocast (default: where the device multiplies bfloat16 natively)",
            )
        elif name == "corpus":
            parser.add_argument("--corpus", choices=("packages", "stdlib"), default=value)
        elif isinstance(value, bool):
            parser.add_argument(
                f"--{name.replace('_', '-')}", action=argparse.BooleanOptionalAction, default=value
            )
        else:
            parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    ns = parser.parse_args(argv)
    if ns.minutes is None and ns.steps is None and not ns.resume:
        parser.error("give --minutes or --steps")
    if ns.bf16 is None:
        ns.bf16 = has_bf16_matmul(ns.device)
    args = TrainArgs(**{name: getattr(ns, name) for name in asdict(defaults)})
    work = ns.work or Path(f"training-runs/demo-{args.corpus}")
    train(ns.out, work, args, ns.minutes, ns.steps, ns.resume, ns.corpus_dir, ns.device, ns.threads)


if __name__ == "__main__":
    main()
