"""The language server's messages, each handed to the `CompletionServer` that answers it."""

from __future__ import annotations

import asyncio
from typing import Any

from lsprotocol import types

from lsp_server.feedback import ACCEPT_COMMAND, PARTIAL_ACCEPT_COMMAND
from lsp_server.lsp.backend import report_backend
from lsp_server.lsp.cursor_idle import cursor_of
from lsp_server.lsp.loading import report_loading
from lsp_server.lsp.server import CompletionServer
from lsp_server.lsp.settings import Settings
from lsp_server.resident import ResidentModel

STATUS_METHOD = "replitLsp/status"
# The statistics of recent completions: params {"since": N} gives those numbered after N.
COMPLETIONS_METHOD = "replitLsp/completions"
# The client's word that the cursor rests at a place: the server computes its prompt.
CURSOR_IDLE_METHOD = "replitLsp/cursorIdle"


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
        server.resident.feedback.accept(str(suggestion_id))
        server.ahead.accepted(str(suggestion_id))

    @server.command(PARTIAL_ACCEPT_COMMAND)
    def did_partially_accept(suggestion_id: str) -> None:
        server.resident.feedback.accept(suggestion_id, partial=True)

    @server.feature(CURSOR_IDLE_METHOD)
    async def cursor_idle(params: Any) -> None:
        at = cursor_of(params)
        if at is not None:
            await server.ahead.cursor_idle(*at)

    @server.feature(STATUS_METHOD)
    def status(params: Any) -> dict[str, Any]:
        return server.status(params)

    @server.feature(COMPLETIONS_METHOD)
    def completions(params: Any) -> list[dict[str, object]]:
        since = getattr(params, "since", 0) if params is not None else 0
        return server.completions.since(since if isinstance(since, int) else 0)

    return server
