"""An evolution run, top to bottom: ask, evaluate, tell, validate, checkpoint, repeat.

A run directory holds ``config.yaml``, ``log.jsonl`` (one line per generation), ``checkpoint.npz``
(the full ES state after the last finished generation, written atomically) and the genomes
``latest.npz``, ``best.npz`` and, at the end, ``final.npz``. ``--resume`` continues from the
checkpoint and ends with exactly the genome an uninterrupted run of the same seed would.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from controller.files import atomic_write
from controller.genome import Genome, save_genome
from evolve.backends import make_backend
from evolve.config import Config, ConfigError, config_to_dict, make_config
from evolve.fitness import Job, Result, derive_seed, network_spec, pair_jobs, task_sizes
from evolve.openai_es import ESParams, ESState, OpenAIES

VALIDATION_SEED = 2**31  # validation lifetimes use seeds training never draws (those are < 2**31)


def es_params(config: Config) -> ESParams:
    return ESParams(
        population=config.population,
        sigma=config.sigma,
        sigma_decay=config.sigma_decay,
        sigma_min=config.sigma_min,
        lr=config.lr,
        lr_decay=config.lr_decay,
        l2=config.l2,
        optimizer=config.optimizer,
    )


def save_checkpoint(path: Path, state: ESState, best: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    meta = {"generation": state.generation, "lr": state.lr, "sigma": state.sigma, "best": best}
    np.savez(
        buffer, meta=np.array(json.dumps(meta)), mean=state.mean, adam_m=state.adam_m, adam_v=state.adam_v
    )
    atomic_write(path, buffer.getvalue())


def load_checkpoint(path: Path) -> tuple[ESState, dict[str, Any]]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            meta = json.loads(str(archive["meta"]))
            state = ESState(
                archive["mean"],
                meta["generation"],
                meta["lr"],
                meta["sigma"],
                archive["adam_m"],
                archive["adam_v"],
            )
    except (OSError, KeyError, ValueError) as exc:
        raise ConfigError(
            f"cannot resume: checkpoint {path} is unreadable ({exc}); start a new run"
        ) from None
    return state, meta["best"]


def validation_jobs(config: Config) -> list[Job]:
    """The mean genome on the training bodies and on each held-out damage, fixed seeds."""
    seeds = tuple(VALIDATION_SEED + i for i in range(config.validation_lifetimes))
    train = [Job(None, (m,), seeds) for m in config.train_damages]
    held_out = [Job(None, (m,), seeds) for m in config.validation_damages]
    return train + held_out


def _label(damages: tuple[str, ...]) -> str:
    return "+".join(damages) or "intact"


def _truncate_log(path: Path, generation: int) -> None:
    """Drop log lines of generations the checkpoint does not hold (a killed run's last one)."""
    if not path.exists():
        return
    lines = [line for line in path.read_text().splitlines() if json.loads(line)["generation"] < generation]
    atomic_write(path, "".join(line + "\n" for line in lines).encode())


def evolve(config: Config, out: Path, resume: bool = False, ray_address: str | None = None) -> Path:
    """Run (or continue) an evolution; returns the path of the final genome."""
    out.mkdir(parents=True, exist_ok=True)
    checkpoint, log_path = out / "checkpoint.npz", out / "log.jsonl"
    obs_size, action_size = task_sizes(config.task)
    spec = network_spec(config, obs_size, action_size)
    size = Genome.parameter_count(config.genome_kind, spec)
    es = OpenAIES(es_params(config), config.seed)
    if resume and checkpoint.exists():
        state, best = load_checkpoint(checkpoint)
        _truncate_log(log_path, state.generation)
        print(f"resuming {out} at generation {state.generation}")
    else:
        rng = np.random.default_rng(derive_seed(config.seed, 0xC0FFEE))
        state = es.init(rng.normal(0.0, config.parameter_init_std, size))
        best = {"score": None, "generation": None}
        atomic_write(out / "config.yaml", yaml.safe_dump(config_to_dict(config), sort_keys=False).encode())
        log_path.unlink(missing_ok=True)

    def genome_of(s: ESState, **provenance: Any) -> Genome:
        return Genome.from_vector(
            config.genome_kind,
            spec,
            config.task,
            s.mean,
            seed=config.seed,
            generation=s.generation,
            run=str(out),
            **provenance,
        )

    backend = make_backend(config, ray_address)
    started, generations_done = time.perf_counter(), 0
    try:
        while state.generation < config.generations:
            t0 = time.perf_counter()
            results = backend.run(state, pair_jobs(config, state.generation))
            fitness = np.array([r.fitness for r in results])
            state = es.tell(state, fitness)
            record: dict[str, Any] = {
                "generation": state.generation - 1,
                "best": float(fitness.max()),
                "mean": float(fitness.mean()),
                "min": float(fitness.min()),
                "fell": int(sum(r.fell for r in results)),
                "env_steps": int(sum(r.env_steps for r in results)),
                "lr": state.lr,
                "sigma": state.sigma,
            }
            if state.generation % config.validate_every == 0 or state.generation == config.generations:
                record.update(_validate(backend, state, config))
                score = record["train_score"]
                if best["score"] is None or score > best["score"]:
                    best = {"score": score, "generation": state.generation}
                    save_genome(genome_of(state, fitness=score, fitness_kind="train_score"), out / "best.npz")
            seconds = time.perf_counter() - t0
            record.update(seconds=seconds, env_steps_per_s=record["env_steps"] / seconds)
            save_genome(genome_of(state, fitness=record["mean"]), out / "latest.npz")
            with log_path.open("a") as log:
                log.write(json.dumps(record) + "\n")
            save_checkpoint(checkpoint, state, best)
            generations_done += 1
            _progress(
                record,
                state.generation,
                config.generations,
                (time.perf_counter() - started) / generations_done,
            )
    finally:
        backend.close()
    final = save_genome(
        genome_of(state, fitness=best["score"], best_generation=best["generation"]), out / "final.npz"
    )
    print(f"final genome: {final}")
    return final


def _validate(backend: Any, state: ESState, config: Config) -> dict[str, Any]:
    jobs = validation_jobs(config)
    results: list[Result] = backend.run(state, jobs, config.validation_ticks)
    n_train = len(config.train_damages)
    train = {
        _label(j.morphologies[0]): r.fitness for j, r in zip(jobs[:n_train], results[:n_train], strict=True)
    }
    held = {
        _label(j.morphologies[0]): r.fitness for j, r in zip(jobs[n_train:], results[n_train:], strict=True)
    }
    return {
        "train_score": float(np.mean(list(train.values()))),
        "validation_score": float(np.mean(list(held.values()))) if held else None,
        "train": train,
        "validation": held,
    }


def _progress(record: dict[str, Any], generation: int, total: int, seconds_per_generation: float) -> None:
    eta = (total - generation) * seconds_per_generation
    line = (
        f"gen {generation:4d}/{total}  best {record['best']:7.2f}  mean {record['mean']:7.2f}  "
        f"steps/s {record['env_steps_per_s']:8.0f}  ETA {eta / 60:5.1f} min"
    )
    if "train_score" in record:
        line += f"  | mean genome: train {record['train_score']:.2f}"
        if record["validation_score"] is not None:
            line += f", held-out {record['validation_score']:.2f}"
    print(line, flush=True)


def load_run_config(out: Path, overrides: dict[str, Any]) -> Config:
    """The config a run was started with (for --resume), with execution-only overrides applied."""
    path = out / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"cannot resume: {path} not found; is {out} a run directory?")
    values = yaml.safe_load(path.read_text())
    values.update(overrides)
    return make_config(values)
