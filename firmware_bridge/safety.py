"""The host's safety layer: what stands between the network's action and the robot's motors.

Every command passes :meth:`Safety.limit` (non-finite -> trip, clamp to the joint limits, at most
``max_slew / rate`` change per tick); every STATE passes :meth:`Safety.check_state` (a robot-side
emergency stop or IMU fault, a non-finite orientation, roll or pitch beyond the limit -> trip). A
trip is a :class:`SafetyTrip`: the deploy loop answers it with SAFE_POSE and ends the run.
:class:`Ramp` brings the joints to the first command slowly instead of jumping there.
"""

from __future__ import annotations

import math

import numpy as np

from firmware_bridge.protocol import (
    FAULT_ESTOP,
    FAULT_IMU,
    REASON_NAMES,
    REASON_NON_FINITE,
    REASON_ORIENTATION,
    REASON_ROBOT_FAULT,
    State,
)
from firmware_bridge.robot import RobotConfig


class SafetyTrip(Exception):
    """The robot must go to its safe pose now; ``reason`` is a protocol REASON_* code."""

    def __init__(self, reason: int, detail: str) -> None:
        super().__init__(f"safety stop ({REASON_NAMES[reason]}): {detail}")
        self.reason = reason


def roll_pitch(quaternion: tuple[float, ...]) -> tuple[float, float]:
    """Roll and pitch (rad, ZYX Euler angles) of a body-to-world quaternion w, x, y, z."""
    w, x, y, z = quaternion
    roll = math.atan2(2.0 * (w * x + y * z), 1.0 - 2.0 * (x * x + y * y))
    pitch = math.asin(max(-1.0, min(1.0, 2.0 * (w * y - z * x))))
    return roll, pitch


class Safety:
    def __init__(self, config: RobotConfig, rate_hz: float) -> None:
        self.lower = np.array([c.lower for c in config.calibration])
        self.upper = np.array([c.upper for c in config.calibration])
        self.max_step = config.safety.max_slew / rate_hz
        self.max_tilt = math.radians(config.safety.max_tilt_deg)
        self.previous: np.ndarray | None = None
        self.clamped = 0  # ticks on which a joint limit or the slew limit changed the command

    def check_state(self, state: State) -> None:
        if state.faults & FAULT_ESTOP:
            raise SafetyTrip(REASON_ROBOT_FAULT, "the robot reports a latched emergency stop")
        if state.faults & FAULT_IMU:  # its orientation and rates are not measurements: nothing to steer by
            raise SafetyTrip(REASON_ROBOT_FAULT, "the robot reports its IMU failed (STATE fault 0x40)")
        if not all(math.isfinite(v) for v in state.quaternion):
            values = ", ".join(f"{v:g}" for v in state.quaternion)
            raise SafetyTrip(REASON_ORIENTATION, f"the IMU reading is not finite (quaternion {values})")
        roll, pitch = roll_pitch(state.quaternion)
        for name, angle in (("roll", roll), ("pitch", pitch)):
            if abs(angle) > self.max_tilt:
                limit = math.degrees(self.max_tilt)
                detail = f"{name} {math.degrees(angle):.0f} deg beyond the {limit:.0f} deg limit"
                raise SafetyTrip(REASON_ORIENTATION, detail)

    def start_from(self, command: np.ndarray) -> None:
        """Limit the next command's change relative to ``command`` (what the robot does now)."""
        self.previous = np.clip(command, self.lower, self.upper)

    def limit(self, command: np.ndarray) -> np.ndarray:
        """The command made safe to send, or a :class:`SafetyTrip` for a non-finite one."""
        if not np.all(np.isfinite(command)):
            bad = np.flatnonzero(~np.isfinite(command)).tolist()
            raise SafetyTrip(REASON_NON_FINITE, f"the controller produced NaN or infinity for joints {bad}")
        safe = np.clip(command, self.lower, self.upper)
        if self.previous is not None:
            np.clip(safe, self.previous - self.max_step, self.previous + self.max_step, out=safe)
        self.clamped += not np.array_equal(safe, command)
        self.previous = safe
        return safe


class Ramp:
    """Linear blend from where the robot is to a target pose over ``ticks`` ticks."""

    def __init__(self, start: np.ndarray, target: np.ndarray, ticks: int) -> None:
        self.start, self.target, self.ticks = start, target, max(1, ticks)
        self.tick = 0

    @property
    def done(self) -> bool:
        return self.tick >= self.ticks

    def next(self) -> np.ndarray:
        self.tick = min(self.tick + 1, self.ticks)
        alpha = self.tick / self.ticks
        return self.start + alpha * (self.target - self.start)
