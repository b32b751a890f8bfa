"""Robot configs, calibration and the safety layer: the observation the genome sees, the command the
robot gets, and every refusal as one line that names the fix."""

from __future__ import annotations

import math

import numpy as np
import pytest

from firmware_bridge.emulator import AntBody, Firmware
from firmware_bridge.errors import ConfigError
from firmware_bridge.link import Link, SerialLink
from firmware_bridge.opencat import OpenCatLink
from firmware_bridge.protocol import (
    CAP_BASE_ESTIMATE,
    EFFORT,
    FAULT_ESTOP,
    FAULT_IMU,
    POSITION,
    REASON_NON_FINITE,
    REASON_ORIENTATION,
    REASON_ROBOT_FAULT,
    Info,
    State,
    decode,
)
from firmware_bridge.robot import Adapter, load_robot
from firmware_bridge.safety import Ramp, Safety, SafetyTrip, roll_pitch
from sim.ant import JOINTS

SERVO_CONFIG = """
name: servo
task: ant
control_mode: position
joints: [a, b]
feet: 2
observation: [joint_positions, {joint_velocities: 0.5}, contacts, angular_velocity]
safety: {max_tilt_deg: 30, max_slew: 2.0, ramp_s: 0.5}
calibration: servo.cal.yaml
"""
SERVO_CALIBRATION = """
joints:
  a: {offset: 0.2, sign: -1, scale: 0.5, limits: [-0.5, 1.0]}
  b: {limits: [-1.0, 1.0]}
"""


@pytest.fixture
def servo(tmp_path):
    (tmp_path / "servo.yaml").write_text(SERVO_CONFIG)
    (tmp_path / "servo.cal.yaml").write_text(SERVO_CALIBRATION)
    return load_robot(str(tmp_path / "servo.yaml"))


def _state(pos=(0.0, 0.0), vel=(0.0, 0.0), quaternion=(1.0, 0.0, 0.0, 0.0), faults=0, contacts=0b10):
    return State(0, 0, faults, 0, pos, vel, quaternion, (0.1, 0.2, 0.3), 2, contacts)


def test_shipped_ant_config_matches_the_genome_and_the_simulator():
    ant = load_robot("ant")
    assert ant.obs_size == 27 and ant.joints == JOINTS and ant.control_mode == EFFORT
    assert ant.needs_base_estimate


def test_a_config_names_the_link_its_firmware_speaks():
    """One link interface: the deploy loop gets a SerialLink whatever the firmware, chosen by the config."""
    assert load_robot("ant").link is Link and load_robot("servo-quad-opencat").link is OpenCatLink
    assert issubclass(Link, SerialLink) and issubclass(OpenCatLink, SerialLink)


@pytest.mark.parametrize(
    ("block", "size"),
    [("joint_positions", 8), ("joint_velocities", 8), ("contacts", 4), ("quaternion", 4), ("clock", 2)],
)
def test_block_sizes_follow_the_robot(block, size):
    assert load_robot("ant").block_size(block) == size


def test_adapter_builds_exactly_the_simulators_observation_from_state():
    """Emulated STATE through the Ant config gives the 27 values sim.make("ant") observes."""
    body = AntBody(seed=3, physics_hz=100)
    firmware, adapter = Firmware(body), Adapter(load_robot("ant"))
    rng = np.random.default_rng(0)
    for _ in range(30):
        obs, *_ = body.env.step(rng.uniform(-1, 1, 8))
        _, state = decode(firmware.state_frame(0.0)[:-1])
        np.testing.assert_allclose(adapter.observation(state), obs, rtol=1e-6, atol=1e-6)


def test_calibration_maps_offset_sign_and_scale(servo):
    adapter = Adapter(servo)
    obs = adapter.observation(_state(pos=(0.5, -0.3), vel=(2.0, 4.0)))
    # joint a: sign -1, offset 0.2; velocities scaled by 0.5; feet bits; gyro
    np.testing.assert_allclose(obs, [-0.3, -0.3, -1.0, 2.0, 0.0, 1.0, 0.1, 0.2, 0.3], rtol=1e-6)
    np.testing.assert_allclose(adapter.command(np.array([1.0, 0.25])), [0.2 - 0.5, 0.25])
    np.testing.assert_allclose(adapter.hold(_state(pos=(3.0, 0.1))), [1.0, 0.1])  # clamped to limits


