"""Simulated robots and tasks, with damage injection.

Simulators are imported only when a task asks for them, so the deploy path never loads MuJoCo.
"""

from __future__ import annotations

import os

# MuJoCo picks its rendering backend when first imported, so this runs before any simulator module.
os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering; set MUJOCO_GL=osmesa to override

from collections.abc import Sequence
from importlib import import_module
from typing import Any

import gymnasium

from sim.damage import SpecError, apply_damage

__all__ = ["TASKS", "SpecError", "make"]

# task id -> gymnasium id, "module:class" of the environment
TASKS: dict[str, tuple[str, str]] = {
    "ant": ("HebbianQuadruped/Ant-v0", "sim.ant:AntEnv"),
    "ant-bullet": ("HebbianQuadruped/AntBullet-v0", "sim.ant_bullet:AntBulletEnv"),
    "carracing": ("HebbianQuadruped/CarRacing-v0", "sim.carracing:CarRacingEnv"),
    "servo-quad": ("HebbianQuadruped/ServoQuad-v0", "sim.servo_quad:ServoQuadEnv"),
}


def _register() -> None:
    for env_id, entry_point in TASKS.values():
        if env_id not in gymnasium.registry:
            gymnasium.register(id=env_id, entry_point=entry_point)


_register()


def make(task: str, damages: Sequence[str] = (), seed: int | None = None, **kwargs: Any) -> gymnasium.Env:
    """Build a task's environment with its damage wrappers.

    ``seed``, when given, seeds the first reset's generator (pass it to ``reset`` as well to be explicit).
    Raises :class:`SpecError` for an unknown task, a task whose optional simulator is not installed,
    or a damage that does not fit the robot.
    """
    if task not in TASKS:
        raise SpecError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    module, cls = TASKS[task][1].split(":")
    try:
        env_class = getattr(import_module(module), cls)
    except ImportError as exc:
        raise SpecError(f"task {task!r}: {exc}") from None
    env = env_class(**kwargs)
    if seed is not None:
        env.reset(seed=seed)
    return apply_damage(env, damages)
