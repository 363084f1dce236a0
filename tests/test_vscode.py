"""The VS Code extension's own tests (editors/vscode), run with Node from pytest.

They need no VS Code: unit tests run the extension against a stub of the `vscode` module, and
an end-to-end test drives a real `replit-lsp --stdio` with the client capabilities the
extension's `vscode-languageclient` sends. That server runs the tiny random checkpoint, so the
test checks the protocol (ranges, encodings, settings), not the quality of completions.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from testkit.servers import lsp_server_command

EXTENSION_DIR = Path(__file__).resolve().parents[1] / "editors" / "vscode"
NPM_CI_TIMEOUT = 600
NPM_TEST_TIMEOUT = 420
# Tests that need the server: they must pass, not be skipped for want of a server command.
SERVER_TEST_TITLES = (
    "completes a Python document with an item at the cursor",
    "starts the server from its settings, shows ready, and stops it",
)

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or shutil.which("npm") is None,
    reason="node and npm are needed to build and test the VS Code extension",
)


def run_npm(args: list[str], timeout: float, env: dict[str, str] | None = None) -> str:
    """Runs npm in the extension folder; fails the test with npm's output if it fails."""
    npm = shutil.which("npm")
    assert npm is not None
    try:
        result = subprocess.run(
            [npm, *args],
            cwd=EXTENSION_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"npm {' '.join(args)} ran past {timeout} s:\n{error.stdout}\n{error.stderr}")
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"npm {' '.join(args)} failed:\n{output}"
    return output


def node_modules_stale() -> bool:
    """npm ci is slow, so it only runs when node_modules is missing or older than the lock
    file (npm records the installed tree in node_modules/.package-lock.json)."""
    installed = EXTENSION_DIR / "node_modules" / ".package-lock.json"
    lock = EXTENSION_DIR / "package-lock.json"
    return not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime


@pytest.mark.timeout(NPM_CI_TIMEOUT + NPM_TEST_TIMEOUT + 60)
def test_vscode_extension(tiny_model_dir: Path) -> None:
    """The unit tests and the tests against a real server all pass, and the latter ran
    rather than being skipped for want of a server command."""
    if node_modules_stale():
        run_npm(["ci", "--no-audit", "--no-fund"], NPM_CI_TIMEOUT)
    env = {
        **os.environ,
        "REPLIT_LSP_TEST_CMD": json.dumps(lsp_server_command(tiny_model_dir)),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    output = run_npm(["test"], NPM_TEST_TIMEOUT, env)
    for title in SERVER_TEST_TITLES:
        assert f"✔ {title}" in output, f"{title!r} did not pass:\n{output}"
    assert "ℹ fail 0" in output, output
