"""The language server: inline completions from the resident model, over stdio or TCP.

The protocol side stays on the asyncio event loop and never runs the model: each completion is
generated on a worker thread, which polls a per-request flag before every token. A newer
request for the same document and `$/cancelRequest` both set that flag, so a stale completion
stops within one token and its cache slot (with the prompt's K/V, reusable by the next
keystroke) is free again before the next request starts generating.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from lsp_server.context.provider import NO_CONTEXT, WorkspaceContext
from lsp_server.feedback import ACCEPT_COMMAND, PARTIAL_ACCEPT_COMMAND
from lsp_server.generation.errors import GenerationError
from lsp_server.generation.protocol import TextGenerator
from lsp_server.lsp.backend import apply_backend_settings, report_backend
from lsp_server.lsp.completion import CompletionOutcome, generate_completion
from lsp_server.lsp.completion_log import CompletionLog, CompletionRecord, finish_of
from lsp_server.lsp.context import (
    choose_context,
    context_sources,
    source_text,
    workspace_roots,
)
from lsp_server.lsp.document_memory import DocumentMemory
from lsp_server.lsp.loading import report_loading
from lsp_server.lsp.rpc import ServerProtocol
from lsp_server.lsp.settings import Settings, apply_settings
from lsp_server.lsp.snapshot import snapshot_at
from lsp_server.resident import ResidentModel
from lsp_server.version import PACKAGE, package_version

log = logging.getLogger("replit_lsp.lsp")

STATUS_METHOD = "replitLsp/status"
# The statistics of recent completions: params {"since": N} gives those numbered after N.
COMPLETIONS_METHOD = "replitLsp/completions"

# How long a request waits for the superseded generation of its document to let go of its
# cache slot (it stops at its next token; this only bounds a pathological case).
SUPERSEDE_WAIT_SECONDS = 10.0

EMPTY = types.InlineCompletionList(items=[])


@dataclass
class PendingCompletion:
    """One inline completion request: the flag that stops it and the thread running it."""

    cancel: threading.Event = field(default_factory=threading.Event)
    future: Future[CompletionOutcome] | None = None


class CompletionServer(LanguageServer):
    def __init__(self, resident: ResidentModel, settings: Settings, seed: int | None) -> None:
        """`settings` are the command line's, which the client may override."""
        super().__init__(PACKAGE, package_version(), protocol_cls=ServerProtocol)
        self.protocol: ServerProtocol
        self.resident = resident
        self.settings = settings
        self.seed = seed
        self.loop: asyncio.AbstractEventLoop | None = None
        self.completions = CompletionLog()
        self._pending: dict[str, PendingCompletion] = {}
        self._documents: dict[str, DocumentMemory] = {}
        self._executor: ThreadPoolExecutor | None = None
        self.context = WorkspaceContext()

    # --------------------------------------------------------------- messages

    def tell(self, kind: types.MessageType, message: str) -> None:
        """Sends a `window/logMessage` from any thread (dropped before the loop runs)."""
        if self.loop is None or self.loop.is_closed():
            return
        params = types.LogMessageParams(type=kind, message=message)
        with contextlib.suppress(RuntimeError):  # the loop closed in between
            self.loop.call_soon_threadsafe(self.window_log_message, params)

    def update_settings(self, raw: object) -> None:
        before = self.settings
        self.settings, warnings = apply_settings(self.settings, raw)
        for warning in warnings:
            self.tell(types.MessageType.Warning, f"replit-lsp: {warning}")
        apply_backend_settings(self, before)
        if self.settings.context_exclude != before.context_exclude:
            self.use_workspace_folders()

    def use_workspace_folders(self) -> None:
        """Points the workspace context at the client's folders (or its root), once known."""
        if self.protocol._workspace is not None:
            roots = workspace_roots(self.workspace)
            self.context.set_folders(roots, self.settings.context_exclude)

    def document_closed(self, uri: str) -> None:
        """Stops the document's completion, forgets its memory, and keeps its text as a
        recently visited file for the workspace context."""
        self.close(uri)
        closed = self.protocol.closed
        if closed is not None and closed.uri == uri:
            self.context.closed(source_text(closed))

    # ------------------------------------------------------------- completion

    def executor(self, engine: TextGenerator) -> ThreadPoolExecutor:
        """One worker per KV cache slot: more could only wait for a slot inside the engine,
        where a superseded request cannot be dropped as cheaply as from this queue."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(engine.slots, thread_name_prefix="completion")
        return self._executor

    async def inline_completion(
        self, params: types.InlineCompletionParams
    ) -> types.InlineCompletionList:
        """Supersedes the document's previous request, then completes at the cursor."""
        uri = params.text_document.uri
        previous = self._pending.get(uri)
        if previous is not None:
            previous.cancel.set()
        pending = self._pending[uri] = PendingCompletion()
        try:
            return await self._complete(params, pending, previous)
        except asyncio.CancelledError:  # $/cancelRequest: the worker stops at its next token
            pending.cancel.set()
            raise
        finally:
            if self._pending.get(uri) is pending:
                del self._pending[uri]

    async def _complete(
        self,
        params: types.InlineCompletionParams,
        pending: PendingCompletion,
        previous: PendingCompletion | None,
    ) -> types.InlineCompletionList:
        started = time.perf_counter()
        settings = self.settings
        deadline = None
        if settings.time_budget_ms > 0:
            deadline = time.monotonic() + settings.time_budget_ms / 1000
        uri = params.text_document.uri
        document = self.protocol.documents.get(uri)
        if document is None or not settings.language_enabled(document.language_id):
            log.debug("completion at %s: not an open document of an enabled language", uri)
            return EMPTY
        engine = await self.resident.ready(settings.request_wait_seconds)
        if engine is None or pending.cancel.is_set():
            log.debug("completion at %s: %s", uri, "superseded" if engine else "model not ready")
            return EMPTY
        if params.context.trigger_kind == types.InlineCompletionTriggerKind.Invoked:
            # A suggestion the user asked for may be longer than one that comes while typing.
            settings = dataclasses.replace(settings, max_new_tokens=settings.invoked_max_new_tokens)
        memory = self._documents.setdefault(uri, DocumentMemory())
        display_path = self._display_path(document) if settings.prepend_file_path else None
        snapshot, position = snapshot_at(
            document,
            params.position,
            self.protocol.encoding,
            settings,
            self.seed,
            display_path,
            memory.window_start,
            memory.shown_text,
            deadline,
        )
        if snapshot is None:
            log.debug("completion at %s: nothing before the cursor", uri)
            return EMPTY
        now = time.monotonic()
        open_documents = self.protocol.documents.all()
        sources = context_sources(document, open_documents, position.line, settings)
        if memory.context_due(now, settings.context_idle_ms / 1000, sources):
            memory.context_sources = sources
            memory.context = await choose_context(
                self.context,
                document,
                open_documents,
                snapshot.text_before,
                settings,
                engine,
                snapshot.header,
            )
        memory.last_request = now
        rest = memory.rest_of_suggestion(snapshot.text_before)
        if rest:
            # Typing what the suggestion says: its rest is the answer, with no model run.
            record = self.completions.add(
                uri, position.line, position.character, "typed through", 0.0
            )
            self._log(record)
            # The same suggestion, still shown: accepting its rest accepts it.
            return self._answer(rest, position, memory.command)
        if previous is not None and previous.future is not None:
            await asyncio.wait(
                [asyncio.wrap_future(previous.future)], timeout=SUPERSEDE_WAIT_SECONDS
            )
        if pending.cancel.is_set():
            log.debug("completion at %s: superseded", uri)
            return EMPTY
        context = memory.context or NO_CONTEXT
        snapshot = dataclasses.replace(snapshot, header=context.text + snapshot.header)
        pending.future = self.executor(engine).submit(
            generate_completion, engine, snapshot, pending.cancel.is_set
        )
        pending.future.add_done_callback(
            lambda future: self._record(
                future, pending, uri, position, started, deadline, context.labels
            )
        )
        try:
            outcome = await self._outcome(pending, settings.answer_timeout_seconds)
        except GenerationError as error:  # the editor hears of the backend's state changes
            log.debug("completion at %s: %s", uri, error)
            return EMPTY
        if outcome is None:
            log.error(
                "completion at %s:%d:%d had no result after %.0f s (%s); answered empty and "
                "stopped it",
                uri,
                position.line,
                position.character,
                settings.answer_timeout_seconds,
                "generating" if pending.future.running() else "waiting for a worker",
            )
            return EMPTY
        memory.remember(snapshot, outcome)
        if pending.cancel.is_set() or not outcome.text:
            return EMPTY
        memory.command = self.resident.feedback.shown_item(time.perf_counter() - started)
        return self._answer(outcome.text, position, memory.command)

    @staticmethod
    async def _outcome(pending: PendingCompletion, limit: float) -> CompletionOutcome | None:
        """The worker's outcome, or None when it has none within `limit` seconds, which also
        stops it: a request is answered whatever its worker is stuck on. What the worker
        computed until then stays in the cache for the next request."""
        assert pending.future is not None
        try:
            return await asyncio.wait_for(
                asyncio.shield(asyncio.wrap_future(pending.future)), limit
            )
        except TimeoutError:
            pending.cancel.set()
            return None

    @staticmethod
    def _answer(
        text: str, position: types.Position, command: types.Command | None
    ) -> types.InlineCompletionList:
        """One item at the cursor, with the command the editor runs when it is accepted."""
        item = types.InlineCompletionItem(
            insert_text=text, range=types.Range(start=position, end=position), command=command
        )
        return types.InlineCompletionList(items=[item])

    def _record(
        self,
        future: Future[CompletionOutcome],
        pending: PendingCompletion,
        uri: str,
        position: types.Position,
        started: float,
        deadline: float | None,
        context: tuple[str, ...],
    ) -> None:
        """Records and logs each request's statistics when its worker finishes, cancelled
        ones included."""
        if future.cancelled() or future.exception() is not None:
            return  # the exception reaches the client as the request's error
        stats = future.result().stats
        if stats is None:
            return  # the model never ran
        finish = finish_of(stats, pending.cancel.is_set(), deadline)
        milliseconds = 1000 * (time.perf_counter() - started)
        self._log(
            self.completions.add(
                uri, position.line, position.character, finish, milliseconds, stats, context
            )
        )

    @staticmethod
    def _log(record: CompletionRecord) -> None:
        log.debug(
            "completion at %s:%d:%d: reused %d/%d prompt tokens, generated %d tokens (%s), %.1f ms",
            record.uri,
            record.line,
            record.character,
            record.reused_tokens,
            record.prompt_tokens,
            record.generated_tokens,
            record.finish,
            record.milliseconds,
        )

    def _display_path(self, document: Any) -> str:
        """The document's path relative to the workspace root when inside it."""
        path = document.path or document.uri
        root = self.workspace.root_path
        if root and os.path.isabs(path) and os.path.commonpath([root, path]) == root:
            return os.path.relpath(path, root)
        return path

    def close(self, uri: str) -> None:
        """Stops the document's completion and forgets what the server kept for it."""
        pending = self._pending.get(uri)
        if pending is not None:
            pending.cancel.set()
        self._documents.pop(uri, None)

    def cancel_all(self) -> None:
        for pending in self._pending.values():
            pending.cancel.set()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def status(self, params: Any = None) -> dict[str, Any]:
        """The model's state; with `{"textDocument": {"uri": ...}}`, also that document's
        digest (null when it is not open), so a client can check both copies agree."""
        document: dict[str, Any] = {}
        uri = getattr(getattr(params, "textDocument", None), "uri", None)
        if isinstance(uri, str):
            open_document = self.protocol.documents.get(uri)
            document["document"] = open_document.digest() if open_document else None
        return document | self.resident.status().fields() | {"completions": self.completions.count}


