"""The servo quadruped: a valid environment, servos that behave like hobby servos, a hobby robot's senses."""

from __future__ import annotations

import csv
import math
import re
import signal
from pathlib import Path

import mujoco
import numpy as np
import pytest
from conftest import still_genome
from gymnasium.utils.env_checker import check_env
from test_bridge_serial import Process

import sim
from controller.cli import main as controller
from firmware_bridge.protocol import State
from firmware_bridge.robot import Adapter, gravity_direction, load_robot
from sim.mujoco_quadruped import leg_geom
from sim.servo_quad import AMPLITUDE, JOINTS, SERVO

ROOT = Path(__file__).resolve().parents[1]
HIP_1 = JOINTS.index("hip_1")


@pytest.mark.parametrize(
    "damage", [[], ["cut-leg:1", "lock:knee_2", "weaken:hip_3:0.5", "latency:2", "obs-noise:0.01"]]
)
def test_check_env(damage):
    check_env(sim.make("servo-quad", damage), skip_render_check=True)


def test_body_and_interface():
    env = sim.make("servo-quad")
    robot = env.unwrapped
    assert robot.total_mass() == pytest.approx(0.29, abs=1e-3)
    assert robot.dt == pytest.approx(0.02)
    assert robot.joints == JOINTS and robot.legs == (1, 2, 3, 4)
    model = robot.model
    assert [model.actuator(i).name for i in range(model.nu)] == list(JOINTS)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (17,) and env.action_space.shape == (8,)
    assert obs[6] == 0.0  # the heading counts from the reset pose
    assert obs[15:] == pytest.approx([0.0, 1.0])  # the gait clock starts at phase 0
    for _ in range(5):
        obs = env.step(np.zeros(8))[0]
    assert obs[15:] == pytest.approx([np.sin(2 * np.pi * 0.2), np.cos(2 * np.pi * 0.2)])  # 2 Hz, 5 ticks


def floating(latency: float | None = None):
    """The robot in the air without gravity, joints at rest at 0: only its servos move it."""
    env = sim.make("servo-quad", reset_noise_scale=0.0)
    env.reset(seed=0)
    robot = env.unwrapped
    robot.model.opt.gravity[:] = 0.0
    robot.data.qpos[2] = 1.0
    mujoco.mj_forward(robot.model, robot.data)
    if latency is not None:
        robot.servos.latency = latency
    return robot


def step_response(robot, target: float, steps: int):
    """Command hip_1 to ``target``; its angle, speed and servo torque at every physics step after."""
    command = np.zeros(8)
    command[HIP_1] = target
    sent = robot.data.time
    robot.command(command)
    dof = robot.model.joint("hip_1").dofadr[0]
    rows = []
    for _ in range(steps):
        start = robot.data.time - sent
        robot.physics_step()
        data = robot.data
        rows.append((start, data.qpos[robot._qpos_adr[HIP_1]], data.qvel[dof], data.actuator_force[HIP_1]))
    # per physics step: its start (s after sending), then angle (rad), speed (rad/s) at its end, torque (N m)
    return np.array(rows)


def test_a_step_target_is_reached_no_faster_than_the_speed_limit():
    robot = floating(latency=0.0)
    response = step_response(robot, AMPLITUDE, 300)
    time, angle, speed = response[:, 0], response[:, 1], response[:, 2]
    assert np.abs(speed).max() <= SERVO.no_load_speed * 1.001
    reached = np.flatnonzero(np.abs(angle - AMPLITUDE) < SERVO.dead_band)
    assert reached.size, "the servo never reached its target"
    assert time[reached[0]] >= AMPLITUDE / SERVO.no_load_speed


