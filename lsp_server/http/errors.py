"""What the HTTP endpoint answers when a request fails, and how its schema says so.

An unexpected exception is answered with a 500 here, inside the application: Starlette's
outermost error middleware would send the same body and then re-raise, which makes uvicorn
close the keep-alive connection, so the client's next request on it is reset. The OpenAPI
schema declares the error statuses the routes really answer (FastAPI would declare only
a 422, which this server never sends: its validation errors are 400s in OpenAI's shape).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lsp_server.http import schemas as oa

log = logging.getLogger("replit_lsp.http")


class CatchUnexpected:
    """Answers an exception the routes did not turn into an error with a 500, and keeps the
    connection open; one raised after the response started can only end that response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as error:
            log.exception("unexpected error on %s", scope.get("path"))
            if started:
                return
            message = f"internal error ({type(error).__name__}: {error})"
            body = oa.error_body(message.encode("utf-8", "replace").decode(), "server_error")
            await JSONResponse(body, status_code=500)(scope, receive, send)


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    """OpenAI's error shape, which every error response of this server has."""

    error: ErrorDetail


_MEANINGS = {
    400: "The request is invalid; `error.param` names the field.",
    401: "An API key is configured and the request does not carry it.",
    404: "The model named is not the one this server serves.",
    413: "The request body is over the size limit.",
    429: "Every generation slot is busy and the queue is full; retry after `Retry-After`.",
    499: "The client went away before the answer was ready (never seen by a client).",
    500: "An unexpected server error.",
    503: "The model is still loading, or failed to load; retry after `Retry-After`.",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses` of a route that may answer these error statuses."""
    return {status: {"model": ErrorBody, "description": _MEANINGS[status]} for status in statuses}


def generation_responses() -> dict[int | str, dict[str, Any]]:
    """The `responses` of a completion route: JSON, or server-sent events with `stream`."""
    streamed = {"text/event-stream": {"schema": {"type": "string"}}}
    ok = {"description": 'The completion; with `"stream": true`, its events.', "content": streamed}
    return {200: ok, **error_responses(400, 401, 404, 413, 429, 503)}


def without_unsent_statuses(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """The app's OpenAPI generator, minus the 422 responses FastAPI adds to every route
    with parameters: validation errors here are answered with 400."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    operation.get("responses", {}).pop("422", None)
            for name in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(name, None)
            app.openapi_schema = schema
        return app.openapi_schema

    return openapi
