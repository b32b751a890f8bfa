"""``controller --serial PORT --robot CONFIG``: run a genome on a robot over serial, in real time.

Handshake (HELLO -> INFO, checked against the robot config), then a loop paced by the wall clock
at ``--rate``: read the freshest STATE, build the observation, tick the plastic network, map the
action to a joint command, pass it through the safety layer and send it. The first command, and
every resumption after the robot fell back to its safe pose, is reached through a slow ramp.

Stops: ``--duration`` reached (SAFE_POSE sent), Ctrl-C or SIGTERM (ESTOP sent), a safety trip
(SAFE_POSE sent, exit 1), a STATE that contradicts INFO (ESTOP sent, one-line error, exit 2), any
other failure (ESTOP sent if the port still works). Imports numpy,
pyserial, PyYAML and the network code only: no simulator on the deploy path.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import math
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from controller.errors import UserError
from controller.genome import load_genome
from controller.network import FeedForward
from firmware_bridge.errors import BridgeError, ConfigError, RobotError
from firmware_bridge.link import SerialLink, clock_us
from firmware_bridge.profile import load_profile
from firmware_bridge.protocol import (
    FAULT_WATCHDOG,
    REASON_HOST_FAULT,
    REASON_OPERATOR,
    REASON_ROBOT_FAULT,
    REASON_STATE_TIMEOUT,
    Command,
    Estop,
    SafePose,
    State,
    describe_faults,
)
from firmware_bridge.robot import Adapter, RobotConfig, load_robot, shipped_robots
from firmware_bridge.safety import Ramp, Safety, SafetyTrip

STATUS_INTERVAL_S = 0.2
DEFAULT_RATE_HZ = 50.0


def add_serial_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of the serial deploy path (``--genome``, ``--log``, ``--seed``, ``--backend`` are the
    main parser's and are read too)."""
    group = parser.add_argument_group("robot over serial (instead of --sim)")
    group.add_argument("--serial", metavar="PORT", help="serial port of the robot (or of the emulator's pty)")
    group.add_argument(
        "--robot",
        metavar="CONFIG",
        help=f"robot config: YAML path or shipped name ({', '.join(shipped_robots())})",
    )
    group.add_argument(
        "--config",
        metavar="FILE",
        help="deploy profile (YAML): robot, rate, genome, calibration, baud "
        "(e.g. launch/deploy/servo_quad.yaml); flags given here win",
    )
    group.add_argument("--rate", type=float, metavar="HZ", help=f"control rate (default {DEFAULT_RATE_HZ:g})")
    group.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (default: Ctrl-C)")
    group.add_argument("--baud", type=int, help="baud rate (default: the robot config's)")
    group.add_argument(
        "--connect-timeout", type=float, default=5.0, metavar="S", help="wait this long for the robot's INFO"
    )
    group.add_argument("--calibration", metavar="FILE", help="calibration YAML (default: the config's)")


@dataclass
class RunResult:
    rate_hz: float
    ticks: int = 0
    seconds: float = 0.0
    misses: int = 0  # ticks whose work ended after the next tick was due
    network_s: list[float] = field(default_factory=list)  # network tick time per control tick
    work_s: list[float] = field(default_factory=list)  # whole tick: read, network, safety, send
    ages_s: list[float] = field(default_factory=list)  # age of the STATE each command was based on
    stale_ticks: int = 0  # ticks without a fresh STATE (host watchdog)
    stale_events: int = 0  # times the host watchdog sent SAFE_POSE
    ramps: int = 0
    robot_watchdog_trips: int = 0
    faults_seen: int = 0
    travel_x: float | None = None  # m, integrated base velocity (if the robot sends one)
    stop: str = ""
    exit_code: int = 0


