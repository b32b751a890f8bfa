"""The stock-OpenCat adapter against an emulator of OpenCat's serial protocol, on real pseudo-terminals."""

from __future__ import annotations

import csv
import math
import os
import re
import signal
import struct
import threading
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import mujoco
import numpy as np
import pytest
from test_bridge_serial import Process

import sim
from controller.cli import main as controller
from controller.genome import Genome, save_genome
from controller.network import NetworkSpec
from firmware_bridge import opencat_emulator
from firmware_bridge.emulator import open_pty, serve
from firmware_bridge.errors import ConfigError, LinkError
from firmware_bridge.faults import FaultSpec
from firmware_bridge.opencat import (
    LAYOUTS,
    STEP_DEGREES,
    OpenCatLink,
    OpenCatPollLink,
    body_rates,
    columns,
    indexed_command,
    quaternion_from_zyx,
    slot,
    slot_range,
    zyx_from_opencat,
)
from firmware_bridge.opencat_emulator import LIMITS, NEUTRAL_DEGREES, UNTIMED, OpenCatFirmware, opencat_ypr
from firmware_bridge.protocol import CAP_NO_YAW, FAULT_IMU, POSITION, Command, Estop, SafePose
from firmware_bridge.robot import LINKS, Adapter, gravity_direction, load_robot, yaw_angle
from firmware_bridge.servo_body import ServoQuadBody
from sim.servo_quad import JOINTS, ServoQuadOpenCatEnv

ROOT = Path(__file__).resolve().parents[1]
PROFILE = str(ROOT / "launch" / "deploy" / "servo_quad_opencat.yaml")


def test_joint_slots_follow_opencats_index():
    """Hips in 8-11 and knees in 12-15, each group front-left, front-right, back-right, back-left."""
    assert [slot(j) for j in JOINTS] == [8, 12, 11, 15, 10, 14, 9, 13]
    with pytest.raises(ConfigError, match="hip_1..hip_4"):
        slot("ankle_1")
    frame = indexed_command([8, 12], np.array([-30.0, 125.0]))
    assert frame == b"I" + struct.pack("4b", 8, -30, 12, 125) + b"~"


def test_each_slot_is_limited_to_the_firmwares_own_range():
    """Bittle's angleLimit (src/OpenCat.h): front hips [-200, 80], the other leg slots [-80, 200], inside
    the byte's +-125 (126 is the terminator)."""
    assert [slot_range(s) for s in (8, 9)] == [(-125, 80)] * 2
    assert [slot_range(s) for s in range(10, 16)] == [(-80, 125)] * 6
    assert all(LIMITS[s][0] <= slot_range(s)[0] and slot_range(s)[1] <= LIMITS[s][1] for s in range(8, 16))


@pytest.mark.parametrize(
    "line, shape",
    [
        (b"-12.34568\t0.50000", (2, 0)),  # default
        (b"-12.34568\t0.50000\t-1\t250\t-8192", (2, 3)),  # READ_ACCELERATION
        (b"3.00000\t-12.34568\t0.50000", (3, 0)),  # before June 2023
        (b"nan\tnan", (2, 0)),  # the DMP gave no angle: still the default build's line
        (b"0.1\t2\t3\t4\t5\t6\t7", (1, 6)),  # read, but no build prints it
        (b"0.1\t2.0\t3\t4.0", (2, -1)),
        (b"3\t0.5\t0.1", (0, -1)),  # an integer first: a reading, of no build
        (b"0\t1\t2\t3", None),  # the 'j' table's head row: no angle column
        (b"75,\t75,", None),
        (b"Bittle", None),
        (b"v", None),
    ],
)
def test_imu_line_columns(line, shape):
    assert columns(line) == shape
    assert shape is None or (shape in LAYOUTS) == (shape[1] in (0, 3) and shape[0] in (2, 3))


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


