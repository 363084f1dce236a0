"""Per-keystroke latency of a complete suggestion, with prefix reuse and with recompute.

Replays a real editing trace: a standard-library file typed a few characters at a time from a
point where the text before the cursor is about `--context` tokens, asking for a suggestion
after each step, exactly as the language server builds its prompt (the text before the
cursor). Both engines run in the same process, alternating step by step. Besides the whole
suggestion (`--new-tokens` tokens), the time to its first token is reported: that is the part
of a keystroke's cost that depends on the prompt, where reuse acts.
Usage: `python -m bench.keystroke --model demo --context 250 1000`.
"""

from __future__ import annotations

import argparse
import sysconfig
import time
from pathlib import Path
from typing import Any

from model.engine import Engine, EngineOptions, Generation
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


def suggest(
    engine: Engine, prefix: str, new_tokens: int, **options: Any
) -> tuple[float, float, int, Generation]:
    """Seconds to the first token and to the whole suggestion (tokenization included), how
    many prompt tokens came from the cache, and the generation (for its statistics);
    `options` go to `Engine.generate`."""
    started = time.perf_counter()
    first = None
    ids = engine.tokenizer.encode(prefix)[-(engine.max_length - new_tokens) :]
    params = SamplingParams(max_new_tokens=new_tokens, top_k=1)
    with engine.generate(ids, params, **options) as generation:
        for _ in generation:
            first = first or time.perf_counter()
    done = time.perf_counter()
    return (first or done) - started, done - started, generation.reused_tokens, generation


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure_keystrokes(
    model_dir: Path,
    encoding: str,
    contexts: list[int],
    *,
    steps: int = 20,
    chars_per_step: int = 3,
    new_tokens: int = 16,
    label: str = "",
    use_gpu: bool = False,
    progress=print,
) -> list[dict]:
    """One row per context: p50/p95 milliseconds with reuse and with recompute."""

    def engine(reuse: bool) -> Engine:
        options = EngineOptions(
            model_dir=model_dir,
            max_length=max(contexts) + new_tokens + 64,
            quantization_encoding=encoding,
            max_cache_batch_size=1,
            prefix_reuse=reuse,
            use_gpu=use_gpu,
        )
        return Engine(options)

    engines = {"reuse": engine(True), "recompute": engine(False)}
    text = TRACE_FILE.read_text()
    rows = []
    for context in contexts:
        start = start_for_context(engines["reuse"], text, context)
        trace = typing_trace(text, start, steps, chars_per_step)
        for engine_ in engines.values():  # the file was open before typing began
            suggest(engine_, trace[0][:-1], new_tokens)
        timings: dict[str, list[tuple[float, float, int, Generation]]] = {n: [] for n in engines}
        for prefix in trace:
            for name, engine_ in engines.items():
                timings[name].append(suggest(engine_, prefix, new_tokens))
        row: dict = {"model": label, "encoding": encoding, "context": context}
        for name, samples in timings.items():
            for part, index in (("first", 0), ("whole", 1)):
                values = [sample[index] * 1000 for sample in samples]
                row[f"{name}_{part}_p50_ms"] = percentile(values, 0.5)
                row[f"{name}_{part}_p95_ms"] = percentile(values, 0.95)
            row[f"{name}_reused_tokens"] = sum(sample[2] for sample in samples) / len(samples)
        for part in ("first", "whole"):
            row[f"{part}_ratio"] = row[f"recompute_{part}_p50_ms"] / row[f"reuse_{part}_p50_ms"]
        rows.append(row)
        progress(str(row))
    return rows


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
    print(f"model {model_dir}, {args.quantization_encoding}, trace {TRACE_FILE.name}")
    measure_keystrokes(
        model_dir,
        args.quantization_encoding,
        args.context,
        steps=args.steps,
        chars_per_step=args.chars_per_step,
        new_tokens=args.new_tokens,
    )


if __name__ == "__main__":
    main()
