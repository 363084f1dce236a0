"""The OpenAI-compatible HTTP endpoint, served by uvicorn from the process's one resident model.

The model runs in worker threads, never on the event loop, so health checks, new requests and
client disconnects are handled while tokens are being generated. Active generations are
bounded by the engine's KV cache slots, and the requests beyond them wait in a bounded FIFO
queue: past that, clients get 429 at once instead of piling up. The server may run on its own
(the main thread owns it) or beside the language server (a thread with its own event loop, no
signal handlers, nothing written to stdout, which belongs to the language server).
"""

from __future__ import annotations

import asyncio
import collections
import hmac
import json
import logging
import os
import socket
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lsp_server import openai_schema as oa
from lsp_server.chat_prompt import chat_prompt
from lsp_server.resident import ResidentModel
from model.engine import Engine
from model.sampling import SamplingParams

log = logging.getLogger("replit_lsp.http")

DEFAULT_MAX_QUEUE = 16
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
# How long a request waits for a model that is still loading before it gets 503.
DEFAULT_LOAD_TIMEOUT = 300.0


# ---------------------------------------------------------------------------- stop strings


class StopMatcher:
    """Cuts generated text before the first stop string, even one split across tokens.

    Text that could be the beginning of a stop string is held back until the next piece shows
    whether it is one, so no part of a stop string ever reaches the client.
    """

    def __init__(self, stops: list[str]) -> None:
        self._stops = stops
        self._pending = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """The text that is safe to send now, and whether a stop string was reached."""
        self._pending += text
        cut = min((i for s in self._stops if (i := self._pending.find(s)) >= 0), default=-1)
        if cut >= 0:
            out, self._pending = self._pending[:cut], ""
            return out, True
        hold = self._held_length()
        out = self._pending[: len(self._pending) - hold]
        self._pending = self._pending[len(self._pending) - hold :]
        return out, False

    def _held_length(self) -> int:
        """The longest end of the pending text that a stop string starts with."""
        longest = max((len(s) for s in self._stops), default=1)
        for length in range(min(len(self._pending), longest - 1), 0, -1):
            tail = self._pending[-length:]
            if any(s.startswith(tail) for s in self._stops):
                return length
        return 0

    def flush(self) -> str:
        out, self._pending = self._pending, ""
        return out


# ----------------------------------------------------------------------------- admission


class QueueFull(Exception):
    pass


class AdmissionGate:
    """At most `capacity` generations run; up to `max_queue` more wait their turn, FIFO.

    Lives on the event loop; the generation threads hand their place back through
    `loop.call_soon_threadsafe(gate.release)`.
    """

    def __init__(self, capacity: int, max_queue: int) -> None:
        self.capacity = capacity
        self.max_queue = max_queue
        self.active = 0
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def queued(self) -> int:
        return len(self._waiting)

    def reserve(self) -> asyncio.Future[None]:
        """A future that resolves when it is this request's turn; QueueFull if none is left."""
        ticket: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.active < self.capacity and not self._waiting:
            self.active += 1
            ticket.set_result(None)
        elif len(self._waiting) >= self.max_queue:
            raise QueueFull
        else:
            self._waiting.append(ticket)
        return ticket

    def release(self) -> None:
        """Hands a finished generation's place to the first waiter still waiting."""
        while self._waiting:
            ticket = self._waiting.popleft()
            if not ticket.done():
                ticket.set_result(None)
                return
        self.active -= 1

    def abandon(self, ticket: asyncio.Future[None]) -> None:
        """For a request that leaves before its generation started."""
        if ticket.done() and not ticket.cancelled():
            self.release()
            return
        ticket.cancel()
        if ticket in self._waiting:
            self._waiting.remove(ticket)


# ------------------------------------------------------------------------ generation bridge


@dataclass(frozen=True)
class Delta:
    text: str


@dataclass(frozen=True)
class Done:
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Failed:
    error: BaseException


Event = Delta | Done | Failed


@dataclass(frozen=True)
class Job:
    prompt_ids: list[int]
    params: SamplingParams
    stops: list[str]


