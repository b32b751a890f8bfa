"""A stock OpenCat robot (Petoi Bittle and kin) as a link, through its own serial protocol: no reflashing.

OpenCat's firmware takes short commands over its serial port (115200 baud on NyBoard V1): a one-character
token; an upper-case token carries binary arguments and ends with ``~``, a lower-case one carries ASCII and
ends with a newline. It reads a command's bytes until the terminator or a 5 ms gap and confirms every
command by printing its token on a line of its own. Commands used here (checked against OpenCat's sources:
``src/OpenCat.h``, ``src/io.h``, ``src/reaction.h``, ``src/imu.h``):

- ``?`` -> the model and firmware version lines (newer firmware), then ``?``: the handshake;
- ``j`` -> ``=`` and a table of the 16 joint slots' current angles (degrees), then ``j``: where the joints
  were last sent, read once at the handshake;
- ``v`` -> one IMU line, yaw, pitch and roll in degrees separated by tabs (some versions print more columns;
  some have the token disabled), then ``v``: polled once per tick;
- ``I`` + (slot, angle) pairs as signed bytes + ``~`` -> those slots move together to those angles, then
  ``I``: the joint command. Bittle's leg joints sit in slots 8-15: hips 8-11, knees 12-15, each group
  front-left, front-right, back-right, back-left. Angles are limited to +-125 degrees (the servos' travel),
  which also keeps every byte clear of ``~`` (126);
- ``d`` -> the rest posture, then the servos off (prints ``g`` then ``d``): SAFE_POSE and ESTOP alike, the
  firmware has no immediate motors-off.

What the stock firmware cannot give, and what stands in for it (so the genome's observation is the same as
in simulation): no measured joint angles (its servos report none): the angles this link last commanded, as
in training; no gyro: body rates from the change of yaw, pitch and roll between two IMU lines (Euler rates
turned into body rates); no clock: readings are timed on arrival; no watchdog: a robot whose host dies
keeps its last posture. It reads a new command only once it has finished the previous one, and swallows
a second command that arrives before it has read the first, so this link keeps one command in flight: it
waits (up to ``ANSWER_S``) for each confirmation before it sends the next.

:class:`OpenCatLink` is a :class:`firmware_bridge.link.SerialLink`, as the bridge's link is: the deploy
loop drives it unchanged, in the robot's units (rad).
"""

from __future__ import annotations

import math
import re
import struct
import time

import numpy as np
import serial

from firmware_bridge.errors import ConfigError, LinkError
from firmware_bridge.link import Counters, Received, SerialLink
from firmware_bridge.protocol import (
    FAULT_IDLE,
    FAULT_SAFE_POSE,
    POSITION,
    Command,
    Estop,
    Info,
    Message,
    SafePose,
    State,
)

BAUD = 115200
SLOTS = 16
CORNERS = (
    1,
    4,
    3,
    2,
)  # legs in OpenCat's order within a joint group: front-left, front-right, back-right, back-left
GROUP_SLOT = {"hip": 8, "knee": 12}
MAX_DEGREES = 125
ANSWER_S = 0.1  # wait this long for a command's confirmation
HELLO_INTERVAL_S = 0.3
NUMBER = re.compile(rb"-?\d+(?:\.\d+)?")


def slot(joint: str) -> int:
    """OpenCat's slot of a joint named ``hip_N`` or ``knee_N`` (leg N of docs/robots.md's table)."""
    part, _, leg = joint.partition("_")
    if part not in GROUP_SLOT or leg not in ("1", "2", "3", "4"):
        raise ConfigError(f"the OpenCat link drives joints hip_1..hip_4 and knee_1..knee_4, not {joint!r}")
    return GROUP_SLOT[part] + CORNERS.index(int(leg))


def indexed_command(slots: list[int], degrees: np.ndarray) -> bytes:
    """The ``I`` command: slot and angle pairs, signed bytes, then ``~``."""
    pairs = [value for pair in zip(slots, degrees.astype(int).tolist(), strict=True) for value in pair]
    return b"I" + struct.pack(f"{len(pairs)}b", *pairs) + b"~"


