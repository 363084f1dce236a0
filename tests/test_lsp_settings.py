"""Settings from the client: both shapes accepted, bad values reported and ignored."""

from __future__ import annotations

import pytest

from lsp_server.generation.sampling import AS_MUCH_AS_FITS, GenerationParams
from lsp_server.lsp.settings import Settings, apply_settings


def test_defaults_come_from_the_command_line() -> None:
    settings = Settings.from_defaults(
        GenerationParams(max_new_tokens=AS_MUCH_AS_FITS, top_k=5, temperature=0.2)
    )
    assert (settings.max_new_tokens, settings.top_k, settings.temperature) == (64, 5, 0.2)
    assert Settings.from_defaults(GenerationParams(max_new_tokens=16)).max_new_tokens == 16


@pytest.mark.parametrize(
    "raw",
    [
        {"replitLsp": {"maxNewTokens": 12, "enabledLanguages": ["python"]}},
        {"maxNewTokens": 12, "enabledLanguages": ["python"]},
    ],
)
def test_section_or_top_level(raw: dict[str, object]) -> None:
    settings, warnings = apply_settings(Settings(), raw)
    assert warnings == []
    assert settings.max_new_tokens == 12 and settings.enabled_languages == ("python",)
    assert settings.language_enabled("python") and not settings.language_enabled("rust")


def test_every_setting() -> None:
    raw = {
        "maxNewTokens": 10,
        "maxLines": 3,
        "topK": 40,
        "temperature": 0.7,
        "enabledLanguages": None,
        "requestWaitSeconds": 0,
        "prependFilePath": True,
        "timeBudgetMs": 800,
        "speculation": False,
        "backendUrl": " http://gpu-box:8000 ",
        "backendModel": "replit/replit-code-v1_5-3b",
        "backendFields": {"repeat_penalty": 1.1, "cache_prompt": True},
        "invokedMaxNewTokens": 100,
    }
    settings, warnings = apply_settings(Settings(enabled_languages=("go",)), raw)
    assert warnings == []
    assert settings == Settings(
        10,
        3,
        40,
        0.7,
        (),
        0.0,
        True,
        time_budget_ms=800,
        speculation=False,
        backend_url="http://gpu-box:8000",
        backend_model="replit/replit-code-v1_5-3b",
        backend_fields={"repeat_penalty": 1.1, "cache_prompt": True},
        invoked_max_new_tokens=100,
    )
    assert settings.language_enabled("anything")


FIELDS = {
    "maxNewTokens": "max_new_tokens",
    "maxLines": "max_lines",
    "topK": "top_k",
    "temperature": "temperature",
    "enabledLanguages": "enabled_languages",
    "requestWaitSeconds": "request_wait_seconds",
    "prependFilePath": "prepend_file_path",
    "backendUrl": "backend_url",
    "backendFields": "backend_fields",
    "invokedMaxNewTokens": "invoked_max_new_tokens",
    "timeBudgetMs": "time_budget_ms",
    "speculation": "speculation",
}


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("maxNewTokens", 0),
        ("maxNewTokens", "64"),
        ("maxNewTokens", True),
        ("maxLines", 2.5),
        ("topK", -1),
        ("temperature", -0.1),
        ("temperature", float("nan")),
        ("enabledLanguages", "python"),
        ("enabledLanguages", [1, 2]),
        ("requestWaitSeconds", "soon"),
        ("prependFilePath", "yes"),
        ("backendUrl", "gpu-box:8000"),
        ("backendUrl", 8000),
        ("backendFields", '{"repeat_penalty": 1.1}'),
        ("backendFields", {"max_tokens": 8}),
    ],
)
def test_invalid_value_keeps_the_previous_one(key: str, value: object) -> None:
    before = Settings(max_new_tokens=20, top_k=3)
    after, warnings = apply_settings(before, {key: value})
    assert len(warnings) == 1 and repr(key) in warnings[0]
    assert after == before
    assert f"keeping {getattr(before, FIELDS[key])!r}" in warnings[0]


def test_valid_values_apply_next_to_an_invalid_one() -> None:
    after, warnings = apply_settings(Settings(), {"maxLines": 5, "topK": "all"})
    assert after == Settings(max_lines=5) and len(warnings) == 1


def test_unknown_keys_are_reported() -> None:
    settings, warnings = apply_settings(Settings(), {"maxLines": 2, "colour": "blue"})
    assert settings.max_lines == 2
    assert warnings == ["unknown setting 'colour' ignored"]


@pytest.mark.parametrize("raw", [None, {"replitLsp": None}])
def test_nothing_to_apply(raw: object) -> None:
    assert apply_settings(Settings(), raw) == (Settings(), [])


def test_not_an_object() -> None:
    settings, warnings = apply_settings(Settings(), ["maxLines", 2])
    assert settings == Settings() and len(warnings) == 1