def produce(
    engine: Engine, job: Job, cancel: threading.Event, emit: Callable[[Event], None]
) -> int:
    """Runs one generation in the calling (worker) thread, emitting text as it becomes final;
    returns how many tokens it generated.

    Leaving the `with` block closes the generation, which frees its KV cache slot: at a stop
    string at once, and for a vanished client at the next token, when `cancel` is polled.
    """
    generated = 0
    decoder = engine.tokenizer.stream()
    matcher = StopMatcher(job.stops)
    try:
        with engine.generate(job.prompt_ids, job.params, cancelled=cancel.is_set) as generation:
            stopped = False
            for token in generation:
                text, stopped = matcher.feed(decoder.push(token))
                if text:
                    emit(Delta(text))
                if stopped:
                    break
            if not stopped:
                text, stopped = matcher.feed(decoder.flush())
                text += "" if stopped else matcher.flush()
                if text:
                    emit(Delta(text))
            finish = "stop" if stopped else generation.finish_reason or "length"
            generated = len(generation.tokens)
            emit(Done(finish, generation.prompt_tokens, generated))
    except Exception as error:
        log.exception("generation failed")
        emit(Failed(error))
    return generated


@dataclass
class Counters:
    served: int = 0
    rejected: int = 0
    disconnected: int = 0
    generated_tokens: int = 0


@dataclass
class Service:
    """What the routes share: the resident model, the defaults and the admission state."""

    resident: ResidentModel
    defaults: SamplingParams
    max_queue: int
    load_timeout: float
    counters: Counters = field(default_factory=Counters)
    gate: AdmissionGate | None = None
    loaded: asyncio.Future[Engine | None] | None = None

    async def engine(self) -> Engine:
        """The ready engine, waiting (bounded) while it loads; 503 if it is not there."""
        engine = self.resident.engine
        if engine is None and self.resident.error is None and self.loaded is not None:
            with suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.loaded), self.load_timeout)
            engine = self.resident.engine
        if engine is None:
            if self.resident.error is not None:
                message = f"the model failed to load: {self.resident.error}"
            else:
                message = f"the model is still loading ({self.resident.last_message})"
            raise oa.ApiError(
                503, message, type="server_error", code="model_not_ready", headers=RETRY
            )
        return engine

    def admission(self, engine: Engine) -> AdmissionGate:
        if self.gate is None:
            self.gate = AdmissionGate(engine.options.max_cache_batch_size, self.max_queue)
        return self.gate


class GenerationStream:
    """One request's generation: its place in line, its worker thread and its events.

    The place is reserved on construction (429 when there is none); the turn is awaited when
    the events are iterated, so a client that leaves while queued gives its place up. `close`
    must be called however the request ends: it frees the place or stops the generation.
    """

    def __init__(self, service: Service, engine: Engine, job: Job) -> None:
        self._service = service
        self._engine = engine
        self._job = job
        self._gate = gate = service.admission(engine)
        try:
            self._ticket = gate.reserve()
        except QueueFull:
            service.counters.rejected += 1
            raise oa.ApiError(
                429,
                f"the server is busy: {gate.active} generations are running and "
                f"{gate.queued} are queued (--max-queue {gate.max_queue}); retry later",
                type="requests",
                code="rate_limit_exceeded",
                headers=RETRY,
            ) from None
        self._cancel = threading.Event()
        self._queue: asyncio.Queue[Event] = asyncio.Queue()
        self._started = self._finished = self._closed = False

    async def events(self) -> AsyncIterator[Event]:
        await self._ticket
        self._started = True
        loop = asyncio.get_running_loop()
        threading.Thread(
            target=self._work, args=(loop,), name="http-generation", daemon=True
        ).start()
        while True:
            event = await self._queue.get()
            self._finished = not isinstance(event, Delta)
            yield event
            if self._finished:
                return

    def _work(self, loop: asyncio.AbstractEventLoop) -> None:
        def emit(event: Event) -> None:
            try:
                loop.call_soon_threadsafe(self._queue.put_nowait, event)
            except RuntimeError:  # the loop is gone: nobody is listening any more
                self._cancel.set()

        generated = 0
        try:
            generated = produce(self._engine, self._job, self._cancel, emit)
        finally:
            with suppress(RuntimeError):  # the loop is gone, and the gate with it
                loop.call_soon_threadsafe(self._worker_done, generated)

    def _worker_done(self, generated: int) -> None:
        self._service.counters.generated_tokens += generated
        self._gate.release()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        counters = self._service.counters
        if not self._started:
            self._gate.abandon(self._ticket)
            counters.disconnected += 1
        elif not self._finished:
            self._cancel.set()
            counters.disconnected += 1
        else:
            counters.served += 1


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


