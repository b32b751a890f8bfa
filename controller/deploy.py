"""``controller --serial PORT --robot CONFIG``: run a genome on a robot over serial, in real time.

Handshake (HELLO -> INFO, checked against the robot config), then the fixed-rate loop that runs the
simulator (:func:`controller.loop.run_lifetime`), at the genome's control period unless told otherwise,
over :class:`RobotEnv`: a robot with a gymnasium env's step interface. Each step maps the action to a
joint command, passes it through the safety layer, sends it, waits for the tick's deadline and reads
the freshest STATE. The first command, and every resumption after the robot fell back to its safe
pose, is reached through a slow ramp.

Stops: ``--duration`` reached (SAFE_POSE sent), Ctrl-C or SIGTERM (ESTOP sent), a safety trip
(SAFE_POSE sent, exit 1), a STATE that contradicts INFO (ESTOP sent, one-line error, exit 2), any
other failure (ESTOP sent if the port still works). Imports numpy, pyserial, PyYAML and the network
code only: no simulator on the deploy path (for a robot config without ``control_period_ms`` and a
genome that records no period, the task's simulator says it).

``--on-board`` (:func:`deploy_onboard`): the robot runs the genome built into its firmware; the host
only starts the lifetime, feeds the robot's watchdog, prints the telemetry and stops it.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import math
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from controller.app import OnTick, StatusLine, Telemetry, build_network, percentiles, summary, tick_callbacks
from controller.errors import UserError
from controller.genome import Genome, load_genome
from controller.loop import Lifetime, Pacer, run_lifetime
from controller.network import FeedForward, lifetime_seed
from firmware_bridge.errors import BridgeError, ConfigError, LinkError, RobotError
from firmware_bridge.link import Link, SerialLink, clock_us
from firmware_bridge.protocol import (
    CAP_ONBOARD,
    FAULT_WATCHDOG,
    ONBOARD_DONE,
    ONBOARD_RUNNING,
    ONBOARD_STARTING,
    ONBOARD_STATUS_NAMES,
    ONBOARD_STOPPED,
    REASON_HOST_FAULT,
    REASON_OPERATOR,
    REASON_ROBOT_FAULT,
    REASON_STATE_TIMEOUT,
    Command,
    Error,
    Estop,
    Heartbeat,
    OnboardStart,
    OnboardStop,
    OnboardTelemetry,
    SafePose,
    State,
    describe_faults,
)
from firmware_bridge.robot import Adapter, RobotConfig, load_robot
from firmware_bridge.safety import Ramp, Safety, SafetyTrip


@dataclass(frozen=True)
class DeploySettings:
    """What a deploy needs, typed; the CLI builds it from its flags and a deploy profile."""

    port: str
    robot: str  # robot config: YAML path or shipped name
    genome: str | None = None  # default: the robot config's
    calibration: str | None = None  # default: the robot config's
    rate: float | None = None  # Hz; default: the genome's control period
    allow_rate_change: bool = False  # run at a ``rate`` other than the genome's (with a warning)
    duration: float | None = None  # s; None: until Ctrl-C
    baud: int | None = None  # default: the robot config's
    connect_timeout: float = 5.0
    seed: int = 0
    backend: str = "auto"
    log: str | None = None  # telemetry CSV
    onboard: bool = False  # the robot runs its own network (docs/protocol.md, On-board mode)


@dataclass
class BodyStats:
    """What the robot did, beyond what the loop counts."""

    ages_s: list[float] = field(default_factory=list)  # age of the STATE each command was based on
    stale_ticks: int = 0  # ticks without a fresh STATE (host watchdog)
    stale_events: int = 0  # times the host watchdog sent SAFE_POSE
    ramps: int = 0
    robot_watchdog_trips: int = 0
    faults_seen: int = 0


class RobotEnv:
    """A robot over a serial link with the step interface of a gymnasium env, so that one fixed-rate
    loop runs a simulator and a robot alike.

    ``step(action)`` sends the action's joint command (through the ramp and the safety layer), waits
    on ``pacer`` for the tick's deadline, then reads the freshest STATE: the network sees it as soon as
    it can. No fresh STATE (the host watchdog): SAFE_POSE once, then wait; fresh STATE again ramps
    anew. While it ramps or waits, ``info["control"]`` is False: the loop's action is then the
    network's forward pass without learning, and only the first step of a ramp uses it, as its target.
    ``info["x_distance"]``: the integrated base velocity, when the robot sends a base estimate.
    """

    fitness = "distance"

    def __init__(self, link: SerialLink, robot: RobotConfig, pacer: Pacer) -> None:
        self.link, self.robot, self.pacer = link, robot, pacer
        self.dt = pacer.period
        self.adapter = Adapter(robot)
        self.safety = Safety(robot, 1.0 / pacer.period)
        self.stats = BodyStats()
        self.state: State | None = None
        self.obs = np.zeros(robot.obs_size)
        self._age = math.inf
        self._x = 0.0
        self._ramp: Ramp | None = None
        self._next = "ramp"  # what the next step does: ramp, run, or stale (wait for STATE)
        self._waiting = True  # the robot holds its safe pose until the first COMMAND

    @property
    def unwrapped(self) -> RobotEnv:
        return self

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Wait for the first STATE (up to the link timeout); the control clock starts then."""
        timeout = self.robot.safety.link_timeout_s
        start = time.monotonic()
        while self.link.latest_state is None:
            if time.monotonic() - start > timeout:
                raise self._no_state(timeout)
            self.link.wait(self.dt)
            self.link.poll()
        self.pacer.start()
        self._read()
        return self.obs, self._info("ramp", None, self._age)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        phase, age, command = self._next, self._age, None
        if phase != "stale":
            assert self.state is not None  # a phase other than stale follows a fresh STATE
            if self._ramp is None:
                start = self.adapter.hold(self.state)
                ticks = round(self.robot.safety.ramp_s / self.dt)
                self._ramp = Ramp(start, self.adapter.command(action), ticks)
                self.safety.start_from(start)
                self.stats.ramps += 1
            command = self._ramp.next() if phase == "ramp" else self.adapter.command(action)
            command = self.safety.limit(command)
            self.link.send(Command(clock_us(), tuple(command.tolist())))
            self._waiting = False
            self.stats.ages_s.append(age)
        self.pacer.wait()
        self._read()
        return self.obs, 0.0, False, False, self._info(phase, command, age)

    def _read(self) -> None:
        """The freshest STATE: the observation, the guards, and what the next step does."""
        link, config = self.link, self.robot.safety
        link.poll()
        self._age = age = link.state_age(time.monotonic())
        if age > config.link_timeout_s:
            raise self._no_state(age)
        if age > config.state_timeout_ms * 1e-3:
            self.stats.stale_ticks += 1
            if not self._waiting:
                link.send(SafePose(REASON_STATE_TIMEOUT))
                self.stats.stale_events += 1
                self._waiting, self._ramp = True, None
            self._next = "stale"
            return
        assert link.latest_state is not None  # a finite age means a STATE arrived
        state = link.latest_state.message
        if state.faults & FAULT_WATCHDOG and not (self.state and self.state.faults & FAULT_WATCHDOG):
            self.stats.robot_watchdog_trips += 1
            self._ramp = None
        self._check_counts(state)
        self.state = state
        self.stats.faults_seen |= state.faults
        self.safety.check_state(state)
        self.obs = self.adapter.observation(state).copy()  # the adapter reuses its buffer
        if state.base is not None:
            self._x += state.base.velocity[0] * self.dt
        self._next = "run" if self._ramp is not None and self._ramp.done else "ramp"

    def _info(self, phase: str, command: np.ndarray | None, age: float) -> dict[str, Any]:
        state, counters = self.state, self.link.counters
        sent = command if command is not None else [math.nan] * len(self.robot.joints)
        faults = describe_faults(state.faults) if state is not None else "-"
        info: dict[str, Any] = {
            "control": self._next == "run",
            "phase": phase,
            "telemetry": {
                "phase": phase,
                "state_age_ms": f"{age * 1e3:.2f}" if phase != "stale" else "nan",
                "robot_faults": state.faults if state is not None else "",
                **{f"command_{i}": f"{v:.5g}" for i, v in enumerate(sent)},
            },
            "status": f"STATE age {self._age * 1e3:5.1f} ms  crc errors {counters.rejected['crc']}  "
            f"dropped {counters.dropped}  robot faults {faults:<20s}",
        }
        if state is not None and state.base is not None:
            info["x_distance"] = self._x
        return info

    def _no_state(self, seconds: float) -> BridgeError:
        return BridgeError(
            f"no STATE from the robot on {self.link.name} for {seconds:.1f} s; "
            "check the cable, the robot's power and its firmware"
        )

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


