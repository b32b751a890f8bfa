"""A firmware emulator: plays a robot's microcontroller on a pseudo-terminal, with MuJoCo as the robot.

Three layers, so each can be tested on its own:

- a *body* (:class:`AntBody`): the simulated hardware, driven through motor commands and read
  through sensors, advancing one physics step at a time;
- the *firmware* (:class:`Firmware`): the protocol state machine a real microcontroller runs
  (session, command watchdog, safe pose, emergency stop, and on-board mode: the genome's network as
  the robot's own compiled C, ``firmware_bridge/onboard.py``), with time passed in, never read;
- :func:`serve`: the real-time driver that steps both at the physics rate against the wall clock
  and moves bytes between the firmware and a pty master, through optional link faults.

The host cannot tell this from a robot on a USB serial adapter: it opens the pty's slave path.
"""

from __future__ import annotations

import contextlib
import math
import os
import select
import signal
import subprocess
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from firmware_bridge.body import Body, Sensors
from firmware_bridge.errors import FrameError
from firmware_bridge.faults import FaultSpec, Impairment
from firmware_bridge.framing import Deframer
from firmware_bridge.onboard import OnboardProgram, PlasticKernel
from firmware_bridge.protocol import (
    CAP_BASE_ESTIMATE,
    CAP_ONBOARD,
    EFFORT,
    ERROR_ESTOPPED,
    ERROR_NOT_READY,
    ERROR_PAYLOAD,
    ERROR_TYPE,
    ERROR_VERSION,
    FAULT_CLAMPED,
    FAULT_ESTOP,
    FAULT_IDLE,
    FAULT_OVERRUN,
    FAULT_RX_ERROR,
    FAULT_SAFE_POSE,
    FAULT_WATCHDOG,
    LEADING_ZERO,
    MAX_ENCODED,
    MODE_NAMES,
    ONBOARD_ESTOP,
    ONBOARD_SAFE_POSE,
    ONBOARD_STATUS_NAMES,
    ONBOARD_STOPPED,
    ONBOARD_WATCHDOG,
    PROTOCOL_VERSION,
    REASON_NAMES,
    BaseEstimate,
    Command,
    Error,
    Estop,
    Heartbeat,
    Hello,
    Info,
    Message,
    OnboardStart,
    OnboardStop,
    SafePose,
    State,
    decode,
    encode,
)
from firmware_bridge.servo_body import ServoQuadBody


class AntBody:
    """The MuJoCo Ant (``sim.make("ant")``) as hardware: 8 torque motors, an IMU, 4 foot switches,
    and a perfect base estimate (the simulator knows height and velocity)."""

    name = "ant"
    control_mode = EFFORT
    capabilities = CAP_BASE_ESTIMATE
    KP = 2.0  # safe-pose hold: effort per rad of error (x gear 150 = 300 N m/rad)
    KD = 0.1  # effort per rad/s

    def __init__(self, seed: int = 0, physics_hz: float = 500.0) -> None:
        import mujoco

        import sim
        from sim.ant import INIT_QPOS, leg_geom

        self._step = mujoco.mj_step
        self.env = sim.make("ant", timestep=1.0 / physics_hz, frame_skip=1)
        self.env.reset(seed=seed)
        ant = self.env.unwrapped
        self.model, self.data = ant.model, ant.data
        joints = [self.model.joint(name) for name in ant.joints]
        self.joint_names = tuple(ant.joints)
        self.joint_lower = tuple(float(j.range[0]) for j in joints)
        self.joint_upper = tuple(float(j.range[1]) for j in joints)
        self._qpos = np.array([j.qposadr[0] for j in joints])
        self._qvel = np.array([j.dofadr[0] for j in joints])
        self.safe_pose = np.asarray(INIT_QPOS)[self._qpos]
        self._feet = np.array([self.model.geom(leg_geom(leg)).id for leg in ant.legs])
        self.n_feet = len(self._feet)
        self.dt = float(self.model.opt.timestep)
        self.start_x = self.x

    @property
    def x(self) -> float:
        """Torso position along the walking direction (m)."""
        return float(self.data.qpos[0])

    def drive(self, command: np.ndarray) -> None:
        self.data.ctrl[:] = command

    def hold(self) -> None:
        """Servo to the safe pose (a crouch on all four feet) with a PD loop on the motors."""
        error = self.safe_pose - self.data.qpos[self._qpos]
        self.data.ctrl[:] = np.clip(self.KP * error - self.KD * self.data.qvel[self._qvel], -1.0, 1.0)

    def release(self) -> None:
        """Motors off."""
        self.data.ctrl[:] = 0.0

    def step(self) -> None:
        self._step(self.model, self.data)

    def sense(self) -> Sensors:
        qpos, qvel, contact = self.data.qpos, self.data.qvel, self.data.contact
        touching = np.isin(self._feet, contact.geom1) | np.isin(self._feet, contact.geom2)
        return Sensors(
            joint_pos=qpos[self._qpos],
            joint_vel=qvel[self._qvel],
            quaternion=qpos[3:7],
            gyro=qvel[3:6],
            contacts=int(np.dot(touching, 1 << np.arange(self.n_feet))),
            base=BaseEstimate(float(qpos[2]), tuple(float(v) for v in qvel[0:3])),
        )


