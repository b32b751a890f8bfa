"""Deploy profiles: one YAML file that says how to run a robot (``controller --serial PORT --config FILE``).

A profile names the robot config, optionally its calibration, the genome, and the control rate the genome
was evolved at (a plastic network learns at its tick rate, so a robot must run at the training rate)::

    robot: servo-quad            # shipped robot config name, or a path
    rate: 50                     # Hz
    genome: servo-quad           # shipped genome name, or a path (optional: the robot config's)
    calibration: my.cal.yaml     # optional: the robot config's
    baud: 1000000                # optional: the robot config's

Paths are relative to the profile's folder. Flags given on the command line win over the profile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firmware_bridge.errors import ConfigError
from firmware_bridge.robot import _read_yaml

PATH_KEYS = ("robot", "calibration", "genome")


@dataclass(frozen=True)
class Profile:
    robot: str
    rate: float
    genome: str | None = None
    calibration: str | None = None
    baud: int | None = None

    def values(self) -> dict[str, Any]:
        """The keys the profile sets, as the command line's argument names."""
        return {key: value for key, value in vars(self).items() if value is not None}


def _resolve(folder: Path, value: str) -> str:
    """A path relative to the profile's folder when it names a file there; else as given (a shipped name)."""
    candidate = folder / value
    return str(candidate) if candidate.exists() else value


def load_profile(path: str | Path) -> Profile:
    """Read and check a deploy profile; every problem is one ConfigError naming the key."""
    path = Path(path)
    data = _read_yaml(path, "deploy profile")
    known = ("robot", "rate", "genome", "calibration", "baud")
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"deploy profile {path}: unknown keys {unknown}; known: {', '.join(known)}")
    for key in ("robot", "rate"):
        if key not in data:
            raise ConfigError(f"deploy profile {path}: missing key {key!r}")
    for key in PATH_KEYS:
        if key in data and not isinstance(data[key], str):
            raise ConfigError(f"deploy profile {path}: {key} must be a name or a path, got {data[key]!r}")
    rate, baud = data["rate"], data.get("baud")
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not math.isfinite(rate) or rate <= 0:
        raise ConfigError(f"deploy profile {path}: rate must be a positive number of Hz, got {rate!r}")
    if baud is not None and (isinstance(baud, bool) or not isinstance(baud, int) or baud <= 0):
        raise ConfigError(f"deploy profile {path}: baud must be a positive integer, got {baud!r}")
    paths = {key: _resolve(path.parent, data[key]) for key in PATH_KEYS if key in data}
    return Profile(rate=float(rate), baud=baud, **paths)
