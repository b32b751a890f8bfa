"""The wire protocol, version 1: message types, their binary layouts, and frame encode/decode.

A frame before COBS is ``header | payload | crc``: header = u8 version, u8 type, u16 sequence;
crc = CRC-16/CCITT-FALSE of header and payload; all little-endian, floats IEEE-754 binary32.
Every layout is fixed by the counts it carries, so a payload of any other length is rejected.
docs/protocol.md gives every field with its unit; firmware/hq_servo_robot/src/hq_protocol.c is
the same codec in C99, checked against this one byte for byte on firmware/test_vectors.json.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

from firmware_bridge.errors import FrameError
from firmware_bridge.framing import cobs_decode, cobs_encode, crc16

PROTOCOL_VERSION = 1
HEADER = struct.Struct("<BBH")
CRC = struct.Struct("<H")
MAX_JOINTS = 32
MAX_FEET = 8
MAX_ROBOT_NAME = 31
MAX_JOINT_NAME = 15
MAX_ERROR_TEXT = 63
MAX_LAYERS = 8  # weight norms an ONBOARD_TELEMETRY carries, one per layer
MAX_PAYLOAD = 43 + 24 * MAX_JOINTS  # INFO is the longest message: 43 fixed bytes, 24 per joint
MAX_FRAME = HEADER.size + MAX_PAYLOAD + CRC.size
MAX_ENCODED = MAX_FRAME + MAX_FRAME // 254 + 1  # COBS adds one byte per 254 plus one

# Control modes (Info.control_mode): what Command.targets mean.
POSITION = 0  # joint angle targets, rad
EFFORT = 1  # normalised joint effort (torque / the joint's maximum torque), in [-1, 1]
CONTROL_MODES = {"position": POSITION, "effort": EFFORT}
MODE_NAMES = {code: name for name, code in CONTROL_MODES.items()}

# Info.capabilities bits
CAP_BASE_ESTIMATE = 0x01  # State carries the base estimate block
CAP_ONBOARD = 0x02  # the robot runs a genome's network itself (ONBOARD_START, docs/protocol.md)
CAP_NO_YAW = 0x04  # its orientation has no yaw: State's quaternion holds pitch and roll only, gyro z unknown
KNOWN_CAPS = CAP_BASE_ESTIMATE | CAP_ONBOARD | CAP_NO_YAW

# State.faults bits
FAULT_SAFE_POSE = 0x0001  # the robot holds its safe pose (any reason)
FAULT_WATCHDOG = 0x0002  # ... because no COMMAND came within Info.watchdog_ms
FAULT_ESTOP = 0x0004  # emergency stop latched; cleared only by a new HELLO
FAULT_IDLE = 0x0008  # no COMMAND since the last HELLO
FAULT_CLAMPED = 0x0010  # a command was clamped to the robot's limits since the last STATE
FAULT_RX_ERROR = 0x0020  # a bad frame arrived since the last STATE
FAULT_IMU = 0x0040  # the IMU does not answer; orientation and rates are stale
FAULT_OVERRUN = 0x0080  # the firmware's loop overran its period
FAULT_NAMES = {
    FAULT_SAFE_POSE: "safe-pose",
    FAULT_WATCHDOG: "watchdog",
    FAULT_ESTOP: "estop",
    FAULT_IDLE: "idle",
    FAULT_CLAMPED: "clamped",
    FAULT_RX_ERROR: "rx-error",
    FAULT_IMU: "imu",
    FAULT_OVERRUN: "overrun",
}
KNOWN_FAULTS = sum(FAULT_NAMES)  # any other bit in State.faults makes the frame out of range

# Reasons carried by ESTOP and SAFE_POSE
REASON_OPERATOR = 0  # Ctrl-C, SIGTERM, a button
REASON_HOST_FAULT = 1  # the host program failed
REASON_STATE_TIMEOUT = 2  # host watchdog: no STATE in time
REASON_ORIENTATION = 3  # roll or pitch beyond the limit
REASON_NON_FINITE = 4  # the controller produced NaN or infinity
REASON_ROBOT_FAULT = 5  # the robot reported a fault the host cannot drive through
REASON_NAMES = ("operator", "host fault", "state timeout", "orientation", "non-finite action", "robot fault")

# OnboardTelemetry.status: the lifetime's phase while it runs, then why it ended
ONBOARD_STARTING = 0  # ramping to the neutral stance and settling there; no network tick yet
ONBOARD_RUNNING = 1  # the network drives the joints
ONBOARD_DONE = 2  # the ticks ONBOARD_START asked for ran
ONBOARD_STOPPED = 3  # ONBOARD_STOP, or a new HELLO
ONBOARD_SAFE_POSE = 4  # SAFE_POSE from the host
ONBOARD_ESTOP = 5  # ESTOP from the host
ONBOARD_WATCHDOG = 6  # the host link went silent for watchdog_ms
ONBOARD_ORIENTATION = 7  # roll or pitch beyond the robot's limit, or a non-finite orientation
ONBOARD_NON_FINITE = 8  # the network produced NaN or infinity
ONBOARD_IMU = 9  # the IMU stopped answering
ONBOARD_STATUS_NAMES = (
    "starting", "running", "done", "stopped", "safe pose", "estop", "watchdog", "orientation",
    "non-finite action", "imu fault",
)  # fmt: skip

# Error.code values
ERROR_VERSION, ERROR_TYPE, ERROR_PAYLOAD, ERROR_NOT_READY, ERROR_ESTOPPED = ERROR_CODES = range(1, 6)


def describe_faults(faults: int) -> str:
    names = [name for bit, name in FAULT_NAMES.items() if faults & bit]
    return ",".join(names) or "none"


class _Reader:
    """Sequential little-endian reads from a payload, raising the codec's errors on misuse."""

    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def take(self, fmt: str) -> tuple:
        size = struct.calcsize("<" + fmt)
        if self.at + size > len(self.data):
            raise FrameError("length", f"payload ends at byte {len(self.data)}, needs {self.at + size}")
        values = struct.unpack_from("<" + fmt, self.data, self.at)
        self.at += size
        return values

    def u8(self) -> int:
        return self.take("B")[0]

    def count(self, limit: int, what: str) -> int:
        value = self.u8()
        if value > limit:
            raise FrameError("range", f"{value} {what}, at most {limit}")
        return value

    def floats(self, n: int) -> tuple[float, ...]:
        return self.take(f"{n}f")

    def name(self, limit: int, minimum: int = 1) -> str:
        size = self.u8()
        if not minimum <= size <= limit:
            raise FrameError("range", f"name of {size} bytes, expected {minimum}..{limit}")
        raw = self.take(f"{size}s")[0]
        if any(b < 0x20 or b > 0x7E for b in raw):
            raise FrameError("range", "name is not printable ASCII")
        return raw.decode("ascii")

    def end(self) -> None:
        if self.at != len(self.data):
            raise FrameError("length", f"{len(self.data) - self.at} bytes after the payload")


