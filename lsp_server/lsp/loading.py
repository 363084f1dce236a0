"""Shows the model's loading in the editor: work-done progress with a percentage where the
client supports it, else log messages; then ready, or an error message saying why not."""

from __future__ import annotations

import contextlib
import logging
import uuid
from typing import TYPE_CHECKING

from lsprotocol import types

from model.progress import LoadProgress

if TYPE_CHECKING:
    from lsp_server.lsp.server import CompletionServer

log = logging.getLogger("replit_lsp.lsp")


async def report_loading(server: CompletionServer) -> None:
    """Runs from `initialized` until the model is ready or has failed."""
    capabilities = server.client_capabilities.window
    token: str | None = None
    if capabilities is not None and capabilities.work_done_progress:
        token = f"replit-lsp-loading-{uuid.uuid4()}"
        try:
            await server.work_done_progress.create_async(token)
        except Exception as error:  # the client refused: fall back to log messages
            log.debug("workDoneProgress/create failed: %s", error)
            token = None
    if token is not None:
        begin = types.WorkDoneProgressBegin(
            title="replit-lsp", message="loading the model", cancellable=False
        )
        server.work_done_progress.begin(token, begin)

    def on_progress(progress: LoadProgress) -> None:
        if token is None:
            server.tell(types.MessageType.Info, f"replit-lsp: {progress.message}")
        elif server.loop is not None and not server.loop.is_closed():
            report = types.WorkDoneProgressReport(
                message=progress.message, percentage=progress.percent
            )
            with contextlib.suppress(RuntimeError):
                server.loop.call_soon_threadsafe(server.work_done_progress.report, token, report)

    resident = server.resident
    resident.add_listener(on_progress)
    engine = await resident.ready()
    if engine is not None:
        message = f"model ready in {engine.load_seconds:.1f}s ({engine.compile_source})"
        server.window_log_message(
            types.LogMessageParams(type=types.MessageType.Info, message=f"replit-lsp: {message}")
        )
    else:
        message = f"the model failed to load: {resident.error_message}"
        server.window_show_message(
            types.ShowMessageParams(type=types.MessageType.Error, message=f"replit-lsp: {message}")
        )
    if token is not None:
        server.work_done_progress.end(token, types.WorkDoneProgressEnd(message=message))
