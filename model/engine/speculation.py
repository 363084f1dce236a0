"""Speculative decoding: how many drafted tokens a verify run checks, and which it keeps.

Greedy generation speculates: where the last tokens occur earlier in the context, the tokens
that followed them there (`model.engine.drafting`) are checked in one verify run with the last
accepted token, and every drafted token that equals the model's own greedy choice is kept,
plus the model's choice after the last one kept. A decode step is bound by reading the
weights, so such a run can cost little more than a step and yield several tokens; how many
drafts each run checks is `model.engine.draft_lengths`'s choice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from max.driver import Device
from max.dtype import DType

from model.config import ModelConfig
from model.engine.draft_lengths import DraftLengths, FixedLengths, MeasuredLengths, RunSeconds
from model.graph.ops import decodes_whole_blocks
from model.graph.options import GraphOptions
from model.sampling import Sampler

# Drafted tokens checked per verify run where speculation is on by default.
SPECULATIVE_TOKENS = 4


@dataclass(frozen=True)
class DraftPlan:
    """The most drafted tokens a verify run checks (0: no speculation), and whether each
    run's length is chosen from measured costs (`MeasuredLengths`) or is the most on offer."""

    limit: int
    measured: bool

    def lengths(self, seconds: RunSeconds) -> DraftLengths:
        """The engine's lengths, which its generations share (measured: what they learn)."""
        if self.measured and self.limit:
            return MeasuredLengths(self.limit, seconds)
        return FixedLengths(self.limit)


def draft_plan(
    asked: int | None,
    config: ModelConfig,
    dtype: DType,
    device: Device,
    graph: GraphOptions,
) -> DraftPlan:
    """`asked` drafted tokens a run, always; else the default for the graph that decodes: none
    where each block decodes as one kernel (a small model, where the verify run's many ops
    cost more than the steps it saves), and otherwise up to SPECULATIVE_TOKENS, each run's
    length chosen from what runs cost and what drafts keep on this machine: float weights read
    op by op give verify runs of a few rows at about a step's cost, while every row of a Q8_0
    or Q4_0 verify run costs its own integer products, so that only drafts kept often pay."""
    if asked is not None:
        return DraftPlan(asked, measured=False)
    if decodes_whole_blocks(config, dtype, device, graph):
        return DraftPlan(0, measured=False)
    return DraftPlan(SPECULATIVE_TOKENS, measured=True)


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