class Deployment:
    """One run of a network on a robot; :meth:`run` returns what happened."""

    def __init__(
        self,
        link: SerialLink,
        robot: RobotConfig,
        network: FeedForward,
        rate_hz: float,
        on_tick: Callable[[Deployment, str, np.ndarray | None, np.ndarray | None], None] | None = None,
    ) -> None:
        self.link, self.robot, self.network = link, robot, network
        self.adapter = Adapter(robot)
        self.safety = Safety(robot, rate_hz)
        self.period = 1.0 / rate_hz
        self.on_tick = on_tick
        self.result = RunResult(rate_hz)
        self.state: State | None = None
        self.obs: np.ndarray | None = None
        self._ramp: Ramp | None = None
        self._waiting = True  # the robot holds its safe pose until the first COMMAND

    def run(self, duration: float | None) -> RunResult:
        result, link = self.result, self.link
        try:
            with _sigterm_as_interrupt() as received:
                try:
                    self._loop(duration)
                    link.send(SafePose(REASON_OPERATOR))
                    result.stop = f"duration reached ({duration:g} s); SAFE_POSE sent"
                except KeyboardInterrupt:
                    link.send(Estop(REASON_OPERATOR))
                    result.stop = f"interrupted ({received['name']}); ESTOP sent"
                    result.exit_code = 128 + received["signum"]
        except SafetyTrip as trip:
            link.send(SafePose(trip.reason))
            result.stop, result.exit_code = f"{trip}; SAFE_POSE sent", 1
        except RobotError:
            with contextlib.suppress(BridgeError):
                link.send(Estop(REASON_ROBOT_FAULT))
            raise
        except BaseException:
            with contextlib.suppress(BridgeError):
                link.send(Estop(REASON_HOST_FAULT))
            raise
        return result

    def _no_state(self, seconds: float) -> BridgeError:
        return BridgeError(
            f"no STATE from the robot on {self.link.name} for {seconds:.1f} s; "
            "check the cable, the robot's power and its firmware"
        )

    def _loop(self, duration: float | None) -> None:
        result, link, config = self.result, self.link, self.robot.safety
        start = time.monotonic()
        while link.latest_state is None:
            if time.monotonic() - start > config.link_timeout_s:
                raise self._no_state(config.link_timeout_s)
            link.wait(self.period)
            link.poll()
        start = next_tick = time.monotonic()
        end = math.inf if duration is None else start + duration
        try:
            while (now := time.monotonic()) < end:
                link.poll()
                age = link.state_age(now)
                if age > config.link_timeout_s:
                    raise self._no_state(age)
                if age > config.state_timeout_ms * 1e-3:
                    self._stale()
                else:
                    self._control(age)
                result.ticks += 1
                done = time.monotonic()
                result.work_s.append(done - now)
                next_tick += self.period
                if done > next_tick:
                    result.misses += 1
                    next_tick = done
                else:
                    time.sleep(next_tick - done)
        finally:  # a trip or an interrupt ends the run too: the summary gives the time it ran
            result.seconds = time.monotonic() - start

    def _stale(self) -> None:
        """Host watchdog: no fresh STATE. Send SAFE_POSE once, then wait for STATE and re-ramp."""
        self.result.stale_ticks += 1
        if not self._waiting:
            self.link.send(SafePose(REASON_STATE_TIMEOUT))
            self.result.stale_events += 1
            self._waiting, self._ramp = True, None
        if self.on_tick:
            self.on_tick(self, "stale", None, None)

    def _control(self, age: float) -> None:
        received = self.link.latest_state
        assert received is not None  # a finite age means a STATE arrived
        state = received.message
        rose = state.faults & FAULT_WATCHDOG and not (self.state and self.state.faults & FAULT_WATCHDOG)
        if rose:
            self.result.robot_watchdog_trips += 1
        self._check_counts(state)
        self.state = state
        self.result.faults_seen |= state.faults
        self.safety.check_state(state)
        obs = self.obs = self.adapter.observation(state)
        if self._ramp is None or rose:
            start = self.adapter.hold(state)
            self._ramp = Ramp(start, self.adapter.command(self.network.act(obs)), self._ramp_ticks())
            self.safety.start_from(start)
            self.result.ramps += 1
        action = None
        if not self._ramp.done:
            phase, command = "ramp", self._ramp.next()
        else:
            t0 = time.perf_counter()
            action = self.network.tick(obs)
            self.result.network_s.append(time.perf_counter() - t0)
            phase, command = "run", self.adapter.command(action)
        command = self.safety.limit(command)
        self.link.send(Command(clock_us(), tuple(command.tolist())))
        self._waiting = False
        self.result.ages_s.append(age)
        if state.base is not None:
            self.result.travel_x = (self.result.travel_x or 0.0) + state.base.velocity[0] * self.period
        if self.on_tick:
            self.on_tick(self, phase, action, command)

    def _check_counts(self, state: State) -> None:
        """A STATE must carry what INFO announced (INFO was checked against the config)."""
        robot, n = self.robot, len(state.joint_pos)
        no_base = robot.needs_base_estimate and state.base is None
        if n != len(robot.joints) or state.n_feet != robot.feet or no_base:
            base = "without" if state.base is None else "with"
            raise RobotError(
                f"robot on {self.link.name} sent a STATE with {n} joints and {state.n_feet} feet, {base} "
                f"base estimate, where its INFO announced {len(robot.joints)} joints and {robot.feet} feet; "
                "ESTOP sent: fix the firmware's STATE"
            )

    def _ramp_ticks(self) -> int:
        return round(self.robot.safety.ramp_s / self.period)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[dict[str, Any]]:
    """SIGTERM stops the run like Ctrl-C does (with an ESTOP); says which signal it was. Ctrl-C always
    interrupts, even in a process started with SIGINT ignored (a shell's background job)."""
    received: dict[str, Any] = {"signum": signal.SIGINT, "name": "Ctrl-C"}

    def on_term(signum: int, frame: object) -> None:
        received.update(signum=signum, name="SIGTERM")
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig, handler in
                ((signal.SIGTERM, on_term), (signal.SIGINT, signal.default_int_handler))}  # fmt: skip
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class Telemetry:
    """Per-tick CSV. ``time_s``, ``speed``, ``damage`` and ``weight_norm_K`` columns make it
    readable by ``controller plot`` too."""

    def __init__(self, path: Path, robot: RobotConfig, layers: int) -> None:
        self.file = path.open("w", newline="")
        self.writer = csv.writer(self.file)
        self.start = time.monotonic()
        n = len(robot.joints)
        self.writer.writerow(
            ["tick", "time_s", "phase", "state_age_ms", "robot_faults", "speed", "damage"]
            + [f"obs_{i}" for i in range(robot.obs_size)]
            + [f"action_{i}" for i in range(n)]
            + [f"command_{i}" for i in range(n)]
            + [f"weight_norm_{k}" for k in range(layers)]
        )

    def __call__(
        self, run: Deployment, phase: str, action: np.ndarray | None, command: np.ndarray | None
    ) -> None:
        r, state, n = run.result, run.state, len(run.robot.joints)
        blank = ["nan"] * n
        speed = state.base.velocity[0] if state is not None and state.base is not None else math.nan
        self.writer.writerow(
            [r.ticks, f"{time.monotonic() - self.start:.4f}", phase]
            + [f"{r.ages_s[-1] * 1e3:.2f}" if phase != "stale" else "nan"]
            + [state.faults if state is not None else "", f"{speed:.4f}", ""]
            + ([f"{v:.5g}" for v in run.obs] if run.obs is not None else ["nan"] * run.robot.obs_size)
            + ([f"{v:.5g}" for v in action] if action is not None else blank)
            + ([f"{v:.5g}" for v in command] if command is not None else blank)
            + [f"{np.linalg.norm(w):.5g}" for w in run.network.weights]
        )

    def close(self) -> None:
        self.file.close()


