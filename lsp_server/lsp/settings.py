"""The server's settings, read from `initializationOptions` and `workspace/didChangeConfiguration`.

Editors send settings either under the extension's own section or as a flat object, so both
`{"replitLsp": {...}}` and `{...}` are accepted. A bad value must not silently change
behaviour: it is reported and the previous value kept; an unknown key is reported and ignored.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lsp_server.generation.remote.request_fields import checked_extra_fields
from lsp_server.generation.sampling import AS_MUCH_AS_FITS, GenerationParams

SECTION = "replitLsp"


@dataclass(frozen=True)
class Settings:
    max_new_tokens: int = 64
    max_lines: int = 8
    top_k: int = 1
    temperature: float = 1.0
    enabled_languages: tuple[str, ...] = ()  # empty: every language
    request_wait_seconds: float = 30.0
    prepend_file_path: bool = False
    # The longest a completion may take, in milliseconds (0: no limit): at the deadline the
    # complete lines generated so far are the answer.
    time_budget_ms: int = 0
    # Greedy completions draft tokens from the context and check them in one run, where the
    # engine speculates (--speculative-tokens): false turns it off for this client.
    speculation: bool = True
    backend_url: str = ""  # empty: the command line's model (local, or --backend-url)
    backend_model: str = ""  # empty: the backend's first model
    # Added to each request to the backend, over the command line's --backend-fields.
    backend_fields: Mapping[str, Any] = field(default_factory=dict)
    invoked_max_new_tokens: int = 128  # for a suggestion the user asked for
    # The longest a request waits for its completion: then it is answered empty and the
    # generation stops, so no state of the workers can leave a request unanswered.
    answer_timeout_seconds: float = 60.0
    # Context from other files ahead of the current one: the most tokens it takes (0: none;
    # at most half the prompt), its sources, what is never read, and the pause after which
    # it is chosen again.
    context_tokens: int = 512
    context_open_documents: bool = True
    context_recent_documents: bool = True
    context_definitions: bool = True
    context_exclude: tuple[str, ...] = ()
    context_idle_ms: int = 1000

    @classmethod
    def from_defaults(cls, defaults: GenerationParams, **options: Any) -> Settings:
        """Starts from the command line's options, which the client may override:
        the sampling defaults and any of this class's fields in `options`."""
        return cls(
            max_new_tokens=64
            if defaults.max_new_tokens is AS_MUCH_AS_FITS
            else defaults.max_new_tokens,
            top_k=defaults.top_k,
            temperature=defaults.temperature,
            **options,
        )

    def language_enabled(self, language_id: str | None) -> bool:
        return not self.enabled_languages or language_id in self.enabled_languages


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_int(value: object) -> int | None:
    return value if _is_int(value) and value >= 1 else None  # type: ignore[operator,return-value]


def _non_negative_int(value: object) -> int | None:
    return value if _is_int(value) and value >= 0 else None  # type: ignore[operator,return-value]


def _non_negative_number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value >= 0 else None


def _positive_number(value: object) -> float | None:
    number = _non_negative_number(value)
    return number if number else None


def _languages(value: object) -> tuple[str, ...] | None:
    if value is None:
        return ()
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    return None


def _globs(value: object) -> tuple[str, ...] | None:
    if isinstance(value, list) and all(isinstance(item, str) and item.strip() for item in value):
        return tuple(item.strip() for item in value)
    return None


def _boolean(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def _url(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value if not value or value.startswith(("http://", "https://")) else None


def _string(value: object) -> str | None:
    return value.strip() if isinstance(value, str) else None


def _request_fields(value: object) -> dict[str, Any] | None:
    try:
        return checked_extra_fields(value)
    except ValueError:
        return None


# setting name -> (field, parser returning None for an invalid value, what a valid value is)
_FIELDS: dict[str, tuple[str, Callable[[object], Any], str]] = {
    "maxNewTokens": ("max_new_tokens", _positive_int, "an integer >= 1"),
    "invokedMaxNewTokens": ("invoked_max_new_tokens", _positive_int, "an integer >= 1"),
    "maxLines": ("max_lines", _positive_int, "an integer >= 1"),
    "topK": ("top_k", _positive_int, "an integer >= 1"),
    "temperature": ("temperature", _non_negative_number, "a number >= 0"),
    "enabledLanguages": ("enabled_languages", _languages, "a list of language ids"),
    "requestWaitSeconds": ("request_wait_seconds", _non_negative_number, "a number >= 0"),
    "prependFilePath": ("prepend_file_path", _boolean, "true or false"),
    "timeBudgetMs": ("time_budget_ms", _non_negative_int, "an integer >= 0"),
    "speculation": ("speculation", _boolean, "true or false"),
    "backendUrl": ("backend_url", _url, "an http:// or https:// URL, or empty"),
    "backendModel": ("backend_model", _string, "a model name, or empty"),
    "backendFields": (
        "backend_fields",
        _request_fields,
        "an object of request fields other than prompt, stream, stream_options, model and "
        "max_tokens",
    ),
    "answerTimeoutSeconds": ("answer_timeout_seconds", _positive_number, "a number > 0"),
    "contextTokens": ("context_tokens", _non_negative_int, "an integer >= 0"),
    "contextOpenDocuments": ("context_open_documents", _boolean, "true or false"),
    "contextRecentDocuments": ("context_recent_documents", _boolean, "true or false"),
    "contextDefinitions": ("context_definitions", _boolean, "true or false"),
    "contextExclude": ("context_exclude", _globs, "a list of glob patterns"),
    "contextIdleMs": ("context_idle_ms", _non_negative_int, "an integer >= 0"),
}


def apply_settings(current: Settings, raw: object) -> tuple[Settings, list[str]]:
    """The settings after applying the client's object `raw`, and one warning per problem."""
    if raw is None:
        return current, []
    if isinstance(raw, dict) and SECTION in raw:
        raw = raw[SECTION]
        if raw is None:
            return current, []
    if not isinstance(raw, dict):
        return current, [f"settings must be an object, got {type(raw).__name__}; ignored"]
    changes: dict[str, Any] = {}
    warnings: list[str] = []
    for key, value in raw.items():
        if key not in _FIELDS:
            warnings.append(f"unknown setting {key!r} ignored")
            continue
        field, parse, expected = _FIELDS[key]
        parsed = parse(value)
        if parsed is None:
            kept = getattr(current, field)
            warnings.append(f"setting {key!r} must be {expected}, got {value!r}; keeping {kept!r}")
        else:
            changes[field] = parsed
    return dataclasses.replace(current, **changes), warnings