def _name(text: str, limit: int, minimum: int = 1) -> bytes:
    raw = text.encode()  # non-ASCII becomes bytes >= 0x80, refused below
    if not minimum <= len(raw) <= limit or any(b < 0x20 or b > 0x7E for b in raw):
        raise FrameError("range", f"name {text!r} must be {minimum}..{limit} printable ASCII characters")
    return bytes([len(raw)]) + raw


def _count(n: int, limit: int, what: str) -> None:
    if n > limit:
        raise FrameError("range", f"{n} {what}, at most {limit}")


def _known(value: int, valid: range | dict | int, what: str) -> None:
    """An enum (``valid`` a range or dict of its values) or a bit field (``valid`` the known bits):
    both codecs refuse any other value where they read or write it, so it never reaches a handler."""
    ok = not value & ~valid if isinstance(valid, int) else value in valid
    if not ok:
        raise FrameError("range", f"unknown {what} {value}")


class Message:
    """Base of all messages: ``TYPE`` is the wire type code, ``payload``/``parse`` the layout."""

    TYPE: ClassVar[int]

    def payload(self) -> bytes:
        return b""

    @classmethod
    def parse(cls, r: _Reader) -> Message:
        return cls()


@dataclass(frozen=True)
class Hello(Message):
    """Host -> robot: start a session. The robot answers INFO and clears a latched ESTOP."""

    TYPE: ClassVar[int] = 0x01


