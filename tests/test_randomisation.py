"""Domain randomisation: every lifetime a different robot, the same robot for the same seed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import sim
from controller.cli import main as controller
from sim.randomise import Randomisation, RandomisationError, load_randomisation
from sim.servo_quad import SERVO

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "launch" / "randomisation" / "servo_quad.yaml"


def lifetime(env, seed: int, ticks: int = 30):
    """What a lifetime drew, and its observations under a fixed action sequence."""
    obs, info = env.reset(seed=seed)
    actions = np.random.default_rng(7).uniform(-1, 1, (ticks, 8))
    return info["randomisation"], np.array([obs] + [env.step(a)[0] for a in actions])


def test_draws_differ_per_seed_and_repeat_with_the_same_seed():
    env = sim.make("servo-quad", randomise=CONFIG)
    drawn0, run0 = lifetime(env, 0)
    drawn1, run1 = lifetime(env, 1)
    again0, rerun0 = lifetime(sim.make("servo-quad", randomise=CONFIG), 0)
    assert set(drawn0) == {
        "mass_scale", "inertia_scale", "friction", "servo_strength", "servo_speed", "latency", "obs_bias"
    }  # fmt: skip
    for key in drawn0:
        assert np.all(drawn0[key] != drawn1[key]), key
        assert np.array_equal(drawn0[key], again0[key]), key
    assert not np.allclose(run0, run1)
    assert np.array_equal(run0, rerun0)


def test_draws_are_applied_within_their_ranges():
    config = load_randomisation(CONFIG)
    env = sim.make("servo-quad", randomise=config)
    _, info = env.reset(seed=3)
    drawn, robot = info["randomisation"], env.unwrapped
    nominal = sim.make("servo-quad").unwrapped
    assert robot.model.body_mass[1:] == pytest.approx(nominal.model.body_mass[1:] * drawn["mass_scale"])
    inertia = drawn["mass_scale"] * drawn["inertia_scale"]
    assert robot.model.body_inertia[1:] == pytest.approx(nominal.model.body_inertia[1:] * inertia[:, None])
    assert np.all(robot.model.geom_friction[:, 0] == drawn["friction"])
    assert robot.total_mass() == pytest.approx(float(nominal.model.body_mass[1:] @ drawn["mass_scale"]))
    assert np.array_equal(robot.servos.strength, drawn["servo_strength"])
    assert np.array_equal(robot.servos.speed, drawn["servo_speed"])
    assert robot.servos.latency == drawn["latency"]
    for key in ("mass_scale", "inertia_scale", "friction", "servo_strength", "servo_speed", "latency"):
        low, high = getattr(config, key)
        assert np.all((low <= drawn[key]) & (drawn[key] <= high)), key


def test_the_drawn_body_survives_a_midrun_cut_and_reset_restores_the_nominal_one():
    env = sim.make("servo-quad", ["cut-leg:2@0.1"], randomise={"mass_scale": [0.5, 0.6]})
    _, info = env.reset(seed=0)
    scale = info["randomisation"]["mass_scale"]
    robot = env.unwrapped
    torso = robot.model.body("torso").id
    nominal = sim.make("servo-quad").unwrapped.model.body_mass[torso]
    for _ in range(10):
        env.step(np.zeros(8))
    assert env.unwrapped.damage == ["cut-leg:2@0.1"]  # the model was recompiled
    assert robot.model.body_mass[torso] == pytest.approx(nominal * scale[torso - 1])
    robot.restore_body()
    assert robot.model.body_mass[torso] == nominal


def test_noise_and_bias_act_on_the_sensed_channels_only():
    clean = sim.make("servo-quad")
    noisy = sim.make("servo-quad", randomise={"obs_noise": 0.01, "obs_bias": 0.05})
    o1, _ = clean.reset(seed=2)
    o2, info = noisy.reset(seed=2)
    diffs = [o2 - o1]
    for a in np.random.default_rng(0).uniform(-1, 1, (200, 8)):
        diffs.append(noisy.step(a)[0] - clean.step(a)[0])
    diffs = np.array(diffs)
    assert np.all(diffs[:, 7:] == 0.0)  # commanded angles and the clock are known exactly
    assert diffs[:, :7].mean(axis=0) == pytest.approx(info["randomisation"]["obs_bias"], abs=0.003)
    assert diffs[:, :7].std(axis=0) == pytest.approx(np.full(7, 0.01), rel=0.2)


def test_tick_jitter_varies_the_tick_length_within_its_bound():
    env = sim.make("servo-quad", randomise={"tick_jitter": 0.004})
    env.reset(seed=0)
    data = env.unwrapped.data
    lengths = []
    for _ in range(200):
        before = data.time
        env.step(np.zeros(8))
        lengths.append(round((data.time - before) * 1000))  # ms
    assert set(lengths) == {16, 18, 20, 22, 24}


def test_pushes_kick_the_body_every_interval():
    env = sim.make("servo-quad", randomise={"push_interval": 0.5, "push_speed": 0.3})
    env.reset(seed=0)
    for _ in range(100):  # 2 s: pushes at 0.5, 1.0, 1.5, 2.0 s
        env.step(np.zeros(8))
    pushes = env.get_wrapper_attr("pushes")
    assert len(pushes) == 4 and all(np.abs(p).max() <= 0.3 for p in pushes)
    assert len({tuple(p) for p in pushes}) == 4


def test_a_drawn_servo_latency_delays_the_commands():
    env = sim.make("servo-quad", reset_noise_scale=0.0, randomise={"latency": [0.03, 0.031]})
    env.reset(seed=0)
    robot = env.unwrapped
    assert robot.servos.latency > SERVO.latency
    robot.command(np.full(8, 0.3))
    sent = robot.data.time
    while not np.any(robot.servos.torque(robot.data.time, np.zeros(8), np.zeros(8))):
        robot.physics_step()
    assert robot.data.time - sent >= robot.servos.latency - 1e-9


def test_randomised_env_passes_check_env_and_the_ant_takes_body_randomisation():
    check_env(sim.make("servo-quad", randomise=CONFIG), skip_render_check=True)
    ant = sim.make("ant", randomise={"mass_scale": [1.5, 1.6], "friction": [0.5, 0.5]})
    ant.reset(seed=0)
    assert ant.unwrapped.total_mass() > 1.4 * sim.make("ant").unwrapped.total_mass()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"mass": [1, 2]}, "unknown key 'mass'"),
        ({"friction": [1.2, 0.5]}, "0 < low <= high"),
        ({"friction": 0.5}, "must be a range"),
        ({"obs_noise": -1}, ">= 0"),
        ({"latency": ["a", 1]}, "finite number"),
        ({"push_interval": 15}, "both push_interval and push_speed"),
    ],
)
def test_bad_configs_are_named(values, message):
    with pytest.raises(RandomisationError, match=message):
        Randomisation.from_mapping(values)


def test_servo_figures_on_a_robot_without_servos_is_a_one_line_error(tmp_path, capsys):
    assert controller(["--sim", "ant", "--randomise", str(CONFIG), "--steps", "5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "need a robot with a servo model" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("friction: [0.5\n")
    assert controller(["--sim", "servo-quad", "--randomise", str(bad), "--steps", "5"]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_controller_evaluates_randomised_lifetimes(capsys):
    args = ["evaluate", "servo-quad", "--sim", "servo-quad", "--randomise", str(CONFIG)]
    assert controller([*args, "--lifetimes", "2", "--steps", "50"]) == 0
    assert "over 2 lifetimes of 50 ticks" in capsys.readouterr().out


def test_the_shipped_genome_walks_forward_on_randomised_robots(tmp_path):
    """The shipped servo-quad genome walks 1 m or more on every one of three randomised robots, and the
    heading input is what holds its course: with it zeroed, it gets less far (results.md: 50 lifetimes)."""
    args = ["evaluate", "servo-quad", "--sim", "servo-quad", "--randomise", str(CONFIG), "--lifetimes", "3"]
    assert controller([*args, "--json", str(tmp_path / "walk.json")]) == 0
    assert controller([*args, "--damage", "dropout:6", "--json", str(tmp_path / "blind.json")]) == 0
    walk, blind = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("walk", "blind"))
    assert walk["walked_forward"] == 3 and walk["distance_min"] >= 1.0
    assert blind["distance_mean"] < walk["distance_mean"]