@dataclass
class RunResult:
    life: Lifetime
    pacer: Pacer
    body: RobotEnv
    seconds: float = 0.0
    stop: str = ""
    exit_code: int = 0


class Deployment:
    """One run of a network on a robot whose link is in session; :meth:`run` returns what happened."""

    def __init__(
        self, link: SerialLink, robot: RobotConfig, network: FeedForward, rate_hz: float, seed: int = 0
    ) -> None:
        self.link, self.network, self.seed = link, network, seed
        self.pacer = Pacer(1.0 / rate_hz)
        self.result = RunResult(Lifetime(), self.pacer, RobotEnv(link, robot, self.pacer))

    def run(self, duration: float | None, on_tick: OnTick | None = None) -> RunResult:
        result, link = self.result, self.link
        ticks = sys.maxsize if duration is None else max(1, round(duration / self.pacer.period))
        try:
            with _sigterm_as_interrupt() as received:
                try:
                    run_lifetime(
                        self.network, result.body, ticks, self.seed, on_tick=on_tick, life=result.life
                    )
                    link.send(SafePose(REASON_OPERATOR))
                    result.stop = f"duration reached ({duration:g} s); SAFE_POSE sent"
                except KeyboardInterrupt:
                    link.send(Estop(REASON_OPERATOR))
                    result.stop = f"interrupted ({received['name']}); ESTOP sent"
                    result.exit_code = 128 + received["signum"]
                finally:  # a trip or an interrupt ends the run too: the summary gives the time it ran
                    result.seconds = self.pacer.seconds
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


