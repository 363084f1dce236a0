"""What one option of replit-lsp is: the row of the table in `lsp_server/options.py` that
the command line, the editor settings and the HTTP server read."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, dataclass
from typing import Any

# Marks an option whose setting's default is its flag's.
_FLAG_DEFAULT: Any = object()


@dataclass(frozen=True)
class Option:
    """One option: `name` is the field it fills (the parsed argument, the `Settings` field,
    the engine's option), so each front door can find its flag or setting name here."""

    name: str
    type: type
    default: Any
    help: str
    _: KW_ONLY
    flag: str | None = None
    setting: str | None = None
    # The setting's default where it is not the flag's: the command line's -1 leaves the
    # completion length open, an editor's suggestion needs one.
    setting_default: Any = _FLAG_DEFAULT
    group: str | None = None  # the --help section of a flag
    env: str | None = None  # the environment variable that gives the flag's default
    choices: tuple[str, ...] | None = None
    parse: Callable[[str], Any] | None = None  # reads the flag's argument where `type` cannot
    metavar: str | None = None

    def __post_init__(self) -> None:
        if self.setting_default is _FLAG_DEFAULT:
            object.__setattr__(self, "setting_default", self.default)

    @property
    def shown_default(self) -> str | None:
        """The flag's default as `--help` writes it; None where there is none to show (an
        absent value, a switch that is off)."""
        if self.env is not None:
            return f"${self.env}"
        if self.default is None or self.default is False:
            return None
        if isinstance(self.default, Mapping | tuple):
            return json.dumps(json_value(self.default))
        return str(self.default)


def json_value(value: Any) -> Any:
    """A default as an editor's JSON declares it: lists for tuples, objects for mappings."""
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    return value
