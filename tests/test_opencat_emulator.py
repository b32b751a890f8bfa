"""The firmware-exact OpenCat emulator: its bytes against fixtures taken from the firmware source, and its
timing model against what a host may ask of a stock Bittle."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from firmware_bridge.opencat import indexed_command
from firmware_bridge.opencat_emulator import LIMITS, OpenCatFirmware, Timing, arduino_float
from firmware_bridge.servo_body import ServoQuadBody

FIXTURES = Path(__file__).parent / "fixtures" / "opencat"
TIMING = Timing()


def fixture(name: str) -> dict[str, bytes]:
    rows = [line.split("\t", 1) for line in (FIXTURES / name).read_text().splitlines() if line[:1] != "#"]
    return {label: ast.literal_eval(value) for label, value in rows}


class Host:
    """Drives the firmware and steps its body as ``serve`` does, at 0.5 ms resolution."""

    def __init__(self, build: str = "default") -> None:
        self.firmware = OpenCatFirmware(ServoQuadBody(seed=0), build)
        self.t = 0.0
        self.drives = 0
        end = b"d\r\n" if self.firmware.imu else b"Ready!\r\n"  # without the IMU, no rest at boot
        self.boot = self.until(lambda out: out.endswith(end))

    def advance(self, seconds: float) -> bytes:
        out = b""
        end = self.t + seconds
        while self.t < end:
            self.t += 0.0005
            out += b"".join(self.firmware.receive(b"", self.t))
            sent = self.firmware.body._sent
            self.firmware.control(self.t)
            self.drives += self.firmware.body._sent is not sent
            self.firmware.body.step()
        return out

    def until(self, done, limit: float = 2.0) -> bytes:
        out = b""
        start = self.t
        while not done(out):
            assert self.t - start < limit, out
            out += self.advance(0.0005)
        return out

    def send(self, command: bytes) -> tuple[bytes, float]:
        """The reply up to the command's token line, and how long it took."""
        start = self.t
        out = b"".join(self.firmware.receive(command, self.t))
        token = chr(command[0]).encode()
        out += self.until(lambda text: (b"\r\n" + out + text).endswith(b"\r\n" + token + b"\r\n"))
        return out, self.t - start


@pytest.fixture(scope="module")
def host():
    return Host()


def test_boot_and_answers_are_the_firmwares_bytes(host):
    expected = fixture("default_build.txt")
    assert host.boot == expected["boot"] + expected["boot_rest"]
    assert host.send(b"?\n")[0] == expected["query_after_rest"]
    assert host.send(b"j8\n")[0] == f"={host.firmware.angles[8]}\r\nj\r\n".encode()
    assert abs(host.firmware.angles[8] - 75) <= 5  # the rest posture, shifted by up to 5 degrees


@pytest.mark.parametrize("build", ["default_build", "read_acceleration_build", "ypr_build"])
def test_v_prints_the_builds_columns(build):
    firmware = OpenCatFirmware(ServoQuadBody(seed=0), build.removesuffix("_build"))
    expected = fixture(f"{build}.txt")
    firmware.ypr, firmware.accel = np.array([3.0, -12.345678, 0.5]), np.array([-1, 250, -8192])
    assert firmware._imu_line() + b"v\r\n" == expected["v_tilted"]
    assert arduino_float(-0.0000001, 5) == "-0.00000" and arduino_float(1.999999, 2) == "2.00"


def test_v_after_d_is_stale_until_the_loop_reads_the_imu_again(host):
    host.send(indexed_command([8], np.array([40.0])))
    host.advance(0.05)
    before, _ = host.send(b"v\n")
    host.firmware.body.robot.data.qpos[3:7] = [0.96, 0.0, 0.28, 0.0]  # tilted nose down, 33 degrees
    host.firmware.body.robot.data.qpos[3:7] /= np.linalg.norm(host.firmware.body.robot.data.qpos[3:7])
    host.send(b"d\n")
    host.advance(0.05)  # gyro balancing is off after 'd': the loop does not read the IMU
    stale, _ = host.send(b"v\n")
    assert stale == b"G\r\n" + before  # G: balancing back on, but this reading was taken before
    host.advance(0.02)
    fresh, _ = host.send(b"v\n")
    assert fresh != before


