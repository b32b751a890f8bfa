"""Damage and faults: small gymnasium wrappers that compose, each starting at reset or mid-run.

One spec syntax serves the command line, the YAML configs and the fault suites (``KINDS`` below is
the one table of kinds)::

    cut-leg:N               the lower segment of leg N is gone
    shorten-leg:N:FRACTION  the lower segment of leg N keeps FRACTION of its length
    lock:JOINT              JOINT seizes at its current angle
    weaken:JOINT:FRACTION   JOINT's motor gives FRACTION of its torque (0 = dead)
    slow:JOINT:RAD_PER_S    JOINT moves no faster than about RAD_PER_S (a slow, worn or starved motor)
    obs-noise:STD           Gaussian noise of standard deviation STD on every observation value
    dropout:I[,I...]        observation channels I read 0 (a dead sensor)
    bias:I:VALUE            observation channel I reads VALUE too high (a miscalibrated sensor)
    latency:K               every action reaches the motors K ticks late
    friction:SCALE          the floor's and feet's sliding friction times SCALE
    payload:FRACTION        a load of FRACTION of the robot's mass strapped to the torso
    slope:DEGREES           the ground rises DEGREES along +x (negative: falls); gravity tilts

Any spec may end in ``@SECONDS``: the damage starts that many seconds after reset (rounded to a
tick), e.g. ``cut-leg:2@15``. Body damage is done by the simulated robot itself (its ``cut_leg``,
``shorten_leg``, ``lock_joint``, ``weaken_joint``, ``slow_joint``, ``scale_friction``,
``add_payload``, ``tilt_ground`` methods), so every robot that offers those methods speaks the same
damage vocabulary. Arguments are parsed and range-checked once, when the spec is parsed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium
import numpy as np

MAX_LATENCY = 100  # ticks: a fault, not a dead link (and a bounded queue)
MAX_SLOPE = 30.0  # degrees: steeper than any walker here climbs


class SpecError(ValueError):
    """A damage spec that cannot be parsed or does not fit the robot."""


@dataclass(frozen=True)
class DamageSpec:
    """A parsed spec: its kind, typed arguments and onset (seconds after reset)."""

    kind: str
    args: tuple[Any, ...]
    onset: float = 0.0
    source: str = ""  # the text as written, for messages and ``info["damage"]``

    @property
    def text(self) -> str:
        return self.source or ":".join((self.kind, *map(str, self.args))) + (
            f"@{self.onset:g}" if self.onset else ""
        )


def _number(text: str, spec: str, what: str, kind: type = float) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise SpecError(f"damage {spec!r}: {what} must be a number, got {text!r} ({SYNTAX})") from None
    if not np.isfinite(value):
        raise SpecError(f"damage {spec!r}: {what} must be finite")
    return value


def _in(low: float, high: float, what: str, kind: type = float) -> Callable[[str, str], Any]:
    """A parser for one number in [low, high]."""

    def read(text: str, spec: str) -> Any:
        value = _number(text, spec, what, kind)
        if not low <= value <= high:
            raise SpecError(f"damage {spec!r}: {what} must be between {low:g} and {high:g}, got {value:g}")
        return value

    return read


def _name(text: str, spec: str) -> str:
    return text


def _channels(text: str, spec: str) -> tuple[int, ...]:
    return tuple(_number(i, spec, "a channel index", int) for i in text.split(","))


@dataclass(frozen=True)
class Kind:
    """One kind of damage: its syntax, a parser per argument, and the wrapper that applies it."""

    syntax: str
    parsers: tuple[Callable[[str, str], Any], ...]
    wrapper: type[Damage]


def parse(spec: str) -> DamageSpec:
    """Parse one spec string; :class:`SpecError` names what is wrong and the valid syntax."""
    if not isinstance(spec, str):
        raise SpecError(f"a damage spec must be a string like 'cut-leg:2', got {spec!r}")
    text = spec.strip()
    onset = 0.0
    if "@" in text:
        text, at = text.rsplit("@", 1)
        onset = _number(at, spec, "the onset (seconds)")
        if not 0 <= onset <= 1e6:
            raise SpecError(f"damage {spec!r}: the onset must be between 0 and 1e6 seconds")
    name, *words = text.split(":")
    kind = KINDS.get(name)
    if kind is None:
        raise SpecError(f"unknown damage {name!r} in {spec!r}; use one of {SYNTAX}")
    if len(words) != len(kind.parsers) or not all(words):
        raise SpecError(f"damage {spec!r} needs {len(kind.parsers)} argument(s): {kind.syntax}")
    args = tuple(read(word, spec) for read, word in zip(kind.parsers, words, strict=True))
    return DamageSpec(name, args, onset, spec.strip())


def _check_fits(damage: DamageSpec, robot: Any, obs_size: int) -> None:
    """Reject a damage the robot cannot have (leg 5, an unknown joint, channel 99, a kind it lacks)."""
    kind, args = damage.kind, damage.args
    if kind in ("cut-leg", "shorten-leg") and args[0] not in robot.legs:
        names = ", ".join(f"{n} {robot.leg_names[n]}" for n in robot.legs)
        raise SpecError(f"unknown leg {args[0]} in {damage.text!r}: this robot's legs are {names}")
    if kind in ("lock", "weaken", "slow") and args[0] not in robot.joints:
        raise SpecError(
            f"unknown joint {args[0]!r} in {damage.text!r}: this robot's joints are {', '.join(robot.joints)}"
        )
    if kind in ("dropout", "bias"):
        channels = args[0] if kind == "dropout" else (args[0],)
        bad = [i for i in channels if not 0 <= i < obs_size]
        if bad:
            raise SpecError(
                f"observation channel(s) {bad} in {damage.text!r} do not exist: valid 0..{obs_size - 1}"
            )
    method = BODY_METHODS.get(kind)
    if method is not None and not hasattr(robot, method):
        raise SpecError(f"damage {damage.text!r}: {type(robot).__name__} cannot have it (no {method})")


class Damage(gymnasium.Wrapper):
    """Base wrapper: switch a damage on at its onset tick and report it in ``info["damage"]``."""

    def __init__(self, env: gymnasium.Env, damage: DamageSpec) -> None:
        super().__init__(env)
        self.spec_ = damage
        self.onset_tick = round(damage.onset / env.unwrapped.dt)
        self.tick = 0
        self.active = False

    def _activate(self) -> None:
        """Make the damage happen (body edits) or arm it (sensor and actuator wrappers)."""

    def _switch_on(self, info: dict[str, Any]) -> None:
        self.active = True
        self._activate()
        self.env.unwrapped.damage.append(self.spec_.text)
        info["damage"] = list(self.env.unwrapped.damage)

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        self.tick, self.active = 0, False
        self._on_reset()
        if self.onset_tick == 0:
            self._switch_on(info)
        return self._observe(obs), info

    def step(self, action: np.ndarray):
        if not self.active and self.tick >= self.onset_tick:
            self._switch_on({})
        obs, reward, terminated, truncated, info = self.env.step(self._act(action))
        self.tick += 1
        info["damage"] = list(self.env.unwrapped.damage)
        return self._observe(obs), reward, terminated, truncated, info

    def _on_reset(self) -> None:
        """Clear per-lifetime state."""

    def _observe(self, obs: np.ndarray) -> np.ndarray:
        return obs

    def _act(self, action: np.ndarray) -> np.ndarray:
        return action


# kind -> the robot method that makes a body damage happen (called with the spec's arguments)
BODY_METHODS = {
    "cut-leg": "cut_leg",
    "shorten-leg": "shorten_leg",
    "lock": "lock_joint",
    "weaken": "weaken_joint",
    "slow": "slow_joint",
    "friction": "scale_friction",
    "payload": "add_payload",
    "slope": "tilt_ground",
}


class BodyDamage(Damage):
    """A change of the body or its world, done by the robot's own damage method."""

    def _activate(self) -> None:
        getattr(self.env.unwrapped, BODY_METHODS[self.spec_.kind])(*self.spec_.args)