def build_server(
    resident: ResidentModel, settings: Settings, seed: int | None = None
) -> CompletionServer:
    server = CompletionServer(resident, settings, seed)

    @server.feature(types.INITIALIZE)
    def initialize(params: types.InitializeParams) -> None:
        server.loop = asyncio.get_running_loop()
        server.update_settings(params.initialization_options)
        server.use_workspace_folders()

    @server.feature(types.INITIALIZED)
    async def initialized(params: types.InitializedParams) -> None:
        await report_loading(server)
        report_backend(server)

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    def did_change_configuration(params: types.DidChangeConfigurationParams) -> None:
        server.update_settings(params.settings)

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(params: types.DidOpenTextDocumentParams) -> None:
        server.context.opened(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(params: types.DidCloseTextDocumentParams) -> None:
        server.document_closed(params.text_document.uri)

    @server.feature(types.WORKSPACE_DID_CHANGE_WORKSPACE_FOLDERS)
    def did_change_workspace_folders(params: types.DidChangeWorkspaceFoldersParams) -> None:
        server.use_workspace_folders()

    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(
        params: types.InlineCompletionParams,
    ) -> types.InlineCompletionList:
        return await server.inline_completion(params)

    @server.feature(types.SHUTDOWN)
    def shutdown(params: None) -> None:
        server.cancel_all()

    @server.command(ACCEPT_COMMAND)
    def did_accept(suggestion_id: str) -> None:
        server.resident.feedback.accept(suggestion_id)

    @server.command(PARTIAL_ACCEPT_COMMAND)
    def did_partially_accept(suggestion_id: str) -> None:
        server.resident.feedback.accept(suggestion_id, partial=True)

    @server.feature(STATUS_METHOD)
    def status(params: Any) -> dict[str, Any]:
        return server.status(params)

    @server.feature(COMPLETIONS_METHOD)
    def completions(params: Any) -> list[dict[str, object]]:
        since = getattr(params, "since", 0) if params is not None else 0
        return server.completions.since(since if isinstance(since, int) else 0)

    return server
