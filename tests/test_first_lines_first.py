"""The time budget through a real `replit-lsp --stdio` on the bundled demo model, which writes
code over several lines: a request past its budget is answered with the complete lines so
far, the suggestion is generated on, and the next request at the same place gets all of it,
the same as a request without a budget."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from testkit.raw_lsp import RawLsp, completion_text, inline_params, open_document
from testkit.servers import server_command

DEMO_DIR = Path(__file__).resolve().parents[1] / "model" / "assets" / "replit-code-demo"
TEXT = 'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n'
SETTINGS = {"maxNewTokens": 128, "maxLines": 100, "recentSuggestions": 16}


def suggest(lsp: RawLsp, uri: str) -> str:
    return completion_text(lsp.request("textDocument/inlineCompletion", inline_params(uri, 2, 0)))


def generated_records(lsp: RawLsp, uri: str) -> list[dict[str, Any]]:
    records = lsp.request("replitLsp/completions", {"since": 0})["result"]
    return [r for r in records if r["uri"] == uri and r["generated_tokens"]]


@pytest.mark.skipif(
    not (DEMO_DIR / "config.json").is_file(), reason="the bundled demo model is not built"
)
def test_at_the_budget_the_first_lines_come_and_the_rest_follows() -> None:
    lsp = RawLsp(server_command(DEMO_DIR, "--stdio", max_length=1024, recent_suggestions=16))
    try:
        lsp.initialize({"replitLsp": SETTINGS})
        lsp.wait_until_loaded()
        open_document(lsp, "file:///work/whole.py", TEXT)
        whole = suggest(lsp, "file:///work/whole.py")
        budget = {"replitLsp": {**SETTINGS, "timeBudgetMs": 1}}
        lsp.notify("workspace/didChangeConfiguration", {"settings": budget})
        open_document(lsp, "file:///work/budget.py", TEXT)
        early = suggest(lsp, "file:///work/budget.py")
        deadline = time.monotonic() + 60
        while not generated_records(lsp, "file:///work/budget.py"):  # generated on
            assert time.monotonic() < deadline, "the suggestion was not finished"
            time.sleep(0.05)
        later = suggest(lsp, "file:///work/budget.py")
    finally:
        lsp.stop()
    assert whole.count("\n") >= 2, f"the demo model wrote {whole!r}"
    early_lines = early.split("\n")
    assert early and early_lines == whole.split("\n")[: len(early_lines)]
    assert len(early) < len(whole)
    assert later == whole