def test_without_yaw_the_reading_still_gives_the_simulators_gravity_and_x_y_rates():
    """The current firmware prints pitch and roll only: gravity is exact, the x and y body rates are
    close while the body turns little about its own z axis (the task's yaw rate input is 0)."""
    env = sim.make("servo-quad-opencat")
    env.reset(seed=2)
    robot = env.unwrapped
    robot.model.opt.gravity[:] = 0.0
    robot.data.qpos[2] = 1.0
    robot.data.qpos[3:7] = [0.98, 0.08, -0.12, 0.3]  # nose up, rolled, turned: yaw plays no part
    robot.data.qpos[3:7] /= np.linalg.norm(robot.data.qpos[3:7])
    robot.data.qvel[3:6] = [0.9, -0.6, 0.0]
    dt = robot.model.opt.timestep
    readings = []
    for _ in range(2):
        _, pitch, roll = opencat_ypr(robot.data.qpos[3:7].copy())
        zyx = zyx_from_opencat(0.0, *np.radians([pitch, roll]))
        assert gravity_direction(quaternion_from_zyx(zyx)) == pytest.approx(robot.gravity(), abs=1e-9)
        readings.append(zyx)
        mujoco.mj_step(robot.model, robot.data)
    rates = body_rates(readings[0], readings[1], dt)
    assert rates[:2] == pytest.approx(robot.data.qvel[3:5], abs=0.1)


# --- the link against the emulator over a pty -------------------------------------------------------
class EmulatedRobot:
    """The OpenCat emulator served in real time on a pty, in a thread of the test process."""

    def __init__(self, build: str = "default", silent: bool = False, boot_s: float = 0.0) -> None:
        self.firmware = OpenCatFirmware(ServoQuadBody(seed=0), build, UNTIMED, silent, boot_s)
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


@pytest.mark.parametrize(("build", "yaw"), [("default", False), ("ypr", True)])
def test_a_config_that_observes_yaw_is_refused_on_a_build_that_prints_none(build, yaw):
    """Since May 2023 ``v`` prints pitch and roll only: the heading, the quaternion's yaw and the gyro's z
    would read 0 forever. The link says so in INFO (no-yaw capability) and the config check refuses, in
    one line naming the blocks and the fix; a build that prints yaw is accepted."""
    emulated = EmulatedRobot(build)
    try:
        with OpenCatLink.open(emulated.path, JOINTS) as link:
            info = link.handshake(timeout=5.0)
    finally:
        emulated.close()
    assert bool(info.capabilities & CAP_NO_YAW) is not yaw
    stock = load_robot("servo-quad-opencat")
    stock.check_info(info)  # its blocks need no yaw
    yawed = replace(stock, observation=(("gravity", 1.0), ("angular_velocity", 0.1), ("heading", 1.0)))
    if yaw:
        yawed.check_info(info)
        return
    with pytest.raises(ConfigError) as refused:
        yawed.check_info(info)
    message = str(refused.value)
    assert "observes angular_velocity, heading, which need the IMU's yaw" in message
    assert "angular_velocity_no_yaw and no_heading instead" in message and "\n" not in message


def wait_for_readings(link: OpenCatLink, count: int = 3, timeout: float = 2.0) -> list:
    """Poll until ``count`` readings have come."""
    readings: list = []
    deadline = time.monotonic() + timeout
    while len(readings) < count and time.monotonic() < deadline:
        readings += link.poll()
        link.wait(0.005)
    assert len(readings) >= count, readings
    return readings


