"""An evolution run, top to bottom: ask, evaluate, tell, validate, checkpoint, repeat.

A run directory holds ``config.yaml``, ``log.jsonl`` (one line per generation), ``checkpoint.npz``
(the full ES state after the last finished generation, written atomically) and the genomes
``latest.npz``, ``best.npz``, every ``snapshot_every`` generations ``generationN.npz`` and, at the end,
``final.npz``. Every random draw is keyed by (seed, generation, pair, ...), so the ES state is all a
resumed run needs to end with exactly the genome an uninterrupted run of the same seed would.
"""

from __future__ import annotations

import gzip
import io
import json
import signal
import subprocess
import threading
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from controller.files import atomic_write
from controller.genome import COEVOLVE, Genome, load_genome, save_genome
from controller.network import NetworkSpec
from controller.rules import get_rule
from evolve.backends import Backend, make_backend
from evolve.config import Config, ConfigError, config_to_dict, flat_values, make_config, read_mapping
from evolve.fitness import (
    Batch,
    Job,
    Result,
    body_deficits,
    derive_seed,
    make_bodies,
    network_spec,
    pair_jobs,
    task_sizes,
)
from evolve.openai_es import ESParams, ESState, OpenAIES, Population
from evolve.search_space import SearchSpace, merge, search_space
from evolve.shaping import centred_ranks, l2_penalty, per_body_ranks

VALIDATION = 0x5A11D  # first word of validation seeds: never a training seed
MAX_UPDATE_BYTES = 8 << 30  # an ES update holds population/2 float32 noise vectors of the search space


def es_params(config: Config) -> ESParams:
    """The ES settings of a run config (the keys both share, by name)."""
    search = config.search
    return ESParams(**{f.name: getattr(search, f.name) for f in fields(ESParams) if hasattr(search, f.name)})


def save_checkpoint(
    path: Path, state: ESState, best: dict[str, Any], deficits: np.ndarray, clusters: np.ndarray | None
) -> None:
    """The ES state with what the run adds to it: the best validation so far, the train bodies'
    deficits that weigh the next draws and, after a merge, each synapse's rule cluster (the search
    space the ES state is in)."""
    values = state.to_dict()
    arrays = {k: v for k, v in values.items() if isinstance(v, np.ndarray)}
    if clusters is not None:
        arrays["clusters"] = clusters
    meta = {k: v for k, v in values.items() if k not in arrays} | {
        "best": best,
        "deficits": deficits.tolist(),
    }
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.array(json.dumps(meta)), **arrays)
    atomic_write(path, buffer.getvalue())


