"""`make bench` in miniature: the suite's own code end to end on a tiny random checkpoint.

The full suite takes about 15 minutes once its models are compiled; `--smoke` runs every
stage but start-up (which compiles from scratch by design) on a tiny model with a few tokens,
and must produce the same report files. llama.cpp joins in when llama-cpp-python is
installed; the test suite does not need it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.experience.configurations import CONFIGURATIONS
from bench.experience.report import agreement
from bench.experience.traces import TRACES

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench-results")
    work = tmp_path_factory.mktemp("bench-work")
    command = [sys.executable, "-m", "bench.suite", "--smoke", "--out", str(out)]
    subprocess.run([*command, "--work-dir", str(work)], check=True, timeout=900)
    return out


def test_results_hold_every_stage(smoke: Path) -> None:
    results = json.loads((smoke / "results.json").read_text())
    assert results["bandwidth"]["best"] > 0
    metrics = [row["metric"] for row in results["throughput"]]
    assert metrics == ["prefill 32", "prefill 64", "decode", "decode at 96"]
    assert all(row["max_tokens_per_s"] > 0 for row in results["throughput"])
    (roof,) = results["roofline"]  # the short-context decode row alone: weights only
    assert roof["max_tokens_per_s"] == results["throughput"][2]["max_tokens_per_s"]
    assert roof["bound_tokens_per_s"] > 0 and roof["max_fraction"] > 0
    (keys,) = results["keystroke"]
    # The reuse engine must have taken most of each prompt from its cache, the other none.
    assert keys["reuse_reused_tokens"] > 0.8 * keys["context"]
    assert keys["recompute_reused_tokens"] == 0


def test_report_files(smoke: Path) -> None:
    table = (smoke / "BENCHMARKS.md").read_text()
    assert "| tiny | float32 | decode |" in table
    assert "Keystroke latency" in table
    for name in ("throughput.png", "roofline.png", "keystroke.png"):
        assert (smoke / name).read_bytes()[:8] == PNG_MAGIC


def test_a_run_cut_short_after_throughput_still_reports(smoke: Path, tmp_path: Path) -> None:
    results = json.loads((smoke / "results.json").read_text())
    partial = {key: results[key] for key in ("date", "machine", "bandwidth", "throughput")}
    (tmp_path / "results.json").write_text(json.dumps(partial | {"logit_mismatch": {}}))
    subprocess.run([sys.executable, "-m", "bench.report", str(tmp_path)], check=True, timeout=120)
    table = (tmp_path / "BENCHMARKS.md").read_text()
    assert "| tiny | float32 | decode |" in table
    assert "bandwidth bound" not in table and "Keystroke" not in table


def test_full_size_harness_in_miniature(tmp_path: Path) -> None:
    """`make bench-full`'s own code on a tiny model: every engine measured, in its own
    process, with memory read from /proc, the suggestion reusing the whole context, and the
    restart served from the compiled-model cache the first start wrote."""
    out, work = tmp_path / "out", tmp_path / "work"
    command = [sys.executable, "-m", "bench.full_size", "--smoke", "--out", str(out)]
    subprocess.run([*command, "--work-dir", str(work)], check=True, timeout=900)
    results = json.loads((out / "results.json").read_text())
    entry = results["encodings"]["float32"]
    assert entry["restart"]["first start"]["source"] == "compiled"
    assert entry["restart"]["restart"]["source"] == "cache"
    summary = entry["summary"]["MAX"]
    assert all(summary[metric] > 0 for metric in results["plan"]["metrics"])
    assert 0 < summary["rss_loaded"] <= summary["rss_peak"]
    (round_,) = entry["rounds"]["MAX"]
    assert round_["suggestion"]["reuse"]["reused_tokens"] >= results["plan"]["context"]
    assert round_["suggestion"]["recompute"]["reused_tokens"] == 0
    table = (out / "BENCHMARKS.md").read_text()
    assert "| float32 | MAX |" in table and "| float32 | decode at 96 |" in table


def test_experience_harness_in_miniature(tmp_path: Path) -> None:
    """`make bench-experience`'s own code on the demo model: every trace in each configuration
    meant for it, each through a server process of its own that exits cleanly, with the
    server's own records of every request, the pre-warm and the recent suggestions seen at
    work, and the report files."""
    command = [sys.executable, "-m", "bench.experience", "--smoke", "--label", "smoke"]
    subprocess.run([*command, "--out", str(tmp_path)], check=True, timeout=900)
    result = json.loads((tmp_path / "smoke.json").read_text())
    (runs,) = result["models"].values()
    ran = [(run["trace"], run["configuration"]) for run in runs]
    assert ran == [(t, c.name) for t in TRACES for c in CONFIGURATIONS if c.runs_on(t)]
    for run in runs:
        assert run["exit_code"] == 0
        assert len(run["keystrokes"]) > 1
        assert all(key["record"] is not None for key in run["keystrokes"])
    by_name = {(r["trace"], r["configuration"]): r for r in runs}
    # The pre-warm computed the prompt where the cursor rested, so the first request there
    # computed less; going back to a text asked before was answered from memory.
    jump_on, jump_off = by_name["jump", "all on"], by_name["jump", "all off"]
    assert jump_on["prewarm"]["finish"] == "prewarm" and jump_off["prewarm"] is None
    first_tokens = [r["summary"]["first_computed_tokens"] for r in (jump_on, jump_off)]
    assert first_tokens[0] < first_tokens[1]

    def cached(run: dict) -> int:
        return sum(k["record"]["finish"] == "cached" for k in run["keystrokes"])

    assert cached(by_name["retyping", "all on"]) > 0
    assert cached(by_name["retyping", "recentSuggestions 0"]) == 0
    # Typing what a suggestion shows is answered from it.
    following = by_name["following", "all on"]["keystrokes"]
    assert any(k["record"]["finish"] == "typed through" for k in following)
    table = (tmp_path / "smoke.md").read_text()
    assert "| jump | all on |" in table and "| typing | timeBudgetMs 0 |" in table
    assert (tmp_path / "smoke.png").read_bytes()[:8] == PNG_MAGIC


def test_speculation_harness_in_miniature(tmp_path: Path) -> None:
    """`bench.speculation`'s own code on the demo model: the three sides run the same trace,
    the speculating one through verify runs with drafts."""
    out = tmp_path / "rows.json"
    command = [sys.executable, "-m", "bench.speculation", "--model", "demo", "--context", "80"]
    command += ["--block", "60", "--steps", "2", "--new-tokens", "6", "--json", str(out)]
    command += ["--speculative-tokens", "4"]  # the demo model does not speculate by default
    subprocess.run(command, check=True, timeout=900)
    (row,) = json.loads(out.read_text())
    assert row["steps"] == 2
    assert all(row[f"{side}_graph_runs"] > 0 for side in ("recompute", "reuse", "speculate"))
    assert row["recompute_p50_ms"] > 0 and "speculate_accepted_per_verify" in row


def test_experience_agreement_leaves_out_answers_at_the_timeout() -> None:
    def key(at: str, answer: str, finish: str = "length") -> dict:
        return {"at": at, "answer": answer, "record": {"finish": finish}}

    baseline = {"keystrokes": [key("a", "x = 1\ny = 2"), key("b", "", "cancelled"), key("c", "z")]}
    run = {"keystrokes": [key("a", "x = 1\n"), key("b", "w"), key("c", "q"), key("d", "r")]}
    counts = agreement(run, baseline)
    assert counts == {"compared": 2, "differ": 1, "cut_short": 1, "timed_out": 1}


def test_window_move_harness_in_miniature(tmp_path: Path) -> None:
    """`bench.window_move` on the demo model: with pre-warm on, the request that moves the
    window reuses the next window prepared in the pause; with it off, it computes it."""
    out = tmp_path / "runs.json"
    command = [sys.executable, "-m", "bench.window_move", "--json", str(out)]
    subprocess.run(command, check=True, timeout=900)
    on, off = json.loads(out.read_text())
    assert (on["prewarm"], off["prewarm"]) == (True, False)
    assert on["prewarm_records"] >= 1 and off["prewarm_records"] == 0
    assert on["moved"]["prompt_tokens"] < on["full"]["prompt_tokens"]
    assert on["moved"]["reused_tokens"] > off["moved"]["reused_tokens"] == 0
    assert on["moved"]["computed_tokens"] < off["moved"]["computed_tokens"]