@dataclass(frozen=True)
class Info(Message):
    """Robot -> host, the answer to HELLO: what the robot is and how to drive it."""

    TYPE: ClassVar[int] = 0x02
    robot_name: str
    control_mode: int
    joint_names: tuple[str, ...]
    joint_lower: tuple[float, ...]  # rad
    joint_upper: tuple[float, ...]  # rad
    n_feet: int
    max_rate_hz: int
    state_rate_hz: int
    watchdog_ms: int
    capabilities: int = 0
    protocol_version: int = PROTOCOL_VERSION

    def payload(self) -> bytes:
        n = len(self.joint_names)
        _count(n, MAX_JOINTS, "joints")
        _count(self.n_feet, MAX_FEET, "feet")
        if not len(self.joint_lower) == len(self.joint_upper) == n:
            raise FrameError("range", "joint_names, joint_lower and joint_upper differ in length")
        self._check_head(self.protocol_version, self.control_mode, self.capabilities)
        head = struct.pack(
            "<BBBBHHH",
            self.protocol_version,
            self.control_mode,
            self.capabilities,
            self.n_feet,
            self.max_rate_hz,
            self.state_rate_hz,
            self.watchdog_ms,
        )
        joints = b"".join(
            _name(name, MAX_JOINT_NAME) + struct.pack("<ff", lo, hi)
            for name, lo, hi in zip(self.joint_names, self.joint_lower, self.joint_upper, strict=True)
        )
        return head + _name(self.robot_name, MAX_ROBOT_NAME) + bytes([n]) + joints

    @staticmethod
    def _check_head(version: int, mode: int, caps: int) -> None:
        _known(version, range(PROTOCOL_VERSION, PROTOCOL_VERSION + 1), "INFO protocol_version")
        _known(mode, MODE_NAMES, "control mode")
        _known(caps, KNOWN_CAPS, "capability bits")

    @classmethod
    def parse(cls, r: _Reader) -> Info:
        version, mode, caps = r.take("BBB")
        cls._check_head(version, mode, caps)
        n_feet = r.count(MAX_FEET, "feet")
        max_rate, state_rate, watchdog = r.take("HHH")
        robot = r.name(MAX_ROBOT_NAME)
        n = r.count(MAX_JOINTS, "joints")
        names, lower, upper = [], [], []
        for _ in range(n):
            names.append(r.name(MAX_JOINT_NAME))
            lo, hi = r.floats(2)
            lower.append(lo)
            upper.append(hi)
        return cls(
            robot, mode, tuple(names), tuple(lower), tuple(upper), n_feet, max_rate, state_rate, watchdog,
            caps, version,
        )  # fmt: skip


@dataclass(frozen=True)
class Command(Message):
    """Host -> robot: joint targets (rad in position mode, [-1, 1] in effort mode). The frame's
    sequence number identifies it; State.last_command_seq echoes it once applied."""

    TYPE: ClassVar[int] = 0x10
    host_time_us: int  # host clock when sent, µs, wraps at 2^32
    targets: tuple[float, ...]

    def payload(self) -> bytes:
        n = len(self.targets)
        _count(n, MAX_JOINTS, "targets")
        return struct.pack(f"<IB{n}f", self.host_time_us, n, *self.targets)

    @classmethod
    def parse(cls, r: _Reader) -> Command:
        (time_us,) = r.take("I")
        return cls(time_us, r.floats(r.count(MAX_JOINTS, "targets")))


@dataclass(frozen=True)
class BaseEstimate:
    """Optional STATE block: what an estimator (or the simulator) knows about the body."""

    height: float  # m, torso above the ground
    velocity: tuple[float, float, float]  # m/s, torso linear velocity in the world frame


