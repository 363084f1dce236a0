"""The compiled MAX model against the independent float64 reference, and the KV cache."""

import shutil
import threading

import numpy as np
import pytest

from model.engine.compiled import CompileError, SerializedModelError
from model.engine.engine import Engine
from model.engine.execution import relative_positions
from model.engine.options import EngineOptions
from model.engine.slots import common_prefix_length
from model.graph.options import GraphOptions
from model.sampling import SamplingParams
from model.weights.gguf_export import export_gguf
from testkit.checkpoints import TINY_MAX_LENGTH, make_random_checkpoint
from testkit.reference import ReferenceMPT

PROMPTS = [
    "def fibonacci(n):\n    ",
    "import os\nimport sys\n\nclass Stack:\n    def __init__(self):\n",
    "x",
]


def relative_error(actual, expected):
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


def test_relative_positions_hold_alibi_offsets_and_the_causal_mask():
    rel = relative_positions(start=2, count=2)
    assert rel.tolist() == [[-2, -1, 0, -np.inf], [-3, -2, -1, 0]]


@pytest.mark.parametrize("text", PROMPTS)
def test_float32_logits_match_the_reference(tiny_engine, tiny_reference, text):
    ids = tiny_engine.tokenizer.encode(text)
    assert relative_error(tiny_engine.logits(ids), tiny_reference.logits(ids)[-1]) < 1e-4


def test_every_decode_step_matches_the_reference(tiny_engine, tiny_reference):
    ids = tiny_engine.tokenizer.encode(PROMPTS[1])
    full = tiny_reference.logits(ids + list(range(40, 52)))
    with tiny_engine.generate(ids, SamplingParams(max_new_tokens=1)) as generation:
        list(generation)
    # Feed the forced tokens one at a time: each call reuses all but the newest token.
    for step in range(12):
        context = ids + list(range(40, 40 + step))
        logits = tiny_engine.logits(context)
        assert relative_error(logits, full[len(context) - 1]) < 1e-4


def test_decode_with_one_op_per_product_matches_the_reference(tiny_model_dir, tiny_reference):
    """Blocks too large to fuse decode through `replit_gemv` and `replit_decode_attention`."""
    unfused = GraphOptions(fused_block_bytes=0)
    engine = Engine(
        EngineOptions(model_dir=tiny_model_dir, max_length=TINY_MAX_LENGTH, graph=unfused)
    )
    ids = engine.tokenizer.encode(PROMPTS[1])
    full = tiny_reference.logits(ids + list(range(40, 46)))
    for step in range(6):
        context = ids + list(range(40, 40 + step))
        assert relative_error(engine.logits(context), full[len(context) - 1]) < 1e-4


@pytest.mark.parametrize("bfloat16_dot", [False, True], ids=["gemv", "matmul"])
def test_bfloat16_decode_with_one_op_per_product_stays_close_to_the_reference(
    tiny_model_dir, bfloat16_dot
):
    """The full-size model's bfloat16 decode: one-row products by `replit_gemv`, or by
    `replit_matmul` (its widening path where the CPU lacks AVX-512 BF16), within the bfloat16
    bound of `test_bfloat16_weights_stay_close_to_the_reference` at every step."""
    graph = GraphOptions(fused_block_bytes=0, bfloat16_dot=bfloat16_dot)
    engine = Engine(
        EngineOptions(
            model_dir=tiny_model_dir,
            max_length=TINY_MAX_LENGTH,
            quantization_encoding="bfloat16",
            graph=graph,
        )
    )
    reference = ReferenceMPT(tiny_model_dir, round_to_bfloat16=True)
    ids = engine.tokenizer.encode(PROMPTS[1])
    full = reference.logits(ids + list(range(40, 46)))
    for step in range(6):
        context = ids + list(range(40, 40 + step))
        assert relative_error(engine.logits(context), full[len(context) - 1]) < 2e-2


