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
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol

from lsp_server.feedback import ACCEPT_COMMAND, PARTIAL_ACCEPT_COMMAND
from lsp_server.postprocess import CompletionContext, detect_indentation, postprocess, truncate
from lsp_server.prompt import build_prompt, path_header, resolve_cursor, text_after
from lsp_server.resident import ResidentModel
from lsp_server.settings import Settings, apply_settings
from model.engine import Engine
from model.progress import LoadProgress
from model.sampling import SamplingParams

log = logging.getLogger("replit_lsp.lsp")

STATUS_METHOD = "replitLsp/status"
VERSION = "0.1.0"

# Generations run at once across documents; more wait in the executor's queue, where a
# cancelled one costs nothing.
MAX_WORKERS = 4

# How long a request waits for the superseded generation of its document to let go of its
# cache slot (it stops at its next token; this only bounds a pathological case).
SUPERSEDE_WAIT_SECONDS = 10.0

# The indentation style is learned from this much text before the cursor.
INDENT_SAMPLE_CHARS = 100_000

EMPTY = types.InlineCompletionList(items=[])


@dataclass
class _Job:
    """One inline completion request: the flag that stops it and the thread running it."""

    cancel: threading.Event = field(default_factory=threading.Event)
    future: Future[CompletionOutcome] | None = None


@dataclass(frozen=True)
class CompletionRequest:
    """A snapshot of everything the worker thread needs, taken on the event loop."""

    text_before: str
    header: str
    context: CompletionContext
    settings: Settings
    seed: int | None


@dataclass(frozen=True)
class CompletionOutcome:
    """The completion to show and what producing it cost, for the per-request log line."""

    text: str
    prompt_tokens: int = 0
    reused_tokens: int = 0
    generated_tokens: int = 0
    finish: str = "empty prompt"


