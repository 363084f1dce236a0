"""How many generated cases the robustness tests run, and from which seed.

`make test` runs a small, fixed set (derandomized, so a failure reproduces); a broader run
sets `REPLIT_LSP_ROBUSTNESS_EXAMPLES` (cases per property) and `REPLIT_LSP_ROBUSTNESS_SEED`
(any integer: a different set of cases).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

from hypothesis import HealthCheck, seed, settings

EXAMPLES = int(os.environ.get("REPLIT_LSP_ROBUSTNESS_EXAMPLES", "25"))
SEED = os.environ.get("REPLIT_LSP_ROBUSTNESS_SEED")

F = TypeVar("F", bound=Callable[..., Any])


def robustness(examples: int = EXAMPLES) -> Callable[[F], F]:
    """The settings of one property: `examples` cases, no per-case deadline (the server is
    one process shared by every case), derandomized unless a seed is given."""

    def decorate(test: F) -> F:
        configured = settings(
            max_examples=examples,
            deadline=None,
            derandomize=SEED is None,
            database=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )(test)
        return configured if SEED is None else seed(int(SEED))(configured)

    return decorate
