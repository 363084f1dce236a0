"""`make bench-full`: the real model's shape (32 layers, random weights) against llama.cpp.

Slices hide what the whole model costs: memory, load and restart time, and per-layer overheads
that only add up over 32 layers. Here each engine loads the full-size checkpoint in a process
of its own, one engine in memory at a time (two float32 copies of the 3B model do not fit in
24 GB), and the order alternates (MAX, llama.cpp, MAX, ...) so that a machine that slows down
during the run shows as spread between a runner's rounds, not as a ratio. Per round:

- load: process start to a built engine, its weight files read once before (the page cache
  holds them, as on a restart), with the resident memory (VmRSS) after loading and its peak
  (VmHWM) during loading;
- prefill of 128 and 512 random tokens from an empty cache, and decode after 16 tokens;
- a 16-token suggestion at a 1000-token context, recomputed (nothing cached) and with reuse
  (the same context plus three typed tokens), which also gives decode at that context;
- resident memory once the work is done, and the peak over the whole round.

Then the restart of `replit-lsp --prompt`: process start to the first completion text with
the compiled model in its cache and the weights in the page cache, after a first start that
compiled; for Q8_0 and Q4_0 also of the bfloat16 checkpoint, whose first start quantizes the
weights and keeps the blocks for the restart.
Usage: `python -m bench.full_size [--out bench/results/full] [--rounds 2]`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bench.report import full_size_markdown
from bench.runners import RemoteRunner, Suggestion
from bench.startup import first_completion
from bench.suite import WORK_DIR, machine
from bench.throughput_table import llama_cpp_available
from model.config import load_config
from model.hub import resolve_model_dir
from model.weights.files import weight_files
from model.weights.gguf_export import export_gguf, export_gguf_dir
from model.weights.tensors import BLOCK_FORMATS
from testkit.checkpoints import REAL_LAYERS, full_width_slice, make_random_checkpoint, weight_bytes

ENCODINGS = ("bfloat16", "float32", *BLOCK_FORMATS)
TYPED_TOKENS = 3


@dataclass(frozen=True)
class Plan:
    prefill_lengths: tuple[int, ...] = (128, 512)
    context: int = 1000  # of the suggestion, and of the second decode figure
    suggestion_tokens: int = 16
    max_length: int = 1100  # room for the context, what is typed and the suggestion

    @property
    def metrics(self) -> list[str]:
        lengths = [f"prefill {n}" for n in self.prefill_lengths]
        return [*lengths, "decode", f"decode at {self.context}"]


FULL = Plan()
SMOKE = Plan(prefill_lengths=(32, 64), context=96, suggestion_tokens=4, max_length=128)


def memory(pid: int) -> dict[str, int]:
    """The process's resident bytes now (VmRSS) and at most so far (VmHWM)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024
    return {"rss": fields["VmRSS"], "peak": fields["VmHWM"]}


def kv_cache_bytes(model_dir: Path, positions: int) -> int:
    """The engine's one cache slot: float32 K and V of every layer at `positions`."""
    c = load_config(model_dir)
    return 2 * c.n_layers * c.kv_n_heads * positions * c.head_dim * 4


def warm_page_cache(files: list[Path]) -> None:
    """Reads `files` once, so that a load measures the engine, not the disk: each engine's
    files are read while the other engine's stay in cache, or were evicted by it."""
    for file in files:
        with file.open("rb") as f:
            while f.read(64 << 20):
                pass


def full_size_checkpoint(work_dir: Path, encoding: str) -> Path:
    """The random checkpoint of the real shape in `encoding` under `work_dir`, written when
    missing. A block encoding's is one GGUF file, which both engines load, quantized from the
    bfloat16 checkpoint (written first when missing)."""
    model_dir = work_dir / f"full{REAL_LAYERS}-{encoding}"
    if not (model_dir / "config.json").exists():
        print(f"writing the {encoding} checkpoint to {model_dir}", flush=True)
        if encoding in BLOCK_FORMATS:
            export_gguf_dir(full_size_checkpoint(work_dir, "bfloat16"), model_dir, encoding)
        else:
            full_width_slice(model_dir, REAL_LAYERS, resolve_model_dir(None, "demo"), encoding)
    return model_dir


