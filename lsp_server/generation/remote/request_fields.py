"""The sampling fields of a completion request to an OpenAI-compatible server, so that the
server samples exactly as the user asked, and the extra fields a user adds for other servers.

OpenAI's API leaves much of sampling to the server, and the common ones fill the gaps with
their own choices: llama-cpp-python's server applies a repeat penalty of 1.1, min-p 0.05,
top-p 0.95 and top-k 40 to a request that does not set them; llama.cpp's `llama-server` its
command line's sampling options; vLLM the model's `generation_config.json` (repetition
penalty, top-k, top-p, min-p, temperature). A greedy request that left them out would get
another answer than the local engine gives. So every request names each such field, with the
user's value or the one that turns it off, as each server's request schema defines it. A
server ignores the fields it does not know (llama-cpp-python, vLLM and `replit-lsp --serve`
all drop unknown request fields), so one request suits them all.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from lsp_server.generation.sampling import WHOLE_VOCABULARY, GenerationParams

# The fields that turn off what a server would otherwise apply on its own.
NEUTRAL_FIELDS: dict[str, Any] = {
    # OpenAI's own, which llama.cpp and vLLM read too.
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
    # llama.cpp and vLLM: min-p.
    "min_p": 0.0,
    # llama.cpp (llama-cpp-python's server and llama-server).
    "repeat_penalty": 1.0,
    "typical_p": 1.0,
    "mirostat_mode": 0,  # llama-cpp-python's name
    "mirostat": 0,  # llama-server's name
    "dry_multiplier": 0.0,
    "xtc_probability": 0.0,
    "top_n_sigma": -1.0,
    # vLLM.
    "repetition_penalty": 1.0,
}

# top_k 0 means every token to llama.cpp, vLLM and `replit-lsp --serve`.
ALL_TOKENS = 0

# What the client itself decides for each request: extra fields may not replace them.
OWN_FIELDS = frozenset({"prompt", "stream", "stream_options", "model", "max_tokens"})


def sampling_fields(params: GenerationParams) -> dict[str, Any]:
    """The request fields that make a server sample as `params` say, and apply nothing else.

    Greedy is temperature 0 and top-k 1, which every server reads as the most likely token;
    sampled, top-k is the user's (every token for the whole vocabulary) and top-p too."""
    if params.greedy:
        chosen: dict[str, Any] = {"temperature": 0.0, "top_k": 1, "top_p": 1.0}
    else:
        top_k = ALL_TOKENS if params.top_k is WHOLE_VOCABULARY else params.top_k
        chosen = {"temperature": params.temperature, "top_k": top_k, "top_p": params.top_p}
    if params.seed is not None:
        chosen["seed"] = params.seed
    return {**NEUTRAL_FIELDS, **chosen}


def checked_extra_fields(value: object) -> dict[str, Any]:
    """`value` as extra request fields: an object whose keys are not the client's own.

    Raises ValueError saying what is wrong, for the caller to prefix with the option's name."""
    if not isinstance(value, Mapping):
        raise ValueError(f"must be a JSON object of request fields, got {value!r}")
    own = sorted(OWN_FIELDS.intersection(value))
    if own:
        raise ValueError(
            f"may not set {', '.join(own)}: the client sets {', '.join(sorted(OWN_FIELDS))} itself"
        )
    return {str(key): item for key, item in value.items()}


def parse_extra_fields(text: str) -> dict[str, Any]:
    """Extra request fields from JSON text (a command-line option)."""
    try:
        value = json.loads(text)
    except ValueError as error:
        raise ValueError(f"is not valid JSON ({error}): {text!r}") from None
    return checked_extra_fields(value)
