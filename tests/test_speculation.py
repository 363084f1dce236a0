"""Speculative decoding: drafts from the context, checked in one verify run each.

The tokens must be those of plain greedy decoding (and of the independent float64 reference),
whether the drafts are kept or thrown away, and a rejected draft must leave nothing behind in
the cache. Graph runs are counted by the engine's counters, never timed.
"""

import numpy as np
import pytest

from lsp_server.generation.local import LocalGenerator
from lsp_server.generation.sampling import GenerationParams
from model.engine.drafting import draft
from model.engine.engine import Engine
from model.engine.options import EngineOptions, OptionError
from model.sampling import SamplingParams
from testkit.checkpoints import TINY_MAX_LENGTH

REPEATING = "def area(width, height):\n    return width * height\n\n\ndef area(width, height):\n"
PLAIN = "import os\nimport sys\n\nclass Stack:\n    def __init__(self):\n"


def relative_error(actual, expected):
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


def prefill_runs(generation):
    """The prompts here fit one prefill chunk: one run unless all but the last token were
    cached."""
    return int(generation.reused_tokens < generation.prompt_tokens - 1)


def agreeing_draft(prompt, expected):
    """Draft context that holds the model's own continuation after the prompt's last three
    tokens: as the previous suggestion at the same spot would."""
    return prompt[-3:] + expected


def run(engine, prompt, new_tokens, **options):
    with engine.generate(prompt, SamplingParams(max_new_tokens=new_tokens), **options) as g:
        tokens = list(g)
    return tokens, g


def run_with_agreeing_drafts(engine, reference, text, new_tokens):
    """The engine's greedy tokens after `text` with the reference's own continuation as
    draft context, the reference's tokens, and the generation's statistics."""
    prompt = engine.tokenizer.encode(text)
    expected = reference.greedy(prompt, new_tokens, engine.eos_id)
    draft_context = agreeing_draft(prompt, expected)
    tokens, generation = run(engine, prompt, new_tokens, draft_context=draft_context)
    return tokens, expected, generation


# ------------------------------------------------------------------ the drafter


def test_the_longest_final_ngram_decides_the_draft():
    # The last token 3 also follows 9 (a 1-gram match, later), but 1 2 3 occurred earlier.
    history = [1, 2, 3, 4, 5, 9, 3, 7, 1, 2, 3]
    assert draft(history, 2) == [4, 5]
    assert draft([8, 9, 3, 6, 4, 3, 5, 9, 3], 3) == [6, 4, 3]  # 9 3 before the later 3


def test_the_latest_occurrence_wins_and_a_copy_into_the_end_repeats_itself():
    history = [5, 1, 6, 6, 5, 1, 7, 5, 1]
    assert draft(history, 4) == [7, 5, 1, 7]
    assert draft([4, 4, 4], 3) == [4, 4, 4]  # a run of one token, whose match ends at the end
    assert draft([4, 4, 4], 3, extra=[4, 4, 4, 2]) == [2]  # extra's copy ends with extra


def test_extra_context_comes_first_unless_history_matches_longer():
    history = [4, 1, 2, 8, 8, 1, 2]
    assert draft(history, 2, extra=[2, 3, 3]) == [8, 8]  # 1 2 in history beats 2 in extra
    assert draft(history, 2, extra=[1, 2, 6, 6]) == [6, 6]  # equal length: extra first


def test_nothing_to_draft():
    assert draft([1, 2, 3], 4) == []  # no token occurs twice
    assert draft([1, 2, 1, 2], 0) == []
    assert draft([], 4) == []
    assert draft([7], 4, extra=[7]) == []  # a match at the end of extra has nothing after it


# ------------------------------------------------------------------ the engine


@pytest.fixture(scope="module")
def plain_engine(tiny_model_dir):
    """The session's tiny model again (loaded from the compiled-model cache), never
    speculating: the other side of every comparison below."""
    return Engine(
        EngineOptions(model_dir=tiny_model_dir, max_length=TINY_MAX_LENGTH, speculative_tokens=0)
    )


@pytest.mark.parametrize("text", [REPEATING, PLAIN])
def test_speculation_gives_plain_decodings_tokens(tiny_engine, plain_engine, tiny_reference, text):
    prompt = tiny_engine.tokenizer.encode(text)
    expected = tiny_reference.greedy(prompt, 24, tiny_engine.eos_id)
    spoken, speculative = run(tiny_engine, prompt, 24)
    plain, plain_generation = run(plain_engine, prompt, 24)
    assert spoken == plain == expected
    assert plain_generation.draft_tokens == 0
    # The random model soon repeats its own tokens, so drafts from its output are kept even
    # where the prompt does not repeat itself.
    assert speculative.accepted_tokens > 0


def test_a_draft_the_model_agrees_with_is_kept_in_few_runs(tiny_engine, tiny_reference):
    """The previous suggestion as draft context: when the model would write it again, each
    verify run keeps a whole draft and adds the model's next token."""
    tokens, expected, generation = run_with_agreeing_drafts(
        tiny_engine, tiny_reference, REPEATING, 16
    )
    assert tokens == expected
    assert generation.accepted_tokens > 0
    # Plain decoding takes one run per token; each verify run here keeps up to 4 + 1.
    assert generation.graph_runs - prefill_runs(generation) < len(tokens) / 2