def report(result: RunResult, link: SerialLink) -> str:
    """The final report: why it stopped, the lifetime's summary, the host watchdog, the link, the robot."""
    stats = result.body.stats
    return "\n".join(
        [
            f"stopped: {result.stop}",
            *summary(result.life, result.pacer, result.seconds),
            f"STATE age when used: {percentiles(stats.ages_s, 1e3, 'ms')}; host watchdog: "
            f"{stats.stale_ticks} stale ticks, {stats.stale_events} SAFE_POSE; ramps {stats.ramps}",
            f"link: {link.counters.summary()}",
            f"robot: faults seen {describe_faults(stats.faults_seen)}, its watchdog tripped "
            f"{stats.robot_watchdog_trips} times",
        ]
    )


def control_rate(settings: DeploySettings, genome: Genome, robot: RobotConfig) -> float:
    """The rate to run at: the genome's control period (its provenance; else the robot config's; else
    its task's simulator, as the C export reads it). Another ``--rate`` is refused unless allowed, and
    then warned about: a plastic network learns per tick, so at another rate it is another controller."""
    period = genome.control_period() or robot.control_period_s
    if period is None:
        from controller.c_export import task_timing

        period, _ = task_timing(robot.task)
    trained = 1.0 / period
    if settings.rate is None or math.isclose(settings.rate, trained):
        return trained
    if not settings.allow_rate_change:
        raise UserError(
            f"--rate {settings.rate:g} Hz is not the {trained:g} Hz the genome was evolved at (its plastic "
            f"rules learn per tick); drop --rate, or add --allow-rate-change to run at {settings.rate:g} Hz"
        )
    print(
        f"warning: control at {settings.rate:g} Hz, but the genome was evolved at {trained:g} Hz; "
        "it learns per tick, so it may not walk",
        file=sys.stderr,
    )
    return settings.rate


def _check_rate(rate: float, robot: RobotConfig, max_rate: int) -> None:
    if not 0 < rate <= max_rate:
        raise ConfigError(f"--rate {rate:g} Hz is outside what robot {robot.name!r} takes (0, {max_rate}] Hz")


