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

Speed: :class:`StatePixels` draws the same 96x96 frame as gymnasium's CarRacing, bit for bit, in
under half the time: gymnasium moves each of the ~800 polygons of the playfield through pygame vectors
in Python to find the ~60 on screen, paints the background as a polygon over the whole screen and
loads its font from disk every frame. :func:`preprocess` sums only the source pixels each output
covers, in one fixed order (compiled), so a frame is the same bits on every CPU.
tests/test_carracing.py holds a seeded rollout's observations and rewards to gymnasium's renderer
in-process; bench/carracing_step.py times both paths.
"""

from __future__ import annotations

import math
from functools import cache
from typing import Any

import gymnasium
import numba
import numpy as np
from gymnasium import spaces

try:
    import pygame
    from gymnasium.envs.box2d.car_racing import (
        FPS,
        GRASS_DIM,
        MAX_SHAPE_DIM,
        PLAYFIELD,
        SCALE,
        STATE_H,
        STATE_W,
        WINDOW_H,
        WINDOW_W,
        ZOOM,
        CarRacing,
    )
    from pygame import gfxdraw
except ImportError:
    raise ImportError("CarRacing needs Box2D: pip install 'hebbian-quadruped[box2d]'") from None

SIZE = 84
VECTOR_EPSILON = 1e-6  # pygame's Vector2 default: angles this close to a quarter turn rotate exactly


@cache
def area_matrix(source: int, target: int) -> np.ndarray:
    """(target, source) weights averaging each output pixel's footprint: rows sum to 1."""
    edges = np.arange(target + 1) * source / target
    lo, hi = edges[:-1, None], edges[1:, None]
    pixels = np.arange(source)[None, :]
    overlap = np.clip(np.minimum(hi, pixels + 1) - np.maximum(lo, pixels), 0.0, None)
    return (overlap * target / source).astype(np.float32)


@cache
def area_bands(source: int, target: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`area_matrix` as bands: each output's first source index, its count of sources (at most
    three here) and their weights, zero-padded: the resize touches only the pixels each output covers."""
    matrix = area_matrix(source, target)
    nonzero = [np.flatnonzero(row) for row in matrix]
    width = max(len(n) for n in nonzero)
    starts = np.array([n[0] for n in nonzero], dtype=np.int64)
    counts = np.array([len(n) for n in nonzero], dtype=np.int64)
    weights = np.zeros((len(matrix), width), dtype=np.float32)
    for i, n in enumerate(nonzero):
        weights[i, : len(n)] = matrix[i, n]
    return starts, counts, weights


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _resize(channels: np.ndarray, rows: tuple, cols: tuple) -> np.ndarray:
    """rows @ channel @ cols.T for each channel, over the bands only, each sum in source order: first
    down the rows, then across the columns, rounded to float32 after every product; clipped to [0, 1]."""
    row_start, row_count, row_weight = rows
    col_start, col_count, col_weight = cols
    depth, width = channels.shape[0], channels.shape[2]
    size, out_size = row_start.shape[0], col_start.shape[0]
    out = np.empty((depth, size, out_size), dtype=np.float32)
    tall = np.empty(width, dtype=np.float32)
    for c in range(depth):
        for i in range(size):
            tall[:] = 0.0
            for k in range(row_count[i]):
                weight, source = row_weight[i, k], channels[c, row_start[i] + k]
                for col in range(width):
                    tall[col] += weight * source[col]
            for j in range(out_size):
                value = np.float32(0.0)
                for k in range(col_count[j]):
                    value += tall[col_start[j] + k] * col_weight[j, k]
                out[c, i, j] = min(max(value, np.float32(0.0)), np.float32(1.0))
    return out


def preprocess(frame: np.ndarray) -> np.ndarray:
    """A (H, W, 3) uint8 frame -> (3, 84, 84) float32 in [0, 1]: area averaging as the products
    (rows x channel x columns.T) of the area matrices, summed in one fixed order, so the network sees
    the same bits on every CPU (a BLAS product rounds by the kernel it picks for the CPU)."""
    rows, cols = area_bands(frame.shape[0], SIZE), area_bands(frame.shape[1], SIZE)
    channels = np.ascontiguousarray(np.moveaxis(frame, 2, 0), dtype=np.float32) / np.float32(255.0)
    return _resize(channels, rows, cols)


def squash(outputs: np.ndarray) -> np.ndarray:
    """Raw network outputs -> CarRacing's (steer in [-1, 1], gas in [0, 1], brake in [0, 1])."""
    o = np.asarray(outputs, dtype=np.float64)
    sigmoid = 0.5 * (1.0 + np.tanh(0.5 * o[1:]))  # the logistic function, without overflow
    return np.array([np.tanh(o[0]), *sigmoid], np.float32)