BODIES: dict[str, Callable[..., Body]] = {"ant": AntBody, "servo-quad": ServoQuadBody}


@dataclass
class FirmwareCounters:
    frames_rx: int = 0
    commands: int = 0
    watchdog_trips: int = 0
    estops: int = 0
    safe_pose_requests: int = 0
    errors_sent: int = 0
    lifetimes: int = 0  # on-board lifetimes started


@dataclass
class Firmware:
    """The microcontroller's logic. ``now`` (s, the MCU clock) is always passed in.

    Modes: idle (safe pose until the first COMMAND of a session), commanding, safe pose
    (requested, or the watchdog: no COMMAND for ``watchdog_ms``), and a latched emergency stop
    (motors off) that only a new HELLO clears; with ``onboard``, an on-board lifetime (the robot runs
    its network; HEARTBEAT feeds the watchdog).
    """

    body: Body
    state_rate_hz: int = 250
    max_rate_hz: int = 500
    watchdog_ms: int = 100
    log: Callable[[float, str], None] = lambda now, text: None
    counters: FirmwareCounters = field(default_factory=FirmwareCounters)
    onboard: OnboardProgram | None = None

    def __post_init__(self) -> None:
        self.session = False
        self.idle = True  # no COMMAND since boot or the last HELLO
        self.estop = False
        self.command: np.ndarray | None = None  # None: not commanding -> safe pose (or motors off)
        self.watchdog_tripped = False
        self.last_command_time = 0.0
        self.last_command_seq = 0
        self.rx_errors = 0
        self.sticky = 0  # fault bits reported once, in the next STATE
        self._seq = 0
        self._deframer = Deframer(MAX_ENCODED)
        n = len(self.body.joint_names)
        if self.body.control_mode == EFFORT:
            self.lower, self.upper = np.full(n, -1.0), np.full(n, 1.0)
        else:
            self.lower, self.upper = np.array(self.body.joint_lower), np.array(self.body.joint_upper)

    @property
    def onboard_running(self) -> bool:
        return self.onboard is not None and self.onboard.running

    def info(self) -> Info:
        b = self.body
        caps = b.capabilities | (CAP_ONBOARD if self.onboard is not None else 0)
        return Info(
            b.name, b.control_mode, b.joint_names, b.joint_lower, b.joint_upper, b.n_feet,
            self.max_rate_hz, self.state_rate_hz, self.watchdog_ms, caps,
        )  # fmt: skip

    def _frame(self, message: Message) -> bytes:
        seq, self._seq = self._seq, (self._seq + 1) & 0xFFFF
        return (b"\x00" if message.TYPE in LEADING_ZERO else b"") + encode(message, seq)

    def _error(self, code: int, seq: int, text: str) -> bytes:
        self.counters.errors_sent += 1
        return self._frame(Error(code, seq, text))

    # --- input ----------------------------------------------------------------------------
    def receive(self, data: bytes, now: float) -> list[bytes]:
        """Handle incoming bytes; returns the frames to send back (INFO, echoes, ERRORs)."""
        replies = []
        frames, overflows = self._deframer.feed(data)
        self.rx_errors += overflows
        if overflows:  # an over-long run is a bad frame, as in the reference sketch
            self.sticky |= FAULT_RX_ERROR
        for raw in frames:
            try:
                seq, message = decode(raw)
            except FrameError as exc:
                self.rx_errors += 1
                self.sticky |= FAULT_RX_ERROR
                if exc.reason == "version":
                    replies.append(
                        self._error(ERROR_VERSION, 0, f"firmware speaks protocol v{PROTOCOL_VERSION}")
                    )
                continue
            self.counters.frames_rx += 1
            reply = self._handle(seq, message, now)
            if reply:
                replies.append(reply)
        return replies

    def _handle(self, seq: int, message: Message, now: float) -> bytes | None:
        if isinstance(message, Hello):
            ended = self._end_lifetime(ONBOARD_STOPPED, now, "a new HELLO")
            if not (self.session and self.idle):  # repeated HELLOs of one handshake: log the first
                self.log(now, "HELLO: session started, holding the safe pose until the first COMMAND")
            self.session, self.idle, self.estop = True, True, False
            self.command, self.watchdog_tripped = None, False
            return ended + self._frame(self.info())
        if isinstance(message, Heartbeat):
            if self.onboard_running:
                self.last_command_time = now
            return self._frame(message)
        if isinstance(message, Estop):
            ended = self._end_lifetime(ONBOARD_ESTOP, now, "ESTOP")
            self.estop, self.command = True, None
            self.counters.estops += 1
            self.log(now, f"ESTOP ({REASON_NAMES[message.reason]}): motors off until the next HELLO")
            return ended or None
        if isinstance(message, SafePose):
            ended = self._end_lifetime(ONBOARD_SAFE_POSE, now, "SAFE_POSE")
            self.command = None
            self.counters.safe_pose_requests += 1
            self.log(now, f"SAFE_POSE requested ({REASON_NAMES[message.reason]})")
            return ended or None
        if isinstance(message, Command) and not self.onboard_running:
            return self._command(seq, message, now)
        if isinstance(message, OnboardStart) and self.onboard is not None:
            return self._start_lifetime(seq, message, now)
        if isinstance(message, OnboardStop) and self.onboard is not None:
            return self._end_lifetime(ONBOARD_STOPPED, now, "ONBOARD_STOP") or self._telemetry(now)
        if isinstance(message, Command):
            return self._error(ERROR_TYPE, seq, "an on-board lifetime runs; send ONBOARD_STOP first")
        return self._error(ERROR_TYPE, seq, f"unexpected message type 0x{message.TYPE:02x}")

    # --- on-board mode --------------------------------------------------------------------
    def _telemetry(self, now: float) -> bytes:
        assert self.onboard is not None
        return self._frame(self.onboard.telemetry(now))

    def _start_lifetime(self, seq: int, message: OnboardStart, now: float) -> bytes:
        assert self.onboard is not None
        if refused := self._refuse_move(seq):
            return refused
        self.onboard.start(seq, message, now)
        self.command, self.idle, self.watchdog_tripped = None, False, False
        self.last_command_time = now  # the watchdog counts from the start
        self.counters.lifetimes += 1
        limit = f"{message.ticks} ticks" if message.ticks else "no tick limit"
        self.log(now, f"ONBOARD_START seq {seq}: on-board lifetime, seed {message.seed}, {limit}")
        return self._telemetry(now)

    def _end_lifetime(self, status: int, now: float, why: str) -> bytes:
        """End a running lifetime (safe pose from the next step); its last telemetry, or b"" if none ran."""
        if not self.onboard_running:
            return b""
        assert self.onboard is not None
        self.onboard.end(status, why)
        self._log_end(now)
        return self._telemetry(now)

    def _log_end(self, now: float) -> None:
        assert self.onboard is not None
        status = ONBOARD_STATUS_NAMES[self.onboard.status]
        self.log(now, f"on-board lifetime ended ({status}: {self.onboard.detail}) after "
                      f"{self.onboard.ticks} network ticks")  # fmt: skip

    def _refuse_move(self, seq: int) -> bytes | None:
        """The ERROR for a request to move the servos (COMMAND, ONBOARD_START) out of a session or under
        a latched ESTOP; None when it may be obeyed."""
        if not self.session:
            return self._error(ERROR_NOT_READY, seq, "send HELLO first")
        if self.estop:
            return self._error(ERROR_ESTOPPED, seq, "emergency stop latched; send HELLO to clear")
        return None

    def _command(self, seq: int, message: Command, now: float) -> bytes | None:
        if refused := self._refuse_move(seq):
            return refused
        targets = np.asarray(message.targets)
        if targets.size != self.lower.size or not np.all(np.isfinite(targets)):
            return self._error(ERROR_PAYLOAD, seq, f"need {self.lower.size} finite targets")
        clamped = np.clip(targets, self.lower, self.upper)
        if not np.array_equal(clamped, targets):
            self.sticky |= FAULT_CLAMPED
        if self.command is None:
            self.log(now, f"commanding from COMMAND seq {seq}")
        self.command, self.watchdog_tripped, self.idle = clamped, False, False
        self.last_command_time, self.last_command_seq = now, seq
        self.counters.commands += 1
        return None

    # --- control and output ---------------------------------------------------------------
    def control(self, now: float) -> list[bytes]:
        """Run the watchdog and set the motors for the next physics step; the frames to send
        (on-board mode's telemetry)."""
        if self.onboard_running:
            return self._onboard_control(now)
        if self.command is not None and now - self.last_command_time > self.watchdog_ms * 1e-3:
            gap_ms = (now - self.last_command_time) * 1e3
            self.log(
                now,
                f"watchdog: no COMMAND for {gap_ms:.0f} ms (limit {self.watchdog_ms} ms, last seq "
                f"{self.last_command_seq} at {self.last_command_time:.3f} s) -> safe pose",
            )
            self.command, self.watchdog_tripped = None, True
            self.counters.watchdog_trips += 1
        if self.estop:
            self.body.release()
        elif self.command is None:
            self.body.hold()
        else:
            self.body.drive(self.command)
        return []

    def _onboard_control(self, now: float) -> list[bytes]:
        """The on-board lifetime's physics step: the watchdog on HEARTBEAT, then the program's tick."""
        assert self.onboard is not None
        gap = now - self.last_command_time
        if gap > self.watchdog_ms * 1e-3:
            self.watchdog_tripped = True
            self.counters.watchdog_trips += 1
            why = f"no HEARTBEAT for {gap * 1e3:.0f} ms, limit {self.watchdog_ms} ms"
            ended = self._end_lifetime(ONBOARD_WATCHDOG, now, why)
            self.body.hold()
            return [ended]
        due = self.onboard.step(now, lambda: self._state(now))
        if self.onboard.clamped:
            self.sticky |= FAULT_CLAMPED
            self.onboard.clamped = False
        if self.onboard.command is None:
            self.body.hold()
        else:
            self.body.drive(self.onboard.command)
        if not self.onboard.running:
            self._log_end(now)
        return [self._telemetry(now)] if due else []

    def faults(self) -> int:
        bits = self.sticky
        if self.estop:
            bits |= FAULT_ESTOP
        elif self.command is None and not self.onboard_running:
            bits |= FAULT_SAFE_POSE | (FAULT_WATCHDOG if self.watchdog_tripped else 0)
        return bits | (FAULT_IDLE if self.idle else 0)

    def _state(self, now: float) -> State:
        """What the sensors read now, as a STATE (the on-board program reads the same)."""
        s = self.body.sense()
        return State(
            int(now * 1e6) & 0xFFFFFFFF, self.last_command_seq, self.faults(), self.rx_errors & 0xFFFF,
            tuple(s.joint_pos), tuple(s.joint_vel), tuple(s.quaternion), tuple(s.gyro),
            self.body.n_feet, s.contacts, s.base,
        )  # fmt: skip

    def state_frame(self, now: float) -> bytes:
        state = self._state(now)
        self.sticky = 0
        return self._frame(state)