def test_rejected_drafts_leave_the_cache_exact(tiny_engine, tiny_reference):
    prompt = tiny_engine.tokenizer.encode(PLAIN)
    expected = tiny_reference.greedy(prompt, 12, tiny_engine.eos_id)
    # Tokens the model does not choose after the prompt's last token: each run drafts them.
    wrong = [token for token in range(100, 130) if token not in expected][:8]
    tokens, generation = run(tiny_engine, prompt, 12, draft_context=prompt[-1:] + wrong)
    assert tokens == expected
    assert generation.draft_tokens > generation.accepted_tokens
    # The next request reuses that slot: all but its newest token come from the cache that
    # the verify runs wrote, and its logits are the reference's.
    context = prompt + tokens
    before = tiny_engine.counters
    logits = tiny_engine.logits(context)
    assert tiny_engine.counters.computed_tokens - before.computed_tokens == 1
    assert relative_error(logits, tiny_reference.logits(context)[-1]) < 1e-4


def test_drafts_shrink_to_fit_the_end_of_the_context(tiny_engine, plain_engine):
    """A run never writes past the cache: with room for three tokens a first draft has at
    most two, and with room for one there is no draft, only a plain decode step."""
    text = "x = 1\n" * 200
    for room in (3, 1):
        prompt = tiny_engine.tokenizer.encode(text)[: TINY_MAX_LENGTH - room]
        before = tiny_engine.counters
        tokens, generation = run(tiny_engine, prompt, 16)
        plain, _ = run(plain_engine, prompt, 16)
        assert tokens == plain
        assert len(tokens) <= room
        verify_runs = tiny_engine.counters.verify_runs - before.verify_runs
        if room == 1:
            assert generation.draft_tokens == verify_runs == 0
        else:
            assert 0 < generation.draft_tokens <= 2 * verify_runs


def test_cancellation_mid_verify_stops_at_the_next_token(tiny_engine, tiny_reference):
    prompt = tiny_engine.tokenizer.encode(REPEATING)
    expected = tiny_reference.greedy(prompt, 16, tiny_engine.eos_id)
    seen: list[int] = []
    params = SamplingParams(max_new_tokens=16)
    with tiny_engine.generate(
        prompt, params, lambda: len(seen) >= 2, draft_context=agreeing_draft(prompt, expected)
    ) as generation:
        seen.extend(generation)
    # One verify run chose several tokens; the flag stopped the generation after two.
    assert generation.graph_runs == prefill_runs(generation) + 1
    assert seen == expected[:2]
    assert generation.finish_reason == "cancelled"
    context = prompt + seen
    assert relative_error(tiny_engine.logits(context), tiny_reference.logits(context)[-1]) < 1e-4


def test_counters_and_stats_count_verify_runs_and_accepted_tokens(tiny_engine, tiny_reference):
    prompt = tiny_engine.tokenizer.encode(REPEATING)
    expected = tiny_reference.greedy(prompt, 16, tiny_engine.eos_id)
    before = tiny_engine.counters
    stream = LocalGenerator(tiny_engine).stream_text(
        prompt, GenerationParams(max_new_tokens=16), draft_context=agreeing_draft(prompt, expected)
    )
    with stream:
        stream.text()
    after = tiny_engine.counters
    stats = stream.stats
    assert stats.accepted_tokens > 0
    assert after.graph_runs - before.graph_runs == stats.graph_runs
    assert after.draft_tokens - before.draft_tokens == stats.draft_tokens
    assert after.accepted_tokens - before.accepted_tokens == stats.accepted_tokens
    verify_runs = after.verify_runs - before.verify_runs
    prefill = int(stats.reused_tokens < len(prompt) - 1)
    decode_runs = stats.graph_runs - verify_runs - prefill
    assert verify_runs > 0 and decode_runs >= 0
    # Each decode step and verify run chose one token besides the drafted ones it kept (the
    # end-of-text token, if chosen, is not a generated one).
    chosen = stats.generated_tokens + (stats.finish_reason == "stop")
    assert chosen == decode_runs + verify_runs + stats.accepted_tokens
    computed = len(prompt) - 1 - stats.reused_tokens + decode_runs + verify_runs
    assert after.computed_tokens - before.computed_tokens == computed + stats.draft_tokens


def test_sampled_and_switched_off_generations_do_not_draft(tiny_engine):
    prompt = tiny_engine.tokenizer.encode(REPEATING)
    sampled = SamplingParams(max_new_tokens=8, top_k=5, seed=1)
    with tiny_engine.generate(prompt, sampled) as generation:
        list(generation)
    assert generation.draft_tokens == 0
    _, switched_off = run(tiny_engine, prompt, 8, speculate=False, draft_context=prompt)
    assert switched_off.draft_tokens == 0
    assert switched_off.graph_runs >= len(switched_off.tokens)


def test_a_negative_draft_length_is_refused(tiny_model_dir):
    with pytest.raises(OptionError, match="speculative_tokens must be at least 0"):
        Engine(EngineOptions(model_dir=tiny_model_dir, speculative_tokens=-1))
