"""Where the jobs run: ``local`` (a process pool on this machine) or ``ray`` (a Ray cluster).

Both split a generation's jobs into chunks, send the :class:`Population` (mean, sigma, generation,
seed: one parameter vector; after an evolve-and-merge step, each synapse's rule cluster too) once per
chunk, never one perturbed vector per member, and return results in job order. A job's result depends
only on the population and the job, so both backends give the same fitness arrays for the same seed.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol

from evolve.config import Config, ConfigError
from evolve.fitness import Batch, Evaluator, Job, Result

_worker: Evaluator | None = None


class Backend(Protocol):
    workers: int

    def run(self, batch: Batch) -> list[Result]: ...

    def close(self) -> None: ...


def _init_worker(config: Config) -> None:
    # Ctrl-C goes to the whole process group: the main process handles it, workers just get stopped.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    global _worker
    _worker = Evaluator(config)


def _run_chunk(batch: Batch) -> list[Result]:
    return _worker.run(batch)


# Chunks per worker: many, so lifetimes that stop early balance ones that run to the end (the
# generation waits for its slowest worker): population 64 on 2 workers is one mirrored pair a chunk.
# Each chunk carries the population (one parameter vector): a few MB a generation at most.
CHUNKS_PER_WORKER = 16


def _chunks(jobs: Sequence[Job], workers: int) -> list[list[Job]]:
    size = max(1, -(-len(jobs) // (CHUNKS_PER_WORKER * workers)))
    return [list(jobs[i : i + size]) for i in range(0, len(jobs), size)]


def worker_count(config: Config) -> int:
    return config.execution.workers or os.cpu_count() or 1


class LocalBackend:
    """A pool of worker processes, each keeping its simulators alive for the whole run."""

    def __init__(self, config: Config) -> None:
        self.workers = worker_count(config)
        context = mp.get_context("spawn")  # no forked MuJoCo or numba state; same on every OS
        self._pool = context.Pool(self.workers, initializer=_init_worker, initargs=(config,))

    def run(self, batch: Batch) -> list[Result]:
        chunks = [replace(batch, jobs=c) for c in _chunks(batch.jobs, self.workers)]
        return [r for chunk in self._pool.imap(_run_chunk, chunks) for r in chunk]

    def close(self) -> None:
        self._pool.terminate()
        self._pool.join()


class RayBackend:
    """Ray actors, one per worker CPU, each holding an :class:`Evaluator`.

    With no address a local Ray cluster is started (and stopped by :meth:`close`); with one, the
    run joins that cluster ("auto": the one ``ray start`` began on this machine). Workers get the
    driver's ``sys.path``; on a cluster of several machines install this project on every node.
    """

    def __init__(self, config: Config, address: str | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError("backend 'ray' needs ray: pip install 'hebbian-quadruped[ray]'") from None
        self._ray = ray
        self._started = not ray.is_initialized()
        address = address or config.execution.ray_address
        if self._started:
            path = os.pathsep.join(p for p in sys.path if p)
            runtime_env = {"env_vars": {"PYTHONPATH": path}}
            if address:
                try:
                    ray.init(address=address, runtime_env=runtime_env, log_to_driver=False)
                except ConnectionError as exc:
                    raise ConfigError(
                        f"cannot join the Ray cluster at {address} ({exc}); is it running, and does it "
                        "need its token (RAY_AUTH_TOKEN)? 'auto' joins the cluster started on this machine"
                    ) from None
            else:
                ray.init(
                    num_cpus=worker_count(config),
                    include_dashboard=False,
                    log_to_driver=False,
                    runtime_env=runtime_env,
                )
        self.workers = config.execution.workers or int(ray.cluster_resources().get("CPU", 1))
        actor = ray.remote(num_cpus=1)(Evaluator)
        self._actors = [actor.remote(config) for _ in range(self.workers)]

    def run(self, batch: Batch) -> list[Result]:
        from ray.util import ActorPool

        shared = self._ray.put(replace(batch, jobs=()))  # the population and clusters once per call
        results = ActorPool(self._actors).map(  # in order; each chunk to the next idle actor
            lambda actor, chunk: actor.run.remote(shared, chunk), _chunks(batch.jobs, self.workers)
        )
        return [r for chunk in results for r in chunk]

    def close(self) -> None:
        for actor in self._actors:
            self._ray.kill(actor)
        if self._started:
            self._ray.shutdown()


def make_backend(config: Config, address: str | None = None) -> Backend:
    if config.execution.backend == "ray" or address:
        return RayBackend(config, address)
    return LocalBackend(config)