def load_checkpoint(
    path: Path, bodies: int, space: Callable[[np.ndarray | None], SearchSpace]
) -> tuple[ESState, dict[str, Any], np.ndarray, np.ndarray | None]:
    """The ES state, best score, deficits of the ``bodies`` train bodies and rule clusters a run saved,
    checked against the search space ``space(clusters)`` makes; a damaged checkpoint is an error that
    leaves the run folder as it is and says how to go on."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            meta = json.loads(str(archive["meta"]))
            arrays = {k: archive[k] for k in archive.files if k != "meta"}
        clusters = arrays.pop("clusters", None)
        state = ESState.from_dict({**meta, **arrays})
        size = space(clusters).size
        best = {"score": meta["best"]["score"], "generation": meta["best"]["generation"]}
        deficits = np.array(meta.get("deficits", [0.0] * bodies), dtype=float)  # none saved: uniform
        if any(a.shape != (size,) for a in (state.mean, state.adam_m, state.adam_v)):
            raise ValueError(f"its arrays do not hold this run's {size} parameters")
        if deficits.shape != (bodies,) or not np.all((deficits >= 0) & (deficits <= 1)):
            raise ValueError(f"its deficits are not {bodies} values in [0, 1]")
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, KeyError, TypeError, ValueError) as exc:
        run = path.parent
        raise ConfigError(
            f"cannot resume: {path} is damaged ({exc}); to go on from the run's last genome: evolve --config "
            f"{run}/config.yaml --set init_from={run}/latest.npz --out NEW_RUN"
        ) from None
    return state, best, deficits, clusters


def utility(config: Config, population: Population, jobs: list[Job], results: list[Result]) -> np.ndarray:
    """What ``tell`` weighs each member by: its L2 penalty subtracted from its fitness on every body, then
    ranked once, pooled (the mean over its bodies, among all members) or per body (``fitness_shaping``).

    The penalty is subtracted before any ranking so that it is in the fitness's unit (m, or reward) in
    both modes: ``l2`` then trades parameter size against distance the same way whichever shaping ranks
    it, and a member must walk as much further on a body as its parameters cost to rank level there.
    (Subtracted from per-body ranks, it would weigh in rank units, whose size depends on the population
    and the bodies.) The same penalty on each body lowers a member's mean over them by exactly it, so
    pooled mode ranks the same numbers as when the ES subtracted it itself."""
    penalty = l2_penalty(population, len(jobs), config.search.l2)
    if config.fitness.fitness_shaping == "per_body":
        fitness = [np.subtract(r.per_body, cost) for r, cost in zip(results, penalty, strict=True)]
        return per_body_ranks([job.morphologies for job in jobs], fitness)
    return centred_ranks(np.array([r.fitness for r in results]) - penalty)


def population_stats(fitness: np.ndarray, results: list[Result]) -> dict[str, Any]:
    return {
        "best": float(fitness.max()),
        "mean": float(fitness.mean()),
        "min": float(fitness.min()),
        "fell": sum(r.fell for r in results),
        "env_steps": sum(r.env_steps for r in results),
        "cpu_s": sum(r.cpu_s for r in results),
    }


def validation_jobs(config: Config, generation: int) -> list[Job]:
    """The mean genome on every training body and every held-out damage, one job per lifetime, on
    seeds drawn fresh for this generation (a fixed set would be selected for by ``best.npz``)."""
    lifetimes = range(config.validation.validation_lifetimes)
    seeds = [derive_seed(VALIDATION, config.seed, generation, i) for i in lifetimes]
    bodies = (*config.training.train_damages, *config.validation.validation_damages)
    return [Job(None, (m,), (s,)) for m in bodies for s in seeds]


def _label(damages: tuple[str, ...]) -> str:
    return "+".join(damages) or "intact"


def validate(
    backend: Backend, population: Population, config: Config, clusters: np.ndarray | None
) -> tuple[dict[str, Any], np.ndarray, int]:
    """Mean distance of the mean genome per body; the record's fields, the train bodies' deficits and
    the env steps it took."""
    jobs = validation_jobs(config, population.generation)
    results = backend.run(Batch(population, jobs, config.validation.validation_ticks, clusters))
    per_body: dict[tuple[str, ...], list[float]] = {}
    for job, result in zip(jobs, results, strict=True):
        per_body.setdefault(job.morphologies[0], []).append(result.walked)
    train = {_label(m): float(np.mean(per_body[m])) for m in config.training.train_damages}
    held = {_label(m): float(np.mean(per_body[m])) for m in config.validation.validation_damages}
    record = {
        "train_score": float(np.mean(list(train.values()))),
        "validation_score": float(np.mean(list(held.values()))) if held else None,
        "train": train,
        "validation": held,
    }
    means = {m: float(np.mean(v)) for m, v in per_body.items()}
    return record, body_deficits(config, means), sum(r.env_steps for r in results)


def code_commit() -> str | None:
    """The git commit of this source tree (with ``-dirty`` if modified), if it is a checkout."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Ctrl-C or SIGTERM while a generation is being saved takes effect once all of it is saved."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    stops = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, lambda signum, frame: received.append(signum)) for s in stops}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if received:
        raise KeyboardInterrupt


def read_log(path: Path) -> list[dict[str, Any]]:
    """A run's generation records. An unfinished last line is left out: a run stopped while writing it,
    and the log is written before the checkpoint, so it is always a generation past the checkpoint."""
    if not path.exists():
        return []
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    *lines, _unfinished = data.split(b"\n")
    records = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not (isinstance(record, dict) and isinstance(record.get("generation"), int)):
            raise ConfigError(
                f"{path} line {number} is not a generation record (a damaged log?); fix or remove it"
            )
        records.append(record)
    return records


def _truncate_log(path: Path, records: list[dict[str, Any]], generation: int) -> None:
    """Keep the records of the generations the checkpoint holds (not a killed run's last one)."""
    kept = [r for r in records if r["generation"] < generation]
    atomic_write(path, "".join(json.dumps(r) + "\n" for r in kept).encode())


