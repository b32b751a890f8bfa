"""Throughput of evolution: what the network and plasticity cost on top of the simulator, and how a
generation scales from 1 to 2 workers.

    PYTHONPATH=. python bench/evolve_throughput.py [--config launch/genomes/ant_hebbian_stage1.yaml]
        [--population 32] [--repeats 3]

For 1 and 2 worker processes (the ``local`` backend):
1. A generation of the config (Ant, ABCD_lr 27-128-64-8): env steps per second, settle steps included.
2. The same simulator work without a controller: every lifetime of that generation replayed on the
   same body, reset with the same seed, for the same number of steps, with zero actions, in a pool
   of the same size. Overhead = generation time / replay time - 1 (target <= 15%), by the wall clock
   and by the workers' CPU time (which other processes on the machine do not inflate).
Then the speed-up of 2 workers over 1 by the wall clock (target >= 1.7x: needs 2 idle cores), next
to what a busy loop gets from 2 processes on the machine at that moment (its ceiling).
Medians of ``--repeats`` generations, after one warm-up generation (worker start, compiled kernels).

A moving Ant costs more to simulate than a resting one (contacts), so part of that overhead is
physics, not controller. 3. splits it: in one process, a few lifetimes are replayed through the
simulator alone with their own recorded actions and with zero actions (CPU time per step).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import time
from dataclasses import dataclass, replace

import gymnasium
import numpy as np

from controller.genome import Genome
from controller.loop import run_lifetime
from evolve.backends import CHUNKS_PER_WORKER, LocalBackend
from evolve.config import Config, load_config
from evolve.fitness import Batch, Job, Result, make_bodies, network_spec, pair_jobs, task_sizes
from evolve.openai_es import OpenAIES, Population
from evolve.run import es_params

_bodies: dict = {}


@dataclass(frozen=True)
class Timing:
    steps: int
    wall_s: float
    cpu_s: float  # summed over the workers


def _init_zero_worker(config: Config) -> None:
    global _bodies
    _bodies = make_bodies(config)


def _zero_steps(lifetimes: list[tuple[tuple[str, ...], int, int]]) -> tuple[int, float]:
    """Step each (body, seed, steps) lifetime with zero actions; the steps taken and the CPU time."""
    cpu_start = time.process_time()
    for damages, seed, steps in lifetimes:
        env = _bodies[damages]
        env.reset(seed=seed)
        zero = np.zeros(env.action_space.shape, dtype=np.float32)
        for _ in range(steps):
            env.step(zero)
    return sum(steps for *_, steps in lifetimes), time.process_time() - cpu_start


def lifetimes_of(jobs: list[Job], results: list[Result]) -> list[tuple[tuple[str, ...], int, int]]:
    """The generation's lifetimes as (body, seed, steps); a job's steps split evenly over its lifetimes
    (exact with one body and one lifetime per job, as :func:`main` configures)."""
    out = []
    for job, result in zip(jobs, results, strict=True):
        count = len(job.morphologies) * len(job.seeds)
        out += [(m, s, result.env_steps // count) for m in job.morphologies for s in job.seeds]
    return out


def measure(
    config: Config, population: Population, workers: int, repeats: int
) -> tuple[list[Timing], list[Timing]]:
    """``repeats`` generations and their zero-action replays, interleaved (so slow drifts in the
    machine's load hit both alike)."""
    config = replace(config, execution=replace(config.execution, workers=workers))
    backend = LocalBackend(config)
    zero_pool = mp.get_context("spawn").Pool(workers, initializer=_init_zero_worker, initargs=(config,))
    generations, replays = [], []
    try:
        backend.run(Batch(population, pair_jobs(config, 0)))  # warm-up
        zero_pool.map(_zero_steps, [[((), 0, 10)]] * workers)
        for generation in range(1, repeats + 1):
            jobs = pair_jobs(config, generation)
            t0 = time.perf_counter()
            results = backend.run(Batch(population, jobs))
            wall = time.perf_counter() - t0
            generations.append(Timing(sum(r.env_steps for r in results), wall, sum(r.cpu_s for r in results)))
            lifetimes = lifetimes_of(jobs, results)
            count = CHUNKS_PER_WORKER * workers
            t0 = time.perf_counter()
            done = zero_pool.map(_zero_steps, [lifetimes[i::count] for i in range(count)], chunksize=1)
            wall = time.perf_counter() - t0
            replays.append(Timing(sum(s for s, _ in done), wall, sum(c for _, c in done)))
    finally:
        backend.close()
        zero_pool.terminate()
        zero_pool.join()
    return generations, replays


def replay(env: gymnasium.Env, seed: int, settle: int, actions: list[np.ndarray]) -> float:
    """CPU seconds to step ``env`` through a lifetime's settle ticks and then ``actions``."""
    zero = np.zeros(env.action_space.shape, dtype=np.float32)
    t0 = time.process_time()
    env.reset(seed=seed)
    for action in [zero] * settle + actions:
        env.step(action)
    return time.process_time() - t0


def attribution(config: Config, population: Population, lifetimes: int = 6) -> dict[str, float]:
    """In this process, CPU time per env step of a few member lifetimes, and of the simulator alone
    replaying those lifetimes' actions, and replaying zero actions: separates what the controller
    costs from how much more a moving Ant costs to simulate than a resting one."""
    env = make_bodies(config)[()]
    spec = network_spec(config, *task_sizes({(): env}))
    totals = dict.fromkeys(("evaluation", "same actions", "zero actions", "network tick"), 0.0)
    steps, settle, kind = 0, config.fitness.settle_ticks, config.network.genome_kind
    actions: list[np.ndarray] = []
    for k in range(lifetimes + 1):  # the first one warms up
        network = Genome.from_vector(kind, spec, config.task, population.member(k)).build()
        actions.clear()
        t0 = time.process_time()
        life = run_lifetime(
            network, env, config.fitness.ticks, seed=k, settle_ticks=settle,
            on_tick=lambda tick, obs, action, info: actions.append(action),
        )  # fmt: skip
        evaluation = time.process_time() - t0
        same = replay(env, k, settle, list(actions))
        zero = replay(env, k, settle, [np.zeros_like(actions[0])] * len(actions))
        if k:
            for key, value in zip(totals, (evaluation, same, zero, sum(life.compute_s)), strict=True):
                totals[key] += value
            steps += life.ticks + settle
    return {key: 1e6 * value / steps for key, value in totals.items()} | {"steps": steps}


def _busy(n: int) -> int:
    return sum(i * i for i in range(n))


def parallel_ceiling(n: int = 3_000_000) -> float:
    """How much faster 2 processes finish 2 units of pure CPU work than 1 process finishes 1 unit,
    right now: 2.0 on 2 idle cores, about 1.0 when other work holds one of them."""
    with mp.get_context("spawn").Pool(2) as pool:
        pool.map(_busy, [10, 10], chunksize=1)
        t0 = time.perf_counter()
        pool.map(_busy, [n], chunksize=1)
        one = time.perf_counter() - t0
        t0 = time.perf_counter()
        pool.map(_busy, [n, n], chunksize=1)
        return 2 * one / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="launch/genomes/ant_hebbian_stage1.yaml")
    parser.add_argument("--population", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    # One body per job and no sampling, so every replayed lifetime has its exact step count.
    loaded = load_config(args.config, [f"population={args.population}"])
    config = replace(
        loaded,
        training=replace(loaded.training, train_damages=((),), train_damage_sample=0),
        fitness=replace(loaded.fitness, lifetimes=1),
    )
    network, fitness = config.network, config.fitness
    bodies = make_bodies(config)
    spec = network_spec(config, *task_sizes(bodies))
    size = Genome.parameter_count(network.genome_kind, spec)
    es = OpenAIES(es_params(config), config.seed)
    start = np.random.default_rng(0).normal(0.0, config.search.parameter_init_std, size)
    population = es.population(es.init(start))
    load = os.getloadavg()[0]
    layers = "-".join(map(str, spec.layer_sizes))
    print(
        f"evolve throughput: {config.task}, {network.genome_kind} {network.rule} {layers}"
        f"{' normalised' if network.normalise else ''}, population {config.search.population}, "
        f"{fitness.ticks} ticks + {fitness.settle_ticks} settle, {os.cpu_count()} CPUs, load average "
        f"{load:.2f} before start;"
        f" medians of {args.repeats}"
    )
    print(
        f"{'workers':>7}  {'steps/gen':>9}  {'generation steps/s':>18}  {'zero-action steps/s':>19}"
        f"  {'overhead (wall)':>15}  {'overhead (CPU)':>14}"
    )
    rates, zero_rates, cpu_overheads = {}, {}, []
    for workers in (1, 2):
        generations, replays = measure(config, population, workers, args.repeats)
        rate = statistics.median(t.steps / t.wall_s for t in generations)
        zero_rate = statistics.median(t.steps / t.wall_s for t in replays)
        cpu = statistics.median(g.cpu_s / r.cpu_s - 1 for g, r in zip(generations, replays, strict=True))
        rates[workers], zero_rates[workers] = rate, zero_rate
        cpu_overheads.append(cpu)
        print(
            f"{workers:>7}  {generations[0].steps:>9}  {rate:>18,.0f}  {zero_rate:>19,.0f}"
            f"  {zero_rate / rate - 1:>+15.1%}  {cpu:>+14.1%}"
        )
    us = attribution(config, population)
    controller = us["evaluation"] / us["same actions"] - 1
    print(
        f"one process, CPU µs per env step over {us['steps']} steps: evaluation {us['evaluation']:.1f}"
        f" (network tick {us['network tick']:.1f}); simulator alone replaying the same actions"
        f" {us['same actions']:.1f}, zero actions {us['zero actions']:.1f}"
    )
    print(
        f"overhead over the simulator with zero actions (CPU): {max(cpu_overheads):+.1%} at worst, of which"
        f" a moving Ant's physics {us['same actions'] / us['zero actions'] - 1:+.1%}"
    )
    print(f"controller (network + plasticity + loop) over the simulator: {controller:+.1%} (target <= +15%)")
    speedup, ceiling = rates[2] / rates[1], parallel_ceiling()
    print(
        f"speed-up of 2 workers over 1: {speedup:.2f}x (target >= 1.7x); in the same minutes the simulator"
        f" alone got {zero_rates[2] / zero_rates[1]:.2f}x, a busy loop {ceiling:.2f}x (2.00x on 2 idle cores)"
    )
    if load > 0.5:
        print(
            f"note: other processes were using the CPUs (load {load:.2f}); wall-clock figures are not clean"
        )


if __name__ == "__main__":
    main()
