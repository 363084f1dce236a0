"""The wire format of OpenAI's `/v1/completions`: the streamed request's body, its
server-sent events back to text pieces and the server's usage, and what an error answer
says (its explanation, its Retry-After)."""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from lsp_server.generation.remote.request_fields import sampling_fields
from lsp_server.generation.sampling import GenerationParams

# Retry-After when a busy server sends none, and the longest one honoured.
DEFAULT_RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 300.0


class MalformedStream(Exception):
    """An event the client cannot read, or an error the server sent mid-stream."""


@dataclass(frozen=True)
class StreamEnd:
    """The last event of a completion: why it ended, and its costs as the server counts."""

    finish_reason: str
    usage: dict[str, Any]


def completion_body(
    text: str, max_tokens: int, params: GenerationParams, extra_fields: Mapping[str, Any]
) -> dict[str, Any]:
    """The request: every sampling field named (so the server adds none of its own), the
    extra fields over them, and the prompt, stream and length, which are the client's."""
    return {
        **sampling_fields(params),
        **extra_fields,
        "prompt": text,
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


class CompletionEvents:
    """Reads a streamed completion's server-sent events, line by line."""

    def __init__(self) -> None:
        self._finish: str | None = None
        self._usage: dict[str, Any] = {}
        self._done = False

    def feed(self, line: str) -> list[str]:
        """The text pieces of one line; raises `MalformedStream`."""
        if not line.startswith("data:"):
            return []
        data = line[len("data:") :].strip()
        if data == "[DONE]":
            self._done = True
            return []
        try:
            chunk = json.loads(data)
        except ValueError:
            chunk = None
        if not isinstance(chunk, dict):
            raise MalformedStream(f"the backend sent an event that is not JSON: {data!r}")
        if "error" in chunk:
            error = chunk["error"]
            detail = error.get("message") if isinstance(error, dict) else error
            raise MalformedStream(f"the backend failed mid-completion: {detail}")
        pieces = []
        for choice in chunk.get("choices") or []:
            if choice.get("text"):
                pieces.append(str(choice["text"]))
            self._finish = choice.get("finish_reason") or self._finish
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        return pieces

    def end(self) -> StreamEnd | None:
        """The completion's end once the lines ran out; None when they ran out before the
        server said it was over (the connection was cut)."""
        if not self._done and self._finish is None:
            return None
        return StreamEnd(self._finish or "stop", self._usage)


def error_detail(response: httpx.Response) -> str:
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


def retry_seconds(value: str | None) -> float:
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


def served_models(response: httpx.Response) -> list[str]:
    """The model ids of a `/v1/models` answer (none when it lists none readably)."""
    try:
        return [str(card["id"]) for card in response.json()["data"]]
    except (ValueError, KeyError, TypeError):
        return []