def test_link_handshake_stream_and_command_on_the_default_build(robot):
    firmware = robot.firmware
    with OpenCatLink.open(robot.path, JOINTS) as link:
        info = link.handshake(timeout=5.0)
        assert firmware.rx_errors > 0  # '?' sent while it booted went unheard, and was sent again
        assert info.robot_name == "Bittle" and info.control_mode == POSITION and info.n_feet == 0
        assert info.joint_names == JOINTS
        ranges = np.radians([slot_range(slot(j)) for j in JOINTS])
        assert info.joint_lower == pytest.approx(ranges[:, 0]) and info.joint_upper == pytest.approx(
            ranges[:, 1]
        )
        assert link.layout is LAYOUTS[(2, 0)] and not link.layout.yaw
        assert firmware.print_gyro  # 'V': the firmware prints every reading itself
        assert firmware.beeps == 5  # the boot's rest, then '?', 'j', 'v', 'V': no more from here on
        rest = firmware.angles[[slot(j) for j in JOINTS]]
        assert link.commanded == pytest.approx(np.radians(rest))  # from 'j'
        # the readings stream in: polling sends nothing, so nothing beeps
        tx, beeps = link.counters.bytes_tx, firmware.beeps
        readings = wait_for_readings(link, 5)
        assert link.counters.bytes_tx == tx and firmware.beeps == beeps
        state = readings[-1].message
        # limp and still settling in the rest posture after boot, a reading at most 10-20 ms old
        assert gravity_direction(state.quaternion) == pytest.approx(firmware.body.robot.gravity(), abs=0.06)
        assert yaw_angle(state.quaternion) == pytest.approx(0.0, abs=1e-12) and state.gyro[2] == 0.0
        # each command moves at most 5 degrees from the last one sent, in whole degrees
        before = link.sent.copy()
        targets = np.radians(before + np.linspace(-20.0, 20.0, 8) + 0.3)
        link.send(Command(0, tuple(targets)))
        link.poll()
        sent = before + np.clip(np.round(np.linspace(-20.0, 20.0, 8) + 0.3), -STEP_DEGREES, STEP_DEGREES)
        sent = np.clip(sent, link.lower, link.upper)  # a front hip resting near 80 stops there
        assert link.sent.tolist() == sent.tolist()
        wait_for_readings(link, 1)  # the command is confirmed before the next is sent
        link._settle(time.monotonic() + 1.0)
        assert firmware.angles[[slot(j) for j in JOINTS]].tolist() == sent.tolist()
        assert link.latest_state.message.joint_pos == pytest.approx(np.radians(sent))  # what was commanded
        assert firmware.beeps == beeps  # 'I' does not beep
        assert link.counters.dropped == 0 and len(link.ping(3)) == 3 and firmware.beeps == beeps  # 'I~'


def test_a_stream_left_on_is_read_through_and_turned_on_again():
    """A board that was not reset since an earlier session: its readings stream into every answer of the
    handshake, and 'V' first turns the stream off (answered 'v'): the link sends it again."""
    emulated = EmulatedRobot()
    emulated.firmware.print_gyro = True
    try:
        with OpenCatLink.open(emulated.path, JOINTS) as link:
            info = link.handshake(timeout=5.0)
            assert info.robot_name == "Bittle" and link.layout is LAYOUTS[(2, 0)]
            assert emulated.firmware.print_gyro and link.counters.rejected["imu"] == 0
            assert emulated.firmware.beeps == 6  # the rest, ?, j, v, V (off), V (on)
            wait_for_readings(link, 3)
    finally:
        emulated.close()


def test_link_clamps_each_slot_to_the_firmwares_range(robot):
    with OpenCatLink.open(robot.path, JOINTS) as link:
        link.handshake(timeout=5.0)
        for targets in (3.0, -3.0):  # beyond every slot's range, 5 degrees a command
            for _ in range(80):
                link.send(Command(0, (targets,) * 8))
            link._settle(time.monotonic() + 1.0)
            expected = [slot_range(slot(j))[int(targets > 0)] for j in JOINTS]
            assert link.sent.tolist() == expected  # front hips stop at 80 and -125, the rest at 125 and -80
            assert robot.firmware.angles[[slot(j) for j in JOINTS]].tolist() == expected
        assert link.counters.dropped == 0


def test_estop_is_p_servos_off_at_once_and_safe_pose_is_d(robot):
    firmware = robot.firmware
    with OpenCatLink.open(robot.path, JOINTS) as link:
        link.handshake(timeout=5.0)
        link.send(Command(0, tuple(link.commanded + 0.05)))
        link.send(Estop(0))
        assert link._settle(time.monotonic() + 1.0) and link._answer == "P"
        assert firmware.paused and link.paused
        firmware.control(math.inf)
        assert firmware.body.robot.servos.limp
        link.send(Estop(0))  # a second 'p' would end the pause (servos on): not sent
        assert link.counters.frames_tx == 2 and firmware.paused
        link.send(SafePose(0))
        link._settle(time.monotonic() + 2.0)
        assert firmware.counters.safe_pose_requests == 1 and not firmware.paused


def test_after_a_safe_pose_the_stream_resumes_from_the_rest_posture(robot):
    """'d' stops the firmware's IMU loop (gyro balancing off) and moves the joints to rest: the link then
    sends one 'j', which turns the loop back on and tells where the joints are, for the next ramp."""
    firmware = robot.firmware
    with OpenCatLink.open(robot.path, JOINTS) as link:
        link.handshake(timeout=5.0)
        for _ in range(4):
            link.send(Command(0, tuple(link.commanded - 0.1)))
        link._settle(time.monotonic() + 1.0)
        beeps = firmware.beeps
        link.send(SafePose(0))
        deadline = time.monotonic() + 2.0
        while link.rested and time.monotonic() < deadline:  # until the rest is done and 'j' was sent
            link.poll()
            link.wait(0.005)
        assert not link.rested
        wait_for_readings(link, 3)  # the stream is back
        assert firmware.gyro_balance and firmware.beeps == beeps + 2  # 'd' and the one 'j'
        assert link.sent.tolist() == firmware.angles[[slot(j) for j in JOINTS]].tolist()  # the rest posture
        assert link.counters.dropped == 0


