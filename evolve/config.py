"""Run configurations: YAML files in ``launch/``, validated in one place.

A :class:`Config` holds the task, the seed and one section per concern (``network``, ``search``,
``fitness``, ``training``, ``validation``, ``execution``), each a frozen dataclass whose fields declare
their default, type and valid values together (``evolve/settings.py``): a value is read by its field's type
and checked against its field's declaration, and the checks that involve several keys are in
:func:`_across_keys`. An unknown key or a value of the wrong type or range is a :class:`ConfigError`
naming the key, so a typo never silently runs the defaults. The defaults are the settings that learned on
this Ant (``docs/method.md``, "Measured here"), not the paper's literal ones.

A key has one name in every form: flat (``hidden: [64, 32]``, as every launch file, saved run and
shipped genome's provenance written before the sections has it), nested in its section
(``network: {hidden: [64, 32]}``) or dotted (``--set network.hidden=[64,32]``). A mapping may mix the
forms but not give one key twice. :func:`config_to_dict` writes the nested form (a run's ``config.yaml``,
a genome's provenance); every form reads back to the same :class:`Config`. A file may name a ``base:``
file whose keys it starts from, so each stage of a run says only what it changes.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Hashable, Iterable
from contextlib import suppress
from dataclasses import Field, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from types import UnionType
from typing import Any, get_args, get_origin

import yaml

from controller.errors import UserError
from controller.genome import COEVOLVE, KINDS, MAX_SETTLE_TICKS
from controller.network import ACTIVATIONS, BACKENDS, INITS, MAX_PLASTICITY_PERIOD
from controller.rules import RULES
from evolve.openai_es import ESParams
from evolve.settings import Invalid, Valid, at_least, between, check, one_of, setting, types
from sim import TASKS
from sim.damage import SpecError, parse
from sim.randomise import load_randomisation
from sim.suite import load_suite


class ConfigError(UserError):
    """A malformed config file or --set override."""


Morphologies = tuple[tuple[str, ...], ...]  # each entry: the damage specs of one body ([] is the intact one)
SPECS = "a list of lists of damage specs like 'cut-leg:2'"


def _parse_specs(morphologies: Morphologies) -> None:
    for spec in (s for body in morphologies for s in body):
        parse(spec)


def _read_randomisation(value: str | dict[str, Any] | None) -> None:
    if value is not None:
        load_randomisation(value)


# Upper bounds sit far above any run here (2000 generations, 1000 ticks) and below what would exhaust
# memory or never end a generation; a genome stays under the loader's bound.
MAX_TICKS = 100_000
RULE_SHARING = ("per_synapse", "per_input_neuron", "per_output_neuron", "per_layer")
MAX_LAYERS, MAX_WIDTH = 4, 1024  # hidden layers, neurons per layer


@dataclass(frozen=True)
class NetworkConfig:
    """The controller evolved: its genome's kind, plasticity rule and layers."""

    genome_kind: str = setting("hebbian", one_of(KINDS))  # static: the baseline, evolved fixed weights
    rule: str = setting("ABCD_lr", one_of(RULES))
    hidden: tuple[int, ...] = setting(
        (128, 64),
        Valid(
            lambda v: len(v) <= MAX_LAYERS and all(0 < n <= MAX_WIDTH for n in v),
            f"a list of up to {MAX_LAYERS} layer sizes 1-{MAX_WIDTH}",
        ),
    )
    activation: str = setting("tanh", one_of(ACTIVATIONS))
    # initial weights of each lifetime, or coevolve (evolved with the rules)
    init: str = setting("uniform", one_of((*INITS, COEVOLVE)))
    normalise: bool = True  # per-layer max-|w| normalisation after every update
    # ticks per weight change (1: every tick, the paper's); K > 1: once every K ticks, the rule applied
    # to each neuron's mean activation over them (a slower plasticity clock)
    plasticity_period: int = setting(1, between(1, MAX_PLASTICITY_PERIOD))
    network_backend: str = setting("auto", one_of(("auto", *BACKENDS)))