class StatusLine:
    """A live one-line status on a terminal, refreshed five times a second."""

    def __init__(self) -> None:
        self.next = 0.0

    def __call__(
        self, run: Deployment, phase: str, action: np.ndarray | None, command: np.ndarray | None
    ) -> None:
        now = time.monotonic()
        if now < self.next:
            return
        self.next = now + STATUS_INTERVAL_S
        r, c = run.result, run.link.counters
        faults = describe_faults(run.state.faults) if run.state is not None else "-"
        age = f"{r.ages_s[-1] * 1e3:5.1f}" if r.ages_s else "    -"
        sys.stderr.write(
            f"\r{phase:<5s} tick {r.ticks:6d}  misses {r.misses}  STATE age {age} ms  crc errors "
            f"{c.rejected['crc']}  dropped {c.dropped}  robot faults {faults:<20s}"
        )
        sys.stderr.flush()


def _percentiles(values: list[float], scale: float, unit: str) -> str:
    if not values:
        return "none"
    p50, p99 = np.percentile(np.asarray(values) * scale, [50, 99])
    return f"p50 {p50:.1f} {unit}, p99 {p99:.1f} {unit}"


def summary(result: RunResult, link: SerialLink) -> str:
    """The final report: why it stopped, timing, the host watchdog, the link and the robot."""
    share = 100.0 * result.misses / max(1, result.ticks)
    lines = [
        f"stopped: {result.stop}",
        f"ticks: {result.ticks} at {result.rate_hz:g} Hz in {result.seconds:.2f} s; "
        f"deadline misses {result.misses} ({share:.2f}%)",
        f"tick compute (network): {_percentiles(result.network_s, 1e6, 'us')}; "
        f"whole tick: {_percentiles(result.work_s, 1e6, 'us')}",
        f"STATE age when used: {_percentiles(result.ages_s, 1e3, 'ms')}; host watchdog: "
        f"{result.stale_ticks} stale ticks, {result.stale_events} SAFE_POSE; ramps {result.ramps}",
        f"link: {link.counters.summary()}",
        f"robot: faults seen {describe_faults(result.faults_seen)}, its watchdog tripped "
        f"{result.robot_watchdog_trips} times",
    ]
    if result.travel_x is not None:
        lines.append(f"base travel (integrated velocity): {result.travel_x:+.2f} m along x")
    return "\n".join(lines)


