"""OpenAI-ES on its own: it optimises, and every member can be rebuilt from (mean, sigma, seed, sign)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evolve.openai_es import ESParams, ESState, OpenAIES
from evolve.shaping import centred_ranks

DIMS = 100
SHIFT = np.random.default_rng(7).uniform(-2.0, 2.0, DIMS).astype(np.float32)


def sphere(x: np.ndarray) -> np.ndarray:
    """Maximum 0 at SHIFT."""
    return -np.sum((x - SHIFT) ** 2, axis=-1)


def rastrigin(x: np.ndarray) -> np.ndarray:
    """Shifted Rastrigin, negated: maximum 0 at SHIFT, a local optimum at every other integer offset."""
    z = x - SHIFT
    return -(10 * DIMS + np.sum(z * z - 10 * np.cos(2 * np.pi * z), axis=-1))


def optimise(objective, generations: int, params: ESParams, seed: int = 0) -> ESState:
    es = OpenAIES(params, seed)
    state = es.init(np.zeros(DIMS))
    for _ in range(generations):
        state = es.tell(state, centred_ranks(objective(np.array(es.ask(state)))))
    return state


def test_sgd_finds_the_sphere_optimum():
    """The paper's plain SGD. Start: f = -134 (distance 11.6); tolerance: f >= -0.01 (distance <= 0.1)."""
    params = ESParams(population=50, sigma=0.1, sigma_decay=0.99, sigma_min=0.001, lr=0.2, lr_decay=0.98)
    state = optimise(sphere, 300, params)
    assert sphere(state.mean) >= -0.01


def test_adam_finds_the_shifted_rastrigin_optimum():
    """100-D Rastrigin has ~10^100 local optima. A wide sigma smooths them away (the ES ascends the
    Gaussian-smoothed fitness, which for sigma > 0.5 has one optimum), then sigma shrinks onto the
    global one. Start: f = -1176; tolerance: f >= -0.01, i.e. every coordinate in the global basin."""
    params = ESParams(
        population=400, sigma=3.0, sigma_decay=0.995, sigma_min=0.001, lr=0.1, lr_decay=0.993,
        optimizer="adam",
    )  # fmt: skip
    state = optimise(rastrigin, 900, params)
    assert rastrigin(state.mean) >= -0.01
    assert np.abs(state.mean - SHIFT).max() < 0.01


def test_members_are_mirrored_and_rebuilt_from_the_population_alone():
    es = OpenAIES(ESParams(population=6, sigma=0.5), seed=11)
    state = es.init(np.linspace(-1, 1, 1000))
    members = es.ask(state)
    population = es.population(state)
    for k, m in enumerate(members):
        assert np.array_equal(m, population.member(k))
    for plus, minus in zip(members[::2], members[1::2], strict=True):
        np.testing.assert_allclose(plus + minus, 2 * state.mean, atol=1e-5)
    # A different generation or seed draws different noise.
    later = OpenAIES(es.params, 11).tell(state, np.arange(6.0))
    assert not np.allclose(
        OpenAIES(es.params, 11).population(later).member(0) - later.mean, members[0] - state.mean
    )
    assert not np.allclose(OpenAIES(es.params, 12).ask(state)[0], members[0])


def test_tell_moves_the_mean_by_the_utility_weighted_noise_and_ranks_nothing():
    """SGD: the mean moves by exactly lr / (population * sigma) * sum_k u_k * eps_k for the utilities as
    given. Utilities that are not ranks (uneven gaps, one far out) would move it otherwise if tell ranked
    them; scaling them scales the step."""
    es = OpenAIES(ESParams(population=6, sigma=0.3, lr=0.07), seed=5)
    state = es.init(np.linspace(-1, 1, 40))
    population = es.population(state)
    eps = [(-1) ** k * population.pair_noise(k // 2).astype(np.float64) for k in range(6)]
    utility = np.array([0.9, -0.01, 0.0, 25.0, -3.0, 0.02])
    step = es.tell(state, utility).mean - state.mean
    expected = 0.07 / (6 * 0.3) * sum(u * e for u, e in zip(utility, eps, strict=True))
    np.testing.assert_allclose(step, expected, rtol=1e-5, atol=1e-6)
    doubled = es.tell(state, 2 * utility).mean - state.mean
    np.testing.assert_allclose(doubled, 2 * expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_state_round_trips_through_json_and_arrays_exactly(optimizer):
    """The checkpoint format: scalars as JSON, arrays as arrays; tell() after a round trip is identical."""
    es = OpenAIES(ESParams(population=8, sigma_decay=0.97, optimizer=optimizer), seed=3)
    state = es.tell(es.init(np.ones(30)), np.arange(8.0))
    values = state.to_dict()
    scalars = json.loads(json.dumps({k: v for k, v in values.items() if not isinstance(v, np.ndarray)}))
    restored = ESState.from_dict({**values, **scalars})
    fitness = np.sin(np.arange(8.0))
    a, b = es.tell(state, fitness), es.tell(restored, fitness)
    for key, value in a.to_dict().items():
        assert np.array_equal(value, b.to_dict()[key]), key
    assert a.sigma == pytest.approx(0.1 * 0.97**2) and a.lr == pytest.approx(0.05 * 0.999**2)


def test_rejects_an_odd_population():
    with pytest.raises(ValueError, match="even"):
        OpenAIES(ESParams(population=5), seed=0)
