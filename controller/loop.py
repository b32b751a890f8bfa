"""One lifetime of a controller in an environment, at a fixed control rate.

The same loop serves evolution (lockstep with the simulator, as fast as it goes), the ``controller``
command (optionally paced to the wall clock) and a real robot (``controller.deploy.RobotEnv``, an env
whose step waits for the tick's deadline itself). Every tick: observation -> network forward pass ->
plasticity update -> action -> environment step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from controller.network import FeedForward

if TYPE_CHECKING:  # the loop drives any gymnasium env but must not import gymnasium on the deploy path
    import gymnasium


@dataclass(frozen=True)
class EarlyStop:
    """The paper's rule: after ``after`` ticks, ``patience`` ticks in a row without progress end it.

    Progress is what the task scores (``env.unwrapped.fitness``): a new best ``info["x_distance"]``
    for a walker, a non-negative step reward for a reward task (CarRacing).
    """

    after: int = 200
    patience: int = 30

    @classmethod
    def of(cls, env: gymnasium.Env) -> EarlyStop:
        """The paper's rule for this task, as the environment declares it (``early_stop``)."""
        after, patience = env.unwrapped.early_stop
        return cls(after, patience)


@dataclass
class Lifetime:
    """What happened in one lifetime."""

    distance: float = 0.0  # m of torso x displacement since control started
    reward: float = 0.0  # summed step rewards since control started
    fitness: float = 0.0  # what the task scores: the distance or the reward
    fitness_kind: str = "distance"  # env.unwrapped.fitness: "distance" or "reward"
    ticks: int = 0
    terminated: bool = False
    early_stopped: bool = False
    dt: float = 0.0
    speeds: list[float] = field(default_factory=list)  # m/s per tick
    compute_s: list[float] = field(default_factory=list)  # network time per tick
    measured: bool = True  # False: the body reports no distance (a robot without a base estimate)
    damage_onset: int | None = None  # tick at which info["damage"] first changed

    def mean_speed(self, start: int = 0, stop: int | None = None) -> float:
        window = self.speeds[start:stop]
        return float(np.mean(window)) if window else 0.0

    def recovery_ticks(self, threshold: float = 0.5, hold_s: float = 5.0) -> int | None:
        """Ticks after the damage onset until the 1-second moving-average speed is back to ``threshold`` x
        its mean over the 5 s before the onset, to stay there for ``hold_s`` seconds; None if there was
        no onset, it never did, or the lifetime ended in a fall. (The hold is what tells walking on from
        coasting a second on momentum and stopping; a later dip of one step does not undo it.)"""
        onset = self.damage_onset
        if onset is None or onset < 1 or self.terminated:
            return None
        window, hold = max(1, round(1.0 / self.dt)), max(1, round(hold_s / self.dt))
        before = self.mean_speed(max(0, onset - 5 * window), onset)
        after = np.asarray(self.speeds[onset:])
        if before <= 0 or after.size < window + hold - 1:
            return None
        moving = np.convolve(after, np.ones(window) / window, mode="valid")
        held = np.convolve(moving >= threshold * before, np.ones(hold), mode="valid") == hold
        return int(np.argmax(held) + window - 1) if held.any() else None


def median_recovery(ticks: Sequence[int | None]) -> tuple[float | None, int]:
    """The median of lifetimes' :meth:`Lifetime.recovery_ticks` (None: never), one that never recovered
    counting as never, and how many recovered: a median over the recovered ones alone would hide the rest."""
    spans = [np.inf if t is None else t for t in ticks]
    median = float(np.median(spans))
    return (median if np.isfinite(median) else None), int(np.isfinite(spans).sum())


