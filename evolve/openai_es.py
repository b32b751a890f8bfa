"""OpenAI-ES: Salimans, Ho, Chen, Sidor & Sutskever, "Evolution Strategies as a Scalable Alternative to
Reinforcement Learning" (2017), as used by Najarro & Risi (NeurIPS 2020) to evolve Hebbian rules.

Mirrored Gaussian perturbations, centred-rank fitness shaping, an L2 penalty on the parameters, SGD
(the paper) or Adam, learning-rate decay and optional sigma decay to a floor.

Perturbations are never stored or shipped: member ``k`` of generation ``g`` is
``mean + sign(k) * sigma * eps(seed, g, k // 2)``, where ``eps`` is drawn from a counter-based
generator (Philox keyed by seed, generation and pair), so any worker or backend rebuilds any member
from the mean alone, and a resumed run draws exactly what an uninterrupted one would.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class ESParams:
    population: int = 64
    sigma: float = 0.1
    sigma_decay: float = 1.0
    sigma_min: float = 0.01
    lr: float = 0.05
    lr_decay: float = 0.999
    l2: float = 0.01
    optimizer: str = "sgd"  # "sgd" (the paper) or "adam"
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


def noise(seed: int, generation: int, pair: int, size: int) -> np.ndarray:
    """The perturbation direction of one mirrored pair (float32, standard normal)."""
    bits = np.random.Philox(np.random.SeedSequence([seed, generation, pair]))
    return np.random.Generator(bits).standard_normal(size, dtype=np.float32)


def member(state: ESState, seed: int, k: int) -> np.ndarray:
    """Parameters of member ``k`` (even k: +eps, odd k: -eps of pair k // 2)."""
    sign = 1.0 if k % 2 == 0 else -1.0
    eps = noise(seed, state.generation, k // 2, state.mean.size)
    return state.mean + np.float32(sign * state.sigma) * eps


def centred_ranks(fitness: np.ndarray) -> np.ndarray:
    """Ranks scaled to [-0.5, 0.5]: invariant to the fitness scale and robust to outliers."""
    ranks = np.empty(fitness.size)
    ranks[np.argsort(fitness, kind="stable")] = np.arange(fitness.size)
    return ranks / max(fitness.size - 1, 1) - 0.5


class OpenAIES:
    """ask/tell over an explicit :class:`ESState`."""

    def __init__(self, params: ESParams, seed: int) -> None:
        if params.population < 2 or params.population % 2:
            raise ValueError(
                f"population must be an even number >= 2 (mirrored pairs), got {params.population}"
            )
        if params.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be sgd or adam, got {params.optimizer!r}")
        self.params = params
        self.seed = seed

    def init(self, mean: np.ndarray) -> ESState:
        mean = np.asarray(mean, dtype=np.float32)
        zeros = np.zeros_like(mean)
        return ESState(mean, 0, self.params.lr, self.params.sigma, zeros, zeros.copy())

    def ask(self, state: ESState) -> list[np.ndarray]:
        """All members of this generation (local use; workers call :func:`member` themselves)."""
        return [member(state, self.seed, k) for k in range(self.params.population)]

    def tell(self, state: ESState, fitness: np.ndarray) -> ESState:
        """Move the mean along the rank-weighted perturbations; decay lr and sigma."""
        p = self.params
        fitness = np.asarray(fitness, dtype=np.float64)
        if fitness.shape != (p.population,):
            raise ValueError(f"expected {p.population} fitness values, got {fitness.shape}")
        # The L2 penalty of each member, recomputed from its seed like the member itself.
        penalised = fitness - p.l2 * np.array(
            [np.mean(np.square(member(state, self.seed, k), dtype=np.float64)) for k in range(p.population)]
        )
        shaped = centred_ranks(penalised)
        gradient = np.zeros_like(state.mean, dtype=np.float64)
        for pair in range(p.population // 2):
            eps = noise(self.seed, state.generation, pair, state.mean.size)
            gradient += (shaped[2 * pair] - shaped[2 * pair + 1]) * eps
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