def generate_completion(
    engine: Engine, request: CompletionRequest, cancelled: Callable[[], bool]
) -> CompletionOutcome:
    """Runs on a worker thread: builds the prompt, streams tokens, stops when the
    post-processing says the completion is over, or when `cancelled()` turns true."""
    max_new_tokens = min(request.settings.max_new_tokens, engine.max_length // 2)
    prompt = build_prompt(
        request.text_before, engine.tokenizer, engine.max_length - max_new_tokens, request.header
    )
    if not prompt or cancelled():
        return CompletionOutcome("", finish="empty prompt" if not prompt else "cancelled")
    params = SamplingParams(
        max_new_tokens=max_new_tokens,
        top_k=request.settings.top_k,
        temperature=request.settings.temperature,
        seed=request.seed,
    )
    decoder = engine.tokenizer.stream()
    raw, over = "", False
    with engine.generate(prompt, params, cancelled=cancelled) as generation:
        for token in generation:
            raw += decoder.push(token)
            if truncate(raw, request.context)[1]:
                over = True
                break
    if not over:
        raw += decoder.flush()
    return CompletionOutcome(
        text=postprocess(raw, request.context),
        prompt_tokens=generation.prompt_tokens,
        reused_tokens=generation.reused_tokens,
        generated_tokens=len(generation.tokens),
        finish="end of completion" if over else str(generation.finish_reason),
    )


def _log_outcome(
    future: Future[CompletionOutcome], job: _Job, uri: str, position: types.Position, started: float
) -> None:
    """Logs each request's statistics when its worker finishes, cancelled ones included."""
    if future.cancelled() or future.exception() is not None:
        return  # the exception reaches the client as the request's error
    outcome = future.result()
    finish = outcome.finish
    if job.cancel.is_set() and finish != "cancelled":
        finish += ", superseded"
    log.debug(
        "completion at %s:%d:%d: reused %d/%d prompt tokens, generated %d tokens (%s), %.1f ms",
        uri,
        position.line,
        position.character,
        outcome.reused_tokens,
        outcome.prompt_tokens,
        outcome.generated_tokens,
        finish,
        1000 * (time.perf_counter() - started),
    )


class _ClientLogHandler(logging.Handler):
    """Forwards this module's log records to the client as `window/logMessage`, so that
    `--log-level DEBUG` shows per-request statistics in the editor's output panel."""

    LEVELS = (
        (logging.ERROR, types.MessageType.Error),
        (logging.WARNING, types.MessageType.Warning),
        (logging.INFO, types.MessageType.Info),
    )

    def __init__(self, server: CompletionServer) -> None:
        super().__init__()
        self.server = server

    def emit(self, record: logging.LogRecord) -> None:
        kind = next((t for level, t in self.LEVELS if record.levelno >= level), None)
        self.server.tell(kind or types.MessageType.Log, self.format(record))


class _Protocol(LanguageServerProtocol):
    """Answers a request whose params do not parse with an error response: pygls only logs
    it, which would leave the client waiting for an answer forever."""

    def structure_message(self, data: dict[str, Any]) -> Any:
        try:
            return super().structure_message(data)
        except JsonRpcException as error:
            msg_id = data.get("id")
            if "method" in data and isinstance(msg_id, int | str):
                self._send_response(msg_id, error=error.to_response_error())
            raise


class CompletionServer(LanguageServer):
    def __init__(self, resident: ResidentModel, defaults: SamplingParams) -> None:
        super().__init__("replit-lsp", VERSION, protocol_cls=_Protocol)
        self.resident = resident
        self.settings = Settings.from_defaults(defaults)
        self.seed = defaults.seed
        self.loop: asyncio.AbstractEventLoop | None = None
        self._loaded: asyncio.Future[None] | None = None
        self._jobs: dict[str, _Job] = {}
        self._executor = ThreadPoolExecutor(MAX_WORKERS, thread_name_prefix="completion")

    # --------------------------------------------------------------- messages

    def tell(self, kind: types.MessageType, message: str) -> None:
        """Sends a `window/logMessage` from any thread (dropped before the loop runs)."""
        if self.loop is None or self.loop.is_closed():
            return
        params = types.LogMessageParams(type=kind, message=message)
        with contextlib.suppress(RuntimeError):  # the loop closed in between
            self.loop.call_soon_threadsafe(self.window_log_message, params)

    def update_settings(self, raw: object) -> None:
        self.settings, warnings = apply_settings(self.settings, raw)
        for warning in warnings:
            self.tell(types.MessageType.Warning, f"replit-lsp: {warning}")

    # ---------------------------------------------------------------- loading

    def model_loaded(self) -> asyncio.Future[None]:
        """Resolves once the model is ready or has failed; starts loading if nobody did."""
        if self._loaded is None:
            loop = asyncio.get_running_loop()
            self._loaded = loop.create_future()

            def resolve() -> None:
                if not self._loaded.done():  # type: ignore[union-attr]
                    self._loaded.set_result(None)  # type: ignore[union-attr]

            def wait() -> None:
                self.resident.wait()
                with contextlib.suppress(RuntimeError):  # the loop closed in between
                    loop.call_soon_threadsafe(resolve)

            self.resident.start()
            threading.Thread(target=wait, name="model-ready", daemon=True).start()
        return self._loaded

    async def report_loading(self) -> None:
        """Shows loading as work-done progress (or log messages), then says ready or failed."""
        capabilities = self.client_capabilities.window
        token: str | None = None
        if capabilities is not None and capabilities.work_done_progress:
            token = f"replit-lsp-loading-{uuid.uuid4()}"
            try:
                await self.work_done_progress.create_async(token)
            except Exception as error:  # the client refused: fall back to log messages
                log.debug("workDoneProgress/create failed: %s", error)
                token = None
        if token is not None:
            begin = types.WorkDoneProgressBegin(
                title="replit-lsp", message="loading the model", cancellable=False
            )
            self.work_done_progress.begin(token, begin)

        def on_progress(progress: LoadProgress) -> None:
            if token is None:
                self.tell(types.MessageType.Info, f"replit-lsp: {progress.message}")
            elif self.loop is not None and not self.loop.is_closed():
                report = types.WorkDoneProgressReport(
                    message=progress.message, percentage=progress.percent
                )
                with contextlib.suppress(RuntimeError):
                    self.loop.call_soon_threadsafe(self.work_done_progress.report, token, report)

        self.resident.add_listener(on_progress)
        await self.model_loaded()
        engine = self.resident.engine
        if engine is not None:
            message = f"model ready in {engine.load_seconds:.1f}s ({engine.compile_source})"
            self.window_log_message(
                types.LogMessageParams(
                    type=types.MessageType.Info, message=f"replit-lsp: {message}"
                )
            )
        else:
            message = f"the model failed to load: {self.resident.error}"
            self.window_show_message(
                types.ShowMessageParams(
                    type=types.MessageType.Error, message=f"replit-lsp: {message}"
                )
            )
        if token is not None:
            self.work_done_progress.end(token, types.WorkDoneProgressEnd(message=message))

    async def engine(self, wait_seconds: float) -> Engine | None:
        """The engine, waiting up to `wait_seconds` for it to load; None if not ready by then."""
        loaded = self.model_loaded()
        if not loaded.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(loaded), wait_seconds)
        return self.resident.engine

    # ------------------------------------------------------------- completion

    async def inline_completion(
        self, params: types.InlineCompletionParams
    ) -> types.InlineCompletionList:
        """Supersedes the document's previous request, then completes at the cursor."""
        uri = params.text_document.uri
        previous = self._jobs.get(uri)
        if previous is not None:
            previous.cancel.set()
        job = self._jobs[uri] = _Job()
        try:
            return await self._complete(params, job, previous)
        except asyncio.CancelledError:  # $/cancelRequest: the worker stops at its next token
            job.cancel.set()
            raise
        finally:
            if self._jobs.get(uri) is job:
                del self._jobs[uri]

    async def _complete(
        self, params: types.InlineCompletionParams, job: _Job, previous: _Job | None
    ) -> types.InlineCompletionList:
        started = time.perf_counter()
        settings = self.settings
        uri = params.text_document.uri
        document = self.workspace.text_documents.get(uri)
        if document is None or not settings.language_enabled(document.language_id):
            log.debug("completion at %s: not an open document of an enabled language", uri)
            return EMPTY
        engine = await self.engine(settings.request_wait_seconds)
        if engine is None or job.cancel.is_set():
            log.debug("completion at %s: %s", uri, "superseded" if engine else "model not ready")
            return EMPTY
        invoked = params.context.trigger_kind == types.InlineCompletionTriggerKind.Invoked
        request, position = self._snapshot(document, params.position, settings, invoked)
        if request is None:
            log.debug("completion at %s: nothing before the cursor", uri)
            return EMPTY
        if previous is not None and previous.future is not None:
            await asyncio.wait(
                [asyncio.wrap_future(previous.future)], timeout=SUPERSEDE_WAIT_SECONDS
            )
        if job.cancel.is_set():
            log.debug("completion at %s: superseded", uri)
            return EMPTY
        job.future = self._executor.submit(generate_completion, engine, request, job.cancel.is_set)
        job.future.add_done_callback(
            lambda future: _log_outcome(future, job, document.uri, position, started)
        )
        outcome = await asyncio.wrap_future(job.future)
        if job.cancel.is_set() or not outcome.text:
            return EMPTY
        item = types.InlineCompletionItem(
            insert_text=outcome.text,
            range=types.Range(start=position, end=position),
            command=self.resident.feedback.shown_item(time.perf_counter() - started),
        )
        return types.InlineCompletionList(items=[item])

    def _snapshot(
        self, document: Any, position: types.Position, settings: Settings, invoked: bool
    ) -> tuple[CompletionRequest | None, types.Position]:
        """Resolves the (clamped) cursor in the current text; None when there is nothing
        before the cursor to complete from. A suggestion the user asked for (`invoked`) may
        be longer than one that comes while typing."""
        text = document.source
        negotiated = self.workspace.position_encoding  # an enum member or its plain string
        encoding = str(getattr(negotiated, "value", negotiated) or "utf-16")
        cursor = resolve_cursor(text, position.line, position.character, encoding)
        clamped = types.Position(line=cursor.line, character=cursor.character)
        text_before = text[: cursor.offset]
        if not text_before:
            return None, clamped
        if invoked:
            settings = dataclasses.replace(settings, max_new_tokens=settings.invoked_max_new_tokens)
        header = ""
        if settings.prepend_file_path:
            header = path_header(self._display_path(document), document.language_id or "")
        context = CompletionContext(
            line_prefix=cursor.line_prefix,
            line_suffix=cursor.line_suffix,
            text_after=text_after(text, cursor),
            max_lines=settings.max_lines,
            indentation=detect_indentation(text_before[-INDENT_SAMPLE_CHARS:]),
        )
        return CompletionRequest(text_before, header, context, settings, self.seed), clamped

    def _display_path(self, document: Any) -> str:
        """The document's path relative to the workspace root when inside it."""
        path = document.path or document.uri
        root = self.workspace.root_path
        if root and os.path.isabs(path) and os.path.commonpath([root, path]) == root:
            return os.path.relpath(path, root)
        return path

    def cancel_all(self) -> None:
        for job in self._jobs.values():
            job.cancel.set()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def status(self) -> dict[str, Any]:
        engine = self.resident.engine
        return {
            "state": self.resident.state,
            "message": self.resident.last_message,
            "stage": self.resident.progress.stage,
            "percent": self.resident.progress.percent,
            "engine_id": id(engine) if engine is not None else None,
            "pid": os.getpid(),
            "suggestions": self.resident.feedback.snapshot(),
        }


