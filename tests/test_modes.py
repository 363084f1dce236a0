"""The mode flags: every combination is one mode, or refused with the reason."""

from __future__ import annotations

import itertools

import pytest

from lsp_server.modes import Mode, ModeConflict, NoMode, choose_mode


@pytest.mark.parametrize(
    ("flags", "mode"),
    [
        ({"prompt": "x"}, Mode.PROMPT),
        ({"stdio": True}, Mode.STDIO),
        ({"tcp": True}, Mode.TCP),
        ({"serve": True}, Mode.SERVE),
        ({"stdio": True, "serve": True}, Mode.STDIO_SERVE),
        ({"tcp": True, "serve": True}, Mode.TCP_SERVE),
    ],
)
def test_each_mode(flags: dict[str, object], mode: Mode) -> None:
    given = {"prompt": None, "stdio": False, "tcp": False, "serve": False} | flags
    assert choose_mode(**given) is mode  # type: ignore[arg-type]


def test_what_each_mode_runs() -> None:
    runs = {mode: (mode.transport, mode.serves_http) for mode in Mode}
    assert runs == {
        Mode.PROMPT: (None, False),
        Mode.STDIO: ("stdio", False),
        Mode.TCP: ("tcp", False),
        Mode.SERVE: (None, True),
        Mode.STDIO_SERVE: ("stdio", True),
        Mode.TCP_SERVE: ("tcp", True),
    }


def test_every_other_combination_is_refused() -> None:
    allowed = 0
    for prompt, stdio, tcp, serve in itertools.product((None, "x"), *[(False, True)] * 3):
        try:
            choose_mode(prompt, stdio, tcp, serve)
            allowed += 1
        except ModeConflict as conflict:
            if stdio and tcp:
                assert "--stdio and --tcp cannot be combined" in str(conflict)
            else:
                assert "--prompt completes once and exits" in str(conflict)
        except NoMode as missing:
            assert (prompt, stdio, tcp, serve) == (None, False, False, False)
            assert str(missing) == "give --prompt TEXT, --stdio, --tcp or --serve"
    assert allowed == len(Mode)