def deploy(settings: DeploySettings) -> int:
    if settings.onboard:
        return deploy_onboard(settings)
    robot = load_robot(settings.robot, settings.calibration)
    genome_name = settings.genome or robot.genome
    genome = load_genome(genome_name, task=robot.task, obs_size=robot.obs_size, action_size=len(robot.joints))
    rate = control_rate(settings, genome, robot)
    network = build_network(genome, settings.backend)
    network.tick(np.zeros(genome.obs_size))  # compile/warm the backend before the loop
    baud = settings.baud or robot.baud
    with robot.link.connect(settings.port, baud, robot.joints, 1.0 / rate) as link:
        print(
            f"genome: {genome_name} ({genome.kind}); backend {network.backend}; robot config {robot.source}"
        )
        info = link.handshake(settings.connect_timeout)
        robot.check_info(info)
        _check_rate(rate, robot, info.max_rate_hz)
        rtts = link.ping(5, timeout=0.1)
        rtt = f"{np.median(rtts) * 1e3:.2f} ms" if rtts else "lost"
        duration = settings.duration
        print(
            f"robot {info.robot_name} on {settings.port}: protocol v{info.protocol_version}, "
            f"{len(info.joint_names)} joints, STATE {info.state_rate_hz} Hz, watchdog {info.watchdog_ms} ms, "
            f"heartbeat round trip {rtt}; control at {rate:g} Hz"
            + (f" for {duration:g} s" if duration else " until Ctrl-C"),
            flush=True,
        )
        run = Deployment(link, robot, network, rate, settings.seed)
        callbacks: list[OnTick] = []
        if settings.log:
            callbacks.append(Telemetry(Path(settings.log), network, 1.0 / rate))
        if sys.stderr.isatty():
            callbacks.append(StatusLine(None, run.pacer))
        with tick_callbacks(*callbacks) as on_tick:
            result = run.run(duration, on_tick)
        print(report(result, link))
    if settings.log:
        print(f"telemetry: {settings.log}")
    return result.exit_code


# --- on-board mode ------------------------------------------------------------------------------
TELEMETRY_S = 0.1  # the robot reports this often
PRINT_S = 1.0  # the host prints a line this often
START_RETRY_S = 0.25  # ONBOARD_START again if no telemetry answers it by then


