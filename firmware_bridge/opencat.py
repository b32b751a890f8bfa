"""A stock OpenCat robot (Petoi Bittle) as a link, through its own serial protocol: no reflashing.

OpenCat's firmware takes short commands over its serial port (115200 baud on NyBoard V1): a one-character
token; an upper-case token carries binary arguments and ends with ``~``, a lower-case one carries ASCII and
ends with a newline. It reads a command's bytes until the terminator or a 5 ms gap and confirms every
command by printing its token on a line of its own. Every token but ``I``, ``L``, ``b`` and ``B`` first
beeps, with a blocking ``delay(5)``; no command mutes that beep (``b`` alone flips the boot melody only).
Commands used here (checked against PetoiCamp/OpenCat ``N_250224``: ``src/OpenCat.h``, ``src/io.h``,
``src/reaction.h``, ``src/imu.h``, ``src/sound.h``):

- ``?`` -> the model and firmware version lines, then ``?``: the handshake (the model must be a Bittle:
  the slots and ranges below are its);
- ``j`` -> ``=`` and a table of the 16 joint slots' current angles (degrees), then ``j``: read once;
- ``v`` -> one IMU line, then ``v``: read once at the handshake to learn the build's columns (``LAYOUTS``:
  pitch and roll since May 2023, plus three integer accelerations with ``READ_ACCELERATION``; yaw, pitch,
  roll before). A build whose line this link cannot read, or that prints none, is refused with the fix;
- ``V`` -> ``V`` (``v`` if it was on): printGyro, after which the firmware prints that line itself for
  every new IMU reading (up to 100 Hz, while its gyro balancing is on): the IMU stream, so no token
  beeps per tick. ``link: opencat-poll`` in a robot config asks for ``v`` every tick instead;
- ``I`` + (slot, angle) pairs as signed bytes + ``~`` -> those slots move together to those angles, then
  ``I``: the joint command, no beep; ``I~`` alone moves nothing: the round-trip probe. Bittle's leg joints
  sit in slots 8-15: hips 8-11, knees 12-15, each group front-left, front-right, back-right, back-left;
- ``d`` -> the rest posture, then the servos off (prints ``g`` then ``d``): SAFE_POSE;
- ``p`` -> ``P``, the servos shut at once (``pwm.shutServos()``): ESTOP.

Each command is clamped to the slot's own range (``SLOT_RANGES``, the firmware's ``angleLimit``) and to
+-125 degrees (an angle byte of 126 would be ``~``), moves at most ``STEP_DEGREES`` from the last one sent
(what the firmware's deadlines allow at a 46 ms tick; the ``servo-quad-opencat`` task trains with it) and
is rounded to whole degrees.

What the stock firmware cannot give, and what stands in for it (so the genome's observation is the same as
in simulation): no measured joint angles (its servos report none): the angles this link last commanded, as
in training; no gyro: body rates from the change of the angles between readings ``RATE_WINDOW_S`` or more
apart (Euler rates turned into body rates; the yaw rate taken as 0 where the build prints no yaw, and
the body z rate then reported as 0: unknown); no yaw since May 2023: yaw 0; no clock: readings are timed on
arrival; no watchdog: a robot whose host dies keeps its last posture. It reads a new command only once it
has finished the previous one, and swallows a second command that arrives before it has read the first,
so this link keeps one command in flight: it waits (up to ``ANSWER_S``) for each confirmation before it
sends the next.

:class:`OpenCatLink` is a :class:`firmware_bridge.link.SerialLink`, as the bridge's link is: the deploy
loop drives it unchanged, in the robot's units (rad).
"""

from __future__ import annotations

import math
import re
import struct
import time
from collections import deque
from dataclasses import dataclass

import numpy as np
import serial

