"""A stand-in environment that reports scripted progress, scored as a real task declares."""

from __future__ import annotations

import gymnasium
import numpy as np
from gymnasium import spaces


class ScriptedEnv(gymnasium.Env):
    """Tick k reports ``xs[k]`` as ``info["x_distance"]`` and ``rewards[k]`` as the reward; the
    fitness and early-stop rule are copied from ``task`` (an environment class)."""

    observation_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
    dt = 0.01

    def __init__(self, task: type, xs=None, rewards=None, ticks: int = 1000) -> None:
        self.fitness, self.early_stop = task.fitness, task.early_stop
        self.xs = np.zeros(ticks) if xs is None else np.asarray(xs, dtype=float)
        self.rewards = np.zeros(ticks) if rewards is None else np.asarray(rewards, dtype=float)
        self.damage: list[str] = []

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.tick = 0
        return np.zeros(1, np.float32), {"x_distance": 0.0}

    def step(self, action):
        k, self.tick = self.tick, self.tick + 1
        return (
            np.zeros(1, np.float32),
            float(self.rewards[k]),
            False,
            False,
            {"x_distance": float(self.xs[k])},
        )