def unbounded(space: gymnasium.spaces.Box) -> gymnasium.spaces.Box:
    """The observation space of a sensor that may read beyond its range (noise, bias): unbounded, the
    robot's shape and dtype."""
    return gymnasium.spaces.Box(-np.inf, np.inf, space.shape, space.dtype)


class ObservationNoise(Damage):
    """Gaussian noise on every observation value, drawn from the episode's seeded generator.

    A noisy reading can leave the sensor's range (a pixel below 0), so the space becomes unbounded;
    the dtype stays the robot's."""

    def __init__(self, env: gymnasium.Env, damage: DamageSpec) -> None:
        super().__init__(env, damage)
        self.observation_space = unbounded(env.observation_space)

    def _observe(self, obs: np.ndarray) -> np.ndarray:
        if not self.active:
            return obs
        std = self.spec_.args[0]
        return (obs + std * self.env.unwrapped.np_random.standard_normal(obs.shape)).astype(obs.dtype)


class SensorDropout(Damage):
    """Some observation channels read 0, as a dead sensor does."""

    def _observe(self, obs: np.ndarray) -> np.ndarray:
        if not self.active:
            return obs
        obs = np.array(obs, copy=True)
        obs[list(self.spec_.args[0])] = 0.0
        return obs


class SensorBias(Damage):
    """One observation channel reads a constant amount too high (a miscalibrated or knocked sensor)."""

    def __init__(self, env: gymnasium.Env, damage: DamageSpec) -> None:
        super().__init__(env, damage)
        self.observation_space = unbounded(env.observation_space)

    def _observe(self, obs: np.ndarray) -> np.ndarray:
        if not self.active:
            return obs
        channel, value = self.spec_.args
        obs = np.array(obs, copy=True)
        obs[channel] += value
        return obs