def test_torque_saturates_at_the_stall_torque():
    robot = floating(latency=0.0)
    torque = step_response(robot, AMPLITUDE, 100)[:, 3]
    assert np.abs(torque).max() <= SERVO.stall_torque + 1e-12
    assert torque[0] == pytest.approx(SERVO.stall_torque, rel=1e-3)  # full error, at rest: stall
    weak = floating(latency=0.0)
    weak.servos.strength[:] = 0.5
    assert np.abs(step_response(weak, AMPLITUDE, 100)[:, 3]).max() == pytest.approx(0.5 * SERVO.stall_torque)


@pytest.mark.parametrize("latency", [SERVO.latency, 0.03])
def test_commands_take_effect_after_the_latency(latency):
    robot = floating(latency=latency)
    response = step_response(robot, 0.3, 40)
    acting = np.flatnonzero(response[:, 3] != 0.0)
    first = response[acting[0], 0]  # time (after sending) of the first step the servo drives
    step = robot.model.opt.timestep
    assert latency <= first + 1e-9 < latency + step + 1e-9
    assert np.all(response[: acting[0], 1] == 0.0)  # nothing moved before


def test_errors_inside_the_dead_band_are_not_driven():
    robot = floating(latency=0.0)
    assert not np.any(step_response(robot, 0.5 * SERVO.dead_band, 20)[:, 3])
    assert np.any(step_response(robot, 2.0 * SERVO.dead_band, 20)[:, 3])


def test_observation_is_what_the_robot_senses():
    env = sim.make("servo-quad")
    obs, _ = env.reset(seed=0)
    assert obs[:3] == pytest.approx([0.0, 0.0, -1.0], abs=0.05)  # standing level
    action = np.linspace(-1.0, 1.0, 8)
    obs, *_ = env.step(action)
    assert obs[7:15] == pytest.approx(AMPLITUDE * action)  # the commanded angles
    assert np.linalg.norm(obs[:3]) == pytest.approx(1.0)
    # no global position: move the whole robot and turn it, only the heading changes, by the turn
    robot = env.unwrapped
    before = robot._obs()
    robot.data.qpos[0:2] += (3.0, -2.0)
    robot.data.qpos[3:7] = _turned(robot.data.qpos[3:7].copy(), 40.0)
    mujoco.mj_forward(robot.model, robot.data)
    after = robot._obs()
    assert after[6] - before[6] == pytest.approx(math.radians(40.0))
    assert np.delete(after, 6) == pytest.approx(np.delete(before, 6))


def test_the_stock_firmware_variant_ticks_slower_steps_whole_degrees_and_senses_no_yaw():
    """servo-quad-opencat: what Petoi's stock firmware can deliver (docs/robots.md)."""
    env = sim.make("servo-quad-opencat")
    env.reset(seed=0)
    robot = env.unwrapped
    assert robot.dt == pytest.approx(0.046)
    for _ in range(3):  # a full-range command arrives 5 degrees a tick, in whole degrees
        obs, *_ = env.step(np.array([1.0, -1.0, 0.3, 0.0, 1.0, 1.0, 1.0, 1.0]))
    assert np.degrees(obs[7:15]) == pytest.approx([15, -15, 12, 0, 15, 15, 15, 15])
    obs, *_ = env.step(np.full(8, 0.0123))
    assert np.degrees(obs[7:15]) == pytest.approx(np.round(np.degrees(obs[7:15])))
    # no yaw: turning the robot changes neither the heading nor the yaw rate it reads
    before = robot._obs()
    robot.data.qpos[3:7] = _turned(robot.data.qpos[3:7].copy(), 40.0)
    robot.data.qvel[5] = 2.0
    mujoco.mj_forward(robot.model, robot.data)
    after = robot._obs()
    assert after[5] == after[6] == before[6] == 0.0
    assert after[:3] == pytest.approx(before[:3])


