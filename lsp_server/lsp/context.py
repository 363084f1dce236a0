"""The workspace context as the language server uses it: its documents and folders as the
context's sources, and one block chosen per pause, off the event loop and within its share of
the prompt."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Hashable
from pathlib import Path

from pygls.uris import to_fs_path
from pygls.workspace import Workspace as LspWorkspace

from lsp_server.context.provider import (
    NO_CONTEXT,
    ContextBlock,
    ContextOptions,
    SourceText,
    WorkspaceContext,
)
from lsp_server.generation.protocol import TextGenerator
from lsp_server.lsp.completion import prompt_budget
from lsp_server.lsp.documents import Document
from lsp_server.lsp.settings import Settings

log = logging.getLogger("replit_lsp.lsp")

# The longest a request waits for its workspace context to be chosen.
CONTEXT_WAIT_SECONDS = 2.0
# The cursor moving into another stretch of this many lines is a new place to choose for.
CONTEXT_REGION_LINES = 40


def source_text(document: Document) -> SourceText:
    path = to_fs_path(document.uri) if document.uri.startswith("file:") else None
    return SourceText(document.uri, Path(path) if path else None, document.source)


def context_sources(
    document: Document, open_documents: list[Document], line: int, settings: Settings
) -> Hashable:
    """What a document's context is chosen from: the other documents as they are now, the
    region of the file the cursor is in, and the context's settings."""
    others = frozenset((d.uri, d.version) for d in open_documents if d.uri != document.uri)
    options = (
        settings.context_tokens,
        settings.context_open_documents,
        settings.context_recent_documents,
        settings.context_definitions,
        settings.context_exclude,
    )
    return others, line // CONTEXT_REGION_LINES, options


def workspace_roots(workspace: LspWorkspace) -> list[Path]:
    """The client's workspace folders, or its root where it gave no folders."""
    roots = [to_fs_path(folder.uri) for folder in workspace.folders.values()]
    if not roots and workspace.root_path:
        roots = [workspace.root_path]
    return [Path(root) for root in roots if root]


async def choose_context(
    context: WorkspaceContext,
    document: Document,
    open_documents: list[Document],
    text_before: str,
    settings: Settings,
    engine: TextGenerator,
    header: str,
) -> ContextBlock:
    """The context for a request in `document` (whose prompt starts with `header` after
    it), chosen on a thread: it may read and index files. It takes at most half the prompt;
    when choosing takes longer than `CONTEXT_WAIT_SECONDS`, there is none until the next
    pause."""
    budget = prompt_budget(engine.max_length, settings.max_new_tokens) // 2
    budget -= len(engine.tokenizer.encode(header)) if header else 0
    options = ContextOptions(
        tokens=min(settings.context_tokens, budget),
        open_documents=settings.context_open_documents,
        recent_documents=settings.context_recent_documents,
        definitions=settings.context_definitions,
    )
    if options.tokens <= 0:
        return NO_CONTEXT
    choosing = asyncio.to_thread(
        context.choose,
        source_text(document),
        text_before,
        [source_text(d) for d in open_documents],
        options,
        document.language_id or "",
        lambda text: len(engine.tokenizer.encode(text)),
    )
    try:
        return await asyncio.wait_for(choosing, CONTEXT_WAIT_SECONDS)
    except TimeoutError:
        log.warning("choosing the workspace context took over %.0f s", CONTEXT_WAIT_SECONDS)
        return NO_CONTEXT