RETRY = {"Retry-After": "1"}


# ------------------------------------------------------------------------- request → job


def served_model_name(model_dir: Path) -> str:
    """A Hugging Face cache snapshot is named by its repo id, any other directory by its name."""
    parts = Path(model_dir).parts
    for index, part in enumerate(parts[:-2]):
        if part.startswith("models--") and parts[index + 1] == "snapshots":
            return part[len("models--") :].replace("--", "/")
    return Path(model_dir).name


def check_model(request: oa.SamplingRequest, served: str) -> None:
    if request.model is not None and request.model != served:
        raise oa.ApiError(
            404,
            f"The model `{request.model}` does not exist; this server serves `{served}`.",
            param="model",
            code="model_not_found",
        )


def check_single_choice(request: oa.SamplingRequest) -> None:
    if request.n not in (None, 1):
        raise oa.ApiError(400, f"n must be 1 (got {request.n}): one choice per request", param="n")


def make_job(
    engine: Engine,
    defaults: SamplingParams,
    request: oa.SamplingRequest,
    prompt_ids: list[int],
    max_tokens: int | None,
    prompt_param: str,
) -> Job:
    """Checks the prompt against the context and picks the sampling parameters.

    Fields the request leaves out take the command line's defaults. `temperature` > 0 without
    `top_k` samples from the whole vocabulary, as in OpenAI's API, unless `--top-k` bounds it;
    `temperature` 0 is greedy.
    """
    context = engine.max_length
    if not prompt_ids:
        raise oa.ApiError(
            400, "the prompt is empty: there is nothing to continue", param=prompt_param
        )
    if len(prompt_ids) >= context:
        raise oa.ApiError(
            400,
            f"This model's maximum context length is {context} tokens. However, your prompt has "
            f"{len(prompt_ids)} tokens, and at least one token must be left for the completion.",
            param=prompt_param,
            code="context_length_exceeded",
        )
    if max_tokens is not None and max_tokens >= context:
        raise oa.ApiError(
            400,
            f"max_tokens is {max_tokens}, but this model's maximum context length is {context} "
            "tokens (prompt and completion together)",
            param="max_tokens",
            code="context_length_exceeded",
        )
    room = context - len(prompt_ids)
    wanted = max_tokens or (defaults.max_new_tokens if defaults.max_new_tokens > 0 else room)
    temperature = defaults.temperature if request.temperature is None else request.temperature
    if request.top_k is not None:
        top_k = request.top_k
    elif request.temperature and defaults.top_k == 1:
        top_k = engine.tokenizer.vocab_size
    else:
        top_k = defaults.top_k
    try:
        params = SamplingParams(
            max_new_tokens=min(wanted, room),
            top_k=top_k,
            temperature=temperature,
            top_p=defaults.top_p if request.top_p is None else request.top_p,
            seed=defaults.seed if request.seed is None else request.seed,
        )
    except ValueError as error:
        raise oa.ApiError(400, str(error)) from None
    return Job(prompt_ids, params, request.stop_strings())