def test_effort_hold_is_zero_effort():
    assert not Adapter(load_robot("ant")).hold(State(0, 0, 0, 0, (0.3,) * 8, (0.0,) * 8, (1, 0, 0, 0),
                                                     (0, 0, 0), 4, 0)).any()  # fmt: skip


def _write(tmp_path, config: str, calibration: str = SERVO_CALIBRATION):
    (tmp_path / "servo.yaml").write_text(config)
    (tmp_path / "servo.cal.yaml").write_text(calibration)
    return str(tmp_path / "servo.yaml")


@pytest.mark.parametrize(
    ("config", "calibration", "expected"),
    [
        (SERVO_CONFIG.replace("control_mode: position", "control_mode: torque"), None, "control_mode"),
        (SERVO_CONFIG.replace("contacts", "feet_pressure"), None, "unknown observation block"),
        (SERVO_CONFIG.replace("max_tilt_deg: 30", "max_tilt: 30"), None, "unknown safety keys"),
        (SERVO_CONFIG.replace("max_slew: 2.0", "max_slew: -2"), None, "must be positive"),
        (SERVO_CONFIG.replace("joints: [a, b]", "joints: [a, b, c]"), None, "missing ['c']"),
        (SERVO_CONFIG + "colour: red\n", None, "unknown keys"),
        (SERVO_CONFIG + "link: [opencat]\n", None, "link ['opencat'] must be one of bridge, opencat"),
        (SERVO_CONFIG.replace("joints: [a, b]", "joints: [a, b"), None, "not valid YAML"),
        (SERVO_CONFIG, SERVO_CALIBRATION.replace("sign: -1", "sign: 2"), "sign +1 or -1"),
        (SERVO_CONFIG, SERVO_CALIBRATION.replace("[-0.5, 1.0]", "[1.0, -0.5]"), "lower < upper"),
        (SERVO_CONFIG, SERVO_CALIBRATION.replace("offset: 0.2", "offset: zero"), "must be a number"),
        (
            SERVO_CONFIG.replace("control_mode: position", "control_mode: effort"),
            SERVO_CALIBRATION.replace("[-1.0, 1.0]", "[-2.0, 1.0]"),
            "within [-1, 1]",
        ),
    ],
)
def test_bad_configs_are_one_line_errors(tmp_path, config, calibration, expected):
    with pytest.raises(ConfigError) as err:
        load_robot(_write(tmp_path, config, calibration or SERVO_CALIBRATION))
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_unknown_robot_names_the_shipped_ones():
    with pytest.raises(ConfigError, match="shipped robots: ant"):
        load_robot("dog")


def _info(**change) -> Info:
    fields = dict(
        robot_name="servo", control_mode=POSITION, joint_names=("a", "b"), joint_lower=(-1.0, -1.0),
        joint_upper=(1.0, 1.0), n_feet=2, max_rate_hz=200, state_rate_hz=200, watchdog_ms=100,
    )  # fmt: skip
    fields.update(change)
    return Info(**fields)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"joint_names": ("b", "a")}, "disagree on the joints"),
        ({"control_mode": EFFORT}, "control mode: robot effort, config position"),
        ({"n_feet": 4}, "disagree on feet"),
        ({"joint_upper": (0.9, 1.0)}, "exceed the robot's"),
    ],
)
def test_config_refuses_a_robot_that_is_not_the_one_it_describes(servo, change, expected):
    with pytest.raises(ConfigError, match=expected):
        servo.check_info(_info(**change))
    servo.check_info(_info())


