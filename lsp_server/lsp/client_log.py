"""Log records forwarded to the editor, so its output panel shows what the server logs."""

from __future__ import annotations

import logging
from collections.abc import Callable

from lsprotocol import types


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
