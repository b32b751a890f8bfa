"""Domain randomisation: per-lifetime draws of what differs between a model and a real robot.

A genome that walks only on the nominal model walks on no real robot: masses, friction, servo strength
and speed, latency, sensor noise and bias and the control loop's timing all differ. These wrappers draw
them afresh every lifetime, from a generator seeded at reset from the robot's own (``env.np_random``),
so a lifetime is reproducible from its seed and different seeds give different robots. What a lifetime
drew is in ``info["randomisation"]`` after reset.

Config (a YAML mapping or a dict; ``[low, high]`` is a uniform range, absent or null is off)::

    mass_scale: [0.8, 1.2]       # per body: mass and rotational inertia (same shape, denser)
    inertia_scale: [0.7, 1.3]    # per body: rotational inertia only (mass placed differently)
    friction: [0.5, 1.25]        # sliding friction of every geom (floor and feet), one per lifetime
    servo_strength: [0.7, 1.1]   # per servo: stall torque scale (battery sag, servo spread)
    servo_speed: [0.7, 1.1]      # per servo: no-load speed scale
    latency: [0.005, 0.04]       # s: command-to-motion latency of the servos, one per lifetime
    obs_noise: 0.01              # std of Gaussian noise on every sensed value, every tick
    obs_bias: 0.02               # std of a constant offset per sensed value, drawn per lifetime
    tick_jitter: 0.004           # s: every tick lasts the control period +- up to this
    push_interval: 15            # s between pushes of the body (0: none)
    push_speed: 0.3              # m/s: each push changes the body's x and y velocity by up to this

Body figures work on every MuJoCo quadruped; servo figures and ``tick_jitter`` need a robot with a
servo model (``servo-quad``); noise and bias act on the robot's sensed channels (``robot.sensed``:
the IMU's for ``servo-quad``, whose commanded angles are known exactly).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import yaml

from sim.damage import SpecError, unbounded

Range = tuple[float, float]


class RandomisationError(SpecError):
    """A randomisation config that cannot be read or does not fit the robot."""


@dataclass(frozen=True)
class Randomisation:
    """What to randomise and how much; see the module docstring for each key."""

    mass_scale: Range | None = None
    inertia_scale: Range | None = None
    friction: Range | None = None
    servo_strength: Range | None = None
    servo_speed: Range | None = None
    latency: Range | None = None
    obs_noise: float = 0.0
    obs_bias: float = 0.0
    tick_jitter: float = 0.0
    push_interval: float = 0.0
    push_speed: float = 0.0

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], source: str = "randomisation") -> Randomisation:
        """Validate a mapping of keys; an unknown key or a bad value is one error naming it."""
        known = {f.name: f for f in fields(cls)}
        checked: dict[str, Any] = {}
        for key, value in values.items():
            if key not in known:
                raise RandomisationError(f"{source}: unknown key {key!r}; known: {', '.join(known)}")
            if value is None:
                continue
            checked[key] = _range(source, key, value) if key in RANGE_KEYS else _scalar(source, key, value)
        config = cls(**checked)
        if (config.push_interval > 0) != (config.push_speed > 0):
            raise RandomisationError(f"{source}: pushes need both push_interval and push_speed above 0")
        return config

    @property
    def servo_keys(self) -> list[str]:
        """The keys switched on that need a servo model."""
        ranges = [k for k in ("servo_strength", "servo_speed", "latency") if getattr(self, k) is not None]
        return ranges + (["tick_jitter"] if self.tick_jitter > 0 else [])


RANGE_KEYS = ("mass_scale", "inertia_scale", "friction", "servo_strength", "servo_speed", "latency")


def _number(source: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RandomisationError(f"{source}: {key} must be a finite number, got {value!r}")
    return float(value)


def _range(source: str, key: str, value: Any) -> Range:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise RandomisationError(f"{source}: {key} must be a range [low, high], got {value!r}")
    low, high = (_number(source, key, v) for v in value)
    positive = key != "latency"
    if low > high or low < 0 or (positive and low == 0):
        need = "0 <= low <= high" if not positive else "0 < low <= high"
        raise RandomisationError(f"{source}: {key} needs {need}, got [{low:g}, {high:g}]")
    return low, high


def _scalar(source: str, key: str, value: Any) -> float:
    number = _number(source, key, value)
    if number < 0:
        raise RandomisationError(f"{source}: {key} must be >= 0, got {number:g}")
    return number


def load_randomisation(config: Randomisation | Mapping[str, Any] | str | os.PathLike) -> Randomisation:
    """A :class:`Randomisation` from itself, a mapping, or a YAML file."""
    if isinstance(config, Randomisation):
        return config
    if isinstance(config, Mapping):
        return Randomisation.from_mapping(config)
    path = Path(config)
    try:
        values = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise RandomisationError(f"cannot read randomisation file {path}: {exc.strerror}") from None
    except yaml.YAMLError:
        raise RandomisationError(f"randomisation file {path} is not valid YAML; fix the syntax") from None
    if not isinstance(values, dict):
        raise RandomisationError(f"randomisation file {path} must be a mapping of keys to values")
    return Randomisation.from_mapping(values, str(path))


class Randomiser(gymnasium.Wrapper):
    """Base wrapper: a generator seeded per lifetime from the robot's, draws made at reset."""

    def __init__(self, env: gymnasium.Env, config: Randomisation) -> None:
        super().__init__(env)
        self.config = config
        self.rng = np.random.default_rng(0)
        self.drawn: dict[str, Any] = {}

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        robot = self.env.unwrapped
        self.rng = np.random.default_rng(int(robot.np_random.integers(2**63)))
        self.drawn = self._draw(robot)
        info["randomisation"] = {**info.get("randomisation", {}), **self.drawn}
        return self._observe(obs), info

    def step(self, action: np.ndarray):
        self._before_step(self.env.unwrapped)
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self._observe(obs), reward, terminated, truncated, info

    def _draw(self, robot: Any) -> dict[str, Any]:
        """Draw this lifetime's values, apply them, and say what they are."""
        return {}

    def _before_step(self, robot: Any) -> None:
        """Act on the robot before a tick."""

    def _observe(self, obs: np.ndarray) -> np.ndarray:
        return obs