class OnboardRun:
    """One on-board lifetime followed from the host: it only sends ONBOARD_START, HEARTBEAT (the robot's
    watchdog), ONBOARD_STOP and, on a failure, ESTOP; it reads ONBOARD_TELEMETRY."""

    def __init__(self, link: Link, robot: RobotConfig, watchdog_ms: int, log: Path | None) -> None:
        self.link, self.robot = link, robot
        self.heartbeat_s = watchdog_ms * 1e-3 / 4
        self.started: set[int] = set()  # seq of every ONBOARD_START sent: telemetry answers one of them
        self.last: OnboardTelemetry | None = None
        self._next_beat = self._next_print = 0.0
        self._log = log.open("w", newline="") if log else None
        self._csv = csv.writer(self._log) if self._log else None
        self._header = False

    def start(self, request: OnboardStart, timeout: float) -> None:
        """ONBOARD_START until the robot's telemetry answers one (each is a fresh lifetime)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.started.add(self.link.send(request))
            if self._follow(time.monotonic() + START_RETRY_S, refusals=True):
                return
        raise LinkError(
            f"robot on {self.link.name} did not answer ONBOARD_START within {timeout:g} s; check its firmware"
        )

    def follow(self) -> OnboardTelemetry:
        """Until the lifetime ends: its last telemetry. A robot silent for the link timeout is an error."""
        while self.last is None or self.last.status in (ONBOARD_STARTING, ONBOARD_RUNNING):
            if not self._follow(time.monotonic() + self.robot.safety.link_timeout_s):
                raise BridgeError(
                    f"no ONBOARD_TELEMETRY from the robot on {self.link.name} for "
                    f"{self.robot.safety.link_timeout_s:g} s; check the cable and the robot's power"
                )
        return self.last

    def stop(self) -> None:
        """ONBOARD_STOP, and the telemetry that says the lifetime ended (if it comes within a second)."""
        self.link.send(OnboardStop())
        deadline = time.monotonic() + 1.0
        while self.last is None or self.last.status in (ONBOARD_STARTING, ONBOARD_RUNNING):
            if not self._follow(deadline):
                return

    def _follow(self, until: float, refusals: bool = False) -> bool:
        """Heartbeats and telemetry until ``until``; True as soon as a telemetry of this run arrives."""
        while (now := time.monotonic()) < until:
            if now >= self._next_beat:
                self.link.send(Heartbeat(clock_us()))
                self._next_beat = now + self.heartbeat_s
            for item in self.link.poll():
                message = item.message
                if refusals and isinstance(message, Error) and message.seq in self.started:
                    raise LinkError(f"robot on {self.link.name} refused ONBOARD_START: {message.text}")
                if isinstance(message, OnboardTelemetry) and message.start_seq in self.started:
                    self._report(message, now)
                    return True
            self.link.wait(min(self._next_beat, until) - time.monotonic())
        return False

    def _report(self, telemetry: OnboardTelemetry, now: float) -> None:
        self.last = telemetry
        if self._csv is not None:
            t = telemetry
            if not self._header:
                layers = [f"weight_norm_{k}" for k in range(len(t.weight_norms))]
                self._csv.writerow(
                    ["mcu_time_s", "status", "ticks", "tick_us", "tick_us_max", "late", *layers]
                )
                self._header = True
            self._csv.writerow(
                [f"{t.mcu_time_us * 1e-6:.3f}", ONBOARD_STATUS_NAMES[t.status], t.ticks, t.tick_us,
                 t.tick_us_max, t.late_ticks, *(f"{v:.5g}" for v in t.weight_norms)]
            )  # fmt: skip
        if now >= self._next_print:
            self._next_print = now + PRINT_S
            print(describe_telemetry(telemetry), flush=True)

    def close(self) -> None:
        if self._log is not None:
            self._log.close()


def describe_telemetry(t: OnboardTelemetry) -> str:
    norms = " ".join(f"{v:.3g}" for v in t.weight_norms)
    return (
        f"[{t.mcu_time_us * 1e-6:8.2f} s] {ONBOARD_STATUS_NAMES[t.status]}: {t.ticks} network ticks, tick "
        f"{t.tick_us} us (longest {t.tick_us_max} us), {t.late_ticks} late; weight norms {norms}"
    )


def deploy_onboard(settings: DeploySettings) -> int:
    """``controller --serial PORT --robot CONFIG --on-board``: start a lifetime of the network built into
    the robot's firmware (``--duration``: that long in network ticks, at the genome's control period;
    default until Ctrl-C), print its telemetry, stop it. Exit 0 when it ran its ticks or was stopped, 1
    when a safety rule ended it, 128 + the signal on Ctrl-C or SIGTERM (ONBOARD_STOP sent)."""
    robot = load_robot(settings.robot, settings.calibration)
    if robot.link is not Link:
        raise ConfigError(
            f"robot config {robot.source} is not for the bridge's firmware: it has no on-board mode"
        )
    genome = load_genome(settings.genome or robot.genome, task=robot.task, obs_size=robot.obs_size,
                         action_size=len(robot.joints))  # fmt: skip
    rate = control_rate(dataclasses.replace(settings, rate=None), genome, robot)  # the robot's build's too
    if settings.rate is not None and not math.isclose(settings.rate, rate):
        raise UserError(f"--rate {settings.rate:g} Hz: on board the robot ticks at its genome's {rate:g} Hz")
    period = 1.0 / rate
    ticks = 0 if settings.duration is None else max(1, round(settings.duration / period))
    request = OnboardStart(lifetime_seed(np.random.default_rng(settings.seed)), ticks,
                           max(1, round(TELEMETRY_S / period)))  # fmt: skip
    with Link.open(settings.port, settings.baud or robot.baud) as link:
        info = link.handshake(settings.connect_timeout)
        robot.check_info(info)
        if not info.capabilities & CAP_ONBOARD:
            raise RobotError(
                f"robot {info.robot_name!r} on {settings.port} has no on-board mode (INFO capability bit 1); "
                "flash a firmware built with HQ_ONBOARD, or drop --on-board"
            )
        limit = f"{ticks} network ticks ({settings.duration:g} s)" if ticks else "until Ctrl-C"
        print(f"robot {info.robot_name} on {settings.port}: on-board lifetime, seed {settings.seed}, {limit}")
        run = OnboardRun(link, robot, info.watchdog_ms, Path(settings.log) if settings.log else None)
        try:
            with _sigterm_as_interrupt() as received:
                try:
                    run.start(request, settings.connect_timeout)
                    last = run.follow()
                    stop, code = f"the lifetime ended ({ONBOARD_STATUS_NAMES[last.status]})", 0
                except KeyboardInterrupt:
                    run.stop()
                    stop, code = (
                        f"interrupted ({received['name']}); ONBOARD_STOP sent",
                        128 + received["signum"],
                    )
        except BaseException as exc:  # a second Ctrl-C is the operator's; anything else the host's fault
            reason = REASON_OPERATOR if isinstance(exc, KeyboardInterrupt) else REASON_HOST_FAULT
            with contextlib.suppress(BridgeError):
                link.send(Estop(reason))
            raise
        finally:
            run.close()
        if code == 0 and run.last is not None and run.last.status not in (ONBOARD_DONE, ONBOARD_STOPPED):
            code = 1  # a safety rule, the watchdog or another stop ended it early
        print(f"stopped: {stop}")
        if run.last is not None:
            print(f"last telemetry: {describe_telemetry(run.last)}")
        print(f"link: {link.counters.summary()}")
    return code
