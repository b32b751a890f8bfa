"""What the firmware emulator drives: a simulated body's interface and the sensor reading it gives.

Its own module so that the emulator and each body (``firmware_bridge/servo_body.py``) both import it
and neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from firmware_bridge.protocol import BaseEstimate


@dataclass
class Sensors:
    joint_pos: np.ndarray  # rad
    joint_vel: np.ndarray  # rad/s
    quaternion: np.ndarray  # w x y z, body to world
    gyro: np.ndarray  # rad/s, body frame
    contacts: int  # bit per foot
    base: BaseEstimate | None


class Body(Protocol):
    """The simulated hardware the firmware drives: motor commands in, sensors out, one physics step."""

    name: str
    control_mode: int
    capabilities: int
    joint_names: tuple[str, ...]
    joint_lower: tuple[float, ...]
    joint_upper: tuple[float, ...]
    n_feet: int
    dt: float
    start_x: float

    @property
    def x(self) -> float: ...
    def drive(self, command: np.ndarray) -> None: ...
    def hold(self) -> None: ...
    def release(self) -> None: ...
    def step(self) -> None: ...
    def sense(self) -> Sensors: ...
