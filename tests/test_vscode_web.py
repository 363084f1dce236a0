"""The VS Code extension in a real VS Code: code-server 4.139.1 (VS Code 1.139.1) in Chromium.

The .vsix is built with the README's own command and installed into a fresh code-server, which
runs the real `replit-lsp --stdio` on the tiny checkpoint. Chromium, driven by Playwright,
opens Python files and types. The ghost text VS Code draws must equal what a second server on
the same checkpoint answers to the same request; Tab must put it into the document; typing at
once after the file opens, before the server is up, must still end in a suggestion; the
status bar must go from loading to ready; and a cursor left to rest after a move, and an editor
switched to, must have the server pre-warm there (its records, which the extension's "Show
Recent Completions" writes to its log).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pytest_lsp import client_capabilities, make_test_lsp_client

from model.engine.engine import Engine
from testkit.checkpoints import TINY_MAX_LENGTH
from testkit.servers import lsp_server_command
from testkit.vscode_web import CHROMIUM, DRIVER, Tools, ToolsUnavailable, ensure_tools

ROOT = Path(__file__).resolve().parents[1]
EXTENSION_DIR = ROOT / "editors" / "vscode"
SCREENSHOT = os.environ.get("REPLIT_LSP_VSCODE_SCREENSHOT")
BUILD_TIMEOUT = 600
DRIVER_TIMEOUT = 300
GHOST_TIMEOUT_MS = 60_000
# How long the driver leaves the cursor resting: well past the extension's `replitLsp.idleMs`.
REST_MS = 1500
LOG_TIMEOUT = 30
SERVER_ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
# Asked-for suggestions are longer, so each answer shows which kind of request brought it.
COMPLETION_SETTINGS = {"maxNewTokens": 8, "invokedMaxNewTokens": 24, "maxLines": 3}

EARLY_TEXT = "import os\n\n\ndef read_lines(path):\n"
EARLY_TYPED = "    with open"
MAIN_TEXT = "import os\n\n\ndef fibonacci(n):\n    if n < 2:\n        return n\n"
MAIN_TYPED = "    return fib"

pytestmark = pytest.mark.skipif(
    shutil.which("npm") is None, reason="npm is needed to build the extension and code-server"
)


def readme_build_command() -> str:
    """The command the README gives for building the .vsix, run here exactly as written."""
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"^cd editors/vscode && .*npm run package$", readme, re.MULTILINE)
    assert match, "README.md no longer shows how to build the .vsix"
    return match.group(0)


def build_vsix(tools: Tools) -> Path:
    """Runs the README's command from the repository root, with Node 24 (whatever Node the
    machine has may be older than the README asks for); returns the .vsix it wrote."""
    for old in EXTENSION_DIR.glob("*.vsix"):
        old.unlink()
    command = readme_build_command()
    result = subprocess.run(
        ["bash", "-c", command],
        cwd=ROOT,
        env=tools.env(dict(os.environ)),
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    (vsix,) = EXTENSION_DIR.glob("*.vsix")
    return vsix


async def server_answer(
    model_dir: Path,
    path: Path,
    text: str,
    trigger: types.InlineCompletionTriggerKind,
    line: int | None = None,
) -> str:
    """What a fresh `replit-lsp --stdio` on the same checkpoint answers at the end of
    `text` (or of its line `line`), with the settings and client capabilities the extension
    sends."""
    client = make_test_lsp_client()
    await client.start_io(*lsp_server_command(model_dir), env=SERVER_ENV)
    try:
        params = types.InitializeParams(
            capabilities=client_capabilities("visual-studio-code"),
            initialization_options={"replitLsp": COMPLETION_SETTINGS},
        )
        await asyncio.wait_for(client.initialize_session(params), 60)
        uri = path.as_uri()
        item = types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)
        client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=item))
        lines = text.split("\n")
        line = len(lines) - 1 if line is None else line
        request = types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=line, character=len(lines[line])),
            context=types.InlineCompletionContext(trigger_kind=trigger),
        )
        result = await asyncio.wait_for(client.text_document_inline_completion_async(request), 120)
        assert isinstance(result, types.InlineCompletionList)
        return str(result.items[0].insert_text) if result.items else ""
    finally:
        await asyncio.wait_for(client.shutdown_session(), 30)
        await client.stop()


def recorded_prewarms(user_data: Path) -> list[tuple[int, str, int, int]]:
    """The server's pre-warm records as the extension's "Show Recent Completions" wrote them to
    its log: (sequence, file name, line, character)."""
    found = []
    for log in user_data.glob("logs/**/*Replit LSP*.log"):
        for match in re.finditer(r"#(\d+) \S+/([^/\s]+) (\d+):(\d+) prewarm", log.read_text()):
            found.append((int(match[1]), match[2], int(match[3]), int(match[4])))
    return sorted(found)


def write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2))


def user_settings(model_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """User settings (a quiet workbench, no other suggestions) and machine settings (how the
    server starts: code-server, a remote, reads machine-scoped settings only from there)."""
    user = {
        "workbench.startupEditor": "none",
        "workbench.tips.enabled": False,
        "workbench.secondarySideBar.defaultVisibility": "hidden",
        "workbench.editor.enablePreview": False,
        "security.workspace.trust.enabled": False,
        "files.hotExit": "off",
        "telemetry.telemetryLevel": "off",
        "update.mode": "none",
        "extensions.autoCheckUpdates": False,
        "extensions.autoUpdate": False,
        "remote.autoForwardPorts": False,
        "editor.quickSuggestions": {"other": False, "comments": False, "strings": False},
        "editor.suggestOnTriggerCharacters": False,
        "editor.wordBasedSuggestions": "off",
        **{f"replitLsp.{key}": value for key, value in COMPLETION_SETTINGS.items()},
    }
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    machine = {
        "replitLsp.pythonPath": sys.executable,
        "replitLsp.serverArgs": [
            "--weight-path",
            str(model_dir),
            "--max-length",
            str(TINY_MAX_LENGTH),
            "--context-tokens",
            "0",
        ],
        # The compiled-model cache the other tests fill, though code-server's own XDG
        # folders are temporary.
        "replitLsp.serverEnv": {
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "XDG_CACHE_HOME": cache,
        },
    }
    return user, machine


def process_group_alive(pgid: int) -> bool:
    """Whether any process of the group is left (zombies of the group count as gone)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if fields[0] != "Z" and int(fields[2]) == pgid:
                return True
    return False


