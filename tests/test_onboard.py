"""On-board mode: the emulated servo-quad runs the shipped genome as the robot's own C (the plastic tick of
firmware_bridge/firmware/plastic, built here with gcc and loaded with ctypes), through the host's safety
layer, with the host sending no COMMAND. The firmware with its clock passed in, then the whole stack over
real pseudo-terminals: the emulator as a process, ``controller --serial ... --on-board`` in between."""

from __future__ import annotations

import dataclasses
import math
import os
import re
import shutil
import signal
import threading

import mujoco
import numpy as np
import pytest
import test_bridge_serial
from test_bridge_serial import Process

from controller.cli import main as controller
from controller.genome import load_genome
from controller.network import PCG32
from firmware_bridge.emulator import Firmware, open_pty, serve
from firmware_bridge.faults import FaultSpec
from firmware_bridge.framing import Deframer
from firmware_bridge.onboard import OnboardProgram, PlasticKernel
from firmware_bridge.protocol import (
    CAP_ONBOARD,
    ERROR_ESTOPPED,
    ERROR_NOT_READY,
    ERROR_TYPE,
    FAULT_CLAMPED,
    FAULT_ESTOP,
    FAULT_SAFE_POSE,
    FAULT_WATCHDOG,
    MAX_ENCODED,
    ONBOARD_DONE,
    ONBOARD_ESTOP,
    ONBOARD_NON_FINITE,
    ONBOARD_ORIENTATION,
    ONBOARD_RUNNING,
    ONBOARD_SAFE_POSE,
    ONBOARD_STARTING,
    ONBOARD_STOPPED,
    ONBOARD_WATCHDOG,
    REASON_OPERATOR,
    Command,
    Error,
    Estop,
    Heartbeat,
    Hello,
    Info,
    OnboardStart,
    OnboardStop,
    OnboardTelemetry,
    SafePose,
    decode,
    encode,
)
from firmware_bridge.robot import load_robot
from firmware_bridge.servo_body import ServoQuadBody

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc (apt-get install gcc)")
SEED = 7
TICK = 0.02  # the shipped genome's control period
RAMP_AND_SETTLE = 100  # control ticks: the config's 1 s ramp, the genome's 50 settle ticks


@pytest.fixture(scope="module")
def kernel(tmp_path_factory) -> PlasticKernel:
    return PlasticKernel.build(load_genome("servo-quad"), "servo-quad", tmp_path_factory.mktemp("kernel"))


def robot(kernel: PlasticKernel, config=None) -> Firmware:
    body = ServoQuadBody(seed=0)
    program = OnboardProgram(kernel, config or load_robot("servo-quad"), body.dt)
    return Firmware(body, watchdog_ms=100, onboard=program)


@pytest.fixture
def mcu(kernel) -> Firmware:
    return robot(kernel)


def send(mcu: Firmware, message, now: float, seq: int = 0) -> list:
    """Deliver one frame (after a 0x00); the replies, each frame decoded."""
    frames, _ = Deframer(MAX_ENCODED).feed(
        b"\x00" + b"".join(mcu.receive(b"\x00" + encode(message, seq), now))
    )
    return [decode(frame).message for frame in frames]


def start(mcu: Firmware, now: float = 0.0, ticks: int = 0, every: int = 1) -> OnboardTelemetry:
    send(mcu, Hello(), now)
    (telemetry,) = send(mcu, OnboardStart(SEED, ticks, every), now, seq=5)
    return telemetry


def run(mcu: Firmware, start_s: float, seconds: float, heartbeat: bool = True) -> list[OnboardTelemetry]:
    """Physics steps from ``start_s`` for ``seconds``, a HEARTBEAT every 20 ms; the telemetry sent."""
    sent = []
    steps = round(seconds / mcu.body.dt)
    for k in range(steps):
        now = start_s + k * mcu.body.dt
        if heartbeat and k % 10 == 0:
            send(mcu, Heartbeat(k), now)
        sent += [decode(frame[:-1]).message for frame in mcu.control(now)]
        mcu.body.step()
    return sent