def rotate(x: np.ndarray, y: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Points rotated as pygame's ``Vector2(x, y).rotate_rad(angle)`` rotates one, to the last bit:
    the angle reduced to [0, 2 pi) by C's fmod, quarter turns exact, else libm's sin and cos."""
    angle = math.fmod(angle, 2 * math.pi)
    if angle < 0:
        angle += 2 * math.pi
    if math.fmod(angle + VECTOR_EPSILON, math.pi / 2) < 2 * VECTOR_EPSILON:
        quarter = int((angle + VECTOR_EPSILON) / (math.pi / 2)) % 4
        return ((x, y), (-y, x), (-x, -y), (y, -x))[quarter]
    sin, cos = math.sin(angle), math.cos(angle)
    return cos * x - sin * y, sin * x + cos * y


def grass_patches() -> list[list[tuple[float, float]]]:
    """The playfield's grass squares, in gymnasium's drawing order and arithmetic."""
    return [
        [
            (GRASS_DIM * x + GRASS_DIM, GRASS_DIM * y + 0),
            (GRASS_DIM * x + 0, GRASS_DIM * y + 0),
            (GRASS_DIM * x + 0, GRASS_DIM * y + GRASS_DIM),
            (GRASS_DIM * x + GRASS_DIM, GRASS_DIM * y + GRASS_DIM),
        ]
        for x in range(-20, 20, 2)
        for y in range(-20, 20, 2)
    ]


def covers_canvas(x: np.ndarray, y: np.ndarray, margin: float = 4.0) -> bool:
    """Whether the convex polygon with corners (x, y) in pixels holds the whole canvas, each edge at
    least ``margin`` pixels outside it, with coordinates in gfxdraw's 16-bit range: gfxdraw's filled
    polygon then sets every pixel to its colour, and its anti-aliased outline none."""
    dx, dy = np.roll(x, -1) - x, np.roll(y, -1) - y
    cx, cy = np.array([0, WINDOW_W, WINDOW_W, 0]), np.array([0, 0, WINDOW_H, WINDOW_H])
    distance = (dx[:, None] * (cy - y[:, None]) - dy[:, None] * (cx - x[:, None])) / np.hypot(dx, dy)[:, None]
    inside = (distance >= margin).all() or (distance <= -margin).all()
    return bool(inside and max(np.abs(x).max(), np.abs(y).max()) < 2**15)


class StatePixels(CarRacing):
    """gymnasium's CarRacing drawing its state pixels (the 96x96 frame) with the same pygame calls on
    the same coordinates, minus the work that never reaches them: the playfield's polygons (background,
    400 grass squares, the track's tiles and kerbs) are moved to the screen and culled as arrays, once
    a frame, instead of one pygame vector at a time; a background that covers the screen is a fill,
    not a polygon; the font is opened once and the reward's label drawn again only when it changes;
    the canvas is reused, not allocated. Other render modes (human, rgb_array) keep gymnasium's
    _render, with the playfield drawn as here."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._canvas: pygame.Surface | None = None
        self._font: pygame.font.Font | None = None
        self._label: tuple[str, pygame.Surface] | None = None
        self._polygons_of: list | None = None  # the road_poly list self._polygons was built from
        self._polygons = np.empty((0, 4, 2))

    def _playfield(self) -> np.ndarray:
        """(n, 4, 2) world coordinates of what _render_road draws, in its order: background, grass,
        then road_poly (tiles and kerbs). Built once per track: reset() makes a new road_poly list."""
        if self._polygons_of is not self.road_poly:
            bound = PLAYFIELD
            field = [(bound, bound), (bound, -bound), (-bound, -bound), (-bound, bound)]
            road = [[(p[0], p[1]) for p in poly] for poly, _ in self.road_poly]
            self._polygons = np.array([field, *grass_patches(), *road], np.float64)
            self._polygons_of = self.road_poly
        return self._polygons

    def _render_road(self, zoom: float, translation: tuple[float, float], angle: float) -> None:
        """gymnasium's _render_road: the same gfxdraw calls on the same coordinates, the polygons moved
        and culled as arrays. It clears the canvas first: with the background's colour when the
        background covers it (it does once the camera has zoomed in), else black."""
        polygons = self._playfield()
        x, y = rotate(polygons[..., 0], polygons[..., 1], angle)
        x, y = x * zoom + translation[0], y * zoom + translation[1]
        near = (x >= -MAX_SHAPE_DIM) & (x <= WINDOW_W + MAX_SHAPE_DIM)
        near &= (y >= -MAX_SHAPE_DIM) & (y <= WINDOW_H + MAX_SHAPE_DIM)
        drawn = near.any(axis=1)
        drawn[0] = not covers_canvas(x[0], y[0])  # else gymnasium draws the background unclipped
        self.surf.fill((0, 0, 0) if drawn[0] else self.bg_color)
        road = 1 + 20 * 20  # after the background and the grass squares
        for i in np.flatnonzero(drawn).tolist():
            if i == 0:
                color = self.bg_color
            elif i < road:
                color = self.grass_color
            else:  # read now: a tile's colour changes when the car first touches it
                color = [int(c) for c in self.road_poly[i - road][1]]
            poly = list(zip(x[i].tolist(), y[i].tolist(), strict=True))
            gfxdraw.aapolygon(self.surf, poly, color)
            gfxdraw.filled_polygon(self.surf, poly, color)

    def _render(self, mode: str) -> Any:
        if mode != "state_pixels" or "t" not in self.__dict__:
            return super()._render(mode)
        if self._canvas is None:
            pygame.font.init()
            self._canvas = pygame.Surface((WINDOW_W, WINDOW_H))
            self._font = pygame.font.Font(pygame.font.get_default_font(), 42)
        self.surf = self._canvas  # _render_road clears it
        # from here on, gymnasium's _render for state pixels
        angle = -self.car.hull.angle
        zoom = 0.1 * SCALE * max(1 - self.t, 0) + ZOOM * SCALE * min(self.t, 1)
        scroll_x = -(self.car.hull.position[0]) * zoom
        scroll_y = -(self.car.hull.position[1]) * zoom
        trans = pygame.math.Vector2((scroll_x, scroll_y)).rotate_rad(angle)
        trans = (WINDOW_W / 2 + trans[0], WINDOW_H / 4 + trans[1])
        self._render_road(zoom, trans, angle)
        self.car.draw(self.surf, zoom, trans, angle, False)
        self.surf = pygame.transform.flip(self.surf, False, True)
        self._render_indicators(WINDOW_W, WINDOW_H)
        label = f"{self.reward:04.0f}"
        if self._label is None or self._label[0] != label:
            self._label = (label, self._font.render(label, True, (255, 255, 255), (0, 0, 0)))
        text = self._label[1]
        text_rect = text.get_rect()
        text_rect.center = (60, WINDOW_H - WINDOW_H * 2.5 / 40.0)
        self.surf.blit(text, text_rect)
        return self._create_image_array(self.surf, (STATE_W, STATE_H))


class CarRacingEnv(gymnasium.Env):
    """CarRacing from pixels for the paper's CNN + plastic network."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": FPS}
    legs: tuple[int, ...] = ()
    leg_names: dict[int, str] = {}
    joints: tuple[str, ...] = ()
    fitness = "reward"
    early_stop = (0, 20)
    settle_ticks = 0  # nothing to land: control starts at once
    box2d: type[CarRacing] = StatePixels  # gymnasium's CarRacing (the same frames, drawn faster)

    def __init__(self, render_mode: str | None = None) -> None:
        self.render_mode = render_mode
        self._car = self.box2d(continuous=True)
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
