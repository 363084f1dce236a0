"""`make bench`: every side-by-side measurement, written to bench/results/ as Markdown and PNG.

Stages run one after another (never two timed things at once on this machine): read
bandwidth; prefill/decode throughput against llama.cpp on the demo model and a full-width
Replit slice, in float32 and bfloat16; decode against the bandwidth bound; keystroke latency
with and without prefix reuse; start-up to the first completion. `--smoke` runs the same code
on a tiny random checkpoint in a minute or two, for the test suite.
Usage: `python -m bench.suite [--out bench/results] [--layers 4] [--smoke]`.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
from pathlib import Path

from bench.bandwidth import measure_in_fresh_process
from bench.keystroke import measure_keystrokes
from bench.report import markdown, write_report
from bench.startup import measure_startup
from bench.throughput_table import llama_cpp_available, measure_checkpoint
from model.hub import resolve_model_dir
from model.weights.encodings import ENCODINGS
from testkit.checkpoints import full_width_slice, make_random_checkpoint, weight_bytes

WORK_DIR = Path.home() / ".cache" / "replit-lsp" / "bench"
STAGES = ("throughput", "keystroke", "startup")


def gpu_name() -> str:
    """The GPU's product name for the report; MAX's device API names only its architecture."""
    try:
        query = ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"]
        return subprocess.run(query, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        from max.driver import Accelerator

        return Accelerator().architecture_name


def save(results: dict, out: Path) -> None:
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")


def machine(threads: int) -> dict:
    cpu = platform.processor() or platform.machine()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")

    def version(package: str) -> str | None:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": pages / 2**30,
        "max_version": version("max"),
        "llama_cpp_version": version("llama_cpp_python"),
        "threads": threads,
    }


def roofline(throughput: list[dict], sizes: dict[str, Path], bandwidth: float) -> list[dict]:
    rows = []
    for row in throughput:
        if row["metric"] != "decode":
            continue
        size = weight_bytes(sizes[row["model"]], row["encoding"])
        llama = row["llama_tokens_per_s"]
        rows.append(
            {
                "model": row["model"],
                "encoding": row["encoding"],
                "weight_bytes": size,
                "bound_tokens_per_s": bandwidth * 1e9 / size,
                "max_tokens_per_s": row["max_tokens_per_s"],
                "max_fraction": row["max_tokens_per_s"] * size / (bandwidth * 1e9),
                "llama_tokens_per_s": llama,
                "llama_fraction": llama * size / (bandwidth * 1e9) if llama else None,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--layers", type=int, default=4, help="layers of the full-width slice")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="tiny model, few tokens")
    parser.add_argument("--no-llama", action="store_true", help="MAX only")
    parser.add_argument("--work-dir", type=Path, default=WORK_DIR)
    parser.add_argument("--use-gpu", action="store_true", help="run MAX on the GPU")
    parser.add_argument("--models", nargs="+", help="only these of demo, slice-NL (not --smoke)")
    parser.add_argument(
        "--encodings", nargs="+", default=list(ENCODINGS), choices=ENCODINGS, help="not --smoke"
    )
    parser.add_argument(
        "--stages", nargs="+", default=list(STAGES), choices=STAGES, help="what to measure"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    threads = os.cpu_count() or 1
    with_llama = not args.no_llama and llama_cpp_available()
    demo = resolve_model_dir(None, "demo")
    results: dict = {
        "date": datetime.date.today().isoformat(),
        "machine": machine(threads) | ({"gpu": gpu_name()} if args.use_gpu else {}),
        "smoke": args.smoke,
        "device": "GPU" if args.use_gpu else "CPU",
    }

    if args.smoke:
        tiny_dir = args.work_dir / "tiny"
        if not (tiny_dir / "config.json").exists():
            make_random_checkpoint(tiny_dir)
        sizes = {"tiny": tiny_dir}
        plan = [("tiny", "float32")]
        lengths, decode_tokens, editing_context, repeats = [32, 64], 8, 96, 1
        keystroke_plan = [("tiny", "float32", [60], 2)]
        bandwidth_bytes = 64 << 20
    else:
        slice_label = f"slice-{args.layers}L"
        slice_dir = args.work_dir / f"slice{args.layers}"
        if not (slice_dir / "config.json").exists():
            full_width_slice(slice_dir, args.layers, demo)
        sizes = {"demo": demo, slice_label: slice_dir}
        chosen = args.models or list(sizes)
        if unknown := sorted(set(chosen) - set(sizes)):
            parser.error(f"unknown --models {unknown}; choose from {sorted(sizes)}")
        plan = [(name, encoding) for name in chosen for encoding in args.encodings]
        # The second decode row's context: about what an editor sends around the cursor.
        lengths, decode_tokens, editing_context, repeats = [128, 512, 2048], 64, 1000, args.repeats
        keystroke_plan = [
            ("demo", "float32", [250, 900], 20),
            (slice_label, "bfloat16", [250, 1000], 10),
        ]
        keystroke_plan = [entry for entry in keystroke_plan if entry[0] in chosen]
        bandwidth_bytes = 1 << 30

    print(f"machine: {results['machine']}", flush=True)
    results["bandwidth"] = measure_in_fresh_process(buffer_bytes=bandwidth_bytes)
    print(f"read bandwidth: {results['bandwidth']}", flush=True)

    results["throughput"], results["logit_mismatch"] = [], {}
    for name, encoding in plan if "throughput" in args.stages else []:
        rows, mismatch = measure_checkpoint(
            name,
            sizes[name],
            encoding,
            prefill_lengths=lengths,
            decode_tokens=decode_tokens,
            editing_context=editing_context,
            repeats=repeats,
            threads=threads,
            work_dir=args.work_dir,
            with_llama=with_llama,
            use_gpu=args.use_gpu,
        )
        results["throughput"] += [row.as_dict() for row in rows]
        if mismatch is not None:
            results["logit_mismatch"][f"{name} {encoding}"] = mismatch
        save(results, args.out)  # a run cut short keeps what it measured
    # The bound is the host's memory bandwidth: it says nothing about a GPU's decode.
    bandwidth = results["bandwidth"]["best"]
    results["roofline"] = [] if args.use_gpu else roofline(results["throughput"], sizes, bandwidth)

    results["keystroke"] = []
    for name, encoding, contexts, steps in keystroke_plan if "keystroke" in args.stages else []:
        results["keystroke"] += measure_keystrokes(
            sizes[name], encoding, contexts, steps=steps, label=name, use_gpu=args.use_gpu
        )

    results["startup"] = []
    if not args.smoke and "startup" in args.stages:
        rows = measure_startup(["--model", "demo"])
        results["startup"] = [{"model": "demo", **row} for row in rows]

    save(results, args.out)
    written = write_report(results, args.out)
    print(markdown(results))
    print("wrote", ", ".join(str(path) for path in written))


if __name__ == "__main__":
    main()