@contextlib.contextmanager
def code_server(tools: Tools, env: dict[str, str], args: list[str], log: Path) -> Iterator[str]:
    """code-server in its own process group, stopped (it, its extension host and the
    replit-lsp server under it) by that group's id; yields the workbench's base URL."""
    with log.open("w") as out:
        process = subprocess.Popen(
            [*tools.code_server, "--bind-addr", "127.0.0.1:0", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while not (found := re.search(r"HTTP server listening on (http://\S+)", log.read_text())):
            assert process.poll() is None, f"code-server exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"code-server did not listen:\n{log.read_text()}"
            time.sleep(0.2)
        yield found.group(1)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)
        deadline = time.monotonic() + 30
        while process_group_alive(process.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        assert not process_group_alive(process.pid), "code-server left processes behind"


@pytest.fixture(scope="module")
def tools() -> Tools:
    try:
        return ensure_tools()
    except ToolsUnavailable as error:
        pytest.skip(f"code-server and Chromium could not be installed: {error}")


@pytest.mark.timeout(BUILD_TIMEOUT + DRIVER_TIMEOUT + 600)
def test_ghost_text_in_vscode(
    tools: Tools, tiny_model_dir: Path, tiny_engine: Engine, tmp_path: Path
) -> None:
    # `tiny_engine` has put the server's compiled model in the cache, so that the first ghost
    # text waits for a model load, not a cold compile, when this test runs alone.
    vsix = build_vsix(tools)
    home = tmp_path / "home"
    env = tools.env({**SERVER_ENV, "HOME": str(home)})
    for name in ("config", "data", "cache", "state"):
        env[f"XDG_{name.upper()}_HOME"] = str(home / name)
    user_data, extensions = tmp_path / "user-data", tmp_path / "extensions"
    dirs = ["--user-data-dir", str(user_data), "--extensions-dir", str(extensions)]
    install = subprocess.run(
        [*tools.code_server, *dirs, "--install-extension", str(vsix)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    user, machine = user_settings(tiny_model_dir)
    write_json(user_data / "User" / "settings.json", user)
    write_json(user_data / "Machine" / "settings.json", machine)
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / "early.py").write_text(EARLY_TEXT)
    (workspace / "main.py").write_text(MAIN_TEXT)

    screenshot = tmp_path / "vscode-ghost-text.png"
    config = {
        "toolsDir": str(tools.tools_dir),
        "chromium": CHROMIUM,
        "profileDir": str(tmp_path / "chromium-profile"),
        "screenshot": str(screenshot),
        "failureScreenshot": str(tmp_path / "failure.png"),
        "ghostTimeoutMs": GHOST_TIMEOUT_MS,
        "restMs": REST_MS,
        "early": {"file": "early.py", "typed": EARLY_TYPED},
        "main": {"file": "main.py", "path": str(workspace / "main.py"), "typed": MAIN_TYPED},
    }
    flags = ["--auth", "none", "--disable-telemetry", "--disable-update-check"]
    flags.append("--disable-workspace-trust")
    with code_server(tools, env, [*dirs, *flags], tmp_path / "code-server.log") as url:
        config["url"] = f"{url}?folder={workspace}"
        write_json(tmp_path / "driver.json", config)
        driven = subprocess.run(
            [tools.node, str(DRIVER), str(tmp_path / "driver.json")],
            env=env,
            capture_output=True,
            text=True,
            timeout=DRIVER_TIMEOUT,
            check=False,
        )
        deadline = time.monotonic() + LOG_TIMEOUT
        while driven.returncode == 0 and not recorded_prewarms(user_data):
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        prewarmed = recorded_prewarms(user_data)
    assert driven.returncode == 0, f"the browser session failed:\n{driven.stdout}\n{driven.stderr}"
    print(driven.stderr)  # the session's steps, with their times
    seen = json.loads(driven.stdout.strip().splitlines()[-1])
    if SCREENSHOT:
        shutil.copyfile(screenshot, SCREENSHOT)

    automatic = types.InlineCompletionTriggerKind.Automatic
    invoked = types.InlineCompletionTriggerKind.Invoked
    early_text, main_text = EARLY_TEXT + EARLY_TYPED, MAIN_TEXT + MAIN_TYPED
    # Typed before the server was up, then asked for by the extension once it was.
    early = asyncio.run(server_answer(tiny_model_dir, workspace / "early.py", early_text, invoked))
    main = asyncio.run(server_answer(tiny_model_dir, workspace / "main.py", main_text, automatic))
    accepted = main_text + main
    asked = asyncio.run(
        server_answer(tiny_model_dir, workspace / "main.py", accepted, invoked, line=0)
    )
    assert early and main and asked, "the checkpoint completes these documents: all must show"

    assert "ready" not in seen["statusWhenTyping"], seen
    assert seen["earlyGhost"] == early
    assert seen["mainGhost"] == main
    assert seen["savedAfterTab"] == accepted
    assert seen["invokedGhost"] == asked
    first, rest = accepted.split("\n", 1)
    saved_first, saved_rest = seen["savedAfterWord"].split("\n", 1)
    word = saved_first.removeprefix(first)
    assert saved_rest == rest and saved_first.startswith(first), seen
    assert word and asked.startswith(word), seen
    assert "1 accepted, 1 partly accepted" in seen["statusAfterWord"]
    history = seen["statusHistory"]
    loading = next(i for i, label in enumerate(history) if "replit-lsp: loading" in label)
    assert any("replit-lsp: ready" in label for label in history[loading:]), history

    # Control+End in main.py, then early.py switched to, its cursor where the typing left it.
    saved_lines = seen["savedAfterWord"].split("\n")
    end = (len(saved_lines) - 1, len(saved_lines[-1]))
    early_lines = early_text.split("\n")
    early_cursor = (len(early_lines) - 1, len(early_lines[-1]))
    rested = [seq for seq, name, *at in prewarmed if name == "main.py" and tuple(at) == end]
    switched = [
        seq for seq, name, *at in prewarmed if (name, tuple(at)) == ("early.py", early_cursor)
    ]
    assert rested, f"no pre-warm at the end of main.py {end}: {prewarmed}"
    assert switched and max(switched) > min(rested), f"no pre-warm on switching: {prewarmed}"
