"""``servo-quad``: a small 8-servo quadruped of the hobby class, with its servos modelled as they behave.

The body is ``sim/assets/servo_quad.xml`` (a Petoi Bittle-class robot: about 20 cm long, 0.29 kg, a hip
and a knee per leg, position-controlled hobby servos); figures and their sources are in docs/robots.md.
It is built and damaged through ``mujoco.MjSpec`` like the Ant (``sim.mujoco_quadruped``): the same
legs (1 front-left, 2 back-left, 3 back-right, 4 front-right), the same damage specs, with joints
``hip_N`` and ``knee_N``.

Action (8 values in [-1, 1], joints in order hip_1, knee_1, ..., hip_4, knee_4): servo targets,
``target = 0.7 rad x action`` from the neutral stance (joint angle 0: thigh 30 degrees behind vertical,
knee bent 60 degrees), clipped to the joint ranges. Every tick sends one command to the 8 servos of
:mod:`sim.servo` (latency, dead band, proportional drive, torque and speed limits), simulated at 500 Hz.

Observation (17 values: what such a robot senses, no position, no velocity of the body; and a clock):

- [0:3] gravity direction in the torso frame (unit vector; (0, 0, -1) standing level): the IMU's roll
  and pitch;
- [3:6] 0.1 x torso angular velocity in the torso frame (rad/s): the IMU's gyro;
- [6] heading: the yaw turned since reset (rad, wrapped to [-pi, pi], positive to the left), the IMU's
  yaw relative to where the lifetime started. The gyro alone gives the rate of turning, not how far the
  body has turned: without it, robots whose uneven servos pull the gait to one side walked in circles
  (docs/results.md). A real IMU's yaw drifts (about a degree a minute for an MPU-6050's fused yaw), little
  over a lifetime of 20 s; ``obs_bias`` and ``obs_noise`` act on it like on the other IMU channels.
- [7:15] commanded joint angles (rad from the neutral stance, joint order): the targets of the last
  command sent. Hobby servos report no angle, so a real robot knows only what it commanded.
- [15:17] sine and cosine of a 2 Hz gait clock, counted in ticks since reset: the controller's own
  clock, not a sensor. Without feedback of measured angles, random plastic networks driving position
  servos settle to a fixed pose (measured: none of the initial genomes moved); the clock gives every
  lifetime a rhythm for the rules to shape into a gait (the deploy loop's ``clock`` observation block).

Reward: forward speed (m/s). ``info["x_distance"]``: torso x displacement since reset (m). A lifetime
ends when the torso tilts more than 60 degrees from upright, where the deploy path's orientation guard
stops a real robot. Control period 20 ms (50 Hz); ``tick_jitter`` (s) makes each tick last a random whole
number of physics steps within +-jitter of it, drawn from the environment's generator (domain
randomisation of the control rate).
"""

from __future__ import annotations

import dataclasses
import math
from importlib import resources
from typing import Any

import mujoco
import numpy as np
from gymnasium import spaces

from sim.mujoco_quadruped import MujocoQuadruped
from sim.quadruped import LEGS
from sim.servo import Servos, ServoSpec

JOINTS = tuple(f"{part}_{leg}" for leg in LEGS for part in ("hip", "knee"))
AMPLITUDE = 0.7  # rad of servo target per unit of action
SERVO = ServoSpec(
    stall_torque=0.2,  # N m: 2 kgf cm, micro metal-gear servo class
    no_load_speed=10.0,  # rad/s: 0.1 s per 60 degrees
    proportional_band=0.15,  # rad: full drive from 8.6 degrees of error
    dead_band=0.009,  # rad: 5 us of pulse width
    latency=0.015,  # s: serial frame, firmware loop, next PWM pulse
)
START_HEIGHT = 0.095  # m: torso centre at reset, feet a few mm above the floor
SAFE_POSE = (-0.5, 1.0) * len(LEGS)  # rad, hip and knee per leg: a crouch, belly 3 cm above the floor
VELOCITY_SCALE = 0.1
MAX_TILT_COS = 0.5  # cos 60 degrees: torso z axis this far from vertical ends the lifetime
CLOCK_HZ = 2.0  # gait clock: two strides a second, a Bittle's walk
OBS_SIZE = 17