@pytest.mark.parametrize("text", PROMPTS)
def test_greedy_continuation_equals_the_reference(tiny_engine, tiny_reference, text):
    ids = tiny_engine.tokenizer.encode(text)
    with tiny_engine.generate(ids, SamplingParams(max_new_tokens=16)) as generation:
        tokens = list(generation)
    assert tokens == tiny_reference.greedy(ids, 16, tiny_engine.eos_id)
    assert generation.finish_reason in ("length", "stop")


def test_prefix_reuse_is_exact_and_keeps_generated_tokens(tiny_model_dir, tiny_engine):
    fresh = Engine(
        EngineOptions(model_dir=tiny_model_dir, max_length=TINY_MAX_LENGTH, prefix_reuse=False)
    )
    base = tiny_engine.tokenizer.encode("def add(a, b):\n    return a + b\n\n\ndef sub(")
    with tiny_engine.generate(base, SamplingParams(max_new_tokens=8)) as first:
        suggestion = list(first)
    # Accepting the suggestion and typing on: the prompt extends what the slot already holds.
    typed = base + suggestion[:5] + tiny_engine.tokenizer.encode("\n")
    with tiny_engine.generate(typed, SamplingParams(max_new_tokens=10)) as reused:
        with_reuse = list(reused)
    with fresh.generate(typed, SamplingParams(max_new_tokens=10)) as scratch:
        from_scratch = list(scratch)
    assert reused.reused_tokens == len(base) + 5
    assert scratch.reused_tokens == 0
    assert with_reuse == from_scratch
    np.testing.assert_allclose(tiny_engine.logits(typed), fresh.logits(typed), rtol=0, atol=1e-4)


def test_counters_count_graph_runs_and_the_tokens_sent_through_them(tiny_engine):
    """Plain decoding's counts (speculation's are in tests/test_speculation.py)."""
    prompt = tiny_engine.tokenizer.encode("class Counter:\n    def __init__(self):\n")
    params = SamplingParams(max_new_tokens=6)
    before = tiny_engine.counters
    with tiny_engine.generate(prompt, params, speculate=False) as first:
        generated = list(first)
    after_first = tiny_engine.counters
    # Decode runs one graph per new token; the prompt's uncached part is one prefill run.
    steps = len(generated) + (first.finish_reason == "stop")
    prefill_runs = 1 if first.reused_tokens < len(prompt) - 1 else 0
    assert after_first.graph_runs - before.graph_runs == prefill_runs + steps
    computed = len(prompt) - 1 - first.reused_tokens + steps
    assert after_first.computed_tokens - before.computed_tokens == computed
    # The same prompt again: its K/V are cached, so only the decode steps run.
    with tiny_engine.generate(prompt, params, speculate=False) as again:
        assert list(again) == generated
    assert again.reused_tokens == len(prompt) - 1
    assert tiny_engine.counters.graph_runs - after_first.graph_runs == steps


def test_a_prompt_longer_than_one_prefill_chunk_matches_the_reference(tiny_model_dir):
    long_engine = Engine(EngineOptions(model_dir=tiny_model_dir, max_length=1024))
    reference = ReferenceMPT(tiny_model_dir)
    ids = long_engine.tokenizer.encode("value = compute(value)\n" * 120)[:700]
    assert relative_error(long_engine.logits(ids), reference.logits(ids)[-1]) < 1e-4


def test_least_recently_used_slot_is_evicted(tiny_engine):
    # tiny_engine has two slots.
    a, b, c = (tiny_engine.tokenizer.encode(t) for t in ("alpha = 1\n", "beta = 2\n", "gamma\n"))

    def reused(ids):
        with tiny_engine.generate(ids, SamplingParams(max_new_tokens=1)) as generation:
            list(generation)
        return generation.reused_tokens

    reused(a), reused(b)
    assert reused(a) == len(a) - 1  # a is cached; b is now the least recently used
    assert reused(c) == 0  # evicts b
    assert reused(a) == len(a) - 1
    assert reused(b) == 0


