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
from lsp_server.options import editor_settings, option_named

SECTION = "replitLsp"


def _default(name: str) -> Any:
    """The default of the setting that fills the field `name`."""
    return option_named(name).setting_default


@dataclass(frozen=True)
class Settings:
    """One client's settings; what each means and its default are in `lsp_server.options`."""

    max_new_tokens: int = _default("max_new_tokens")
    max_lines: int = _default("max_lines")
    top_k: int = _default("top_k")
    temperature: float = _default("temperature")
    enabled_languages: tuple[str, ...] = _default("enabled_languages")
    request_wait_seconds: float = _default("request_wait_seconds")
    prepend_file_path: bool = _default("prepend_file_path")
    time_budget_ms: int = _default("time_budget_ms")
    speculation: bool = _default("speculation")
    backend_url: str = _default("backend_url")
    backend_model: str = _default("backend_model")
    backend_fields: Mapping[str, Any] = field(
        default_factory=lambda: dict(_default("backend_fields"))
    )
    invoked_max_new_tokens: int = _default("invoked_max_new_tokens")
    answer_timeout_seconds: float = _default("answer_timeout_seconds")
    context_tokens: int = _default("context_tokens")
    context_open_documents: bool = _default("context_open_documents")
    context_recent_documents: bool = _default("context_recent_documents")
    context_definitions: bool = _default("context_definitions")
    context_exclude: tuple[str, ...] = _default("context_exclude")
    context_idle_ms: int = _default("context_idle_ms")
    prewarm: bool = _default("prewarm")
    recent_suggestions: int = _default("recent_suggestions")
    prefetch_on_accept: bool = _default("prefetch_on_accept")

    @classmethod
    def from_defaults(cls, defaults: GenerationParams, **options: Any) -> Settings:
        """Starts from the command line's options, which the client may override:
        the sampling defaults and any of this class's fields in `options`."""
        return cls(
            max_new_tokens=_default("max_new_tokens")
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


# field -> (parser returning None for an invalid value, what a valid value is)
_PARSERS: dict[str, tuple[Callable[[object], Any], str]] = {
    "max_new_tokens": (_positive_int, "an integer >= 1"),
    "invoked_max_new_tokens": (_positive_int, "an integer >= 1"),
    "max_lines": (_positive_int, "an integer >= 1"),
    "top_k": (_positive_int, "an integer >= 1"),
    "temperature": (_non_negative_number, "a number >= 0"),
    "enabled_languages": (_languages, "a list of language ids"),
    "request_wait_seconds": (_non_negative_number, "a number >= 0"),
    "prepend_file_path": (_boolean, "true or false"),
    "time_budget_ms": (_non_negative_int, "an integer >= 0"),
    "speculation": (_boolean, "true or false"),
    "backend_url": (_url, "an http:// or https:// URL, or empty"),
    "backend_model": (_string, "a model name, or empty"),
    "backend_fields": (
        _request_fields,
        "an object of request fields other than prompt, stream, stream_options, model and "
        "max_tokens",
    ),
    "answer_timeout_seconds": (_positive_number, "a number > 0"),
    "context_tokens": (_non_negative_int, "an integer >= 0"),
    "context_open_documents": (_boolean, "true or false"),
    "context_recent_documents": (_boolean, "true or false"),
    "context_definitions": (_boolean, "true or false"),
    "context_exclude": (_globs, "a list of glob patterns"),
    "context_idle_ms": (_non_negative_int, "an integer >= 0"),
    "prewarm": (_boolean, "true or false"),
    "recent_suggestions": (_non_negative_int, "an integer >= 0"),
    "prefetch_on_accept": (_boolean, "true or false"),
}

# setting name -> (field, parser, what a valid value is); a setting without a parser fails
# here, at import.
_FIELDS: dict[str, tuple[str, Callable[[object], Any], str]] = {
    option.setting: (option.name, *_PARSERS[option.name])
    for option in editor_settings()
    if option.setting is not None
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