def completion_prompt_ids(engine: Engine, request: oa.CompletionRequest) -> list[int]:
    """A string, a list holding one string, or token ids, as OpenAI's `prompt` allows."""
    for name, value, unsupported in (
        ("echo", request.echo, request.echo),
        ("suffix", request.suffix, request.suffix is not None),
        ("best_of", request.best_of, request.best_of not in (None, 1)),
        ("logprobs", request.logprobs, request.logprobs is not None),
    ):
        if unsupported:
            raise oa.ApiError(400, f"{name}={value!r} is not supported by this server", param=name)
    prompt = request.prompt
    if isinstance(prompt, str):
        return engine.tokenizer.encode(prompt)
    if prompt and all(isinstance(item, str) for item in prompt):
        if len(prompt) != 1:
            raise oa.ApiError(400, "prompt: give one prompt per request", param="prompt")
        return engine.tokenizer.encode(prompt[0])
    ids = [int(item) for item in prompt]
    if any(not 0 <= i < engine.tokenizer.vocab_size for i in ids):
        raise oa.ApiError(400, "prompt: a token id is outside the vocabulary", param="prompt")
    return ids


# ---------------------------------------------------------------------------- responses


def sse(payload: dict[str, Any] | str) -> ServerSentEvent:
    data = (
        payload
        if isinstance(payload, str)
        else json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    )
    return ServerSentEvent(data=data)


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


async def chat_stream(
    events: AsyncIterator[Event], id: str, model: str, include_usage: bool
) -> AsyncIterator[ServerSentEvent]:
    def chunk(delta: dict[str, str], finish: str | None) -> dict[str, Any]:
        body = oa.chat_chunk(id, model, delta, finish)
        return {**body, "usage": None} if include_usage else body

    yield sse(chunk({"role": "assistant", "content": ""}, None))
    async for event in events:
        if isinstance(event, Failed):
            yield stream_error(event.error)
            return
        if isinstance(event, Delta):
            yield sse(chunk({"content": event.text}, None))
            continue
        yield sse(chunk({}, event.finish_reason))
        if include_usage:
            usage = oa.usage(event.prompt_tokens, event.completion_tokens)
            yield sse(oa.usage_chunk("chat.completion.chunk", id, model, usage))
    yield sse("[DONE]")


async def text_stream(
    events: AsyncIterator[Event], id: str, model: str, include_usage: bool
) -> AsyncIterator[ServerSentEvent]:
    def chunk(text: str, finish: str | None) -> dict[str, Any]:
        body = oa.text_chunk(id, model, text, finish)
        return {**body, "usage": None} if include_usage else body

    async for event in events:
        if isinstance(event, Failed):
            yield stream_error(event.error)
            return
        if isinstance(event, Delta):
            yield sse(chunk(event.text, None))
            continue
        yield sse(chunk("", event.finish_reason))
        if include_usage:
            usage = oa.usage(event.prompt_tokens, event.completion_tokens)
            yield sse(oa.usage_chunk("text_completion", id, model, usage))
    yield sse("[DONE]")


async def respond(
    stream: GenerationStream,
    request: Request,
    body: oa.SamplingRequest,
    id: str,
    model: str,
    to_events: Callable[..., AsyncIterator[ServerSentEvent]],
    to_body: Callable[..., dict[str, Any]],
) -> Response | dict[str, Any]:
    """Streams the generation as server-sent events, or waits for it and answers one body;
    the chat and text endpoints differ only in the shapes they put it in."""
    if body.stream:
        events = to_events(stream.events(), id, model, body.include_usage())
        return GenerationResponse(events, stream)
    result = await collect(stream, request)
    if result is None:
        return Response(status_code=499)
    text, done = result
    usage = oa.usage(done.prompt_tokens, done.completion_tokens)
    return to_body(id, model, text, done.finish_reason, usage)


def error_response(error: oa.ApiError) -> JSONResponse:
    body = oa.error_body(error.message, error.type, error.param, error.code)
    return JSONResponse(body, status_code=error.status, headers=error.headers)


# -------------------------------------------------------------------------- middleware


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


# ---------------------------------------------------------------------------------- app


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