def test_a_line_of_other_columns_is_counted_never_misread(robot):
    with OpenCatLink.open(robot.path, JOINTS) as link:
        link.handshake(timeout=5.0)
        wait_for_readings(link, 2)
        robot.firmware.build = "read_acceleration"  # the same port now prints 5 columns
        time.sleep(0.2)
        link.poll()
        rejected, latest = link.counters.rejected["imu"], link.latest_state
        assert rejected > 5
        time.sleep(0.1)
        assert not link.poll() and link.latest_state is latest and link.counters.rejected["imu"] > rejected


@pytest.mark.parametrize("build, yaw", [("read_acceleration", False), ("ypr", True)])
def test_link_reads_the_other_builds(build, yaw):
    emulated = EmulatedRobot(build)
    try:
        emulated.firmware.body.robot.data.qpos[3:7] = [0.97, 0.0, 0.0, 0.26]  # turned left 30 degrees
        emulated.firmware.body.robot.data.qpos[3:7] /= np.linalg.norm(
            emulated.firmware.body.robot.data.qpos[3:7]
        )
        with OpenCatLink.open(emulated.path, JOINTS) as link:
            link.handshake(timeout=5.0)
            assert link.layout.yaw == yaw and link.layout.extra == (3 if build == "read_acceleration" else 0)
            state = wait_for_readings(link, 3)[-1].message
            # level (about 8 degrees nose down, limp at rest), never an acceleration read as an angle
            assert gravity_direction(state.quaternion) == pytest.approx([0.0, 0.0, -1.0], abs=0.2)
            heading = yaw_angle(state.quaternion)
            assert heading == (pytest.approx(math.radians(30), abs=0.05) if yaw else 0.0)
            assert link.counters.rejected["imu"] == 0
    finally:
        emulated.close()


def test_polling_v_is_an_explicit_opt_in_and_beeps_each_time(robot):
    assert LINKS["opencat"] is OpenCatLink and OpenCatLink.stream and not OpenCatPollLink.stream
    assert LINKS["opencat-poll"] is OpenCatPollLink
    firmware = robot.firmware
    with OpenCatPollLink.open(robot.path, JOINTS) as link:
        link.handshake(timeout=5.0)
        assert not firmware.print_gyro  # no stream asked for
        link.poll()  # the handshake's reading
        beeps = firmware.beeps
        for _ in range(3):
            assert len(link.poll()) == 1
        assert firmware.beeps == beeps + 3


def handshake_refusal(robot: EmulatedRobot) -> str:
    """The link's one-line refusal of ``robot`` at the handshake (the emulated robot is closed after)."""
    try:
        with OpenCatLink.open(robot.path, JOINTS) as link, pytest.raises(LinkError) as refused:
            link.handshake(timeout=5.0)
    finally:
        robot.close()
    return str(refused.value)


def test_a_build_it_cannot_read_is_refused_with_the_fix():
    assert "OTHER_MODULES" in handshake_refusal(EmulatedRobot("other_modules"))


def test_an_edited_print6axis_is_refused_with_the_fix(monkeypatch):
    """A user who uncomments aaWorld.x and aaWorld.y in print6Axis(): 2 angles and 5 integers."""
    edited = EmulatedRobot("read_acceleration")
    stock = edited.firmware._imu_line

    def with_world_x_y() -> bytes:
        pitch, roll, *accelerations = stock().split(b"\t")
        return b"\t".join([pitch, roll, b"12", b"-7", *accelerations])

    monkeypatch.setattr(edited.firmware, "_imu_line", with_world_x_y)
    message = handshake_refusal(edited)
    assert "prints 7 columns" in message and "restore print6Axis() in src/imu.h" in message
    assert "\n" not in message