def trot(env, ticks: int, seed: int = 0) -> tuple[float, bool]:
    """A hand-written trot (diagonal legs together, knees a quarter cycle behind the hips), 2.5 Hz,
    0.4 of the action range."""
    _, info = env.reset(seed=seed)
    for _ in range(env.unwrapped.settle_ticks):
        env.step(np.zeros(8))
    phase = np.repeat([0.0, np.pi, 0.0, np.pi], 2) + np.tile([0.0, np.pi / 2], 4)
    for tick in range(ticks):
        _, _, terminated, _, info = env.step(0.4 * np.sin(2 * np.pi * 2.5 * tick * env.unwrapped.dt + phase))
        if terminated:
            return info["x_distance"], True
    return info["x_distance"], False


def test_the_model_walks_with_a_hand_written_trot():
    distance, fell = trot(sim.make("servo-quad"), 500)
    assert not fell and distance > 1.5  # m in 10 s


def test_tipping_over_ends_the_lifetime():
    env = sim.make("servo-quad")
    env.reset(seed=0)
    robot = env.unwrapped
    robot.data.qpos[3:7] = [np.cos(0.6), np.sin(0.6), 0.0, 0.0]  # rolled 69 degrees
    robot.data.qpos[2] = 0.2
    assert env.step(np.zeros(8))[2]


def test_cut_leg_removes_the_segment_and_its_contacts():
    env = sim.make("servo-quad", ["cut-leg:2"])
    env.reset(seed=0)
    robot = env.unwrapped
    assert robot.total_mass() == pytest.approx(0.29 - 0.008, abs=1e-4)
    gid = robot.model.geom(leg_geom(2)).id
    for _ in range(100):
        env.step(np.zeros(8))
        contact = robot.data.contact[: robot.data.ncon]
        assert gid not in contact.geom1 and gid not in contact.geom2


def test_controller_runs_the_robot_with_a_leg_cut(capsys):
    assert controller(["--sim", "servo-quad", "--cut-leg", "2", "--steps", "50"]) == 0
    out = capsys.readouterr().out
    assert "damage: cut-leg:2" in out and "control period 20 ms" in out


def test_the_bridge_computes_the_same_gravity_direction_as_the_simulator():
    env = sim.make("servo-quad")
    env.reset(seed=0)
    robot = env.unwrapped
    robot.data.qpos[3:7] = [0.9, 0.2, -0.3, 0.25]
    robot.data.qpos[3:7] /= np.linalg.norm(robot.data.qpos[3:7])
    assert gravity_direction(tuple(robot.data.qpos[3:7])) == pytest.approx(robot.gravity())
    config = load_robot("servo-quad")
    assert config.obs_size == env.observation_space.shape[0] and config.joints == JOINTS


def _turned(quaternion: np.ndarray, degrees: float) -> np.ndarray:
    """The orientation ``quaternion`` (w, x, y, z), then turned about the world's vertical."""
    half = math.radians(degrees) / 2
    turned = np.empty(4)
    mujoco.mju_mulQuat(turned, np.array([math.cos(half), 0.0, 0.0, math.sin(half)]), quaternion)
    return turned


@pytest.mark.parametrize("degrees", [30.0, -100.0, 179.0, 181.0])
def test_heading_is_the_yaw_turned_since_the_start_in_the_simulator_and_on_the_bridge(degrees):
    """Observation [6]: how far the body has turned left since the lifetime began, wrapped to [-pi, pi],
    whatever it is tilted by; the deploy adapter reads the same from STATE's quaternion, counted from the
    first observation rather than from a known reset pose."""
    env = sim.make("servo-quad")
    env.reset(seed=0)
    robot = env.unwrapped
    tilted = np.array([0.97, 0.12, -0.2, 0.0]) / np.linalg.norm([0.97, 0.12, -0.2, 0.0])
    robot.data.qpos[3:7] = tilted
    tilted_heading = robot.heading()
    robot.data.qpos[3:7] = _turned(tilted, degrees)
    expected = math.remainder(math.radians(degrees), 2 * math.pi)
    assert math.remainder(robot.heading() - tilted_heading, 2 * math.pi) == pytest.approx(expected)
    assert robot._obs()[6] == robot.heading() and abs(robot.heading()) <= math.pi

    adapter = Adapter(load_robot("servo-quad"))
    start = _turned(tilted, 75.0)  # the robot starts facing wherever it stands

    def observe(quaternion: np.ndarray) -> float:
        state = State(0, 0, 0, 0, (0.0,) * 8, (0.0,) * 8, tuple(quaternion), (0.0,) * 3, 0, 0)
        return float(adapter.observation(state)[6])

    assert observe(start) == 0.0
    assert observe(_turned(start, degrees)) == pytest.approx(expected)


