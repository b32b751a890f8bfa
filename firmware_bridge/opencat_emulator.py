"""An emulator of Petoi's stock OpenCat firmware (NyBoard, Bittle) on a pty, with the servo-quad as the robot.

``python -m firmware_bridge.opencat_emulator [--build B] [--untimed] [--silent] [--duration S]`` opens a
pseudo-terminal, prints its path and answers byte for byte as PetoiCamp/OpenCat at commit ``54da7b7``
(``SOFTWARE_VERSION "N_250224"``) does, in the firmware's own time: its main loop reads the IMU, then one
serial command, then reacts (``OpenCat.ino``, ``src/io.h``, ``src/reaction.h``). The builds
(``BUILDS``) differ in what ``v`` prints: ``default`` pitch and roll, ``read_acceleration`` (with
``#define READ_ACCELERATION`` in ``src/imu.h``) also two body-frame and one world-frame acceleration,
``ypr`` the yaw, pitch, roll of the firmware up to commit ``c87f42a`` (May 2023), ``other_modules``
(``#define OTHER_MODULES`` in ``OpenCat.ino``, which drops ``GYRO_PIN``: ``src/OpenCat.h:402-428``) no
IMU at all: no ``IMU`` boot line, no rest at boot, ``v`` and ``V`` confirmed only (its example
``otherModule()`` reads pin A2, taken as grounded: it prints nothing).

Emulated exactly: the boot lines, then the rest posture; ``?``, ``j`` (all or one slot), ``v``, ``V``
(printGyro: every new IMU reading printed as ``v`` prints it, ``src/imu.h:207``), ``I``, ``L``, ``d``,
``p``, ``g``, ``G``; the beep and its ``delay(5)`` before every command but ``I``, ``L``, ``b``, ``B``
(no command mutes it: ``b`` alone only flips the boot melody, ``src/reaction.h:315-317``); the ``G`` a
command prints when it follows ``d`` (gyro balancing back on), the ``p`` one prints after a pause; the slot
limits; the eased interpolation. Tokens with no case in the firmware's switch are confirmed only, as
there. Not emulated (confirmed only here): skills ``k``, ``K``, ``T``, calibration ``c``,
``m``/``M``/``i``, ``b``/``B`` (no sound; their 200 ms read timeout is emulated), ``s``, ``a``, the fall
recovery.

The timing model (``Timing``), each figure with its source or basis, makes a host that sends faster than
the robot can react wait as it would on a real one: ``untimed`` answers at once (the adapter's tests).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import signal
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from firmware_bridge.emulator import FirmwareCounters, open_pty, serve
from firmware_bridge.faults import FaultSpec
from firmware_bridge.opencat import SLOTS, slot
from firmware_bridge.servo_body import ServoQuadBody

MODEL, VERSION = "Bittle", "N_250224"  # src/OpenCat.h:169 and :1
BUILDS = ("default", "read_acceleration", "ypr", "other_modules")
PROFILE = "launch/deploy/servo_quad_opencat.yaml"
NEUTRAL_DEGREES = 30  # OpenCat's "balance" posture: every hip and knee at 30 degrees
# src/OpenCat.h:43-64, the Bittle's angleLimit per slot (written to EEPROM when the board is configured)
HEAD_LIMITS = [(-120, 120), (-85, 85), (-120, 120), (-120, 120), (-90, 60), (-90, 60), (-90, 90), (-90, 90)]
LIMITS = np.array(HEAD_LIMITS + [(-200, 80)] * 2 + [(-80, 200)] * 6)  # front hips 8-9, the rest 10-15
BOOT_ANGLES = (-30, -80, -45, 0, 0, 0, 0, 0, 75, 75, 75, 75, -55, -55, -55, -55)  # src/OpenCat.h:297-300
REST = BOOT_ANGLES[:4] + (-3, -3, 3, 3) + BOOT_ANGLES[8:]  # src/InstinctBittle.h:418-420
BOOT_LINES = f"k\r\n\n* Start *\r\n{MODEL}\r\n{VERSION}\r\nIMU\r\nServo:25.00\r\nSkill\r\nReady!\r\n".encode()
NO_IMU_BOOT_LINES = BOOT_LINES.replace(b"IMU\r\n", b"")  # imuSetup() only with GYRO_PIN (OpenCat.h:461)
NO_BEEP = "bBLI"  # src/reaction.h:64-75: every other serial token beeps, unconditionally
SKILL = "k"


@dataclass(frozen=True)
class Timing:
    """Seconds each thing costs on a NyBoard V1 (ATmega328P, 16 MHz). The I2C bus runs at 100 kHz:
    ``Wire.setClock(500000L)`` (OpenCat.ino:94) is undone by the PCA9685 driver's ``begin()``, which
    calls ``Wire.begin()`` again (Adafruit_PWMServoDriver.cpp:67; AVR ``twi_init`` sets TWBR for 100 kHz)."""

    byte: float = 10 / 115200  # one UART byte, 8N1 at BAUD_RATE 115200 (src/OpenCat.h:148)
    read_delay: float = 0.001  # delay(1) after a token (src/io.h:19)
    serial_gap: float = 0.005  # SERIAL_TIMEOUT (src/OpenCat.h:9): a command without terminator ends
    long_gap: float = 0.2  # SERIAL_TIMEOUT_LONG for 'K' and 'b'/'B' (src/io.h:24)
    beep: float = 0.005  # beep(15 + newCmdIdx, 5): delay(5) (src/reaction.h:75, src/sound.h:19-28)
    # one PCA9685 write, setPWM: 6 bytes of 9 bits plus start and stop, 56 bit times at 100 kHz
    # (Adafruit_PWMServoDriver.cpp:222-239), and the float maths of calibratedPWM (src/motion.h:99-114:
    # a cos, a division, EEPROM reads), estimated at 0.1 ms on a 16 MHz AVR (not measured)
    slot_write: float = 56 / 100e3 + 100e-6
    fifo_count: float = 49 / 100e3  # MPU6050 FIFO count: a 2-byte register write and a 3-byte read
    packet: float = 283 / 100e3 + 500e-6  # a 28-byte DMP packet (31 bytes on the bus) and the ypr maths
    dmp_period: float = 0.01  # the DMP fills its FIFO at 100 Hz (MPU6050_6Axis_MotionApps_V6_12.h:349,368)
    loop: float = 100e-6  # the rest of an idle loop pass (infrared, battery check): an estimate
    ease_step: int = 4  # degrees per interpolation frame of 'I' (src/reaction.h:406, src/motion.h:147)
    rest_step: int = 2  # 'd' loads "rest" with transformSpeed 2 (src/skill.h:323)
    list_step: int = 2  # 'L': transformSpeed (src/OpenCat.h:356, src/reaction.h:438)

    @property
    def frame(self) -> float:
        """One interpolation frame: all 16 slots written (src/motion.h:148-155)."""
        return SLOTS * self.slot_write

    def frames(self, largest_change: float, step: int) -> int:
        """Frames of an eased move: round(largest change / step) + 1 (src/motion.h:147-148)."""
        return math.floor(largest_change / step + 0.5) + 1


UNTIMED = Timing(byte=0.0, read_delay=0.0, beep=0.0, slot_write=0.0, fifo_count=0.0, packet=0.0, loop=0.0)
ATOI = re.compile(rb"\s*([+-]?\d+)")


def arduino_float(value: float, digits: int) -> str:
    """``Serial.print(value, digits)`` on an AVR, where a double is a float: the rounding is added, then the
    digits are peeled off one at a time (ArduinoCore-avr ``Print::printFloat``)."""
    f = np.float32
    x = f(value)
    if np.isnan(x):
        return "nan"
    if np.isinf(x):
        return "inf"
    if abs(x) > f(4294967040.0):
        return "ovf"
    sign = "-" if x < 0 else ""
    x = abs(x)
    rounding = f(0.5)
    for _ in range(digits):
        rounding = f(rounding / f(10.0))
    x = f(x + rounding)
    whole = int(x)
    remainder = f(x - f(whole))
    text = f"{sign}{whole}" + ("." if digits else "")
    for _ in range(digits):
        remainder = f(remainder * f(10.0))
        digit = int(remainder)
        text += str(digit)
        remainder = f(remainder - f(digit))
    return text


def dmp_gravity(quaternion: np.ndarray) -> np.ndarray:
    """The DMP's "gravity": the up direction in the sensor frame (MPU6050_6Axis_MotionApps_V6_12.h:528)."""
    w, x, y, z = quaternion
    return np.array([2 * (x * z - w * y), 2 * (w * x + y * z), w * w - x * x - y * y + z * z])


