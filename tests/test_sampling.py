import numpy as np
import pytest

from model.sampling import Sampler, SamplingParams


def test_greedy_is_argmax():
    logits = np.array([0.1, 3.0, -2.0, 2.9], dtype=np.float32)
    assert Sampler(SamplingParams(max_new_tokens=1))(logits) == 1
    assert Sampler(SamplingParams(max_new_tokens=1, top_k=50, temperature=0.0))(logits) == 1


def test_top_k_only_draws_from_the_k_best_and_is_reproducible_with_a_seed():
    logits = np.arange(100, dtype=np.float32) / 10
    draws = [Sampler(SamplingParams(max_new_tokens=1, top_k=3, seed=s))(logits) for s in range(200)]
    assert set(draws) == {97, 98, 99}
    again = [Sampler(SamplingParams(max_new_tokens=1, top_k=3, seed=s))(logits) for s in range(200)]
    assert draws == again


def test_temperature_sharpens_and_flattens():
    logits = np.array([2.0, 1.0, 0.0], dtype=np.float32)
    cold = Sampler(SamplingParams(max_new_tokens=1, top_k=3, temperature=0.05, seed=0))
    assert {cold(logits) for _ in range(100)} == {0}
    hot = Sampler(SamplingParams(max_new_tokens=1, top_k=3, temperature=100.0, seed=0))
    assert {hot(logits) for _ in range(300)} == {0, 1, 2}


def test_top_p_cuts_the_tail():
    logits = np.log(np.array([0.6, 0.3, 0.1], dtype=np.float32))
    sampler = Sampler(SamplingParams(max_new_tokens=1, top_k=3, top_p=0.5, seed=1))
    assert {sampler(logits) for _ in range(100)} == {0}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"top_k": 0},
        {"temperature": -1.0},
        {"top_p": 0.0},
        {"max_new_tokens": 0},
        {"max_new_tokens": -2},
        {"temperature": float("nan")},
    ],
)
def test_invalid_parameters_are_refused(kwargs):
    with pytest.raises(ValueError):
        SamplingParams(**({"max_new_tokens": 1} | kwargs))


@pytest.mark.parametrize("temperature", [1e-310, 5e-324, 1e-300, 1e-30, 2.0, float("inf")])
def test_every_accepted_temperature_gives_a_valid_draw(temperature):
    """A subnormal temperature once scaled the logits to inf and their softmax to NaN."""
    logits = np.array([1.5, 3.0, -2.0, 2.999, 3.0], dtype=np.float32)
    sampler = Sampler(SamplingParams(max_new_tokens=1, top_k=5, temperature=temperature, seed=0))
    draws = {sampler(logits) for _ in range(50)}
    if temperature < 1e-20:
        assert draws <= {1, 4}  # only the (tied) best logits survive a tiny temperature
    else:
        assert len(draws) > 1
