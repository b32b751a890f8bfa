"""An emulator of the stock OpenCat firmware's serial behaviour on a pty, with the servo-quad as the robot.

``python -m firmware_bridge.opencat_emulator [--silent] [--duration S]`` opens a pseudo-terminal, prints its
path and answers as OpenCat's sources say the firmware does (``src/io.h``, ``src/reaction.h``,
``src/OpenCat.h``, ``src/imu.h``): a command is a token byte; an upper-case token's bytes run to ``~``, a
lower-case token's to a newline or a 5 ms gap; bytes already waiting when a token is read belong to that
command (a second command sent too early is swallowed); each command is confirmed by its token on a line.
Handled: ``?`` (model, version, ``?``), ``j`` (``=`` and the 16 slots' angles), ``v`` (yaw, pitch, roll in
degrees, tab-separated, from the body's orientation by the DMP's formulas), ``I`` and ``L`` (slot angles,
signed bytes), ``d`` (rest posture, servos off half a second later; prints ``g`` then ``d``),
``c`` (calibration posture, the offsets table), ``kbalance``; any other token is only confirmed.

The robot is ``sim.make("servo-quad")`` stepped in real time (``firmware_bridge.emulator.serve``), its
joints mounted as Petoi documents a Bittle's: an angle grows as the part below the joint swings
backwards, and every leg joint at 30 degrees (the "balance" posture) is the neutral stance. The stock
firmware interpolates to each new target; the emulated servos go there at their own speed instead.
``--silent``: a robot that answers nothing (another firmware, a wrong baud rate); ``boot_s``: the board
resets when its port opens and reads nothing until it has booted, then prints its start-up lines.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import struct
import sys
import time
from collections.abc import Sequence

import numpy as np

from firmware_bridge.emulator import FirmwareCounters, open_pty, serve
from firmware_bridge.faults import FaultSpec
from firmware_bridge.opencat import SLOTS, slot
from firmware_bridge.servo_body import ServoQuadBody

MODEL, VERSION = "Bittle", "emulated"
PROFILE = "launch/deploy/servo_quad_opencat.yaml"
NEUTRAL_DEGREES = 30  # OpenCat's "balance" posture: every hip and knee at 30 degrees
SERIAL_GAP_S = 0.005  # a lower-case command without a newline ends after this much silence
REST_LIMP_S = 0.5  # 'd': servos off this long after the rest posture is sent
INDEX_ROW = "".join(f"{i}\t" for i in range(SLOTS)) + "\r\n"  # the slot numbers above a table of angles


def opencat_ypr(quaternion: np.ndarray) -> tuple[float, float, float]:
    """Yaw, pitch, roll (degrees) as OpenCat prints them: the DMP's formulas on a body-to-world
    quaternion (w, x, y, z), the sensor mounted flat, x forward."""
    w, x, y, z = quaternion
    up = (2 * (x * z - w * y), 2 * (w * x + y * z), w * w - x * x - y * y + z * z)
    yaw = math.atan2(2 * x * y - 2 * w * z, 2 * w * w + 2 * x * x - 1)
    pitch = math.atan2(up[0], math.hypot(up[1], up[2]))
    roll = math.atan2(up[1], up[2])
    return math.degrees(yaw), math.degrees(pitch), math.degrees(roll)


class OpenCatFirmware:
    """The firmware's serial side and posture, driving a position-mode body (``servo_body.ServoQuadBody``).
    Duck-types :class:`firmware_bridge.emulator.Firmware` for :func:`serve`; ``now`` is always passed in."""

    state_rate_hz = 50  # serve() asks for a STATE this often; OpenCat streams none

    def __init__(self, body: ServoQuadBody, silent: bool = False, boot_s: float = 0.0) -> None:
        self.body, self.silent, self.boot_s = body, silent, boot_s
        self.booted = boot_s <= 0
        self.counters = FirmwareCounters()
        self.rx_errors = 0
        self.sticky = 0
        self.slots = [slot(joint) for joint in body.joint_names]
        self.angles = np.zeros(SLOTS, dtype=int)  # degrees, every slot, as 'j' lists them
        self.angles[self.slots] = np.round(self._degrees(body.safe_pose)).astype(int)  # boots at rest
        self.limp_at: float | None = None
        self._token: int | None = None  # command being read
        self._args = bytearray()
        self._last_byte = 0.0

    # --- joint angles: OpenCat degrees <-> the body's rad -----------------------------------------
    @staticmethod
    def _degrees(radians: np.ndarray) -> np.ndarray:
        return NEUTRAL_DEGREES - np.degrees(radians)

    def _targets(self) -> np.ndarray:
        return np.radians(NEUTRAL_DEGREES - self.angles[self.slots].astype(float))

    # --- input ------------------------------------------------------------------------------------
    def receive(self, data: bytes, now: float) -> list[bytes]:
        """Bytes from the host, as one read of the UART finds them; returns the lines printed."""
        if self.silent or now < self.boot_s:
            self.rx_errors += len(data)
            return []
        replies = []
        if not self.booted:
            self.booted = True
            replies.append(f"k\r\n* Start *\r\n{MODEL}\r\n{VERSION}\r\nReady!\r\n".encode())
        if self._token is not None and not data and now - self._last_byte > SERIAL_GAP_S:
            replies.append(self._finish(now))  # a lower-case command without its newline
        if data:
            self._last_byte = now
            if self._token is None:
                self._token, data = data[0], data[1:]
            self._args += data  # everything waiting now belongs to this command
            terminator = ord("~") if ord("A") <= self._token <= ord("Z") else ord("\n")
            if self._args and self._args[-1] == terminator:
                del self._args[-1]
                replies.append(self._finish(now))
        return replies

    def _finish(self, now: float) -> bytes:
        token, args = chr(self._token), bytes(self._args)
        self._token, self._args = None, bytearray()
        self.counters.frames_rx += 1
        return self._react(token, args, now) + f"{token}\r\n".encode()

    def _react(self, token: str, args: bytes, now: float) -> bytes:
        """What the firmware prints for a command before confirming it."""
        if token == "?":
            return f"{MODEL}\r\n{VERSION}\r\n".encode()
        if token == "j":
            return ("=" + INDEX_ROW + self._table(self.angles)).encode()
        if token == "v":
            return "{:.2f}\t{:.2f}\t{:.2f}\r\n".format(*opencat_ypr(self.body.sense().quaternion)).encode()
        if token in "IL":
            values = struct.unpack(f"{len(args)}b", args)
            if token == "L" and len(values) == SLOTS:
                self.angles[:] = values
            elif token == "I":
                for index, angle in zip(values[::2], values[1::2], strict=False):
                    if 0 <= index < SLOTS:
                        self.angles[index] = angle
            self._move(None)
            self.counters.commands += 1
            return b""
        if token == "d":
            self.angles[self.slots] = np.round(self._degrees(self.body.safe_pose)).astype(int)
            self._move(now + REST_LIMP_S)
            self.counters.safe_pose_requests += 1
            return b"g\r\n"
        if token == "c":
            self.angles[self.slots] = 0
            self._move(None)
            return ("=" + INDEX_ROW + self._table(np.zeros(SLOTS))).encode()
        if token == "k" and args.strip() == b"balance":
            self.angles[self.slots] = NEUTRAL_DEGREES
            self._move(None)
        return b""

    @staticmethod
    def _table(values: np.ndarray) -> str:
        return "".join(f"{int(v)},\t" for v in values) + "\r\n"

    def _move(self, limp_at: float | None) -> None:
        self.body.drive(self._targets())
        self.limp_at = limp_at

    # --- the rest of serve()'s firmware interface ----------------------------------------------------
    def control(self, now: float) -> None:
        if self.limp_at is not None and now >= self.limp_at:
            self.body.release()

    def state_frame(self, now: float) -> bytes:
        return b""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m firmware_bridge.opencat_emulator", description=__doc__)
    parser.add_argument("--silent", action="store_true", help="answer nothing (a robot that does not speak)")
    parser.add_argument("--seed", type=int, default=0, help="initial pose noise")
    parser.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (default: Ctrl-C)")
    args = parser.parse_args(argv)
    firmware = OpenCatFirmware(ServoQuadBody(seed=args.seed), args.silent)
    master, slave, path = open_pty()
    stop: dict[str, int | None] = {"signal": None}

    def on_signal(signum: int, frame: object) -> None:
        stop["signal"] = signum

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    quiet = " (silent)" if args.silent else ""
    print(f"emulating OpenCat firmware{quiet} with robot servo-quad on {path}", flush=True)
    print(f"connect with: controller --serial {path} --config {PROFILE}", flush=True)
    end = math.inf if args.duration is None else time.monotonic() + args.duration

    def stopped() -> bool:
        return stop["signal"] is not None or time.monotonic() > end

    try:
        stats, _, _ = serve(master, firmware, FaultSpec(), args.seed, stopped)
    finally:
        os.close(master)
        os.close(slave)
    body = firmware.body
    print(
        f"emulator stopped after {stats.seconds:.1f} s: {firmware.counters.commands} joint commands, "
        f"{firmware.counters.frames_rx} commands read, {firmware.counters.safe_pose_requests} rest; "
        f"torso moved {body.x - body.start_x:+.3f} m along x",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