def _es(name: str) -> Any:
    """The ES's own field ``name``: its default and valid values, with no second copy of either here."""
    es = next(f for f in fields(ESParams) if f.name == name)
    return field(default=es.default, metadata=es.metadata)


@dataclass(frozen=True)
class SearchConfig:
    """What is searched and how: the search space and where it starts, then the ES's settings."""

    # none: every parameter searched; mirror: each synapse tied to its left-right reflection
    # (evolve/search_space.py)
    symmetry: str = setting("none", one_of(("none", "mirror")))
    # which synapses share one rule (evolve/search_space.py): each its own, one per input neuron, per
    # output neuron or per layer
    rules: str = setting("per_synapse", one_of(RULE_SHARING))
    # evolve-and-merge (Pedersen & Risi, GECCO 2021): every merge_every generations the rules are
    # clustered into the next count of merge_to (k-means) and the search goes on over one rule per
    # cluster; 0 = never
    merge_every: int = setting(0, between(0, 100_000))
    merge_to: tuple[int, ...] = setting(
        (),
        Valid(
            lambda v: all(n > 0 for n in v) and list(v) == sorted(set(v), reverse=True),
            "a list of decreasing rule counts, e.g. [4096, 1024, 380]",
        ),
    )
    # the search starts from N(0, std^2) parameters (within a genome's +-1e4)...
    parameter_init_std: float = setting(1.0, between(0, 100))
    # ...or from a genome file's parameters (a warm start, e.g. a second stage)
    init_from: str | None = setting(None, what="a genome file path")
    generations: int = setting(300, between(1, 100_000))
    population: int = _es("population")
    sigma: float = _es("sigma")
    sigma_decay: float = _es("sigma_decay")
    sigma_min: float = _es("sigma_min")
    lr: float = _es("lr")
    lr_decay: float = _es("lr_decay")
    # m of fitness (or reward) lost per unit of a member's mean squared parameter, before any ranking
    # (evolve/shaping.py, l2_penalty)
    l2: float = setting(0.01, at_least(0))
    optimizer: str = _es("optimizer")


@dataclass(frozen=True)
class FitnessConfig:
    """What a lifetime scores in training, and how the scores are ranked."""

    ticks: int = setting(500, between(1, MAX_TICKS))
    settle_ticks: int = setting(40, between(0, MAX_SETTLE_TICKS))
    early_stop: bool = True
    lifetimes: int = setting(1, between(1, 100))
    # each lifetime's fitness clipped at this before averaging (0 = no cap): above it a lifetime counts
    # as done, so the search pays for walking in every lifetime rather than far in a few
    fitness_cap: float = setting(0.0, at_least(0))
    # m of fitness lost per m a lifetime walks beyond fitness_cap (0 = beyond the cap counts as the cap): with
    # it the cap is a pace to hold, as a legged robot walks at a commanded speed rather than flat out, and
    # the search pays for keeping that pace on a damaged body rather than for top speed on the intact one
    overshoot_cost: float = setting(0.0, at_least(0))
    # pooled: the ES ranks each member's mean over its bodies; per_body: ranks on each body among the
    # members that walked it, then averages (a hard body's small differences count as much as the rest)
    fitness_shaping: str = setting("pooled", one_of(("pooled", "per_body")))
    # m of fitness lost per joint-second at a limit of the joint's range (MuJoCo robots; 0 = the paper's
    # distance alone): pays for gaits that work their joints rather than pin all but one at a stop
    joint_limit_cost: float = setting(0.0, at_least(0))
    # m of fitness earned per joint-second that a joint moves (MuJoCo robots; 0 = none): a joint counts in
    # proportion to its mean angular speed, fully from JOINT_TRAVEL (1 rad/s) up, so a gait that works
    # every leg outscores one that pins seven joints and drives the eighth
    joint_motion_reward: float = setting(0.0, at_least(0))
    # m of fitness lost per second of the lifetime that a fall cuts short (0 = the paper's: a fall only
    # ends the lifetime, so falling forward fast can outscore standing on a body the walker cannot walk)
    fall_cost: float = setting(0.0, at_least(0))