def initial_mean(config: Config, spec: NetworkSpec, space: SearchSpace) -> np.ndarray:
    """Where the search starts: random N(0, std^2) parameters, or a genome's (``init_from``, tied by
    ``space`` where the run ties its parameters). The genome may come from another task with the same
    network (the servo-quad's genome starts the stock-firmware servo-quad's run)."""
    search, kind = config.search, config.network.genome_kind
    if search.init_from is None:
        rng = np.random.default_rng(derive_seed(config.seed, 0xC0FFEE))
        return rng.normal(0.0, search.parameter_init_std, space.size)
    genome = load_genome(search.init_from)
    # the plasticity clock is the run's own: a genome's parameters are the same whatever its period
    genome.spec = replace(genome.spec, plasticity_period=spec.plasticity_period)
    coevolving = kind == "hebbian" and spec.init == COEVOLVE
    if (
        coevolving
        and genome.kind == kind
        and not genome.coevolved
        and replace(genome.spec, init=COEVOLVE) == spec
    ):
        genome = with_drawn_weights(genome, spec, derive_seed(config.seed, 0x1417))
    if coevolving and genome.kind == "static" and genome.spec.layer_sizes == spec.layer_sizes:
        if spec.normalise:
            raise ConfigError(
                f"config key 'init_from': a static genome ({search.init_from}) starts a plastic run only "
                "without normalisation (it would rescale the static weights at the first update); "
                "set normalise: false"
            )
        genome = plastic_from_static(genome, spec)
    if genome.kind != kind or genome.spec != spec:
        raise ConfigError(
            f"config key 'init_from': {search.init_from} is a {genome.kind} genome with layers "
            f"{list(genome.spec.layer_sizes)} and rule {genome.spec.rule}; this run needs a "
            f"{kind} genome with layers {list(spec.layer_sizes)} and rule {spec.rule}"
        )
    return space.reduce(genome.to_vector())


def with_drawn_weights(genome: Genome, spec: NetworkSpec, seed: int) -> Genome:
    """A rules-only Hebbian genome as the start of an ``init: coevolve`` run: its rules, and the initial
    weights one of its lifetimes starts from (its network's own draw, from ``seed``). Why: co-evolution can
    then start from a walker evolved without it, and walks as well as it from the first generation."""
    network = genome.build("numpy")
    network.reset(np.random.default_rng(seed))
    return replace(genome, spec=spec, weights=[w.copy() for w in network.weights])


STATIC_START_ETA = 0.1  # a static start's learning rate: its rules' terms are zero, so this changes nothing


def plastic_from_static(genome: Genome, spec: NetworkSpec) -> Genome:
    """A static genome as the start of an ``init: coevolve`` run: its weights as the initial weights
    and every rule's terms zero, so the first generation walks exactly as the static network does (the
    same kernel computes both; zero terms change no weight). The learning rate ``eta`` starts at
    STATIC_START_ETA, not zero: eta times A is a saddle at (0, 0), where the search's first-order
    estimate of either is zero. Why: the reviewers asked whether plasticity can keep a static
    network's performance; starting there, the search adds only the plasticity that pays."""
    rule = get_rule(spec.rule)
    start = np.float32([STATIC_START_ETA if name == "eta" else 0.0 for name in rule.coefficients])
    coefficients = [np.tile(start, (n_in, n_out, 1)) for n_in, n_out in spec.layer_shapes]
    return Genome("hebbian", spec, genome.task, coefficients, [w.copy() for w in genome.weights])


def plan(config: Config) -> tuple[NetworkSpec, Any, float]:
    """The network, the robot (its mirror map ties the search space) and the control period (s) of a
    run: building its bodies once here shows every error its config holds beyond single keys (a damage
    this robot cannot have, a tie it has no map for) before any work or any file is written."""
    bodies = make_bodies(config)
    spec = network_spec(config, *task_sizes(bodies))
    robot = bodies[()].unwrapped
    space = search_space(config, spec, robot)
    period = float(robot.dt)
    for env in bodies.values():
        env.close()
    population = config.search.population
    need = population // 2 * space.size * 4
    if need > MAX_UPDATE_BYTES:
        raise ConfigError(
            f"population {population} over {space.size:,} parameters needs {need / 2**30:.0f} GiB "
            f"for each update (at most {MAX_UPDATE_BYTES >> 30}); lower population or hidden"
        )
    return spec, robot, period


def merged(
    config: Config, spec: NetworkSpec, robot: Any, state: ESState, space: SearchSpace
) -> tuple[ESState, np.ndarray]:
    """Evolve-and-merge at the end of generation ``state.generation``: the mean's rules clustered into the
    schedule's next count, the ES state moved to one rule per cluster (each its cluster's mean; Adam's
    moments start again) and the clusters."""
    step = state.generation // config.search.merge_every
    count = config.search.merge_to[step - 1]
    full = space.expand(state.mean)
    clusters = merge(config, spec, robot, full, count, derive_seed(config.seed, state.generation, 0xE46E))
    mean = search_space(config, spec, robot, clusters).reduce(full)
    zeros = np.zeros_like(mean)
    return replace(state, mean=mean, adam_m=zeros, adam_v=zeros), clusters


