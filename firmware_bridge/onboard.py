"""On-board mode on the emulated robot: the genome's network runs on the "microcontroller", as C.

:class:`PlasticKernel` is the robot's own code, the C plastic tick of ``firmware/plastic`` compiled with
gcc for this machine from the genome's exported header and loaded with ctypes, so the emulator runs what
a board would run, bit for bit. :class:`OnboardProgram` is what the firmware does around it each
lifetime (docs/protocol.md, On-board mode): ramp to the neutral stance, settle, then read the sensors into
the genome's observation and tick the network at the genome's control period, every command through the
host's own safety layer (:class:`~firmware_bridge.safety.Safety`: limits, slew, orientation guard) and
the robot config's calibration (:class:`~firmware_bridge.robot.Adapter`), ticks counted in physics steps
so the robot's time is the simulator's. The firmware (``emulator.Firmware``) keeps the session, the
watchdog and the wire.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from firmware_bridge.errors import BridgeError
from firmware_bridge.protocol import (
    ONBOARD_DONE,
    ONBOARD_IMU,
    ONBOARD_NON_FINITE,
    ONBOARD_ORIENTATION,
    ONBOARD_RUNNING,
    ONBOARD_STARTING,
    ONBOARD_STOPPED,
    REASON_NON_FINITE,
    REASON_ORIENTATION,
    REASON_ROBOT_FAULT,
    OnboardStart,
    OnboardTelemetry,
    State,
)
from firmware_bridge.robot import Adapter, RobotConfig
from firmware_bridge.safety import Ramp, Safety, SafetyTrip

if TYPE_CHECKING:
    from controller.genome import Genome
    from controller.network import NetworkSpec

PLASTIC = Path(__file__).resolve().parent / "firmware" / "plastic"
SOURCES = ("hq_plastic.c", "hq_pcg32.c")
# the C tick's agreement with the numba tick needs IEEE float32 without fused multiply-adds (-std=c99
# implies -ffp-contract=off)
CFLAGS = ("-std=c99", "-O2", "-shared", "-fPIC", "-ffp-contract=off")
# what ends a lifetime when the safety layer trips, by the trip's reason
TRIP_STATUS = {
    REASON_ORIENTATION: ONBOARD_ORIENTATION,
    REASON_NON_FINITE: ONBOARD_NON_FINITE,
    REASON_ROBOT_FAULT: ONBOARD_IMU,
}


def cache_folder() -> Path:
    """Where built kernels are kept: the user's own cache (a library loaded from a shared folder could be
    anyone's)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hebbian-quadruped" / "onboard"


def _macro(header: str, name: str) -> int:
    return int(re.search(rf"^#define {name} (\d+)", header, re.M).group(1))


def state_size(spec: NetworkSpec) -> int:
    """Floats in the C tick's hq_plastic: the weights, the activations and, with a plasticity period
    over one tick, every neuron's activation sum and the count of ticks summed."""
    neurons = sum(spec.layer_sizes)
    return spec.synapses + neurons + (neurons + 1 if spec.plasticity_period > 1 else 0)


class PlasticKernel:
    """One genome's C plastic tick as a shared library; its state (hq_plastic) is one float32 array,
    the weights, the activations, then (a slower plasticity clock) the activation sums."""

    def __init__(self, library: Path, genome: Genome, header: str) -> None:
        spec = genome.spec
        self.period_s = _macro(header, "HQ_PERIOD_US") * 1e-6  # the genome's, as the robot's build has it
        self.settle_ticks = _macro(header, "HQ_SETTLE_TICKS")
        self.lib = ctypes.CDLL(str(library))
        self.lib.hq_plastic_reset.argtypes = [ctypes.c_void_p, ctypes.c_uint64]
        self.lib.hq_plastic_tick.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        self.lib.hq_plastic_weight_squares.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        self.state = np.zeros(state_size(spec), dtype=np.float32)
        end = spec.synapses + sum(spec.layer_sizes)  # the activations end with the action
        self.action = self.state[end - spec.action_size : end]
        self._obs = np.zeros(spec.obs_size, dtype=np.float32)
        self._squares = np.zeros(len(spec.layer_shapes), dtype=np.float32)

    @classmethod
    def build(cls, genome: Genome, robot: str, folder: Path | None = None) -> PlasticKernel:
        """Export ``genome`` for ``robot`` (a robot config's name or path: the observation layout) and
        compile it with gcc into ``folder``; without one, into the user's cache, in a folder named after
        the header and the sources, so an emulator started again reuses the library."""
        from controller.c_export import export_c

        if shutil.which("gcc") is None:
            raise BridgeError("on-board mode needs gcc to build the C plastic tick (apt-get install gcc)")
        with tempfile.TemporaryDirectory() as scratch:
            header = export_c(genome, Path(scratch) / "genome.h", robot).read_text()
        if folder is None:
            digest = hashlib.sha256(header.encode() + " ".join(CFLAGS).encode())
            for source in (*SOURCES, "hq_plastic.h", "hq_pcg32.h"):
                digest.update((PLASTIC / source).read_bytes())
            folder = cache_folder() / digest.hexdigest()[:16]
        library = folder / "libhq_plastic.so"
        if not library.exists():
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "genome.h").write_text(header)
            partial = folder / f"libhq_plastic.{time.monotonic_ns()}.tmp"
            sources = [str(PLASTIC / s) for s in SOURCES]
            subprocess.run(["gcc", *CFLAGS, f"-I{folder}", *sources, "-o", str(partial)], check=True)
            partial.replace(library)  # whole or absent, if two emulators build at once
        return cls(library, genome, header)

    def reset(self, seed: int) -> None:
        self.lib.hq_plastic_reset(self.state.ctypes.data, seed)

    def tick(self, observation: np.ndarray) -> np.ndarray:
        """One tick on the observation; the action (a view, valid until the next tick)."""
        self._obs[:] = observation
        self.lib.hq_plastic_tick(self.state.ctypes.data, self._obs.ctypes.data)
        return self.action

    def weight_norms(self) -> tuple[float, ...]:
        self.lib.hq_plastic_weight_squares(self.state.ctypes.data, self._squares.ctypes.data)
        return tuple(np.sqrt(self._squares).tolist())


