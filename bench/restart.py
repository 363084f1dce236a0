"""Restarts of `replit-lsp --prompt`, several per model: process start to the first completion
text with the compiled model in its cache and the weights in the page cache, as a user has it
every day after the first start.

Each model is given as ENCODING=CHECKPOINT (a block encoding of a float checkpoint is quantized
at its first start and read back from the cache at each restart). A first start fills the
caches; then the weight files are read once and each restart is timed, with the one-minute
load average just before it: on a machine shared with other work a restart measures that
work too, so a row taken above MAX_LOAD is marked.
Usage: `python -m bench.restart --runs 3 --out bench/results/restart
bfloat16=/path/to/checkpoint q8_0=/path/to/gguf-checkpoint ...`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import sys
from pathlib import Path

from bench.full_size import warm_page_cache
from bench.startup import first_completion
from bench.suite import WORK_DIR, machine
from model.weights.encodings import ENCODINGS
from model.weights.files import weight_files

# A one-minute load average above this on the 2-core machine here means other work shared
# the cores during a restart.
MAX_LOAD = 1.5


def measure(model_dir: Path, encoding: str, cache: Path, runs: int, max_length: int) -> dict:
    """The first start, then `runs` restarts, each with the load average before it."""
    args = ["--weight-path", str(model_dir), "--quantization-encoding", encoding]
    args += ["--max-length", str(max_length)]
    first = first_completion(args, cache)
    restarts = []
    for _ in range(runs):
        warm_page_cache(weight_files(model_dir))
        load = os.getloadavg()[0]
        restarts.append({**first_completion(args, cache), "load_average": load})
        print(encoding, model_dir.name, restarts[-1], flush=True)
    return {"model_dir": str(model_dir), "first start": first, "restarts": restarts}


def restart_cell(restart: dict) -> str:
    load = restart["load_average"]
    return f"{restart['seconds']:.2f} ({load:.1f}{'!' if load > MAX_LOAD else ''})"


def markdown(results: dict) -> str:
    lines = [
        f"Measured {results['date']} on {results['machine']['cpu']} "
        f"({results['machine']['cores']} cores), MAX {results['machine']['max_version']}.",
        f"Command: `{results['command']}`",
        "",
        "| weights | checkpoint | compiled model from | restart s (load average) |",
        "|---|---|---|---|",
    ]
    for row in results["models"]:
        runs = ", ".join(restart_cell(r) for r in row["restarts"])
        source = row["restarts"][0]["source"]
        lines.append(f"| {row['encoding']} | {Path(row['model_dir']).name} | {source} | {runs} |")
    lines += ["", f"`!`: the load average was above {MAX_LOAD} (other work on the cores)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("models", nargs="+", help="ENCODING=CHECKPOINT_DIR")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--cache", type=Path, default=WORK_DIR / "compiled")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results: dict = {
        "date": datetime.date.today().isoformat(),
        "machine": machine(os.cpu_count() or 1),
        "command": shlex.join(["python", "-m", "bench.restart", *sys.argv[1:]]),
        "models": [],
    }
    for spec in args.models:
        encoding, _, model_dir = spec.partition("=")
        if encoding not in ENCODINGS or not model_dir:
            parser.error(f"{spec}: expected ENCODING=CHECKPOINT_DIR, ENCODING one of {ENCODINGS}")
        row = measure(Path(model_dir), encoding, args.cache, args.runs, args.max_length)
        results["models"].append({"encoding": encoding, **row})
    text = markdown(results)
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        (args.out / "BENCHMARKS.md").write_text(text)


if __name__ == "__main__":
    main()