def test_I_clamps_each_slot_to_its_own_limits(host):
    host.send(indexed_command([8, 10, 12], np.array([120.0, -120.0, -100.0])))
    assert host.firmware.angles[[8, 10, 12]].tolist() == [80, -80, -80]
    assert LIMITS[8].tolist() == [-200, 80] and LIMITS[15].tolist() == [-80, 200]


def test_p_shuts_the_servos_at_once(host):
    host.send(indexed_command([8], np.array([30.0])))
    start = host.t
    reply = b"".join(host.firmware.receive(b"p\n", host.t)) + host.until(lambda out: out.endswith(b"P\r\n"))
    took = host.t - start
    assert reply == fixture("default_build.txt")["pause"]
    assert took < 0.03 and host.firmware.body.robot.servos.limp
    assert host.send(b"v\n")[0].startswith(b"p\r\n")  # the next command ends the pause first


def test_a_28_degree_change_takes_8_frames(host):
    host.send(indexed_command([8, 12], np.array([30.0, 0.0])))
    host.advance(0.05)
    drives = host.drives
    reply, took = host.send(indexed_command([8, 12], np.array([2.0, 0.0])))
    assert reply == b"I\r\n"
    assert TIMING.frames(28, 4) == 8 and host.drives - drives == 7  # frame 0 writes where they stand
    assert 8 * TIMING.frame <= took <= 8 * TIMING.frame + 0.005  # the 16 slots' I2C writes, 8 times
    assert 0.08 < 8 * TIMING.frame < 0.09


def test_v_costs_its_read_delay_and_beep(host):
    host.advance(0.05)
    reply, took = host.send(b"v\n")
    line = len(reply) * TIMING.byte
    assert TIMING.read_delay + TIMING.beep + line <= took <= TIMING.read_delay + TIMING.beep + line + 0.006


def run_stream(period: float, change: float, ticks: int = 25, imu_every: int = 1) -> int:
    """Ticks whose 'v' and 'I' were not both answered within the period: a host that keeps one command in
    flight, the hips swinging ``change`` degrees a tick."""
    stream = Host()
    stream.send(indexed_command([8, 9], np.array([30.0, 30.0])))
    stream.advance(0.05)
    missed = 0
    for tick in range(ticks):
        start = stream.t
        if tick % imu_every == 0:
            stream.send(b"v\n")
        angle = 30.0 + change * (tick % 2)
        stream.send(indexed_command([8, 9, 10, 11], np.array([angle] * 4)))
        late = stream.t - start - period
        missed += tick > 0 and late > 0  # the first tick starts from the idle loop
        stream.advance(max(0.0, -late))
    return missed


def test_the_shipped_gaits_50_hz_stream_misses_its_deadlines():
    assert run_stream(0.02, 10.0) == 24  # the median per-tick change: 3 frames of 16 writes and a beep


def test_the_streamed_scheme_keeps_its_deadlines_and_reads_between_commands():
    """The link's scheme: the IMU streamed after one 'V', an 'I' of at most 5 degrees every 46 ms."""
    stream = Host()
    stream.send(b"V\n")
    stream.send(indexed_command([8, 9, 10, 11], np.array([30.0] * 4)))
    stream.advance(0.05)
    missed, readings = 0, []
    for tick in range(40):
        start = stream.t
        out, _ = stream.send(indexed_command([8, 9, 10, 11], np.array([30.0 + 5.0 * (tick % 2)] * 4)))
        late = stream.t - start - 0.046
        missed += late > 0
        out += stream.advance(max(0.0, -late))
        readings.append(len(STREAM_LINE.findall(out)))
    assert missed == 0 and stream.firmware.beeps == 2  # the boot's rest and 'V'
    assert min(readings) >= 2  # fresh readings every tick, between the moves


