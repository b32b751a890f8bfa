"""Run configurations: YAML files in ``launch/``, validated key by key.

Every key has a type and a default here; an unknown key or a value of the wrong type or range is a
:class:`ConfigError` naming the key, so a typo never silently runs the defaults. The defaults are the
settings that learned on this Ant (``docs/method.md``, "Measured here"), not the paper's literal ones.
A file may name a ``base:`` file whose keys it starts from, so each stage of a run says only what it changes.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Hashable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import yaml

from controller.errors import UserError
from controller.genome import MAX_SETTLE_TICKS
from controller.network import ACTIVATIONS, INITS
from controller.rules import RULES
from evolve.openai_es import ESParams
from sim import TASKS
from sim.damage import SpecError, parse
from sim.randomise import load_randomisation
from sim.suite import load_suite


class ConfigError(UserError):
    """A malformed config file or --set override."""


@dataclass(frozen=True)
class Config:
    # task and controller
    task: str = "ant"
    genome_kind: str = "hebbian"  # hebbian | static (the baseline: evolved fixed weights)
    rule: str = "ABCD_lr"
    hidden: tuple[int, ...] = (128, 64)
    activation: str = "tanh"
    init: str = "uniform"  # initial weights of each lifetime, or coevolve
    normalise: bool = True  # per-layer max-|w| normalisation after every update
    network_backend: str = "auto"
    parameter_init_std: float = 1.0  # the search starts from N(0, std^2) parameters
    init_from: str | None = None  # or from a genome file's parameters (warm start, e.g. a second stage)
    # none: every parameter searched; mirror: each synapse tied to its left-right reflection
    # (evolve/symmetry.py)
    symmetry: str = "none"
    # evolution strategy (defaults are the ES's own)
    generations: int = 300
    population: int = ESParams.population
    sigma: float = ESParams.sigma
    sigma_decay: float = ESParams.sigma_decay
    sigma_min: float = ESParams.sigma_min
    lr: float = ESParams.lr
    lr_decay: float = ESParams.lr_decay
    # m of fitness (or reward) lost per unit of a member's mean squared parameter, before any ranking
    # (evolve/shaping.py, l2_penalty)
    l2: float = 0.01
    optimizer: str = ESParams.optimizer
    seed: int = 0
    # fitness
    ticks: int = 500
    settle_ticks: int = 40
    early_stop: bool = True
    lifetimes: int = 1
    # each lifetime's fitness clipped at this before averaging (0 = no cap): above it a lifetime counts
    # as done, so the search pays for walking in every lifetime rather than far in a few
    fitness_cap: float = 0.0
    # m of fitness lost per m a lifetime walks beyond fitness_cap (0 = beyond the cap counts as the cap): with
    # it the cap is a pace to hold, as a legged robot walks at a commanded speed rather than flat out, and
    # the search pays for keeping that pace on a damaged body rather than for top speed on the intact one
    overshoot_cost: float = 0.0
    # pooled: the ES ranks each member's mean over its bodies; per_body: ranks on each body among the
    # members that walked it, then averages (a hard body's small differences count as much as the rest)
    fitness_shaping: str = "pooled"
    # m of fitness lost per joint-second at a limit of the joint's range (MuJoCo robots; 0 = the paper's
    # distance alone): pays for gaits that work their joints rather than pin all but one at a stop
    joint_limit_cost: float = 0.0
    # m of fitness earned per joint-second that a joint moves (MuJoCo robots; 0 = none): a joint counts in
    # proportion to its mean angular speed, fully from JOINT_TRAVEL (1 rad/s) up, so a gait that works
    # every leg outscores one that pins seven joints and drives the eighth
    joint_motion_reward: float = 0.0
    # m of fitness lost per second of the lifetime that a fall cuts short (0 = the paper's: a fall only
    # ends the lifetime, so falling forward fast can outscore standing on a body the walker cannot walk)
    fall_cost: float = 0.0
    train_damages: tuple[tuple[str, ...], ...] = ((),)  # each entry: the damages of one morphology
    # or a fault suite (launch/suites/, sim/suite.py) whose train split is the training bodies: the
    # held-out split then stays out of training by construction
    train_suite: str | None = None
    train_damage_sample: int = 0  # morphologies drawn per mirrored pair each generation (0 = all)
    train_always_intact: bool = False  # with sampling: also evaluate the intact body every time
    # with sampling: each train body is drawn in proportion to 1 + hard_body_weight x its deficit (1 - the
    # mean genome's distance there / its intact distance, at the last validation; 0 = uniform), so the
    # bodies the walker fails on get the samples, rather than the many it already walks
    hard_body_weight: float = 0.0
    validation_damages: tuple[tuple[str, ...], ...] = ((),)
    validation_lifetimes: int = 3
    validation_ticks: int = 1000
    validate_every: int = 10
    # keep the mean genome of every Nth generation as generationN.npz (0 = only latest/best/final): the
    # held-out scores of a long run peak and fall, and a genome not kept cannot be picked afterwards
    snapshot_every: int = 0
    # domain randomisation of every training and validation lifetime (sim/randomise.py): a YAML file
    # (launch/randomisation/) or an inline mapping; validation seeds never repeat a training draw
    randomise: str | dict[str, Any] | None = None
    # execution
    backend: str = "local"  # local | ray
    workers: int = 0  # 0 = all cores
    ray_address: str | None = None


DAMAGE_KEYS = ("train_damages", "validation_damages")
BODY_SOURCES = (("train_suite", "train_damages"), ("train_damages", "train_suite"))


def _one_of(*choices: str) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: v in choices), f"one of {', '.join(choices)}"


def _at_least(low: float) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: v >= low), f">= {low}"


def _between(low: float, high: float) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: low <= v <= high), f"between {low} and {high}"


def _fraction() -> tuple[Callable[[Any], bool], str]:
    return (lambda v: 0 < v <= 1), "in (0, 1]"


# Upper bounds sit far above any run here (population 200, 2000 generations, 1000 ticks) and below what
# would exhaust memory or never end a generation.
MAX_HIDDEN = (4, 1024)  # hidden layers, neurons per layer: a genome stays under the loader's bound


# key -> (predicate, what a valid value is); type checks come first, from the defaults above.
RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "task": _one_of(*TASKS),
    "genome_kind": _one_of("hebbian", "static"),
    "rule": _one_of(*RULES),
    "activation": _one_of(*ACTIVATIONS),
    "init": _one_of(*INITS, "coevolve"),
    "network_backend": _one_of("auto", "numpy", "numba"),
    "parameter_init_std": _between(0, 100),  # the start stays within a genome's +-1e4
    "symmetry": _one_of("none", "mirror"),
    "generations": _between(1, 100_000),
    "population": ((lambda v: 2 <= v <= 10_000 and v % 2 == 0), "an even number 2-10000 (mirrored pairs)"),
    "sigma": ((lambda v: v > 0), "> 0"),
    "sigma_decay": _fraction(),
    "sigma_min": _at_least(0),
    "lr": ((lambda v: v > 0), "> 0"),
    "lr_decay": _fraction(),
    "l2": _at_least(0),
    "optimizer": _one_of("sgd", "adam"),
    "seed": _between(0, 2**31 - 1),
    "ticks": _between(1, 100_000),
    "settle_ticks": _between(0, MAX_SETTLE_TICKS),
    "lifetimes": _between(1, 100),
    "fitness_cap": _at_least(0),
    "overshoot_cost": _at_least(0),
    "fitness_shaping": _one_of("pooled", "per_body"),
    "joint_limit_cost": _at_least(0),
    "joint_motion_reward": _at_least(0),
    "fall_cost": _at_least(0),
    "hard_body_weight": _between(0, 1000),
    "train_damages": ((lambda v: len(v) > 0), "a non-empty list of morphologies ([] is the intact body)"),
    "validation_lifetimes": _between(1, 100),
    "validation_ticks": _between(1, 100_000),
    "validate_every": _at_least(1),
    "snapshot_every": _at_least(0),
    "backend": _one_of("local", "ray"),
    "workers": _between(0, 1024),
}


def _coerce(name: str, value: Any, default: Any) -> Any:
    """Check one value against the type of its default; tuples of tuples hold damage specs."""
    if name in DAMAGE_KEYS:
        if not isinstance(value, list | tuple) or not all(isinstance(v, list | tuple) for v in value):
            raise ConfigError(f"config key {name!r} must be a list of lists of damage specs, got {value!r}")
        if not all(isinstance(s, str) for v in value for s in v):
            raise ConfigError(f"config key {name!r}: every damage spec must be a string like 'cut-leg:2'")
        for spec in (s for v in value for s in v):
            try:
                parse(spec)
            except SpecError as exc:
                raise ConfigError(f"config key {name!r}: {exc}") from None
        return tuple(tuple(v) for v in value)
    if name == "hidden":
        layers, width = MAX_HIDDEN
        if not (
            isinstance(value, list | tuple)
            and len(value) <= layers
            and all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= width for v in value)
        ):
            raise ConfigError(
                f"config key 'hidden' must be a list of up to {layers} layer sizes 1-{width}, got {value!r}"
            )
        return tuple(value)
    if name == "train_suite":
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"config key 'train_suite' must name a fault suite, got {value!r}")
        return value
    if name == "init_from":
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"config key 'init_from' must be a genome file path, got {value!r}")
        return value
    if name == "randomise":
        if value is not None and not isinstance(value, str | dict):
            raise ConfigError(
                f"config key 'randomise' must be a randomisation file or mapping, got {value!r}"
            )
        try:
            if value is not None:
                load_randomisation(value)
        except SpecError as exc:
            raise ConfigError(f"config key 'randomise': {exc}") from None
        return value
    if name == "ray_address":
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"config key 'ray_address' must be an address string, got {value!r}")
        return value
    kind = type(default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value) if abs(value) <= sys.float_info.max else math.inf
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        expected = "true or false" if kind is bool else kind.__name__
        raise ConfigError(f"config key {name!r} must be {expected}, got {value!r}")
    if kind is float and not math.isfinite(value):  # .inf or .nan would run on and write NaN genomes
        raise ConfigError(f"config key {name!r} must be a finite number, got {value!r}")
    return value


def make_config(values: dict[str, Any]) -> Config:
    """Validate a mapping of config keys into a :class:`Config`."""
    known = {f.name: f.default for f in fields(Config)}
    checked: dict[str, Any] = {}
    for name, value in values.items():
        if name not in known:
            raise ConfigError(f"unknown config key {name!r}; valid keys: {', '.join(sorted(known))}")
        checked[name] = _coerce(name, value, known[name])
    config = Config(**checked)
    if config.train_suite is not None:
        config = _with_suite(config, checked.get("train_damages"))
    for name, (valid, expected) in RANGES.items():
        if not valid(getattr(config, name)):
            raise ConfigError(f"config key {name!r} must be {expected}, got {getattr(config, name)!r}")
    if config.overshoot_cost and not config.fitness_cap:
        raise ConfigError(
            "config key 'overshoot_cost' charges distance beyond fitness_cap; set fitness_cap > 0"
        )
    if config.hard_body_weight and not config.train_damage_sample:
        raise ConfigError(
            "config key 'hard_body_weight' weighs which train bodies are drawn; set train_damage_sample > 0"
        )
    if not 0 <= config.train_damage_sample <= len(config.train_damages):
        raise ConfigError(
            f"config key 'train_damage_sample' must be between 0 and {len(config.train_damages)} "
            f"(the number of train_damages entries), got {config.train_damage_sample}"
        )
    return config


def _with_suite(config: Config, listed: tuple[tuple[str, ...], ...] | None) -> Config:
    """The config with its suite's train split as the training bodies (a run's saved config lists them
    too: they must be the suite's, so a suite edited since cannot silently change a resumed run)."""
    try:
        suite = load_suite(config.train_suite)
    except SpecError as exc:
        raise ConfigError(f"config key 'train_suite': {exc}") from None
    if suite.task != config.task:
        raise ConfigError(
            f"config key 'train_suite': suite {suite.name!r} is for task {suite.task!r}, the config's is "
            f"{config.task!r}"
        )
    bodies = suite.morphologies("train")
    if listed is not None and listed != bodies:
        raise ConfigError(
            f"config keys 'train_suite' and 'train_damages' disagree (suite {suite.path} changed?); keep one"
        )
    return replace(config, train_damages=bodies)


