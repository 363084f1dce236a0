"""A remote OpenAI-compatible server as the process's model: another `replit-lsp --serve`,
vLLM or llama.cpp's server, shared by a team from one GPU machine.

`RemoteEngine` has the local engine's surface (`stream_text`, `tokenizer`, `max_length`,
`slots`, `model_name`, `counters`), so the language server's prompt building, completion
rules, supersede and cancellation, and the HTTP endpoint (then a proxy), run unchanged: the
prompt they build is sent as text to `/v1/completions` with `stream: true`, and the streamed
text goes through the same stop rules. Closing the stream early closes the connection, which
is how an OpenAI-compatible server learns to stop generating.

The front doors consume generations on worker threads as blocking iterators. The HTTP
requests run on one event loop thread with an `httpx.AsyncClient`, bridged to the workers by
a queue: a blocking read in a worker could not be interrupted when a newer keystroke
supersedes it (closing a socket from another thread does not wake a thread blocked reading
it), while cancelling the request's task closes its connection at once. A worker waiting for
the next piece polls its cancel flag every `POLL_SECONDS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import email.utils
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from lsp_server.request_fields import sampling_fields
from model.generation import NoStop, StopRule, TextPieces, TextStream, TextTokenizer
from model.progress import READY, LoadProgress, ProgressCallback, ignore_progress
from model.sampling import SamplingParams
from model.tokenizer import Tokenizer, TokenizerError

log = logging.getLogger("replit_lsp.remote")

API_KEY_ENV = "REPLIT_LSP_BACKEND_API_KEY"

# Without the model's tokenizer, one token is taken to be this many characters: source code
# averages 3-4 characters a token, so a prompt budgeted this way fits the remote's context.
CHARS_PER_TOKEN = 3

# How often a worker waiting for the next piece looks at its cancel flag: the most a
# superseded or cancelled completion keeps the remote generating.
POLL_SECONDS = 0.01
# How long closing a stream waits for its connection to be closed.
CLOSE_WAIT_SECONDS = 5.0
# Retry-After when a busy server sends none, and the longest one honoured.
DEFAULT_RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 300.0

# The states of the remote server, as the status and health answers report them.
READY_STATE = "ready"
UNREACHABLE = "unreachable"
UNAUTHORIZED = "unauthorized"
MODEL_NOT_FOUND = "model_not_found"
OVERLOADED = "overloaded"
FAILED = "failed"
REJECTED = "rejected"  # one request refused (400): says nothing about the server

T = TypeVar("T")

# A code point plus one: a zero digit ends a chunk of CharacterBudget.
_BASE = 0x110001


class CharacterBudget:
    """Stands in for the model's tokenizer when it is not on this machine.

    Each id stands for up to `CHARS_PER_TOKEN` characters, so the prompt's token budget
    becomes a character budget, and ids decode back to exactly their characters: prompt
    building cuts and joins ids as it does real tokens, and the text sent is the text cut.
    """

    vocab_size = _BASE**CHARS_PER_TOKEN

    def encode(self, text: str) -> list[int]:
        ids = []
        for start in range(0, len(text), CHARS_PER_TOKEN):
            value = 0
            for char in reversed(text[start : start + CHARS_PER_TOKEN]):
                value = value * _BASE + ord(char) + 1
            ids.append(value)
        return ids

    def decode(self, ids: list[int]) -> str:
        chars = []
        for id_ in ids:
            value = id_
            while value > 0:
                value, digit = divmod(value, _BASE)
                if digit:
                    chars.append(chr(digit - 1))
        return "".join(chars)


def normalized_url(url: str) -> str:
    """The server's root: `http://host:8000`, `.../v1` and a trailing slash all name it."""
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"--backend-url must start with http:// or https://, got {url!r}")
    return url.removesuffix("/v1")


