"""The files of the workspace folders that may enter a prompt, and where names are defined.

Nothing outside the workspace folders is read, a symbolic link that leads out of them
included, and nothing excluded: the defaults keep secrets (`.env`, keys, credentials) and
generated or vendored trees out, each folder's `.gitignore` is honoured, and the user's globs
add to both. The definitions index is a cheap, language-agnostic scan (a line that starts
with `def`, `class`, `function`, `fn`, `struct` and the like, or a top-level assignment) that
is rebuilt in the background when it is older than `INDEX_MAX_AGE_SECONDS`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import stat
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pathspec

log = logging.getLogger("replit_lsp.context")

# Never read, whatever the user's settings add: secrets, and trees no one writes by hand.
DEFAULT_EXCLUDE = (
    ".env",
    ".env.*",
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    "*.keystore",
    "id_rsa*",
    "id_ecdsa*",
    "id_ed25519*",
    ".npmrc",
    ".pypirc",
    ".netrc",
    ".git-credentials",
    "*secret*",
    "*credential*",
    "*password*",
    ".git/",
    ".hg/",
    ".svn/",
    "node_modules/",
    ".venv/",
    "venv/",
    "__pycache__/",
    ".mypy_cache/",
    ".pytest_cache/",
    "*.min.js",
)
# Files the index reads: source code, by suffix.
SOURCE_SUFFIXES = frozenset(
    [
        ".py",
        ".pyi",
        ".js",
        ".jsx",
        ".mjs",
        ".ts",
        ".tsx",
        ".go",
        ".rs",
        ".java",
        ".kt",
        ".scala",
        ".c",
        ".h",
        ".cc",
        ".cpp",
        ".hpp",
        ".cs",
        ".rb",
        ".php",
        ".swift",
        ".lua",
        ".sh",
        ".sql",
        ".dart",
        ".zig",
        ".m",
        ".ex",
        ".exs",
        ".hs",
        ".ml",
        ".jl",
        ".r",
    ]
)
MAX_FILES = 5000
MAX_FILE_BYTES = 256 * 1024
INDEX_MAX_AGE_SECONDS = 120.0

DEFINITION = re.compile(
    r"^[ \t]*(?:export[ \t]+)?(?:pub(?:\([\w:]+\))?[ \t]+)?(?:async[ \t]+)?"
    r"(?:def|class|function|func|fn|struct|interface|trait|enum|type|module|const|let|var)"
    r"[ \t]+([A-Za-z_]\w*)",
    re.MULTILINE,
)
TOP_LEVEL_ASSIGNMENT = re.compile(r"^([A-Za-z_]\w*)[ \t]*(?::[^=\n]*)?=(?!=)", re.MULTILINE)


@dataclass(frozen=True)
class Definition:
    path: Path
    line: int  # zero-based


class Workspace:
    """The workspace folders and what in them may be read."""

    def __init__(self, roots: Iterable[Path], exclude: Iterable[str] = ()) -> None:
        self.roots = [Path(root).resolve() for root in roots if Path(root).is_dir()]
        self._exclude = tuple(exclude)
        self._specs = {root: self._spec(root) for root in self.roots}
        self._name_spec = pathspec.GitIgnoreSpec.from_lines([*DEFAULT_EXCLUDE, *self._exclude])

    def _spec(self, root: Path) -> pathspec.GitIgnoreSpec:
        lines = [*DEFAULT_EXCLUDE, *self._exclude]
        gitignore = root / ".gitignore"
        if gitignore.is_file():
            with contextlib.suppress(OSError):
                lines += gitignore.read_text(errors="replace").splitlines()
        return pathspec.GitIgnoreSpec.from_lines(lines)

    def root_of(self, path: Path) -> Path | None:
        """The workspace folder holding `path` once links are followed, else None."""
        try:
            real = Path(path).resolve()
        except (OSError, RuntimeError):
            return None
        return next((root for root in self.roots if real.is_relative_to(root)), None)

    def allowed(self, path: Path) -> bool:
        """Inside a workspace folder (links followed) and not excluded."""
        root = self.root_of(path)
        if root is None:
            return False
        relative = Path(path).resolve().relative_to(root).as_posix()
        return not self._specs[root].match_file(relative) and not self.excluded_name(path)

    def excluded_name(self, path: Path | str) -> bool:
        """Whether the exclusions match the file's name alone: for open documents, which may
        lie outside the workspace folders."""
        return self._name_spec.match_file(Path(path).name)

    def display_path(self, path: Path) -> str:
        root = self.root_of(path)
        real = Path(path).resolve()
        return real.relative_to(root).as_posix() if root else real.name

    def read(self, path: Path) -> str | None:
        """The file's text when it may be read and is a small text file, else None."""
        if not self.allowed(path):
            return None
        try:
            status = Path(path).stat()
            # Only regular files: reading a named pipe or a device could block for ever.
            if not stat.S_ISREG(status.st_mode) or status.st_size > MAX_FILE_BYTES:
                return None
            return Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None

    def source_files(self) -> list[Path]:
        """The readable source files, at most `MAX_FILES`, excluded folders not entered."""
        found: list[Path] = []
        for root in self.roots:
            spec = self._specs[root]
            for folder, dirs, files in os.walk(root):
                relative = Path(folder).relative_to(root)
                dirs[:] = sorted(
                    d
                    for d in dirs
                    if not spec.match_file((relative / d).as_posix() + "/")
                    and self.root_of(Path(folder, d)) is not None
                )
                for name in sorted(files):
                    path = Path(folder, name)
                    if path.suffix in SOURCE_SUFFIXES and path.is_file() and self.allowed(path):
                        found.append(path)
                        if len(found) >= MAX_FILES:
                            return found
        return found


