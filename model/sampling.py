"""Top-k (and optional top-p) sampling with temperature over one row of logits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def check_temperature_and_top_p(temperature: float, top_p: float) -> None:
    """Refuses a temperature or top-p that no draw can use: whoever takes sampling
    parameters from a user checks them here, before any generation starts."""
    if not temperature >= 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")


def check_prompt_fits(prompt_tokens: int, max_length: int) -> None:
    """Refuses a prompt that leaves no room for a token in a context of `max_length`: the
    engine's cache, or a remote server's context as the command line gives it."""
    if prompt_tokens < 1:
        raise ValueError("the prompt must contain at least one token")
    if prompt_tokens >= max_length:
        raise ValueError(
            f"the prompt has {prompt_tokens} tokens; at most {max_length - 1} fit "
            f"in a context of {max_length}"
        )


@dataclass(frozen=True)
class SamplingParams:
    """How the engine picks each next token, and how many it may generate, in plain numbers:
    the caller has already decided what "as much as fits" or "every token" come to.

    `top_k` 1 or `temperature` 0 is greedy; a `top_k` of the vocabulary's size or more draws
    from every token. The engine also stops where its context is full. `seed` makes sampling
    reproducible per request.
    """

    max_new_tokens: int
    top_k: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        check_temperature_and_top_p(self.temperature, self.top_p)

    @property
    def greedy(self) -> bool:
        return self.top_k == 1 or self.temperature == 0


class Sampler:
    def __init__(self, params: SamplingParams) -> None:
        self.params = params
        self._rng = np.random.default_rng(params.seed)

    def __call__(self, logits: np.ndarray) -> int:
        p = self.params
        if p.greedy:
            return int(np.argmax(logits))
        k = min(p.top_k, logits.shape[-1])
        top = np.argpartition(logits, -k)[-k:]
        top = top[np.argsort(-logits[top], kind="stable")]
        # The best logit is subtracted before dividing: every scaled value is then <= 0, so a
        # subnormal temperature sends the others to -inf (probability 0), never inf - inf = NaN.
        shifted = logits[top].astype(np.float64) - float(logits[top[0]])
        with np.errstate(over="ignore"):
            probs = np.exp(shifted / p.temperature)
        probs /= probs.sum()
        if p.top_p < 1:
            keep = np.searchsorted(np.cumsum(probs), p.top_p) + 1
            probs = probs[:keep] / probs[:keep].sum()
            top = top[:keep]
        return int(top[self._rng.choice(len(top), p=probs)])
