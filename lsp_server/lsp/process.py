"""The language server as the process: one client served over stdio or TCP, then the end of
the process with the exit code LSP asks for."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import NoReturn

from lsp_server.lsp.client_log import ClientLogHandler
from lsp_server.lsp.framing import serve_stdio, serve_tcp
from lsp_server.lsp.handlers import build_server
from lsp_server.lsp.settings import Settings
from lsp_server.options import option_named
from lsp_server.resident import ResidentModel

log = logging.getLogger("replit_lsp.lsp")


def run_language_server(
    resident: ResidentModel,
    settings: Settings,
    seed: int | None = None,
    transport: str = "stdio",
    host: str = option_named("host").default,
    port: int = option_named("lsp_port").default,
) -> NoReturn:
    """Serves one client until it exits, then ends the process: with status 0 after
    `shutdown` and `exit`, 1 after `exit` alone (as LSP says), 0 when the client hangs up.

    The process ends with `os._exit`: the loader thread may be inside MAX's native code, where
    interpreter shutdown would abort it, and the stdin thread may be blocked in a read that
    would never return; nothing is left to clean up by then."""
    # pygls logs every feature it registers and every message at INFO: quiet it first, so
    # an editor's output panel shows only what this server has to say.
    if not log.isEnabledFor(logging.DEBUG):
        logging.getLogger("pygls").setLevel(logging.WARNING)
    server = build_server(resident, settings, seed)
    handler = ClientLogHandler(server.tell)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    try:
        if transport == "tcp":
            serve_tcp(server, host, port)
        else:
            serve_stdio(server)
    finally:
        log.removeHandler(handler)
        server.cancel_all()
    if resident.state == "loading":
        log.info("the client exited while the model was loading")
    code = server.protocol.exit_code
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(ValueError, OSError):  # closed, or the client is gone
            stream.flush()
    os._exit(0 if code is None else code)
