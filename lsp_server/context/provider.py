"""One block of workspace context per document, chosen when the user pauses.

The block is the front of the prompt: while it stays the same, the engine reuses its K/V and
each keystroke pays only for what was typed. So it is chosen again only after a pause (the
document's previous request at least `idle` seconds before) and never between two keystrokes
of continuous typing; its snippets are ordered by path and line, so the same set always
reads the same. Definitions of names used near the cursor come first, then the windows of
other open and recently closed documents most alike the code at the cursor, while the token
budget lasts.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cachetools import LRUCache

from lsp_server.context.snippets import (
    Snippet,
    definition_snippet,
    identifiers,
    jaccard,
    windows,
)
from lsp_server.context.workspace import (
    DefinitionIndex,
    Workspace,
    definitions_in,
    imported_files,
    imported_names,
)
from lsp_server.lsp.prompt import path_header

# Lines before the cursor whose identifiers are compared with other files.
CURSOR_LINES = 40
# Closed documents remembered as recently visited.
RECENT_DOCUMENTS = 8
# Names near the cursor whose definitions are looked up, and definitions kept per name.
MAX_NAMES = 12
DEFINITIONS_PER_NAME = 2


@dataclass(frozen=True)
class ContextOptions:
    """Which sources are used, and how many tokens the block may take."""

    tokens: int
    open_documents: bool = True
    recent_documents: bool = True
    definitions: bool = True


@dataclass(frozen=True)
class SourceText:
    """A document the context may quote: where it is and what it says."""

    uri: str
    path: Path | None  # None where the URI is not a file (an unsaved buffer)
    text: str


@dataclass(frozen=True)
class ContextBlock:
    text: str
    labels: tuple[str, ...]  # `path:first-last` of each snippet, in order


NO_CONTEXT = ContextBlock("", ())


def render(snippets: list[Snippet], language_id: str) -> ContextBlock:
    """The snippets in path and line order, each after a comment naming where it is from."""
    ordered = sorted(snippets, key=lambda s: (s.path, s.first_line))
    pieces = [path_header(s.path, language_id) + s.text.rstrip("\n") + "\n\n" for s in ordered]
    return ContextBlock("".join(pieces), tuple(s.label for s in ordered))


class WorkspaceContext:
    """The workspace's files, their definitions index and the recently closed documents."""

    def __init__(self) -> None:
        self.workspace = Workspace([])
        self.index = DefinitionIndex()
        self._recent: LRUCache[str, SourceText] = LRUCache(maxsize=RECENT_DOCUMENTS)

    def set_folders(self, roots: list[Path], exclude: tuple[str, ...]) -> None:
        self.workspace = Workspace(roots, exclude)
        self.index = DefinitionIndex()
        if self.workspace.roots:
            self.index.refresh(self.workspace)

    def closed(self, document: SourceText) -> None:
        if document.text.strip():
            self._recent[document.uri] = document

    def opened(self, uri: str) -> None:
        self._recent.pop(uri, None)

    def quotable(self, document: SourceText) -> bool:
        """Not excluded; a file inside the workspace folders when there are any."""
        if document.path is None:
            return not self.workspace.roots
        if self.workspace.roots:
            return self.workspace.allowed(document.path)
        return not self.workspace.excluded_name(document.path)

    def choose(
        self,
        current: SourceText,
        text_before: str,
        open_documents: list[SourceText],
        options: ContextOptions,
        language_id: str,
        count_tokens: Callable[[str], int],
    ) -> ContextBlock:
        """The block for a request at the end of `text_before` in `current`."""
        if options.tokens <= 0:
            return NO_CONTEXT
        cursor_text = "\n".join(text_before.split("\n")[-CURSOR_LINES:])
        others = [d for d in open_documents if d.uri != current.uri and self.quotable(d)]
        candidates: list[Snippet] = []
        if options.definitions:
            candidates += self._definitions(current, text_before, cursor_text, others)
        sources = others if options.open_documents else []
        if options.recent_documents:
            open_uris = {d.uri for d in open_documents}
            sources += [d for d in self._recent.values() if d.uri not in open_uris]
        candidates += self._similar(cursor_text, sources)
        return self._fill(candidates, options.tokens, language_id, count_tokens)

    def _display(self, document: SourceText) -> str:
        if document.path is None:
            return document.uri
        return self.workspace.display_path(document.path)

    def _definitions(
        self,
        current: SourceText,
        text_before: str,
        cursor_text: str,
        others: list[SourceText],
    ) -> list[Snippet]:
        """Definitions, elsewhere in the workspace, of the names used near the cursor and not
        defined in this file (the latest used first), then of the names the file imports;
        for each name, those in files it imports before others."""
        if not self.workspace.roots:
            return []
        self.index.refresh(self.workspace)
        local = {name for name, _ in definitions_in(current.text)}
        last_use: dict[str, int] = {}
        for match in re.finditer(r"[A-Za-z_]\w*", cursor_text):
            last_use[match.group()] = match.start()
        near = sorted(identifiers(cursor_text) - local, key=lambda n: -last_use[n])
        names = near + [n for n in dict.fromkeys(imported_names(text_before)) if n not in near]
        imported = imported_files(text_before, current.path, self.workspace)
        texts = {d.path.resolve(): d.text for d in others if d.path is not None}
        own = current.path.resolve() if current.path is not None else None
        found: list[tuple[bool, int, Snippet]] = []
        for rank, name in enumerate(names):
            places = [d for d in self.index.lookup(name) if d.path.resolve() != own]
            places.sort(key=lambda d: d.path.resolve() not in imported)
            for place in places[:DEFINITIONS_PER_NAME]:
                text = texts.get(place.path.resolve()) or self.workspace.read(place.path)
                lines = text.splitlines(keepends=True) if text else []
                if place.line < len(lines):
                    display = self.workspace.display_path(place.path)
                    snippet = definition_snippet(display, lines, place.line, name)
                    found.append((place.path.resolve() not in imported, rank, snippet))
            if len({rank for _, rank, _ in found}) >= MAX_NAMES:
                break
        return [snippet for *_, snippet in sorted(found, key=lambda f: (f[0], f[1]))]

    def _similar(self, cursor_text: str, sources: list[SourceText]) -> list[Snippet]:
        """Windows of `sources` by similarity to the code at the cursor, best first."""
        wanted = identifiers(cursor_text)
        scored = []
        for document in sources:
            for window in windows(self._display(document), document.text):
                score = jaccard(wanted, identifiers(window.text))
                if score > 0:
                    scored.append((score, window))
        scored.sort(key=lambda pair: -pair[0])
        return [window for _, window in scored]

    @staticmethod
    def _fill(
        candidates: list[Snippet],
        budget: int,
        language_id: str,
        count_tokens: Callable[[str], int],
    ) -> ContextBlock:
        """The candidates, in order, that fit the budget together; none overlapping."""
        chosen: list[Snippet] = []
        block = NO_CONTEXT
        for snippet in candidates:
            if any(snippet.overlaps(other) for other in chosen):
                continue
            trial = render([*chosen, snippet], language_id)
            if count_tokens(trial.text) <= budget:
                chosen.append(snippet)
                block = trial
        return block
