"""The PyBullet Ant: its observation means what the paper's notes say, its damage does what it names."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

pybullet = pytest.importorskip("pybullet")

from conftest import random_genome  # noqa: E402
from scripted_env import ScriptedEnv  # noqa: E402

import sim  # noqa: E402
from controller.genome import load_genome  # noqa: E402
from controller.loop import EarlyStop, run_lifetime  # noqa: E402
from controller.network import NetworkSpec, StaticNetwork  # noqa: E402
from sim.ant_bullet import AntBulletEnv  # noqa: E402
from sim.quadruped import JOINTS  # noqa: E402

SETTLE = 40
TINY = StaticNetwork(NetworkSpec((1, 1), ("tanh",)), [np.zeros((1, 1), np.float32)])


def settled(damages=(), seed=0):
    env = sim.make("ant-bullet", damages)
    obs, _ = env.reset(seed=seed)
    for _ in range(SETTLE):
        obs, *_ = env.step(np.zeros(8))
    return env, obs


def segment_length(env, leg: int) -> float:
    """The lower segment's capsule length, as the body was built."""
    robot = env.unwrapped
    shapes = {s[1]: s[3] for s in robot.client.getVisualShapeData(robot.body)}
    return shapes[robot.foot_links[leg - 1]][0]


def lift(env, leg: int, force: float = 1000.0) -> None:
    """Pull leg ``leg``'s lower segment upwards during the next tick (forces last one step)."""
    robot = env.unwrapped
    link = robot.foot_links[leg - 1]
    position = robot.client.getLinkState(robot.body, link)[0]
    robot.client.applyExternalForce(robot.body, link, [0.0, 0.0, force], position, pybullet.WORLD_FRAME)


def into_the_air(env, height: float = 3.0, yaw: float = 0.0, velocity=(0.0, 0.0, 0.0)) -> None:
    robot = env.unwrapped
    orientation = pybullet.getQuaternionFromEuler([0.0, 0.0, yaw])
    robot.client.resetBasePositionAndOrientation(robot.body, [0.0, 0.0, height], orientation)
    robot.client.resetBaseVelocity(robot.body, list(velocity), [0.0, 0.0, 0.0])


@pytest.mark.parametrize(
    "damage", [[], ["shorten-leg:1:0.25", "lock:ankle_2", "latency:2", "obs-noise:0.01", "cut-leg:3@0.1"]]
)
def test_check_env(damage):
    check_env(sim.make("ant-bullet", damage), skip_render_check=True)


def test_reset_observation_layout():
    obs, info = sim.make("ant-bullet").reset(seed=3)
    assert obs.shape == (28,) and obs.dtype == np.float64 and info["x_distance"] == 0.0
    assert obs[0] == 0.0  # height above the reset height
    assert obs[1] == pytest.approx(0.0, abs=1e-4) and obs[2] == pytest.approx(1.0)  # facing the target
    assert np.all(obs[3:8] == 0.0)  # still, level
    angles, speeds = obs[8:24:2], obs[9:24:2]
    assert np.all(speeds == 0.0)
    # Each reset draws angles in +-0.1 rad clipped into range: the ankles (30-100 degrees) sit at the
    # limit nearest 0, scaled to -1 (ankles 1, 4) or +1 (ankles 2, 3); the hips (+-40 degrees) near 0.
    assert angles[1::2] == pytest.approx([-1.0, 1.0, 1.0, -1.0])
    assert np.all(np.abs(angles[0::2]) <= 0.1 / np.radians(40) + 1e-6)
    assert np.all(obs[24:] == 0.0)  # dropped from 0.75 m: no foot on the floor yet


def test_landing_lowers_the_height_term_and_every_foot_touches():
    _, obs = settled()
    assert -0.5 < obs[0] < -0.2
    assert np.all(obs[24:] == 1.0)


def test_contact_flag_is_zero_while_the_foot_is_lifted():
    env, _ = settled()
    flags = []
    for tick in range(40):
        if tick < 20:
            lift(env, 1)
        obs, *_ = env.step(np.zeros(8))
        flags.append(obs[24:])
    flags = np.array(flags)
    lifted = flags[:20, 0] == 0.0
    assert lifted.any(), "the pulled foot should leave the floor"
    assert np.all(flags[:20][lifted, 1:] == 1.0)  # the other three stay down
    assert np.all(flags[-5:] == 1.0)  # released, it lands again


