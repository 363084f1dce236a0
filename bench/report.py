"""Turns the suite's results (results.json) into the Markdown tables and PNG plots."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no screen: write files only
import matplotlib.pyplot as plt  # noqa: E402


def _fmt(value: float | None, digits: int = 1, suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}{suffix}"


def _section(title: str, header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return ["", f"### {title}", "", "\n".join(lines)]


def _p50_p95(row: dict, name: str) -> str:
    return f"{row[name + '_p50_ms']:.0f} / {row[name + '_p95_ms']:.0f}"


def _measured_on(results: dict) -> str:
    machine = results["machine"]
    return (
        f"Measured {results['date']} on {machine['cpu']} ({machine['cores']} cores, "
        f"{machine['memory_gib']:.0f} GiB), MAX {machine['max_version']}, "
        f"llama-cpp-python {machine['llama_cpp_version'] or 'not installed'}, "
        f"{machine['threads']} threads each."
    )


def markdown(results: dict) -> str:
    machine = results["machine"]
    parts = [
        _measured_on(results) + " Read bandwidth measured in the same run: "
        f"{results['bandwidth']['best']:.1f} GB/s."
    ]
    if machine.get("gpu"):
        parts[0] += f" MAX ran on the GPU: {machine['gpu']}."
    parts += _section(
        "Throughput (tokens/s, median; ratio = MAX / llama.cpp)",
        ["model", "weights", "measure", "MAX", "llama.cpp", "ratio"],
        [
            [
                r["model"],
                r["encoding"],
                r["metric"],
                _fmt(r["max_tokens_per_s"]),
                _fmt(r["llama_tokens_per_s"]),
                _fmt(r["ratio"], 2, "x"),
            ]
            for r in results["throughput"]
        ],
    )
    if results.get("logit_mismatch"):
        mismatch = ", ".join(
            f"{key} {value:.1e}" for key, value in results["logit_mismatch"].items()
        )
        parts += ["", f"Largest logit difference MAX vs llama.cpp, relative: {mismatch}."]
    if results.get("roofline"):
        parts += _section(
            "Decode against the memory-bandwidth bound",
            ["model", "weights", "weight MB", "bound tok/s", "MAX tok/s", "MAX of bound"]
            + ["llama.cpp tok/s", "llama.cpp of bound"],
            [
                [
                    r["model"],
                    r["encoding"],
                    _fmt(r["weight_bytes"] / 1e6, 0),
                    _fmt(r["bound_tokens_per_s"]),
                    _fmt(r["max_tokens_per_s"]),
                    _fmt(r["max_fraction"] * 100, 0, "%"),
                    _fmt(r["llama_tokens_per_s"]),
                    _fmt(r["llama_fraction"] and r["llama_fraction"] * 100, 0, "%"),
                ]
                for r in results["roofline"]
            ],
        )
    if results.get("keystroke"):
        parts += _section(
            "Keystroke latency (ms; editing trace, 16-token suggestion)",
            ["model", "context", "reuse first token p50/p95", "recompute first token p50/p95"]
            + ["ratio", "reuse whole p50/p95", "recompute whole p50/p95", "ratio"],
            [
                [
                    f"{r['model']} {r['encoding']}",
                    f"~{r['context']}",
                    _p50_p95(r, "reuse_first"),
                    _p50_p95(r, "recompute_first"),
                    f"{r['first_ratio']:.1f}x",
                    _p50_p95(r, "reuse_whole"),
                    _p50_p95(r, "recompute_whole"),
                    f"{r['whole_ratio']:.1f}x",
                ]
                for r in results["keystroke"]
            ],
        )
    if results.get("startup"):
        parts += _section(
            "Start-up: process start to first completion",
            ["model", "start", "seconds", "compiled model from"],
            [[r["model"], r["start"], _fmt(r["seconds"]), r["source"]] for r in results["startup"]],
        )
    return "\n".join(parts) + "\n"


SHORT = {"float32": "f32", "bfloat16": "bf16", "q8_0": "q8", "q4_0": "q4"}


def _bars(ax, labels: list[str], series: dict[str, list[float]], ylabel: str) -> None:
    width = 0.8 / len(series)
    for i, (name, values) in enumerate(series.items()):
        positions = [x + (i - (len(series) - 1) / 2) * width for x in range(len(labels))]
        ax.bar(positions, [v or 0 for v in values], width, label=name)
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.legend()


def plots(results: dict, out_dir: Path) -> list[Path]:
    written = []
    throughput = results["throughput"]
    if throughput:
        fig, ax = plt.subplots(figsize=(max(6, len(throughput) * 0.7), 4.5))
        labels = [f"{r['model']} {SHORT[r['encoding']]} {r['metric']}" for r in throughput]
        series = {"MAX": [r["max_tokens_per_s"] for r in throughput]}
        if any(r["llama_tokens_per_s"] for r in throughput):
            series["llama.cpp"] = [r["llama_tokens_per_s"] for r in throughput]
        _bars(ax, labels, series, "tokens/s (log)")
        ax.set_yscale("log")
        ax.set_title("Throughput, same weights and threads")
        written.append(_save(fig, out_dir / "throughput.png"))
    roofline = results.get("roofline") or []
    if roofline:
        fig, ax = plt.subplots(figsize=(6, 4))
        labels = [f"{r['model']} {SHORT[r['encoding']]}" for r in roofline]
        series = {"MAX": [r["max_fraction"] * 100 for r in roofline]}
        if any(r["llama_fraction"] for r in roofline):
            series["llama.cpp"] = [(r["llama_fraction"] or 0) * 100 for r in roofline]
        _bars(ax, labels, series, "% of the bandwidth bound")
        ax.axhline(70, color="gray", linestyle="--", linewidth=1)
        ax.set_title(f"Decode vs {results['bandwidth']['best']:.1f} GB/s read bandwidth")
        written.append(_save(fig, out_dir / "roofline.png"))
    keystroke = results.get("keystroke") or []
    if keystroke:
        fig, ax = plt.subplots(figsize=(7, 4))
        labels = [f"{r['model']} ~{r['context']}" for r in keystroke]
        series = {
            "reuse, first token": [r["reuse_first_p50_ms"] for r in keystroke],
            "recompute, first token": [r["recompute_first_p50_ms"] for r in keystroke],
            "reuse, whole": [r["reuse_whole_p50_ms"] for r in keystroke],
            "recompute, whole": [r["recompute_whole_p50_ms"] for r in keystroke],
        }
        _bars(ax, labels, series, "p50 ms (log)")
        ax.set_yscale("log")
        ax.set_title("Keystroke latency")
        written.append(_save(fig, out_dir / "keystroke.png"))
    return written


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(results: dict, out_dir: Path) -> list[Path]:
    """BENCHMARKS.md and the plots for `results`, in `out_dir`."""
    table = out_dir / "BENCHMARKS.md"
    table.write_text("# Benchmark results\n\n" + markdown(results))
    return [table, *plots(results, out_dir)]


if __name__ == "__main__":  # redraw from a results.json: python -m bench.report DIR
    import json
    import sys

    out = Path(sys.argv[1])
    print(*write_report(json.loads((out / "results.json").read_text()), out), sep="\n")


def _gb(value: float) -> str:
    return f"{value / 1e9:.2f}"


def full_size_markdown(results: dict) -> str:
    """The tables of `bench.full_size`: memory, load and restart, speed, and suggestions."""
    parts = [
        _measured_on(results) + f" {results['layers']} layers of the real shape, random "
        "weights; one engine in memory at a time, medians over alternating rounds."
    ]
    if results.get("note"):
        parts.append(results["note"] + ".")
    memory_rows, speed_rows, suggestion_rows, restart_rows = [], [], [], []
    for encoding, entry in results["encodings"].items():
        summary = entry["summary"]
        for engine, s in summary.items():
            memory_rows.append(
                [
                    encoding,
                    engine,
                    f"{s['load_seconds']:.1f}",
                    _gb(s["rss_loaded"]),
                    _gb(s["rss_steady"]),
                    _gb(s["rss_peak"]),
                    _gb(s["memory_bound"]),
                    f"{s['rss_over_bound']:.2f}",
                ]
            )
        metrics = results["plan"]["metrics"]
        llama = summary.get("llama.cpp")
        for metric in metrics:
            ours = summary["MAX"][metric]
            theirs = llama[metric] if llama else None
            speed_rows.append(
                [
                    encoding,
                    metric,
                    _fmt(ours),
                    _fmt(theirs),
                    _fmt(ours / theirs if theirs else None, 2, "x"),
                ]
            )
        for engine, s in summary.items():
            recompute = s["suggestion recompute total_seconds"]
            reuse = s["suggestion reuse total_seconds"]
            suggestion_rows.append(
                [
                    encoding,
                    engine,
                    f"{s['suggestion recompute first_token_seconds']:.2f} / {recompute:.2f}",
                    f"{s['suggestion reuse first_token_seconds']:.2f} / {reuse:.2f}",
                    f"{recompute / reuse:.1f}x",
                ]
            )
        for label, starts in (
            (encoding, entry["restart"]),
            (f"{encoding} from bfloat16", entry.get("restart from bfloat16")),
        ):
            if starts is not None:
                first, restart = starts["first start"], starts["restart"]
                row = [label, f"{first['seconds']:.1f}", first["source"]]
                restart_rows.append([*row, f"{restart['seconds']:.1f}"])
        if entry.get("logit_mismatch") is not None:
            parts.append(
                f"{encoding}: largest logit difference MAX vs llama.cpp, relative: "
                f"{entry['logit_mismatch']:.1e}."
            )
    parts += _section(
        "Memory (GB; bound = weights + KV cache; peak / bound)",
        ["weights", "engine", "load s", "loaded", "steady", "peak", "bound", "peak / bound"],
        memory_rows,
    )
    parts += _section(
        "Throughput (tokens/s; ratio = MAX / llama.cpp)",
        ["weights", "measure", "MAX", "llama.cpp", "ratio"],
        speed_rows,
    )
    parts += _section(
        f"{results['plan']['suggestion_tokens']}-token suggestion at a "
        f"{results['plan']['context']}-token context (s, first token / whole)",
        ["weights", "engine", "recompute", "with reuse (3 typed tokens)", "ratio"],
        suggestion_rows,
    )
    parts += _section(
        "`replit-lsp --prompt`: process start to first completion (s)",
        ["weights", "first start", "compiled model from", "restart (cached)"],
        restart_rows,
    )
    return "\n".join(parts) + "\n"