def state(mcu: Firmware, now: float):
    return decode(mcu.state_frame(now)[:-1]).message


def test_a_lifetime_starts_from_the_seeds_pcg32_weights(mcu, kernel):
    (info,) = send(mcu, Hello(), 0.0)
    assert isinstance(info, Info) and info.capabilities & CAP_ONBOARD
    telemetry = start(mcu)
    assert (telemetry.start_seq, telemetry.status, telemetry.ticks) == (5, ONBOARD_STARTING, 0)
    spec = load_genome("servo-quad").spec
    weights = PCG32(SEED).uniform_weights(spec.synapses)
    np.testing.assert_array_equal(kernel.state[: spec.synapses].view(np.uint32), weights.view(np.uint32))
    at = np.cumsum([0] + [n_in * n_out for n_in, n_out in spec.layer_shapes])
    norms = [np.linalg.norm(weights[a:b]) for a, b in zip(at[:-1], at[1:], strict=True)]
    np.testing.assert_allclose(telemetry.weight_norms, norms, rtol=1e-5)
    assert state(mcu, 0.0).faults == 0  # commanding itself: neither idle nor in the safe pose


def test_start_is_refused_before_hello_while_estopped_and_without_on_board_mode(mcu):
    (error,) = send(mcu, OnboardStart(SEED), 0.0, seq=3)
    assert isinstance(error, Error) and (error.code, error.seq) == (ERROR_NOT_READY, 3)
    send(mcu, Hello(), 0.0)
    send(mcu, Estop(REASON_OPERATOR), 0.0)
    assert send(mcu, OnboardStart(SEED), 0.0)[0].code == ERROR_ESTOPPED
    plain = Firmware(ServoQuadBody(seed=0))
    (info,) = send(plain, Hello(), 0.0)
    assert not info.capabilities & CAP_ONBOARD
    assert send(plain, OnboardStart(SEED), 0.0)[0].code == ERROR_TYPE


def test_the_lifetime_ramps_settles_runs_its_ticks_and_ends_in_the_safe_pose(mcu):
    start(mcu, ticks=50, every=10)
    sent = run(mcu, 0.0, 3.2)
    assert [t.status for t in sent[:10]] == [ONBOARD_STARTING] * 10  # 100 ticks of ramp and settling
    assert {t.status for t in sent[10:-1]} == {ONBOARD_RUNNING} and sent[-1].status == ONBOARD_DONE
    assert [t.ticks for t in sent[10:]] == [10, 20, 30, 40, 50, 50]  # every 10th control tick, and the end
    assert sent[-1].ticks == 50 and 0 < sent[-1].tick_us <= sent[-1].tick_us_max
    assert state(mcu, 3.2).faults == FAULT_SAFE_POSE
    np.testing.assert_allclose(mcu.body.robot.commanded, mcu.body.safe_pose)


def test_the_network_drives_the_joints_through_the_safety_layer(kernel):
    """Joint limits and the slew limit of the robot config, as on the host: every command inside them."""
    config = load_robot("servo-quad")
    narrow = tuple(dataclasses.replace(c, lower=-0.1, upper=0.1) for c in config.calibration)
    config = dataclasses.replace(
        config, calibration=narrow, safety=dataclasses.replace(config.safety, max_slew=2.0)
    )
    mcu = robot(kernel, config)
    start(mcu)
    commands = []
    for k in range(200):
        run(mcu, k * TICK, TICK)
        commands.append(mcu.body.robot.commanded.copy())
    commands = np.array(commands)
    assert np.abs(commands).max() <= 0.1 + 1e-12
    assert np.abs(np.diff(commands, axis=0)).max() <= 2.0 * TICK + 1e-12
    assert state(mcu, 4.0).faults & FAULT_CLAMPED