def _uniform(rng: np.random.Generator, bounds: Range | None, size: int | None = None) -> Any:
    return None if bounds is None else rng.uniform(*bounds, size)


def _require(robot: Any, attribute: str, what: str) -> None:
    if not hasattr(robot, attribute):
        raise RandomisationError(f"{what}; {type(robot).__name__} has none")


class BodyRandomisation(Randomiser):
    """Masses, inertias and friction: compiled model fields, re-applied after any recompile."""

    def __init__(self, env: gymnasium.Env, config: Randomisation) -> None:
        super().__init__(env, config)
        _require(env.unwrapped, "tune_model", "mass, inertia and friction need a MuJoCo robot")

    def _draw(self, robot: Any) -> dict[str, Any]:
        c, bodies = self.config, robot.model.nbody - 1  # body 0 is the world
        mass = _uniform(self.rng, c.mass_scale, bodies)
        inertia = _uniform(self.rng, c.inertia_scale, bodies)
        friction = _uniform(self.rng, c.friction)

        def tune(model: Any) -> None:
            if mass is not None:
                model.body_mass[1:] *= mass
                model.body_inertia[1:] *= mass[:, None]
            if inertia is not None:
                model.body_inertia[1:] *= inertia[:, None]
            if friction is not None:
                model.geom_friction[:, 0] = friction

        robot.tune_model(tune)
        drawn = {"mass_scale": mass, "inertia_scale": inertia, "friction": friction}
        return {key: value for key, value in drawn.items() if value is not None}


class ServoRandomisation(Randomiser):
    """Servo strength, speed and latency per lifetime; the control period's jitter every tick."""

    def __init__(self, env: gymnasium.Env, config: Randomisation) -> None:
        super().__init__(env, config)
        robot = env.unwrapped
        keys = ", ".join(config.servo_keys)
        _require(robot, "servos", f"{keys} need a robot with a servo model (servo-quad)")
        robot.tick_jitter = config.tick_jitter

    def _draw(self, robot: Any) -> dict[str, Any]:
        c, servos = self.config, robot.servos
        drawn: dict[str, Any] = {}
        if c.servo_strength is not None:
            servos.strength[:] = drawn["servo_strength"] = self.rng.uniform(*c.servo_strength, servos.n)
        if c.servo_speed is not None:
            servos.speed[:] = drawn["servo_speed"] = self.rng.uniform(*c.servo_speed, servos.n)
        if c.latency is not None:
            servos.latency = drawn["latency"] = float(self.rng.uniform(*c.latency))
        return drawn


class SensorRandomisation(Randomiser):
    """Noise every tick and a constant bias per lifetime on the channels the robot senses."""

    def __init__(self, env: gymnasium.Env, config: Randomisation) -> None:
        super().__init__(env, config)
        space = env.observation_space
        self.observation_space = unbounded(space)
        self.sensed = np.arange(space.shape[0])[getattr(env.unwrapped, "sensed", slice(None))]
        self.bias = np.zeros(self.sensed.size)

    def _draw(self, robot: Any) -> dict[str, Any]:
        self.bias = self.rng.normal(0.0, self.config.obs_bias, self.sensed.size)
        return {"obs_bias": self.bias}

    def _observe(self, obs: np.ndarray) -> np.ndarray:
        obs = np.array(obs, copy=True)
        noise = self.rng.normal(0.0, self.config.obs_noise, self.sensed.size)
        obs[self.sensed] += self.bias + noise
        return obs


class Pushes(Randomiser):
    """Every ``push_interval`` seconds, a kick that changes the body's horizontal velocity."""

    def __init__(self, env: gymnasium.Env, config: Randomisation) -> None:
        super().__init__(env, config)
        _require(env.unwrapped, "tune_model", "pushes need a MuJoCo robot")
        self.every = max(1, round(config.push_interval / env.unwrapped.dt))
        self.tick = 0
        self.pushes: list[np.ndarray] = []  # this lifetime's velocity changes (m/s), in order

    def _draw(self, robot: Any) -> dict[str, Any]:
        self.tick, self.pushes = 0, []
        return {}

    def _before_step(self, robot: Any) -> None:
        self.tick += 1
        if self.tick % self.every == 0:
            kick = self.rng.uniform(-self.config.push_speed, self.config.push_speed, 2)
            robot.data.qvel[0:2] += kick
            self.pushes.append(kick)


def apply_randomisation(env: gymnasium.Env, config: Randomisation) -> gymnasium.Env:
    """Wrap ``env`` with the randomisers the config switches on."""
    c = config
    if any(v is not None for v in (c.mass_scale, c.inertia_scale, c.friction)):
        env = BodyRandomisation(env, c)
    if c.servo_keys:
        env = ServoRandomisation(env, c)
    if c.obs_noise > 0 or c.obs_bias > 0:
        env = SensorRandomisation(env, c)
    if c.push_interval > 0:
        env = Pushes(env, c)
    return env
