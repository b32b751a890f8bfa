"""Robot configs and calibration, and the adapter between the wire and the genome.

A robot config (YAML) says what the robot is (joints in order, feet, control mode), how to build
the genome's observation vector from STATE, the safety limits, and which calibration file to use;
``link`` says what its firmware speaks: ``bridge`` (docs/protocol.md, the default), ``opencat``
(stock OpenCat firmware, ``firmware_bridge/opencat.py``; its IMU streams) or ``opencat-poll`` (the
same, asking for each IMU reading with ``v``, which beeps every tick).
The calibration maps each joint between the genome's convention and the robot's:

    observed angle  = sign * (robot angle - offset)            (rad; velocities: sign * robot velocity)
    command         = [offset +] sign * scale * action          (offset only in position mode)

then clamped to the joint's ``limits`` (command units: rad in position mode, [-1, 1] in effort mode).
Shipped configs live in ``firmware_bridge/robots/``; ``--robot NAME`` finds them by name.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from firmware_bridge.errors import ConfigError
from firmware_bridge.link import Link, SerialLink
from firmware_bridge.opencat import OpenCatLink, OpenCatPollLink
from firmware_bridge.protocol import (
    CAP_BASE_ESTIMATE,
    CAP_NO_YAW,
    CONTROL_MODES,
    EFFORT,
    MODE_NAMES,
    POSITION,
    BaseEstimate,
    Info,
    State,
)

# what each firmware speaks: the ``link`` key of a robot config -> the link that drives it
LINKS: dict[str, type[SerialLink]] = {"bridge": Link, "opencat": OpenCatLink, "opencat-poll": OpenCatPollLink}


@dataclass(frozen=True)
class Block:
    """One observation block: its size, what it reads from STATE (through the adapter, which knows the
    calibration and counts the ticks), and whether it needs STATE's base estimate or the IMU's yaw."""

    size: int | str  # a count, or "joints" / "feet": one value per joint or per foot
    read: Callable[[Adapter, State, float], Any]  # (adapter, STATE, the block's number) -> values
    needs_base: bool = False
    needs_yaw: bool = False


# every observation block, in one place; the number after a block's name scales its values, except the
# clock's: cycles per tick
OBSERVATION_BLOCKS: dict[str, Block] = {
    "height": Block(1, lambda a, s, n: a.base(s).height, needs_base=True),
    "quaternion": Block(4, lambda a, s, n: s.quaternion, needs_yaw=True),
    "gravity": Block(3, lambda a, s, n: gravity_direction(s.quaternion)),
    "joint_positions": Block("joints", lambda a, s, n: a.sign * (np.asarray(s.joint_pos) - a.offset)),
    "joint_velocities": Block("joints", lambda a, s, n: a.sign * np.asarray(s.joint_vel)),
    "linear_velocity": Block(3, lambda a, s, n: a.base(s).velocity, needs_base=True),
    "angular_velocity": Block(3, lambda a, s, n: s.gyro, needs_yaw=True),
    # yaw turned since the first observation, rad
    "heading": Block(1, lambda a, s, n: a.heading(s), needs_yaw=True),
    # a task trained without the IMU's yaw (servo-quad-opencat): body x and y rates, and 0 where the
    # yaw rate and the heading were, whatever the robot reports
    "angular_velocity_no_yaw": Block(3, lambda a, s, n: (s.gyro[0], s.gyro[1], 0.0)),
    "no_heading": Block(1, lambda a, s, n: 0.0),
    "contacts": Block("feet", lambda a, s, n: [(s.contacts >> k) & 1 for k in range(a.config.feet)]),
    "clock": Block(2, lambda a, s, n: a.clock(n)),  # sine and cosine of a gait clock
}


def gravity_direction(quaternion: tuple[float, ...]) -> np.ndarray:
    """Unit gravity direction in the body frame from a body-to-world quaternion w, x, y, z: the IMU's
    roll and pitch (its yaw is the ``heading`` block)."""
    w, x, y, z = quaternion
    return np.array([2.0 * (w * y - x * z), -2.0 * (y * z + w * x), 2.0 * (x * x + y * y) - 1.0])


def yaw_angle(quaternion: tuple[float, ...]) -> float:
    """Yaw (rad, about the world's vertical, counter-clockwise seen from above) of a body-to-world
    quaternion w, x, y, z."""
    w, x, y, z = quaternion
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


@dataclass(frozen=True)
class JointCalibration:
    offset: float = 0.0  # rad: the robot's angle where the genome's angle is 0
    sign: float = 1.0  # +1 or -1: the robot's direction relative to the genome's
    scale: float = 1.0  # command units per unit of action
    lower: float = -1.0  # command limits, command units
    upper: float = 1.0


@dataclass(frozen=True)
class SafetyConfig:
    max_tilt_deg: float = 45.0  # roll or pitch beyond this -> safe pose
    max_slew: float = 10.0  # command units per second (rad/s in position mode)
    state_timeout_ms: float = 100.0  # host watchdog: no STATE this long -> safe pose, wait
    link_timeout_s: float = 1.0  # no STATE this long -> give up with an error
    ramp_s: float = 1.0  # start-up ramp to the first pose


@dataclass(frozen=True)
class RobotConfig:
    name: str
    task: str  # the genome task this robot runs
    genome: str  # default genome (path or shipped name)
    control_mode: int  # protocol.POSITION or protocol.EFFORT
    joints: tuple[str, ...]
    feet: int
    baud: int
    observation: tuple[tuple[str, float], ...]  # (block, scale) in order
    safety: SafetyConfig
    calibration: tuple[JointCalibration, ...]
    source: str
    link: type[SerialLink] = Link  # what the robot's firmware speaks (LINKS)
    control_period_s: float | None = None  # its task's control period, for a genome that does not say

    @property
    def needs_base_estimate(self) -> bool:
        return any(OBSERVATION_BLOCKS[block].needs_base for block, _ in self.observation)

    def block_size(self, block: str) -> int:
        size = OBSERVATION_BLOCKS[block].size
        return len(self.joints) if size == "joints" else self.feet if size == "feet" else int(size)

    @property
    def obs_size(self) -> int:
        return sum(self.block_size(block) for block, _ in self.observation)

    def check_info(self, info: Info) -> None:
        """Refuse to drive a robot that is not the one this config describes."""
        where = f"robot {info.robot_name!r} (INFO) and config {self.source}"
        if info.joint_names != self.joints:
            raise ConfigError(
                f"{where} disagree on the joints: robot {', '.join(info.joint_names)}; config "
                f"{', '.join(self.joints)}; fix the config's joints list (order matters)"
            )
        if info.control_mode != self.control_mode:
            robot_mode = MODE_NAMES.get(info.control_mode, info.control_mode)
            raise ConfigError(
                f"{where} disagree on the control mode: robot {robot_mode}, config "
                f"{MODE_NAMES[self.control_mode]}; set control_mode in the config"
            )
        if info.n_feet != self.feet:
            raise ConfigError(
                f"{where} disagree on feet: {info.n_feet} vs {self.feet}; fix feet in the config"
            )
        if self.needs_base_estimate and not info.capabilities & CAP_BASE_ESTIMATE:
            raise ConfigError(
                f"config {self.source} observes height or linear_velocity but robot "
                f"{info.robot_name!r} sends no base estimate; drop those blocks (with a genome that does "
                "without them) or add an estimator to the firmware"
            )
        yawed = [block for block, _ in self.observation if OBSERVATION_BLOCKS[block].needs_yaw]
        if yawed and info.capabilities & CAP_NO_YAW:
            raise ConfigError(
                f"config {self.source} observes {', '.join(yawed)}, which need the IMU's yaw, but robot "
                f"{info.robot_name!r} measures none (pitch and roll only); observe gravity, "
                "angular_velocity_no_yaw and no_heading instead, as the servo-quad-opencat config does"
            )
        if self.control_mode == POSITION:
            for name, cal, lo, hi in zip(
                self.joints, self.calibration, info.joint_lower, info.joint_upper, strict=True
            ):
                if np.float32(cal.lower) < lo or np.float32(cal.upper) > hi:  # INFO carries float32
                    raise ConfigError(
                        f"calibration limits of {name} [{cal.lower:g}, {cal.upper:g}] rad exceed the robot's "
                        f"[{lo:g}, {hi:g}] rad; narrow them in the calibration file"
                    )


def _fail(source: str, problem: str) -> ConfigError:
    return ConfigError(f"robot config {source}: {problem}")


def _read_yaml(path: Path, what: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}; check the path") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{what} {path} is not valid YAML{at}; fix the syntax") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path} must be a YAML mapping of keys to values")
    return data


def _number(source: str, key: str, value: Any, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(source, f"{key} must be a number, got {value!r}")
    if positive and value <= 0:
        raise _fail(source, f"{key} must be positive, got {value!r}")
    return float(value)


def _observation(source: str, blocks: Any) -> tuple[tuple[str, float], ...]:
    if not isinstance(blocks, list) or not blocks:
        raise _fail(source, "observation must be a list of blocks, e.g. [quaternion, joint_positions]")
    out = []
    for item in blocks:
        name, scale = next(iter(item.items())) if isinstance(item, dict) and len(item) == 1 else (item, 1.0)
        if name not in OBSERVATION_BLOCKS:
            raise _fail(
                source, f"unknown observation block {name!r}; choose from {', '.join(OBSERVATION_BLOCKS)}"
            )
        out.append((name, _number(source, f"scale of {name}", scale)))
    return tuple(out)


def _calibration(path: Path, joints: tuple[str, ...]) -> tuple[JointCalibration, ...]:
    source = str(path)
    table = _read_yaml(path, "calibration file").get("joints")
    if not isinstance(table, dict):
        raise ConfigError(
            f"calibration file {source} needs a 'joints' mapping: joint name -> offset, sign, ..."
        )
    missing = [j for j in joints if j not in table]
    unknown = [j for j in table if j not in joints]
    if missing or unknown:
        raise ConfigError(
            f"calibration file {source} must list exactly the robot's joints; "
            f"missing {missing or 'none'}, unknown {unknown or 'none'}"
        )
    out = []
    for joint in joints:
        entry = table[joint] or {}
        extra = set(entry) - {"offset", "sign", "scale", "limits"}
        if extra:
            raise ConfigError(f"calibration file {source}: {joint} has unknown keys {sorted(extra)}")
        limits = entry.get("limits", [-1.0, 1.0])
        if not isinstance(limits, list) or len(limits) != 2:
            raise ConfigError(f"calibration file {source}: {joint} limits must be [lower, upper]")
        lower, upper = (_number(source, f"{joint} limits", v) for v in limits)
        sign = _number(source, f"{joint} sign", entry.get("sign", 1))
        if sign not in (-1.0, 1.0) or lower >= upper:
            raise ConfigError(
                f"calibration file {source}: {joint} needs sign +1 or -1 and limits with lower < upper"
            )
        offset = _number(source, f"{joint} offset", entry.get("offset", 0.0))
        scale = _number(source, f"{joint} scale", entry.get("scale", 1.0), positive=True)
        out.append(JointCalibration(offset, sign, scale, lower, upper))
    return tuple(out)


def shipped_robots() -> list[str]:
    folder = resources.files("firmware_bridge") / "robots"
    return sorted(
        p.name[: -len(".yaml")]
        for p in folder.iterdir()
        if p.name.count(".") == 1 and p.name.endswith(".yaml")
    )


def robot_path(name: str) -> Path:
    """A config path, or the shipped config of that name (``ant`` -> firmware_bridge/robots/ant.yaml)."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    if name in shipped_robots():
        return Path(str(resources.files("firmware_bridge") / "robots" / f"{name}.yaml"))
    shipped = ", ".join(shipped_robots())
    raise ConfigError(f"no robot config {name!r}; give a YAML path or one of the shipped robots: {shipped}")


def load_robot(name: str, calibration: str | None = None) -> RobotConfig:
    """Read and check a robot config and its calibration file; every problem is one ConfigError."""
    path = robot_path(name)
    source = str(path)
    data = _read_yaml(path, "robot config")
    known = {
        "name",
        "task",
        "genome",
        "control_mode",
        "joints",
        "feet",
        "baud",
        "observation",
        "safety",
        "calibration",
        "link",
        "control_period_ms",
    }
    if set(data) - known:
        raise _fail(source, f"unknown keys {sorted(set(data) - known)}; known: {', '.join(sorted(known))}")
    for key in ("name", "joints", "control_mode", "observation"):
        if key not in data:
            raise _fail(source, f"missing key {key!r}")
    joints = data["joints"]
    if not isinstance(joints, list) or not joints or not all(isinstance(j, str) for j in joints):
        raise _fail(source, "joints must be a list of joint names in the robot's order")
    mode = data["control_mode"]
    if mode not in CONTROL_MODES:
        raise _fail(source, f"control_mode {mode!r} must be one of {', '.join(CONTROL_MODES)}")
    safety_data = data.get("safety") or {}
    fields = SafetyConfig.__dataclass_fields__
    if set(safety_data) - set(fields):
        raise _fail(
            source,
            f"unknown safety keys {sorted(set(safety_data) - set(fields))}; known: {', '.join(fields)}",
        )
    safety = SafetyConfig(
        **{k: _number(source, f"safety.{k}", v, positive=True) for k, v in safety_data.items()}
    )
    cal_name = calibration or data.get("calibration")
    if cal_name is None:
        raise _fail(source, "no calibration file: add 'calibration: FILE' or pass --calibration FILE")
    cal_path = Path(cal_name) if calibration else path.parent / cal_name
    joint_cal = _calibration(cal_path, tuple(joints))
    if mode == "effort" and any(c.lower < -1.0 or c.upper > 1.0 for c in joint_cal):
        raise ConfigError(f"calibration file {cal_path}: effort limits must lie within [-1, 1]")
    link = data.get("link", "bridge")
    if not isinstance(link, str) or link not in LINKS:
        raise _fail(source, f"link {link!r} must be one of {', '.join(LINKS)}")
    feet = data.get("feet", 0)
    baud = data.get("baud", 1_000_000)
    if not isinstance(feet, int) or not isinstance(baud, int) or feet < 0 or baud <= 0:
        raise _fail(source, "feet must be a count >= 0 and baud a positive integer")
    period = data.get("control_period_ms")
    return RobotConfig(
        name=str(data["name"]),
        task=str(data.get("task", data["name"])),
        genome=str(data.get("genome", data.get("task", data["name"]))),
        control_mode=CONTROL_MODES[mode],
        joints=tuple(joints),
        feet=feet,
        baud=baud,
        observation=_observation(source, data["observation"]),
        safety=safety,
        calibration=joint_cal,
        source=source,
        link=LINKS[link],
        control_period_s=None if period is None else _number(source, "control_period_ms", period, True) / 1e3,
    )


class Adapter:
    """STATE -> the genome's observation vector, and the genome's action -> joint command."""

    def __init__(self, config: RobotConfig) -> None:
        self.config = config
        cal = config.calibration
        self.offset = np.array([c.offset for c in cal])
        self.sign = np.array([c.sign for c in cal])
        self.gain = self.sign * np.array([c.scale for c in cal])
        self.lower = np.array([c.lower for c in cal])
        self.upper = np.array([c.upper for c in cal])
        self.command_offset = self.offset if config.control_mode == POSITION else np.zeros(len(cal))
        self._obs = np.zeros(config.obs_size)
        self.ticks = 0  # observations built: the gait clock counts ticks, as the simulator does
        self.start_yaw = 0.0  # the heading counts from the yaw of the first observation
        # (block, its number, the factor applied to its values, where it goes); the clock's number is its
        # frequency in cycles per tick, not a scale
        self._slices = []
        at = 0
        for block, number in config.observation:
            size = config.block_size(block)
            self._slices.append((block, number, 1.0 if block == "clock" else number, slice(at, at + size)))
            at += size

    def heading(self, state: State) -> float:
        """Yaw turned since the first observation, rad, wrapped to [-pi, pi]."""
        yaw = yaw_angle(state.quaternion)
        if self.ticks == 0:
            self.start_yaw = yaw
        return math.remainder(yaw - self.start_yaw, 2.0 * math.pi)

    def clock(self, cycles_per_tick: float) -> tuple[float, float]:
        """Sine and cosine of the gait clock: it counts ticks, as the simulator does."""
        phase = 2.0 * np.pi * cycles_per_tick * self.ticks
        return np.sin(phase), np.cos(phase)

    def base(self, state: State) -> BaseEstimate:
        """STATE's base estimate, which a block of this config needs."""
        if state.base is None:
            raise ConfigError(
                "robot sent a STATE without the base estimate that the config's observation needs; "
                "fix the firmware or drop height and linear_velocity from the config"
            )
        return state.base

    def observation(self, state: State) -> np.ndarray:
        """The observation vector the genome expects (a view of one reused buffer)."""
        for block, number, factor, where in self._slices:
            self._obs[where] = OBSERVATION_BLOCKS[block].read(self, state, number)
            if factor != 1.0:
                self._obs[where] *= factor
        self.ticks += 1
        return self._obs

    def command(self, action: np.ndarray) -> np.ndarray:
        """Joint command in robot units (not yet limited: that is the safety layer's job)."""
        return self.command_offset + self.gain * np.asarray(action, dtype=np.float64)

    def hold(self, state: State) -> np.ndarray:
        """The command that keeps the robot where it is: measured angles, or zero effort."""
        if self.config.control_mode == EFFORT:
            return np.zeros(len(self.config.joints))
        return np.clip(np.asarray(state.joint_pos), self.lower, self.upper)