def test_concurrent_generations_equal_sequential_ones(tiny_engine):
    prompts = [tiny_engine.tokenizer.encode(t) for t in PROMPTS]
    expected = []
    for ids in prompts:
        with tiny_engine.generate(ids, SamplingParams(max_new_tokens=12)) as generation:
            expected.append(list(generation))
    results: dict[int, list[int]] = {}

    def run(index):
        with tiny_engine.generate(prompts[index], SamplingParams(max_new_tokens=12)) as g:
            results[index] = list(g)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(prompts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert [results[i] for i in range(len(prompts))] == expected


def test_cancellation_stops_at_the_next_token(tiny_engine):
    ids = tiny_engine.tokenizer.encode(PROMPTS[0])
    seen = []
    with tiny_engine.generate(ids, SamplingParams(max_new_tokens=50), lambda: len(seen) >= 3) as g:
        seen.extend(g)
    assert len(seen) == 3
    assert g.finish_reason == "cancelled"


def test_prompts_that_do_not_fit_are_refused(tiny_engine):
    with pytest.raises(ValueError, match="at least one token"):
        tiny_engine.generate([], SamplingParams(max_new_tokens=1))
    with pytest.raises(ValueError, match=f"at most {TINY_MAX_LENGTH - 1} fit"):
        tiny_engine.generate([5] * TINY_MAX_LENGTH, SamplingParams(max_new_tokens=1))


def test_generation_stops_at_the_context_length(tiny_engine):
    ids = tiny_engine.tokenizer.encode("x = 1\n" * 200)[: TINY_MAX_LENGTH - 4]
    with tiny_engine.generate(ids, SamplingParams(max_new_tokens=TINY_MAX_LENGTH)) as generation:
        tokens = list(generation)
    assert len(tokens) <= 4
    assert generation.finish_reason in ("length", "stop")


def test_serialized_model_round_trips_without_compiling(tiny_model_dir, tiny_engine, tmp_path):
    path = tmp_path / "tiny.mef"
    saver = Engine(
        EngineOptions(model_dir=tiny_model_dir, max_length=64, save_to_serialized_model_path=path)
    )
    assert path.is_file()
    loaded = Engine(
        EngineOptions(model_dir=tiny_model_dir, max_length=64, serialized_model_path=path)
    )
    assert loaded.compile_source == "serialized"
    ids = tiny_engine.tokenizer.encode(PROMPTS[0])
    np.testing.assert_array_equal(loaded.logits(ids), saver.logits(ids))

    other = make_random_checkpoint(tmp_path / "other", n_layers=1)
    with pytest.raises(SerializedModelError, match="compiled for a different model config"):
        Engine(EngineOptions(model_dir=other, max_length=64, serialized_model_path=path))
    with pytest.raises(SerializedModelError, match="serialized model not found"):
        Engine(EngineOptions(model_dir=other, serialized_model_path=tmp_path / "none.mef"))


def test_compiled_models_are_cached_on_disk(tiny_model_dir, tmp_path):
    cache = tmp_path / "compiled"
    first = Engine(EngineOptions(model_dir=tiny_model_dir, max_length=64, cache_dir=cache))
    second = Engine(EngineOptions(model_dir=tiny_model_dir, max_length=64, cache_dir=cache))
    assert first.compile_source == "compiled"
    assert second.compile_source == "cache"
    assert len(list(cache.glob("*.mef"))) == 1


def test_gguf_and_safetensors_give_identical_logits(tiny_model_dir, tiny_engine, tmp_path):
    gguf_dir = tmp_path / "gguf"
    gguf_dir.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_model_dir / name, gguf_dir / name)
    export_gguf(tiny_model_dir, gguf_dir / "replit.gguf")
    from_gguf = Engine(EngineOptions(model_dir=gguf_dir, max_length=TINY_MAX_LENGTH))
    ids = tiny_engine.tokenizer.encode(PROMPTS[1])
    np.testing.assert_array_equal(from_gguf.logits(ids), tiny_engine.logits(ids))