@dataclass(frozen=True)
class TrainingConfig:
    """The bodies a generation is evaluated on, and how each is drawn."""

    train_damages: Morphologies = setting(
        ((),),
        Valid(lambda v: len(v) > 0, "a non-empty list of morphologies ([] is the intact body)"),
        what=SPECS,
        parse=_parse_specs,
    )
    # or a fault suite (launch/suites/, sim/suite.py) whose train split is the training bodies: the
    # held-out split then stays out of training by construction
    train_suite: str | None = setting(None, what="a fault suite's name")
    train_damage_sample: int = 0  # morphologies drawn per mirrored pair each generation (0 = all)
    train_always_intact: bool = False  # with sampling: also evaluate the intact body every time
    # with sampling: each train body is drawn in proportion to 1 + hard_body_weight x its deficit (1 - the
    # mean genome's distance there / its intact distance, at the last validation; 0 = uniform), so the
    # bodies the walker fails on get the samples, rather than the many it already walks
    hard_body_weight: float = setting(0.0, between(0, 1000))
    # domain randomisation of every training and validation lifetime (sim/randomise.py): a YAML file
    # (launch/randomisation/) or an inline mapping; validation seeds never repeat a training draw
    randomise: str | dict[str, Any] | None = setting(
        None, what="a randomisation file or mapping", parse=_read_randomisation
    )


@dataclass(frozen=True)
class ValidationConfig:
    """The mean genome's checks on held-out damage, and which of its genomes are kept."""

    validation_damages: Morphologies = setting(((),), what=SPECS, parse=_parse_specs)
    validation_lifetimes: int = setting(3, between(1, 100))
    validation_ticks: int = setting(1000, between(1, MAX_TICKS))
    validate_every: int = setting(10, at_least(1))
    # keep the mean genome of every Nth generation as generationN.npz (0 = only latest/best/final): the
    # held-out scores of a long run peak and fall, and a genome not kept cannot be picked afterwards
    snapshot_every: int = setting(0, at_least(0))


@dataclass(frozen=True)
class ExecutionConfig:
    """Where the jobs run: what a resumed run may change, since the trajectory does not depend on it."""

    backend: str = setting("local", one_of(("local", "ray")))
    workers: int = setting(0, between(0, 1024))  # 0 = all cores
    ray_address: str | None = setting(None, what="an address string")


@dataclass(frozen=True)
class Config:
    """A run: its task and seed, and a section per concern (a key's flat name is its field's name)."""

    task: str = setting("ant", one_of(TASKS))
    seed: int = setting(0, between(0, 2**31 - 1))
    network: NetworkConfig = field(default_factory=NetworkConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    fitness: FitnessConfig = field(default_factory=FitnessConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)


@dataclass(frozen=True)
class Key:
    """Where a flat key lives: its section (None: the top level), its field and the field's type."""

    section: str | None
    field: Field[Any]
    kind: Any


SECTIONS: dict[str, type] = {
    f.name: types(Config)[f.name] for f in fields(Config) if is_dataclass(types(Config)[f.name])
}
KEYS: dict[str, Key] = {
    **{f.name: Key(None, f, types(Config)[f.name]) for f in fields(Config) if f.name not in SECTIONS},
    **{f.name: Key(name, f, types(cls)[f.name]) for name, cls in SECTIONS.items() for f in fields(cls)},
}
BODY_SOURCES = (("train_suite", "train_damages"), ("train_damages", "train_suite"))


class _Mismatch(Exception):
    """A value not of its field's type."""


def _typed(value: Any, kind: Any) -> Any:
    """``value`` read as the annotated type ``kind`` (an int as a float, a list as a tuple), else
    :class:`_Mismatch`."""
    if kind is Any:
        return value
    if isinstance(kind, UnionType):
        for option in get_args(kind):
            with suppress(_Mismatch):
                return _typed(value, option)
        raise _Mismatch
    origin, args = get_origin(kind), get_args(kind)
    if origin is tuple and isinstance(value, list | tuple):  # tuple[X, ...]
        return tuple(_typed(v, args[0]) for v in value)
    if origin is dict and isinstance(value, dict):
        return {_typed(k, args[0]): _typed(v, args[1]) for k, v in value.items()}
    if origin is None and kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value) if abs(value) <= sys.float_info.max else math.inf  # inf: refused as not finite
    if origin is None and isinstance(value, kind) and (kind is bool or not isinstance(value, bool)):
        return value
    raise _Mismatch