def test_emulated_robot_runs_a_genome_over_serial_with_the_deploy_profile(tmp_path):
    """Done-when: firmware-bridge emulate --robot servo-quad, then
    controller --serial PORT --config launch/deploy/servo_quad.yaml, end to end."""
    emulator = Process("firmware_bridge.cli", "emulate", "--robot", "servo-quad")
    port = re.search(r"on (/dev/\S+)", emulator.wait_for(r"on /dev/")).group(1)
    log = tmp_path / "run.csv"
    profile = str(ROOT / "launch" / "deploy" / "servo_quad.yaml")
    genome = str(still_genome(tmp_path / "still.npz"))
    args = ("--serial", port, "--config", profile, "--genome", genome, "--duration", "2", "--log", str(log))
    rc, stdout, stderr = Process("controller.cli", *args).finish()
    emulator_rc, _, emulator_err = emulator.finish(signal.SIGTERM)
    assert rc == 0, stderr
    assert emulator_rc == 0, emulator_err
    assert "control at 50 Hz for 2 s" in stdout  # the profile's rate
    assert "stopped: duration reached (2 s); SAFE_POSE sent" in stdout
    assert "crc errors 0, rejected frames 0, dropped 0" in stdout
    with log.open() as f:
        rows = list(csv.DictReader(f))
    assert f"{len(rows)} commands applied" in emulator.wait_for("emulator stopped after")
    run = [r for r in rows if r["phase"] == "run"]
    assert run and {r["phase"] for r in rows} == {"ramp", "run"}
    obs = np.array([[float(r[f"obs_{i}"]) for i in range(17)] for r in run])
    sent = np.array([[float(r[f"command_{i}"]) for i in range(8)] for r in run])
    assert np.allclose(obs[:, :3], [0.0, 0.0, -1.0], atol=0.05)  # standing, from the IMU
    assert np.allclose(obs[:, 6], 0.0, atol=0.02)  # standing still: it has not turned
    assert np.allclose(obs[1:, 7:15], sent[:-1], atol=1e-6)  # each tick sees the last command it sent
    # the gait clock turns 0.04 cycles (2 Hz at 50 Hz) per tick on the host, as in the simulator
    phase = np.unwrap(np.arctan2(obs[:, 15], obs[:, 16]))
    assert np.allclose(np.diff(phase), 2 * np.pi * 0.04, atol=1e-4)


@pytest.mark.parametrize(
    ("profile", "message"),
    [
        ("robot: servo-quad\n", "missing key 'rate'"),
        ("robot: servo-quad\nrate: 50\nspeed: 2\n", "unknown keys ['speed']"),
        ("robot: servo-quad\nrate: -5\n", "rate must be a positive number"),
        ("robot: [servo-quad]\nrate: 50\n", "robot must be a name or a path"),
    ],
)
def test_a_bad_deploy_profile_is_a_one_line_error(profile, message, tmp_path, capsys):
    path = tmp_path / "profile.yaml"
    path.write_text(profile)
    assert controller(["--serial", "/dev/null-robot", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err


def test_flags_win_over_the_deploy_profile(capsys):
    profile = str(ROOT / "launch" / "deploy" / "servo_quad.yaml")
    assert controller(["--serial", "/dev/null-robot", "--config", profile, "--rate", "0"]) == 2
    assert "--rate and --duration must be positive" in capsys.readouterr().err
