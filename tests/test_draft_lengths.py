"""Choosing how many drafted tokens a verify run checks, from run costs and kept drafts.

The costs here are recorded by hand, so that each choice follows from the expected tokens
per second computed in the test: 1 + p + ... + p^n tokens for n drafts, p the chance that a
drafted token is kept.
"""

from model.engine.draft_lengths import FixedLengths, MeasuredLengths, RunSeconds

STEP = 0.1  # seconds of a decode step


def costs(**rows_seconds: float) -> RunSeconds:
    """Run seconds with `r1=...`, `r2=...` recorded twice each (a first run is set-up)."""
    seconds = RunSeconds()
    for name, value in rows_seconds.items():
        for _ in range(2):
            seconds.record(int(name[1:]), value)
    return seconds


def keep(lengths: MeasuredLengths, draft: list[int], times: int) -> None:
    """`times` verify runs that checked all of `draft` and kept it."""
    for _ in range(times):
        lengths.observe(draft, len(draft), [*draft, 99])


def miss(lengths: MeasuredLengths, times: int) -> None:
    """`times` verify runs whose first drafted token was rejected."""
    for _ in range(times):
        lengths.observe([5, 6], 2, [7])


def test_a_first_run_of_a_row_count_is_not_averaged_in():
    seconds = RunSeconds()
    seconds.record(1, 5.0)  # the first execution, with its set-up
    assert seconds.estimate(1) is None
    seconds.record(1, 0.1)
    seconds.record(1, 0.2)
    assert 0.1 < seconds.estimate(1) < 0.2


def test_nothing_is_drafted_before_a_step_is_measured():
    assert MeasuredLengths(4, RunSeconds()).choose(4) == 0


def test_drafts_kept_often_pay_for_a_dear_verify_run():
    # 2 rows at 1.5 steps, 3 at 1.9, 4 at 2.3, 5 at 2.7.
    seconds = [STEP, 0.15, 0.19, 0.23, 0.27]
    lengths = MeasuredLengths(4, costs(r1=STEP, r2=0.15, r3=0.19, r4=0.23, r5=0.27))
    keep(lengths, [1, 2, 3, 4], 10)
    p = lengths.acceptance
    assert p > 0.9
    rates = [sum(p**i for i in range(n + 1)) / s for n, s in enumerate(seconds)]
    assert lengths.choose(4) == max(range(5), key=rates.__getitem__) == 4
    assert lengths.choose(2) == 2  # no more than on offer


def test_drafts_kept_seldom_are_not_checked():
    lengths = MeasuredLengths(4, costs(r1=STEP, r2=0.15, r3=0.19, r4=0.23, r5=0.27))
    miss(lengths, 6)
    assert lengths.acceptance < 0.2
    assert lengths.choose(4) == 0


def test_a_verify_run_about_as_cheap_as_a_step_is_worth_even_a_poor_draft():
    lengths = MeasuredLengths(4, costs(r1=STEP, r2=0.101, r3=0.102, r4=0.103, r5=0.104))
    miss(lengths, 2)
    keep(lengths, [1], 1)
    assert 0.1 < lengths.acceptance < 0.5
    assert lengths.choose(4) == 4


def test_a_length_not_yet_measured_is_tried():
    lengths = MeasuredLengths(4, costs(r1=STEP, r2=0.3))
    assert lengths.choose(1) == 0  # 1 draft measured at 3 steps: not worth it at p = 0.5
    assert lengths.choose(4) == 4  # 4 drafts never measured: guessed at a step's cost


def test_steps_that_left_a_draft_unchecked_show_when_drafts_would_pay_again():
    lengths = MeasuredLengths(4, costs(r1=STEP, r2=0.15, r3=0.19, r4=0.23, r5=0.27))
    miss(lengths, 6)
    assert lengths.choose(4) == 0
    for _ in range(8):  # decode steps whose choice was the draft's first token
        lengths.observe([3, 4, 5, 6], 0, [3])
    assert lengths.acceptance > 0.8
    assert lengths.choose(4) > 0
    for _ in range(8):  # and steps whose choice was not
        lengths.observe([3, 4, 5, 6], 0, [8])
    assert lengths.choose(4) == 0


def test_a_step_with_nothing_drafted_tells_nothing():
    lengths = MeasuredLengths(4, costs(r1=STEP))
    before = lengths.acceptance
    lengths.observe([], 0, [3])
    assert lengths.acceptance == before


def test_a_length_asked_for_is_drafted_as_asked():
    lengths = FixedLengths(3)
    lengths.observe([5, 6], 2, [7])
    assert (lengths.choose(4), lengths.choose(2), FixedLengths(0).choose(4)) == (3, 2, 0)