def model_path() -> str:
    return str(resources.files("sim") / "assets" / "servo_quad.xml")


class ServoQuadEnv(MujocoQuadruped):
    """The servo quadruped with a damage-able body. Damage is undone by :meth:`reset`."""

    joints = JOINTS
    metadata = {"render_modes": ["rgb_array"], "render_fps": 50}
    sensed = slice(0, 7)  # the IMU's channels; the commanded angles are known exactly
    early_stop = (200, 75)  # 4 s, then 1.5 s without a new best distance (the Ant's 1.5 s)
    settle_ticks = 50  # 1 s of the neutral stance before control starts

    servo = SERVO
    yaw_sensed = True  # the IMU's yaw (heading, yaw rate) reaches the controller
    joint_step = math.inf  # rad: the most a joint's command may move in one tick
    command_resolution = 0.0  # rad: commands are rounded to it (0: sent as they are)

    def __init__(
        self,
        frame_skip: int = 10,
        timestep: float = 0.002,
        reset_noise_scale: float = 0.05,
        tick_jitter: float = 0.0,
        clock_hz: float = CLOCK_HZ,
        render_mode: str | None = None,
        width: int = 640,
        height: int = 480,
    ) -> None:
        self.reset_noise_scale = reset_noise_scale
        self.tick_jitter = tick_jitter
        self.clock_hz = clock_hz
        self.ticks = 0
        self.start_yaw = 0.0
        self.servos = Servos(self.servo, len(JOINTS))
        intact = mujoco.MjSpec.from_file(model_path())
        intact.option.timestep = timestep
        super().__init__(intact, frame_skip, render_mode, width, height)
        self.observation_space = spaces.Box(-np.inf, np.inf, (OBS_SIZE,), np.float64)
        self.action_space = spaces.Box(-1.0, 1.0, (len(JOINTS),), np.float32)
        ranges = self.model.jnt_range[[self.model.joint(j).id for j in JOINTS]]
        self.joint_lower, self.joint_upper = ranges[:, 0].copy(), ranges[:, 1].copy()
        self.commanded = np.zeros(len(JOINTS))

    # --- servos ------------------------------------------------------------------------------
    def command(self, target: np.ndarray) -> None:
        """Send joint targets (rad from the neutral stance) to the servos, as the firmware would."""
        if math.isfinite(self.joint_step):
            target = np.clip(target, self.commanded - self.joint_step, self.commanded + self.joint_step)
        if self.command_resolution:
            target = np.round(target / self.command_resolution) * self.command_resolution
        self.commanded = np.clip(target, self.joint_lower, self.joint_upper)
        self.servos.command(self.commanded, self.data.time)

    def physics_step(self) -> None:
        """One physics step with the servos' torques (the emulated firmware steps the robot so too)."""
        data = self.data
        data.ctrl[:] = self.servos.torque(data.time, data.qpos[self._qpos_adr], data.qvel[self._qvel_adr])
        mujoco.mj_step(self.model, data)

    def _substeps(self) -> int:
        if self.tick_jitter <= 0:
            return self.frame_skip
        spread = round(self.tick_jitter / self.model.opt.timestep)
        return self.frame_skip + int(self.np_random.integers(-spread, spread + 1))

    def slow_joint(self, joint: str, speed: float) -> None:
        """The joint's servo turns no faster than ``speed`` (rad/s): its no-load speed capped."""
        self.servos.max_speed[JOINTS.index(joint)] = speed

    # --- sensing -----------------------------------------------------------------------------
    def gravity(self) -> np.ndarray:
        """Unit gravity direction in the torso frame (what the IMU's roll and pitch say), from the
        torso's orientation now (``data.xmat`` lags a physics step behind ``qpos`` after a step)."""
        w, x, y, z = self.data.qpos[3:7]
        if self.tilt:  # on a slope gravity is not the world's -z
            down = np.empty(3)
            mujoco.mju_rotVecQuat(down, [-np.sin(self.tilt), 0.0, -np.cos(self.tilt)], [w, -x, -y, -z])
            return down
        return np.array([2.0 * (w * y - x * z), -2.0 * (y * z + w * x), 2.0 * (x * x + y * y) - 1.0])

    def yaw(self) -> float:
        """The torso's yaw (rad, about the world's z, from +x toward +y)."""
        w, x, y, z = self.data.qpos[3:7]
        return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))

    def heading(self) -> float:
        """Yaw turned since reset, wrapped to [-pi, pi]: what a walker needs to hold its course."""
        return math.remainder(self.yaw() - self.start_yaw, 2.0 * math.pi)

    def clock(self) -> tuple[float, float]:
        """Sine and cosine of the gait clock's phase, counted in ticks since reset at the nominal
        control period (the deploy loop counts its ticks the same way, jitter or not)."""
        phase = 2.0 * np.pi * self.clock_hz * self.ticks * self.dt
        return np.sin(phase), np.cos(phase)

    def _obs(self) -> np.ndarray:
        gyro = VELOCITY_SCALE * self.data.qvel[3:6]
        if not self.yaw_sensed:
            gyro[2] = 0.0
        return np.concatenate(
            [
                self.gravity(),
                gyro,
                (self.heading() if self.yaw_sensed else 0.0,),
                self.commanded,
                self.clock(),
            ]
        )

    # --- gymnasium API -----------------------------------------------------------------------
    def _initial_state(self) -> None:
        """Standing just above the floor, joints near the neutral stance, the servos holding it."""
        noise = self.reset_noise_scale
        self.data.qpos[2] = START_HEIGHT
        self.data.qpos[self._qpos_adr] = self.np_random.uniform(-noise, noise, len(JOINTS))
        self.commanded = np.zeros(len(JOINTS))
        self.servos.reset(self.commanded)
        self.ticks = 0
        self.start_yaw = self.yaw()

    def step(self, action: np.ndarray):
        x_before = float(self.data.qpos[0])
        self.command(AMPLITUDE * np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0))
        substeps = self._substeps()
        for _ in range(substeps):
            self.physics_step()
        self.ticks += 1
        fallen = -self.gravity()[2] < MAX_TILT_COS
        return self._end_tick(x_before, substeps * self.model.opt.timestep, fallen)


