"""Cost of one CarRacing step before and after sim.carracing drew its frames itself, and where it goes.

    PYTHONPATH=. python bench/carracing_step.py [--rounds 5] [--steps 200]

Both paths are ``sim.carracing.CarRacingEnv`` (squash the outputs, Box2D step, 96x96 state pixels,
area resize to the 84x84 float frame), which draw the same 96x96 frames to the bit and give the same
rewards (tests/test_carracing.py): ``before`` with gymnasium's own CarRacing drawing the frame and
the resize as BLAS products on as many OpenBLAS threads as numpy's (the code before), ``after`` as
shipped (``StatePixels``; the resize over each output's source pixels only, summed in one fixed
order, compiled).

1. ms per step: each round resets both to the same new track (seed = round) and runs the same seeded
   raw outputs (gas on, random steering) through each in turn, the order swapped every round; a
   figure is a block's wall time over its steps, so rare slow steps count; the median over rounds.
   Steps 1-50 are the first second, while the camera zooms in from the whole playfield (every polygon
   on screen); the later steps follow the car, as most of a lifetime does.
2. Where a step goes, per path: one more round on another track, each phase timed by wrapping its
   method: physics (Box2D and the reward: gymnasium's step less its rendering), playfield (clearing
   the canvas, background, grass and track polygons: ``_render_road``), rest of the drawing (canvas,
   car, flip, indicators, reward label), downscale (the 1000x800 canvas to 96x96:
   ``_create_image_array``), preprocess (to the 84x84 float frame) and the wrapper's rest (squash,
   info).

The resize's matmuls are where OpenBLAS threads matter: on a machine whose cores are busy, threads
wait for each other, and ``before``'s figures swing with the load (OPENBLAS_NUM_THREADS=1 in the
environment puts ``before`` on one thread too, leaving the renderer as the difference).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import gymnasium
import numpy as np
import pygame
from gymnasium.envs.box2d.car_racing import CarRacing

from sim.carracing import SIZE, CarRacingEnv, area_matrix

ZOOM_STEPS = 50  # the first second (50 frames): the camera zooms in
PHASES = ("physics", "playfield", "rest of drawing", "downscale", "preprocess", "wrapper")


class Before(CarRacingEnv):
    """The environment as it was: gymnasium's renderer, the resize as BLAS products on numpy's
    OpenBLAS threads."""

    box2d = CarRacing

    def _observe(self, frame: np.ndarray) -> np.ndarray:
        rows, cols = area_matrix(frame.shape[0], SIZE), area_matrix(frame.shape[1], SIZE)
        channels = np.moveaxis(frame, 2, 0).astype(np.float32) / 255.0
        self._obs = np.clip(rows @ channels @ cols.T, 0.0, 1.0)
        return self._obs.copy()


PATHS: dict[str, type[CarRacingEnv]] = {"before": Before, "after": CarRacingEnv}


def outputs(seed: int, steps: int) -> np.ndarray:
    """Raw network outputs: gas mostly on, brake off, random steering (as tests/test_carracing.py)."""
    return np.random.default_rng(seed).normal(0.0, 1.0, (steps, 3)) + (0.0, 1.0, -3.0)


def windows(steps: int) -> dict[str, slice]:
    """The zoom-in steps, then the rest of the episode."""
    zoom, follow = f"steps 1-{ZOOM_STEPS}", f"steps {ZOOM_STEPS + 1}-{steps}"
    return {zoom: slice(0, ZOOM_STEPS), follow: slice(ZOOM_STEPS, steps)}


def timed_round(env: CarRacingEnv, seed: int, steps: int) -> dict[str, float]:
    """ms per step of each window of one episode."""
    env.reset(seed=seed)
    actions, ms = outputs(seed, steps), {}
    for name, window in windows(steps).items():
        start = time.perf_counter()
        for action in actions[window]:
            env.step(action)
        ms[name] = (time.perf_counter() - start) / len(actions[window]) * 1e3
    return ms


class Phases:
    """Seconds spent in wrapped methods, per window."""

    def __init__(self) -> None:
        self.window = ""
        self.seconds: dict[tuple[str, str], float] = defaultdict(float)

    def wrap(self, obj: Any, method: str, key: str) -> None:
        inner: Callable[..., Any] = getattr(obj, method)

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds[self.window, key] += time.perf_counter() - start

        setattr(obj, method, timed)

    def breakdown(self, window: str, steps: int) -> dict[str, float]:
        """ms per step of each phase (the wrapped methods nest: subtract the inner ones)."""
        s = {key: self.seconds[window, key] / steps * 1e3 for _, key in self.seconds}
        return {
            "physics": s["box2d step"] - s["render"],
            "playfield": s["road"],
            "rest of drawing": s["render"] - s["road"] - s["image"],
            "downscale": s["image"],
            "preprocess": s["observe"],
            "wrapper": s["step"] - s["box2d step"] - s["observe"],
        }


def phase_round(path: type[CarRacingEnv], seed: int, steps: int) -> dict[str, dict[str, float]]:
    env, phases = path(), Phases()
    car = env._car
    for obj, method, key in (
        (env, "step", "step"), (env, "_observe", "observe"), (car, "step", "box2d step"),
        (car, "_render", "render"), (car, "_render_road", "road"), (car, "_create_image_array", "image"),
    ):  # fmt: skip
        phases.wrap(obj, method, key)
    env.reset(seed=seed)
    actions = outputs(seed, steps)
    result = {}
    for name, window in windows(steps).items():
        phases.window = name
        for action in actions[window]:
            env.step(action)
        result[name] = phases.breakdown(name, len(actions[window]))
    env.close()
    return result


def machine() -> str:
    """CPU, load and versions: the figures are relative to these."""
    model = platform.processor() or platform.machine()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            names = (line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
            model = next(names, model)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    threads = os.environ.get("OPENBLAS_NUM_THREADS", "unset")
    return (
        f"{model}, {os.cpu_count()} CPUs, load average {load}; numpy {np.__version__}, gymnasium "
        f"{gymnasium.__version__}, pygame {pygame.version.ver}; OPENBLAS_NUM_THREADS {threads}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds, a new track each (default 5)")
    parser.add_argument("--steps", type=int, default=200, help="steps per episode, over 50 (default 200)")
    args = parser.parse_args()
    if args.steps <= ZOOM_STEPS:
        parser.error(f"--steps must exceed the {ZOOM_STEPS} zoom-in steps")
    print(f"machine: {machine()}")
    envs = {name: path() for name, path in PATHS.items()}
    for env in envs.values():  # warm-up: pygame, fonts, first track
        timed_round(env, 10**6, ZOOM_STEPS + 1)
    ms: dict[str, dict[str, list[float]]] = {name: defaultdict(list) for name in PATHS}
    for r in range(args.rounds):
        for name in list(PATHS)[:: 1 if r % 2 == 0 else -1]:
            for window, value in timed_round(envs[name], r, args.steps).items():
                ms[name][window].append(value)
    n = {window: s.stop - s.start for window, s in windows(args.steps).items()}
    for name in envs:
        envs[name].close()
        ms[name][f"steps 1-{args.steps}"] = [
            sum(ms[name][w][r] * n[w] for w in n) / args.steps for r in range(args.rounds)
        ]
    print(f"\nms per step, median of {args.rounds} rounds (each a new track; the same outputs through both)")
    print(f"{'':16s}{'before':>10s}{'after':>8s}{'ratio':>8s}")
    for window in ms["after"]:
        old, new = (statistics.median(ms[name][window]) for name in PATHS)
        print(f"{window:16s}{old:10.2f}{new:8.2f}{old / new:7.2f}x")
    print(f"\nwhere a step goes: ms per step (share), one round on another track (seed {args.rounds})")
    tables = {name: phase_round(path, args.rounds, args.steps) for name, path in PATHS.items()}
    columns = [(name, window) for window in windows(args.steps) for name in PATHS]
    print(f"{'':16s}" + "".join(f"{f'{name}, {window}':>26s}" for name, window in columns))
    for phase in (*PHASES, "total"):
        cells = []
        for name, window in columns:
            row = tables[name][window]
            total = sum(row.values())
            value = total if phase == "total" else row[phase]
            cells.append(f"{value:.2f} ({100 * value / total:.0f}%)")
        print(f"{phase:16s}" + "".join(f"{c:>26s}" for c in cells))


if __name__ == "__main__":
    main()