@dataclass(frozen=True)
class State(Message):
    """Robot -> host, streamed at Info.state_rate_hz: sensors and the robot's safety status."""

    TYPE: ClassVar[int] = 0x11
    BLOCK_BASE: ClassVar[int] = 0x01
    mcu_time_us: int  # robot clock when sampled, µs, wraps at 2^32
    last_command_seq: int  # sequence number of the last COMMAND applied
    faults: int  # FAULT_* bits
    rx_errors: int  # bad frames the robot has received since boot, wraps at 2^16
    joint_pos: tuple[float, ...]  # rad
    joint_vel: tuple[float, ...]  # rad/s
    quaternion: tuple[float, float, float, float]  # body orientation, w x y z (body to world)
    gyro: tuple[float, float, float]  # rad/s, body frame
    n_feet: int
    contacts: int  # bit k set: foot k touches the ground
    base: BaseEstimate | None = None

    def payload(self) -> bytes:
        n = len(self.joint_pos)
        _count(n, MAX_JOINTS, "joints")
        _count(self.n_feet, MAX_FEET, "feet")
        if len(self.joint_vel) != n:
            raise FrameError("range", "joint_pos and joint_vel differ in length")
        if self.contacts >> self.n_feet:
            raise FrameError("range", f"contact bits beyond {self.n_feet} feet")
        _known(self.faults, KNOWN_FAULTS, "fault bits")
        blocks = 0 if self.base is None else self.BLOCK_BASE
        out = struct.pack(
            f"<IHHHBBBB4f3f{n}f{n}f",
            self.mcu_time_us, self.last_command_seq, self.faults, self.rx_errors, n, self.n_feet,
            self.contacts, blocks, *self.quaternion, *self.gyro, *self.joint_pos, *self.joint_vel,
        )  # fmt: skip
        if self.base is not None:
            out += struct.pack("<4f", self.base.height, *self.base.velocity)
        return out

    @classmethod
    def parse(cls, r: _Reader) -> State:
        time_us, last_seq, faults, rx_errors = r.take("IHHH")
        _known(faults, KNOWN_FAULTS, "fault bits")
        n = r.count(MAX_JOINTS, "joints")
        n_feet = r.count(MAX_FEET, "feet")
        contacts, blocks = r.take("BB")
        if contacts >> n_feet:
            raise FrameError("range", f"contact bits beyond {n_feet} feet")
        if blocks & ~cls.BLOCK_BASE:
            raise FrameError("range", f"unknown STATE blocks 0x{blocks:02x}")
        quaternion, gyro = r.floats(4), r.floats(3)
        pos, vel = r.floats(n), r.floats(n)
        base = None
        if blocks & cls.BLOCK_BASE:
            height, *velocity = r.floats(4)
            base = BaseEstimate(height, tuple(velocity))
        return cls(time_us, last_seq, faults, rx_errors, pos, vel, quaternion, gyro, n_feet, contacts, base)


@dataclass(frozen=True)
class Heartbeat(Message):
    """Host -> robot, echoed back unchanged (link check and round-trip time). It does not feed
    the robot's command watchdog: only COMMAND does."""

    TYPE: ClassVar[int] = 0x20
    time_us: int  # sender's clock, µs, wraps at 2^32

    def payload(self) -> bytes:
        return struct.pack("<I", self.time_us)

    @classmethod
    def parse(cls, r: _Reader) -> Heartbeat:
        return cls(*r.take("I"))


@dataclass(frozen=True)
class _Stop(Message):
    reason: int = REASON_OPERATOR  # REASON_*

    def payload(self) -> bytes:
        _known(self.reason, range(len(REASON_NAMES)), "reason")
        return struct.pack("<B", self.reason)

    @classmethod
    def parse(cls, r: _Reader) -> _Stop:
        reason = r.u8()
        _known(reason, range(len(REASON_NAMES)), "reason")
        return cls(reason)


@dataclass(frozen=True)
class Estop(_Stop):
    """Host -> robot: emergency stop, latched until the next HELLO (actuators off or braked)."""

    TYPE: ClassVar[int] = 0x30


@dataclass(frozen=True)
class SafePose(_Stop):
    """Host -> robot: go to and hold the safe pose until the next COMMAND."""

    TYPE: ClassVar[int] = 0x31


@dataclass(frozen=True)
class Error(Message):
    """Robot -> host: a request it refused (code ERROR_*), with the offending frame's sequence."""

    TYPE: ClassVar[int] = 0x7F
    code: int
    seq: int
    text: str = ""

    def payload(self) -> bytes:
        _known(self.code, ERROR_CODES, "error code")
        return struct.pack("<BH", self.code, self.seq) + _name(self.text, MAX_ERROR_TEXT, minimum=0)

    @classmethod
    def parse(cls, r: _Reader) -> Error:
        code, seq = r.take("BH")
        _known(code, ERROR_CODES, "error code")
        return cls(code, seq, r.name(MAX_ERROR_TEXT, minimum=0))


@dataclass(frozen=True)
class OnboardStart(Message):
    """Host -> robot: start a lifetime of the robot's own network (INFO capability CAP_ONBOARD). The
    robot ramps to the neutral stance, settles, then ticks at the genome's period until ``ticks``
    network ticks ran (0: until stopped); every start is a fresh lifetime from ``seed``."""

    TYPE: ClassVar[int] = 0x40
    seed: int  # u64: the initial weights' PCG32 seed (controller.network.lifetime_seed)
    ticks: int = 0  # network ticks to run; 0: until ONBOARD_STOP
    telemetry_every: int = 5  # control ticks between ONBOARD_TELEMETRY frames, >= 1

    def payload(self) -> bytes:
        _known(self.telemetry_every, range(1, 0x10000), "telemetry_every")
        return struct.pack("<QIH", self.seed, self.ticks, self.telemetry_every)

    @classmethod
    def parse(cls, r: _Reader) -> OnboardStart:
        seed, ticks, every = r.take("QIH")
        _known(every, range(1, 0x10000), "telemetry_every")
        return cls(seed, ticks, every)


