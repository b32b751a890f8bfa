"""On-board mode in the reference sketch: its sensor and safety glue (firmware/plastic/hq_onboard.c, built
here with gcc and loaded with ctypes) computes what the host's adapter and safety layer compute, and the
sketch with HQ_ONBOARD builds for a Cortex-M4F, while an ATmega2560 build refuses it by name."""

from __future__ import annotations

import ctypes
import dataclasses
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from controller.c_export import export_c
from controller.genome import load_genome
from firmware_bridge.protocol import REASON_ORIENTATION, State
from firmware_bridge.robot import Adapter, RobotConfig, load_robot
from firmware_bridge.safety import Safety, SafetyTrip

FIRMWARE = Path(__file__).resolve().parents[1] / "firmware_bridge" / "firmware"
PLASTIC = FIRMWARE / "plastic"
STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-Wconversion", "-Wshadow"]
M4F = ["-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard", "-Os"]
STUBS = Path(__file__).parent / "arduino_stubs"
JOINTS = 8
TICK = 0.02
Floats = ctypes.c_float * JOINTS

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc (apt-get install gcc)")


PER_JOINT = ("offset", "sign", "scale", "lower", "upper")


class Robot(ctypes.Structure):
    """hq_onboard_robot."""

    _fields_ = [(name, Floats) for name in PER_JOINT] + [
        ("max_slew", ctypes.c_float),
        ("max_tilt", ctypes.c_float),
    ]


class Sensors(ctypes.Structure):
    """hq_onboard_sensors."""

    _fields_ = [
        ("quaternion", ctypes.c_float * 4),
        ("gyro", ctypes.c_float * 3),
        ("joint_pos", Floats),
        ("joint_vel", Floats),
        ("contacts", ctypes.c_uint8),
    ]


def _config() -> RobotConfig:
    """The servo-quad with a calibration that exercises every term: offsets, mirrored joints, limits and
    a slew limit that bind."""
    config = load_robot("servo-quad")
    calibration = tuple(
        dataclasses.replace(c, offset=0.1 * (j - 3), sign=-1.0 if j % 3 == 0 else 1.0, lower=-0.4, upper=0.5)
        for j, c in enumerate(config.calibration)
    )
    return dataclasses.replace(
        config, calibration=calibration, safety=dataclasses.replace(config.safety, max_slew=15.0)
    )


@pytest.fixture(scope="module")
def glue(tmp_path_factory) -> ctypes.CDLL:
    folder = tmp_path_factory.mktemp("onboard")
    export_c(load_genome("servo-quad"), folder / "genome.h")
    library = folder / "libhq_onboard.so"
    command = ["gcc", *STRICT, "-O2", "-shared", "-fPIC", f"-I{folder}", str(PLASTIC / "hq_onboard.c")]
    subprocess.run([*command, "-o", str(library), "-lm"], check=True)
    lib = ctypes.CDLL(str(library))
    lib.hq_onboard_yaw.argtypes = [ctypes.c_void_p]
    lib.hq_onboard_yaw.restype = ctypes.c_float
    lib.hq_onboard_action_command.argtypes = [ctypes.c_void_p] * 3
    lib.hq_onboard_tilted.argtypes = [ctypes.c_void_p] * 2
    lib.hq_onboard_observation.argtypes = [
        ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_float, ctypes.c_void_p,
    ]  # fmt: skip
    lib.hq_onboard_limit.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_float]
    return lib


def _robot(config: RobotConfig) -> Robot:
    robot = Robot(*(Floats(*(getattr(c, key) for c in config.calibration)) for key in PER_JOINT))
    robot.max_slew, robot.max_tilt = config.safety.max_slew, math.radians(config.safety.max_tilt_deg)
    return robot


def _states(n: int, rng: np.random.Generator) -> list[State]:
    """STATEs of a robot that turns and tilts (roll and pitch up to 70 degrees) and moves its joints."""
    states = []
    for k in range(n):
        roll, pitch, yaw = rng.uniform(-1.2, 1.2), rng.uniform(-1.2, 1.2), 0.05 * k
        cr, sr, cp, sp, cy, sy = (f(a / 2) for a in (roll, pitch, yaw) for f in (math.cos, math.sin))
        q = (cr * cp * cy + sr * sp * sy, sr * cp * cy - cr * sp * sy, cr * sp * cy + sr * cp * sy,
             cr * cp * sy - sr * sp * cy)  # fmt: skip
        q32 = tuple(np.float32(q).tolist())
        states.append(
            State(0, 0, 0, 0, tuple(np.float32(rng.uniform(-1, 1, JOINTS)).tolist()), (0.0,) * JOINTS, q32,
                  tuple(np.float32(rng.normal(0, 2, 3)).tolist()), 0, 0)
        )  # fmt: skip
    return states


def test_the_sketchs_observation_is_the_hosts(glue):
    config = _config()
    robot, adapter = _robot(config), Adapter(config)
    observation = (ctypes.c_float * config.obs_size)()
    start_yaw = 0.0
    for tick, state in enumerate(_states(300, np.random.default_rng(0))):
        sensors = Sensors(state.quaternion, state.gyro, Floats(*state.joint_pos), Floats(), 0)
        if tick == 0:
            start_yaw = glue.hq_onboard_yaw(sensors.quaternion)
        glue.hq_onboard_observation(ctypes.byref(robot), ctypes.byref(sensors), tick, start_yaw, observation)
        expected, got = adapter.observation(state), np.array(observation)
        heading = math.remainder(got[6] - expected[6], 2 * math.pi)  # +-pi are one heading
        assert abs(heading) < 1e-5 and np.abs(np.delete(got - expected, 6)).max() < 1e-5, tick