class DefinitionIndex:
    """Where each name is defined in the workspace's source files. A rebuild reads again
    only the files whose size or modification time changed."""

    def __init__(self) -> None:
        self._names: dict[str, list[Definition]] = {}
        # path -> (modification time, size, the definitions found in it)
        self._scanned: dict[Path, tuple[float, int, list[tuple[str, int]]]] = {}
        self._built_at = -INDEX_MAX_AGE_SECONDS
        self._building: threading.Thread | None = None
        self._lock = threading.Lock()

    def refresh(self, workspace: Workspace) -> None:
        """Starts a rebuild in the background when the index is old; lookups meanwhile use
        the previous one."""
        with self._lock:
            stale = time.monotonic() - self._built_at >= INDEX_MAX_AGE_SECONDS
            if not stale or (self._building is not None and self._building.is_alive()):
                return
            self._building = threading.Thread(
                target=self.build, args=(workspace,), name="definition-index", daemon=True
            )
            self._building.start()

    def build(self, workspace: Workspace) -> None:
        names: dict[str, list[Definition]] = {}
        scanned = {}
        for path in workspace.source_files():
            try:
                status = path.stat()
            except OSError:
                continue
            known = self._scanned.get(path)
            if known is not None and known[:2] == (status.st_mtime, status.st_size):
                found = known[2]
            else:
                text = workspace.read(path)
                found = definitions_in(text) if text is not None else []
            scanned[path] = (status.st_mtime, status.st_size, found)
            for name, line in found:
                names.setdefault(name, []).append(Definition(path, line))
        with self._lock:
            self._names = names
            self._scanned = scanned
            self._built_at = time.monotonic()
        log.debug("indexed %d names in the workspace", len(names))

    def lookup(self, name: str) -> list[Definition]:
        return self._names.get(name, [])


def definitions_in(text: str) -> list[tuple[str, int]]:
    """(name, zero-based line) of each definition the scan recognises in `text`."""
    found = []
    for pattern in (DEFINITION, TOP_LEVEL_ASSIGNMENT):
        for match in pattern.finditer(text):
            found.append((match.group(1), text.count("\n", 0, match.start())))
    return found


IMPORT = re.compile(r"^[ \t]*(?:from[ \t]+(\.*[\w.]*)[ \t]+import|import[ \t]+([\w.]+))", re.M)


def imported_files(text: str, path: Path | None, workspace: Workspace) -> set[Path]:
    """The workspace files a Python file imports (`import a.b`, `from .c import d`)."""
    found: set[Path] = set()
    for match in IMPORT.finditer(text):
        module = match.group(1) or match.group(2) or ""
        dots = len(module) - len(module.lstrip("."))
        parts = [part for part in module.lstrip(".").split(".") if part]
        if dots and path is not None:
            package = Path(path).parent
            bases = [package.parents[dots - 2]] if dots - 2 < len(package.parents) else []
            if dots == 1:
                bases = [package]
        else:
            bases = list(workspace.roots)
        for base in bases:
            target = base.joinpath(*parts)
            for candidate in (target.with_suffix(".py"), target / "__init__.py"):
                if parts and candidate.is_file() and workspace.allowed(candidate):
                    found.add(candidate.resolve())
    return found


FROM_IMPORT = re.compile(r"^[ \t]*from[ \t]+[.\w]+[ \t]+import[ \t]+(\([^)]*\)|[^\n]*)", re.M)


def imported_names(text: str) -> list[str]:
    """The names a Python file imports with `from ... import a, b as c`, in order."""
    names = []
    for match in FROM_IMPORT.finditer(text):
        for item in match.group(1).strip("()").replace("\n", " ").split(","):
            name = item.split("#")[0].strip().split(" as ")[0].strip()
            if name.isidentifier():
                names.append(name)
    return names
