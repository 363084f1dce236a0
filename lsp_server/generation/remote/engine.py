"""A remote OpenAI-compatible server as a `TextGenerator`.

The prompt the front doors build is sent as text to `/v1/completions` with `stream: true`,
and the streamed text goes through the same stop rules as the local engine's: the language
server's prompt building, completion rules, supersede and cancellation, and the HTTP endpoint
(then a proxy), run unchanged. Closing the stream early closes the connection, which is how
an OpenAI-compatible server learns to stop generating.

The engine composes the jobs its sub-modules do: the wire format (`wire.py`), the requests'
event loop thread (`transport.py`), the server's state (`health.py`), the tokenizer or its
stand-in (`character_budget.py`) and the counters (`counters.py`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx

from lsp_server.generation.backend import BackendControl, BackendListener, BackendStatus
from lsp_server.generation.errors import GenerationError, Unavailable
from lsp_server.generation.remote.character_budget import load_tokenizer
from lsp_server.generation.remote.completion import RemoteCompletion, RemoteEvent
from lsp_server.generation.remote.counters import CounterTally, RemoteCounters
from lsp_server.generation.remote.health import BackendHealth
from lsp_server.generation.remote.options import RemoteOptions, normalized_url
from lsp_server.generation.remote.transport import EventFeed, Transport
from lsp_server.generation.remote.wire import (
    CompletionEvents,
    MalformedStream,
    completion_body,
    error_detail,
    retry_seconds,
    served_models,
)
from lsp_server.generation.sampling import GenerationParams, new_token_budget
from lsp_server.generation.stops import NoStop, StopRule
from lsp_server.generation.stream import TextPieces, TextStream
from model.progress import READY, LoadProgress, ProgressCallback, ignore_progress

log = logging.getLogger("replit_lsp.remote")

Emit = Callable[[RemoteEvent], None]


class RemoteEngine:
    """Completions from a remote server, behind `TextGenerator`, and the server's state and
    settings as its `backend`.

    Building it never fails because the server is down: its state (`status`, `problem`) says
    so, listeners hear every change, and each request tries again, so a server that comes
    back is used without a restart.
    """

    def __init__(
        self, options: RemoteOptions, progress: ProgressCallback = ignore_progress
    ) -> None:
        started = time.perf_counter()
        self.options = dataclasses.replace(options, url=normalized_url(options.url))
        if options.max_length < 2:
            raise ValueError(f"--max-length must be at least 2, got {options.max_length}")
        if not options.read_timeout > 0:
            raise ValueError(f"--backend-timeout must be more than 0, got {options.read_timeout}")
        self.tokenizer = load_tokenizer(options.tokenizer_dir)
        self.max_length = options.max_length
        self.compile_source = f"remote {self.options.url}"
        self.weights_source = "remote"
        self._model = options.model
        self._extra_fields = dict(options.extra_fields)
        self._health = BackendHealth(self.options.url)
        self._tally = CounterTally()
        self._transport = Transport(
            options.connect_timeout, options.read_timeout, max_connections=options.slots + 1
        )
        self._transport.run(self._probe())
        self.load_seconds = time.perf_counter() - started
        progress(LoadProgress(READY, f"using the backend at {self.options.url}"))

    # ------------------------------------------------------- what front doors see

    @property
    def slots(self) -> int:
        return self.options.slots

    @property
    def counters(self) -> RemoteCounters:
        return self._tally.snapshot

    @property
    def model_name(self) -> str:
        """The remote's model: `--backend-model`, else the first it lists ('' until known)."""
        return self._model or ""

    @property
    def problem(self) -> str | None:
        return self._health.problem

    @property
    def backend(self) -> BackendControl:
        return self

    @property
    def url(self) -> str:
        return self.options.url

    @property
    def status(self) -> BackendStatus:
        return self._health.status

    def add_listener(self, listener: BackendListener) -> None:
        self._health.add_listener(listener)

    def reconfigure(self, url: str, model: str | None) -> None:
        """Points later completions at another server (an editor setting changed); the
        state follows from a fresh look at its models."""
        self.options = dataclasses.replace(self.options, url=normalized_url(url), model=model)
        self._model = model
        self.compile_source = f"remote {self.options.url}"
        self._transport.spawn(self._probe())

    def use_fields(self, fields: Mapping[str, Any]) -> None:
        self._extra_fields = {**self.options.extra_fields, **fields}

    def stream_text(
        self,
        prompt: Sequence[int],
        params: GenerationParams,
        *,
        cancelled: Callable[[], bool] = lambda: False,
        stop: StopRule | None = None,
        speculate: bool = True,
        draft_context: Sequence[int] = (),
    ) -> TextStream:
        """See `TextGenerator.stream_text`: the ids of `tokenizer` are sent as their text."""
        text, count = self.tokenizer.decode(list(prompt)), len(prompt)
        max_tokens = new_token_budget(params.max_new_tokens, count, self.max_length)
        if not text:
            raise ValueError("the prompt must contain at least one token")
        body = completion_body(
            text, max_tokens, params.within(self.tokenizer.vocab_size), self._extra_fields
        )

        def start() -> EventFeed[RemoteEvent]:
            self._health.admit()
            return self._transport.open(lambda emit: self._request(body, emit))

        def closed_early() -> None:
            self._tally.add(backend_closed_early=1)

        completion = RemoteCompletion(start, count, cancelled, closed_early)
        return TextStream(completion, TextPieces(), stop or NoStop())

    # ----------------------------------------------------------------- requests

    def prefill(self, prompt: Sequence[int], cancelled: Callable[[], bool]) -> None:
        """A remote server keeps its own cache, filled by its requests: nothing to do here."""
        return None

    def _headers(self) -> dict[str, str]:
        key = self.options.api_key
        return {"Authorization": f"Bearer {key}"} if key else {}

    def _unreachable(self, error: httpx.HTTPError, mid_stream: bool) -> Unavailable:
        url = self.options.url
        if isinstance(error, httpx.TimeoutException):
            what = "connect" if isinstance(error, httpx.ConnectTimeout) else "read"
            limit = getattr(self.options, f"{what}_timeout")
            message = f"the backend at {url} did not answer within {limit:g} s ({what} timeout)"
        elif mid_stream:
            message = f"the connection to the backend at {url} broke mid-completion ({error})"
        else:
            message = f"the backend at {url} is unreachable ({type(error).__name__}: {error})"
        return self._health.unreachable(message)

    def _answered_error(self, response: httpx.Response) -> GenerationError:
        retry = retry_seconds(response.headers.get("retry-after"))
        return self._health.answered_error(
            self.options.url, self._model, response.status_code, error_detail(response), retry
        )

    async def _probe(self) -> None:
        """Looks at the server's models: reachable, key accepted, model served."""
        url = self.options.url
        try:
            response = await self._transport.client.get(url + "/v1/models", headers=self._headers())
        except httpx.HTTPError as error:
            self._unreachable(error, mid_stream=False)
            return
        if response.status_code != 200:
            self._answered_error(response)
            return
        served = served_models(response)
        if self._model is None and served:
            self._model = served[0]
        if self._model is not None and served and self._model not in served:
            self._health.model_missing(url, self._model, served)
            return
        self._health.available(url, self._model)

    async def _request(self, body: dict[str, Any], emit: Emit) -> None:
        """Runs one request on the loop; every outcome but cancellation is emitted."""
        try:
            if self._model is None:
                await self._probe()
            if self._model is not None:
                body = {**body, "model": self._model}
            await self._send(body, emit)
        except GenerationError as error:
            self._tally.add(backend_failures=1)
            emit(error)
        except Exception as error:  # anything unforeseen still ends the request, not the loop
            log.exception("the request to the backend failed")
            self._tally.add(backend_failures=1)
            emit(Unavailable(f"the request to the backend failed: {error}"))

    async def _send(self, body: dict[str, Any], emit: Emit) -> None:
        """POSTs the completion, once more after a connection error before any answer (a
        pooled connection the server closed, a server restarting)."""
        self._tally.add(backend_requests=1)
        url = self.options.url + "/v1/completions"
        for attempt in range(2):
            answered = False
            try:
                async with self._transport.client.stream(
                    "POST", url, json=body, headers=self._headers()
                ) as response:
                    answered = True
                    if response.status_code != 200:
                        await response.aread()
                        raise self._answered_error(response)
                    self._health.available(self.options.url, self._model)
                    await self._read_events(response, emit)
                    return
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as error:
                if attempt == 0 and not answered:
                    self._tally.add(backend_retries=1)
                    continue
                raise self._unreachable(error, mid_stream=answered) from None
            except httpx.HTTPError as error:
                raise self._unreachable(error, mid_stream=answered) from None

    async def _read_events(self, response: httpx.Response, emit: Emit) -> None:
        """Server-sent events to text pieces, then the end with the server's usage."""
        events = CompletionEvents()
        async for line in response.aiter_lines():
            try:
                pieces = events.feed(line)
            except MalformedStream as error:
                raise Unavailable(str(error)) from None
            for piece in pieces:
                emit(piece)
        end = events.end()
        if end is None:
            message = f"the backend at {self.options.url} ended the stream mid-completion"
            raise self._health.unreachable(message)
        emit(end)