class ServoQuadOpenCatEnv(ServoQuadEnv):
    """``servo-quad-opencat``: the same robot driven as Petoi's stock OpenCat firmware can drive it
    (docs/robots.md, "What the stock firmware gives"), so a genome evolved here needs no reflashing.

    The firmware eases every ``I`` move over 10.6 ms PWM frames and answers ``v`` with pitch and roll
    only: with a ``v`` and an ``I`` each tick its deadlines hold at a 45 ms period and at most 5 degrees
    per joint a tick, in whole degrees. So a tick lasts 46 ms (23 physics steps), each joint's command
    moves at most 5 degrees a tick and is rounded to a whole degree, the observation's heading and yaw
    rate read 0 (no yaw: the layout stays the servo-quad's 17 values, so genomes carry over), and a
    command reaches the servos 25 ms after it is sent (the ``v`` read and its beep, the serial bytes, the
    first eased frame). The 2 Hz gait clock counts these ticks. Randomisation's latency replaces the
    nominal one, as on the servo-quad.
    """

    servo = dataclasses.replace(SERVO, latency=0.025)
    yaw_sensed = False
    joint_step = math.radians(5.0)
    command_resolution = math.radians(1.0)
    metadata = {"render_modes": ["rgb_array"], "render_fps": 22}
    early_stop = (87, 33)  # 4 s, then 1.5 s without a new best distance, as on the servo-quad
    settle_ticks = 22  # 1 s of the neutral stance

    def __init__(self, frame_skip: int = 23, **kwargs: Any) -> None:
        super().__init__(frame_skip=frame_skip, **kwargs)