def test_estop_ends_the_lifetime_with_the_servos_limp_until_hello(mcu):
    start(mcu)
    run(mcu, 0.0, 2.5)
    (telemetry,) = send(mcu, Estop(REASON_OPERATOR), 2.5)
    assert telemetry.status == ONBOARD_ESTOP and telemetry.ticks > 0
    run(mcu, 2.5, 0.1)
    assert mcu.body.robot.servos.limp and state(mcu, 2.6).faults == FAULT_ESTOP
    assert send(mcu, OnboardStart(SEED), 2.6)[0].code == ERROR_ESTOPPED


def test_the_watchdog_ends_a_lifetime_whose_host_went_silent(mcu):
    start(mcu)
    assert run(mcu, 0.0, 1.0)[-1].status == ONBOARD_STARTING  # heartbeats keep it going
    sent = run(mcu, 1.0, 0.5, heartbeat=False)
    (ended,) = [t for t in sent if t.status == ONBOARD_WATCHDOG]
    assert ended.mcu_time_us * 1e-6 - 0.98 == pytest.approx(0.1, abs=0.003)  # last heartbeat at 0.98 s
    assert state(mcu, 1.5).faults == FAULT_SAFE_POSE | FAULT_WATCHDOG
    assert mcu.counters.watchdog_trips == 1
    np.testing.assert_allclose(mcu.body.robot.commanded, mcu.body.safe_pose)


@pytest.mark.parametrize("quaternion", [(math.cos(0.6), math.sin(0.6), 0.0, 0.0), (np.nan, 0.0, 0.0, 0.0)])
def test_the_orientation_guard_ends_a_lifetime_when_the_robot_tips_over(mcu, quaternion):
    """Rolled 69 degrees (beyond the config's 60), or an IMU reading that is not a number."""
    start(mcu)
    run(mcu, 0.0, 2.5)
    data = mcu.body.robot.data
    data.qpos[3:7] = quaternion
    if np.all(np.isfinite(quaternion)):
        mujoco.mj_forward(mcu.body.robot.model, data)
    sent = run(mcu, 2.5, TICK)
    assert sent[-1].status == ONBOARD_ORIENTATION
    assert state(mcu, 2.52).faults == FAULT_SAFE_POSE


def test_a_non_finite_action_ends_the_lifetime(mcu, monkeypatch):
    start(mcu)
    run(mcu, 0.0, 2.0)
    monkeypatch.setattr(mcu.onboard.kernel, "tick", lambda obs: np.full(8, np.nan, np.float32))
    assert run(mcu, 2.0, 0.1)[-1].status == ONBOARD_NON_FINITE
    np.testing.assert_allclose(mcu.body.robot.commanded, mcu.body.safe_pose)


def test_a_command_during_a_lifetime_is_refused_and_the_lifetime_goes_on(mcu):
    start(mcu)
    (error,) = send(mcu, Command(0, (0.0,) * 8), 0.01, seq=9)
    assert (error.code, error.seq) == (ERROR_TYPE, 9) and "ONBOARD_STOP" in error.text
    assert mcu.onboard_running and mcu.counters.commands == 0


@pytest.mark.parametrize(
    ("message", "status"),
    [
        (OnboardStop(), ONBOARD_STOPPED),
        (SafePose(REASON_OPERATOR), ONBOARD_SAFE_POSE),
        (Hello(), ONBOARD_STOPPED),
    ],
)
def test_stop_safe_pose_and_hello_end_the_lifetime(mcu, message, status):
    start(mcu)
    run(mcu, 0.0, 0.5)
    telemetry = send(mcu, message, 0.5)[0]
    assert isinstance(telemetry, OnboardTelemetry) and telemetry.status == status
    run(mcu, 0.5, 0.3, heartbeat=False)  # ended: no watchdog to trip
    assert state(mcu, 0.8).faults & FAULT_SAFE_POSE and mcu.counters.watchdog_trips == 0
    (last,) = send(mcu, OnboardStop(), 0.9)  # answered with the last lifetime's telemetry
    assert (last.start_seq, last.status) == (5, status)