def test_the_sustainable_scheme_keeps_its_deadlines():
    assert run_stream(0.045, 5.0) == 0  # 22 Hz, at most 5 degrees a tick: 2 frames, 'v' every tick
    assert run_stream(0.02, 1.0, imu_every=4) > 0  # 50 Hz cannot even hold still with 'v' every 4th tick


# --- the IMU stream ('V') and the beep -----------------------------------------------------------
STREAM_LINE = re.compile(rb"-?\d+\.\d{5}\t-?\d+\.\d{5}\r\n")


def test_V_streams_every_new_reading_while_gyro_balancing_is_on():
    stream = Host()
    expected = fixture("default_build.txt")
    reply, _ = stream.send(b"V\n")
    assert reply == b"G\r\n" + expected["V_on"]  # G: the first command after the boot's rest
    assert stream.firmware.print_gyro
    out = stream.advance(0.2)
    lines = out.split(b"\r\n")[:-1]
    assert 18 <= len(lines) <= 21  # one per DMP packet: 100 Hz
    assert all(STREAM_LINE.fullmatch(line + b"\r\n") for line in lines), out
    assert lines[-1] + b"\r\nv\r\n" == stream.firmware._imu_line() + b"v\r\n"  # as 'v' prints it
    # none while a joint command's frames are written (the loop is in transform()), none after 'd'
    reply, took = stream.send(indexed_command([8, 9, 10, 11], np.array([10.0] * 4)))
    assert took > 0.05 and reply.count(b"\r\n") <= 2  # at most one reading before the token was read
    stream.send(b"d\n")
    assert stream.advance(0.2) == b""  # gyro balancing off: the loop reads no IMU
    reply, _ = stream.send(b"?\n")  # any command turns balancing back on: the stream goes on
    assert reply.startswith(b"G\r\n")
    assert STREAM_LINE.fullmatch(stream.advance(0.05).split(b"\r\n")[0] + b"\r\n")
    stream.firmware.receive(b"V\n", stream.t)  # off again: answered v
    assert stream.until(lambda out: out.endswith(expected["V_off"])) and not stream.firmware.print_gyro
    stream.advance(0.02)
    assert stream.advance(0.1) == b""


def test_a_level_robot_streams_the_fixtures_line(monkeypatch):
    stream = Host()
    stream.send(b"V\n")
    level = SimpleNamespace(quaternion=np.array([1.0, 0.0, 0.0, 0.0]))
    monkeypatch.setattr(stream.firmware.body, "sense", lambda: level)
    out = stream.advance(0.05)
    assert out.endswith(fixture("default_build.txt")["stream_level"] * 3)


def test_every_token_but_I_L_b_B_beeps_and_b_does_not_mute_it(host):
    host.advance(0.05)
    beeps = host.firmware.beeps
    host.send(indexed_command([8], np.array([30.0])))
    host.send(b"I~")
    assert host.firmware.beeps == beeps  # 'I' never beeps
    host.send(b"b\n")  # 'b' alone: the boot melody's EEPROM flag (reaction.h:315-317), no beep itself
    assert host.firmware.beeps == beeps
    _, took = host.send(b"v\n")
    assert host.firmware.beeps == beeps + 1 and took >= TIMING.read_delay + TIMING.beep  # still beeps


def test_a_build_without_the_imu_prints_no_reading():
    bare = Host("other_modules")
    expected = fixture("other_modules_build.txt")
    assert bare.boot == expected["boot"]
    assert bare.send(b"v\n")[0] == expected["v"]
    assert bare.send(b"V\n")[0] == expected["V"] and bare.advance(0.1) == b""
    assert bare.send(b"?\n")[0] == b"Bittle\r\nN_250224\r\n?\r\n"  # no G: there was no rest at boot