@dataclass(frozen=True)
class RemoteOptions:
    url: str
    api_key: str | None = None
    model: str | None = None  # None: the first model the server lists
    tokenizer_dir: Path | None = None  # None: budget the prompt in characters
    max_length: int = 512  # the remote's context, prompt and completion tokens
    slots: int = 4  # completions streaming at once
    connect_timeout: float = 3.0
    read_timeout: float = 30.0  # between two pieces of a stream
    # Added to every request (--backend-fields), over the sampling fields the client sets.
    extra_fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BackendStatus:
    state: str
    message: str
    retry_at: float | None = None  # time.monotonic() before which nothing is sent


@dataclass(frozen=True)
class RemoteCounters:
    """What the client has sent, for the status and health answers."""

    backend_requests: int = 0
    backend_retries: int = 0  # second attempts after a connection error
    backend_failures: int = 0
    backend_closed_early: int = 0  # streams closed before the server finished them


class BackendError(RuntimeError):
    """A completion the remote server did not give, in words a user can act on.

    `http_status` and `retry_after` are what a proxy answers its own client with."""

    def __init__(
        self, state: str, message: str, http_status: int = 502, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.state = state
        self.message = message
        self.http_status = http_status
        self.retry_after = retry_after


@dataclass(frozen=True)
class _End:
    finish_reason: str
    usage: dict[str, Any]


def _error_detail(response: httpx.Response) -> str:
    """The server's own explanation: OpenAI's error shape, vLLM's, or the body's start."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if body.get("message"):
            return str(body["message"])
    return str(body)[:200]


def _retry_seconds(value: str | None) -> float:
    """Retry-After in seconds (a number or an HTTP date), bounded."""
    if not value:
        return DEFAULT_RETRY_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return DEFAULT_RETRY_SECONDS
    return min(max(seconds, 0.0), MAX_RETRY_SECONDS)


def load_tokenizer(model_dir: Path | None) -> TextTokenizer:
    """The model's tokenizer from a local copy, else the character budget."""
    if model_dir is None:
        log.info("no local copy of the model's tokenizer: budgeting the prompt in characters")
        return CharacterBudget()
    try:
        return Tokenizer(model_dir)
    except (TokenizerError, OSError) as error:
        log.warning("%s; budgeting the prompt in characters", error)
        return CharacterBudget()


class RemoteCompletion:
    """One streamed completion, as `TextStream` consumes it: text pieces, and the costs the
    server reports (its usage), or those counted here when the stream was closed early."""

    def __init__(
        self,
        engine: RemoteEngine,
        body: dict[str, Any],
        prompt_tokens: int,
        cancelled: Callable[[], bool],
    ) -> None:
        self.prompt_tokens = prompt_tokens
        self.reused_tokens = 0
        self.finish_reason: str | None = None
        self.prefill_seconds = 0.0
        # The local engine's own work: none here (the server speculates as it is set up to).
        self.graph_runs = self.draft_tokens = self.accepted_tokens = 0
        self._pieces = 0
        self._reported_tokens: int | None = None
        self._iterator = self._run(engine, body, cancelled)

    @property
    def generated_tokens(self) -> int:
        """The server's count; for a stream closed early, its pieces, which these servers
        send one per token."""
        return self._pieces if self._reported_tokens is None else self._reported_tokens

    def __iter__(self) -> Iterator[str]:
        return self._iterator

    def close(self) -> None:
        self._iterator.close()

    def _run(
        self, engine: RemoteEngine, body: dict[str, Any], cancelled: Callable[[], bool]
    ) -> Iterator[str]:
        engine._admit()
        events: queue.SimpleQueue[str | _End | BackendError] = queue.SimpleQueue()
        ended = threading.Event()
        started = time.perf_counter()
        future = asyncio.run_coroutine_threadsafe(
            engine._stream(body, events.put, ended), engine._loop
        )
        finished = False  # the request's task has emitted its last event
        try:
            while True:
                try:
                    event = events.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    if cancelled():
                        return
                    continue
                finished = isinstance(event, BackendError | _End)
                if isinstance(event, BackendError):
                    raise event
                if isinstance(event, _End):
                    self._finish(event)
                    return
                if cancelled():
                    return
                if not self._pieces:
                    self.prefill_seconds = time.perf_counter() - started
                self._pieces += 1
                yield event
        finally:
            if not finished:  # closed early: the server stops when its client leaves
                future.cancel()
                ended.wait(CLOSE_WAIT_SECONDS)
                engine._count(backend_closed_early=1)

    def _finish(self, end: _End) -> None:
        self.finish_reason = end.finish_reason
        usage = end.usage
        if isinstance(usage.get("prompt_tokens"), int):
            self.prompt_tokens = usage["prompt_tokens"]
        if isinstance(usage.get("completion_tokens"), int):
            self._reported_tokens = usage["completion_tokens"]
        details = usage.get("prompt_tokens_details")
        if isinstance(details, dict) and isinstance(details.get("cached_tokens"), int):
            self.reused_tokens = details["cached_tokens"]


class RemoteEngine:
    """Completions from a remote server, behind the local engine's surface.

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
        self._lock = threading.Lock()
        self._listeners: list[Callable[[BackendStatus], None]] = []
        self._status = BackendStatus("unknown", f"connecting to {self.options.url}")
        self._counters = RemoteCounters()
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, name="remote-backend", daemon=True).start()
        self._client = self._call(self._make_client())
        self._call(self._probe())
        self.load_seconds = time.perf_counter() - started
        progress(LoadProgress(READY, f"using the backend at {self.options.url}"))

    # ------------------------------------------------------- what front doors see

    @property
    def slots(self) -> int:
        return self.options.slots

    @property
    def counters(self) -> RemoteCounters:
        return self._counters

    @property
    def model_name(self) -> str:
        """The remote's model: `--backend-model`, else the first it lists ('' until known)."""
        return self._model or ""

    @property
    def status(self) -> BackendStatus:
        return self._status

    @property
    def problem(self) -> str | None:
        status = self._status
        return None if status.state == READY_STATE else status.message

    def add_listener(self, listener: Callable[[BackendStatus], None]) -> None:
        """`listener` hears each change of state, on whichever thread noticed it."""
        with self._lock:
            self._listeners.append(listener)

    def reconfigure(self, url: str, model: str | None) -> None:
        """Points later completions at another server (an editor setting changed); the
        state follows from a fresh look at its models."""
        self.options = dataclasses.replace(self.options, url=normalized_url(url), model=model)
        self._model = model
        self.compile_source = f"remote {self.options.url}"
        asyncio.run_coroutine_threadsafe(self._probe(), self._loop)

    def use_fields(self, fields: Mapping[str, Any]) -> None:
        """Adds `fields` (an editor setting) to later requests, over the command line's."""
        self._extra_fields = {**self.options.extra_fields, **fields}

    def stream_text(
        self,
        prompt: Sequence[int] | str,
        params: SamplingParams,
        *,
        cancelled: Callable[[], bool] = lambda: False,
        stop: StopRule | None = None,
        speculate: bool = True,
        draft_context: Sequence[int] = (),
    ) -> TextStream:
        """A completion of `prompt` (token ids of `tokenizer`, or text) as final text pieces,
        stopped by `stop` as the local engine's are. Raises `BackendError` while iterated
        when the server cannot give it. `speculate` and `draft_context` are the local
        engine's; a remote server decodes as it is configured to."""
        if isinstance(prompt, str):
            text, count = prompt, len(self.tokenizer.encode(prompt))
        else:
            text, count = self.tokenizer.decode(list(prompt)), len(prompt)
        if not text:
            raise ValueError("the prompt must contain at least one token")
        if count >= self.max_length:
            raise ValueError(
                f"the prompt has {count} tokens; at most {self.max_length - 1} fit "
                f"in a context of {self.max_length}"
            )
        completion = RemoteCompletion(self, self._body(text, count, params), count, cancelled)
        return TextStream(completion, TextPieces(), stop or NoStop())

    # ----------------------------------------------------------------- requests

    def _body(self, text: str, prompt_tokens: int, params: SamplingParams) -> dict[str, Any]:
        """The request: every sampling field named (so the server adds none of its own), the
        extra fields over them, and the prompt, stream and length, which are the client's."""
        room = self.max_length - prompt_tokens
        return {
            **sampling_fields(params, self.tokenizer.vocab_size),
            **self._extra_fields,
            "prompt": text,
            "max_tokens": room if params.max_new_tokens == -1 else min(params.max_new_tokens, room),
            "stream": True,
            "stream_options": {"include_usage": True},
        }

    def _headers(self) -> dict[str, str]:
        key = self.options.api_key
        return {"Authorization": f"Bearer {key}"} if key else {}

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    async def _make_client(self) -> httpx.AsyncClient:
        options = self.options
        timeout = httpx.Timeout(options.read_timeout, connect=options.connect_timeout)
        limits = httpx.Limits(max_connections=options.slots + 1)
        return httpx.AsyncClient(timeout=timeout, limits=limits)

    def _count(self, **increments: int) -> None:
        with self._lock:
            counters = self._counters
            self._counters = dataclasses.replace(
                counters, **{name: getattr(counters, name) + n for name, n in increments.items()}
            )

    def _set_status(self, status: BackendStatus) -> None:
        with self._lock:
            changed = status.state != self._status.state
            self._status = status
            listeners = list(self._listeners) if changed else []
        if changed:
            level = logging.INFO if status.state == READY_STATE else logging.WARNING
            log.log(level, "%s", status.message)
        for listener in listeners:
            with contextlib.suppress(Exception):  # a broken listener must not stop requests
                listener(status)

    def _available(self) -> BackendStatus:
        model = self._model or "its model"
        return BackendStatus(
            READY_STATE, f"the backend at {self.options.url} is available ({model})"
        )

    def _admit(self) -> None:
        """Refuses at once while the server has asked for time (Retry-After)."""
        status = self._status
        if status.retry_at is not None and (wait := status.retry_at - time.monotonic()) > 0:
            raise BackendError(status.state, status.message, 429, wait)

    def _unreachable(self, error: httpx.HTTPError, mid_stream: bool) -> BackendError:
        url = self.options.url
        if isinstance(error, httpx.TimeoutException):
            what = "connect" if isinstance(error, httpx.ConnectTimeout) else "read"
            limit = getattr(self.options, f"{what}_timeout")
            message = f"the backend at {url} did not answer within {limit:g} s ({what} timeout)"
        elif mid_stream:
            message = f"the connection to the backend at {url} broke mid-completion ({error})"
        else:
            message = f"the backend at {url} is unreachable ({type(error).__name__}: {error})"
        self._set_status(BackendStatus(UNREACHABLE, message))
        return BackendError(UNREACHABLE, message)

    def _http_error(self, response: httpx.Response) -> BackendError:
        """The state an error answer puts the server in, and the error for this request."""
        code, detail, url = response.status_code, _error_detail(response), self.options.url
        http_status, retry = 502, None
        if code in (401, 403):
            state = UNAUTHORIZED
            message = (
                f"the backend at {url} refused the API key ({code}: {detail}); "
                f"set --backend-api-key or ${API_KEY_ENV}"
            )
        elif code == 404 and self._model is None:
            state = MODEL_NOT_FOUND
            message = f"the backend at {url} has no /v1/completions ({detail}): check --backend-url"
        elif code == 404:
            state = MODEL_NOT_FOUND
            message = (
                f"the backend at {url} does not serve the model {self._model!r} "
                f"({code}: {detail}); check --backend-model"
            )
        elif code in (429, 503):
            state, http_status = OVERLOADED, 429
            retry = _retry_seconds(response.headers.get("retry-after"))
            message = f"the backend at {url} is busy ({code}: {detail}); retrying in {retry:g} s"
        elif 400 <= code < 500:
            return BackendError(REJECTED, f"the backend refused the request: {detail}", code)
        else:
            state, message = FAILED, f"the backend at {url} failed ({code}: {detail})"
        retry_at = None if retry is None else time.monotonic() + retry
        self._set_status(BackendStatus(state, message, retry_at))
        return BackendError(state, message, http_status, retry)

    async def _probe(self) -> None:
        """Looks at the server's models: reachable, key accepted, model served."""
        url = self.options.url
        try:
            response = await self._client.get(url + "/v1/models", headers=self._headers())
        except httpx.HTTPError as error:
            self._unreachable(error, mid_stream=False)
            return
        if response.status_code != 200:
            self._http_error(response)
            return
        try:
            served = [str(card["id"]) for card in response.json()["data"]]
        except (ValueError, KeyError, TypeError):
            served = []
        if self._model is None and served:
            self._model = served[0]
        if self._model is not None and served and self._model not in served:
            message = (
                f"the backend at {url} does not serve the model {self._model!r}; it serves "
                f"{', '.join(served)}: check --backend-model"
            )
            self._set_status(BackendStatus(MODEL_NOT_FOUND, message))
            return
        self._set_status(self._available())

    async def _stream(
        self,
        body: dict[str, Any],
        emit: Callable[[str | _End | BackendError], None],
        ended: threading.Event,
    ) -> None:
        """Runs one request on the loop; every outcome but cancellation is emitted."""
        try:
            if self._model is None:
                await self._probe()
            if self._model is not None:
                body = {**body, "model": self._model}
            await self._send(body, emit)
        except BackendError as error:
            self._count(backend_failures=1)
            emit(error)
        except Exception as error:  # anything unforeseen still ends the request, not the loop
            log.exception("the request to the backend failed")
            self._count(backend_failures=1)
            emit(BackendError(FAILED, f"the request to the backend failed: {error}"))
        finally:
            ended.set()

    async def _send(
        self, body: dict[str, Any], emit: Callable[[str | _End | BackendError], None]
    ) -> None:
        """POSTs the completion, once more after a connection error before any answer (a
        pooled connection the server closed, a server restarting)."""
        self._count(backend_requests=1)
        url = self.options.url + "/v1/completions"
        for attempt in range(2):
            answered = False
            try:
                async with self._client.stream(
                    "POST", url, json=body, headers=self._headers()
                ) as response:
                    answered = True
                    if response.status_code != 200:
                        await response.aread()
                        raise self._http_error(response)
                    self._set_status(self._available())
                    await self._read_events(response, emit)
                    return
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as error:
                if attempt == 0 and not answered:
                    self._count(backend_retries=1)
                    continue
                raise self._unreachable(error, mid_stream=answered) from None
            except httpx.HTTPError as error:
                raise self._unreachable(error, mid_stream=answered) from None

    async def _read_events(
        self, response: httpx.Response, emit: Callable[[str | _End | BackendError], None]
    ) -> None:
        """Server-sent events to text pieces, then the end with the server's usage."""
        finish: str | None = None
        usage: dict[str, Any] = {}
        done = False
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[len("data:") :].strip()
            if data == "[DONE]":
                done = True
                continue
            try:
                chunk = json.loads(data)
            except ValueError:
                chunk = None
            if not isinstance(chunk, dict):
                raise BackendError(FAILED, f"the backend sent an event that is not JSON: {data!r}")
            if "error" in chunk:
                error = chunk["error"]
                detail = error.get("message") if isinstance(error, dict) else error
                raise BackendError(FAILED, f"the backend failed mid-completion: {detail}")
            for choice in chunk.get("choices") or []:
                if choice.get("text"):
                    emit(str(choice["text"]))
                finish = choice.get("finish_reason") or finish
            if isinstance(chunk.get("usage"), dict):
                usage = chunk["usage"]
        if not done and finish is None:
            message = f"the backend at {self.options.url} ended the stream mid-completion"
            self._set_status(BackendStatus(UNREACHABLE, message))
            raise BackendError(UNREACHABLE, message)
        emit(_End(finish or "stop", usage))
