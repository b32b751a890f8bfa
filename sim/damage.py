"""Damage injection: small gymnasium wrappers that compose, each starting at reset or mid-run.

One spec syntax serves the command line and the YAML configs::

    cut-leg:N               the lower segment of leg N is gone
    shorten-leg:N:FRACTION  the lower segment of leg N keeps FRACTION of its length
    lock:JOINT              JOINT seizes at its current angle
    weaken:JOINT:FRACTION   JOINT's motor gives FRACTION of its torque (0 = dead)
    obs-noise:STD           Gaussian noise of standard deviation STD on every observation value
    dropout:I[,I...]        observation channels I read 0 (a dead sensor)
    latency:K               every action reaches the motors K ticks late

Any spec may end in ``@SECONDS``: the damage starts that many seconds after reset (rounded to a
tick), e.g. ``cut-leg:2@15``. Body damage (cut, shorten, lock, weaken) is done by the simulated
robot itself (its ``cut_leg``/``shorten_leg``/``lock_joint``/``weaken_joint`` methods), so every
robot that offers those methods speaks the same damage vocabulary.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium
import numpy as np

BODY_KINDS = ("cut-leg", "shorten-leg", "lock", "weaken")
SENSOR_KINDS = ("obs-noise", "dropout", "latency")
SYNTAX = (
    "cut-leg:N, shorten-leg:N:FRACTION, lock:JOINT, weaken:JOINT:FRACTION, obs-noise:STD, "
    "dropout:I[,I...], latency:K, optionally followed by @SECONDS"
)


class SpecError(ValueError):
    """A damage spec that cannot be parsed or does not fit the robot."""


@dataclass(frozen=True)
class DamageSpec:
    kind: str
    args: tuple[str, ...]
    onset: float = 0.0  # seconds after reset

    @property
    def text(self) -> str:
        at = f"@{self.onset:g}" if self.onset else ""
        return ":".join((self.kind, *self.args)) + at


def _number(text: str, spec: str, what: str, kind: type = float) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise SpecError(f"damage {spec!r}: {what} must be a number, got {text!r} ({SYNTAX})") from None
    if not np.isfinite(value):
        raise SpecError(f"damage {spec!r}: {what} must be finite")
    return value


ARITY = {
    "cut-leg": 1,
    "shorten-leg": 2,
    "lock": 1,
    "weaken": 2,
    "obs-noise": 1,
    "dropout": 1,
    "latency": 1,
}


def parse(spec: str) -> DamageSpec:
    """Parse one spec string; :class:`SpecError` names what is wrong and the valid syntax."""
    text = spec.strip()
    onset = 0.0
    if "@" in text:
        text, at = text.rsplit("@", 1)
        onset = _number(at, spec, "the onset (seconds)")
        if onset < 0:
            raise SpecError(f"damage {spec!r}: the onset must be >= 0 seconds")
    kind, *args = text.split(":")
    if kind not in ARITY:
        raise SpecError(f"unknown damage {kind!r} in {spec!r}; use one of {SYNTAX}")
    if len(args) != ARITY[kind] or not all(args):
        raise SpecError(f"damage {spec!r} needs {ARITY[kind]} argument(s); use one of {SYNTAX}")
    if kind in ("shorten-leg", "weaken"):
        fraction = _number(args[1], spec, "the fraction")
        if not 0.0 <= fraction <= 1.0:
            raise SpecError(f"damage {spec!r}: the fraction must be between 0 and 1, got {fraction:g}")
    if kind == "obs-noise" and _number(args[0], spec, "the noise std") < 0:
        raise SpecError(f"damage {spec!r}: the noise std must be >= 0")
    if kind == "latency" and _number(args[0], spec, "the latency (ticks)", int) < 0:
        raise SpecError(f"damage {spec!r}: the latency must be >= 0 ticks")
    if kind == "dropout":
        for index in args[0].split(","):
            _number(index, spec, "a channel index", int)
    return DamageSpec(kind, tuple(args), onset)


def _check_fits(damage: DamageSpec, robot: Any, obs_size: int) -> None:
    """Reject a damage the robot cannot have (leg 5, an unknown joint, channel 99)."""
    kind, args = damage.kind, damage.args
    if kind in ("cut-leg", "shorten-leg"):
        leg = _number(args[0], damage.text, "the leg", int)
        if leg not in robot.legs:
            names = ", ".join(f"{n} {robot.leg_names[n]}" for n in robot.legs)
            raise SpecError(f"unknown leg {leg} in {damage.text!r}: this robot's legs are {names}")
    if kind in ("lock", "weaken") and args[0] not in robot.joints:
        raise SpecError(
            f"unknown joint {args[0]!r} in {damage.text!r}: this robot's joints are {', '.join(robot.joints)}"
        )
    if kind == "dropout":
        bad = [i for i in (int(x) for x in args[0].split(",")) if not 0 <= i < obs_size]
        if bad:
            raise SpecError(
                f"observation channel(s) {bad} in {damage.text!r} do not exist: valid 0..{obs_size - 1}"
            )


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


class BodyDamage(Damage):
    """Cut, shorten, lock or weaken: done by the robot's own damage methods."""

    def _activate(self) -> None:
        robot, args = self.env.unwrapped, self.spec_.args
        match self.spec_.kind:
            case "cut-leg":
                robot.cut_leg(int(args[0]))
            case "shorten-leg":
                robot.shorten_leg(int(args[0]), float(args[1]))
            case "lock":
                robot.lock_joint(args[0])
            case "weaken":
                robot.weaken_joint(args[0], float(args[1]))


