"""The options table is the one source of defaults: the editors declare the same defaults for
the settings they offer, and `--help` shows the table's."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from lsp_server.cli import build_parser, describe_error
from lsp_server.lsp.settings import Settings
from lsp_server.option import json_value
from lsp_server.options import OPTIONS, editor_settings
from model.engine.options import OptionError

ROOT = Path(__file__).resolve().parent.parent
VSCODE = ROOT / "editors" / "vscode"
NEOVIM = ROOT / "editors" / "neovim"

SETTING_DEFAULTS = {
    option.setting: json_value(option.setting_default) for option in editor_settings()
}


def vscode_declared_defaults() -> dict[str, Any]:
    """The `replitLsp.*` defaults of the extension's package.json that are server settings."""
    package = json.loads((VSCODE / "package.json").read_text())
    properties = package["contributes"]["configuration"]["properties"]
    declared = {
        key.removeprefix("replitLsp."): value["default"] for key, value in properties.items()
    }
    return {key: value for key, value in declared.items() if key in SETTING_DEFAULTS}


def vscode_forwarded_settings() -> list[str]:
    """The settings the extension forwards to the server (`SERVER_SETTING_KEYS`)."""
    source = (VSCODE / "src" / "settings.ts").read_text()
    keys = re.search(r"SERVER_SETTING_KEYS = \[(.*?)\] as const", source, re.S)
    assert keys is not None
    return re.findall(r'"(\w+)"', keys.group(1))


def lua_value(text: str) -> Any:
    """A Lua literal of the Neovim plugin's docs as JSON would hold it."""
    text = text.strip()
    if text == "vim.empty_dict()":
        return {}
    if text == "{}":
        return []
    return json.loads(text)  # numbers, true/false and double-quoted strings read alike


def neovim_readme_settings() -> dict[str, Any]:
    """The `settings` block of the Neovim README's "every option with its default"."""
    readme = (NEOVIM / "README.md").read_text()
    block = re.search(r"\n  settings = \{\n(.*?)\n  \},", readme, re.S)
    assert block is not None
    settings = {}
    for line in block.group(1).splitlines():
        entry = re.match(r"\s*(\w+) = (.*?),\s*(--.*)?$", line)
        assert entry is not None, line
        settings[entry.group(1)] = lua_value(entry.group(2))
    return settings


def test_the_vscode_extension_declares_the_tables_defaults() -> None:
    declared = vscode_declared_defaults()
    forwarded = vscode_forwarded_settings()
    assert set(forwarded) <= set(SETTING_DEFAULTS), "the extension forwards unknown settings"
    assert set(forwarded) <= set(declared), "a forwarded setting has no declaration"
    assert declared == {key: SETTING_DEFAULTS[key] for key in declared}


def test_the_vscode_readme_gives_the_tables_defaults() -> None:
    readme = (VSCODE / "README.md").read_text()
    rows = re.findall(r"^\| `replitLsp\.(\w+)` \| `(.*?)` \|", readme, re.M)
    documented = {key: json.loads(value) for key, value in rows if key in SETTING_DEFAULTS}
    assert documented
    assert documented == {key: SETTING_DEFAULTS[key] for key in documented}


def test_the_neovim_plugin_leaves_the_settings_to_the_server() -> None:
    """The plugin sends only the settings its user gives, so the table's defaults hold."""
    plugin = (NEOVIM / "lua" / "replit_lsp" / "init.lua").read_text()
    defaults = re.search(r"\nM\.defaults = \{\n(.*?)\n\}\n", plugin, re.S)
    assert defaults is not None
    assert re.search(r"^  settings = \{\},$", defaults.group(1), re.M)


def test_the_neovim_readme_gives_the_tables_defaults() -> None:
    documented = neovim_readme_settings()
    assert set(documented) <= set(SETTING_DEFAULTS)
    assert documented == {key: SETTING_DEFAULTS[key] for key in documented}


def test_the_settings_start_from_the_table() -> None:
    settings = Settings()
    for option in editor_settings():
        assert json_value(getattr(settings, option.name)) == json_value(option.setting_default)


def help_entries(help_text: str) -> dict[str, str]:
    """Each flag's entry of `--help`, its lines joined."""
    entries: dict[str, str] = {}
    flag = None
    for line in help_text.splitlines():
        start = re.match(r"  (--[\w-]+)", line)
        if start:
            flag = start.group(1)
            entries[flag] = line
        elif flag is not None and line.startswith("    "):
            entries[flag] += " " + line.strip()
        else:
            flag = None
    return {flag: " ".join(entry.split()) for flag, entry in entries.items()}


def test_help_shows_the_tables_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    entries = help_entries(build_parser().format_help())
    flags = [option for option in OPTIONS if option.flag is not None]
    assert set(entries) == {option.flag for option in flags}
    for option in flags:
        shown = option.shown_default
        if shown is not None:
            assert f"(default: {shown})" in entries[option.flag], option.flag
        if option.setting is not None:
            assert f"the editor's {option.setting} setting" in entries[option.flag], option.flag


def test_engine_options_are_named_by_their_flags() -> None:
    for name in ("max_length", "max_cache_batch_size", "speculative_tokens", "use_gpu"):
        message = describe_error(OptionError(name, "is wrong"))
        assert message == f"--{name.replace('_', '-')} is wrong"
