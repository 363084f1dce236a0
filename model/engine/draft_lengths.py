"""How many drafted tokens each verify run checks.

A verify run of n drafts costs more than a decode step wherever its extra rows are not free
(integer block products compute every row, on most CPUs at a cost near a step's), and it pays
only when enough of its drafts are kept. `MeasuredLengths` chooses the length with the most
tokens per second: a run of n drafts, each kept with probability p once those before it were,
yields 1 + p + ... + p^n tokens, in the seconds the engine measured for runs of n + 1 rows.
p is estimated over the engine's generations, recent runs counting most (the keystrokes at one
place draft alike), from verify runs and from the decode steps that left a draft unchecked
(whether its first token was the model's choice is known after the step, at no cost), so that
once drafting stops it is seen when drafts would pay again. `FixedLengths` drafts as much as
it may, for a length asked for outright.
"""

from __future__ import annotations

from typing import Protocol

# Weight of a new measurement in the running average of a run's seconds.
SECONDS_WEIGHT = 0.2
# How much of the acceptance estimate each new observation keeps of the older ones.
ACCEPTANCE_DECAY = 0.8
# The estimate before any observation: one kept and one rejected drafted token, so p = 0.5.
PRIOR_KEPT = 1.0
PRIOR_TRIED = 2.0


class RunSeconds:
    """Running averages of a decode or verify run's seconds by its rows, engine-wide.

    A row count's first run is not averaged in: it includes the graph's first-execution
    set-up, which would make a verify length look dearer than it is for good."""

    def __init__(self) -> None:
        self._seconds: dict[int, float] = {}
        self._seen: set[int] = set()

    def record(self, rows: int, seconds: float) -> None:
        if rows not in self._seen:
            self._seen.add(rows)
            return
        old = self._seconds.get(rows)
        self._seconds[rows] = seconds if old is None else old + SECONDS_WEIGHT * (seconds - old)

    def estimate(self, rows: int) -> float | None:
        return self._seconds.get(rows)


class DraftLengths(Protocol):
    """The choice of how many drafted tokens each run checks."""

    limit: int

    def choose(self, drafted: int) -> int:
        """How many of the `drafted` tokens on offer the next run checks (0: a decode step)."""
        ...

    def observe(self, drafted: list[int], checked: int, chosen: list[int]) -> None:
        """What the run showed: it had `drafted` on offer, checked the first `checked` of
        them and chose `chosen`."""
        ...


class FixedLengths:
    """Every draft on offer, up to `limit`, is checked."""

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def choose(self, drafted: int) -> int:
        return min(drafted, self.limit)

    def observe(self, drafted: list[int], checked: int, chosen: list[int]) -> None:
        pass


# For generations that do not speculate (sampled ones, or with speculation off).
NO_DRAFTS = FixedLengths(0)


class MeasuredLengths:
    """The length with the most expected tokens per measured second, up to `limit`."""

    def __init__(self, limit: int, seconds: RunSeconds) -> None:
        self.limit = limit
        self._seconds = seconds
        self._kept = PRIOR_KEPT
        self._tried = PRIOR_TRIED

    @property
    def acceptance(self) -> float:
        """The estimated chance that a drafted token is kept once those before it were."""
        return self._kept / self._tried

    def choose(self, drafted: int) -> int:
        step = self._seconds.estimate(1)
        if step is None:  # nothing to compare a verify run with yet
            return 0
        p = self.acceptance
        best, best_rate = 0, 1 / step
        for n in range(1, min(drafted, self.limit) + 1):
            # A length not yet measured is guessed at a step's cost, so that it is tried.
            seconds = self._seconds.estimate(n + 1) or step
            rate = sum(p**i for i in range(n + 1)) / seconds
            if rate > best_rate:
                best, best_rate = n, rate
        return best

    def observe(self, drafted: list[int], checked: int, chosen: list[int]) -> None:
        if checked:
            kept = len(chosen) - 1
            self._add(kept, kept + (kept < checked))
        elif drafted and chosen:
            self._add(int(chosen[0] == drafted[0]), 1)

    def _add(self, kept: int, tried: int) -> None:
        self._kept = self._kept * ACCEPTANCE_DECAY + kept
        self._tried = self._tried * ACCEPTANCE_DECAY + tried