def _check_rate(rate: float, robot: RobotConfig, max_rate: int) -> None:
    if not 0 < rate <= max_rate:
        raise ConfigError(f"--rate {rate:g} Hz is outside what robot {robot.name!r} takes (0, {max_rate}] Hz")


def deploy(args: argparse.Namespace) -> int:
    robot = load_robot(args.robot, args.calibration)
    genome_name = args.genome or robot.genome
    genome = load_genome(genome_name, task=robot.task, obs_size=robot.obs_size, action_size=len(robot.joints))
    link = robot.link.connect(args.serial, args.baud or robot.baud, robot.joints, 1.0 / args.rate)
    with link:
        network = genome.build(args.backend)
        network.tick(np.zeros(genome.obs_size))  # compile/warm the backend before the loop
        network.reset(np.random.default_rng([args.seed, 1]))
        print(
            f"genome: {genome_name} ({genome.kind}); backend {network.backend}; robot config {robot.source}"
        )
        info = link.handshake(args.connect_timeout)
        robot.check_info(info)
        _check_rate(args.rate, robot, info.max_rate_hz)
        rtts = link.ping(5, timeout=0.1)
        rtt = f"{np.median(rtts) * 1e3:.2f} ms" if rtts else "lost"
        print(
            f"robot {info.robot_name} on {args.serial}: protocol v{info.protocol_version}, "
            f"{len(info.joint_names)} joints, STATE {info.state_rate_hz} Hz, watchdog {info.watchdog_ms} ms, "
            f"heartbeat round trip {rtt}; control at {args.rate:g} Hz"
            + (f" for {args.duration:g} s" if args.duration else " until Ctrl-C"),
            flush=True,
        )
        callbacks: list[Any] = []
        if args.log:
            callbacks.append(Telemetry(Path(args.log), robot, len(network.weights)))
        if sys.stderr.isatty():
            callbacks.append(StatusLine())

        def on_tick(*values: Any) -> None:
            for callback in callbacks:
                callback(*values)

        try:
            result = Deployment(link, robot, network, args.rate, on_tick).run(args.duration)
        finally:
            for callback in callbacks:
                if hasattr(callback, "close"):
                    callback.close()
            if sys.stderr.isatty():
                sys.stderr.write("\n")
        print(summary(result, link))
    if args.log:
        print(f"telemetry: {args.log}")
    return result.exit_code


def run_serial(args: argparse.Namespace) -> int:
    """The ``--serial`` branch of ``controller``: bridge errors become the CLI's one-line errors."""
    try:
        if args.config:
            for key, value in load_profile(args.config).values().items():
                if getattr(args, key) is None:  # a flag given on the command line wins
                    setattr(args, key, value)
        if not args.robot:
            raise UserError(
                f"--serial needs --robot CONFIG (a YAML path or one of {', '.join(shipped_robots())}) "
                "or --config PROFILE"
            )
        args.rate = DEFAULT_RATE_HZ if args.rate is None else args.rate
        if args.rate <= 0 or (args.duration is not None and args.duration <= 0):
            raise UserError("--rate and --duration must be positive")
        return deploy(args)
    except BridgeError as exc:
        raise UserError(str(exc)) from None