class StrictLoader(yaml.SafeLoader):
    """``yaml.safe_load``'s loader, except that a key given twice in one mapping is an error: PyYAML would
    keep the last one silently, and a run would differ from what its file seems to say."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # ``<<:`` merges another mapping, whose keys this one may override
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                continue  # the base class refuses it
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice; keep one", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def parse_override(text: str) -> tuple[str, Any]:
    """``key=value`` with the value read as YAML (``hidden=[64,32]``, ``normalise=false``)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r} must look like key=value")
    key, raw = text.split("=", 1)
    try:
        return key.strip(), yaml.load(raw, Loader=StrictLoader)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or exc.__class__.__name__
        raise ConfigError(f"--set {text!r}: the value is not valid YAML ({problem})") from None


def read_mapping(path: Path) -> dict[str, Any]:
    """A config file's mapping of keys to values: UTF-8, valid YAML, no key twice, not empty (an empty
    file would run every default)."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {path} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset "
            f"{exc.start}); save it as UTF-8"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        values = yaml.load(text, Loader=StrictLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None)
        detail = f" ({problem})" if problem else ""
        raise ConfigError(f"config file {path} is not valid YAML{where}{detail}; fix the syntax") from None
    if values is None or values == {}:
        raise ConfigError(
            f"config file {path} is empty, which would run {Config.generations} generations of defaults; "
            "name a task (task: ant) or start from a file in launch/"
        )
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must be a mapping of keys to values")
    return values


def _read_values(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A config file's keys, on top of those of the file its ``base:`` key names (relative to it), so a
    stage's launch file holds only what it changes."""
    if not path.is_file():
        where = f" (the base of {chain[-1]})" if chain else ""
        raise ConfigError(f"config file {path}{where} not found; see launch/ for examples")
    if path.resolve() in chain:
        raise ConfigError(f"config file {chain[-1]}: base {path} is already in the chain; remove the loop")
    values = read_mapping(path)
    base = values.pop("base", None)
    if base is None:
        return values
    if not isinstance(base, str):
        raise ConfigError(f"config file {path}: 'base' must name a config file, got {base!r}")
    inherited = _read_values(path.parent / base, (*chain, path.resolve()))
    for own, other in BODY_SOURCES:  # a stage that names its training bodies one way drops the other
        if own in values and other not in values:
            inherited.pop(other, None)
    return {**inherited, **values}


def load_config(path: str | Path, overrides: list[str] = ()) -> Config:
    """Read a YAML config (and the files its ``base:`` chain names), apply ``key=value`` overrides,
    validate."""
    values = _read_values(Path(path))
    values.update(dict(parse_override(o) for o in overrides))
    return make_config(values)


def config_to_dict(config: Config) -> dict[str, Any]:
    """Plain YAML-able values (tuples as lists), to save beside a run."""

    def plain(value: Any) -> Any:
        return [plain(v) for v in value] if isinstance(value, tuple) else value

    return {f.name: plain(getattr(config, f.name)) for f in fields(Config)}
