"""Fitness shaping apart from the ES: centred ranks, per-body ranks, the L2 penalty, and how a run
composes them (ranked once, the penalty in the fitness's unit in both modes)."""

from __future__ import annotations

import numpy as np
import pytest

from evolve.config import make_config
from evolve.fitness import Job, Result
from evolve.openai_es import ESParams, OpenAIES, Population
from evolve.run import utility
from evolve.shaping import centred_ranks, l2_penalty, per_body_ranks

BODIES = [[], ["cut-leg:3"]]


def test_centred_ranks_are_invariant_to_monotone_transforms():
    f = np.array([3.0, -100.0, 7.0, 0.5])
    np.testing.assert_allclose(centred_ranks(f), [1 / 6, -0.5, 0.5, -1 / 6])
    for transform in (lambda x: 1e6 * x + 3, np.cbrt, lambda x: np.exp(x / 10), lambda x: x**3 - 40):
        np.testing.assert_array_equal(centred_ranks(f), centred_ranks(transform(f)))
    assert centred_ranks(f).sum() == pytest.approx(0)


def test_per_body_ranks_weigh_every_body_alike():
    """Member 1 walks the intact body 1 m further and the cut body 0.5 m less: pooled, its mean wins;
    ranked per body, member 0 wins (the cut body's half metre counts as much as the intact metre). A
    body's scale is lost: the cut body's differences multiplied by 1000 or by 0.001 give the same."""
    bodies = [((), ("cut-leg:3",)), ((), ("cut-leg:3",)), ((),), ((),)]
    fitness = [(30.0, 1.0), (31.0, 0.5), (25.0,), (26.0,)]
    utility = per_body_ranks(bodies, fitness)
    # intact: ranked among all four; cut leg 3: among members 0 and 1 only
    assert utility == pytest.approx([(1 / 6 + 0.5) / 2, (0.5 - 0.5) / 2, -0.5, -1 / 6])
    assert np.mean(fitness[1]) > np.mean(fitness[0]) and utility[0] > utility[1]
    for scale in (1e3, 1e-3):
        scaled = [(f[0], f[1] * scale) if len(f) == 2 else f for f in fitness]
        np.testing.assert_array_equal(per_body_ranks(bodies, scaled), utility)


def _population(members: int = 6) -> Population:
    es = OpenAIES(ESParams(population=members, sigma=0.5), seed=3)
    return es.population(es.init(np.linspace(-2, 2, 30)))


def test_l2_penalty_is_each_members_mean_square_rebuilt_from_the_population():
    population = _population()
    penalty = l2_penalty(population, 6, 0.25)
    expected = [0.25 * np.mean(np.square(population.member(k), dtype=np.float64)) for k in range(6)]
    np.testing.assert_array_equal(penalty, expected)
    assert len(set(penalty)) == 6  # every member its own
    np.testing.assert_array_equal(l2_penalty(population, 6, 0.0), np.zeros(6))


def _results(per_body: list[tuple[float, ...]]) -> list[Result]:
    return [Result(f, float(np.mean(f)), 100, 0, 0.0) for f in per_body]


def _jobs(members: int) -> list[Job]:
    return [Job(k, tuple(tuple(b) for b in BODIES), (7,)) for k in range(members)]


@pytest.mark.parametrize("shaping", ["pooled", "per_body"])
def test_l2_penalty_lowers_the_member_with_larger_parameters_in_both_modes(shaping):
    """Equal fitness on every body: only the penalty ranks the members, the larger parameters lowest."""
    population = _population()
    config = make_config({"population": 6, "l2": 0.01, "fitness_shaping": shaping, "train_damages": BODIES})
    shaped = utility(config, population, _jobs(6), _results([(3.0, 1.0)] * 6))
    size = [np.mean(np.square(population.member(k), dtype=np.float64)) for k in range(6)]
    np.testing.assert_array_equal(np.argsort(shaped), np.argsort(size)[::-1])


@pytest.mark.parametrize("shaping", ["pooled", "per_body"])
def test_l2_penalty_weighs_in_metres_in_both_modes(shaping):
    """A member walking further than another by less than its extra penalty ranks below it, by more
    ranks above it, in either mode: the penalty trades against metres walked, not against rank units
    (subtracted from per-body ranks, a penalty gap of a few hundredths could never overturn the whole
    rank gap that any walking difference makes)."""
    population = _population(2)
    config = make_config({"population": 2, "l2": 0.1, "fitness_shaping": shaping, "train_damages": BODIES})
    penalty = l2_penalty(population, 2, 0.1)
    big, small = np.argsort(penalty)[::-1]
    gap = penalty[big] - penalty[small]
    for lead, big_wins in ((0.9 * gap, False), (1.1 * gap, True)):
        fitness = [(3.0, 1.0), (3.0, 1.0)]
        fitness[big] = (3.0 + lead, 1.0 + lead)
        shaped = utility(config, population, _jobs(2), _results(fitness))
        assert (shaped[big] > shaped[small]) == big_wins


def test_per_body_utility_is_ranked_once():
    """Without the penalty the per-body mode's utilities are the per-body ranks themselves, uneven gaps
    and all (ranked again, they would be evenly spaced); the pooled mode's are the centred ranks of the
    members' means."""
    fitness = [(30.0, 1.0), (31.0, 0.5), (29.0, 0.9), (30.5, 0.7)]
    values = {"population": 4, "l2": 0.0, "train_damages": BODIES}
    jobs, results, population = _jobs(4), _results(fitness), _population(4)
    per_body = utility(make_config({**values, "fitness_shaping": "per_body"}), population, jobs, results)
    np.testing.assert_array_equal(per_body, per_body_ranks([j.morphologies for j in jobs], fitness))
    assert sorted(per_body) != pytest.approx(sorted(centred_ranks(per_body)))
    pooled = utility(make_config({**values, "fitness_shaping": "pooled"}), population, jobs, results)
    np.testing.assert_array_equal(pooled, centred_ranks(np.array([r.fitness for r in results])))
