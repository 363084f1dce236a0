"""Per-keystroke latency of a complete suggestion, with prefix reuse and with recompute.

Replays a real editing trace: a standard-library file typed a few characters at a time from a
point where the text before the cursor is about `--context` tokens, asking for a suggestion
after each step, exactly as the language server builds its prompt (the text before the
cursor). Both engines run in the same process, alternating step by step.
Usage: `python -m bench.keystroke --model demo --context 250 1000`.
"""

from __future__ import annotations

import argparse
import statistics
import sysconfig
import time
from pathlib import Path

from model.engine import Engine, EngineOptions
from model.hub import resolve_model_dir
from model.sampling import SamplingParams

TRACE_FILE = Path(sysconfig.get_paths()["stdlib"]) / "textwrap.py"


def typing_trace(text: str, start: int, steps: int, chars_per_step: int) -> list[str]:
    """The document prefix before the cursor after each burst of typing."""
    return [text[: start + i * chars_per_step] for i in range(1, steps + 1)]


def start_for_context(engine: Engine, text: str, tokens: int) -> int:
    """The character offset whose prefix tokenizes to about `tokens` tokens."""
    ids = engine.tokenizer.encode(text)
    return len(engine.tokenizer.decode(ids[:tokens]))


def suggest(engine: Engine, prefix: str, new_tokens: int) -> float:
    started = time.perf_counter()
    ids = engine.tokenizer.encode(prefix)[-(engine.max_length - new_tokens) :]
    with engine.generate(ids, SamplingParams(max_new_tokens=new_tokens)) as generation:
        list(generation)
    return time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--weight-path")
    parser.add_argument("--model", default="demo")
    parser.add_argument("--context", type=int, nargs="+", default=[250, 1000])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--chars-per-step", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--quantization-encoding", default="float32")
    args = parser.parse_args()
    model_dir = resolve_model_dir(args.weight_path, args.model)
    max_length = max(args.context) + args.new_tokens + 64

    def engine(reuse: bool) -> Engine:
        options = EngineOptions(
            model_dir=model_dir,
            max_length=max_length,
            quantization_encoding=args.quantization_encoding,
            prefix_reuse=reuse,
        )
        return Engine(options)

    reuse, recompute = engine(True), engine(False)
    text = TRACE_FILE.read_text()
    print(f"model {model_dir}, {args.quantization_encoding}, trace {TRACE_FILE.name}")
    print("| context | reuse p50 | reuse p95 | recompute p50 | recompute p95 | ratio p50 |")
    print("|---|---|---|---|---|---|")
    for context in args.context:
        start = start_for_context(reuse, text, context)
        trace = typing_trace(text, start, args.steps, args.chars_per_step)
        timings: dict[str, list[float]] = {"reuse": [], "recompute": []}
        suggest(reuse, trace[0][:-1], args.new_tokens)  # the file was open before typing
        for prefix in trace:
            timings["reuse"].append(suggest(reuse, prefix, args.new_tokens))
            timings["recompute"].append(suggest(recompute, prefix, args.new_tokens))
        r50, r95 = percentile(timings["reuse"], 0.5), percentile(timings["reuse"], 0.95)
        c50 = percentile(timings["recompute"], 0.5)
        c95 = percentile(timings["recompute"], 0.95)
        print(
            f"| ~{context} | {r50 * 1000:.0f} ms | {r95 * 1000:.0f} ms | {c50 * 1000:.0f} ms "
            f"| {c95 * 1000:.0f} ms | {c50 / r50:.1f}x |"
        )
        print(f"  mean reuse {statistics.mean(timings['reuse']) * 1000:.0f} ms", flush=True)


if __name__ == "__main__":
    main()
