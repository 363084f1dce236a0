"""Drafting the next tokens from the context itself (prompt lookup), for speculative decoding.

Code repeats itself: a suggestion often copies a name, a call or a whole line that is already
in the file. When the last few tokens also occur earlier, the tokens that followed them there
are a cheap guess at what follows now. The engine checks such a guess in one graph run over all
its tokens, which costs about one decode step because a step is bound by reading the weights,
and keeps the guessed tokens the model itself would have chosen. A wrong guess costs only the
extra rows of that run, never a different output.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# The longest and shortest runs of final tokens looked up. Three tokens rarely match by
# accident in code; one token still finds a draft after a name used once before.
MAX_NGRAM = 3
MIN_NGRAM = 1


def _latest_match(source: np.ndarray, tail: np.ndarray, limit: int) -> int | None:
    """Where the latest occurrence of `tail` in `source[:limit]` ends, if there is one."""
    n = len(tail)
    if limit < n:
        return None
    starts = np.ones(limit - n + 1, dtype=bool)
    for offset, token in enumerate(tail):
        starts &= source[offset : limit - n + 1 + offset] == token
    found = np.flatnonzero(starts)
    return int(found[-1]) + n if len(found) else None


def draft(
    history: Sequence[int],
    max_tokens: int,
    extra: Sequence[int] = (),
    *,
    max_ngram: int = MAX_NGRAM,
    min_ngram: int = MIN_NGRAM,
) -> list[int]:
    """Up to `max_tokens` tokens guessed to follow `history` (the prompt and what was
    generated so far): what followed the longest final n-gram of `history` where it occurred
    before, in `extra` (say the previous suggestion at this spot, which is searched first) or
    else earlier in `history` (its latest occurrence: nearby code is the likeliest copy).
    A copy from `history` that runs into its end goes on reading what it has copied, as
    LZ77 does, so that a repeating run (a token, a line) drafts whole periods of itself.
    Empty when no final n-gram occurs anywhere else."""
    if max_tokens < 1 or not history:
        return []
    past = np.asarray(history, dtype=np.int64)
    other = np.asarray(extra, dtype=np.int64)
    for n in range(min(max_ngram, len(past)), min_ngram - 1, -1):
        tail = past[-n:]
        # A match must end before its source's last token, so that a token follows it (and,
        # in `history`, so that it is not the tail itself).
        for source, limit in ((other, len(other) - 1), (past, len(past) - 1)):
            end = _latest_match(source, tail, limit)
            if end is None:
                continue
            copied = source[end : end + max_tokens].tolist()
            if source is past:
                while len(copied) < max_tokens:
                    copied.append(copied[len(copied) - (len(past) - end)])
            return copied
    return []
