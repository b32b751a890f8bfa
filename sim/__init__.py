"""Simulated robots and tasks, with damage injection.

Simulators are imported only when a task asks for them, so the deploy path never loads MuJoCo.
"""

from __future__ import annotations

import os

# MuJoCo picks its rendering backend when first imported, so this runs before any simulator module.
os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering; set MUJOCO_GL=osmesa to override

from collections.abc import Mapping, Sequence
from importlib import import_module
from typing import Any

import gymnasium

from sim.damage import SpecError, apply_damage
from sim.randomise import Randomisation, apply_randomisation, load_randomisation

__all__ = ["TASKS", "Randomisation", "SpecError", "make"]

# task id -> gymnasium id, "module:class" of the environment
TASKS: dict[str, tuple[str, str]] = {
    "ant": ("HebbianQuadruped/Ant-v0", "sim.ant:AntEnv"),
    "ant-bullet": ("HebbianQuadruped/AntBullet-v0", "sim.ant_bullet:AntBulletEnv"),
    "carracing": ("HebbianQuadruped/CarRacing-v0", "sim.carracing:CarRacingEnv"),
    "servo-quad": ("HebbianQuadruped/ServoQuad-v0", "sim.servo_quad:ServoQuadEnv"),
    "servo-quad-opencat": ("HebbianQuadruped/ServoQuadOpenCat-v0", "sim.servo_quad:ServoQuadOpenCatEnv"),
}


def _register() -> None:
    for env_id, entry_point in TASKS.values():
        if env_id not in gymnasium.registry:
            gymnasium.register(id=env_id, entry_point=entry_point)


_register()


def make(
    task: str,
    damages: Sequence[str] = (),
    seed: int | None = None,
    randomise: Randomisation | Mapping[str, Any] | str | os.PathLike | None = None,
    **kwargs: Any,
) -> gymnasium.Env:
    """Build a task's environment with its damage wrappers and, given a config (a
    :class:`Randomisation`, a mapping or a YAML file; :mod:`sim.randomise`), domain randomisation.

    ``seed``, when given, seeds the first reset's generator (pass it to ``reset`` as well to be explicit).
    Raises :class:`SpecError` for an unknown task, a task whose optional simulator is not installed,
    a damage that does not fit the robot, or a bad randomisation config.
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
    env = apply_damage(env, damages)
    return env if randomise is None else apply_randomisation(env, load_randomisation(randomise))