def opencat_ypr(quaternion: np.ndarray) -> tuple[float, float, float]:
    """Yaw, pitch, roll (degrees) as the DMP library computes them from a body-to-world quaternion
    (w, x, y, z), the sensor mounted flat, x forward (MPU6050_6Axis_MotionApps_V6_12.h:528-572)."""
    w, x, y, z = quaternion
    up = dmp_gravity(quaternion)
    yaw = math.atan2(2 * x * y - 2 * w * z, 2 * w * w + 2 * x * x - 1)
    pitch = math.atan2(up[0], math.hypot(up[1], up[2]))
    roll = math.atan2(up[1], up[2])
    if up[2] < 0:  # upside down: the library folds the pitch over
        pitch = (math.pi if pitch > 0 else -math.pi) - pitch
    return math.degrees(yaw), math.degrees(pitch), math.degrees(roll)


def rotate(quaternion: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """``vector`` turned by ``quaternion`` (q v q*), as VectorInt16::rotate (helper_3dmath.h:127-150)."""
    w, x, y, z = quaternion
    r = np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])  # fmt: skip
    return r @ vector


class OpenCatFirmware:
    """The firmware's loop, serial side and servos, driving a position-mode body (``ServoQuadBody``).
    Duck-types :class:`firmware_bridge.emulator.Firmware` for :func:`serve`; ``now`` is always passed in."""

    state_rate_hz = 50  # serve() asks for a STATE this often; OpenCat streams none

    def __init__(
        self,
        body: ServoQuadBody,
        build: str = "default",
        timing: Timing | None = None,
        silent: bool = False,
        boot_s: float = 0.0,
        seed: int = 0,
    ) -> None:
        if build not in BUILDS:
            raise ValueError(f"OpenCat build {build!r} is not one of {', '.join(BUILDS)}")
        self.body, self.build, self.silent, self.boot_s = body, build, silent, boot_s
        self.timing = Timing() if timing is None else timing
        self.rng = np.random.default_rng(seed)
        self.counters = FirmwareCounters()
        self.rx_errors = 0  # bytes sent while the board could not hear them
        self.rx_overflows = 0  # bytes lost to a full 64-byte receive buffer
        self.beeps = 0  # reactions that beeped, the boot's rest included (newCmdIdx 2, OpenCat.h:522)
        self.sticky = 0
        self.slots = [slot(joint) for joint in body.joint_names]
        self.angles = np.array(BOOT_ANGLES)  # currentAng: degrees, every slot, as 'j' lists them
        self.imu = build != "other_modules"  # GYRO_PIN defined: the IMU code is compiled in
        self.gyro_balance = True  # gyroBalanceQ (src/OpenCat.h:342): the loop reads the IMU only while on
        self.print_gyro = False  # printGyro (src/OpenCat.h:343), toggled by 'V'
        self.fine_adjust = True  # fineAdjust (src/OpenCat.h:341), toggled by 'g'
        self.paused = False  # tStep == 0 after 'p'
        self.last_token = ""
        self.clock = boot_s  # where the firmware's loop has got to
        self.booted = False
        self.ypr = np.zeros(3)  # the last IMU reading, degrees
        self.accel = np.zeros(3, dtype=int)  # aaReal.x, aaReal.y, aaWorld.z (READ_ACCELERATION)
        self._gravity = np.zeros(3)  # the DMP's gravity vector of the previous reading
        self._packets = 0  # DMP packets taken from the FIFO so far
        self._rx: deque[tuple[float, int]] = deque()  # bytes waiting, with their arrival times
        self._rx_free = 0.0  # when the host-to-robot line is free
        self._tx_free = 0.0  # when the robot-to-host line is free
        self._out: deque[tuple[float, bytes]] = deque()  # printed bytes and when the host has them
        self._events: deque[tuple[float, np.ndarray | None]] = deque()  # servo targets (None: off)
        self._token: tuple[str, float] | None = None  # the command being read, and when its token was
        self._boot_rest = False  # the first loop's rest (src/OpenCat.h:521), unless a command came first

    # --- input and output -------------------------------------------------------------------------
    def receive(self, data: bytes, now: float) -> list[bytes]:
        """Bytes from the host, as one read of the UART finds them; returns what the host gets by now."""
        if self.silent or now < self.boot_s:
            self.rx_errors += len(data)
            return []
        if not self.booted:
            self.booted = True
            self._print(BOOT_LINES if self.imu else NO_IMU_BOOT_LINES, self.boot_s)
            self._move(np.array(BOOT_ANGLES), 0, self.boot_s)  # soft boot: allCalibratedPWM (OpenCat.h:529)
            self._boot_rest = self.imu  # the first token is T_REST only after the IMU's readings (:516-523)
        self._run(now)
        for byte in data:
            if len(self._rx) >= 63:
                self.rx_overflows += 1
                continue
            self._rx_free = max(now, self._rx_free) + self.timing.byte
            self._rx.append((self._rx_free, byte))
        self._run(now)
        out = []
        while self._out and self._out[0][0] <= now:
            out.append(self._out.popleft()[1])
        return out

    def _print(self, text: bytes, t: float) -> float:
        """Queue ``text`` on the serial line at ``t``; returns when the CPU goes on (it waits while more
        than the 64-byte transmit buffer is queued)."""
        done = max(t, self._tx_free) + len(text) * self.timing.byte
        self._tx_free = done
        self._out.append((done, text))
        return max(t, done - 63 * self.timing.byte)

    # --- the main loop ------------------------------------------------------------------------------
    def _run(self, now: float) -> None:
        """Run the firmware's loop up to ``now``: IMU, serial, reaction, as ``loop()`` in OpenCat.ino."""
        while True:
            if self._token is None:
                reading = self.imu and self.gyro_balance  # readEnvironment() (src/imu.h:232-235)
                imu, packet = self._imu_cost(self.clock) if reading else (0.0, 0)
                check = self.clock + imu
                if check > now:
                    return
                if reading:
                    check = self._read_imu(packet, check)
                if self._rx and self._rx[0][0] <= check:
                    self._token = (chr(self._rx.popleft()[1]), check)
                    self.counters.frames_rx += 1
                elif self._boot_rest:
                    self._boot_rest = False
                    self.clock = self._react("d", b"", check)
                    continue
                else:  # idle passes until the next byte or now, each taking the newest packet
                    until = min(self._rx[0][0] if self._rx else now, now)
                    if reading and self.print_gyro:  # every packet is printed: stop at the next one
                        until = min(until, (self._packets + 1) * self.timing.dmp_period)
                    idle = max(check + self.timing.loop, until)
                    if idle <= self.clock:
                        return
                    self.clock = idle
                    if reading and not self.print_gyro:
                        self._read_imu(self._packet_at(idle), idle)
                    continue
            token, start = self._token
            read = self._read_command(token, start, now)
            if read is None:
                return
            self._token = None
            end, args = read
            self.counters.safe_pose_requests += token == "d"  # the host's rests, not the boot's
            self.clock = self._react(token, args, end)

    def _read_command(self, token: str, start: float, now: float) -> tuple[float, bytes] | None:
        """read_serial() (src/io.h:13-60): after delay(1), bytes until the terminator is the last one read
        or none came for the timeout. None while that cannot be known yet."""
        terminator = ord("~") if token.isupper() else ord("\n")
        gap = self.timing.long_gap if token in "Kb" or token == "B" else self.timing.serial_gap
        last = start + self.timing.read_delay
        count = 0
        while count < len(self._rx) and self._rx[count][0] <= last:
            count += 1
        while not (count and self._rx[count - 1][1] == terminator):
            if count < len(self._rx) and self._rx[count][0] - last < gap:
                last = self._rx[count][0]
                count += 1
            elif count < len(self._rx) or last + gap <= now:
                last += gap  # timed out
                break
            else:
                return None
        args = bytes(self._rx.popleft()[1] for _ in range(count))
        return last, args[:-1] if args and args[-1] == terminator else args

    # --- the IMU ----------------------------------------------------------------------------------
    def _imu_cost(self, t: float) -> tuple[float, int]:
        """What read_IMU() (src/imu.h:189-230) costs at ``t``, and the DMP packet it reads: the FIFO count,
        the packets waiting (all but the newest read and thrown away), or with more than 200 bytes a reset
        and a wait for the next packet (MPU6050.cpp:2760-2790)."""
        timing = self.timing
        newest = self._packet_at(t)
        waiting = newest - self._packets
        if waiting <= 0:
            return timing.fifo_count, newest
        if waiting * 28 > 200:
            return (newest + 1) * timing.dmp_period - t + timing.fifo_count + timing.packet, newest + 1
        return waiting * (timing.fifo_count + timing.packet), newest

    def _packet_at(self, t: float) -> int:
        """The newest DMP packet at ``t``; one due at ``t`` counts (``t`` may be its time computed as a
        sum: without the margin an idle loop that waits for that packet would wait forever, untimed)."""
        return math.floor(t / self.timing.dmp_period + 1e-9)

    def _read_imu(self, packet: int, t: float) -> float:
        """A new reading at ``t`` if ``packet`` is newer than the last one read, printed while printGyro
        is on (src/imu.h:189-208); returns when the CPU goes on."""
        if packet <= self._packets:
            return t
        self._packets = packet
        q = np.floor(self.body.sense().quaternion * 16384) / 16384  # the packet's 16-bit quaternion
        self.ypr = np.array(opencat_ypr(q))
        if self.build == "read_acceleration":
            # dmpGetLinearAccel runs before dmpGetGravity (src/imu.h:196-201): last reading's gravity
            data, model = self.body.robot.data, self.body.robot.model
            rotation = rotate(q * np.array([1, -1, -1, -1]), data.qacc[0:3] - model.opt.gravity)
            raw = np.trunc(rotation / 9.81 * 8192)  # +1 g = 8192 (V6_12.h:498)
            real = np.trunc(raw - self._gravity * 8192)
            world = np.trunc(rotate(q, real))
            self.accel = np.array([real[0], real[1], world[2]], dtype=int)
            self._gravity = dmp_gravity(q)
        return self._print(self._imu_line(), t) if self.print_gyro else t

    def _imu_line(self) -> bytes:
        """print6Axis() (src/imu.h:168-188) for this build."""
        columns = [arduino_float(v, 5) for v in (self.ypr if self.build == "ypr" else self.ypr[1:])]
        if self.build == "read_acceleration":
            columns += [str(v) for v in self.accel]
        return ("\t".join(columns) + "\r\n").encode()

    # --- servos -----------------------------------------------------------------------------------
    def _move(self, target: np.ndarray, step: int, t: float) -> float:
        """transform() (src/motion.h:122-158): eased frames from the current angles to ``target``, each
        slot clamped to its limits; returns when the last frame is written."""
        diff = self.angles - target
        frames = self.timing.frames(np.abs(diff).max(), step) if step else 1
        for s in range(frames):
            ease = (1 + math.cos(math.pi * s / (frames - 1))) / 2 if frames > 1 else 0.0
            angles = np.clip(target + ease * diff, LIMITS[:, 0], LIMITS[:, 1])
            t += self.timing.frame
            self._events.append((t, angles[self.slots]))
        self.angles = np.trunc(angles).astype(int)
        return t

    def _shut(self, t: float) -> float:
        """pwm.shutServos() (src/PCA9685servo.h:150-159): 16 writes, then no pulses."""
        t += SLOTS * (self.timing.slot_write)
        self._events.append((t, None))
        return t

    def control(self, now: float) -> None:
        """The servos get each frame when its writes are done."""
        while self._events and self._events[0][0] <= now:
            angles = self._events.popleft()[1]
            if angles is None:
                self.body.release()
            else:
                self.body.drive(np.radians(NEUTRAL_DEGREES - angles))

    def state_frame(self, now: float) -> bytes:
        return b""

    # --- reaction() ---------------------------------------------------------------------------------
    def _react(self, token: str, args: bytes, t: float) -> float:
        """What reaction() (src/reaction.h:60-525) prints and does for one command; returns when done."""
        if token not in NO_BEEP:
            t += self.timing.beep
            self.beeps += 1
        if self.last_token in ("c", "d") and token != "c":
            self.gyro_balance = True
            t = self._print(b"G\r\n", t)
        if token != "p" and self.paused:
            self.paused = False
            t = self._print(b"p\r\n", t)
        if token == "?":
            t = self._print(f"{MODEL}\r\n{VERSION}\r\n".encode(), t)
        elif token in "gG" and not self.imu:
            token = "g"  # without GYRO_PIN both only answer g (src/reaction.h:116-129)
        elif token == "g":
            self.fine_adjust = not self.fine_adjust
            token = "G" if self.fine_adjust else "g"
        elif token == "G":
            self.gyro_balance = not self.gyro_balance
            token = "G" if self.gyro_balance else "g"
        elif token == "v" and self.imu:
            t = self._print(self._imu_line(), t)
        elif token == "V" and self.imu:
            self.print_gyro = not self.print_gyro
            token = "V" if self.print_gyro else "v"
        elif token == "p":
            self.paused = not self.paused
            if self.paused:
                token = "P"
                t = self._shut(t)
            else:
                token = SKILL  # the last posture is performed again: servos on
                self._events.append((t, self.angles[self.slots].astype(float)))
        elif token == "j":
            number = ATOI.match(args)
            index = int(number.group(1)) if number else 0  # atoi()
            row = "".join(f"{i}\t" for i in range(SLOTS)) + "\r\n" + "".join(f"{a},\t" for a in self.angles)
            one = str(self.angles[index]) if 0 <= index < SLOTS else "0"
            t = self._print(("=" + (one if args else row) + "\r\n").encode(), t)
        elif token == "I" and len(args) >= 2:
            target = self.angles.copy()
            pairs = np.frombuffer(args + b"~", dtype=np.int8)  # an odd count's last angle is the '~'
            moved_legs = False
            for index, angle in zip(pairs[0 : len(args) : 2], pairs[1 : len(args) + 1 : 2], strict=True):
                if 0 <= index < SLOTS:
                    target[index] = angle
                    moved_legs |= index >= 4
            if moved_legs or self.last_token != SKILL:
                t = self._move(target, self.timing.ease_step, t)
                self.counters.commands += 1
        elif token == "L":
            values = np.frombuffer((args + b"~" + bytes(SLOTS))[:SLOTS], dtype=np.int8).astype(int)
            t = self._move(values, self.timing.list_step, t)
            self.counters.commands += 1
        elif token == "d":
            rest = np.array(REST, dtype=float) + self.rng.integers(0, 100) / 10 - 5  # protective shift
            rest = np.trunc(rest)
            if self.rng.integers(0, 2):  # mirror(): a posture's head pan and tail change sign
                rest[[0, 2]] = -rest[[0, 2]]
            t = self._shut(self._move(rest, self.timing.rest_step, t))
            self.gyro_balance = False
            t = self._print(b"g\r\n", t)
        t = self._print(f"{token}\r\n".encode(), t)
        if self.last_token == SKILL and (token in "jpP" or token.lower() in "giv"):
            token = SKILL
        self.last_token = token
        return t


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m firmware_bridge.opencat_emulator", description=__doc__)
    parser.add_argument("--build", choices=BUILDS, default="default", help="what 'v' prints (see above)")
    parser.add_argument("--untimed", action="store_true", help="answer at once, no firmware timing")
    parser.add_argument("--silent", action="store_true", help="answer nothing (a robot that does not speak)")
    parser.add_argument("--seed", type=int, default=0, help="initial pose noise, the rest posture's shift")
    parser.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (default: Ctrl-C)")
    args = parser.parse_args(argv)
    timing = UNTIMED if args.untimed else Timing()
    firmware = OpenCatFirmware(ServoQuadBody(seed=args.seed), args.build, timing, args.silent, seed=args.seed)
    master, slave, path = open_pty()
    stop: dict[str, int | None] = {"signal": None}

    def on_signal(signum: int, frame: object) -> None:
        stop["signal"] = signum

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    quiet = " (silent)" if args.silent else ""
    build = f"OpenCat firmware {VERSION}, {args.build} build{quiet}"
    print(f"emulating {build}, robot servo-quad on {path}", flush=True)
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
