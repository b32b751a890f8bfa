"""The MuJoCo Ant as a gymnasium environment whose body can be damaged while it runs.

Built from gymnasium's Ant model through ``mujoco.MjSpec``: actuators are put in leg order, the
lower segments are named ``lower_leg_N``, and damage edits the spec and recompiles with the
simulation state kept (the damage methods of :class:`sim.mujoco_quadruped.MujocoQuadruped`, e.g.
:meth:`~sim.mujoco_quadruped.MujocoQuadruped.cut_leg`), so a leg can be cut at any tick.

Legs and joints as in :mod:`sim.quadruped` (1 front-left, 2 back-left, 3 back-right, 4 front-right);
leg N's lower segment is the body ``lower_leg_N``.

Observation (27 values): [0] torso height z (m); [1:5] torso orientation quaternion (w, x, y, z);
[5:13] joint angles (rad) hip_1, ankle_1, ..., hip_4, ankle_4; [13:16] 0.1 x torso linear velocity
(world frame, m/s); [16:19] 0.1 x torso angular velocity (body frame, rad/s); [19:27] 0.1 x joint
velocities (rad/s). The 0.1 keeps velocities on the scale of the angles, as PyBullet's Ant does.

Action (8 values in [-1, 1]): normalised motor torque (gear 150), same joint order.
Reward: forward speed (m/s). ``info["x_distance"]``: torso x displacement since reset (m).
"""

from __future__ import annotations

import os

import gymnasium
import mujoco
import numpy as np
from gymnasium import spaces

from sim.mujoco_quadruped import MujocoQuadruped, leg_geom
from sim.quadruped import JOINTS, LEGS, MIRROR_LEGS, Mirror

__all__ = ["INIT_QPOS", "JOINTS", "AntEnv", "build_spec", "leg_geom"]  # leg_geom: for tests and the emulator

GEAR = 150.0
INIT_QPOS = (0.0, 0.0, 0.75, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, -1.0, 0.0, -1.0, 0.0, 1.0)
VELOCITY_SCALE = 0.1


def _mirror() -> Mirror:
    """The Ant reflected: legs 1 <-> 4 and 2 <-> 3; a hip (axis z) turns the other way, an ankle bends
    the same way; y, the quaternion's x and z, and the angular velocity's x and z change sign."""
    joints = [JOINTS.index(f"{part}_{MIRROR_LEGS[leg]}") for leg in LEGS for part in ("hip", "ankle")]
    joint_signs = [-1.0, 1.0] * len(LEGS)
    source = [0, 1, 2, 3, 4, *(5 + j for j in joints), 13, 14, 15, 16, 17, 18, *(19 + j for j in joints)]
    sign = [1.0, 1.0, -1.0, 1.0, -1.0, *joint_signs, 1.0, -1.0, 1.0, -1.0, 1.0, -1.0, *joint_signs]
    return Mirror(tuple(source), tuple(sign), tuple(joints), tuple(joint_signs))


def _gymnasium_ant_xml() -> str:
    return os.path.join(os.path.dirname(gymnasium.__file__), "envs", "mujoco", "assets", "ant.xml")


def build_spec() -> mujoco.MjSpec:
    """The intact Ant: gymnasium's model with actuators in leg order and named lower segments."""
    spec = mujoco.MjSpec.from_file(_gymnasium_ant_xml())
    for actuator in list(spec.actuators):
        spec.delete(actuator)
    for joint in JOINTS:
        spec.add_actuator(
            name=joint,
            target=joint,
            trntype=mujoco.mjtTrn.mjTRN_JOINT,
            gear=[GEAR, 0, 0, 0, 0, 0],
            ctrllimited=True,
            ctrlrange=[-1.0, 1.0],
        )
    for leg in LEGS:
        body = spec.joint(f"ankle_{leg}").parent
        body.name = f"lower_leg_{leg}"
        body.first_geom().name = f"lower_leg_{leg}_geom"
    return spec


class AntEnv(MujocoQuadruped):
    """The Ant with a damage-able body. Damage is undone by :meth:`reset`."""

    mirror = _mirror()

    def __init__(
        self,
        frame_skip: int = 5,
        timestep: float = 0.01,
        reset_noise_scale: float = 0.1,
        terminate_upside_down: bool = True,
        render_mode: str | None = None,
        width: int = 640,
        height: int = 480,
    ) -> None:
        intact = build_spec()
        intact.option.timestep = timestep
        self.reset_noise_scale = reset_noise_scale
        self.terminate_upside_down = terminate_upside_down
        super().__init__(intact, frame_skip, render_mode, width, height)
        self.observation_space = spaces.Box(-np.inf, np.inf, (27,), np.float64)
        self.action_space = spaces.Box(-1.0, 1.0, (len(JOINTS),), np.float32)

    # --- gymnasium API -----------------------------------------------------------------------
    def _obs(self) -> np.ndarray:
        qpos, qvel = self.data.qpos, self.data.qvel
        return np.concatenate(
            [
                qpos[2:3],
                self._orientation(),
                qpos[self._qpos_adr],
                VELOCITY_SCALE * qvel[0:6],
                VELOCITY_SCALE * qvel[self._qvel_adr],
            ]
        )

    def _orientation(self) -> np.ndarray:
        """The torso's quaternion relative to gravity, as an IMU reads it: on a slope
        (:meth:`tilt_ground`) the model's frame is the ground's, pitched by the tilt."""
        if not self.tilt:
            return self.data.qpos[3:7]
        level = np.array([np.cos(-self.tilt / 2), 0.0, np.sin(-self.tilt / 2), 0.0])
        out = np.empty(4)
        mujoco.mju_mulQuat(out, level, self.data.qpos[3:7])
        return out

    def _initial_state(self) -> None:
        noise = self.reset_noise_scale
        qpos = np.array(INIT_QPOS) + self.np_random.uniform(-noise, noise, self.model.nq)
        qvel = noise * self.np_random.standard_normal(self.model.nv)
        self.data.qpos[:] = qpos
        self.data.qvel[:] = qvel

    def step(self, action: np.ndarray):
        x_before = float(self.data.qpos[0])
        self.data.ctrl[:] = np.clip(action, -1.0, 1.0)
        mujoco.mj_step(self.model, self.data, nstep=self.frame_skip)
        upside_down = self.data.xmat[self.model.body("torso").id][8] < 0.0
        return self._end_tick(x_before, self.dt, self.terminate_upside_down and upside_down)