def _describe(kind: Any) -> str:
    """What a value of type ``kind`` is, for an error."""
    if kind is bool:
        return "true or false"
    if kind is type(None):
        return "null"
    if isinstance(kind, UnionType):
        return " or ".join(_describe(option) for option in get_args(kind))
    if get_origin(kind) is tuple:
        return f"a list of {_describe(get_args(kind)[0])}"
    return kind.__name__


def _read(key: str, value: Any) -> Any:
    """One key's value read by its field's type (and its field's parser, if any)."""
    declared, kind = KEYS[key].field, KEYS[key].kind
    try:
        typed = _typed(value, kind)
    except _Mismatch:
        expected = declared.metadata.get("what") or _describe(kind)
        raise ConfigError(f"config key {key!r} must be {expected}, got {value!r}") from None
    parser = declared.metadata.get("parse")
    if parser is not None:
        try:
            parser(typed)
        except SpecError as exc:
            raise ConfigError(f"config key {key!r}: {exc}") from None
    return typed


def _flat_key(name: Any) -> str:
    """The flat name of a key given flat (``hidden``) or dotted (``network.hidden``)."""
    section, dot, key = name.rpartition(".") if isinstance(name, str) else ("", "", name)
    if not dot:
        if key in KEYS:
            return key
        raise ConfigError(
            f"unknown config key {key!r}; valid keys: {', '.join(sorted(KEYS))}; "
            f"sections: {', '.join(SECTIONS)}"
        )
    if section not in SECTIONS:
        raise ConfigError(f"unknown config section {section!r}; sections: {', '.join(SECTIONS)}")
    if key in KEYS and KEYS[key].section != section:
        home = KEYS[key].section
        where = f"section {home!r}" if home else "the top level"
        raise ConfigError(f"unknown config key {name!r}; {key!r} belongs to {where}")
    if key not in KEYS:
        inside = ", ".join(k for k, where in KEYS.items() if where.section == section)
        raise ConfigError(f"unknown config key {name!r}; section {section!r} holds {inside}")
    return key


def flat_values(values: dict[Any, Any]) -> dict[str, Any]:
    """``values`` with every key by its flat name (``network: {hidden: ...}`` and ``network.hidden`` as
    ``hidden``), so mappings of any form merge key by key: a stage on its base, --set on a file. An unknown
    section or key, or a key given twice, is a ConfigError."""
    flat: dict[str, Any] = {}
    given: dict[str, str] = {}
    for name, value in values.items():
        if name in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"config section {name!r} must be a mapping of its keys, got {value!r}")
            entries = [(f"{name}.{inner}", v) for inner, v in value.items()]
        else:
            entries = [(name, value)]
        for written, v in entries:
            key = _flat_key(written)
            if key in flat:
                raise ConfigError(
                    f"config key {key!r} is given twice (as {given[key]!r} and {written!r}); keep one"
                )
            flat[key], given[key] = v, written
    return flat


def make_config(values: dict[Any, Any]) -> Config:
    """Validate a mapping of config keys (flat, nested or dotted) into a :class:`Config`."""
    read = {key: _read(key, value) for key, value in flat_values(values).items()}
    sections = {
        name: cls(**{k: v for k, v in read.items() if KEYS[k].section == name})
        for name, cls in SECTIONS.items()
    }
    config = Config(**{k: v for k, v in read.items() if KEYS[k].section is None}, **sections)
    try:
        for part in (config, *sections.values()):
            check(part)
    except Invalid as exc:
        raise ConfigError(f"config key {exc.key!r} must be {exc.expected}, got {exc.value!r}") from None
    return _across_keys(config, read.get("train_damages"))