def build_server(resident: ResidentModel, defaults: SamplingParams) -> CompletionServer:
    server = CompletionServer(resident, defaults)

    @server.feature(types.INITIALIZE)
    def initialize(params: types.InitializeParams) -> None:
        server.loop = asyncio.get_running_loop()
        server.update_settings(params.initialization_options)

    @server.feature(types.INITIALIZED)
    async def initialized(params: types.InitializedParams) -> None:
        await server.report_loading()

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    def did_change_configuration(params: types.DidChangeConfigurationParams) -> None:
        server.update_settings(params.settings)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(params: types.DidCloseTextDocumentParams) -> None:
        job = server._jobs.get(params.text_document.uri)
        if job is not None:
            job.cancel.set()

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
        return server.status()

    return server


def run_language_server(
    resident: ResidentModel,
    defaults: SamplingParams,
    transport: str = "stdio",
    host: str = "127.0.0.1",
    port: int = 2087,
) -> None:
    """Serves one client until it exits; `transport` is "stdio" or "tcp"."""
    # pygls logs every feature it registers and every message at INFO: quiet it first, so
    # an editor's output panel shows only what this server has to say.
    if not log.isEnabledFor(logging.DEBUG):
        logging.getLogger("pygls").setLevel(logging.WARNING)
    server = build_server(resident, defaults)
    handler = _ClientLogHandler(server)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    try:
        if transport == "tcp":
            server.start_tcp(host, port)
        else:
            server.start_io()
    finally:
        log.removeHandler(handler)
        server.cancel_all()
    if resident.state == "loading":
        # The loader thread is inside MAX's native code: interpreter shutdown would end it
        # there and abort the process. Nothing is left to clean up, so leave at once.
        log.info("the client exited while the model was loading")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
