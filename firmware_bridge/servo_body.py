"""The servo quadruped (``sim.make("servo-quad")``) as the firmware emulator's hardware.

What a hobby robot has, and no more: 8 position-controlled servos (the latency, dead band, torque and
speed limits of ``sim/servo.py``), an IMU, no foot switches, no base estimate. Like the reference
firmware (``firmware/hq_servo_robot``), STATE reports the angles the firmware commanded, since hobby
servos report none, and no joint velocities.
"""

from __future__ import annotations

import numpy as np

from firmware_bridge.body import Sensors
from firmware_bridge.protocol import POSITION


class ServoQuadBody:
    """8 hobby servos and an IMU on a MuJoCo body, stepped one physics step at a time."""

    name = "servo-quad"
    control_mode = POSITION
    capabilities = 0  # no base estimate: no height, no linear velocity
    n_feet = 0

    def __init__(self, seed: int = 0, physics_hz: float = 500.0) -> None:
        import sim
        from sim.servo_quad import SAFE_POSE

        self.env = sim.make("servo-quad", timestep=1.0 / physics_hz, frame_skip=1)
        self.env.reset(seed=seed)
        self.robot = robot = self.env.unwrapped
        self.joint_names = tuple(robot.joints)
        self.joint_lower = tuple(float(v) for v in robot.joint_lower)
        self.joint_upper = tuple(float(v) for v in robot.joint_upper)
        self.safe_pose = np.asarray(SAFE_POSE, dtype=np.float64)
        self.dt = float(robot.model.opt.timestep)
        self._sent: np.ndarray | None = None  # the targets the servos were last sent
        self.start_x = self.x

    @property
    def x(self) -> float:
        """Torso position along the walking direction (m)."""
        return float(self.robot.data.qpos[0])

    def _send(self, target: np.ndarray) -> None:
        """Servos powered, targets sent when they change (the firmware writes a pulse width)."""
        if self._sent is None or not np.array_equal(target, self._sent):
            self.robot.command(target)
            self._sent = np.array(target, copy=True)
        self.robot.servos.limp = False

    def drive(self, command: np.ndarray) -> None:
        self._send(command)

    def hold(self) -> None:
        """The safe pose: a crouch on all four feet."""
        self._send(self.safe_pose)

    def release(self) -> None:
        """Servos limp (no pulses)."""
        self.robot.servos.limp = True

    def step(self) -> None:
        self.robot.physics_step()

    def sense(self) -> Sensors:
        data = self.robot.data
        return Sensors(
            joint_pos=self.robot.commanded.copy(),
            joint_vel=np.zeros(len(self.joint_names)),
            quaternion=data.qpos[3:7].copy(),
            gyro=data.qvel[3:6].copy(),
            contacts=0,
            base=None,
        )