# --- the whole stack over real pseudo-terminals ---------------------------------------------------------
class Emulator(test_bridge_serial.Process):
    def __init__(self) -> None:
        super().__init__("firmware_bridge.cli", "emulate", "--robot", "servo-quad")
        self.port = re.search(r"on (/dev/\S+)", self.wait_for(r"emulating robot servo-quad on /dev/")).group(
            1
        )

    def stop(self) -> str:
        rc, _, stderr = self.finish(signal.SIGTERM)
        assert rc == 0, stderr
        return self.wait_for("emulator stopped after")


@pytest.fixture
def emulator(tmp_path):
    """The emulator process, its C tick built now with gcc (its build cache under this test's folder)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(test_bridge_serial.ENV, "XDG_CACHE_HOME", str(tmp_path))
        emu = Emulator()
    yield emu
    if emu.proc.poll() is None:
        emu.stop()


def onboard(port: str, *extra: str) -> Process:
    return Process("controller.cli", "--serial", port, "--robot", "servo-quad", "--on-board", *extra)


@pytest.mark.parametrize(
    ("seconds", "metres"), [(3, 0.3), pytest.param(20, 3.0, marks=pytest.mark.slow)], ids=["3s", "20s"]
)
def test_servo_quad_walks_forward_on_board_with_no_command_from_the_host(emulator, tmp_path, seconds, metres):
    """Done-when: the host starts the lifetime and listens; the robot's own C network walks it."""
    log = tmp_path / "telemetry.csv"
    rc, stdout, stderr = onboard(emulator.port, "--duration", str(seconds), "--log", str(log)).finish()
    summary = emulator.stop()
    assert rc == 0, stderr
    assert "stopped: the lifetime ended (done)" in stdout and f"done: {seconds * 50} network ticks" in stdout
    assert "crc errors 0, rejected frames 0, dropped 0" in stdout
    assert "0 commands applied" in summary and "1 on-board lifetimes" in summary and ", 0 bad;" in summary
    moved = float(re.search(r"torso moved ([-+\d.]+) m", summary).group(1))
    assert moved > metres
    rows = log.read_text().splitlines()
    assert rows[0].startswith("mcu_time_s,status,ticks,tick_us") and rows[-1].split(",")[1] == "done"


def test_ctrl_c_stops_the_lifetime_and_a_killed_host_trips_the_robots_watchdog(emulator):
    host = onboard(emulator.port)
    host.wait_for("running: ")
    rc, stdout, stderr = host.finish(signal.SIGINT)
    assert rc == 130, stderr
    assert "stopped: interrupted (Ctrl-C); ONBOARD_STOP sent" in stdout and "Traceback" not in stderr
    emulator.wait_for(r"on-board lifetime ended \(stopped: ONBOARD_STOP\)")
    start = len(emulator.lines)
    host = onboard(emulator.port)
    emulator.wait_for("ONBOARD_START", start)
    host.finish(signal.SIGKILL)  # no chance to say goodbye: the robot's watchdog ends the lifetime
    emulator.wait_for(r"on-board lifetime ended \(watchdog: no HEARTBEAT for \d+ ms, limit 100 ms\)", start)


def test_a_robot_without_on_board_mode_is_a_one_line_error(capsys):
    master, slave, path = open_pty()
    stop = threading.Event()
    thread = threading.Thread(
        target=serve,
        args=(master, Firmware(ServoQuadBody()), FaultSpec()),
        kwargs={"should_stop": stop.is_set},
    )
    thread.start()
    try:
        rc = controller(["--serial", path, "--robot", "servo-quad", "--on-board", "--duration", "1"])
    finally:
        stop.set()
        thread.join()
        os.close(master)
        os.close(slave)
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert "has no on-board mode (INFO capability bit 1)" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sim", "servo-quad", "--on-board"], "--on-board needs --serial PORT"),
        (
            ["--serial", "/dev/null-robot", "--robot", "servo-quad", "--on-board", "--rate", "100"],
            "ticks at its",
        ),
        (["--serial", "/dev/null-robot", "--robot", "servo-quad-opencat", "--on-board"], "no on-board mode"),
    ],
)
def test_bad_on_board_input_is_a_one_line_error(capsys, args, message):
    assert controller(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
