"""The host end of a serial robot link: :class:`SerialLink`, what the deploy loop drives whatever the
firmware speaks, and :class:`Link`, the bridge protocol's frames over pyserial, with counters and timing.

Reads never block: :meth:`Link.poll` takes whatever bytes have arrived, splits them into frames and
decodes them; a bad frame is counted by reason and skipped (the next 0x00 resynchronises), never
raised. A port that fails (missing, unplugged, closed by the other end) is a :class:`LinkError`.

Timing: each STATE carries the robot's clock. The smallest ``host arrival - robot clock`` over the
last second or two estimates the clock offset plus the link's minimum delay, so
:meth:`Link.state_age` says how old the robot's measurement is, and a STATE that took more than
``late_s`` longer than that minimum is counted as late.
"""

from __future__ import annotations

import errno
import math
import select
import time
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field
from typing import TypeVar

import serial

from firmware_bridge.errors import FrameError, LinkError
from firmware_bridge.framing import Deframer
from firmware_bridge.protocol import (
    LEADING_ZERO,
    MAX_ENCODED,
    Error,
    Heartbeat,
    Hello,
    Info,
    Message,
    State,
    decode,
    encode,
)

_L = TypeVar("_L", bound="SerialLink")
HELLO_INTERVAL_S = 0.05  # a lossy link may eat many HELLO/INFO pairs
OFFSET_WINDOW_S = 1.0


def clock_us() -> int:
    """The host clock as sent on the wire: monotonic µs, wrapping at 2^32."""
    return int(time.monotonic() * 1e6) & 0xFFFFFFFF


@dataclass
class Counters:
    frames_tx: int = 0
    frames_rx: int = 0
    bytes_tx: int = 0
    bytes_rx: int = 0
    rejected: Counter = field(default_factory=Counter)  # bad frames by reason (crc, cobs, ...)
    dropped: int = 0  # frames missing from the robot's sequence numbers
    late: int = 0  # STATE frames delayed more than late_s beyond the link's minimum
    robot_errors: int = 0  # ERROR messages from the robot

    def summary(self) -> str:
        rejected = f"rejected frames {sum(self.rejected.values())}"
        if self.rejected:
            rejected += " (" + ", ".join(f"{k} {v}" for k, v in sorted(self.rejected.items())) + ")"
        return (
            f"tx {self.frames_tx} frames ({self.bytes_tx} B), rx {self.frames_rx} frames "
            f"({self.bytes_rx} B); crc errors {self.rejected['crc']}, {rejected}, dropped {self.dropped}, "
            f"late {self.late}, robot errors {self.robot_errors}"
        )


@dataclass(frozen=True)
class Received:
    seq: int
    message: Message
    rx_time: float  # host time.monotonic() when read


class SerialLink(ABC):
    """One serial connection to a robot, whatever its firmware speaks: the deploy loop sees STATE and
    sends COMMAND, SAFE_POSE and ESTOP through this interface only. Opening, closing, waiting and a
    port that fails are handled here, once; a subclass speaks its firmware's protocol."""

    def __init__(self, port: serial.Serial, name: str) -> None:
        self.port, self.name = port, name
        self.counters = Counters()
        self.latest_state: Received | None = None

    @staticmethod
    def open_port(name: str, baud: int) -> serial.Serial:
        """The named port, non-blocking; a port that cannot be opened is a LinkError naming the fix."""
        try:
            return serial.Serial(name, baud, timeout=0, write_timeout=1.0, exclusive=True)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise LinkError(_open_problem(name, exc)) from None

    @classmethod
    @abstractmethod
    def connect(cls: type[_L], name: str, baud: int, joints: tuple[str, ...], period_s: float) -> _L:
        """Open port ``name`` for a robot with these joints driven every ``period_s`` seconds."""

    def close(self) -> None:
        self.port.close()

    def __enter__(self: _L) -> _L:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _broken(self, exc: Exception) -> LinkError:
        return LinkError(
            f"serial port {self.name} closed or unplugged ({exc}); reconnect the robot and start again"
        )

    def wait(self, timeout: float) -> None:
        """Sleep until bytes arrive or ``timeout`` (s) passes."""
        try:
            select.select([self.port.fileno()], [], [], max(0.0, timeout))
        except (OSError, ValueError) as exc:
            raise self._broken(exc) from None

    @abstractmethod
    def handshake(self, timeout: float = 5.0) -> Info:
        """Start a session; what the robot says it is. A refusal or silence is a LinkError."""

    @abstractmethod
    def send(self, message: Message) -> int:
        """Send COMMAND, SAFE_POSE or ESTOP (HELLO, HEARTBEAT where the protocol has them); its seq."""

    @abstractmethod
    def poll(self) -> list[Received]:
        """What has arrived since the last poll; updates ``latest_state``."""

    @abstractmethod
    def state_age(self, now: float) -> float:
        """Seconds since the robot sampled the latest STATE (inf before the first)."""

    @abstractmethod
    def ping(self, count: int, timeout: float = 0.5) -> list[float]:
        """Round-trip times (s) of ``count`` probes; lost ones are skipped."""