def test_a_robot_other_than_a_bittle_is_refused(monkeypatch):
    """The slot ranges are the Bittle's: a Nybble's differ (src/OpenCat.h), so its '?' ends the handshake."""
    monkeypatch.setattr(opencat_emulator, "MODEL", "Nybble")
    assert "Bittle only" in handshake_refusal(EmulatedRobot())


def test_a_nan_reading_is_an_imu_fault(robot):
    with OpenCatLink.open(robot.path, JOINTS) as link:
        link.handshake(timeout=5.0)
        link._line(b"nan\tnan", time.monotonic())
        assert link.latest_state.message.faults & FAULT_IMU


def test_the_robot_config_gives_the_tasks_observation_without_yaw():
    """Gravity, the x and y body rates with 0 for the yaw rate, 0 for the heading, the commanded angles,
    a 2 Hz clock at 0.092 cycles per 46 ms tick: servo-quad-opencat's 17 values (sim/servo_quad.py)."""
    config = load_robot("servo-quad-opencat")
    assert config.task == "servo-quad-opencat" and config.genome == "servo-quad-opencat"
    assert config.control_period_s == pytest.approx(0.046) and config.link is OpenCatLink
    assert config.obs_size == 17
    env = sim.make("servo-quad-opencat")
    assert env.unwrapped.dt == pytest.approx(0.046)
    assert env.unwrapped.clock_hz * env.unwrapped.dt == pytest.approx(dict(config.observation)["clock"])
    adapter = Adapter(config)
    zyx = np.radians([40.0, -10.0, 5.0])  # a build that prints yaw: it is still not observed
    state = SimpleNamespace(
        quaternion=quaternion_from_zyx(zyx), gyro=(0.3, -0.2, 0.9), joint_pos=tuple(adapter.offset + 0.1)
    )
    adapter.observation(state)
    obs = adapter.observation(state)
    assert obs[0:3] == pytest.approx(gravity_direction(state.quaternion))
    assert obs[3:7].tolist() == pytest.approx([0.03, -0.02, 0.0, 0.0])
    assert obs[7:15] == pytest.approx(adapter.sign * 0.1)
    phase = 2 * math.pi * 0.092
    assert obs[15:17] == pytest.approx([math.sin(phase), math.cos(phase)])
    # the calibration stays inside the firmware's slot ranges (INFO carries them: check_info refuses more)
    for joint, cal in zip(JOINTS, config.calibration, strict=True):
        lower, upper = np.radians(slot_range(slot(joint)))
        assert lower <= cal.lower and cal.upper <= upper


def test_controller_on_a_silent_robot_exits_2_with_one_line(capsys):
    master, slave, path = open_pty()  # a port whose robot never answers
    try:
        assert controller(["--serial", path, "--config", PROFILE, "--connect-timeout", "0.5"]) == 2
    finally:
        os.close(master)
        os.close(slave)
    err = capsys.readouterr().err
    assert err.startswith("error: no answer from the OpenCat robot") and err.count("\n") == 1, err


def still_opencat_genome(path: Path) -> Path:
    """A servo-quad-opencat genome whose rules never change its small random weights: a robot that
    stands."""
    spec = NetworkSpec((17, 128, 64, 8), ("tanh", "tanh", "tanh"), "ABCD_lr")
    vector = np.zeros(Genome.parameter_count("hebbian", spec))
    return save_genome(Genome.from_vector("hebbian", spec, "servo-quad-opencat", vector), path)


def test_controller_exits_2_naming_the_fix_on_a_build_it_cannot_read(tmp_path):
    emulator = Process("firmware_bridge.opencat_emulator", "--build", "other_modules", "--untimed")
    port = re.search(r"on (/dev/\S+)", emulator.wait_for(r"on /dev/")).group(1)
    genome = str(still_opencat_genome(tmp_path / "still.npz"))
    rc, stdout, stderr = Process(
        "controller.cli", "--serial", port, "--config", PROFILE, "--genome", genome
    ).finish()
    emulator.finish(signal.SIGTERM)
    assert rc == 2, stderr
    assert stderr.startswith("error: robot on") and stderr.count("\n") == 1 and "Traceback" not in stderr
    assert "comment that #define out and upload OpenCat.ino again" in stderr


