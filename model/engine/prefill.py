"""What bringing a prompt into the cache with no generation did, as the engine reports it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Prefill:
    """`reused_tokens` of the prompt were cached already, `computed_tokens` were sent through
    the graph, and `complete` says whether it got to the end before it was cancelled (the
    prompt's last token is left for the generation that follows, as in every prefill)."""

    prompt_tokens: int
    reused_tokens: int
    computed_tokens: int
    complete: bool
