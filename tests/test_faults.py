"""The faults added for the fault suites do what their names say, in MuJoCo, and compose with
randomisation; bad specs are named."""

from __future__ import annotations

import numpy as np
import pytest

import sim
from sim.damage import SpecError, parse


def _run(env, ticks: int, action: np.ndarray | None = None, seed: int = 0):
    obs, _ = env.reset(seed=seed)
    for _ in range(ticks):
        obs, *_ = env.step(np.zeros(8) if action is None else action)
    return obs


@pytest.mark.parametrize("task", ["ant", "servo-quad"])
def test_payload_makes_the_torso_heavier_by_the_fraction(task):
    intact, loaded = sim.make(task), sim.make(task, ["payload:0.5"])
    intact.reset(seed=0)
    loaded.reset(seed=0)
    mass = intact.unwrapped.total_mass()
    assert loaded.unwrapped.total_mass() == pytest.approx(1.5 * mass)
    torso = loaded.unwrapped.model.body("torso").id
    assert loaded.unwrapped.model.body_mass[torso] > intact.unwrapped.model.body_mass[torso] + 0.49 * mass
    loaded.reset(seed=1)
    assert loaded.unwrapped.total_mass() == pytest.approx(1.5 * mass)  # once per lifetime, not added up


@pytest.mark.parametrize("degrees", [5, -5])
def test_slope_tilts_gravity_and_the_robot_senses_it(degrees):
    env = sim.make("ant", [f"slope:{degrees}"])
    _run(env, 1)
    gravity = env.unwrapped.model.opt.gravity
    assert np.degrees(np.arctan2(-gravity[0], -gravity[2])) == pytest.approx(degrees)
    assert np.linalg.norm(gravity) == pytest.approx(9.81)
    quad = sim.make("servo-quad", [f"slope:{degrees}"])
    obs = _run(quad, 60)  # standing still on the slope: the IMU's gravity direction leans with it
    assert np.degrees(np.arcsin(-obs[0])) == pytest.approx(degrees, abs=1.5)
    level = _run(sim.make("servo-quad"), 60)
    assert abs(level[0]) < 0.02


def test_an_ant_slides_back_down_a_slope_it_does_not_walk():
    down = {}
    for degrees in (0, 15):
        env = sim.make("ant", [f"slope:{degrees}", "friction:0.05"])
        env.reset(seed=0)
        for _ in range(40):
            *_, info = env.step(np.zeros(8))
        down[degrees] = info["x_distance"]
    assert down[15] < down[0] - 0.1


def test_friction_scales_what_randomisation_drew_and_reset_restores_it():
    env = sim.make("servo-quad", ["friction:0.5@0.2"], randomise={"friction": [0.9, 0.9]})
    env.reset(seed=0)
    model = env.unwrapped.model
    assert np.allclose(model.geom_friction[:, 0], 0.9)
    for _ in range(12):
        env.step(np.zeros(8))
    assert np.allclose(env.unwrapped.model.geom_friction[:, 0], 0.45)
    env.reset(seed=1)
    assert np.allclose(env.unwrapped.model.geom_friction[:, 0], 0.9)


@pytest.mark.parametrize(("task", "joint"), [("ant", "hip_2"), ("servo-quad", "knee_3")])
def test_slow_joint_caps_its_speed(task, joint):
    def top_speed(damage):
        """The fastest mean speed over any 5 ticks while the joint is driven back and forth: a spike of
        one physics step (a foot striking) is not the joint's speed."""
        env = sim.make(task, damage)
        env.reset(seed=0)
        robot = env.unwrapped
        i = robot.joints.index(joint)
        angles = []
        for tick in range(60):
            action = np.zeros(8)
            action[i] = 1.0 if (tick // 15) % 2 == 0 else -1.0
            env.step(action)
            angles.append(float(robot.joint_angles()[i]))
        angles = np.array(angles)
        return float(np.abs(angles[5:] - angles[:-5]).max() / (5 * robot.dt))

    free, slow = top_speed([]), top_speed([f"slow:{joint}:1"])
    assert free > 3.0 and slow < 1.3


def test_bias_adds_a_constant_to_one_channel():
    clean, biased = sim.make("ant"), sim.make("ant", ["bias:4:0.3"])
    o1, o2 = _run(clean, 5), _run(biased, 5)
    assert o2[4] - o1[4] == pytest.approx(0.3)
    assert np.array_equal(np.delete(o1, 4), np.delete(o2, 4))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("shorten-leg:1:0", "between 0.05 and 1"),
        ("latency:1000000000", "between 0 and 100"),
        ("slope:45", "between -30 and 30"),
        ("friction:0", "between 0.01 and 100"),
        ("payload:-1", "between 0 and 10"),
        ("slow:hip_1:0", "between 0.1 and 1000"),
        ("bias:3:nan", "must be finite"),
        ("bias:3", "needs 2 argument"),
        ("cut-leg:1@-2", "onset must be between"),
    ],
)
def test_out_of_range_arguments_are_named_when_parsed(spec, message):
    with pytest.raises(SpecError, match=message):
        parse(spec)


def test_a_fault_the_robot_cannot_have_is_named():
    with pytest.raises(SpecError, match="unknown joint 'ankle_1'"):
        sim.make("servo-quad", ["slow:ankle_1:2"])
    with pytest.raises(SpecError, match="do not exist"):
        sim.make("servo-quad", ["bias:17:0.1"])


def test_the_paper_ant_in_pybullet_has_the_same_faults():
    def joint_speed(damage):
        env = sim.make("ant-bullet", damage)
        env.reset(seed=0)
        robot = env.unwrapped
        angles = []
        for tick in range(60):
            action = np.zeros(8)
            action[0] = 1.0 if (tick // 20) % 2 == 0 else -1.0
            env.step(action)
            angles.append(robot.client.getJointState(robot.body, robot.joint_ids[0])[0])
        angles = np.array(angles)
        return float(np.abs(angles[5:] - angles[:-5]).max() / (5 * robot.dt)), robot

    free, robot = joint_speed([])
    mass = robot.total_mass()
    slow, _ = joint_speed(["slow:hip_1:1"])
    assert slow < 0.35 * free
    _, loaded = joint_speed(["payload:0.5"])
    assert loaded.total_mass() == pytest.approx(1.5 * mass)
    _, tilted = joint_speed(["slope:5", "friction:0.5"])
    gravity = tilted.client.getPhysicsEngineParameters()["gravityAccelerationX"]
    assert gravity == pytest.approx(-9.8 * np.sin(np.radians(5)))
    floor = tilted.client.getDynamicsInfo(tilted._floor, -1)[1]
    assert floor == pytest.approx(0.4)