class Pacer:
    """Holds a fixed control period against the wall clock (a simulator run in real time, a robot).

    :meth:`wait` ends a tick: it sleeps until the tick's deadline. A tick whose work ends past its
    deadline is a miss, counted, and the next tick starts at once: late ticks still run, none is
    dropped. A tick more than a whole period late restarts the schedule from now rather than running
    ticks back to back to catch up (a robot's slew limit is per tick); the deadlines it ran through
    are counted in ``skipped``.
    """

    def __init__(self, period: float) -> None:
        self.period = period
        self.ticks = self.misses = self.skipped = 0
        self.work_s: list[float] = []  # per tick: from its start to its wait
        self.start()

    def start(self) -> None:
        """Tick 0 starts now."""
        self.started = self._tick_start = time.perf_counter()
        self._deadline = self.started + self.period

    @property
    def seconds(self) -> float:
        """Wall-clock time since :meth:`start`."""
        return time.perf_counter() - self.started

    def wait(self) -> None:
        now = time.perf_counter()
        self.ticks += 1
        self.work_s.append(now - self._tick_start)
        if now <= self._deadline:
            time.sleep(self._deadline - now)
            self._tick_start, self._deadline = self._deadline, self._deadline + self.period
            return
        self.misses += 1
        behind = int((now - self._deadline) // self.period)
        self._tick_start = now
        if behind:
            self.skipped += behind
            self._deadline = now + self.period
        else:
            self._deadline += self.period


def run_lifetime(
    network: FeedForward,
    env: gymnasium.Env,
    ticks: int,
    seed: int,
    settle_ticks: int = 0,
    early_stop: EarlyStop | None = None,
    pacer: Pacer | None = None,
    on_tick: Callable[[int, np.ndarray, np.ndarray, dict[str, Any]], None] | None = None,
    life: Lifetime | None = None,
) -> Lifetime:
    """Run one lifetime: fresh random weights, ``settle_ticks`` of zero action, then control.

    ``seed`` fixes both the environment's reset and the network's initial weights. ``pacer``: waited
    on after every step, to hold the wall-clock rate. An env whose ``info["control"]`` is False will
    not apply the next action (a robot ramping to its first pose, or waiting for fresh sensors): the
    network then runs its forward pass only, without learning. ``on_tick(tick, obs, action, info)``
    gets the observation the network acted on, its action and the step's info. ``life`` is filled in as
    the ticks run, so a caller whose run is stopped (Ctrl-C, a safety trip) keeps what it did.
    """
    by_reward = env.unwrapped.fitness == "reward"
    network.reset(np.random.default_rng([seed, 1]))
    obs, info = env.reset(seed=seed)
    dt = float(env.unwrapped.dt)
    if settle_ticks:
        zero = np.zeros(env.action_space.shape, dtype=np.float32)
        for _ in range(settle_ticks):
            obs, _, terminated, _, info = env.step(zero)
    start_x = info.get("x_distance", 0.0)
    damage = info.get("damage")
    life = life or Lifetime()
    life.dt, life.fitness_kind, life.measured = dt, env.unwrapped.fitness, "x_distance" in info
    x, best_x, stalled = start_x, start_x, 0
    if pacer is not None:
        pacer.start()
    try:
        for tick in range(ticks):
            if info.get("control", True):
                t0 = time.perf_counter()
                action = network.tick(obs)
                life.compute_s.append(time.perf_counter() - t0)
            else:
                action = network.act(obs)
            seen = obs
            obs, reward, terminated, truncated, info = env.step(action)
            life.reward += float(reward)
            life.speeds.append((info.get("x_distance", x) - x) / dt)
            x = info.get("x_distance", x)
            life.ticks = tick + 1
            if life.damage_onset is None and info.get("damage") != damage:
                life.damage_onset = tick
            if on_tick is not None:
                on_tick(tick, seen, action, info)
            if pacer is not None:
                pacer.wait()
            if terminated or truncated:
                life.terminated = bool(terminated)
                break
            if early_stop is not None:
                stalled = stalled + 1 if (reward < 0 if by_reward else x <= best_x) else 0
                best_x = max(best_x, x)
                if tick >= early_stop.after and stalled >= early_stop.patience:
                    life.early_stopped = True
                    break
    finally:
        life.distance = float(x - start_x)
        life.fitness = life.reward if by_reward else life.distance
    return life
