"""Speculative decoding: how many drafted tokens a verify run checks, and which it keeps.

Greedy generation speculates: where the last tokens occur earlier in the context, the tokens
that followed them there (`model.engine.drafting`) are checked in one verify run with the last
accepted token, and every drafted token that equals the model's own greedy choice is kept,
plus the model's choice after the last one kept. A decode step is bound by reading the
weights, so such a run costs about one step and can yield several tokens.
"""

from __future__ import annotations

import numpy as np
from max.driver import Device
from max.dtype import DType

from model.config import ModelConfig
from model.graph.ops import decodes_whole_blocks
from model.graph.options import GraphOptions
from model.sampling import Sampler

# Drafted tokens checked per verify run where speculation is on by default.
SPECULATIVE_TOKENS = 4


def speculative_tokens(
    asked: int | None,
    config: ModelConfig,
    dtype: DType,
    device: Device,
    graph: GraphOptions,
) -> int:
    """`asked`, else the default for the graph that decodes: SPECULATIVE_TOKENS where a decode
    step reads the weights op by op (a large model, where a verify run of a few rows costs
    about one step); 0 where each block decodes as one kernel (a small model, where the verify
    run's many ops cost more than the steps it saves, though it needs fewer graph runs); and 0
    for Q8_0 and Q4_0 blocks, where every row of a verify run past the first costs its own
    integer products, so that even drafts that agree make decoding slower, the more so the
    more tokens are drafted."""
    if asked is not None:
        return asked
    fused = decodes_whole_blocks(config, dtype, device, graph)
    blocks = graph.block_format is not None
    return 0 if fused or blocks else SPECULATIVE_TOKENS


def accepted_choices(
    guess: list[int], rows: np.ndarray, sample: Sampler, eos_id: int | None
) -> list[int]:
    """The tokens one run chose: row i's choice follows the input before it and the drafted
    tokens up to i, so the choices are kept up to the first that differs from the draft (or
    is the end of text). One more than the drafted tokens accepted."""
    chosen: list[int] = []
    for row in rows:
        chosen.append(sample(row))
        if len(chosen) > len(guess) or chosen[-1] != guess[len(chosen) - 1]:
            break
        if chosen[-1] == eos_id:
            break
    return chosen