class Link(SerialLink):
    """One serial connection to a robot's firmware (or the emulator) speaking docs/protocol.md."""

    def __init__(self, port: serial.Serial, name: str, late_s: float = 0.01) -> None:
        super().__init__(port, name)
        self.late_s = late_s
        self._deframer = Deframer(MAX_ENCODED)
        self._seq = 0
        self._rx_seq: int | None = None
        self._mcu_wraps, self._mcu_last = 0, None
        self._offsets = [math.inf, math.inf]  # minimum offset in the current and the previous window
        self._window_end = 0.0

    @classmethod
    def open(cls, name: str, baud: int = 1_000_000, late_s: float = 0.01) -> Link:
        return cls(cls.open_port(name, baud), name, late_s)

    @classmethod
    def connect(cls, name: str, baud: int, joints: tuple[str, ...], period_s: float) -> Link:
        """A STATE later than one control period beyond the link's minimum counts as late."""
        return cls.open(name, baud, late_s=period_s)

    # --- sending --------------------------------------------------------------------------
    def send(self, message: Message) -> int:
        """Encode and write one frame; returns its sequence number. HELLO, ESTOP and SAFE_POSE get a
        0x00 first (protocol.LEADING_ZERO), so they arrive whole even after a write cut short."""
        seq = self._seq
        self._seq = (seq + 1) & 0xFFFF
        frame = (b"\x00" if message.TYPE in LEADING_ZERO else b"") + encode(message, seq)
        try:
            self.port.write(frame)
        except (serial.SerialException, OSError) as exc:
            raise self._broken(exc) from None
        self.counters.frames_tx += 1
        self.counters.bytes_tx += len(frame)
        return seq

    # --- receiving ------------------------------------------------------------------------
    def poll(self) -> list[Received]:
        """Every message that has arrived since the last poll; never blocks."""
        try:
            data = self.port.read(65536)
        except (serial.SerialException, OSError) as exc:
            raise self._broken(exc) from None
        if not data:
            return []
        now = time.monotonic()
        self.counters.bytes_rx += len(data)
        frames, overflows = self._deframer.feed(data)
        if overflows:
            self.counters.rejected["overflow"] += overflows
        received = []
        for raw in frames:
            try:
                seq, message = decode(raw)
            except FrameError as exc:
                self.counters.rejected[exc.reason] += 1
                continue
            self.counters.frames_rx += 1
            self._track_seq(seq)
            item = Received(seq, message, now)
            if isinstance(message, State):
                self._track_timing(message, now)
                self.latest_state = item
            elif isinstance(message, Error):
                self.counters.robot_errors += 1
            received.append(item)
        return received

    def _track_seq(self, seq: int) -> None:
        if self._rx_seq is not None:
            gap = (seq - self._rx_seq - 1) & 0xFFFF
            if gap < 0x8000:
                self.counters.dropped += gap
        self._rx_seq = seq

    def _mcu_seconds(self, time_us: int) -> float:
        if self._mcu_last is not None and time_us < self._mcu_last:
            self._mcu_wraps += 1
        self._mcu_last = time_us
        return (self._mcu_wraps * 2**32 + time_us) * 1e-6

    def _track_timing(self, state: State, now: float) -> None:
        offset = now - self._mcu_seconds(state.mcu_time_us)
        if now >= self._window_end:
            self._offsets = [math.inf, self._offsets[0]]
            self._window_end = now + OFFSET_WINDOW_S
        self._offsets[0] = min(self._offsets[0], offset)
        if offset - min(self._offsets) > self.late_s:
            self.counters.late += 1

    def state_age(self, now: float) -> float:
        """Seconds since the robot sampled the latest STATE (inf before the first)."""
        if self.latest_state is None:
            return math.inf
        sampled = (self._mcu_wraps * 2**32 + self._mcu_last) * 1e-6 + min(self._offsets)
        return now - sampled

    # --- sessions -------------------------------------------------------------------------
    def handshake(self, timeout: float = 5.0) -> Info:
        """Start a session: drop what arrived before, then HELLO until the robot answers INFO.
        The counters start afresh; a refusal or silence is a LinkError."""
        try:
            self.port.reset_input_buffer()
        except (serial.SerialException, OSError) as exc:
            raise self._broken(exc) from None
        self._deframer.reset()
        self._rx_seq = None
        self.counters = Counters()
        start = time.monotonic()
        next_hello = start
        hellos = set()  # an ERROR about another frame (one sent before this session) is no refusal
        while (now := time.monotonic()) < start + timeout:
            if now >= next_hello:
                hellos.add(self.send(Hello()))
                next_hello = now + HELLO_INTERVAL_S
            for item in self.poll():
                if isinstance(item.message, Info):
                    return item.message
                if isinstance(item.message, Error) and item.message.seq in hellos:
                    raise LinkError(f"robot on {self.name} refused HELLO: {item.message.text}")
            self.wait(min(next_hello, start + timeout) - time.monotonic())
        if self.counters.rejected["version"]:
            hint = "it speaks another protocol version; update the firmware or this package"
        elif self.counters.bytes_rx:
            hint = (
                "bytes arrive but no valid frame: check the baud rate (--baud) and that the firmware is ours"
            )
        else:
            hint = "nothing arrived: is the robot powered, its firmware running and PORT the right one?"
        raise LinkError(f"no INFO from the robot on {self.name} within {timeout:g} s; {hint}")

    def ping(self, count: int, timeout: float = 0.5) -> list[float]:
        """Round-trip times (s) of ``count`` HEARTBEATs echoed by the robot; lost ones are skipped."""
        rtts = []
        for _ in range(count):
            stamp = clock_us()
            sent = time.perf_counter()
            self.send(Heartbeat(stamp))
            deadline = sent + timeout
            while (now := time.perf_counter()) < deadline:
                if any(isinstance(r.message, Heartbeat) and r.message.time_us == stamp for r in self.poll()):
                    rtts.append(now - sent)
                    break
                self.wait(deadline - now)
        return rtts


def _open_problem(name: str, exc: Exception) -> str:
    code = getattr(exc, "errno", None)
    if code == errno.ENOENT or "No such file" in str(exc):
        return (
            f"serial port {name} not found; plug the robot in and pass its port with --serial "
            "(ls /dev/ttyUSB* /dev/ttyACM*), or start the emulator: firmware-bridge emulate --robot ant"
        )
    if code == errno.EACCES:
        return f"no permission to open {name}; add yourself to the dialout group and log in again"
    if code == errno.EBUSY or "lock" in str(exc).lower():
        return f"serial port {name} is in use by another program; close it and try again"
    return f"cannot open serial port {name}: {exc}; check the port name and the baud rate"
