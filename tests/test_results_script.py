"""docs/results.py --sensitivity: each edge is the wide randomisation with exactly that range pinned, so a
table row says what happens at that edge and nowhere else (issue 27's sensitivity table)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

SCRIPT = Path(__file__).parents[1] / "docs" / "results.py"
TASK = "servo-quad"
SEEDS = range(4)


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_results", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


results = _load()
WIDE = results._wide()


def _draws(edge: object) -> list[dict]:
    env = results.edge_env(TASK, edge)
    return [env.reset(seed=seed)[1]["randomisation"] for seed in SEEDS]


def test_the_edges_are_the_issues() -> None:
    """Servo speed 5 and 15 rad/s, torque 0.14 and 0.30 N m, friction 0.3 and 1.25, latency 80 ms, the
    longest tick, and the unpinned baseline."""
    values = {results.edge_label(TASK, edge)[1] for edge in results.EDGES}
    for shown in ("5 rad/s", "15 rad/s", "0.14 N m", "0.30 N m", "80 ms", "24 ms every tick"):
        assert any(v.startswith(shown) for v in values), shown
    assert {"0.3", "1.25", "-"} <= values


@pytest.mark.parametrize("edge", [e for e in results.EDGES if e.key], ids=lambda e: f"{e.key}-{e.side}")
def test_a_pinned_range_pins_and_the_rest_stay_drawn(edge: object) -> None:
    end = getattr(WIDE, edge.key)[edge.side]
    draws = _draws(edge)
    for drawn in draws:
        assert np.all(np.asarray(drawn[edge.key]) == end)
    others = [k for k in ("servo_speed", "servo_strength", "friction", "latency") if k != edge.key]
    for key in others:  # still drawn from the wide range, differently per lifetime
        low, high = getattr(WIDE, key)
        values = [np.asarray(d[key]).ravel()[0] for d in draws]
        assert all(low <= v <= high for v in values) and len(set(values)) == len(values), key
    assert results.edge_randomisation(edge).tick_jitter == WIDE.tick_jitter


def test_a_pinned_range_reaches_the_robot() -> None:
    """What the randomiser says it drew is what the servos and the floor have."""
    for edge in results.EDGES:
        if edge.key is None:
            continue
        env = results.edge_env(TASK, edge)
        env.reset(seed=1)
        robot = env.unwrapped
        end = getattr(WIDE, edge.key)[edge.side]
        actual = {
            "servo_speed": robot.servos.speed,
            "servo_strength": robot.servos.strength,
            "friction": robot.model.geom_friction[:, 0],
            "latency": robot.servos.latency,
        }[edge.key]
        assert np.all(np.asarray(actual) == end), edge


def test_the_longest_tick_lasts_the_longest_every_tick_on_the_nominal_clock() -> None:
    (edge,) = [e for e in results.EDGES if e.longest_tick]
    assert results.edge_randomisation(edge).tick_jitter == 0.0  # no jitter on top of it
    env = results.edge_env(TASK, edge)
    env.reset(seed=0)
    robot = env.unwrapped
    longest = 0.02 + WIDE.tick_jitter
    zero = np.zeros(env.action_space.shape, dtype=np.float32)
    for tick in range(1, 6):
        before = robot.data.time
        obs = env.step(zero)[0]
        assert robot.data.time - before == pytest.approx(longest)
        phase = 2.0 * math.pi * 2.0 * tick * 0.02  # the deployed loop's clock: 2 Hz counted in 20 ms ticks
        assert obs[15:17] == pytest.approx([math.sin(phase), math.cos(phase)])


def test_the_baseline_pins_nothing() -> None:
    assert results.edge_randomisation(results.Edge()) == WIDE
    draws = _draws(results.Edge())
    assert len({float(d["friction"]) for d in draws}) == len(draws)


def test_the_paper_table_keeps_the_papers_split_and_units() -> None:
    """The ant-bullet table marks the front-right Ant trained and the front-left one held out, as the
    training config has them, and scores AntBulletEnv-v0's 960 controlled steps in its progress units."""
    task = results.TASKS["ant-bullet"]
    seen = results._training_damages(task.configs)
    trained = {row.label: row.trained_on(seen) for row in task.rows}
    assert trained == {"standard": True, "leg 4 lower part at 25%": True, "leg 1 lower part at 25%": False}
    assert task.ticks == 960
    assert task.progress_units and results._task_timing("ant-bullet")[1] == pytest.approx(0.0165)
    assert results._distance(np.array([16.5, 16.5]), 0.0165) == "16.50 ± 0.00 (1000 ± 0)"
