"""Shaping a generation's events into OpenAI responses: server-sent event chunks, or one body.

The chat and text endpoints differ only in the shapes their chunks and bodies take.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.types import Receive, Scope, Send

from lsp_server.http import schemas as oa
from lsp_server.http.serving import Delta, Done, Event, Failed, GenerationStream

log = logging.getLogger("replit_lsp.http")


def sse(payload: dict[str, Any] | str) -> ServerSentEvent:
    data = (
        payload
        if isinstance(payload, str)
        else json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    )
    return ServerSentEvent(data=data)


class GenerationResponse(EventSourceResponse):
    """An SSE response that closes its generation however the connection ends."""

    def __init__(self, content: AsyncIterator[ServerSentEvent], stream: GenerationStream) -> None:
        super().__init__(content, sep="\n")
        self._stream = stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._stream.close()


async def collect(stream: GenerationStream, request: Request) -> tuple[str, Done] | None:
    """The whole completion, or None when the client disconnects first (which stops it)."""

    async def consume() -> tuple[str, Done]:
        pieces: list[str] = []
        async for event in stream.events():
            if isinstance(event, Delta):
                pieces.append(event.text)
            elif isinstance(event, Done):
                return "".join(pieces), event
            else:
                raise event.error
        raise RuntimeError("the generation ended without a result")

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    result = asyncio.ensure_future(consume())
    watcher = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({result, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not result.done():
            result.cancel()
            await asyncio.gather(result, return_exceptions=True)
        stream.close()
    return result.result() if not result.cancelled() else None


def stream_error(error: BaseException) -> ServerSentEvent:
    log.error("stream failed: %s", error)
    return sse(oa.error_body(f"the generation failed: {error}", "server_error"))


@dataclass(frozen=True)
class Endpoint:
    """How one endpoint names its completions and shapes its chunks and bodies."""

    id_prefix: str
    chunk_object: str
    first_chunk: Callable[[str, str], dict[str, Any]] | None
    chunk: Callable[[str, str, str, str | None], dict[str, Any]]
    body: Callable[..., dict[str, Any]]


def _chat_chunk(id: str, model: str, text: str, finish: str | None) -> dict[str, Any]:
    return oa.chat_chunk(id, model, {"content": text} if text else {}, finish)


def _chat_role_chunk(id: str, model: str) -> dict[str, Any]:
    return oa.chat_chunk(id, model, {"role": "assistant", "content": ""}, None)


CHAT = Endpoint(
    "chatcmpl", "chat.completion.chunk", _chat_role_chunk, _chat_chunk, oa.chat_completion
)
TEXT = Endpoint("cmpl", "text_completion", None, oa.text_chunk, oa.text_completion)


async def event_stream(
    endpoint: Endpoint, events: AsyncIterator[Event], id: str, model: str, include_usage: bool
) -> AsyncIterator[ServerSentEvent]:
    def shaped(body: dict[str, Any]) -> ServerSentEvent:
        return sse({**body, "usage": None} if include_usage else body)

    if endpoint.first_chunk is not None:
        yield shaped(endpoint.first_chunk(id, model))
    async for event in events:
        if isinstance(event, Failed):
            yield stream_error(event.error)
            return
        if isinstance(event, Delta):
            yield shaped(endpoint.chunk(id, model, event.text, None))
            continue
        yield shaped(endpoint.chunk(id, model, "", event.finish_reason))
        if include_usage:
            usage = oa.usage(event.prompt_tokens, event.completion_tokens, event.cached_tokens)
            yield sse(oa.usage_chunk(endpoint.chunk_object, id, model, usage))
    yield sse("[DONE]")


async def respond(
    endpoint: Endpoint,
    stream: GenerationStream,
    request: Request,
    body: oa.SamplingRequest,
    model: str,
) -> Response | dict[str, Any]:
    """Streams the generation as server-sent events, or waits for it and answers one body."""
    id = oa.new_id(endpoint.id_prefix)
    if body.stream:
        events = event_stream(endpoint, stream.events(), id, model, body.include_usage())
        return GenerationResponse(events, stream)
    result = await collect(stream, request)
    if result is None:
        return Response(status_code=499)
    text, done = result
    usage = oa.usage(done.prompt_tokens, done.completion_tokens, done.cached_tokens)
    return endpoint.body(id, model, text, done.finish_reason, usage)
