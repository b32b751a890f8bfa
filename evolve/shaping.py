"""Fitness shaping: what turns the members' scores into the utilities that :meth:`OpenAIES.tell` weighs
their perturbations by. Kept apart from the ES (as evosax keeps its fitness shaper), so a run composes
the steps it wants in the order it wants and nothing is ranked twice (``evolve/run.py``, ``utility``).

- :func:`l2_penalty`: each member's ``l2 * mean(theta^2)``, in the fitness's own unit (m walked, or
  reward), to subtract from its fitness before any ranking.
- :func:`centred_ranks`: the paper's shaping, ranks scaled to [-0.5, 0.5].
- :func:`per_body_ranks`: centred ranks on each body among the members that walked it, averaged.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

from evolve.openai_es import Population


def centred_ranks(fitness: np.ndarray) -> np.ndarray:
    """Ranks scaled to [-0.5, 0.5]: invariant to the fitness scale and robust to outliers."""
    ranks = np.empty(fitness.size)
    ranks[np.argsort(fitness, kind="stable")] = np.arange(fitness.size)
    return ranks / max(fitness.size - 1, 1) - 0.5


def l2_penalty(population: Population, members: int, l2: float) -> np.ndarray:
    """``l2 * mean(theta^2)`` of each of the generation's ``members``, rebuilt from its pair's noise
    exactly as the worker built it (no member's parameters are ever shipped back). Zero without
    building them when ``l2`` is 0."""
    if not l2:
        return np.zeros(members)
    pairs = (population.pair_noise(pair) for pair in range(members // 2))
    return np.array(
        [
            l2 * np.mean(np.square(population.perturb(eps, sign), dtype=np.float64))
            for eps in pairs
            for sign in (1.0, -1.0)
        ]
    )


def per_body_ranks(bodies: Sequence[Sequence[Hashable]], fitness: Sequence[Sequence[float]]) -> np.ndarray:
    """Each member's fitness ranked among the members that walked the same body, averaged over its
    bodies (``fitness_shaping: per_body``). ``bodies[k]`` names member k's bodies, ``fitness[k]`` its
    fitness on each.

    Pooled, a body where every member walks about 1 m (a cut leg the walker has not solved) differs
    little between the two members of a pair next to the spread on the intact body, so its signal is
    lost in the ranks; ranked per body, every body a pair walked moves the mean as much as any other.
    The result is already a utility: ranking it again would spread members whose averages are close
    as far apart as any two and undo that weighting."""
    by_body: dict[Hashable, list[tuple[int, float]]] = {}
    for k, (names, scores) in enumerate(zip(bodies, fitness, strict=True)):
        for body, score in zip(names, scores, strict=True):
            by_body.setdefault(body, []).append((k, score))
    utility, count = np.zeros(len(bodies)), np.zeros(len(bodies))
    for entries in by_body.values():
        members, scores = zip(*entries, strict=True)
        utility[list(members)] += centred_ranks(np.array(scores))
        count[list(members)] += 1
    return utility / count