def open_pty() -> tuple[int, int, str]:
    """A raw pseudo-terminal: (master fd, non-blocking; slave fd, kept open; slave path)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    return master, slave, os.ttyname(slave)


@dataclass
class ServeStats:
    seconds: float = 0.0
    steps: int = 0
    overruns: int = 0  # physics steps more than 100 ms behind the wall clock (time skipped)
    tx_overflow_bytes: int = 0  # written while nobody read the port (UART overrun)


def _read_waiting(master: int, inbound: Impairment, now: float) -> None:
    """Everything waiting in the port, into the host-to-robot impairment."""
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(master, 65536):
            inbound.push(chunk, now)


def serve(
    master: int,
    firmware: Firmware,
    faults: FaultSpec,
    seed: int = 0,
    should_stop: Callable[[], bool] = lambda: False,
) -> tuple[ServeStats, Impairment, Impairment]:
    """Run the emulated robot in real time on ``master`` until ``should_stop()``.

    Every physics step: read and handle incoming bytes, run the firmware (watchdog, motors), step
    the body; every ``physics_hz / state_rate_hz`` steps: send a STATE. Returns the run's figures
    and the two impaired directions (host to robot, robot to host) with their byte counts.
    """
    rng = np.random.default_rng(seed)
    inbound, outbound = Impairment(faults, rng), Impairment(faults, rng)
    body, stats = firmware.body, ServeStats()
    state_every = max(1, round(1.0 / (body.dt * firmware.state_rate_hz)))
    start = time.monotonic()
    next_step = start
    pending = b""
    while not should_stop():
        now = time.monotonic()
        try:
            ready, _, _ = select.select([master], [], [], max(0.0, next_step - now))
        except InterruptedError:
            continue
        now = time.monotonic()
        if ready:
            _read_waiting(master, inbound, now)
        for frame in firmware.receive(inbound.pop(now), now - start):
            outbound.push(frame, now)
        if now >= next_step:
            # on-board telemetry; a firmware without on-board mode (OpenCat's) returns None
            for frame in firmware.control(now - start) or ():
                outbound.push(frame, now)
            body.step()
            stats.steps += 1
            if stats.steps % state_every == 0:
                outbound.push(firmware.state_frame(now - start), now)
            next_step += body.dt
            if now - next_step > 0.1:
                stats.overruns += 1
                firmware.sticky |= FAULT_OVERRUN
                next_step = now
        pending += outbound.pop(now)
        if pending:
            try:
                pending = pending[os.write(master, pending) :]
            except BlockingIOError:
                stats.tx_overflow_bytes += len(pending)
                pending = b""
    # A stop can land while the host's last frames wait unread in the port (the loop was behind the
    # wall clock): handle what has arrived, so the counters account for every byte the host sent.
    now = time.monotonic()
    _read_waiting(master, inbound, now)
    firmware.receive(inbound.pop(now), now - start)
    stats.seconds = now - start
    return stats, inbound, outbound


def onboard_program(robot: str, physics_dt: float, out: Callable[[str], None]) -> OnboardProgram | None:
    """On-board mode for the robot config of that name: its default genome compiled as the C tick;
    None (and why, on ``out``) where it cannot be built, and the robot then does without it."""
    from controller.errors import UserError
    from controller.genome import load_genome
    from firmware_bridge.errors import BridgeError
    from firmware_bridge.robot import load_robot

    try:
        config = load_robot(robot)
        genome = load_genome(
            config.genome, task=config.task, obs_size=config.obs_size, action_size=len(config.joints)
        )
        kernel = PlasticKernel.build(genome, robot)
    except (UserError, BridgeError, subprocess.CalledProcessError, OSError) as exc:
        out(f"on-board mode off: {exc}")
        return None
    out(
        f"on-board mode: genome {config.genome} as C ({genome.spec.synapses} synapses), a tick every "
        f"{kernel.period_s * 1e3:g} ms"
    )
    return OnboardProgram(kernel, config, physics_dt)


def emulate(
    robot: str,
    faults: FaultSpec,
    state_rate_hz: int,
    physics_hz: int,
    watchdog_ms: int,
    seed: int,
    duration: float | None,
    out: Callable[[str], None],
) -> None:
    """The ``firmware-bridge emulate`` command: open a pty, print its path, serve until stopped."""
    body = BODIES[robot](seed=seed, physics_hz=physics_hz)

    def log(now: float, text: str) -> None:
        out(f"[{now:9.3f} s] {text}")

    onboard = onboard_program(robot, body.dt, out)
    firmware = Firmware(body, state_rate_hz, physics_hz, watchdog_ms, log, onboard=onboard)
    master, slave, path = open_pty()
    stop = {"signal": None}

    def on_signal(signum: int, frame: object) -> None:
        stop["signal"] = signum

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    mode = MODE_NAMES[body.control_mode]
    out(
        f"emulating robot {robot} on {path} (protocol v{PROTOCOL_VERSION}, {mode} mode, "
        f"physics {physics_hz} Hz, STATE {state_rate_hz} Hz, watchdog {watchdog_ms} ms, faults {faults})"
    )
    out(f"connect with: controller --serial {path} --robot {robot}")
    if onboard is not None:
        out(f"on-board mode: controller --serial {path} --robot {robot} --on-board")
    end = math.inf if duration is None else time.monotonic() + duration
    try:
        stats, inbound, outbound = serve(
            master, firmware, faults, seed, lambda: stop["signal"] is not None or time.monotonic() > end
        )
    finally:
        os.close(master)
        os.close(slave)
    c = firmware.counters
    out(
        f"emulator stopped after {stats.seconds:.1f} s: {c.commands} commands applied, "
        f"{c.watchdog_trips} watchdog trips, {c.safe_pose_requests} SAFE_POSE, {c.estops} ESTOP, "
        f"{c.lifetimes} on-board lifetimes; "
        f"rx {c.frames_rx} frames, {firmware.rx_errors} bad; torso moved {body.x - body.start_x:+.3f} m "
        f"along x; physics overruns {stats.overruns}, unread output {stats.tx_overflow_bytes} B"
    )
    if faults != FaultSpec():
        out(
            f"injected faults: host->robot {inbound.dropped} dropped, {inbound.corrupted} corrupted bytes; "
            f"robot->host {outbound.dropped} dropped, {outbound.corrupted} corrupted bytes"
        )
