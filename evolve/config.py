"""Run configurations: YAML files in ``launch/``, validated key by key.

Every key has a type and a default here; an unknown key or a value of the wrong type or range is a
:class:`ConfigError` naming the key, so a typo never silently runs the defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from controller.errors import UserError


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
    # evolution strategy
    generations: int = 300
    population: int = 64
    sigma: float = 0.1
    sigma_decay: float = 1.0
    sigma_min: float = 0.01
    lr: float = 0.05
    lr_decay: float = 0.999
    l2: float = 0.01
    optimizer: str = "sgd"
    seed: int = 0
    # fitness
    ticks: int = 500
    settle_ticks: int = 40
    early_stop: bool = True
    lifetimes: int = 1
    train_damages: tuple[tuple[str, ...], ...] = ((),)  # each entry: the damages of one morphology
    train_damage_sample: int = 0  # morphologies drawn per mirrored pair each generation (0 = all)
    train_always_intact: bool = False  # with sampling: also evaluate the intact body every time
    validation_damages: tuple[tuple[str, ...], ...] = ((),)
    validation_lifetimes: int = 3
    validation_ticks: int = 1000
    validate_every: int = 10
    # execution
    backend: str = "local"  # local | ray
    workers: int = 0  # 0 = all cores
    ray_address: str | None = None


CHOICES = {
    "genome_kind": ("hebbian", "static"),
    "optimizer": ("sgd", "adam"),
    "backend": ("local", "ray"),
    "activation": ("tanh", "linear"),
}
POSITIVE = ("generations", "population", "ticks", "lifetimes", "validation_lifetimes", "validation_ticks")


def _coerce(name: str, value: Any, default: Any) -> Any:
    """Check one value against the type of its default; tuples of tuples hold damage specs."""
    if name in ("train_damages", "validation_damages"):
        if not isinstance(value, list | tuple) or not all(isinstance(v, list | tuple) for v in value):
            raise ConfigError(f"config key {name!r} must be a list of lists of damage specs, got {value!r}")
        if not all(isinstance(s, str) for v in value for s in v):
            raise ConfigError(f"config key {name!r}: every damage spec must be a string like 'cut-leg:2'")
        return tuple(tuple(v) for v in value)
    if name == "hidden":
        if not isinstance(value, list | tuple) or not all(isinstance(v, int) and v > 0 for v in value):
            raise ConfigError(f"config key 'hidden' must be a list of positive layer sizes, got {value!r}")
        return tuple(value)
    if name == "ray_address":
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"config key 'ray_address' must be an address string, got {value!r}")
        return value
    kind = type(default)
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key {name!r} must be true or false, got {value!r}")
        return value
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ConfigError(f"config key {name!r} must be {kind.__name__}, got {value!r}")
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
    for name, choices in CHOICES.items():
        if getattr(config, name) not in choices:
            raise ConfigError(
                f"config key {name!r} must be one of {', '.join(choices)}, got {getattr(config, name)!r}"
            )
    for name in POSITIVE:
        if getattr(config, name) < 1:
            raise ConfigError(f"config key {name!r} must be >= 1, got {getattr(config, name)}")
    if config.population % 2:
        raise ConfigError(f"config key 'population' must be even (mirrored pairs), got {config.population}")
    if config.sigma <= 0 or config.lr <= 0:
        raise ConfigError("config keys 'sigma' and 'lr' must be > 0")
    if not 0 <= config.train_damage_sample <= len(config.train_damages):
        raise ConfigError(
            f"config key 'train_damage_sample' must be between 0 and {len(config.train_damages)} "
            f"(the number of train_damages entries)"
        )
    return config


def parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(f"--set {text!r} must look like key=value")
    key, raw = text.split("=", 1)
    try:
        return key.strip(), yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {text!r}: the value is not valid YAML ({exc.__class__.__name__})") from None


def load_config(path: str | Path, overrides: list[str] = ()) -> Config:
    """Read a YAML config, apply ``key=value`` overrides, validate."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found; see launch/ for examples")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config file {path} is not valid YAML{where}; fix the syntax") from None
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must be a mapping of keys to values")
    values.update(dict(parse_override(o) for o in overrides))
    return make_config(values)


def config_to_dict(config: Config) -> dict[str, Any]:
    """Plain YAML-able values (tuples as lists), to save beside a run."""

    def plain(value: Any) -> Any:
        return [plain(v) for v in value] if isinstance(value, tuple) else value

    return {f.name: plain(getattr(config, f.name)) for f in fields(Config)}