@dataclass(frozen=True)
class OnboardStop(Message):
    """Host -> robot: end the on-board lifetime; the robot holds its safe pose."""

    TYPE: ClassVar[int] = 0x41


@dataclass(frozen=True)
class OnboardTelemetry(Message):
    """Robot -> host, during an on-board lifetime: its progress, the tick's cost and the weights'
    size, so the host sees a network it does not run."""

    TYPE: ClassVar[int] = 0x42
    mcu_time_us: int  # robot clock when sent, µs, wraps at 2^32
    start_seq: int  # seq of the ONBOARD_START that began this lifetime
    status: int  # ONBOARD_*
    ticks: int  # network ticks run in this lifetime
    tick_us: int  # µs the last tick took (sensors to servo command)
    tick_us_max: int  # µs, the longest tick of this lifetime
    late_ticks: int  # ticks that started a period or more after their deadline, wraps at 2^16
    weight_norms: tuple[float, ...]  # Frobenius norm of each layer's weights

    def payload(self) -> bytes:
        _known(self.status, range(len(ONBOARD_STATUS_NAMES)), "on-board status")
        n = len(self.weight_norms)
        _count(n, MAX_LAYERS, "layers")
        return struct.pack(
            f"<IHBIIIHB{n}f", self.mcu_time_us, self.start_seq, self.status, self.ticks, self.tick_us,
            self.tick_us_max, self.late_ticks, n, *self.weight_norms,
        )  # fmt: skip

    @classmethod
    def parse(cls, r: _Reader) -> OnboardTelemetry:
        time_us, start_seq, status = r.take("IHB")
        _known(status, range(len(ONBOARD_STATUS_NAMES)), "on-board status")
        ticks, tick_us, tick_us_max, late = r.take("IIIH")
        norms = r.floats(r.count(MAX_LAYERS, "layers"))
        return cls(time_us, start_seq, status, ticks, tick_us, tick_us_max, late, norms)


MESSAGES: dict[int, type[Message]] = {
    cls.TYPE: cls
    for cls in (
        Hello, Info, Command, State, Heartbeat, Estop, SafePose, Error, OnboardStart, OnboardStop,
        OnboardTelemetry,
    )
}  # fmt: skip


# Frames whose sender puts a 0x00 before them: a receiver that has just opened its port discards
# everything up to its first 0x00, and these must not be lost (docs/protocol.md, framing).
LEADING_ZERO = frozenset(
    {Hello.TYPE, Info.TYPE, Estop.TYPE, SafePose.TYPE, Error.TYPE, OnboardStart.TYPE, OnboardStop.TYPE}
)


class Frame(NamedTuple):
    seq: int
    message: Message


def encode(message: Message, seq: int) -> bytes:
    """The message as it goes on the wire: COBS(header | payload | crc) followed by 0x00."""
    try:
        body = HEADER.pack(PROTOCOL_VERSION, message.TYPE, seq & 0xFFFF) + message.payload()
    except struct.error as exc:
        raise FrameError("range", str(exc)) from None
    return cobs_encode(body + CRC.pack(crc16(body))) + b"\x00"


def decode(encoded: bytes) -> Frame:
    """Decode one frame (without its 0x00). Raises :class:`FrameError` and nothing else."""
    if len(encoded) > MAX_ENCODED:
        raise FrameError("overflow", f"{len(encoded)} bytes, at most {MAX_ENCODED}")
    raw = cobs_decode(encoded)
    if len(raw) < HEADER.size + CRC.size:
        raise FrameError("short", f"{len(raw)} bytes, a frame has at least {HEADER.size + CRC.size}")
    body = raw[: -CRC.size]
    if crc16(body) != CRC.unpack_from(raw, len(body))[0]:
        raise FrameError("crc")
    version, kind, seq = HEADER.unpack_from(body)
    if version != PROTOCOL_VERSION:
        raise FrameError("version", f"protocol version {version}, this host speaks {PROTOCOL_VERSION}")
    cls = MESSAGES.get(kind)
    if cls is None:
        raise FrameError("type", f"unknown message type 0x{kind:02x}")
    reader = _Reader(body[HEADER.size :])
    message = cls.parse(reader)
    reader.end()
    return Frame(seq, message)