def test_airborne_ant_velocity_and_heading_in_the_yaw_frame():
    env = sim.make("ant-bullet")
    env.reset(seed=0)
    into_the_air(env, yaw=np.pi / 2, velocity=(1.0, 0.0, 0.0))  # facing +y, moving along +x
    obs, *_ = env.step(np.zeros(8))
    assert np.all(obs[24:] == 0.0)
    assert obs[0] == pytest.approx(3.0 - 0.75, abs=0.05)
    assert obs[1] == pytest.approx(-1.0, abs=1e-3) and obs[2] == pytest.approx(
        0.0, abs=1e-3
    )  # target on the right
    assert obs[3] == pytest.approx(0.0, abs=0.01)  # no forward speed in its own frame
    assert obs[4] == pytest.approx(-0.3, abs=0.01)  # 1 m/s to its right, times 0.3
    assert obs[5] == pytest.approx(-0.3 * 9.8 * env.unwrapped.dt, abs=0.01)  # falling


def test_joint_speed_term_is_a_tenth_of_the_angular_speed():
    env, _ = settled()
    robot = env.unwrapped
    obs, *_ = env.step(np.full(8, 0.8))
    speeds = [s[1] for s in robot.client.getJointStates(robot.body, robot.joint_ids)]
    assert obs[9:24:2] == pytest.approx(0.1 * np.array(speeds), abs=1e-6)
    assert np.abs(obs[9:24:2]).max() > 0.01


def test_x_distance_is_the_progress_summed():
    env, _ = settled()
    robot = env.unwrapped
    x0 = robot.client.getBasePositionAndOrientation(robot.body)[0][0]
    info0 = env.step(np.zeros(8))[-1]
    total = 0.0
    rng = np.random.default_rng(0)
    for _ in range(100):
        _, reward, _, _, info = env.step(rng.uniform(-1, 1, 8))
        total += reward * robot.dt
    assert info["x_distance"] - info0["x_distance"] == pytest.approx(total, abs=1e-9)
    x1 = robot.client.getBasePositionAndOrientation(robot.body)[0][0]
    assert info["x_distance"] == pytest.approx(x1 - x0, abs=0.05)  # the body's centre vs the torso


def test_settle_ticks_run_before_control():
    actions = []

    class Recorder(gymnasium.ActionWrapper):
        def action(self, action):
            actions.append(np.array(action))
            return action

    env = Recorder(sim.make("ant-bullet"))
    spec = NetworkSpec((28, 8), ("tanh",))
    network = StaticNetwork(spec, [np.full((28, 8), 0.3, np.float32)])
    life = run_lifetime(network, env, 5, seed=0, settle_ticks=SETTLE)
    assert life.ticks == 5 and len(actions) == SETTLE + 5
    assert np.all(np.array(actions[:SETTLE]) == 0.0)
    assert np.all(np.abs(actions[SETTLE]) > 0.0)


def test_early_stop_ends_at_the_30th_tick_without_progress_after_tick_200():
    still = np.r_[np.arange(1, 121), np.full(880, 120.0)]  # no new best from tick 120 on
    env = ScriptedEnv(AntBulletEnv, xs=still)
    life = run_lifetime(TINY, env, 1000, 0, early_stop=EarlyStop.of(env))
    assert life.early_stopped and life.ticks == 201  # tick 200 is the first that may stop
    env = ScriptedEnv(AntBulletEnv, xs=np.r_[np.arange(1, 251), np.full(750, 250.0)])  # walks to tick 249
    life = run_lifetime(TINY, env, 1000, 0, early_stop=EarlyStop.of(env))
    assert life.ticks == 280  # ticks 250..279: 30 without a new best
    assert life.fitness == life.distance == 250.0


def test_a_dithering_ant_is_stopped_at_tick_200():
    env = sim.make("ant-bullet")
    assert EarlyStop.of(env) == EarlyStop(200, 30)
    spec = NetworkSpec((28, 128, 64, 8), ("tanh",) * 3, normalise=True)
    network = random_genome(spec, task="ant-bullet").build("numpy")
    xs = []
    life = run_lifetime(
        network,
        env,
        1000,
        seed=0,
        settle_ticks=SETTLE,
        early_stop=EarlyStop.of(env),
        on_tick=lambda tick, obs, action, info: xs.append(info["x_distance"]),
    )
    assert life.early_stopped and life.ticks == 201
    assert max(xs[-30:]) <= max(xs[:-30])  # the last 30 ticks brought no new best


