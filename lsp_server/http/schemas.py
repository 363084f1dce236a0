"""The OpenAI wire format: request models, error bodies and response payloads.

Kept apart from the HTTP plumbing so that what a client sees (field names, defaults, the
error shape every OpenAI SDK parses) can be read in one place and checked against the spec.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from lsp_server.http.text_fields import Text

# Requests may carry fields this server does not use (user, presence_penalty, ...); OpenAI
# SDKs send some of them by default, so they are ignored rather than rejected.
_LENIENT = ConfigDict(extra="ignore")
# Every stop string is searched for after every token.
MAX_STOP_STRINGS = 16


class ApiError(Exception):
    """A request that cannot be served, answered with OpenAI's error body and a status."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers


def error_body(
    message: str, type: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """The shape OpenAI SDKs parse into `APIError.message` / `.type` / `.param` / `.code`."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


class StreamOptions(BaseModel):
    model_config = _LENIENT
    include_usage: bool = False


class SamplingRequest(BaseModel):
    """Fields shared by chat and text completions."""

    model_config = _LENIENT

    model: Text | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=0)  # 0: every token, as llama.cpp and vLLM read it
    stop: Text | Annotated[list[Text], Field(max_length=MAX_STOP_STRINGS)] | None = None
    seed: int | None = Field(default=None, ge=0)
    n: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None

    def stop_strings(self) -> list[str]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return [s for s in stops if s]

    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class TextPart(BaseModel):
    model_config = _LENIENT
    type: Literal["text"]
    text: Text


class ChatMessage(BaseModel):
    model_config = _LENIENT
    role: Literal["system", "developer", "user", "assistant"]
    content: Text | list[TextPart] | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class ChatCompletionRequest(SamplingRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    # The newer name of max_tokens for chat; either may be given.
    max_completion_tokens: int | None = Field(default=None, ge=1)


class CompletionRequest(SamplingRequest):
    prompt: Text | list[Text] | list[int]
    echo: bool = False
    suffix: Text | None = None
    best_of: int | None = None
    logprobs: int | None = None


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


def usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int) -> dict[str, Any]:
    """OpenAI's usage, with the prompt tokens served from the prefix cache as OpenAI and vLLM
    report them: a client of this server (another replit-lsp) shows them as reused."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens},
    }


def _response(
    object: str, id: str, model: str, choices: list[dict[str, Any]], **extra: Any
) -> dict[str, Any]:
    """The envelope every completion response and stream chunk shares."""
    return {
        "id": id,
        "object": object,
        "created": now(),
        "model": model,
        "choices": choices,
        **extra,
    }


def _choice(finish_reason: str | None, **content: Any) -> dict[str, Any]:
    return {"index": 0, **content, "logprobs": None, "finish_reason": finish_reason}


def chat_completion(
    id: str, model: str, text: str, finish_reason: str, usage_: dict[str, Any]
) -> dict[str, Any]:
    message = {"role": "assistant", "content": text}
    choices = [_choice(finish_reason, message=message)]
    return _response("chat.completion", id, model, choices, usage=usage_)


def text_completion(
    id: str, model: str, text: str, finish_reason: str, usage_: dict[str, Any]
) -> dict[str, Any]:
    choices = [_choice(finish_reason, text=text)]
    return _response("text_completion", id, model, choices, usage=usage_)


def chat_chunk(
    id: str, model: str, delta: dict[str, str], finish_reason: str | None
) -> dict[str, Any]:
    return _response("chat.completion.chunk", id, model, [_choice(finish_reason, delta=delta)])


def text_chunk(id: str, model: str, text: str, finish_reason: str | None) -> dict[str, Any]:
    return _response("text_completion", id, model, [_choice(finish_reason, text=text)])


def usage_chunk(object: str, id: str, model: str, usage_: dict[str, Any]) -> dict[str, Any]:
    """The extra last chunk of `stream_options.include_usage`: no choices, only usage."""
    return _response(object, id, model, [], usage=usage_)


def model_card(name: str, created: int) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": "replit-lsp"}
