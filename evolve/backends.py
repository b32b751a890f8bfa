"""Where the jobs run: ``local`` (a process pool on this machine) or ``ray`` (a Ray cluster).

Both split a generation's jobs into chunks, send the ES state once per chunk (never one perturbed
parameter vector per member), and return results in job order. A job's result depends only on the
state and the job, so both backends give the same fitness arrays for the same seed.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Sequence

from evolve.config import Config
from evolve.fitness import Evaluator, Job, Result
from evolve.openai_es import ESState

_worker: Evaluator | None = None


def _init_worker(config: Config) -> None:
    global _worker
    _worker = Evaluator(config)


def _run_chunk(args: tuple[ESState, list[Job], int | None]) -> list[Result]:
    state, jobs, ticks = args
    return _worker.run(state, jobs, ticks)


def _chunks(jobs: Sequence[Job], count: int) -> list[list[Job]]:
    size = max(1, -(-len(jobs) // count))
    return [list(jobs[i : i + size]) for i in range(0, len(jobs), size)]


def worker_count(config: Config) -> int:
    return config.workers or os.cpu_count() or 1


class LocalBackend:
    """A pool of worker processes, each keeping its simulators and network alive."""

    def __init__(self, config: Config) -> None:
        self.workers = worker_count(config)
        context = mp.get_context("spawn")  # no forked MuJoCo or numba state; same on every OS
        self._pool = context.Pool(self.workers, initializer=_init_worker, initargs=(config,))

    def run(self, state: ESState, jobs: Sequence[Job], ticks: int | None = None) -> list[Result]:
        # A few chunks per worker balance lifetimes that stop early against ones that run to the end.
        chunks = _chunks(jobs, 4 * self.workers)
        return [
            r for chunk in self._pool.imap(_run_chunk, [(state, c, ticks) for c in chunks]) for r in chunk
        ]

    def close(self) -> None:
        self._pool.terminate()
        self._pool.join()


class RayBackend:
    """Ray actors, one per worker CPU, each holding an :class:`Evaluator`."""

    def __init__(self, config: Config, address: str | None = None) -> None:
        try:
            import ray
        except ImportError:
            from evolve.config import ConfigError

            raise ConfigError("backend 'ray' needs ray: pip install 'hebbian-quadruped[ray]'") from None
        self._ray = ray
        self._started = not ray.is_initialized()
        if self._started:
            address = address or config.ray_address
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(num_cpus=worker_count(config), include_dashboard=False, log_to_driver=False)
        actor = ray.remote(num_cpus=1)(Evaluator)
        self.workers = worker_count(config)
        self._actors = [actor.remote(config) for _ in range(self.workers)]

    def run(self, state: ESState, jobs: Sequence[Job], ticks: int | None = None) -> list[Result]:
        ray = self._ray
        state_ref = ray.put(state)
        chunks = _chunks(jobs, 4 * self.workers)
        futures = [
            self._actors[i % self.workers].run.remote(state_ref, chunk, ticks)
            for i, chunk in enumerate(chunks)
        ]
        return [r for chunk in ray.get(futures) for r in chunk]

    def close(self) -> None:
        for actor in self._actors:
            self._ray.kill(actor)
        if self._started:
            self._ray.shutdown()


def make_backend(config: Config, address: str | None = None) -> LocalBackend | RayBackend:
    return RayBackend(config, address) if config.backend == "ray" else LocalBackend(config)
