"""The paper's fitness: distance walked (CarRacing: reward), averaged over morphologies and lifetimes.

A :class:`Job` names what to evaluate (an ES member rebuilt from its seed, or the mean itself), on
which damaged bodies and with which lifetime seeds. An :class:`Evaluator` lives in a worker and keeps
one environment per morphology alive between jobs, so a generation never rebuilds a simulator.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import gymnasium
import numpy as np

import sim
from controller.genome import Genome
from controller.loop import EarlyStop, Lifetime, run_lifetime
from controller.network import NetworkSpec, task_spec
from evolve.config import Config, ConfigError
from evolve.openai_es import Population
from evolve.search_space import search_space
from sim.damage import SpecError
from sim.randomise import load_randomisation


@dataclass(frozen=True)
class Job:
    member: int | None  # ES member index, or None for the mean genome
    morphologies: tuple[tuple[str, ...], ...]  # damages of each body to average over
    seeds: tuple[int, ...]  # one lifetime per seed on each body (env reset and initial weights)


@dataclass(frozen=True)
class Batch:
    """What a backend runs: jobs on one population, lifetimes of ``ticks`` (None: the config's), in the
    search space of the run's last rule ``clusters`` (None: no merge yet)."""

    population: Population
    jobs: Sequence[Job]
    ticks: int | None = None
    clusters: np.ndarray | None = None


@dataclass(frozen=True)
class Result:
    per_body: tuple[float, ...]  # mean fitness on each of the job's bodies, in the job's order
    walked: float  # mean distance (CarRacing: reward) over all lifetimes: no cap, fall or gait terms
    env_steps: int  # settle ticks included: what the simulator actually ran
    fell: int  # lifetimes ended by the environment (upside down)
    cpu_s: float  # CPU time of the job in its worker: throughput that other processes do not distort

    @property
    def fitness(self) -> float:
        """Mean over the job's bodies (each with the same lifetimes): m walked with the fall and gait
        terms, or reward."""
        return float(np.mean(self.per_body))


JOINT_TRAVEL = 1.0  # rad/s: a joint whose angle travels this far per second on average counts as moving


class GaitTerms:
    """An ``on_tick`` callback for the gait terms of the fitness (``joint_limit_cost``,
    ``joint_motion_reward``): the joint-seconds a MuJoCo robot spends at a limit of its joints' ranges,
    and how far each joint's angle travels. Used only when a term is set, off the simulator's hot path."""

    def __init__(self, robot: gymnasium.Env, config: Config) -> None:
        self.robot = robot.unwrapped
        self.fitness = config.fitness
        self.ticks = 0
        self.limit_seconds = 0.0
        self.angles: np.ndarray | None = None  # read after the lifetime's reset, at its first tick
        self.travel = 0.0

    def __call__(self, tick: int, obs: np.ndarray, action: np.ndarray, info: dict) -> None:
        angles = self.robot.joint_angles()
        self.ticks += 1
        if self.angles is None:
            self.angles = angles.copy()
        self.travel = self.travel + np.abs(angles - self.angles)
        self.angles[:] = angles
        if self.fitness.joint_limit_cost:
            self.limit_seconds += np.count_nonzero(self.robot.at_limit()) * self.robot.dt

    @property
    def seconds(self) -> float:
        return self.ticks * self.robot.dt

    def moving_joints(self) -> float:
        """How many joints moved: each counts min(1, its mean angular speed / JOINT_TRAVEL). A gait
        swings a joint through its range every stride (the walkers' working joint: 3-4 rad/s); a limp
        joint sagging under the body's weight travels a few hundredths of that."""
        if not self.ticks:
            return 0.0
        return float(np.minimum(self.travel / (JOINT_TRAVEL * self.seconds), 1.0).sum())


def lifetime_score(life: Lifetime, ticks: int, config: Config, gait: GaitTerms | None = None) -> float:
    """What one lifetime of ``ticks`` scores in training, every term in this one place: the task's
    fitness (m walked, or reward) held to the pace ``fitness_cap`` (``overshoot_cost`` per m beyond it),
    less ``fall_cost`` per second a fall cut short, plus the gait terms ``gait`` measured (joint motion
    earned, joint-seconds at a stop charged). Validation and the ``controller`` command report
    ``life.fitness`` alone."""
    score, terms = life.fitness, config.fitness
    if terms.fitness_cap:
        score = min(score, terms.fitness_cap) - terms.overshoot_cost * max(score - terms.fitness_cap, 0)
    if life.terminated:
        score -= terms.fall_cost * (ticks - life.ticks) * life.dt
    if gait is not None:
        score += (
            terms.joint_motion_reward * gait.seconds * gait.moving_joints()
            - terms.joint_limit_cost * gait.limit_seconds
        )
    return score


def network_spec(
    config: Config, observation_space: gymnasium.spaces.Box, action_space: gymnasium.spaces.Box
) -> NetworkSpec:
    """The configured network for the task's spaces (with CarRacing's CNN front end for pixels)."""
    network = config.network
    return task_spec(
        observation_space,
        action_space,
        network.hidden,
        activation=network.activation,
        rule=network.rule,
        init=network.init,
        normalise=network.normalise,
        plasticity_period=network.plasticity_period,
    )


def make_bodies(config: Config) -> dict[tuple[str, ...], gymnasium.Env]:
    """One environment per configured morphology (training, validation and the intact body), each
    randomised per lifetime when the config says so.

    Called first in the main process, so a damage that does not fit the robot (leg 5, an unknown
    joint) or a randomisation it cannot take is a one-line error naming its config key rather than a
    worker's traceback."""
    randomised = config.training.randomise
    randomise = None if randomised is None else load_randomisation(randomised)  # read once
    # the intact body first: a failure there can only be the randomisation's
    targets = [
        ("randomise", ()),
        *[("train_damages", damages) for damages in config.training.train_damages],
        *[("validation_damages", damages) for damages in config.validation.validation_damages],
    ]
    bodies: dict[tuple[str, ...], gymnasium.Env] = {}
    for key, damages in targets:
        if damages in bodies:
            continue
        try:
            bodies[damages] = sim.make(config.task, damages, randomise=randomise)
        except SpecError as exc:
            raise ConfigError(f"config key {key!r}: {exc}") from None
    gait_terms = {  # each term, and what the robot must report for it
        "joint_limit_cost": (config.fitness.joint_limit_cost, "at_limit", "joint limits"),
        "joint_motion_reward": (config.fitness.joint_motion_reward, "joint_angles", "joint angles"),
    }
    for key, (value, reading, what) in gait_terms.items():
        if value and not hasattr(bodies[()].unwrapped, reading):
            raise ConfigError(
                f"config key {key!r}: task {config.task!r} reports no {what} to score; set it to 0"
            )
    return bodies


def task_sizes(
    bodies: dict[tuple[str, ...], gymnasium.Env],
) -> tuple[gymnasium.spaces.Box, gymnasium.spaces.Box]:
    """Observation and action spaces of the robot (damage never changes them): shapes and bounds."""
    env = bodies[()]
    return env.observation_space, env.action_space


def derive_seed(*words: int) -> int:
    """A 31-bit seed from a tuple of integers (counter-based: the same words give the same seed)."""
    return int(np.random.SeedSequence(list(words)).generate_state(1)[0] >> 1)


def body_deficits(config: Config, walked: dict[tuple[str, ...], float]) -> np.ndarray:
    """Per train body, how much of its intact distance the mean genome loses there (0-1, from a
    validation's mean distances ``walked``): what ``hard_body_weight`` draws the bodies by."""
    intact = walked.get((), 0.0)
    bodies = config.training.train_damages
    if intact <= 0:  # nothing walks yet: no body is harder than another
        return np.zeros(len(bodies))
    return np.array([np.clip(1 - walked[m] / intact, 0, 1) for m in bodies])


def pair_jobs(config: Config, generation: int, deficits: np.ndarray | None = None) -> list[Job]:
    """The jobs of one generation: mirrored pairs share bodies and lifetime seeds, so only the
    perturbation's sign differs between them. With sampling, ``deficits`` (:func:`body_deficits`)
    weigh the draw when ``hard_body_weight`` is set."""
    training = config.training
    p = None  # uniform, drawn as runs without the weight always were
    if training.hard_body_weight and deficits is not None:
        weights = 1 + training.hard_body_weight * deficits
        p = weights / weights.sum()
    jobs = []
    for pair in range(config.search.population // 2):
        morphologies = training.train_damages
        if training.train_damage_sample:
            rng = np.random.default_rng(derive_seed(config.seed, generation, pair, 1))
            picked = rng.choice(len(morphologies), training.train_damage_sample, replace=False, p=p)
            morphologies = tuple(morphologies[i] for i in sorted(picked))
            if training.train_always_intact and () not in morphologies:
                morphologies = ((), *morphologies)
        lifetimes = range(config.fitness.lifetimes)
        seeds = tuple(derive_seed(config.seed, generation, pair, 2, life) for life in lifetimes)
        jobs += [Job(2 * pair, morphologies, seeds), Job(2 * pair + 1, morphologies, seeds)]
    return jobs


class Evaluator:
    """Runs jobs in one process, reusing environments across calls."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._envs = make_bodies(config)
        self.spec = network_spec(config, *task_sizes(self._envs))
        self.space = search_space(config, self.spec, self._envs[()].unwrapped)
        self._clusters: np.ndarray | None = None
        self._early_stop = EarlyStop.of(self._envs[()]) if config.fitness.early_stop else None

    def run(self, batch: Batch, jobs: Sequence[Job] | None = None) -> list[Result]:
        """The results of ``jobs``, a chunk of the batch's (default: all of them); the search space is
        rebuilt when the batch's rule clusters change."""
        clusters = batch.clusters
        if not (clusters is None and self._clusters is None or np.array_equal(clusters, self._clusters)):
            self.space = search_space(self.config, self.spec, self._envs[()].unwrapped, clusters)
            self._clusters = clusters
        ticks = batch.ticks or self.config.fitness.ticks
        return [self.run_job(batch.population, job, ticks) for job in (batch.jobs if jobs is None else jobs)]

    def run_job(self, population: Population, job: Job, ticks: int) -> Result:
        c, terms = self.config, self.config.fitness
        cpu_start = time.process_time()
        vector = self.space.expand(population.mean if job.member is None else population.member(job.member))
        genome = Genome.from_vector(c.network.genome_kind, self.spec, c.task, vector)
        network = genome.build(c.network.network_backend)
        scores = np.empty((len(job.morphologies), len(job.seeds)))
        walked = np.empty_like(scores)
        steps, fell = 0, 0
        for b, damages in enumerate(job.morphologies):
            env = self._envs[damages]
            for s, seed in enumerate(job.seeds):
                gait = GaitTerms(env, c) if terms.joint_limit_cost or terms.joint_motion_reward else None
                life = run_lifetime(
                    network,
                    env,
                    ticks,
                    seed,
                    settle_ticks=terms.settle_ticks,
                    early_stop=self._early_stop,
                    on_tick=gait,
                )
                walked[b, s] = life.fitness
                scores[b, s] = lifetime_score(life, ticks, c, gait)
                steps += life.ticks + terms.settle_ticks
                fell += life.terminated
        per_body = tuple(float(d) for d in scores.mean(axis=1))
        return Result(per_body, float(walked.mean()), steps, fell, time.process_time() - cpu_start)
