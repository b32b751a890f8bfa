"""OpenAI-ES: Salimans, Ho, Chen, Sidor & Sutskever, "Evolution Strategies as a Scalable Alternative to
Reinforcement Learning" (arXiv 1703.03864, 2017), as used by Najarro & Risi, "Meta-Learning through
Hebbian Plasticity in Random Networks" (NeurIPS 2020) to evolve Hebbian rules.

Mirrored Gaussian perturbations, SGD (the paper) or Adam, learning-rate decay and optional sigma decay
to a floor. :meth:`OpenAIES.tell` takes utilities already shaped: the paper's centred ranks and L2
penalty are in ``evolve/shaping.py``, composed by the caller (``evolve/run.py``).

Perturbations are never stored or shipped: member ``k`` of generation ``g`` is
``mean + sign(k) * sigma * eps(seed, g, k // 2)``, where ``eps`` is drawn from a counter-based
generator (Philox keyed by seed, generation and pair), so any worker or backend rebuilds any member
from a :class:`Population` (mean, sigma, generation, seed), and a resumed run draws exactly what an
uninterrupted one would.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from evolve.settings import FRACTION, POSITIVE, Valid, at_least, check, one_of, setting

# Upper bounds sit far above any run here (population 200) and below what would exhaust memory.
MAX_POPULATION = 10_000


@dataclass(frozen=True)
class ESParams:
    """The search's settings, each with its valid values (the run config's ES keys take both from here)."""

    population: int = setting(
        64,
        Valid(
            lambda v: 2 <= v <= MAX_POPULATION and v % 2 == 0,
            f"an even number 2-{MAX_POPULATION} (mirrored pairs)",
        ),
    )
    sigma: float = setting(0.1, POSITIVE)
    sigma_decay: float = setting(1.0, FRACTION)
    sigma_min: float = setting(0.01, at_least(0))
    lr: float = setting(0.05, POSITIVE)
    lr_decay: float = setting(0.999, FRACTION)
    optimizer: str = setting("sgd", one_of(("sgd", "adam")))  # sgd: the paper's
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8


@dataclass(frozen=True)
class ESState:
    """Everything the search needs to continue: save it and a resumed run is the same run."""

    mean: np.ndarray
    generation: int
    lr: float
    sigma: float
    adam_m: np.ndarray
    adam_v: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        """Arrays and plain scalars (exact: float64 scalars round-trip through JSON)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ESState:
        return cls(
            mean=np.asarray(values["mean"], dtype=np.float32),
            generation=int(values["generation"]),
            lr=float(values["lr"]),
            sigma=float(values["sigma"]),
            adam_m=np.asarray(values["adam_m"], dtype=np.float32),
            adam_v=np.asarray(values["adam_v"], dtype=np.float32),
        )


@dataclass(frozen=True)
class Population:
    """What a worker needs to rebuild any member of one generation (no optimiser state)."""

    mean: np.ndarray
    sigma: float
    generation: int
    seed: int

    def pair_noise(self, pair: int) -> np.ndarray:
        return noise(self.seed, self.generation, pair, self.mean.size)

    def member(self, k: int) -> np.ndarray:
        """Parameters of member ``k`` (even k: +eps, odd k: -eps of pair k // 2)."""
        return self.perturb(self.pair_noise(k // 2), 1.0 if k % 2 == 0 else -1.0)

    def perturb(self, eps: np.ndarray, sign: float) -> np.ndarray:
        return self.mean + np.float32(sign * self.sigma) * eps


def noise(seed: int, generation: int, pair: int, size: int) -> np.ndarray:
    """The perturbation direction of one mirrored pair (float32, standard normal)."""
    bits = np.random.Philox(np.random.SeedSequence([seed, generation, pair]))
    return np.random.Generator(bits).standard_normal(size, dtype=np.float32)


class OpenAIES:
    """ask/tell over an explicit :class:`ESState`; the object itself holds only constants."""

    def __init__(self, params: ESParams, seed: int) -> None:
        check(params)  # an Invalid (a ValueError) naming the field
        if seed < 0:  # the noise generator's seed words are unsigned
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.params = params
        self.seed = seed

    def init(self, mean: np.ndarray) -> ESState:
        mean = np.asarray(mean, dtype=np.float32)
        zeros = np.zeros_like(mean)
        return ESState(mean, 0, self.params.lr, self.params.sigma, zeros, zeros.copy())

    def population(self, state: ESState) -> Population:
        """The current generation, in the compact form sent to workers."""
        return Population(state.mean, state.sigma, state.generation, self.seed)

    def ask(self, state: ESState) -> list[np.ndarray]:
        """All members of this generation (for local use; workers rebuild their own members)."""
        population = self.population(state)
        pairs = (population.pair_noise(pair) for pair in range(self.params.population // 2))
        return [population.perturb(eps, sign) for eps in pairs for sign in (1.0, -1.0)]

    def tell(self, state: ESState, utility: np.ndarray) -> ESState:
        """Move the mean along the perturbations weighted by each member's ``utility`` (already shaped:
        nothing is ranked here); decay lr and sigma. With SGD the mean moves by
        ``lr / (population * sigma) * sum_k utility_k * eps_k``, eps_k the member's signed noise."""
        p = self.params
        utility = np.asarray(utility, dtype=np.float64)
        if utility.shape != (p.population,):
            raise ValueError(f"expected {p.population} utilities, got {utility.shape}")
        population = self.population(state)
        gradient = np.zeros_like(state.mean, dtype=np.float64)
        for pair in range(p.population // 2):
            gradient += (utility[2 * pair] - utility[2 * pair + 1]) * population.pair_noise(pair)
        gradient /= p.population * state.sigma
        m, v = state.adam_m, state.adam_v
        if p.optimizer == "adam":
            t = state.generation + 1
            m = (p.adam_beta1 * m + (1 - p.adam_beta1) * gradient).astype(np.float32)
            v = (p.adam_beta2 * v + (1 - p.adam_beta2) * gradient**2).astype(np.float32)
            m_hat = m / (1 - p.adam_beta1**t)
            v_hat = v / (1 - p.adam_beta2**t)
            step = state.lr * m_hat / (np.sqrt(v_hat) + p.adam_eps)
        else:
            step = state.lr * gradient
        return replace(
            state,
            mean=(state.mean + step).astype(np.float32),
            generation=state.generation + 1,
            lr=state.lr * p.lr_decay,
            sigma=max(p.sigma_min, state.sigma * p.sigma_decay),
            adam_m=m,
            adam_v=v,
        )
