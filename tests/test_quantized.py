"""The engine on Q8_0 and Q4_0 weights against the float64 reference on the same blocks.

The reference widens the blocks from the formats' definition (`testkit.reference`), so its
weights are exactly those the kernels multiply by: what remains is float32 arithmetic and the
order of its sums, held to the float32 engine's tolerance. One engine per format, for the
session; the GGUF engine shares its compiled model.
"""

from dataclasses import replace

import numpy as np
import pytest

from model.engine.engine import Engine
from model.engine.options import EngineOptions, OptionError
from model.engine.speculation import SPECULATIVE_TOKENS, DraftPlan
from model.sampling import SamplingParams
from model.weights.encodings import ENCODINGS
from model.weights.gguf_export import export_gguf
from model.weights.quantized_cache import FROM_CACHE, FROM_CHECKPOINT, QUANTIZED_NOW
from testkit.checkpoints import TINY_MAX_LENGTH, make_random_checkpoint
from testkit.reference import ReferenceMPT
from tests.test_engine import PROMPTS, relative_error
from tests.test_speculation import PLAIN, REPEATING, run_with_agreeing_drafts

BLOCK_ENCODINGS = ("q8_0", "q4_0")


@pytest.fixture(scope="module", params=BLOCK_ENCODINGS)
def quantized(request, tiny_model_dir) -> tuple[Engine, ReferenceMPT]:
    options = EngineOptions(
        model_dir=tiny_model_dir,
        quantization_encoding=request.param,
        max_length=TINY_MAX_LENGTH,
        max_cache_batch_size=1,
    )
    return Engine(options), ReferenceMPT(tiny_model_dir, blocks=request.param)


def test_block_encodings_are_offered_to_every_front_door():
    assert set(BLOCK_ENCODINGS) <= set(ENCODINGS)


def test_prefill_and_every_decode_step_match_the_reference(quantized):
    engine, reference = quantized
    ids = engine.tokenizer.encode(PROMPTS[1])
    full = reference.logits(ids)
    assert relative_error(engine.logits(ids), full[-1]) < 1e-4
    for end in range(2, len(ids) + 1):  # each step a decode of one token after the last
        assert relative_error(engine.logits(ids[:end]), full[end - 1]) < 1e-4


def test_greedy_continuation_equals_the_reference(quantized):
    engine, reference = quantized
    ids = engine.tokenizer.encode(PROMPTS[0])
    with engine.generate(ids, SamplingParams(max_new_tokens=16)) as generation:
        tokens = list(generation)
    assert tokens == reference.greedy(ids, 16, engine.eos_id)


@pytest.mark.parametrize("text", [REPEATING, PLAIN])
def test_speculation_on_the_blocks_gives_the_greedy_text(quantized, text):
    """Blocks draft by default only as much as measured to pay (a verify run's rows cost
    integer products each), and asked for a length, draft it every run; either way they give
    plain greedy decoding's tokens, drafts kept or not."""
    engine, reference = quantized
    assert engine.drafts == DraftPlan(SPECULATIVE_TOKENS, measured=True)
    tokens, expected, _ = run_with_agreeing_drafts(engine, reference, text, 24)
    assert tokens == expected
    speculating = Engine(replace(engine.options, speculative_tokens=3))  # the compiled model
    assert speculating.drafts == DraftPlan(3, measured=False)
    tokens, expected, generation = run_with_agreeing_drafts(speculating, reference, text, 24)
    assert tokens == expected
    assert generation.accepted_tokens > 0


def test_a_gguf_in_the_blocks_gives_identical_logits(quantized, tiny_model_dir, tmp_path):
    engine, _ = quantized
    encoding = engine.options.quantization_encoding
    gguf_dir = tmp_path / "gguf"
    gguf_dir.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (gguf_dir / name).write_bytes((tiny_model_dir / name).read_bytes())
    export_gguf(tiny_model_dir, gguf_dir / "replit.gguf", encoding)
    options = EngineOptions(
        model_dir=gguf_dir, quantization_encoding=encoding, max_length=TINY_MAX_LENGTH
    )
    from_gguf = Engine(options)
    assert from_gguf.compile_source == "cache"
    assert from_gguf.weights_source == FROM_CHECKPOINT
    ids = engine.tokenizer.encode(PROMPTS[2])
    np.testing.assert_array_equal(from_gguf.logits(ids), engine.logits(ids))


def test_a_restart_reads_the_blocks_quantized_at_the_first_start(quantized):
    engine, _ = quantized
    assert engine.weights_source == QUANTIZED_NOW  # the fixture's checkpoint is new
    restarted = Engine(engine.options)
    assert restarted.weights_source == FROM_CACHE
    ids = engine.tokenizer.encode(PROMPTS[2])
    np.testing.assert_array_equal(restarted.logits(ids), engine.logits(ids))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"quantization_encoding": "q5_k"}, "must be one of float32, bfloat16, q8_0, q4_0"),
        ({"use_gpu": True}, "q8_0 runs on the CPU kernels only; the GPU"),
    ],
)
def test_encodings_the_graph_cannot_take_are_refused_before_compiling(
    tiny_model_dir, changes, message
):
    options = EngineOptions(model_dir=tiny_model_dir, quantization_encoding="q8_0")
    with pytest.raises(OptionError, match=message):
        Engine(EngineOptions(**{**options.__dict__, **changes}))


def test_rows_that_are_not_whole_blocks_are_refused_before_compiling(tmp_path):
    ragged = make_random_checkpoint(tmp_path / "ragged", d_model=72, n_heads=6, vocab_size=300)
    with pytest.raises(OptionError, match="not a whole number of 32-blocks"):
        Engine(EngineOptions(model_dir=ragged, quantization_encoding="q4_0"))
