"""The stock-OpenCat adapter against an emulator of OpenCat's serial protocol, on real pseudo-terminals."""

from __future__ import annotations

import csv
import math
import os
import re
import signal
import struct
import threading
from pathlib import Path

import mujoco
import numpy as np
import pytest
from conftest import still_genome
from test_bridge_serial import Process

import sim
from controller.cli import main as controller
from firmware_bridge.emulator import open_pty, serve
from firmware_bridge.errors import ConfigError, LinkError
from firmware_bridge.faults import FaultSpec
from firmware_bridge.opencat import (
    MAX_DEGREES,
    OpenCatLink,
    body_rates,
    indexed_command,
    quaternion_from_zyx,
    slot,
    zyx_from_opencat,
)
from firmware_bridge.opencat_emulator import LIMITS, NEUTRAL_DEGREES, UNTIMED, OpenCatFirmware, opencat_ypr
from firmware_bridge.protocol import POSITION, Command, SafePose
from firmware_bridge.robot import gravity_direction, load_robot, yaw_angle
from firmware_bridge.servo_body import ServoQuadBody
from sim.servo_quad import JOINTS

ROOT = Path(__file__).resolve().parents[1]
PROFILE = str(ROOT / "launch" / "deploy" / "servo_quad_opencat.yaml")


def test_joint_slots_follow_opencats_index():
    """Hips in 8-11 and knees in 12-15, each group front-left, front-right, back-right, back-left."""
    assert [slot(j) for j in JOINTS] == [8, 12, 11, 15, 10, 14, 9, 13]
    with pytest.raises(ConfigError, match="hip_1..hip_4"):
        slot("ankle_1")
    frame = indexed_command([8, 12], np.array([-30.0, 125.0]))
    assert frame == b"I" + struct.pack("4b", 8, -30, 12, 125) + b"~"


# --- the emulated firmware, byte by byte ------------------------------------------------------------
@pytest.fixture(scope="module")
def body():
    return ServoQuadBody(seed=0)


def lines(replies: list[bytes]) -> list[str]:
    return b"".join(replies).decode().split("\r\n")[:-1]


def booted(body) -> OpenCatFirmware:
    """The firmware after its boot lines and first rest, at t = 1 s (the adapter's legacy ypr build)."""
    firmware = OpenCatFirmware(body, "ypr", UNTIMED)
    assert lines(firmware.receive(b"", 0.0))[-2:] == ["g", "d"]
    return firmware


def test_emulated_firmware_answers_as_opencat_documents(body):
    firmware = booted(body)
    assert lines(firmware.receive(b"?\n", 1.0)) == ["G", "Bittle", "N_250224", "?"]
    table = lines(firmware.receive(b"j\n", 1.01))
    assert table[0].startswith("=0\t1\t2") and table[-1] == "j"
    assert [int(v) for v in table[1].split(",\t")[:-1]] == firmware.angles.tolist()
    assert lines(firmware.receive(indexed_command([8, 12], np.array([10.0, -20.0])), 1.02)) == ["I"]
    assert firmware.angles[8] == 10 and firmware.angles[12] == -20
    reading = lines(firmware.receive(b"v\n", 1.03))
    assert len(reading) == 2 and reading[1] == "v" and len(reading[0].split("\t")) == 3
    assert lines(firmware.receive(b"d\n", 1.04)) == ["g", "d"]  # rest, then servos off
    firmware.control(1.04)
    assert body.robot.servos.limp


def test_emulated_firmware_reads_like_the_real_one(body):
    firmware = booted(body)
    assert firmware.receive(b"v", 1.0) == []  # no newline yet: the firmware waits up to 5 ms
    assert lines(firmware.receive(b"", 1.01))[-1] == "v"
    # a second command already waiting when a token is read becomes part of the first: swallowed
    before = firmware.angles.copy()
    swallowed = firmware.receive(b"v\n" + indexed_command([8], np.array([40.0])), 1.02)
    swallowed += firmware.receive(b"", 1.03)
    assert lines(swallowed)[-1] == "v" and "I" not in lines(swallowed)
    assert np.array_equal(firmware.angles, before)


def test_the_imu_reading_gives_the_simulators_gravity_yaw_and_rates():
    """The firmware's DMP formulas (emulator) and the link's inverse agree with the simulated body."""
    env = sim.make("servo-quad")
    env.reset(seed=1)
    robot = env.unwrapped
    robot.data.qvel[3:6] = [0.8, -0.5, 1.2]  # tumbling in the air
    robot.data.qpos[2] = 1.0
    robot.data.qpos[3:7] = [0.8, 0.1, -0.2, 0.55]  # turned left about 70 degrees, tilted 25
    robot.data.qpos[3:7] /= np.linalg.norm(robot.data.qpos[3:7])
    robot.model.opt.gravity[:] = 0.0
    dt = robot.model.opt.timestep
    readings = []
    for _ in range(2):
        q = robot.data.qpos[3:7].copy()
        zyx = zyx_from_opencat(*np.radians(opencat_ypr(q)))
        assert gravity_direction(quaternion_from_zyx(zyx)) == pytest.approx(robot.gravity(), abs=1e-9)
        # the DMP's yaw formula is the yaw of the inverse rotation, negated: the same as the body's
        # when it stands level, 1.6 degrees off here, tilted 25 degrees (second order in the tilt)
        assert yaw_angle(quaternion_from_zyx(zyx)) == pytest.approx(robot.yaw(), abs=0.03)
        readings.append(zyx)
        mujoco.mj_step(robot.model, robot.data)
    assert body_rates(readings[0], readings[1], dt) == pytest.approx(robot.data.qvel[3:6], abs=0.01)


