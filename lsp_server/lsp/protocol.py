"""Where the language server meets pygls: error answers pygls would not send, and log records
forwarded to the editor."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.protocol import LanguageServerProtocol


class CompletionProtocol(LanguageServerProtocol):
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


class ClientLogHandler(logging.Handler):
    """Forwards log records to the client as `window/logMessage`, so that `--log-level DEBUG`
    shows per-request statistics in the editor's output panel."""

    LEVELS = (
        (logging.ERROR, types.MessageType.Error),
        (logging.WARNING, types.MessageType.Warning),
        (logging.INFO, types.MessageType.Info),
    )

    def __init__(self, tell: Callable[[types.MessageType, str], None]) -> None:
        super().__init__()
        self.tell = tell

    def emit(self, record: logging.LogRecord) -> None:
        kind = next((t for level, t in self.LEVELS if record.levelno >= level), None)
        self.tell(kind or types.MessageType.Log, self.format(record))