def evolve(config: Config, out: Path, resume: bool = False, ray_address: str | None = None) -> Path:
    """Run (or continue) an evolution; returns the path of the final genome. A run that cannot start
    or resume is an error before any file is touched."""
    checkpoint, log_path = out / "checkpoint.npz", out / "log.jsonl"
    if resume and not checkpoint.is_file():
        raise ConfigError(
            f"cannot resume: {out} holds no checkpoint.npz (no generation finished); start it again with "
            f"evolve --config {out}/config.yaml --out {out}"
        )
    spec, robot, period = plan(config)

    def space_of(clusters: np.ndarray | None) -> SearchSpace:
        return search_space(config, spec, robot, clusters)

    es = OpenAIES(es_params(config), config.seed)
    bodies = len(config.training.train_damages)
    clusters = None
    if resume:
        state, best, deficits, clusters = load_checkpoint(checkpoint, bodies, space_of)
        _truncate_log(log_path, read_log(log_path), state.generation)
        print(f"resuming {out} at generation {state.generation}")
    else:
        mean = initial_mean(config, spec, space_of(None))
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot make the run folder {out} ({exc.strerror}); pick another --out"
            ) from None
        state = es.init(mean)
        best = {"score": None, "generation": None}
        deficits = np.zeros(bodies)  # uniform draws until the first validation
        log_path.unlink(missing_ok=True)
    atomic_write(out / "config.yaml", yaml.safe_dump(config_to_dict(config), sort_keys=False).encode())
    provenance = {  # with the whole config, a genome file says how to make it again without its run folder
        "seed": config.seed,
        "run": str(out),
        "commit": code_commit(),
        "settle_ticks": config.fitness.settle_ticks,
        "control_period": period,
        "config": config_to_dict(config),
    }

    space = space_of(clusters)

    def save(s: ESState, name: str, **extra: Any) -> Path:
        genome = Genome.from_vector(
            config.network.genome_kind,
            spec,
            config.task,
            space.expand(s.mean),
            generation=s.generation,
            searched_parameters=space.size,  # the values evolution chose: fewer than the file's when tied
            **provenance,
            **extra,
        )
        return save_genome(genome, out / name)

    backend = make_backend(config, ray_address)
    started, generations_done = time.perf_counter(), 0
    generations, validate_every = config.search.generations, config.validation.validate_every
    snapshot_every = config.validation.snapshot_every
    try:
        while state.generation < generations:
            t0 = time.perf_counter()
            jobs, population = pair_jobs(config, state.generation, deficits), es.population(state)
            results = backend.run(Batch(population, jobs, clusters=clusters))
            fitness = np.array([r.fitness for r in results])
            record = {"generation": state.generation, **population_stats(fitness, results)}
            state = es.tell(state, utility(config, population, jobs, results))
            record.update(lr=state.lr, sigma=state.sigma)
            steps = record["env_steps"]
            if state.generation % validate_every == 0 or state.generation == generations:
                fields, deficits, validation_steps = validate(backend, es.population(state), config, clusters)
                record.update(fields)
                steps += validation_steps
                if best["score"] is None or record["train_score"] > best["score"]:
                    best = {"score": record["train_score"], "generation": state.generation}
            merge_every, merge_to = config.search.merge_every, config.search.merge_to
            if (
                merge_every
                and state.generation % merge_every == 0
                and state.generation // merge_every <= len(merge_to)
            ):
                state, clusters = merged(config, spec, robot, state, space)
                space = space_of(clusters)
                record.update(merged_to=int(np.unique(clusters).size), searched_parameters=space.size)
            seconds = time.perf_counter() - t0
            record.update(seconds=seconds, env_steps_per_s=steps / seconds)
            with interrupts_deferred():
                if best["generation"] == state.generation:
                    save(state, "best.npz", fitness=best["score"], fitness_kind="mean genome, train bodies")
                names = ["latest.npz"]
                if snapshot_every and state.generation % snapshot_every == 0:
                    names.append(f"generation{state.generation}.npz")
                for name in names:
                    save(state, name, fitness=record["mean"], fitness_kind="population mean")
                with log_path.open("a") as log:
                    log.write(json.dumps(record) + "\n")
                save_checkpoint(checkpoint, state, best, deficits, clusters)
            generations_done += 1
            elapsed = time.perf_counter() - started
            _progress(record, state.generation, generations, elapsed / generations_done)
    finally:
        backend.close()
    final = save(state, "final.npz", fitness=best["score"], best_generation=best["generation"])
    print(f"final genome: {final}")
    return final


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
    """The config a run was started with (for --resume; its config.yaml flat or nested), with the
    execution-only ``overrides`` (by flat key name) applied."""
    path = out / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"cannot resume: {path} not found; is {out} a run directory?")
    return make_config({**flat_values(read_mapping(path)), **overrides})