def test_ant_config_needs_the_base_estimate():
    info = Info("ant", EFFORT, JOINTS, (-1.0,) * 8, (1.0,) * 8, 4, 500, 250, 100, capabilities=0)
    with pytest.raises(ConfigError, match="no base estimate"):
        load_robot("ant").check_info(info)
    load_robot("ant").check_info(Info("ant", EFFORT, JOINTS, (-1.0,) * 8, (1.0,) * 8, 4, 500, 250, 100,
                                      CAP_BASE_ESTIMATE))  # fmt: skip


def test_safety_clamps_to_limits_and_slew(servo):
    safety = Safety(servo, rate_hz=10)  # max_slew 2/s -> 0.2 per tick
    safety.start_from(np.array([0.0, 0.0]))
    np.testing.assert_allclose(safety.limit(np.array([5.0, -0.1])), [0.2, -0.1])
    np.testing.assert_allclose(safety.limit(np.array([5.0, -5.0])), [0.4, -0.3])
    for _ in range(10):
        command = safety.limit(np.array([5.0, -5.0]))
    np.testing.assert_allclose(command, [1.0, -1.0])  # joint limits
    assert safety.clamped == 12


def test_non_finite_action_trips_to_safe_pose(servo):
    with pytest.raises(SafetyTrip) as trip:
        Safety(servo, 50).limit(np.array([0.1, math.nan]))
    assert trip.value.reason == REASON_NON_FINITE and "[1]" in str(trip.value)


def _quaternion(roll: float = 0.0, pitch: float = 0.0) -> tuple[float, ...]:
    cr, sr, cp, sp = math.cos(roll / 2), math.sin(roll / 2), math.cos(pitch / 2), math.sin(pitch / 2)
    return (cr * cp, sr * cp, cr * sp, -sr * sp)


def test_roll_pitch_from_quaternion():
    roll, pitch = roll_pitch(_quaternion(math.radians(25), math.radians(-40)))
    assert math.degrees(roll) == pytest.approx(25) and math.degrees(pitch) == pytest.approx(-40)


@pytest.mark.parametrize(
    ("roll", "pitch", "trips"), [(25, 0, False), (0, -29, False), (31, 0, True), (0, 35, True)]
)
def test_orientation_guard(servo, roll, pitch, trips):
    state = _state(quaternion=_quaternion(math.radians(roll), math.radians(pitch)))
    if trips:
        with pytest.raises(SafetyTrip) as trip:
            Safety(servo, 50).check_state(state)
        assert trip.value.reason == REASON_ORIENTATION
    else:
        Safety(servo, 50).check_state(state)


def test_robot_estop_trips(servo):
    with pytest.raises(SafetyTrip) as trip:
        Safety(servo, 50).check_state(_state(faults=FAULT_ESTOP))
    assert trip.value.reason == REASON_ROBOT_FAULT


def test_imu_fault_trips_to_safe_pose_with_a_one_line_reason(servo):
    """Issue 23 item 2: the host drove on for 3 s with the IMU flagged invalid (a level quaternion)."""
    with pytest.raises(SafetyTrip) as trip:
        Safety(servo, 50).check_state(_state(faults=FAULT_IMU))
    assert trip.value.reason == REASON_ROBOT_FAULT and "IMU failed" in str(trip.value)
    assert "\n" not in str(trip.value)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_orientation_is_named_as_such(servo, bad):
    """Not "pitch 90 deg", as a NaN quaternion used to read."""
    with pytest.raises(SafetyTrip) as trip:
        Safety(servo, 50).check_state(_state(quaternion=(bad, 0.0, 0.0, 0.0)))
    assert trip.value.reason == REASON_ORIENTATION
    assert "not finite" in str(trip.value) and "deg" not in str(trip.value)


def test_ramp_moves_linearly_to_the_first_pose():
    ramp = Ramp(np.array([0.0, 1.0]), np.array([1.0, -1.0]), ticks=4)
    steps = [ramp.next() for _ in range(4)]
    np.testing.assert_allclose(steps, [[0.25, 0.5], [0.5, 0.0], [0.75, -0.5], [1.0, -1.0]])
    assert ramp.done