@pytest.mark.parametrize("leg", [1, 4])
def test_paper_damaged_morphologies_have_the_shortened_segment(leg):
    intact = sim.make("ant-bullet")
    intact.reset(seed=0)
    env = sim.make("ant-bullet", [f"shorten-leg:{leg}:0.25"])
    env.reset(seed=0)
    for other in (1, 2, 3, 4):
        expected = 0.25 if other == leg else 1.0
        assert segment_length(env, other) == pytest.approx(expected * segment_length(intact, other))
    robot, full = env.unwrapped, intact.unwrapped
    link = robot.foot_links[leg - 1]
    shortened = np.subtract(*robot.client.getAABB(robot.body, link)[::-1])
    original = np.subtract(*full.client.getAABB(full.body, link)[::-1])
    assert np.linalg.norm(shortened) < 0.7 * np.linalg.norm(original)  # the collision shape too
    assert robot.total_mass() < full.total_mass()


def test_shipped_genome_runs_on_the_damaged_ant():
    genome = load_genome("ant-bullet", task="ant-bullet")
    env = sim.make("ant-bullet", ["shorten-leg:1:0.25"])
    life = run_lifetime(genome.build("numpy"), env, 50, seed=0, settle_ticks=SETTLE)
    assert life.ticks > 0 and np.isfinite(life.distance)


def test_cut_leg_removes_contacts_and_mass():
    intact = sim.make("ant-bullet")
    intact.reset(seed=0)
    mass = intact.unwrapped.total_mass()
    env = sim.make("ant-bullet", ["cut-leg:2"])
    env.reset(seed=0)
    robot = env.unwrapped
    link = robot.foot_links[1]
    segment = intact.unwrapped.client.getDynamicsInfo(intact.unwrapped.body, link)[0]
    assert robot.total_mass() == pytest.approx(mass - segment, abs=1e-3)
    rng = np.random.default_rng(0)
    for _ in range(SETTLE + 60):
        obs, *_ = env.step(rng.uniform(-1, 1, 8))
        assert obs[25] == 0.0
        assert not robot.client.getContactPoints(bodyA=robot.body, linkIndexA=link)


def test_lock_keeps_the_joint_still():
    def max_speed(damages):
        env = sim.make("ant-bullet", damages)
        env.reset(seed=0)
        robot, rng = env.unwrapped, np.random.default_rng(0)
        index = robot.joint_ids[JOINTS.index("hip_3")]
        speeds = []
        for _ in range(100):
            env.step(rng.uniform(-1, 1, 8))
            speeds.append(abs(robot.client.getJointState(robot.body, index)[1]))
        return max(speeds)

    assert max_speed(["lock:hip_3"]) < 0.3 and max_speed([]) > 3.0


@pytest.mark.parametrize("fraction", [0.0, 0.3])
def test_weaken_scales_the_torque(fraction):
    """In the air, one tick of torque on hip_1 alone changes its speed in proportion to the torque."""

    def kick(damages):
        env = sim.make("ant-bullet", damages)
        env.reset(seed=0)
        into_the_air(env)
        robot = env.unwrapped
        action = np.zeros(8)
        action[JOINTS.index("hip_1")] = 1.0
        env.step(action)
        return robot.client.getJointState(robot.body, robot.joint_ids[0])[1]

    assert kick([f"weaken:hip_1:{fraction}"]) == pytest.approx(fraction * kick([]), rel=0.02, abs=1e-3)


def test_midrun_shorten_keeps_the_state():
    env = sim.make("ant-bullet", ["shorten-leg:2:0.5@0.33"])  # dt 0.0165 s: tick 20
    env.reset(seed=0)
    robot = env.unwrapped
    for _ in range(20):
        env.step(np.zeros(8))
    before = robot.client.getBasePositionAndOrientation(robot.body)[0]
    length = segment_length(env, 2)
    _, _, _, _, info = env.step(np.zeros(8))
    assert info["damage"] == ["shorten-leg:2:0.5@0.33"]
    assert segment_length(env, 2) == pytest.approx(0.5 * length)
    after = robot.client.getBasePositionAndOrientation(robot.body)[0]
    assert np.abs(np.subtract(after, before)).max() < 0.05  # no jump at the rebuild
    env.reset(seed=0)
    assert segment_length(env, 2) == pytest.approx(length)  # reset restores the intact body


def test_render_draws_the_ant():
    env = AntBulletEnv(render_mode="rgb_array", width=64, height=48)
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (48, 64, 3) and frame.dtype == np.uint8 and frame.std() > 1.0
