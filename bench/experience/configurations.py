"""The server settings compared: every latency feature on, every one off (the server as it
was before them), and each feature off alone on the trace it is for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Configuration:
    name: str
    settings: dict[str, Any]  # sent as the client's `replitLsp` settings
    traces: tuple[str, ...] | None = None  # those it runs on; None: every one

    def runs_on(self, trace: str) -> bool:
        return self.traces is None or trace in self.traces


BASELINE = "all off"
CONFIGURATIONS = (
    # First: the jump trace's pause in the other configurations is the one this one needed.
    Configuration("all on", {}),
    Configuration(
        BASELINE,
        {"prewarm": False, "recentSuggestions": 0, "prefetchOnAccept": False, "timeBudgetMs": 0},
    ),
    Configuration("prewarm off", {"prewarm": False}, ("jump",)),
    Configuration(
        "recentSuggestions 0", {"recentSuggestions": 0}, ("retyping", "accepting", "following")
    ),
    Configuration("prefetchOnAccept off", {"prefetchOnAccept": False}, ("accepting", "following")),
    Configuration("timeBudgetMs 0", {"timeBudgetMs": 0}, ("typing",)),
    # Drafting where the engine measures it to pay (on models large enough to speculate).
    Configuration("speculation off", {"speculation": False}, ("typing", "following")),
)