# --- the link against the emulator over a pty -------------------------------------------------------
class EmulatedRobot:
    """The OpenCat emulator served in real time on a pty, in a thread of the test process."""

    def __init__(self, silent: bool = False, boot_s: float = 0.0) -> None:
        self.firmware = OpenCatFirmware(ServoQuadBody(seed=0), "ypr", UNTIMED, silent, boot_s)
        self.master, self.slave, self.path = open_pty()
        self.done = False
        self.thread = threading.Thread(
            target=serve, args=(self.master, self.firmware, FaultSpec(), 0, lambda: self.done), daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.done = True
        self.thread.join(timeout=10)


@pytest.fixture
def robot():
    emulated = EmulatedRobot(boot_s=0.5)  # deaf while it boots, as a board reset by the port opening
    yield emulated
    emulated.close()


def test_link_handshake_reading_and_command(robot):
    with OpenCatLink.open(robot.path, JOINTS) as link:
        info = link.handshake(timeout=5.0)
        assert robot.firmware.rx_errors > 0  # '?' sent while it booted went unheard, and was sent again
        assert info.robot_name == "Bittle" and info.control_mode == POSITION and info.n_feet == 0
        assert info.joint_names == JOINTS and info.joint_upper[0] == pytest.approx(math.radians(MAX_DEGREES))
        rest = robot.firmware.angles[[slot(j) for j in JOINTS]]
        assert link.commanded == pytest.approx(np.radians(rest))  # from 'j'
        assert link.poll() and link.latest_state is not None
        state = link.latest_state.message
        # limp in the rest posture after boot (the firmware shuts the servos): about 8 degrees nose down
        assert gravity_direction(state.quaternion) == pytest.approx([0.0, 0.0, -1.0], abs=0.2)
        targets = np.radians(np.linspace(-40.0, 40.0, 8)) + np.radians(0.3)  # not whole degrees
        link.send(Command(0, tuple(targets)))
        link.poll()  # waits for the command's confirmation, then reads the IMU
        sent = np.round(np.degrees(targets))
        assert robot.firmware.angles[[slot(j) for j in JOINTS]].tolist() == sent.tolist()
        assert link.latest_state.message.joint_pos == pytest.approx(np.radians(sent))  # what was commanded
        link.send(Command(0, (3.0,) * 8))  # beyond the servos' travel: clamped, never the '~' byte
        link.poll()
        assert robot.firmware.angles[8] == LIMITS[8][1]  # and the firmware holds slot 8 to its own 80
        link.send(SafePose(0))
        link.poll()
        assert robot.firmware.counters.safe_pose_requests == 1
        assert link.counters.dropped == 0 and len(link.ping(3)) == 3


def test_a_robot_that_answers_nothing_is_a_link_error():
    silent = EmulatedRobot(silent=True)
    try:
        with OpenCatLink.open(silent.path, JOINTS) as link, pytest.raises(LinkError, match="no answer"):
            link.handshake(timeout=0.5)
    finally:
        silent.close()
    assert silent.firmware.rx_errors > 0  # it was sent '?' and said nothing


def test_controller_on_a_silent_robot_exits_2_with_one_line(capsys):
    master, slave, path = open_pty()  # a port whose robot never answers
    try:
        assert controller(["--serial", path, "--config", PROFILE, "--connect-timeout", "0.5"]) == 2
    finally:
        os.close(master)
        os.close(slave)
    err = capsys.readouterr().err
    assert err.startswith("error: no answer from the OpenCat robot") and err.count("\n") == 1, err


def test_controller_drives_the_emulated_opencat_robot_end_to_end(tmp_path):
    emulator = Process("firmware_bridge.opencat_emulator", "--build", "ypr", "--untimed")
    port = re.search(r"on (/dev/\S+)", emulator.wait_for(r"on /dev/")).group(1)
    log = tmp_path / "run.csv"
    genome = str(still_genome(tmp_path / "still.npz"))
    args = ("--serial", port, "--config", PROFILE, "--genome", genome, "--duration", "2", "--log", str(log))
    rc, stdout, stderr = Process("controller.cli", *args).finish()
    emulator_rc, _, emulator_err = emulator.finish(signal.SIGTERM)
    assert rc == 0, stderr
    assert emulator_rc == 0, emulator_err
    assert "robot Bittle on" in stdout and "stopped: duration reached (2 s); SAFE_POSE sent" in stdout
    assert "dropped 0" in stdout
    summary = emulator.wait_for("emulator stopped after")
    with log.open() as f:
        rows = list(csv.DictReader(f))
    assert f"{len(rows)} joint commands" in summary and ", 1 rest;" in summary
    run = [r for r in rows if r["phase"] == "run"]
    obs = np.array([[float(r[f"obs_{i}"]) for i in range(17)] for r in run])
    sent = np.array([[float(r[f"command_{i}"]) for i in range(8)] for r in run])
    assert np.allclose(obs[:, :3], [0.0, 0.0, -1.0], atol=0.05)  # standing level, from 'v'
    assert np.allclose(obs[:, 6], 0.0, atol=0.02)  # and not turning: the heading from 'v''s yaw
    # each tick sees the last command as the robot got it (whole degrees), in the genome's convention
    calibration = load_robot("servo-quad-opencat").calibration
    offset, sign = np.array([c.offset for c in calibration]), np.array([c.sign for c in calibration])
    commanded = np.radians(np.round(np.degrees(sent[:-1])))
    assert np.allclose(obs[1:, 7:15], sign * (commanded - offset), atol=1e-4)  # the log keeps 5 digits
    assert offset == pytest.approx(math.radians(NEUTRAL_DEGREES), abs=1e-4)  # the emulated Bittle's