def test_the_sketchs_commands_pass_the_hosts_safety_layer(glue):
    """Calibration, joint limits and slew limit, tick by tick from the same start, and the same ticks
    reported as clamped."""
    config = _config()
    robot, adapter, safety = _robot(config), Adapter(config), Safety(config, 1.0 / TICK)
    rng = np.random.default_rng(1)
    start = np.float32(rng.uniform(-0.3, 0.3, JOINTS))
    safety.start_from(start.astype(np.float64))
    previous, command = Floats(*np.clip(start, -0.4, 0.5)), Floats()
    clamped = 0
    for _ in range(300):
        action = np.float32(rng.uniform(-1, 1, JOINTS))
        assert glue.hq_onboard_action_command(ctypes.byref(robot), action.ctypes.data, command) == 1
        clamped += glue.hq_onboard_limit(ctypes.byref(robot), command, previous, TICK)
        np.testing.assert_allclose(np.array(command), safety.limit(adapter.command(action)), atol=1e-5)
    assert clamped == safety.clamped > 100
    action = np.float32([0.0, np.nan, 0, 0, 0, 0, 0, 0])
    assert glue.hq_onboard_action_command(ctypes.byref(robot), action.ctypes.data, command) == 0


def test_the_sketchs_orientation_guard_is_the_hosts(glue):
    config = _config()
    robot, safety = _robot(config), Safety(config, 1.0 / TICK)
    states = _states(500, np.random.default_rng(2))
    states.append(dataclasses.replace(states[0], quaternion=(math.nan, 0.0, 0.0, 0.0)))
    tilted = 0
    for state in states:
        try:
            safety.check_state(state)
            expected = 0
        except SafetyTrip as trip:
            assert trip.reason == REASON_ORIENTATION
            expected = 1
        tilted += expected
        assert (
            glue.hq_onboard_tilted(ctypes.byref(robot), (ctypes.c_float * 4)(*state.quaternion)) == expected
        )
    assert 50 < tilted < 450


def _sketch(folder: Path) -> Path:
    """The reference sketch as `make sketch` leaves it: the tick, its glue and genome.h in its src/."""
    shutil.copytree(FIRMWARE / "hq_servo_robot", folder / "hq_servo_robot")
    src = folder / "hq_servo_robot" / "src"
    for name in ("hq_plastic", "hq_pcg32", "hq_onboard"):
        for suffix in (".c", ".h"):
            shutil.copy(PLASTIC / f"{name}{suffix}", src)
    export_c(load_genome("servo-quad"), src / "genome.h")
    return folder / "hq_servo_robot"


@pytest.mark.parametrize("compiler", ["g++", "arm-none-eabi-g++"])
def test_the_on_board_sketch_type_checks(tmp_path, compiler):
    """With HQ_ONBOARD 1, against the Arduino and Adafruit declarations of tests/arduino_stubs; for a
    Cortex-M4F too. Not a test of behaviour (tests/test_bridge_firmware.py says what such a check is)."""
    if shutil.which(compiler) is None:
        pytest.skip(f"needs {compiler} (apt-get install gcc-arm-none-eabi)")
    target = M4F if compiler.startswith("arm") else []
    sketch = _sketch(tmp_path)
    subprocess.run(
        [compiler, *target, "-std=gnu++11", "-Wall", "-Wextra", "-Werror", "-fsyntax-only", f"-I{STUBS}",
         "-include", "Arduino.h", "-DHQ_ONBOARD=1", "-x", "c++", str(sketch / "hq_servo_robot.ino")],
        check=True,
    )  # fmt: skip


def test_an_atmega2560_build_refuses_on_board_mode_by_name(tmp_path):
    if shutil.which("avr-g++") is None:
        pytest.skip("needs avr-g++ (apt-get install gcc-avr avr-libc)")
    sketch = _sketch(tmp_path)
    build = subprocess.run(
        ["avr-g++", "-mmcu=atmega2560", "-std=gnu++11", "-fsyntax-only", f"-I{STUBS}", "-include",
         "Arduino.h", "-DHQ_ONBOARD=1", "-x", "c++", str(sketch / "hq_servo_robot.ino")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert build.returncode != 0 and "on-board mode needs a 32-bit board" in build.stderr


def test_the_on_board_c_builds_strictly_for_a_cortex_m4f(tmp_path):
    """Codec, tick, PCG32 and glue with -Wall -Wextra -Werror -pedantic -Wconversion; the glue keeps no
    state of its own (no data, no bss: the sketch owns it)."""
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("needs arm-none-eabi-gcc (apt-get install gcc-arm-none-eabi)")
    src = _sketch(tmp_path) / "src"
    objects = []
    for name in ("hq_protocol", "hq_plastic", "hq_pcg32", "hq_onboard"):
        objects.append(str(tmp_path / f"{name}.o"))
        subprocess.run(
            ["arm-none-eabi-gcc", *STRICT, *M4F, "-DHQ_MAX_JOINTS=8", f"-I{src}", "-c",
             str(src / f"{name}.c"), "-o", objects[-1]],
            check=True,
        )  # fmt: skip
    sizes = subprocess.run(["arm-none-eabi-size", objects[-1]], capture_output=True, text=True, check=True)
    _, data, bss, *_ = sizes.stdout.splitlines()[1].split()
    assert (data, bss) == ("0", "0")
