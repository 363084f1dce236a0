"""Speculative decoding on an editing trace: graph runs, kept drafts and time per suggestion.

From a point of a standard-library file where the text before the cursor is about
`--context` tokens, the trace types the file on (`--trace typing`, as `bench.keystroke` does)
or types again the `--block` characters just before the cursor (`--trace repeat`: writing a
second case like the first, so the continuation repeats nearby code), a few characters at a
time, and asks for a greedy `--new-tokens` suggestion after each step, as the language server
does. Three engines alternate step by step:

- `recompute`: no prefix reuse, no speculation;
- `reuse`: prefix reuse, plain decoding (one graph run per token);
- `speculate`: prefix reuse and speculation, with the previous suggestion as draft context, as
  an editor client would pass it.

Per side: the whole suggestion's p50 milliseconds, graph runs per suggestion (prefill
included), and kept draft tokens per verify run; and at how many steps the speculative and
the recomputed suggestions equal the reuse side's (each path rounds differently, so where two
logits nearly tie, as on random weights, greedy picks can differ).

A model with random weights (the full-width slice) copies nothing, so its own drafts are
mostly rejected; `--agree` passes the reuse side's suggestion at the same step as draft
context instead, which is what the drafter finds when the model does copy the repeated code:
it measures what kept drafts save on that model's shapes.

`--compile-cost` instead times compiling the module with and without the verify graph.
Usage: `python -m bench.speculation --model demo --context 950`,
`python -m bench.speculation --slice 4 --quantization-encoding bfloat16 --steps 6 --agree`,
`python -m bench.speculation --compile-cost --layers 2`.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

from max.driver import CPU
from max.dtype import DType
from max.engine import InferenceSession
from max.graph import DeviceRef, Module

from bench.keystroke import TRACE_FILE, percentile, start_for_context, suggest, typing_trace
from bench.suite import WORK_DIR
from lsp_server.generation.local import LocalGenerator
from model.config import load_config, parse_config
from model.engine.engine import Engine
from model.engine.options import EngineOptions
from model.graph.builder import build_graph
from model.graph.options import DEFAULT_GRAPH
from model.hub import resolve_model_dir
from testkit.checkpoints import full_width_config, full_width_slice

SIDES = ("recompute", "reuse", "speculate")


def repeat_trace(text: str, start: int, block: int, steps: int, chars_per_step: int) -> list[str]:
    """The document before the cursor while the `block` characters before `start` are typed
    again after it."""
    copied = text[start - block : start]
    return [text[:start] + copied[: i * chars_per_step] for i in range(1, steps + 1)]


def measure_speculation(
    model_dir: Path,
    encoding: str,
    context: int,
    *,
    trace_kind: str = "repeat",
    block: int = 400,
    steps: int = 20,
    chars_per_step: int = 3,
    new_tokens: int = 16,
    speculative_tokens: int | None = None,
    agree: bool = False,
    sides: tuple[str, ...] = SIDES,
    progress=print,
) -> dict:
    """One row: per side, p50/p95 milliseconds of a whole suggestion, graph runs per
    suggestion and kept draft tokens per verify run; and the ratios the targets name."""
    max_length = min(load_config(model_dir).max_seq_len, context + block + new_tokens + 64)

    def engine(reuse: bool, speculate: bool) -> LocalGenerator:
        options = EngineOptions(
            model_dir=model_dir,
            quantization_encoding=encoding,
            max_length=max_length,
            max_cache_batch_size=1,
            prefix_reuse=reuse,
            speculative_tokens=speculative_tokens if speculate else 0,
        )
        return LocalGenerator(Engine(options))

    made = {"recompute": (False, False), "reuse": (True, False), "speculate": (True, True)}
    engines = {name: engine(*made[name]) for name in sides}
    text = TRACE_FILE.read_text()
    start = start_for_context(engines["reuse"], text, context)
    if trace_kind == "repeat":
        trace = repeat_trace(text, start, block, steps, chars_per_step)
    else:
        trace = typing_trace(text, start, steps, chars_per_step)
    for engine_ in engines.values():  # the file was open before typing began
        suggest(engine_, trace[0][:-1], new_tokens)
    samples: dict[str, list[dict]] = {name: [] for name in sides}
    previous: list[int] = []
    same = {name: 0 for name in sides}  # suggestions equal to the reuse side's
    for prefix in trace:
        suggestions = {}
        for name in sides:
            engine_ = engines[name]
            before = engine_.counters
            options = {}
            if name == "speculate" and agree:  # the reuse side's suggestion, where it goes
                options["draft_context"] = (
                    engine_.tokenizer.encode(prefix)[-3:] + suggestions["reuse"]
                )
            elif name == "speculate":
                options["draft_context"] = previous
            _, whole, stats, text = suggest(engine_, prefix, new_tokens, **options)
            suggestions[name] = engine_.tokenizer.encode(text)
            samples[name].append(
                {
                    "ms": whole * 1000,
                    "graph_runs": stats.graph_runs,
                    "verify_runs": engine_.counters.verify_runs - before.verify_runs,
                    "accepted": stats.accepted_tokens,
                    "tokens": stats.generated_tokens,
                }
            )
        for name in sides:
            same[name] += suggestions[name] == suggestions["reuse"]
        previous = suggestions["speculate"]
    row: dict = {
        "model": model_dir.name,
        "encoding": encoding,
        "context": context,
        "trace": trace_kind + (", agreeing drafts" if agree else ""),
        "speculative_tokens": engines[sides[-1]].engine.drafts.limit,
        "measured_lengths": engines[sides[-1]].engine.drafts.measured,
        "steps": len(trace),
    }
    for name in sides:
        if name != "reuse":
            row[f"{name}_same_as_reuse"] = same[name]
    for name, rows in samples.items():
        times = [r["ms"] for r in rows]
        verify_runs = sum(r["verify_runs"] for r in rows)
        row[f"{name}_p50_ms"] = round(percentile(times, 0.5), 1)
        row[f"{name}_p95_ms"] = round(percentile(times, 0.95), 1)
        row[f"{name}_graph_runs"] = sum(r["graph_runs"] for r in rows) / len(rows)
        row[f"{name}_tokens"] = sum(r["tokens"] for r in rows) / len(rows)
        if verify_runs:
            row[f"{name}_accepted_per_verify"] = sum(r["accepted"] for r in rows) / verify_runs
    if "recompute" in sides:
        row["whole_ratio_vs_recompute"] = row["recompute_p50_ms"] / row["speculate_p50_ms"]
    row["whole_ratio_vs_reuse"] = row["reuse_p50_ms"] / row["speculate_p50_ms"]
    row["graph_runs_ratio"] = row["reuse_graph_runs"] / row["speculate_graph_runs"]
    progress(str(row))
    return row


def compile_seconds(layers: int, with_verify: bool) -> tuple[float, float]:
    """Wall and CPU seconds to compile a full-width `layers`-block module for the CPU in
    float32: prefill and decode graphs, and the verify graph if asked."""
    config = parse_config(full_width_config(layers))
    device = DeviceRef.CPU()
    started, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    module = Module()
    graph = build_graph(config, DType.float32, device, DEFAULT_GRAPH, module=module)
    graph = build_graph(config, DType.float32, device, DEFAULT_GRAPH, module=module, decode=True)
    if with_verify:
        graph = build_graph(
            config, DType.float32, device, DEFAULT_GRAPH, module=module, verify=True
        )
    InferenceSession(devices=[CPU()]).compile(graph)
    after = resource.getrusage(resource.RUSAGE_SELF)
    used = after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime
    return time.perf_counter() - started, used


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--weight-path")
    parser.add_argument("--model", default="demo")
    parser.add_argument("--slice", type=int, help="a full-width slice of this many layers")
    parser.add_argument("--quantization-encoding", default="float32")
    parser.add_argument("--context", type=int, default=1000)
    parser.add_argument("--trace", choices=("repeat", "typing"), nargs="+", default=["repeat"])
    parser.add_argument("--block", type=int, default=400, help="characters typed again")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--chars-per-step", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument(
        "--speculative-tokens",
        type=int,
        help="drafts a verify run checks, every run (default: the engine's, chosen as measured)",
    )
    parser.add_argument("--agree", action="store_true", help="drafts: the plain suggestion")
    parser.add_argument("--compile-cost", action="store_true")
    parser.add_argument("--layers", type=int, default=2, help="layers for --compile-cost")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument(
        "--without-recompute", action="store_true", help="only the reuse and speculate sides"
    )
    args = parser.parse_args()
    if args.compile_cost:
        for with_verify in (False, True):
            wall, cpu = compile_seconds(args.layers, with_verify)
            print(f"verify graph {with_verify}: {wall:.1f} s wall, {cpu:.1f} s CPU")
        return
    if args.slice:
        model_dir = WORK_DIR / f"slice{args.slice}"
        if not (model_dir / "config.json").exists():
            full_width_slice(model_dir, args.slice, resolve_model_dir(None, "demo"))
    else:
        model_dir = resolve_model_dir(args.weight_path, args.model)
    print(f"model {model_dir}, {args.quantization_encoding}, trace file {TRACE_FILE.name}")
    rows = [
        measure_speculation(
            model_dir,
            args.quantization_encoding,
            args.context,
            trace_kind=trace_kind,
            block=args.block,
            steps=args.steps,
            chars_per_step=args.chars_per_step,
            new_tokens=args.new_tokens,
            speculative_tokens=args.speculative_tokens,
            agree=args.agree,
            sides=SIDES[1:] if args.without_recompute else SIDES,
        )
        for trace_kind in args.trace
    ]
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