class ObservationNoise(Damage):
    """Gaussian noise on every observation value, drawn from the episode's seeded generator.

    A noisy reading can leave the sensor's range (a pixel below 0), so the space becomes unbounded;
    the dtype stays the robot's."""

    def __init__(self, env: gymnasium.Env, damage: DamageSpec) -> None:
        super().__init__(env, damage)
        space = env.observation_space
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, space.shape, space.dtype)

    def _observe(self, obs: np.ndarray) -> np.ndarray:
        if not self.active:
            return obs
        std = float(self.spec_.args[0])
        return (obs + std * self.env.unwrapped.np_random.standard_normal(obs.shape)).astype(obs.dtype)


class SensorDropout(Damage):
    """Some observation channels read 0, as a dead sensor does."""

    def _observe(self, obs: np.ndarray) -> np.ndarray:
        if not self.active:
            return obs
        obs = np.array(obs, copy=True)
        obs[[int(i) for i in self.spec_.args[0].split(",")]] = 0.0
        return obs


class ActionLatency(Damage):
    """Every action reaches the motors K ticks late (zero torque until the first one arrives)."""

    def _on_reset(self) -> None:
        self._queue: deque[np.ndarray] = deque()

    def _activate(self) -> None:
        zero = np.zeros(self.action_space.shape, dtype=np.float32)
        self._queue = deque([zero] * int(self.spec_.args[0]))

    def _act(self, action: np.ndarray) -> np.ndarray:
        if not self.active:
            return action
        self._queue.append(np.array(action, copy=True))
        return self._queue.popleft()


WRAPPERS: dict[str, type[Damage]] = {
    **dict.fromkeys(BODY_KINDS, BodyDamage),
    "obs-noise": ObservationNoise,
    "dropout": SensorDropout,
    "latency": ActionLatency,
}


def apply_damage(env: gymnasium.Env, specs: Sequence[str | DamageSpec]) -> gymnasium.Env:
    """Wrap ``env`` with one wrapper per damage spec, in the order given."""
    for spec in specs:
        damage = parse(spec) if isinstance(spec, str) else spec
        _check_fits(damage, env.unwrapped, env.observation_space.shape[0])
        env = WRAPPERS[damage.kind](env, damage)
    return env