def test_bfloat16_weights_stay_close_to_the_reference(tiny_model_dir):
    """bf16 keeps 8 significant bits: the activations fed to each matmul are rounded too
    (relative error up to 2^-9 each), over two layers' seven matmuls each. The reference uses
    the same rounded weights in float64, so what remains is that activation rounding, measured
    at 0.4-0.6% of the logit range; 2% bounds it with a margin."""
    engine = Engine(
        EngineOptions(
            model_dir=tiny_model_dir, max_length=TINY_MAX_LENGTH, quantization_encoding="bfloat16"
        )
    )
    reference = ReferenceMPT(tiny_model_dir, round_to_bfloat16=True)
    for text in PROMPTS:
        ids = engine.tokenizer.encode(text)
        expected = reference.logits(ids)[-1]
        actual = engine.logits(ids)
        assert relative_error(actual, expected) < 2e-2
        assert np.argmax(actual) in np.argsort(expected)[-3:]


def test_a_failed_compile_is_an_error_with_the_compilers_words(
    tiny_model_dir, tmp_path, monkeypatch
):
    """The compiler runs in a child process: its failure reaches the caller as CompileError
    (which the front doors report) instead of ending the server."""
    monkeypatch.setattr("model.engine.compiled.sys.executable", shutil.which("false"))
    options = EngineOptions(model_dir=tiny_model_dir, max_length=64, cache_dir=tmp_path / "cache")
    with pytest.raises(CompileError, match=r"compiling the model graph failed \(exit code 1\)"):
        Engine(options)
    assert not list((tmp_path / "cache").glob("*.mef"))


def test_a_prefill_caches_the_prompt_so_its_generation_computes_only_what_follows(
    tiny_engine, tiny_reference
):
    prompt = tiny_engine.tokenizer.encode("def prefilled(a, b):\n    total = a + b\n" * 3)
    params = SamplingParams(max_new_tokens=5)
    done = tiny_engine.prefill(prompt, lambda: False, chunk=8)
    assert done.complete and done.computed_tokens + done.reused_tokens == len(prompt) - 1
    before = tiny_engine.counters
    with tiny_engine.generate(prompt, params, speculate=False) as warm:
        tokens = list(warm)
    assert warm.reused_tokens == len(prompt) - 1
    steps = len(tokens) + (warm.finish_reason == "stop")
    assert tiny_engine.counters.computed_tokens - before.computed_tokens == steps
    assert tokens == tiny_reference.greedy(prompt, 5, tiny_engine.eos_id)


def test_a_cancelled_prefill_stops_after_the_chunk_in_progress(tiny_engine):
    prompt = tiny_engine.tokenizer.encode("class Stopped:\n    value = 1\n" * 4)
    checks = []

    def cancelled() -> bool:
        checks.append(True)
        return len(checks) > 1  # let one chunk run, then stop

    stopped = tiny_engine.prefill(prompt, cancelled, chunk=4)
    assert not stopped.complete
    assert stopped.computed_tokens == min(4, len(prompt) - 1 - stopped.reused_tokens)


def test_a_prompt_sharing_only_its_start_with_a_cached_one_leaves_it_cached(tiny_engine):
    """Two files whose prompts begin with the same header line: asking in one must not wipe
    the other's cache for the few tokens they share (tiny_engine has two slots)."""
    header = "# project/package/module.py\n"
    long = tiny_engine.tokenizer.encode(header + "def double(a):\n    return a * 2\n\n\n" * 4)
    other = tiny_engine.tokenizer.encode(header + "class Other:\n    pass\n")
    shared = common_prefix_length(long, other)
    assert 0 < shared < len(long) // 4

    def reused(ids):
        with tiny_engine.generate(ids, SamplingParams(max_new_tokens=1)) as generation:
            list(generation)
        return generation.reused_tokens

    reused(long)
    assert reused(other) < len(other) - 1
    assert reused(long) == len(long) - 1
    # A prompt that shares most of the cached one still takes its slot (a backspace).
    assert reused(long[:-2]) == len(long) - 3
