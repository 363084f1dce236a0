"""What every HTTP request passes through before a route: the body size limit, the API key,
and OpenAI-shaped error bodies for malformed requests."""

from __future__ import annotations

import hmac

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lsp_server.http import schemas as oa


def error_response(error: oa.ApiError) -> JSONResponse:
    body = oa.error_body(error.message, error.type, error.param, error.code)
    return JSONResponse(body, status_code=error.status, headers=error.headers)


class BodyLimit:
    """Answers 413 for a request body over `limit` bytes, declared or streamed."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = oa.ApiError(
            413,
            f"the request body is larger than {self.limit} bytes",
            code="request_too_large",
        )
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.limit:
            await error_response(too_large)(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left before sending its body
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                await error_response(too_large)(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        body: Message | None = {
            "type": "http.request",
            "body": b"".join(chunks),
            "more_body": False,
        }

        async def replay() -> Message:
            nonlocal body
            if body is not None:
                message, body = body, None
                return message
            return await receive()

        await self.app(scope, replay, send)


class RequireApiKey:
    """With a key configured, every /v1 request must carry `Authorization: Bearer <key>`."""

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self.expected = f"Bearer {api_key}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1"):
            given = dict(scope["headers"]).get(b"authorization")
            if given is None or not hmac.compare_digest(given, self.expected):
                message = (
                    "Incorrect API key provided."
                    if given
                    else "You didn't provide an API key: send it as 'Authorization: Bearer KEY'."
                )
                error = oa.ApiError(401, message, code="invalid_api_key")
                await error_response(error)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _is_union_tag(part: object) -> bool:
    """Pydantic names a union's alternative in the error location: `str`, `list[int]`."""
    return part == "body" or (isinstance(part, str) and (part in {"str", "int"} or "[" in part))


def validation_error(error: RequestValidationError) -> oa.ApiError:
    """The first problem of a request body, named by its field, as OpenAI reports it."""
    # Of the alternatives of a union (content: string or parts), the deepest error says most.
    first = max(error.errors() or [{}], key=lambda e: len(e.get("loc", ())))
    location = [str(part) for part in first.get("loc", ()) if not _is_union_tag(part)]
    param = ".".join(location) or None
    if first.get("type") == "json_invalid":
        detail = first.get("ctx", {}).get("error", "")
        return oa.ApiError(400, f"The request body is not valid JSON ({detail}).")
    if param is None:
        return oa.ApiError(
            400, "The request body must be a JSON object, sent as Content-Type: application/json."
        )
    return oa.ApiError(400, f"{param}: {first.get('msg', 'invalid value')}", param=param)
