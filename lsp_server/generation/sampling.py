"""What a caller asks a generator for: how to pick tokens and how many, with "as much as
fits" and "every token of the vocabulary" as values of their own.

They are resolved here, once, against the generator's context and vocabulary: the model
then sees plain integers (`model.sampling.SamplingParams`), and a remote server the fields
its API defines for them.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass

from model.sampling import SamplingParams, check_prompt_fits, check_temperature_and_top_p


class AsMuchAsFits(enum.Enum):
    """A completion with no length limit of its own: it runs until the context is full."""

    AS_MUCH_AS_FITS = "as much as fits"


class WholeVocabulary(enum.Enum):
    """No top-k cut: every token of the vocabulary may be drawn."""

    WHOLE_VOCABULARY = "the whole vocabulary"


AS_MUCH_AS_FITS = AsMuchAsFits.AS_MUCH_AS_FITS
WHOLE_VOCABULARY = WholeVocabulary.WHOLE_VOCABULARY

TokenLimit = int | AsMuchAsFits
TopK = int | WholeVocabulary


def token_limit(value: int) -> TokenLimit:
    """A length limit as the command line and the editor settings spell it: -1 is as much
    as fits."""
    return AS_MUCH_AS_FITS if value == -1 else value


def new_token_budget(limit: TokenLimit, prompt_tokens: int, max_length: int) -> int:
    """How many tokens a completion of `prompt_tokens` may generate within a context of
    `max_length`: `limit`, or all the room left. Refuses a prompt that leaves no room."""
    check_prompt_fits(prompt_tokens, max_length)
    room = max_length - prompt_tokens
    return room if limit is AS_MUCH_AS_FITS else min(limit, room)


@dataclass(frozen=True)
class GenerationParams:
    """How to pick each next token and how many to generate.

    `top_k` 1 or `temperature` 0 is greedy. `seed` makes sampling reproducible per request.
    """

    max_new_tokens: TokenLimit = AS_MUCH_AS_FITS
    top_k: TopK = 1
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.max_new_tokens, int) and self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if isinstance(self.top_k, int) and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        check_temperature_and_top_p(self.temperature, self.top_p)

    @property
    def greedy(self) -> bool:
        return self.top_k == 1 or self.temperature == 0

    def within(self, vocab_size: int) -> GenerationParams:
        """The same parameters, with a top-k that reaches the vocabulary's size said as the
        whole vocabulary: what a server that reads top-k 0 as every token needs."""
        if isinstance(self.top_k, int) and self.top_k >= vocab_size:
            return dataclasses.replace(self, top_k=WHOLE_VOCABULARY)
        return self

    def resolved(self, prompt_tokens: int, max_length: int, vocab_size: int) -> SamplingParams:
        """The model's parameters for a prompt of `prompt_tokens` in a context of
        `max_length` over a vocabulary of `vocab_size` tokens."""
        return SamplingParams(
            max_new_tokens=new_token_budget(self.max_new_tokens, prompt_tokens, max_length),
            top_k=vocab_size if self.top_k is WHOLE_VOCABULARY else self.top_k,
            temperature=self.temperature,
            top_p=self.top_p,
            seed=self.seed,
        )