class ActionLatency(Damage):
    """Every action reaches the motors K ticks late (zero torque until the first one arrives)."""

    def _on_reset(self) -> None:
        self._queue: deque[np.ndarray] = deque()

    def _activate(self) -> None:
        zero = np.zeros(self.action_space.shape, dtype=np.float32)
        self._queue = deque([zero] * self.spec_.args[0])

    def _act(self, action: np.ndarray) -> np.ndarray:
        if not self.active:
            return action
        self._queue.append(np.array(action, copy=True))
        return self._queue.popleft()


LEG = _in(0, 99, "the leg", int)
FRACTION = _in(0, 1, "the fraction")
KINDS: dict[str, Kind] = {
    "cut-leg": Kind("cut-leg:N", (LEG,), BodyDamage),
    # below 5% MuJoCo cannot build the segment (its two ends coincide)
    "shorten-leg": Kind("shorten-leg:N:FRACTION", (LEG, _in(0.05, 1, "the fraction")), BodyDamage),
    "lock": Kind("lock:JOINT", (_name,), BodyDamage),
    "weaken": Kind("weaken:JOINT:FRACTION", (_name, FRACTION), BodyDamage),
    "slow": Kind("slow:JOINT:RAD_PER_S", (_name, _in(0.1, 1000, "the speed (rad/s)")), BodyDamage),
    "obs-noise": Kind("obs-noise:STD", (_in(0, 10, "the noise std"),), ObservationNoise),
    "dropout": Kind("dropout:I[,I...]", (_channels,), SensorDropout),
    "bias": Kind("bias:I:VALUE", (_in(0, 9999, "the channel", int), _in(-100, 100, "the bias")), SensorBias),
    "latency": Kind("latency:K", (_in(0, MAX_LATENCY, "the latency (ticks)", int),), ActionLatency),
    "friction": Kind("friction:SCALE", (_in(0.01, 100, "the friction scale"),), BodyDamage),
    "payload": Kind("payload:FRACTION", (_in(0, 10, "the payload (fraction of the mass)"),), BodyDamage),
    "slope": Kind("slope:DEGREES", (_in(-MAX_SLOPE, MAX_SLOPE, "the slope (degrees)"),), BodyDamage),
}
SYNTAX = ", ".join(kind.syntax for kind in KINDS.values()) + ", optionally followed by @SECONDS"


def apply_damage(env: gymnasium.Env, specs: Sequence[str | DamageSpec]) -> gymnasium.Env:
    """Wrap ``env`` with one wrapper per damage spec, in the order given."""
    for spec in specs:
        damage = parse(spec) if isinstance(spec, str) else spec
        _check_fits(damage, env.unwrapped, env.observation_space.shape[0])
        env = KINDS[damage.kind].wrapper(env, damage)
    return env
