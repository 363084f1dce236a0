"""Keystroke to suggestion as a user meets it, through the real server process over stdio.

Each trace (`bench.experience.traces`) is driven through `replit-lsp --stdio` with the server's
latency features on, off, and each off alone on the trace it is for
(`bench.experience.configurations`), each run in a fresh server, so that none starts with
another's KV cache; the settings go in `initializationOptions`, greedy as by default.

Usage:
    python -m bench.experience --model demo --keystrokes 12
    python -m bench.experience --full-size q4_0 q8_0 bfloat16 --work-dir DIR --label full32
    python -m bench.experience --weight-path DIR --quantization-encoding q4_0 \
        --weight-path DIR2 --quantization-encoding q8_0 --traces jump --configs "all on" "all off"
Results: `bench/results/experience/<label>.json`, `.md` (a table per model, trace by
configuration) and `.png` (the latency of each request along each trace).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
from pathlib import Path
from typing import Any

from bench.experience.configurations import BASELINE, CONFIGURATIONS, Configuration
from bench.experience.report import agreement, markdown, plot, summarize
from bench.experience.session import Session, default_server, run_trace
from bench.experience.traces import TRACES
from bench.full_size import full_size_checkpoint
from bench.suite import WORK_DIR, machine
from lsp_server.options import option_named
from model.hub import resolve_model_dir

SMOKE_KEYSTROKES = 16  # enough for the retyping trace to go back to a suggestion
SMOKE_PAUSE_LIMIT = 10.0


def measure_trace(
    command: list[str], trace_name: str, configurations: list[Configuration], args: Any
) -> list[dict[str, Any]]:
    """One run per configuration of one trace, each in a server of its own. The first run
    that pauses sets the pause of the others, so that all see the same one."""
    trace = TRACES[trace_name]().capped(args.keystrokes)
    runs: list[dict[str, Any]] = []
    pause = None
    for configuration in configurations:
        if not configuration.runs_on(trace_name):
            continue
        session = Session(command, configuration.settings)
        try:
            run = run_trace(session, trace, pause, args.pause_limit, args.gap_ms / 1000)
        finally:
            exit_code = session.close()
        pause = run.get("pause_seconds", pause)
        run = {"trace": trace_name, "configuration": configuration.name, **run}
        runs.append(run | {"exit_code": exit_code, "summary": summarize(run)})
        print(trace_name, configuration.name, runs[-1]["summary"], flush=True)
    baseline = next((r for r in runs if r["configuration"] == BASELINE), None)
    for run in runs:
        if baseline is not None and run is not baseline:
            run["agreement"] = agreement(run, baseline)
    return runs


def models_of(args: argparse.Namespace) -> list[tuple[Path, str]]:
    """The (checkpoint, encoding) pairs to measure, in order."""
    encodings = args.quantization_encoding or ["float32"]
    if args.full_size:
        return [(full_size_checkpoint(args.work_dir, e), e) for e in args.full_size]
    if not args.weight_path:
        return [(resolve_model_dir(None, args.model), e) for e in encodings]
    if len(encodings) == 1:
        encodings = encodings * len(args.weight_path)
    if len(encodings) != len(args.weight_path):
        raise SystemExit("give one --quantization-encoding, or one per --weight-path")
    return [
        (resolve_model_dir(p, args.model), e)
        for p, e in zip(args.weight_path, encodings, strict=True)
    ]


def write(result: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{result['label']}.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / f"{result['label']}.md").write_text(markdown(result))
    plot(result, out / f"{result['label']}.png")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        "python -m bench.experience", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--model", default="demo")
    parser.add_argument("--weight-path", action="append", help="repeatable")
    parser.add_argument(
        "--quantization-encoding", action="append", help="one, or one per --weight-path"
    )
    parser.add_argument(
        "--full-size", nargs="+", metavar="ENCODING", help="the 32-layer random checkpoints "
        "in --work-dir in these encodings (written when missing, as bench.full_size does)"
    )  # fmt: skip
    parser.add_argument("--work-dir", type=Path, default=WORK_DIR)
    parser.add_argument("--max-length", type=int, default=option_named("max_length").default)
    parser.add_argument("--traces", nargs="+", choices=list(TRACES), default=list(TRACES))
    names = [c.name for c in CONFIGURATIONS]
    parser.add_argument("--configs", nargs="+", choices=names, default=names)
    parser.add_argument("--keystrokes", type=int, default=24, help="most requests per trace")
    parser.add_argument(
        "--pause-limit", type=float, default=60.0, help="most seconds to wait for a pre-warm"
    )
    parser.add_argument(
        "--gap-ms", type=float, default=0.0, help="from an answer or an accept to the next step"
    )
    parser.add_argument("--label")
    parser.add_argument("--out", type=Path, default=Path("bench/results/experience"))
    parser.add_argument("--smoke", action="store_true", help="the demo model, a few keystrokes")
    args = parser.parse_args()
    if args.smoke:
        args.model, args.weight_path, args.full_size = "demo", None, None
        args.keystrokes, args.pause_limit = SMOKE_KEYSTROKES, SMOKE_PAUSE_LIMIT
    return args


def main() -> None:
    args = parse_args()
    models = models_of(args)
    configurations = [c for c in CONFIGURATIONS if c.name in args.configs]
    result: dict[str, Any] = {
        "label": args.label or "+".join(dict.fromkeys(d.name for d, _ in models)),
        "date": datetime.date.today().isoformat(),
        "machine": machine(os.cpu_count() or 1),
        "keystrokes": args.keystrokes,
        "gap_ms": args.gap_ms,
        "max_length": args.max_length,
        "baseline": BASELINE,
        "configurations": {c.name: c.settings for c in configurations},
        "models": {},
    }
    for model_dir, encoding in models:
        command = default_server(model_dir, encoding, args.max_length)
        runs = result["models"].setdefault(f"{model_dir.name} {encoding}", [])
        for trace_name in args.traces:
            runs += measure_trace(command, trace_name, configurations, args)
            write(result, args.out)  # what is measured so far survives a run cut short
    print(markdown(result))


if __name__ == "__main__":
    main()