def measure_round(
    name: str, kwargs: dict, files: list[Path], vocab: int, seed: int, plan: Plan
) -> dict:
    """Every measurement of one engine, loaded afresh in its own process."""
    rng = np.random.default_rng(seed)
    warm_page_cache(files)
    started = time.perf_counter()
    runner = RemoteRunner(name, **kwargs)
    try:
        result: dict = {"engine": name, "load_seconds": time.perf_counter() - started}
        result["loaded"] = memory(runner.pid)
        probe = rng.integers(2, vocab, size=32).tolist()
        result["probe_logits"] = runner.logits(probe)  # also the warm-up
        for length in plan.prefill_lengths:
            prompt = rng.integers(2, vocab, size=length).tolist()
            result[f"prefill {length}"] = length / runner.prefill_seconds(prompt)
        steps, seconds = runner.decode_seconds(rng.integers(2, vocab, size=16).tolist(), 16)
        result["decode"] = steps / seconds
        context = rng.integers(2, vocab, size=plan.context).tolist()
        recompute: Suggestion = runner.suggestion(context, plan.suggestion_tokens)
        typed = context + rng.integers(2, vocab, size=TYPED_TOKENS).tolist()
        reuse: Suggestion = runner.suggestion(typed, plan.suggestion_tokens)
        if reuse.reused_tokens < plan.context:
            raise RuntimeError(f"{name} reused {reuse.reused_tokens} of {plan.context} tokens")
        result[f"decode at {plan.context}"] = recompute.decode_tokens_per_s
        result["suggestion"] = {"recompute": recompute.__dict__, "reuse": reuse.__dict__}
        result["done"] = memory(runner.pid)
        return result
    finally:
        runner.close()


def median_of(rounds: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rounds)


def summarize(rounds: list[dict], plan: Plan, weights: int, kv: int) -> dict:
    """Medians over the rounds of one engine; memory as the worst round's."""
    summary = {
        "load_seconds": median_of(rounds, "load_seconds"),
        **{metric: median_of(rounds, metric) for metric in plan.metrics},
        "rss_loaded": max(r["loaded"]["rss"] for r in rounds),
        "rss_steady": max(r["done"]["rss"] for r in rounds),
        "rss_peak": max(r["done"]["peak"] for r in rounds),
    }
    for how in ("recompute", "reuse"):
        for part in ("first_token_seconds", "total_seconds"):
            values = [r["suggestion"][how][part] for r in rounds]
            summary[f"suggestion {how} {part}"] = statistics.median(values)
    summary["memory_bound"] = weights + kv
    summary["rss_over_bound"] = summary["rss_peak"] / (weights + kv)
    return summary


def measure_encoding(
    model_dir: Path, encoding: str, plan: Plan, rounds: int, threads: int, work: Path
) -> dict:
    vocab = load_config(model_dir).vocab_size
    plans = {
        "MAX": {
            "model_dir": model_dir,
            "encoding": encoding,
            "max_length": plan.max_length,
            "prefix_reuse": True,
            "cache_dir": work / "compiled",
        }
    }
    if llama_cpp_available():
        gguf_path = model_dir / "model.gguf"  # a block encoding's checkpoint is that file
        if encoding not in BLOCK_FORMATS:
            gguf_path = export_gguf(model_dir, work / f"{model_dir.name}.gguf", encoding)
        plans["llama.cpp"] = {
            "gguf_path": gguf_path,
            "max_length": plan.max_length,
            "threads": threads,
        }
    measured: dict[str, list[dict]] = {name: [] for name in plans}
    for index in range(rounds):
        order = list(plans) if index % 2 == 0 else list(plans)[::-1]
        for name in order:
            # The same prompts for every engine in a round.
            files = weight_files(model_dir) if name == "MAX" else [plans[name]["gguf_path"]]
            measured[name].append(
                measure_round(name, plans[name], files, vocab, seed=index, plan=plan)
            )
            shown = {k: v for k, v in measured[name][-1].items() if k != "probe_logits"}
            print(name, encoding, shown, flush=True)
    mismatch = None
    if "llama.cpp" in measured:
        ours, theirs = measured["MAX"][0]["probe_logits"], measured["llama.cpp"][0]["probe_logits"]
        mismatch = float(np.abs(ours - theirs).max() / np.abs(theirs).max())
    weights, kv = weight_bytes(model_dir, encoding), kv_cache_bytes(model_dir, plan.max_length)
    summaries = {name: summarize(rounds_, plan, weights, kv) for name, rounds_ in measured.items()}
    for rounds_ in measured.values():
        for r in rounds_:
            r.pop("probe_logits")
    return {"summary": summaries, "rounds": measured, "logit_mismatch": mismatch}


