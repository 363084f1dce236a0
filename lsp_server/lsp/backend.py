"""A remote backend as the editor sees it: a message for each change of the server's state
(down, key refused, model unknown, busy, back again), and the backend settings applied.

A failing completion answers an empty list, as for a model that is not loaded; the user learns
why once, when the state changes, rather than from an error on every keystroke.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from lsprotocol import types

from lsp_server.generation.backend import BackendState, BackendStatus
from lsp_server.lsp.settings import Settings

if TYPE_CHECKING:
    from lsp_server.lsp.server import CompletionServer


def show_status(server: CompletionServer, status: BackendStatus) -> None:
    """A `window/showMessage` for `status`, from any thread."""
    if status.state is BackendState.READY:
        kind = types.MessageType.Info
    elif status.state.transient:
        kind = types.MessageType.Warning
    else:
        kind = types.MessageType.Error
    loop = server.loop
    if loop is None or loop.is_closed():
        return
    params = types.ShowMessageParams(type=kind, message=f"replit-lsp: {status.message}")
    with contextlib.suppress(RuntimeError):  # the loop closed in between
        loop.call_soon_threadsafe(server.window_show_message, params)


def report_backend(server: CompletionServer) -> None:
    """Once the model is ready: when it is a remote server, reports its state now if that
    is a problem, and every change from then on."""
    engine = server.resident.engine
    backend = engine.backend if engine is not None else None
    if backend is None:
        return
    backend.add_listener(lambda status: show_status(server, status))
    if engine.problem:
        show_status(server, backend.status)


def apply_backend_settings(server: CompletionServer, before: Settings) -> None:
    """Acts on a change of `backendUrl`, `backendModel` or `backendFields`."""
    after = server.settings
    if after.backend_fields != before.backend_fields:
        server.resident.use_backend_fields(after.backend_fields)
    if (after.backend_url, after.backend_model) == (before.backend_url, before.backend_model):
        return
    message = server.resident.use_backend(after.backend_url, after.backend_model or None)
    if message:
        server.tell(types.MessageType.Info, f"replit-lsp: {message}")