from firmware_bridge.errors import ConfigError, LinkError
from firmware_bridge.link import Counters, Received, SerialLink
from firmware_bridge.protocol import (
    CAP_NO_YAW,
    FAULT_IDLE,
    FAULT_IMU,
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
MAX_DEGREES = 125  # an angle byte of 126 is '~', the terminator (src/io.h:22)
# the Bittle's angleLimit for its leg slots (src/OpenCat.h:43-64): front hips 8-9, back hips and knees
SLOT_RANGES = {8: (-200, 80), 9: (-200, 80), **{s: (-80, 200) for s in range(10, 16)}}
STEP_DEGREES = 5.0  # the most a joint's command moves per command (the servo-quad-opencat task's)
ANSWER_S = 0.1  # wait this long for a command's confirmation
HELLO_INTERVAL_S = 0.3
STREAM_S = 0.5  # the first streamed IMU line must come this soon after 'V'
RATE_WINDOW_S = 0.03  # body rates from readings at least this far apart (arrival times jitter)
HISTORY_S = 0.2  # readings older than this take no part in the rates
NUMBER = re.compile(rb"-?\d+(?:\.\d+)?")
FLOAT = re.compile(rb"-?\d+\.\d+|nan|inf|ovf")  # Serial.print(x, 5) (Arduino's Print::printFloat)
INTEGER = re.compile(rb"-?\d+")
NO_IMU_FIX = (
    "its firmware was built without the IMU (an extra module defined in OpenCat.ino, OTHER_MODULES, "
    "ULTRASONIC, VOICE, CAMERA and the like, drops GYRO_PIN in src/OpenCat.h); comment that #define out "
    "and upload OpenCat.ino again"
)


@dataclass(frozen=True)
class Layout:
    """What one IMU line of a firmware build holds: its angle columns (``%.5f``), then integer ones."""

    build: str
    angles: int  # 2: pitch, roll; 3: yaw, pitch, roll
    extra: int  # integer columns after them (READ_ACCELERATION's aaReal.x, aaReal.y, aaWorld.z), ignored

    @property
    def yaw(self) -> bool:
        return self.angles == 3


# (angle columns, integer columns) -> the build (src/imu.h print6Axis(), N_250224 and c87f42a)
LAYOUTS = {
    (2, 0): Layout("default (pitch, roll)", 2, 0),
    (2, 3): Layout("READ_ACCELERATION (pitch, roll, 3 accelerations)", 2, 3),
    (3, 0): Layout("before June 2023 (yaw, pitch, roll)", 3, 0),
    (3, 3): Layout("before June 2023 with READ_ACCELERATION (yaw, pitch, roll, 3 accelerations)", 3, 3),
}


def columns(line: bytes) -> tuple[int, int] | None:
    """(leading angle columns, integer columns after them) of an IMU line, the second -1 when not all the
    columns after the leading angles are integers; None for a line that is not one (a token, a model name,
    the 'j' table: all numbers, none with decimals)."""
    fields = line.split(b"\t")
    if not all(FLOAT.fullmatch(f) or INTEGER.fullmatch(f) for f in fields):
        return None
    if not any(FLOAT.fullmatch(f) for f in fields):
        return None
    angles = 0
    while angles < len(fields) and FLOAT.fullmatch(fields[angles]):
        angles += 1
    rest = fields[angles:]
    return angles, len(rest) if angles and all(INTEGER.fullmatch(f) for f in rest) else -1


def unreadable(name: str, line: bytes) -> LinkError:
    """The one-line refusal of an IMU line whose columns no known build prints, with the fix."""
    text = line.decode("ascii", "replace")
    return LinkError(
        f"robot on {name} prints {line.count(9) + 1} columns for 'v' ({text!r}), a layout no stock "
        "OpenCat build prints, and this link will not guess which are pitch and roll; restore "
        "print6Axis() in src/imu.h to the stock one (pitch, roll, and with READ_ACCELERATION aaReal.x, "
        "aaReal.y, aaWorld.z) and upload OpenCat.ino again"
    )


def slot(joint: str) -> int:
    """OpenCat's slot of a joint named ``hip_N`` or ``knee_N`` (leg N of docs/robots.md's table)."""
    part, _, leg = joint.partition("_")
    if part not in GROUP_SLOT or leg not in ("1", "2", "3", "4"):
        raise ConfigError(f"the OpenCat link drives joints hip_1..hip_4 and knee_1..knee_4, not {joint!r}")
    return GROUP_SLOT[part] + CORNERS.index(int(leg))


def slot_range(index: int) -> tuple[int, int]:
    """The degrees a command may give a leg slot: the firmware's range within the byte's +-125."""
    lower, upper = SLOT_RANGES[index]
    return max(lower, -MAX_DEGREES), min(upper, MAX_DEGREES)


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
    """One serial connection to a robot running the stock OpenCat firmware; the IMU streams (``V``)."""

    stream = True  # the firmware prints each IMU reading itself; False: 'v' every tick (beeps)

    def __init__(self, port: serial.Serial, name: str, joints: tuple[str, ...]) -> None:
        super().__init__(port, name)
        self.joints = joints
        self.slots = [slot(joint) for joint in joints]
        ranges = np.array([slot_range(s) for s in self.slots], dtype=float)
        self.lower, self.upper = ranges[:, 0], ranges[:, 1]  # degrees
        self.sent = np.zeros(len(joints))  # degrees: what the joints were last sent
        self.layout: Layout | None = None  # the build's IMU line, learnt at the handshake
        self.paused = False  # the servos shut by 'p' (any other command ends a pause)
        self.rested = False  # 'd' sent: the joints are in the rest posture, the IMU loop stopped
        self._faults = FAULT_IDLE
        self._seq = 0
        self._last_command_seq = 0
        self._buffer = b""
        self._pending: tuple[tuple[str, ...], float] | None = None  # answers awaited, and when sent
        self._answer = ""  # the last confirmation
        self._lines: list[bytes] = []  # lines received for the pending command
        self._history: deque[tuple[float, np.ndarray]] = deque()  # recent readings: time, ZYX (rad)
        self._new: list[Received] = []

    @property
    def commanded(self) -> np.ndarray:
        """Rad: the angles the joints were last sent."""
        return np.radians(self.sent)

    @classmethod
    def open(cls, name: str, joints: tuple[str, ...], baud: int = BAUD) -> OpenCatLink:
        return cls(cls.open_port(name, baud), name, joints)

    @classmethod
    def connect(cls, name: str, baud: int, joints: tuple[str, ...], period_s: float) -> OpenCatLink:
        """Readings are timed on arrival, so the control period plays no part in the link."""
        return cls.open(name, joints, baud)

    # --- bytes and lines ------------------------------------------------------------------
    def _write(self, answers: tuple[str, ...], data: bytes) -> None:
        """Send one command once the previous one is confirmed (or given up on)."""
        self._settle(time.monotonic() + ANSWER_S)
        try:
            self.port.write(data)
        except (serial.SerialException, OSError) as exc:
            raise self._broken(exc) from None
        self.counters.frames_tx += 1
        self.counters.bytes_tx += len(data)
        self._pending, self._lines = (answers, time.monotonic()), []
        self.paused = False  # every command but 'p' ends a pause: send() sets it again for 'p'

    def _read(self) -> None:
        try:
            data = self.port.read(65536)
        except (serial.SerialException, OSError) as exc:
            raise self._broken(exc) from None
        if not data:
            return
        self.counters.bytes_rx += len(data)
        *lines, self._buffer = (self._buffer + data).split(b"\n")
        now = time.monotonic()
        for line in lines:
            self._line(line.strip(), now)

    def _line(self, line: bytes, now: float) -> None:
        if not line:
            return
        self.counters.frames_rx += 1
        if line == b"OVF":  # the firmware's input buffer overflowed
            self.counters.robot_errors += 1
        if self.layout is not None and columns(line) is not None:
            self._reading(line, now)
            return
        if self._pending is None:
            return
        answers, _ = self._pending
        if line.decode("ascii", "replace") in answers:
            self._pending, self._answer = None, line.decode()
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

    def _reading(self, line: bytes, now: float) -> None:
        """A STATE from one IMU line of the build's layout: orientation, rates, commanded angles; a line
        of other columns is counted and dropped, never read as this layout."""
        layout = self.layout
        assert layout is not None
        if columns(line) != (layout.angles, layout.extra):
            self.counters.rejected["imu"] += 1
            return
        fields = line.split(b"\t")[: layout.angles]
        angles = [float(f) if f != b"ovf" else math.nan for f in fields]
        yaw, pitch, roll = angles if layout.yaw else [0.0, *angles]
        zyx = zyx_from_opencat(*np.radians([yaw, pitch, roll]))
        faults = self._faults
        rates = (0.0, 0.0, 0.0)
        if not np.all(np.isfinite(zyx)):
            faults |= FAULT_IMU  # the DMP gave no angle: nothing to steer by
        else:
            while self._history and now - self._history[0][0] > HISTORY_S:
                self._history.popleft()
            earlier = [entry for entry in self._history if now - entry[0] >= RATE_WINDOW_S]
            before = earlier[-1] if earlier else (self._history[0] if self._history else None)
            if before is not None and now > before[0]:
                rates = body_rates(before[1], zyx, now - before[0])
                if not layout.yaw:
                    rates = (rates[0], rates[1], 0.0)  # the body z rate needs the yaw rate: unknown
            self._history.append((now, zyx))
        state = State(
            int(now * 1e6) & 0xFFFFFFFF, self._last_command_seq, faults, 0,
            tuple(self.commanded.tolist()), (0.0,) * len(self.joints),
            quaternion_from_zyx(zyx), rates, 0, 0,
        )  # fmt: skip
        self.latest_state = Received(self._seq, state, now)
        self._new.append(self.latest_state)

    # --- the SerialLink interface ---------------------------------------------------------------
    def poll(self) -> list[Received]:
        """The IMU readings that arrived since the last poll (streamed: nothing is sent, but after a rest)."""
        self._read()
        self._after_rest()
        new, self._new = self._new, []
        return new

    def _after_rest(self) -> None:
        """Once a ``d`` is done: ``j`` (one beep), which turns the firmware's IMU loop, and so the stream,
        back on (``reaction.h:80-83``) and tells where the rest posture put the joints: a ramp after a
        SAFE_POSE starts there, not where the joints were sent before it."""
        if not self.rested or self._pending is not None:
            return
        self.rested = False
        rows = [NUMBER.findall(line) for line in self._exchange("j", ANSWER_S) or []]
        angles = [row for row in rows if len(row) >= SLOTS]
        if angles:
            self.sent = np.array([float(angles[-1][s]) for s in self.slots])

    def state_age(self, now: float) -> float:
        """Seconds since the latest IMU reading arrived (inf before the first; 0 for one that arrived
        after ``now``: the deploy loop reads the clock before it polls)."""
        return math.inf if self.latest_state is None else max(0.0, now - self.latest_state.rx_time)

    def send(self, message: Message) -> int:
        """A COMMAND (rad) as ``I``, limited as the module says; SAFE_POSE as ``d``; ESTOP as ``p``."""
        seq, self._seq = self._seq, (self._seq + 1) & 0xFFFF
        if isinstance(message, Command):
            degrees = np.clip(np.degrees(message.targets), self.sent - STEP_DEGREES, self.sent + STEP_DEGREES)
            degrees = np.clip(np.round(degrees), self.lower, self.upper)
            self._write(("I",), indexed_command(self.slots, degrees))
            self.sent, self.rested = degrees, False  # an 'I' turns the IMU loop back on itself
            self._last_command_seq, self._faults = seq, 0
        elif isinstance(message, SafePose):
            self._write(("d",), b"d\n")
            self._faults, self.rested = FAULT_SAFE_POSE, True
        elif isinstance(message, Estop):
            if not self.paused:  # a second 'p' would end the pause: servos on again
                self._write(("P", "k"), b"p\n")
                self.paused = True
            self._faults = FAULT_SAFE_POSE
        else:
            raise TypeError(f"the OpenCat link does not send {type(message).__name__}")
        return seq

    def _exchange(self, token: str, timeout: float, answers: tuple[str, ...] = ()) -> list[bytes] | None:
        """Send a lower-case token and wait for its confirmation; the lines before it, or None."""
        self._write(answers or (token,), f"{token}\n".encode())
        lines = self._lines
        return lines if self._settle(time.monotonic() + timeout) else None

    def handshake(self, timeout: float = 5.0) -> Info:
        """``?`` until the firmware answers (it boots when the port opens), then ``j``, ``v`` (the build's
        IMU columns) and, streaming, ``V`` until it is on and a reading has come."""
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
        # the model and version lines before the '?' (a 'G' or 'p' may come first, IMU lines in between)
        text = [line.decode("ascii", "replace") for line in answer if columns(line) is None and len(line) > 1]
        model = text[-2] if len(text) >= 2 else "?"
        if not model.startswith("Bittle"):
            raise LinkError(
                f"robot on {self.name} answers '?' with model {model!r}; the OpenCat link knows the joint "
                "slots and ranges of a Bittle only (firmware N_250224 or newer prints its model)"
            )
        table = self._exchange("j", 1.0) or []
        rows = [NUMBER.findall(line) for line in table]
        angles = [row for row in rows if len(row) >= SLOTS]
        if not angles:
            raise LinkError(f"robot on {self.name} did not list its joint angles for 'j'; is it OpenCat?")
        self.sent = np.array([float(angles[-1][s]) for s in self.slots])
        self._detect()
        if self.stream:
            self._start_stream()
        self.counters = Counters()  # the session's: the '?' retries while the board booted do not count
        lower, upper = np.radians(self.lower), np.radians(self.upper)
        no_yaw = 0 if self.layout.yaw else CAP_NO_YAW
        return Info(model[:31], POSITION, self.joints, tuple(lower), tuple(upper), 0, 100, 0, 0, no_yaw)

    def _detect(self) -> None:
        """The build's IMU columns from one ``v``; a refusal naming the fix where there is none to read."""
        lines = self._exchange("v", 1.0)
        if lines is None:
            raise LinkError(f"robot on {self.name} did not confirm 'v' within 1 s; is it OpenCat?")
        readings = [(line, columns(line)) for line in lines if columns(line) is not None]
        if not readings:
            raise LinkError(f"robot on {self.name} prints no IMU reading for 'v': {NO_IMU_FIX}")
        line, shape = readings[-1]
        if shape not in LAYOUTS:
            raise unreadable(self.name, line)
        self.layout = LAYOUTS[shape]
        self._reading(line, time.monotonic())

    def _start_stream(self) -> None:
        """``V`` until the firmware answers ``V`` (printGyro on), then wait for its first line."""
        for _ in range(2):  # 'v' answers a 'V' that turned a stream left on by an earlier session off
            if self._exchange("V", 1.0, ("V", "v")) is None:
                raise LinkError(f"robot on {self.name} did not confirm 'V' within 1 s; is it OpenCat?")
            if self._answer == "V":
                break
        first = self.latest_state
        deadline = time.monotonic() + STREAM_S
        while self.latest_state is first and time.monotonic() < deadline:
            self.wait(0.01)
            self._read()
        if self.latest_state is first:
            raise LinkError(
                f"robot on {self.name} streams no IMU readings after 'V' within {STREAM_S:g} s; set "
                "link: opencat-poll in the robot config to ask for one with 'v' every tick (it beeps)"
            )

    def ping(self, count: int, timeout: float = 0.5) -> list[float]:
        """Round-trip times (s) of ``count`` ``I~`` (an empty joint command: no motion, no beep); lost
        ones are skipped."""
        rtts = []
        for _ in range(count):
            sent = time.perf_counter()
            self._write(("I",), b"I~")
            if self._settle(time.monotonic() + timeout):
                rtts.append(time.perf_counter() - sent)
        return rtts


class OpenCatPollLink(OpenCatLink):
    """The OpenCat link asking for each IMU reading with ``v``: one beep and its 5 ms ``delay()`` a tick.
    Only where the robot config asks for it (``link: opencat-poll``), e.g. for a build whose stream
    does not come."""

    stream = False

    def poll(self) -> list[Received]:
        """Ask for an IMU reading and wait for it (up to ``ANSWER_S``), so the tick's observation is as
        fresh as in training; returns the readings that arrived since the last poll."""
        self._read()
        self._after_rest()
        self._exchange("v", ANSWER_S)
        new, self._new = self._new, []
        return new
