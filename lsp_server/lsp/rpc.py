"""The JSON-RPC and LSP rules that pygls leaves to the server.

pygls answers a few client mistakes with an internal error (-32603) or not at all: a request
before `initialize` reaches the handlers before there is a workspace, requests after
`shutdown` are dropped without an answer, a request without `params` (which JSON-RPC allows)
or with a `method` that is not a string fails inside its deserializer, and `exit` ends the
process with status 0 whether or not `shutdown` came first. This protocol answers each of
them as the specifications say, and keeps the open documents itself (see `documents`).
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from typing import Any

from lsprotocol import types
from pygls.exceptions import (
    JsonRpcException,
    JsonRpcInternalError,
    JsonRpcInvalidParams,
    JsonRpcInvalidRequest,
    JsonRpcParseError,
    JsonRpcServerNotInitialized,
)
from pygls.protocol import LanguageServerProtocol, lsp_method

from lsp_server.lsp.documents import Document, Documents

log = logging.getLogger("replit_lsp.lsp")

# What a client may send before `initialize` has been answered, and after `shutdown`.
_ALWAYS_ALLOWED = {types.EXIT}


def _request_id(data: dict[str, Any]) -> int | str | None:
    msg_id = data.get("id")
    return msg_id if isinstance(msg_id, int | str) and not isinstance(msg_id, bool) else None


class ServerProtocol(LanguageServerProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.documents = Documents()
        self.closed: Document | None = None  # the document the last didClose closed
        self.initialize_received = False
        # The process's exit status once the client has sent `exit`: 0 after `shutdown`, else 1.
        self.exit_code: int | None = None

    @property
    def encoding(self) -> str:
        """The negotiated position encoding's name (UTF-16 before negotiation)."""
        negotiated = self._workspace.position_encoding if self._workspace else None
        return str(getattr(negotiated, "value", negotiated) or "utf-16")

    # --------------------------------------------------------------- messages

    def send_error(self, msg_id: int | str | None, error: JsonRpcException) -> None:
        """An error response; `id` null when the request's id could not be read."""
        body = {"code": error.code, "message": error.message}
        self._send_data({"jsonrpc": self.VERSION, "id": msg_id, "error": body})

    def parse_failed(self, error: Exception) -> None:
        """A message body that is not JSON: JSON-RPC answers it with -32700 and id null."""
        log.error("a message that is not valid JSON was refused: %s", error)
        self.send_error(None, JsonRpcParseError(f"Parse Error: {error}"))

    def structure_message(self, data: Any) -> Any:
        """Checks the envelope and the lifecycle before pygls reads the message, and answers
        a request whose params do not parse with an error instead of only logging it (the
        client would wait forever)."""
        if not isinstance(data, dict):
            raise self._refuse(None, "not a JSON-RPC message object")
        msg_id = _request_id(data)
        if data.get("jsonrpc") != self.VERSION:
            raise self._refuse(msg_id, 'not a JSON-RPC 2.0 message ("jsonrpc": "2.0")')
        if "method" in data:
            if not isinstance(data["method"], str):
                raise self._refuse(msg_id, "method must be a string")
            if (refusal := self._lifecycle_refusal(data["method"])) is not None:
                # A request gets its error; a notification is dropped.
                if "id" in data:
                    self.send_error(msg_id, refusal)
                raise refusal
            # JSON-RPC lets a request or notification leave out `params`.
            data.setdefault("params", None)
        elif "result" not in data and "error" not in data:
            raise self._refuse(msg_id, "neither a request, a notification nor a response")
        try:
            return super().structure_message(data)
        except JsonRpcException as error:
            if isinstance(error, JsonRpcInternalError):  # a value cattrs could not convert
                error = JsonRpcInvalidParams(f"Invalid Params for {data.get('method')!r}")
            if "method" in data and msg_id is not None:
                self._send_response(msg_id, error=error.to_response_error())
            raise error from None

    def _refuse(self, msg_id: int | str | None, reason: str) -> JsonRpcException:
        """Answers a message that is not a valid JSON-RPC message with -32600 (id null when
        it has none that can be read, as JSON-RPC says) and returns the error to raise."""
        error = JsonRpcInvalidRequest(f"Invalid Request: {reason}")
        log.error("refused a message: %s", reason)
        self.send_error(msg_id, error)
        return error

    def _lifecycle_refusal(self, method: str) -> JsonRpcException | None:
        """Why `method` may not be handled now: only `initialize` (and `exit`) before
        `initialize`, and only `exit` after `shutdown`, as the specification says."""
        if method in _ALWAYS_ALLOWED:
            return None
        if self._shutdown:
            return JsonRpcInvalidRequest(f"the server is shut down: {method} is refused")
        if method == types.INITIALIZE:
            if self.initialize_received:
                return JsonRpcInvalidRequest("initialize may only be sent once")
            self.initialize_received = True
            return None
        if not self.initialize_received:
            return JsonRpcServerNotInitialized(f"{method} before initialize")
        return None

    # -------------------------------------------------------------- lifecycle

    @lsp_method(types.EXIT)
    def lsp_exit(self, *args: Any) -> None:
        """Records the exit status; the serving loop stops reading and ends the process.
        (pygls raises SystemExit here, which its own loop swallows into status 0, after
        closing stdout under threads that may still write to it.)"""
        self.exit_code = 0 if self._shutdown else 1
        self._shutdown = True

    def cancel_pending(self) -> None:
        """Cancels every handler still running, as pygls does on `shutdown`, for when the
        event loop is about to close: a task the loop cancels itself would fail inside pygls's
        completion callback instead."""
        for future in list(self._request_futures.values()):
            future.cancel()
        self._request_futures.clear()

    # -------------------------------------------------------------- documents

    @lsp_method(types.TEXT_DOCUMENT_DID_OPEN)
    def lsp_text_document__did_open(
        self, params: types.DidOpenTextDocumentParams
    ) -> Generator[Any, Any, None]:
        self.documents.open(params.text_document)
        if (handler := self.fm.features.get(types.TEXT_DOCUMENT_DID_OPEN)) is not None:
            yield handler, (params,), None

    @lsp_method(types.TEXT_DOCUMENT_DID_CHANGE)
    def lsp_text_document__did_change(
        self, params: types.DidChangeTextDocumentParams
    ) -> Generator[Any, Any, None]:
        self.documents.change(params, self.encoding)
        if (handler := self.fm.features.get(types.TEXT_DOCUMENT_DID_CHANGE)) is not None:
            yield handler, (params,), None

    @lsp_method(types.TEXT_DOCUMENT_DID_CLOSE)
    def lsp_text_document__did_close(
        self, params: types.DidCloseTextDocumentParams
    ) -> Generator[Any, Any, None]:
        self.closed = self.documents.close(params.text_document.uri)
        if (handler := self.fm.features.get(types.TEXT_DOCUMENT_DID_CLOSE)) is not None:
            yield handler, (params,), None
