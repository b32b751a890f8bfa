"""The paper's fitness: distance walked, averaged over morphologies and lifetimes.

A :class:`Job` names what to evaluate (an ES member rebuilt from its seed, or the mean itself), on
which damaged bodies and with which lifetime seeds. An :class:`Evaluator` lives in a worker and keeps
one environment per morphology and its network buffers alive between jobs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import sim
from controller.genome import Genome
from controller.loop import EarlyStop, run_lifetime
from controller.network import NetworkSpec
from evolve.config import Config
from evolve.openai_es import ESState, member


@dataclass(frozen=True)
class Job:
    member: int | None  # ES member index, or None for the mean genome
    morphologies: tuple[tuple[str, ...], ...]  # damages of each body to average over
    seeds: tuple[int, ...]  # one lifetime per seed on each body


@dataclass(frozen=True)
class Result:
    fitness: float
    env_steps: int
    fell: int


def network_spec(config: Config, obs_size: int, action_size: int) -> NetworkSpec:
    sizes = (obs_size, *config.hidden, action_size)
    return NetworkSpec(
        sizes, (config.activation,) * (len(sizes) - 1), config.rule, config.init, config.normalise
    )


def task_sizes(task: str) -> tuple[int, int]:
    """Observation and action sizes of a task's robot."""
    env = sim.make(task)
    sizes = env.observation_space.shape[0], env.action_space.shape[0]
    env.close()
    return sizes


def derive_seed(*words: int) -> int:
    """A 31-bit seed from a tuple of integers (counter-based: the same words give the same seed)."""
    return int(np.random.SeedSequence(list(words)).generate_state(1)[0] >> 1)


def pair_jobs(config: Config, generation: int) -> list[Job]:
    """The jobs of one generation: mirrored pairs share bodies and lifetime seeds, so only the
    perturbation's sign differs between them."""
    jobs = []
    for pair in range(config.population // 2):
        morphologies = config.train_damages
        if config.train_damage_sample:
            rng = np.random.default_rng(derive_seed(config.seed, generation, pair, 1))
            picked = rng.choice(len(morphologies), config.train_damage_sample, replace=False)
            morphologies = tuple(morphologies[i] for i in sorted(picked))
            if config.train_always_intact and () not in morphologies:
                morphologies = ((), *morphologies)
        seeds = tuple(derive_seed(config.seed, generation, pair, 2, life) for life in range(config.lifetimes))
        jobs += [Job(2 * pair, morphologies, seeds), Job(2 * pair + 1, morphologies, seeds)]
    return jobs


class Evaluator:
    """Runs jobs in one process, reusing environments across calls."""

    def __init__(self, config: Config) -> None:
        self.config = config
        obs_size, action_size = task_sizes(config.task)
        self.spec = network_spec(config, obs_size, action_size)
        self._envs: dict[tuple[str, ...], object] = {}
        self._early_stop = EarlyStop() if config.early_stop else None

    def _env(self, damages: tuple[str, ...]):
        if damages not in self._envs:
            self._envs[damages] = sim.make(self.config.task, damages)
        return self._envs[damages]

    def run(self, state: ESState, jobs: list[Job], ticks: int | None = None) -> list[Result]:
        return [self.run_job(state, job, ticks or self.config.ticks) for job in jobs]

    def run_job(self, state: ESState, job: Job, ticks: int) -> Result:
        c = self.config
        vector = state.mean if job.member is None else member(state, c.seed, job.member)
        genome = Genome.from_vector(c.genome_kind, self.spec, c.task, vector)
        network = genome.build(c.network_backend)
        distances, steps, fell = [], 0, 0
        for damages in job.morphologies:
            env = self._env(damages)
            for seed in job.seeds:
                life = run_lifetime(
                    network, env, ticks, seed, settle_ticks=c.settle_ticks, early_stop=self._early_stop
                )
                distances.append(life.distance)
                steps += life.ticks + c.settle_ticks
                fell += life.terminated
        return Result(float(np.mean(distances)), steps, fell)
