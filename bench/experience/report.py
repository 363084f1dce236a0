"""What the runs add up to: per trace and configuration the latency a user meets, the work
the engine did per keystroke, and whether the answers agree with the baseline's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.experience.records import without_model_run
from bench.keystroke import percentile


def summarize(run: dict[str, Any]) -> dict[str, Any]:
    """The first request (after opening or jumping) apart; the keystrokes after it."""
    first, *rest = run["keystrokes"]
    ms = [k["ms"] for k in rest]
    count = len(rest) or 1
    return {
        "first_ms": first["ms"],
        "first_computed_tokens": first["computed_tokens"],
        "keystrokes": len(rest),
        "p50_ms": percentile(ms, 0.5) if ms else None,
        "p95_ms": percentile(ms, 0.95) if ms else None,
        "max_ms": max(ms) if ms else None,
        "graph_runs_per_keystroke": sum(k["graph_runs"] for k in rest) / count,
        "computed_tokens_per_keystroke": sum(k["computed_tokens"] for k in rest) / count,
        "no_model_run": sum(without_model_run(k) for k in rest),
        "p50_ms_by_step": {
            action: percentile([k["ms"] for k in rest if k["action"] == action], 0.5)
            for action in dict.fromkeys(k["action"] for k in rest)
        },
    }


def _timed_out(key: dict[str, Any]) -> bool:
    """Whether the server answered at its answer timeout: nothing of the model's to compare."""
    return key["record"] is not None and key["record"]["finish"] == "cancelled"


def agreement(run: dict[str, Any], baseline: dict[str, Any]) -> dict[str, int]:
    """The requests of `run` asked at a text the baseline asked at too: how many, how many
    answers differ, how many are a shorter start of the baseline's (a time budget's complete
    lines), and how many were not compared because either side timed out."""
    answers: dict[str, dict[str, Any]] = {}
    for key in baseline["keystrokes"]:
        answers.setdefault(key["at"], key)
    counts = {"compared": 0, "differ": 0, "cut_short": 0, "timed_out": 0}
    for key in run["keystrokes"]:
        if key["at"] not in answers:
            continue
        expected = answers[key["at"]]
        if _timed_out(key) or _timed_out(expected):
            counts["timed_out"] += 1
            continue
        counts["compared"] += 1
        if key["answer"] != expected["answer"]:
            shorter = expected["answer"].startswith(key["answer"])
            counts["cut_short" if shorter else "differ"] += 1
    return counts


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


HEADER = [
    "trace",
    "configuration",
    "first ms",
    "first tokens computed",
    "keystrokes",
    "p50 ms",
    "p95 ms",
    "max ms",
    "p50 ms by step",
    "graph runs / key",
    "tokens computed / key",
    "no model run",
    "pause s",
    "asked as baseline: differ (cut short)",
]


def _row(run: dict[str, Any]) -> list[str]:
    s, agree = run["summary"], run.get("agreement")
    pause = run.get("pause_seconds")
    return [
        run["trace"],
        run["configuration"],
        _ms(s["first_ms"]),
        str(s["first_computed_tokens"]),
        str(s["keystrokes"]),
        _ms(s["p50_ms"]),
        _ms(s["p95_ms"]),
        _ms(s["max_ms"]),
        ", ".join(f"{action} {_ms(ms)}" for action, ms in s["p50_ms_by_step"].items()),
        f"{s['graph_runs_per_keystroke']:.1f}",
        f"{s['computed_tokens_per_keystroke']:.0f}",
        str(s["no_model_run"]),
        "" if pause is None else f"{pause:.1f}" + (" (pre-warmed)" if run.get("prewarm") else ""),
        _agreement_cell(agree),
    ]


def _agreement_cell(agree: dict[str, int] | None) -> str:
    if agree is None:
        return ""
    cell = f"{agree['compared']}: {agree['differ']} ({agree['cut_short']})"
    timed_out = agree.get("timed_out", 0)
    return cell + (f", {timed_out} timed out" if timed_out else "")


def markdown(result: dict[str, Any]) -> str:
    machine = result["machine"]
    lines = [
        f"# Keystroke to suggestion through the server: {result['label']}",
        "",
        f"Measured {result['date']} on {machine['cpu']} ({machine['cores']} cores, "
        f"{machine['memory_gib']:.0f} GiB), MAX {machine['max_version']}; at most "
        f"{result['keystrokes']} requests per trace, {result['gap_ms']:g} ms before each step (a "
        "person's reaction), each run in a fresh server. "
        "Keystroke times are from the request to its answer, the first request (after opening "
        'or the jump) apart; "no model run" counts keystrokes answered without a graph run '
        "or from the suggestion memory; the last column compares the answers at the texts the "
        f"baseline ({result['baseline']}) was asked at too, leaving out answers given at the "
        "server's answer timeout (`answerTimeoutSeconds`).",
    ]
    for model, runs in result["models"].items():
        lines += ["", f"## {model}", "", "| " + " | ".join(HEADER) + " |"]
        lines.append("|" + "---|" * len(HEADER))
        lines += ["| " + " | ".join(_row(run)) + " |" for run in runs]
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    """Keystroke latency along each trace, a line per configuration; a row per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(result["models"])
    traces = list(dict.fromkeys(r["trace"] for runs in result["models"].values() for r in runs))
    figure, axes = plt.subplots(
        len(models), len(traces), figsize=(4 * len(traces), 3.2 * len(models)), squeeze=False
    )
    for row, model in enumerate(models):
        for column, trace in enumerate(traces):
            ax = axes[row][column]
            for run in result["models"][model]:
                if run["trace"] == trace:
                    ms = [k["ms"] for k in run["keystrokes"]]
                    ax.plot(range(len(ms)), ms, marker=".", label=run["configuration"])
            ax.set_yscale("log")
            ax.set_title(f"{model}: {trace}", fontsize=9)
            ax.set_xlabel("request")
            ax.set_ylabel("ms to the answer")
            ax.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
