"""The paper's pixel task: gymnasium's CarRacing (Box2D), seen as the paper's network sees it.

Observation: the 96x96 RGB frame resized to 84x84 by area averaging (what OpenCV's INTER_AREA,
behind gym's ResizeObservation, computes), scaled to [0, 1], channels first: (3, 84, 84) float32.
The reference code fed ``np.swapaxes(frame, 0, 2)``, i.e. (3, width, height); this adapter keeps
(3, height, width), and :mod:`controller.reference` transposes imported conv kernels to match.

Action: the network's three raw outputs, squashed here as in the paper: steer = tanh(o0),
gas = sigmoid(o1), brake = sigmoid(o2). The action space is unbounded, which tells
:func:`controller.network.task_spec` to give the network a linear output layer, so the plastic
update sees the raw outputs.

Reward and fitness: the environment's reward (+1000/N per new track tile, -0.1 per frame, -100 for
leaving the playfield), summed; the paper's early stop ends a lifetime after 20 consecutive
negative-reward steps (``early_stop = (0, 20)``, read by ``controller.loop.EarlyStop.of``).
``info["x_distance"]`` is the car's x displacement since reset (m): reported for the shared loop,
not scored. The car has no legs or joints: body damage does not fit it, sensor damage (noise,
dropout of a colour channel, latency) does. ``render()`` returns what the car sees, the 84x84 frame.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

try:
    from gymnasium.envs.box2d.car_racing import FPS, CarRacing
except ImportError:
    raise ImportError("CarRacing needs Box2D: pip install 'hebbian-quadruped[box2d]'") from None

SIZE = 84


@cache
def area_matrix(source: int, target: int) -> np.ndarray:
    """(target, source) weights averaging each output pixel's footprint: rows sum to 1."""
    edges = np.arange(target + 1) * source / target
    lo, hi = edges[:-1, None], edges[1:, None]
    pixels = np.arange(source)[None, :]
    overlap = np.clip(np.minimum(hi, pixels + 1) - np.maximum(lo, pixels), 0.0, None)
    return (overlap * target / source).astype(np.float32)


def preprocess(frame: np.ndarray) -> np.ndarray:
    """A (H, W, 3) uint8 frame -> (3, 84, 84) float32 in [0, 1]."""
    rows, cols = area_matrix(frame.shape[0], SIZE), area_matrix(frame.shape[1], SIZE)
    channels = np.moveaxis(frame, 2, 0).astype(np.float32) / 255.0
    return np.clip(rows @ channels @ cols.T, 0.0, 1.0)


def squash(outputs: np.ndarray) -> np.ndarray:
    """Raw network outputs -> CarRacing's (steer in [-1, 1], gas in [0, 1], brake in [0, 1])."""
    o = np.asarray(outputs, dtype=np.float64)
    sigmoid = 0.5 * (1.0 + np.tanh(0.5 * o[1:]))  # the logistic function, without overflow
    return np.array([np.tanh(o[0]), *sigmoid], np.float32)


class CarRacingEnv(gymnasium.Env):
    """CarRacing from pixels for the paper's CNN + plastic network."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": FPS}
    legs: tuple[int, ...] = ()
    leg_names: dict[int, str] = {}
    joints: tuple[str, ...] = ()
    fitness = "reward"
    early_stop = (0, 20)
    settle_ticks = 0  # nothing to land: control starts at once

    def __init__(self, render_mode: str | None = None) -> None:
        self.render_mode = render_mode
        self._car = CarRacing(continuous=True)
        self.observation_space = spaces.Box(0.0, 1.0, (3, SIZE, SIZE), np.float32)
        self.action_space = spaces.Box(-np.inf, np.inf, (3,), np.float32)
        self.damage: list[str] = []

    @property
    def dt(self) -> float:
        """Control period (s): one Box2D frame."""
        return 1.0 / FPS

    def _observe(self, frame: np.ndarray) -> np.ndarray:
        self._obs = preprocess(frame)
        return self._obs.copy()

    def _info(self) -> dict[str, Any]:
        return {"x_distance": float(self._car.car.hull.position[0] - self._x0), "damage": list(self.damage)}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.damage = []
        frame, _ = self._car.reset(seed=int(self.np_random.integers(2**31)))
        self._x0 = float(self._car.car.hull.position[0])
        return self._observe(frame), self._info()

    def step(self, action: np.ndarray):
        frame, reward, terminated, truncated, _ = self._car.step(squash(action))
        return self._observe(frame), float(reward), bool(terminated), bool(truncated), self._info()

    def render(self) -> np.ndarray | None:
        """What the car sees: the 84x84 frame given to the network, as RGB bytes."""
        if self.render_mode != "rgb_array":
            return None
        return np.round(np.moveaxis(self._obs, 0, 2) * 255).astype(np.uint8)

    def close(self) -> None:
        self._car.close()