def create_app(service: Service, api_key: str | None, max_body_bytes: int) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.resident.start()
        service.loaded = asyncio.get_running_loop().run_in_executor(None, service.resident.wait)
        yield

    # /openapi.json describes the API; the interactive pages would load scripts from a CDN.
    app = FastAPI(title="replit-lsp", lifespan=lifespan, docs_url=None, redoc_url=None)

    @app.exception_handler(oa.ApiError)
    async def on_api_error(request: Request, error: oa.ApiError) -> JSONResponse:
        return error_response(error)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(validation_error(error))

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        kind = "invalid_request_error" if error.status_code < 500 else "server_error"
        return error_response(oa.ApiError(error.status_code, str(error.detail), type=kind))

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url.path)
        message = f"internal error ({type(error).__name__}: {error})"
        return error_response(oa.ApiError(500, message, type="server_error"))

    @app.get("/health")
    async def health() -> JSONResponse:
        resident = service.resident
        engine = resident.engine
        body: dict[str, Any] = {
            "state": resident.state,
            "message": resident.last_message,
            "stage": resident.progress.stage,
            "percent": resident.progress.percent,
        }
        body["pid"] = os.getpid()
        body["loads"] = service.resident.loads
        body["suggestions"] = resident.feedback.snapshot()
        if engine is None:
            return JSONResponse(body, status_code=503, headers=RETRY)
        gate = service.admission(engine)
        body |= {
            "model": served_model_name(engine.options.model_dir),
            "engine_id": id(engine),
            "compile_source": engine.compile_source,
            "load_seconds": round(engine.load_seconds, 3),
            "active": gate.active,
            "queued": gate.queued,
            "max_queue": gate.max_queue,
            "served": service.counters.served,
            "rejected": service.counters.rejected,
            "disconnected": service.counters.disconnected,
            "generated_tokens": service.counters.generated_tokens,
        }
        return JSONResponse(body)

    created = oa.now()

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        engine = await service.engine()
        name = served_model_name(engine.options.model_dir)
        return {"object": "list", "data": [oa.model_card(name, created)]}

    @app.get("/v1/models/{model:path}")
    async def get_model(model: str) -> dict[str, Any]:
        engine = await service.engine()
        name = served_model_name(engine.options.model_dir)
        check_model(oa.SamplingRequest(model=model), name)
        return oa.model_card(name, created)

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(
        body: oa.ChatCompletionRequest, request: Request
    ) -> Response | dict[str, Any]:
        check_single_choice(body)
        engine = await service.engine()
        name = served_model_name(engine.options.model_dir)
        check_model(body, name)
        prompt_ids = engine.tokenizer.encode(chat_prompt(body.messages))
        max_tokens = body.max_completion_tokens or body.max_tokens
        job = make_job(engine, service.defaults, body, prompt_ids, max_tokens, "messages")
        stream = GenerationStream(service, engine, job)
        return await respond(
            stream, request, body, oa.new_id("chatcmpl"), name, chat_stream, oa.chat_completion
        )

    @app.post("/v1/completions", response_model=None)
    async def completions(
        body: oa.CompletionRequest, request: Request
    ) -> Response | dict[str, Any]:
        check_single_choice(body)
        engine = await service.engine()
        name = served_model_name(engine.options.model_dir)
        check_model(body, name)
        prompt_ids = completion_prompt_ids(engine, body)
        job = make_job(engine, service.defaults, body, prompt_ids, body.max_tokens, "prompt")
        stream = GenerationStream(service, engine, job)
        return await respond(
            stream, request, body, oa.new_id("cmpl"), name, text_stream, oa.text_completion
        )

    app.add_middleware(BodyLimit, limit=max_body_bytes)
    if api_key:
        app.add_middleware(RequireApiKey, api_key=api_key)
    return app


# ------------------------------------------------------------------------------- server


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
        defaults: SamplingParams,
        *,
        host: str = "127.0.0.1",
        port: int = 8000,
        api_key: str | None = None,
        max_queue: int = DEFAULT_MAX_QUEUE,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        load_timeout: float = DEFAULT_LOAD_TIMEOUT,
    ) -> None:
        if max_queue < 0:
            raise ValueError(f"--max-queue must be 0 or more, got {max_queue}")
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
