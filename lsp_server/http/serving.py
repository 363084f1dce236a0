"""The engine-facing side of the HTTP endpoint: requests become generation jobs, and each job
runs on a worker thread whose text reaches the event loop as events.

The model never runs on the event loop, so health checks, new requests and client
disconnects are handled while tokens are being generated.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import suppress
from dataclasses import dataclass, field

from lsp_server.generation.protocol import TextGenerator
from lsp_server.generation.sampling import (
    WHOLE_VOCABULARY,
    GenerationParams,
    TopK,
)
from lsp_server.generation.stops import StopStrings
from lsp_server.http import schemas as oa
from lsp_server.http.admission import AdmissionGate, QueueFull
from lsp_server.options import flag
from lsp_server.resident import ResidentModel

log = logging.getLogger("replit_lsp.http")

RETRY = {"Retry-After": "1"}


# ------------------------------------------------------------------------- request → job


@dataclass(frozen=True)
class GenerationJob:
    """What one HTTP request asks the engine to generate."""

    prompt_ids: list[int]
    params: GenerationParams
    stops: list[str]


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
    engine: TextGenerator,
    defaults: GenerationParams,
    request: oa.SamplingRequest,
    prompt_ids: list[int],
    max_tokens: int | None,
    prompt_param: str,
) -> GenerationJob:
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
    temperature = defaults.temperature if request.temperature is None else request.temperature
    top_k: TopK
    if request.top_k:
        top_k = request.top_k
    elif request.top_k == 0 or (request.temperature and defaults.top_k == 1):
        top_k = WHOLE_VOCABULARY
    else:
        top_k = defaults.top_k
    try:
        params = GenerationParams(
            max_new_tokens=max_tokens or defaults.max_new_tokens,
            top_k=top_k,
            temperature=temperature,
            top_p=defaults.top_p if request.top_p is None else request.top_p,
            seed=defaults.seed if request.seed is None else request.seed,
        )
    except ValueError as error:
        raise oa.ApiError(400, str(error)) from None
    return GenerationJob(prompt_ids, params, request.stop_strings())


def completion_prompt_ids(engine: TextGenerator, request: oa.CompletionRequest) -> list[int]:
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


# ---------------------------------------------------------------------------- events


@dataclass(frozen=True)
class Delta:
    text: str


@dataclass(frozen=True)
class Done:
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int  # prompt tokens whose K/V came from the cache


@dataclass(frozen=True)
class Failed:
    error: BaseException


Event = Delta | Done | Failed


def produce(
    engine: TextGenerator,
    job: GenerationJob,
    cancel: threading.Event,
    emit: Callable[[Event], None],
) -> int:
    """Runs one generation in the calling (worker) thread, emitting text as it becomes final;
    returns how many tokens it generated.

    Leaving the stream frees its KV cache slot: at a stop string at once, and for a vanished
    client at the next token, when `cancel` is polled.
    """
    try:
        stop = StopStrings(job.stops)
        with engine.stream_text(
            job.prompt_ids, job.params, cancelled=cancel.is_set, stop=stop
        ) as stream:
            for text in stream:
                emit(Delta(text))
    except Exception as error:
        log.exception("generation failed")
        emit(Failed(error))
        return 0
    stats = stream.stats
    assert stats is not None
    emit(
        Done(stats.finish_reason, stats.prompt_tokens, stats.generated_tokens, stats.reused_tokens)
    )
    return stats.generated_tokens


# --------------------------------------------------------------------------- service


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
    defaults: GenerationParams
    max_queue: int
    load_timeout: float
    counters: Counters = field(default_factory=Counters)
    gate: AdmissionGate | None = None

    async def engine(self) -> TextGenerator:
        """The ready engine, waiting (bounded) while it loads; 503 if it is not there."""
        engine = await self.resident.ready(self.load_timeout)
        if engine is None:
            if self.resident.error is not None:
                message = f"the model failed to load: {self.resident.error_message}"
            else:
                message = f"the model is still loading ({self.resident.last_message})"
            raise oa.ApiError(
                503, message, type="server_error", code="model_not_ready", headers=RETRY
            )
        return engine

    def admission(self, engine: TextGenerator) -> AdmissionGate:
        if self.gate is None:
            self.gate = AdmissionGate(engine.slots, self.max_queue)
        return self.gate


class GenerationStream:
    """One request's generation: its place in line, its worker thread and its events.

    The place is reserved on construction (429 when there is none); the turn is awaited when
    the events are iterated, so a client that leaves while queued gives its place up. `close`
    must be called however the request ends: it frees the place or stops the generation.
    """

    def __init__(self, service: Service, engine: TextGenerator, job: GenerationJob) -> None:
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
                f"{gate.queued} are queued ({flag('max_queue')} {gate.max_queue}); retry later",
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