def measure_restart(model_dir: Path, encoding: str, plan: Plan, cache: Path) -> dict:
    """A first start (which compiles unless `cache` has the model from an earlier run), then
    the restart a user has every day after it."""
    args = ["--weight-path", str(model_dir), "--quantization-encoding", encoding]
    args += ["--max-length", str(plan.max_length)]
    first = first_completion(args, cache)
    warm_page_cache(weight_files(model_dir))
    restarts = [first_completion(args, cache) for _ in range(2)]
    return {"first start": first, "restart": min(restarts, key=lambda r: r["seconds"])}


def measure_quantizing_restart(source: Path, encoding: str, plan: Plan, cache: Path) -> dict:
    """`measure_restart` of a float checkpoint in a block encoding: the first start quantizes
    the weights and keeps the blocks next to the compiled model, a restart reads them back."""
    for kept in cache.glob(f"*.{encoding}"):  # the blocks of an earlier run of the bench
        shutil.rmtree(kept)
    starts = measure_restart(source, encoding, plan, cache)
    os.sync()  # the gigabytes just written reach the disk now, not during the next rounds
    return starts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("bench/results/full"))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--encodings", nargs="+", default=list(ENCODINGS), choices=ENCODINGS)
    parser.add_argument("--work-dir", type=Path, default=WORK_DIR)
    parser.add_argument("--smoke", action="store_true", help="a tiny model, few tokens, 1 round")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    threads = os.cpu_count() or 1
    plan = SMOKE if args.smoke else FULL
    layers = 2 if args.smoke else REAL_LAYERS
    results: dict = {
        "date": datetime.date.today().isoformat(),
        "machine": machine(threads),
        "layers": layers,
        "plan": asdict(plan) | {"metrics": plan.metrics},
        "encodings": {},
    }
    print(f"machine: {results['machine']}", flush=True)
    for encoding in ["float32"] if args.smoke else args.encodings:
        if args.smoke:
            model_dir = args.work_dir / f"tiny-{encoding}"
            if not (model_dir / "config.json").exists():
                make_random_checkpoint(model_dir)
        else:
            model_dir = full_size_checkpoint(args.work_dir, encoding)
        cache = args.work_dir / "compiled"
        entry = {"restart": measure_restart(model_dir, encoding, plan, cache)}
        print(encoding, entry["restart"], flush=True)
        if encoding in BLOCK_FORMATS and not args.smoke:
            source = full_size_checkpoint(args.work_dir, "bfloat16")
            entry["restart from bfloat16"] = measure_quantizing_restart(
                source, encoding, plan, cache
            )
            print(encoding, "from bfloat16", entry["restart from bfloat16"], flush=True)
        rounds = 1 if args.smoke else args.rounds
        entry |= measure_encoding(model_dir, encoding, plan, rounds, threads, args.work_dir)
        entry["weight_bytes"] = weight_bytes(model_dir, encoding)
        results["encodings"][encoding] = entry
        (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    text = full_size_markdown(results)
    (args.out / "BENCHMARKS.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
