"""The OpenAI-compatible routes: each translates its request into a generation job through one
shared prelude, and its result back through the endpoint's response shapes."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from lsp_server.generation.errors import Busy, GenerationError, Refused
from lsp_server.generation.protocol import TextGenerator
from lsp_server.http import schemas as oa
from lsp_server.http.chat_prompt import chat_prompt
from lsp_server.http.errors import (
    CatchUnexpected,
    error_responses,
    generation_responses,
    without_unsent_statuses,
)
from lsp_server.http.middleware import BodyLimit, RequireApiKey, error_response, validation_error
from lsp_server.http.serving import (
    RETRY,
    GenerationStream,
    Service,
    check_model,
    check_single_choice,
    completion_prompt_ids,
    make_job,
)
from lsp_server.http.streaming import CHAT, TEXT, respond


def create_app(service: Service, api_key: str | None, max_body_bytes: int) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.resident.start()
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

    @app.exception_handler(GenerationError)
    async def on_generation_error(request: Request, error: GenerationError) -> JSONResponse:
        """A completion the generator could not give (a proxy's backend that failed): its
        client may retry a busy one after the time asked, not the rest."""
        return error_response(api_error(error))

    async def served(body: oa.SamplingRequest) -> tuple[TextGenerator, str]:
        """What every generation route checks first: one choice, a ready model, its name."""
        check_single_choice(body)
        engine = await service.engine()
        check_model(body, engine.model_name)
        return engine, engine.model_name

    @app.get("/health", responses={503: {"description": "The model is not ready (same body)."}})
    async def health() -> JSONResponse:
        resident = service.resident
        engine = resident.engine
        body = resident.status().fields()
        if engine is None:
            return JSONResponse(body, status_code=503, headers=RETRY)
        gate = service.admission(engine)
        counters = service.counters
        body |= {
            "model": engine.model_name,
            "compile_source": engine.compile_source,
            "weights_source": engine.weights_source,
            "load_seconds": round(engine.load_seconds, 3),
            "active": gate.active,
            "queued": gate.queued,
            "max_queue": gate.max_queue,
            "served": counters.served,
            "rejected": counters.rejected,
            "disconnected": counters.disconnected,
            "generated_tokens": counters.generated_tokens,
        }
        # A proxy whose backend is down is not a healthy server.
        return JSONResponse(body, status_code=200 if resident.state == "ready" else 503)

    created = oa.now()

    @app.get("/v1/models", responses=error_responses(401, 503))
    async def list_models() -> dict[str, Any]:
        engine = await service.engine()
        return {"object": "list", "data": [oa.model_card(engine.model_name, created)]}

    @app.get("/v1/models/{model:path}", responses=error_responses(401, 404, 503))
    async def get_model(model: str) -> dict[str, Any]:
        engine = await service.engine()
        check_model(oa.SamplingRequest(model=model), engine.model_name)
        return oa.model_card(engine.model_name, created)

    @app.post("/v1/chat/completions", response_model=None, responses=generation_responses())
    async def chat_completions(
        body: oa.ChatCompletionRequest, request: Request
    ) -> Response | dict[str, Any]:
        engine, name = await served(body)
        prompt_ids = engine.tokenizer.encode(chat_prompt(body.messages))
        max_tokens = body.max_completion_tokens or body.max_tokens
        job = make_job(engine, service.defaults, body, prompt_ids, max_tokens, "messages")
        return await respond(CHAT, GenerationStream(service, engine, job), request, body, name)

    @app.post("/v1/completions", response_model=None, responses=generation_responses())
    async def completions(
        body: oa.CompletionRequest, request: Request
    ) -> Response | dict[str, Any]:
        engine, name = await served(body)
        prompt_ids = completion_prompt_ids(engine, body)
        job = make_job(engine, service.defaults, body, prompt_ids, body.max_tokens, "prompt")
        return await respond(TEXT, GenerationStream(service, engine, job), request, body, name)

    app.add_middleware(BodyLimit, limit=max_body_bytes)
    if api_key:
        app.add_middleware(RequireApiKey, api_key=api_key)
    app.add_middleware(CatchUnexpected)
    app.openapi = without_unsent_statuses(app)  # type: ignore[method-assign]
    return app


def api_error(error: GenerationError) -> oa.ApiError:
    """The OpenAI error answer for a generator's error: 429 with Retry-After for a busy one,
    400 for a refused request, 502 for a generator that is unavailable."""
    if isinstance(error, Busy):
        retry = {"Retry-After": str(math.ceil(error.retry_after))}
        return oa.ApiError(
            429, error.message, type="requests", code="rate_limit_exceeded", headers=retry
        )
    if isinstance(error, Refused):
        return oa.ApiError(400, error.message, type="invalid_request_error")
    return oa.ApiError(502, error.message, type="server_error")