def zyx_from_opencat(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """ZYX Euler angles (rad; yaw about z up, pitch about y left, roll about x forward) from OpenCat's
    yaw, pitch, roll (rad). The firmware takes them from the MPU6050's DMP: roll = atan2(up_y, up_z) and
    pitch = atan2(up_x, |up_yz|) of the up vector in the sensor frame, yaw turning clockwise seen from
    above; the board is taken as mounted flat, x forward. So ZYX = (-yaw, -pitch, roll)."""
    return np.array([-yaw, -pitch, roll])


def quaternion_from_zyx(zyx: np.ndarray) -> tuple[float, float, float, float]:
    """Body-to-world quaternion (w, x, y, z) of ZYX Euler angles (yaw, pitch, roll), rad."""
    cy, sy = math.cos(zyx[0] / 2), math.sin(zyx[0] / 2)
    cp, sp = math.cos(zyx[1] / 2), math.sin(zyx[1] / 2)
    cr, sr = math.cos(zyx[2] / 2), math.sin(zyx[2] / 2)
    return (
        cr * cp * cy + sr * sp * sy,
        sr * cp * cy - cr * sp * sy,
        cr * sp * cy + sr * cp * sy,
        cr * cp * sy - sr * sp * cy,
    )


def body_rates(before: np.ndarray, after: np.ndarray, dt: float) -> tuple[float, float, float]:
    """Body angular velocity (rad/s, body frame) from two ZYX readings ``dt`` s apart (Euler rates
    turned into body rates; the yaw difference taken the short way round)."""
    yaw_rate = math.remainder(after[0] - before[0], 2 * math.pi) / dt
    pitch_rate, roll_rate = (after[1] - before[1]) / dt, (after[2] - before[2]) / dt
    pitch, roll = after[1], after[2]
    return (
        roll_rate - yaw_rate * math.sin(pitch),
        pitch_rate * math.cos(roll) + yaw_rate * math.sin(roll) * math.cos(pitch),
        -pitch_rate * math.sin(roll) + yaw_rate * math.cos(roll) * math.cos(pitch),
    )


class OpenCatLink(SerialLink):
    """One serial connection to a robot running the stock OpenCat firmware."""

    def __init__(self, port: serial.Serial, name: str, joints: tuple[str, ...]) -> None:
        super().__init__(port, name)
        self.joints = joints
        self.slots = [slot(joint) for joint in joints]
        self.commanded = np.zeros(len(joints))  # rad: what the joints were last sent
        self._faults = FAULT_IDLE
        self._seq = 0
        self._last_command_seq = 0
        self._buffer = b""
        self._pending: tuple[str, float] | None = None  # token awaiting its confirmation, and when sent
        self._lines: list[bytes] = []  # lines received for the pending command
        self._reading: tuple[float, np.ndarray] | None = None  # last IMU reading: time, (yaw, pitch, roll)
        self._new: list[Received] = []

    @classmethod
    def open(cls, name: str, joints: tuple[str, ...], baud: int = BAUD) -> OpenCatLink:
        return cls(cls.open_port(name, baud), name, joints)

    @classmethod
    def connect(cls, name: str, baud: int, joints: tuple[str, ...], period_s: float) -> OpenCatLink:
        """Readings are timed on arrival, so the control period plays no part in the link."""
        return cls.open(name, joints, baud)

    # --- bytes and lines ------------------------------------------------------------------
    def _write(self, token: str, data: bytes) -> None:
        """Send one command once the previous one is confirmed (or given up on)."""
        self._settle(time.monotonic() + ANSWER_S)
        try:
            self.port.write(data)
        except (serial.SerialException, OSError) as exc:
            raise self._broken(exc) from None
        self.counters.frames_tx += 1
        self.counters.bytes_tx += len(data)
        self._pending, self._lines = (token, time.monotonic()), []

    def _read(self) -> None:
        try:
            data = self.port.read(65536)
        except (serial.SerialException, OSError) as exc:
            raise self._broken(exc) from None
        if not data:
            return
        self.counters.bytes_rx += len(data)
        *lines, self._buffer = (self._buffer + data).split(b"\n")
        for line in lines:
            self._line(line.strip())

    def _line(self, line: bytes) -> None:
        if not line:
            return
        self.counters.frames_rx += 1
        if line == b"OVF":  # the firmware's input buffer overflowed
            self.counters.robot_errors += 1
        if self._pending is None:
            return
        token, _ = self._pending
        if line == token.encode():
            self._pending = None
            if token == "v":
                self._imu(time.monotonic())
        else:
            self._lines.append(line)

    def _settle(self, deadline: float) -> bool:
        """Read until the pending command is confirmed; False (and counted) if it is not by ``deadline``."""
        while self._pending is not None:
            self._read()
            now = time.monotonic()
            if self._pending is None:
                break
            if now >= deadline:
                self.counters.dropped += 1
                self._pending = None
                return False
            self.wait(min(deadline - now, 0.01))
        return True

    def _imu(self, now: float) -> None:
        """A STATE from the IMU line that came before the ``v``: orientation, rates, commanded angles."""
        numbers = [NUMBER.findall(line) for line in self._lines]
        readings = [row for row in numbers if len(row) >= 3]
        if not readings:
            self.counters.rejected["imu"] += 1
            return
        zyx = zyx_from_opencat(*np.radians([float(v) for v in readings[-1][:3]]))
        rates = (0.0, 0.0, 0.0)
        if self._reading is not None and now > self._reading[0]:
            rates = body_rates(self._reading[1], zyx, now - self._reading[0])
        self._reading = (now, zyx)
        state = State(
            int(now * 1e6) & 0xFFFFFFFF, self._last_command_seq, self._faults, 0,
            tuple(self.commanded.tolist()), (0.0,) * len(self.joints),
            quaternion_from_zyx(zyx), rates, 0, 0,
        )  # fmt: skip
        self.latest_state = Received(self._seq, state, now)
        self._new.append(self.latest_state)

    # --- the SerialLink interface ---------------------------------------------------------------
    def poll(self) -> list[Received]:
        """Ask for an IMU reading and wait for it (up to ``ANSWER_S``), so the tick's observation is as
        fresh as in training; returns the readings that arrived since the last poll."""
        self._read()
        self._exchange("v", ANSWER_S)
        new, self._new = self._new, []
        return new

    def state_age(self, now: float) -> float:
        """Seconds since the latest IMU reading arrived (inf before the first; 0 for one that arrived
        after ``now``: the deploy loop reads the clock before it polls, and :meth:`poll` waits for it)."""
        return math.inf if self.latest_state is None else max(0.0, now - self.latest_state.rx_time)

    def send(self, message: Message) -> int:
        """A COMMAND (rad) as ``I``; SAFE_POSE and ESTOP as ``d``."""
        seq, self._seq = self._seq, (self._seq + 1) & 0xFFFF
        if isinstance(message, Command):
            degrees = np.clip(np.round(np.degrees(message.targets)), -MAX_DEGREES, MAX_DEGREES)
            self._write("I", indexed_command(self.slots, degrees))
            self.commanded = np.radians(degrees)
            self._last_command_seq, self._faults = seq, 0
        elif isinstance(message, SafePose | Estop):
            self._write("d", b"d\n")
            self._faults = FAULT_SAFE_POSE
        else:
            raise TypeError(f"the OpenCat link does not send {type(message).__name__}")
        return seq

    def _exchange(self, token: str, timeout: float) -> list[bytes] | None:
        """Send a lower-case token and wait for its confirmation; the lines before it, or None."""
        self._write(token, f"{token}\n".encode())
        lines = self._lines
        return lines if self._settle(time.monotonic() + timeout) else None

    def handshake(self, timeout: float = 5.0) -> Info:
        """``?`` until the firmware answers (it boots when the port opens), then ``j`` and ``v``."""
        try:
            self.port.reset_input_buffer()
        except (serial.SerialException, OSError) as exc:
            raise self._broken(exc) from None
        deadline = time.monotonic() + timeout
        answer = None
        while answer is None and time.monotonic() < deadline:
            answer = self._exchange("?", min(HELLO_INTERVAL_S, max(0.0, deadline - time.monotonic())))
        if answer is None:
            hint = (
                "bytes arrive but no answer to '?': check the baud rate (115200 on NyBoard V1) and firmware"
                if self.counters.bytes_rx
                else "nothing arrived: is the robot powered, is PORT its serial port?"
            )
            raise LinkError(f"no answer from the OpenCat robot on {self.name} within {timeout:g} s; {hint}")
        # newer firmware answers its model and version before the '?' (older ones only the '?')
        model = answer[-2].decode("ascii", "replace") if len(answer) >= 2 else "opencat"
        table = self._exchange("j", 1.0) or []
        rows = [NUMBER.findall(line) for line in table]
        angles = [row for row in rows if len(row) >= SLOTS]
        if not angles:
            raise LinkError(f"robot on {self.name} did not list its joint angles for 'j'; is it OpenCat?")
        self.commanded = np.radians([float(angles[-1][s]) for s in self.slots])
        if self._exchange("v", 1.0) is None or self.latest_state is None:
            raise LinkError(
                f"robot on {self.name} prints no IMU reading for 'v' (the token is disabled in some OpenCat "
                "versions); enable T_PRINT_GYRO in OpenCat.h"
            )
        self.counters = Counters()  # the session's: the '?' retries while the board booted do not count
        limit = math.radians(MAX_DEGREES)
        n = len(self.joints)
        return Info(model[:31], POSITION, self.joints, (-limit,) * n, (limit,) * n, 0, 100, 0, 0)

    def ping(self, count: int, timeout: float = 0.5) -> list[float]:
        """Round-trip times (s) of ``count`` IMU queries; lost ones are skipped."""
        rtts = []
        for _ in range(count):
            sent = time.perf_counter()
            if self._exchange("v", timeout) is not None:
                rtts.append(time.perf_counter() - sent)
        return rtts
