"""The HTTP server's binding: uvicorn serving the app on a socket bound before it starts,
on the main thread or beside the language server.

Beside the language server it runs on a thread with its own event loop, no signal handlers
and nothing written to stdout, which belongs to the language server.
"""

from __future__ import annotations

import logging
import socket
import threading

import uvicorn

from lsp_server.generation.sampling import GenerationParams
from lsp_server.http.routes import create_app
from lsp_server.http.serving import Service
from lsp_server.options import flag, option_named
from lsp_server.resident import ResidentModel

log = logging.getLogger("replit_lsp.http")

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
# How long a request waits for a model that is still loading before it gets 503.
DEFAULT_LOAD_TIMEOUT = 300.0


def bind(host: str, port: int) -> socket.socket:
    """Binds before serving so that a port in use is one clear error, not a log line."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio turns Nagle's algorithm off only on sockets that say
    # so, and with it on, each streamed chunk waits ~40 ms for the previous one's ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    return sock


class HttpServer:
    """The OpenAI-compatible endpoint over the process's resident model."""

    def __init__(
        self,
        resident: ResidentModel,
        defaults: GenerationParams,
        *,
        host: str = option_named("host").default,
        port: int = option_named("http_port").default,
        api_key: str | None = None,
        max_queue: int = option_named("max_queue").default,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        load_timeout: float = DEFAULT_LOAD_TIMEOUT,
    ) -> None:
        if max_queue < 0:
            raise ValueError(f"{flag('max_queue')} must be 0 or more, got {max_queue}")
        self.host = host
        self.port = port
        self.service = Service(resident, defaults, max_queue, load_timeout)
        self.app = create_app(self.service, api_key, max_body_bytes)
        config = uvicorn.Config(
            self.app,
            log_config=None,  # keep the process's logging: stderr only
            lifespan="on",
            timeout_graceful_shutdown=5,
        )
        self._server = uvicorn.Server(config)

    def serve_forever(self) -> None:
        """Serves in the calling (main) thread until interrupted."""
        sock = bind(self.host, self.port)
        log.info("OpenAI-compatible endpoint on http://%s:%d/v1", self.host, self.port)
        self._server.run(sockets=[sock])

    def start_in_background(self) -> None:
        """Serves from a daemon thread with its own event loop; returns once listening."""
        sock = bind(self.host, self.port)
        thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="http-server", daemon=True
        )
        thread.start()
        while not self._server.started and thread.is_alive():
            thread.join(0.05)
        if not self._server.started:
            raise OSError(f"the HTTP server on {self.host}:{self.port} failed to start")
        log.info("OpenAI-compatible endpoint on http://%s:%d/v1", self.host, self.port)
