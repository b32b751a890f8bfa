"""Throughput of evolution: what the network and plasticity cost on top of the simulator, and how a
generation scales from 1 to 2 workers.

    PYTHONPATH=. python bench/evolve_throughput.py [--config launch/ant.yaml] [--population 32] [--repeats 3]

For 1 and 2 worker processes (the ``local`` backend):
1. A generation of the config (Ant, ABCD_lr 27-128-64-8): env steps per second, settle steps included.
2. The same simulator work without a controller: every lifetime of that generation replayed on the
   same body, reset with the same seed, for the same number of steps, with zero actions, in a pool
   of the same size. The ratio is the controller's overhead (target <= 15%).
Then the speed-up of 2 workers over 1 (target >= 1.7x). Medians of ``--repeats`` generations, after
one warm-up generation (worker start, compiled kernels). Physics cost depends on contacts, so a
walking Ant and a resting one do not cost exactly the same: the overhead is an estimate.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import time
from dataclasses import replace

import numpy as np

from controller.genome import Genome
from controller.loop import run_lifetime
from evolve.backends import CHUNKS_PER_WORKER, LocalBackend
from evolve.config import Config, load_config
from evolve.fitness import Job, Result, make_bodies, network_spec, pair_jobs, task_sizes
from evolve.openai_es import OpenAIES, Population
from evolve.run import es_params

_bodies: dict = {}


def _init_zero_worker(config: Config) -> None:
    global _bodies
    _bodies = make_bodies(config)


def _zero_steps(lifetimes: list[tuple[tuple[str, ...], int, int]]) -> int:
    """Step each (body, seed, steps) lifetime with zero actions; return the steps taken."""
    for damages, seed, steps in lifetimes:
        env = _bodies[damages]
        env.reset(seed=seed)
        zero = np.zeros(env.action_space.shape, dtype=np.float32)
        for _ in range(steps):
            env.step(zero)
    return sum(steps for *_, steps in lifetimes)


def lifetimes_of(config: Config, jobs: list[Job], results: list[Result]) -> list[tuple]:
    """The generation's lifetimes as (body, seed, steps); a job's steps split evenly over its lifetimes
    (exact with one body and one lifetime per job, as in launch/ant.yaml without sampling)."""
    out = []
    for job, result in zip(jobs, results, strict=True):
        count = len(job.morphologies) * len(job.seeds)
        out += [(m, s, result.env_steps // count) for m in job.morphologies for s in job.seeds]
    return out


def measure(config: Config, population: Population, workers: int, repeats: int) -> tuple[list, list, int]:
    """Steps/s of ``repeats`` generations and of their zero-action replays, and steps per generation."""
    config = replace(config, workers=workers)
    backend = LocalBackend(config)
    zero_pool = mp.get_context("spawn").Pool(workers, initializer=_init_zero_worker, initargs=(config,))
    try:
        backend.run(population, pair_jobs(config, 0))  # warm-up
        zero_pool.map(_zero_steps, [[((), 0, 10)]] * workers)
        generation_rates, zero_rates = [], []
        for generation in range(1, repeats + 1):
            jobs = pair_jobs(config, generation)
            t0 = time.perf_counter()
            results = backend.run(population, jobs)
            seconds = time.perf_counter() - t0
            steps = sum(r.env_steps for r in results)
            generation_rates.append(steps / seconds)
            lifetimes = lifetimes_of(config, jobs, results)
            chunks = [lifetimes[i :: CHUNKS_PER_WORKER * workers] for i in range(CHUNKS_PER_WORKER * workers)]
            t0 = time.perf_counter()
            replayed = sum(zero_pool.map(_zero_steps, chunks, chunksize=1))
            zero_rates.append(replayed / (time.perf_counter() - t0))
    finally:
        backend.close()
        zero_pool.terminate()
        zero_pool.join()
    return generation_rates, zero_rates, steps


def per_step_costs(config: Config, population: Population, lifetimes: int = 4) -> tuple[float, float, int]:
    """In this process: µs of the network tick per control step, µs of everything else per env step
    (simulator, wrappers, loop), over a few member lifetimes; and the steps they took."""
    env = make_bodies(config)[()]
    spec = network_spec(config, *task_sizes({(): env}))
    tick_s = total_s = 0.0
    ticks = steps = 0
    for k in range(lifetimes + 1):  # the first one warms up
        genome = Genome.from_vector(config.genome_kind, spec, config.task, population.member(k))
        network = genome.build(config.network_backend)
        t0 = time.perf_counter()
        life = run_lifetime(network, env, config.ticks, seed=k, settle_ticks=config.settle_ticks)
        if k:
            total_s += time.perf_counter() - t0
            tick_s += sum(life.compute_s)
            ticks += life.ticks
            steps += life.ticks + config.settle_ticks
    return 1e6 * tick_s / ticks, 1e6 * (total_s - tick_s) / steps, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="launch/ant.yaml")
    parser.add_argument("--population", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    # One body per job and no sampling, so every replayed lifetime has its exact step count.
    config = replace(
        load_config(args.config, [f"population={args.population}"]),
        train_damages=((),),
        train_damage_sample=0,
        lifetimes=1,
    )
    bodies = make_bodies(config)
    spec = network_spec(config, *task_sizes(bodies))
    size = Genome.parameter_count(config.genome_kind, spec)
    es = OpenAIES(es_params(config), config.seed)
    population = es.population(es.init(np.random.default_rng(0).normal(0.0, config.parameter_init_std, size)))
    load = os.getloadavg()[0]
    layers = "-".join(map(str, spec.layer_sizes))
    print(
        f"evolve throughput: {config.task}, {config.genome_kind} {config.rule} {layers}"
        f"{' normalised' if config.normalise else ''}, population {config.population}, {config.ticks} ticks"
        f" + {config.settle_ticks} settle, {os.cpu_count()} CPUs, load average {load:.2f} before start;"
        f" medians of {args.repeats}"
    )
    print(
        f"{'workers':>7}  {'steps/gen':>9}  {'generation steps/s':>18}  {'zero-action steps/s':>19}  overhead"
    )
    medians = {}
    for workers in (1, 2):
        generation, zero, steps = measure(config, population, workers, args.repeats)
        medians[workers] = statistics.median(generation), statistics.median(zero)
        rate, zero_rate = medians[workers]
        print(f"{workers:>7}  {steps:>9}  {rate:>18,.0f}  {zero_rate:>19,.0f}  {zero_rate / rate - 1:+8.1%}")
    tick_us, rest_us, steps = per_step_costs(config, population)
    print(
        f"one process, {steps} steps: network tick {tick_us:.1f} µs per control step, simulator and loop "
        f"{rest_us:.1f} µs per env step"
    )
    speedup = medians[2][0] / medians[1][0]
    worst = max(z / g - 1 for g, z in medians.values())
    print(f"controller overhead over the simulator: {worst:+.1%} at worst (target <= +15%)")
    print(f"speed-up of 2 workers over 1: {speedup:.2f}x (target >= 1.7x)")
    if load > 0.5:
        print(f"note: other processes were using the CPUs (load {load:.2f}); the speed-up is understated")


if __name__ == "__main__":
    main()