def test_controller_drives_the_emulated_opencat_robot_end_to_end(tmp_path):
    emulator = Process("firmware_bridge.opencat_emulator", "--untimed")  # the default build
    port = re.search(r"on (/dev/\S+)", emulator.wait_for(r"on /dev/")).group(1)
    log = tmp_path / "run.csv"
    genome = str(still_opencat_genome(tmp_path / "still.npz"))
    args = ("--serial", port, "--config", PROFILE, "--genome", genome, "--duration", "3", "--log", str(log))
    rc, stdout, stderr = Process("controller.cli", *args).finish()
    emulator_rc, _, emulator_err = emulator.finish(signal.SIGTERM)
    assert rc == 0, stderr
    assert emulator_rc == 0, emulator_err
    assert "robot Bittle on" in stdout and "stopped: duration reached (3 s); SAFE_POSE sent" in stdout
    assert "control at 21.7391 Hz" in stdout and "dropped 0" in stdout and "rejected frames 0" in stdout
    summary = emulator.wait_for("emulator stopped after")
    with log.open() as f:
        rows = list(csv.DictReader(f))
    assert f"{len(rows)} joint commands" in summary and ", 1 rest;" in summary
    run = [r for r in rows if r["phase"] == "run"]
    obs = np.array([[float(r[f"obs_{i}"]) for i in range(17)] for r in run])
    sent = np.array([[float(r[f"command_{i}"]) for i in range(8)] for r in rows])
    assert np.allclose(obs[:, :3], [0.0, 0.0, -1.0], atol=0.05)  # standing level, from the stream
    assert np.all(obs[:, 5] == 0.0) and np.all(obs[:, 6] == 0.0)  # no yaw rate, no heading
    ticks = np.array([int(r["tick"]) for r in run])
    phase = 2 * math.pi * 0.092 * ticks
    assert np.allclose(obs[:, 15], np.sin(phase), atol=1e-4)  # the log keeps 5 digits
    # each tick sees the last command as the robot got it: whole degrees, at most 5 from the one before
    calibration = load_robot("servo-quad-opencat").calibration
    offset, sign = np.array([c.offset for c in calibration]), np.array([c.sign for c in calibration])
    got = np.degrees(obs[1:, 7:15] / sign + offset)
    assert np.allclose(got, np.round(got), atol=0.01)
    assert np.abs(np.diff(np.round(got), axis=0)).max() <= STEP_DEGREES
    assert offset == pytest.approx(math.radians(NEUTRAL_DEGREES), abs=1e-4)  # the emulated Bittle's
    assert len(sent) == len(rows)


@pytest.mark.slow
def test_the_stock_firmware_genome_walks_forward_for_60_s_on_the_default_build():
    """The OpenCat profile against the firmware-exact emulator in its own time (default build), with
    the shipped stock-firmware genome: 60 s, no drops, forward (it is a slow walker, 0.79 m in 60 s when
    measured: docs/results.md; standing still drifts a few centimetres)."""
    emulator = Process("firmware_bridge.opencat_emulator")
    port = re.search(r"on (/dev/\S+)", emulator.wait_for(r"on /dev/")).group(1)
    rc, stdout, stderr = Process(
        "controller.cli", "--serial", port, "--config", PROFILE, "--duration", "60"
    ).finish()
    emulator.finish(signal.SIGTERM)
    assert rc == 0, stderr
    assert "genome: servo-quad-opencat" in stdout and "stopped: duration reached (60 s)" in stdout
    assert "dropped 0" in stdout and "rejected frames 0" in stdout
    moved = float(re.search(r"torso moved ([+-][\d.]+) m along x", emulator.wait_for("torso moved")).group(1))
    assert moved > 0.5, moved


def test_the_link_and_the_robot_config_hold_the_stock_firmware_task_s_limits():
    """The task the genome is evolved on (sim) and the link that deploys it (firmware_bridge) cannot
    import each other: the joint step, the tick, the clock and the no-yaw blocks agree here."""
    env = sim.make("servo-quad-opencat").unwrapped
    config = load_robot("servo-quad-opencat")
    assert math.degrees(env.joint_step) == pytest.approx(STEP_DEGREES)
    assert config.control_period_s == pytest.approx(env.dt)
    assert dict(config.observation)["clock"] == pytest.approx(env.clock_hz * env.dt)
    assert [block for block, _ in config.observation] == [
        "gravity",
        "angular_velocity_no_yaw",
        "no_heading",
        "joint_positions",
        "clock",
    ]
    assert config.task == "servo-quad-opencat" and not ServoQuadOpenCatEnv.yaw_sensed