class OnboardProgram:
    """An on-board lifetime on the emulated robot (the firmware's part of docs/protocol.md's On-board
    mode). :meth:`step` runs once per physics step; every ``period / dt`` steps it runs one control tick
    on the sensors: the ramp to the neutral stance, the settle ticks, then the network."""

    def __init__(self, kernel: PlasticKernel, robot: RobotConfig, physics_dt: float) -> None:
        self.kernel, self.robot = kernel, robot
        self.period = kernel.period_s
        self.steps_per_tick = max(1, round(self.period / physics_dt))
        self.ramp_ticks = max(1, round(robot.safety.ramp_s / self.period))
        self.neutral = Adapter(robot).command(np.zeros(len(robot.joints)))
        self.status, self.start_seq, self.detail = ONBOARD_STOPPED, 0, ""
        self.ticks = self.tick_us = self.tick_us_max = self.late_ticks = 0
        self.command: np.ndarray | None = None  # what the servos get; None: the firmware holds the safe pose
        self.clamped = False  # the safety layer changed a command since the firmware last looked

    @property
    def running(self) -> bool:
        return self.status in (ONBOARD_STARTING, ONBOARD_RUNNING)

    def start(self, seq: int, request: OnboardStart, now: float) -> None:
        """A fresh lifetime: new weights from the seed, a new clock and heading, the ramp first."""
        self.kernel.reset(request.seed)
        self.adapter, self.safety = Adapter(self.robot), Safety(self.robot, 1.0 / self.period)
        self.request, self.start_seq, self.started = request, seq, now
        self.status, self.command, self.ramp = ONBOARD_STARTING, None, None
        self.steps = self.control_ticks = self.ticks = 0
        self.tick_us = self.tick_us_max = self.late_ticks = 0

    def end(self, status: int, detail: str) -> None:
        """Stop ticking (the firmware holds the safe pose); ``detail`` says why, for its log."""
        self.status, self.command, self.detail = status, None, detail

    def step(self, now: float, sense: Callable[[], State]) -> bool:
        """One physics step of the lifetime; True when an ONBOARD_TELEMETRY is due."""
        due = self.steps % self.steps_per_tick == 0 and self._tick(now, sense)
        self.steps += 1
        return due

    def _tick(self, now: float, sense: Callable[[], State]) -> bool:
        begin = time.perf_counter()
        if self.request.ticks and self.ticks >= self.request.ticks:
            self.end(ONBOARD_DONE, f"the {self.ticks} ticks asked for ran")
            return True
        if now - (self.started + self.control_ticks * self.period) >= self.period:
            self.late_ticks = (self.late_ticks + 1) & 0xFFFF
        state = sense()
        clamped_before = self.safety.clamped
        try:
            self.safety.check_state(state)
            self.command = self._command(state)
        except SafetyTrip as trip:
            self.end(TRIP_STATUS[trip.reason], str(trip))
            return True
        self.clamped |= self.safety.clamped != clamped_before
        self.tick_us = round((time.perf_counter() - begin) * 1e6)
        self.tick_us_max = max(self.tick_us_max, self.tick_us)
        self.control_ticks += 1
        return self.control_ticks % self.request.telemetry_every == 0

    def _command(self, state: State) -> np.ndarray:
        """This tick's joint command, through the safety layer: the ramp from where the joints are to
        the neutral stance, the stance for the genome's settle ticks, then the network's."""
        k = self.control_ticks
        if k < self.ramp_ticks:
            if self.ramp is None:
                start = self.adapter.hold(state)
                self.safety.start_from(start)
                self.ramp = Ramp(start, self.neutral, self.ramp_ticks)
            return self.safety.limit(self.ramp.next())
        if k < self.ramp_ticks + self.kernel.settle_ticks:
            return self.safety.limit(self.neutral)
        self.status = ONBOARD_RUNNING
        action = self.kernel.tick(self.adapter.observation(state))
        self.ticks += 1
        return self.safety.limit(self.adapter.command(action))

    def telemetry(self, now: float) -> OnboardTelemetry:
        return OnboardTelemetry(
            int(now * 1e6) & 0xFFFFFFFF, self.start_seq, self.status, self.ticks, self.tick_us,
            self.tick_us_max, self.late_ticks, self.kernel.weight_norms(),
        )  # fmt: skip