def _across_keys(config: Config, listed: Morphologies | None) -> Config:
    """The checks that involve more than one key, and the key one of them sets: a train_suite's train
    split is train_damages. ``listed``, train_damages given beside a suite, must be that split (a run's
    saved config lists both, so a suite edited since cannot silently change a resumed run)."""
    training, fitness = config.training, config.fitness
    if training.train_suite is not None:
        try:
            suite = load_suite(training.train_suite)
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
                f"config keys 'train_suite' and 'train_damages' disagree (suite {suite.path} changed?); "
                "keep one"
            )
        training = replace(training, train_damages=bodies)
        config = replace(config, training=training)
    if fitness.overshoot_cost and not fitness.fitness_cap:
        raise ConfigError(
            "config key 'overshoot_cost' charges distance beyond fitness_cap; set fitness_cap > 0"
        )
    search = config.search
    if (search.merge_every > 0) != bool(search.merge_to):
        raise ConfigError(
            "config keys 'merge_every' and 'merge_to' go together: set both (merge_every: 40, merge_to: "
            "[1024, 380]) or neither"
        )
    if (search.merge_to or search.rules != "per_synapse") and config.network.genome_kind != "hebbian":
        raise ConfigError(
            "config keys 'rules' and 'merge_to' share plasticity rules; a static genome has none"
        )
    if search.merge_to and search.rules != "per_synapse":
        raise ConfigError("config key 'merge_to' clusters per-synapse rules; set rules: per_synapse")
    if training.hard_body_weight and not training.train_damage_sample:
        raise ConfigError(
            "config key 'hard_body_weight' weighs which train bodies are drawn; set train_damage_sample > 0"
        )
    if not 0 <= training.train_damage_sample <= len(training.train_damages):
        raise ConfigError(
            f"config key 'train_damage_sample' must be between 0 and {len(training.train_damages)} "
            f"(the number of train_damages entries), got {training.train_damage_sample}"
        )
    return config


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


def _parse_override(text: str) -> tuple[str, Any]:
    """``key=value`` with the value read as YAML (``hidden=[64,32]``, ``normalise=false``)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r} must look like key=value")
    key, raw = text.split("=", 1)
    try:
        return key.strip(), yaml.load(raw, Loader=StrictLoader)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or exc.__class__.__name__
        raise ConfigError(f"--set {text!r}: the value is not valid YAML ({problem})") from None


def parse_overrides(texts: Iterable[str]) -> dict[str, Any]:
    """``key=value`` overrides (flat, dotted or a section's mapping) by flat key name; a later one wins."""
    values: dict[str, Any] = {}
    for text in texts:
        values.update(flat_values(dict([_parse_override(text)])))
    return values


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
            f"config file {path} is empty, which would run {SearchConfig.generations} generations of "
            "defaults; name a task (task: ant) or start from a file in launch/"
        )
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must be a mapping of keys to values")
    return values


def _read_values(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A config file's keys by flat name, on top of those of the file its ``base:`` key names (relative to
    it), so a stage's launch file holds only what it changes."""
    if not path.is_file():
        where = f" (the base of {chain[-1]})" if chain else ""
        raise ConfigError(f"config file {path}{where} not found; see launch/ for examples")
    if path.resolve() in chain:
        raise ConfigError(f"config file {chain[-1]}: base {path} is already in the chain; remove the loop")
    values = read_mapping(path)
    base = values.pop("base", None)
    values = flat_values(values)
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
    values.update(parse_overrides(overrides))
    return make_config(values)


def config_to_dict(config: Config) -> dict[str, Any]:
    """The nested form in plain YAML-able values (sections as mappings, tuples as lists), to save beside a
    run: :func:`make_config` reads it back to ``config``."""

    def plain(value: Any) -> Any:
        if is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in fields(value)}
        return [plain(v) for v in value] if isinstance(value, tuple) else value

    return plain(config)
