"""The MuJoCo Ant as a gymnasium environment whose body can be damaged while it runs.

Built from gymnasium's Ant model through ``mujoco.MjSpec``: actuators are put in leg order, the
lower segments are named ``lower_leg_N``, and damage edits the spec and recompiles with the
simulation state kept (:meth:`AntEnv.damage_body`), so a leg can be cut at any tick.

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
from collections.abc import Callable
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering; set MUJOCO_GL=osmesa to override

import gymnasium
import mujoco
import numpy as np
from gymnasium import spaces

from sim.quadruped import JOINTS, LEGS, Quadruped

GEAR = 150.0
INIT_QPOS = (0.0, 0.0, 0.75, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, -1.0, 0.0, -1.0, 0.0, 1.0)
VELOCITY_SCALE = 0.1
CUT_MASS = 1e-6  # kg: MuJoCo needs a moving body to have some mass


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


def leg_geom(leg: int) -> str:
    return f"lower_leg_{leg}_geom"


class AntEnv(Quadruped):
    """The Ant with a damage-able body. Damage is undone by :meth:`reset`."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

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
        self._intact = build_spec()
        self._intact.option.timestep = timestep
        self.frame_skip = int(frame_skip)
        self.reset_noise_scale = reset_noise_scale
        self.terminate_upside_down = terminate_upside_down
        self.render_mode = render_mode
        self._size = (height, width)
        self._renderer: mujoco.Renderer | None = None
        self._body_damaged = False
        self._compile(self._intact.copy())
        self.observation_space = spaces.Box(-np.inf, np.inf, (27,), np.float64)
        self.action_space = spaces.Box(-1.0, 1.0, (len(JOINTS),), np.float32)
        self.damage: list[str] = []

    # --- model -------------------------------------------------------------------------------
    def _compile(self, spec: mujoco.MjSpec) -> None:
        self.mjspec = spec
        self.model = spec.compile()
        self.data = mujoco.MjData(self.model)
        self._index()

    def _index(self) -> None:
        """Addresses of the joints in qpos/qvel, looked up by name (they survive recompiles)."""
        ids = [self.model.joint(name).id for name in JOINTS]
        self._qpos_adr = self.model.jnt_qposadr[ids]
        self._qvel_adr = self.model.jnt_dofadr[ids]
        self._renderer = None

    def _edit_body(self, edit: Callable[[mujoco.MjSpec], None]) -> None:
        """Edit the body through its spec and recompile, keeping the simulation state as it is."""
        edit(self.mjspec)
        self.model, self.data = self.mjspec.recompile(self.model, self.data)
        self._body_damaged = True
        self._index()

    # --- damage (the vocabulary every simulated robot offers; see sim.damage) ---------------------
    def cut_leg(self, leg: int) -> None:
        """The lower segment is gone: it touches nothing, weighs (almost) nothing, is not drawn."""

        def edit(spec: mujoco.MjSpec) -> None:
            geom = spec.geom(leg_geom(leg))
            geom.contype = geom.conaffinity = 0
            geom.rgba = [0.0, 0.0, 0.0, 0.0]
            geom.mass = CUT_MASS

        self._edit_body(edit)

    def shorten_leg(self, leg: int, fraction: float) -> None:
        """The lower segment keeps ``fraction`` of its length (and of its mass)."""

        def edit(spec: mujoco.MjSpec) -> None:
            geom = spec.geom(leg_geom(leg))
            geom.fromto = [*geom.fromto[:3], *(fraction * np.asarray(geom.fromto[3:]))]

        self._edit_body(edit)

    def lock_joint(self, joint: str) -> None:
        """Jam a joint at its current angle (a seized servo): a stiff equality, motor off."""
        angle = float(self.data.qpos[self.model.joint(joint).qposadr[0]])

        def edit(spec: mujoco.MjSpec) -> None:
            spec.add_equality(
                name=f"lock_{joint}",
                type=mujoco.mjtEq.mjEQ_JOINT,
                objtype=mujoco.mjtObj.mjOBJ_JOINT,
                name1=joint,
                data=[angle] + [0.0] * 11,
                solref=[2 * self.model.opt.timestep, 1.0],
                solimp=[0.99, 0.999, 0.001, 0.5, 2.0],
            )
            spec.actuator(joint).gear = [0.0] * 6

        self._edit_body(edit)

    def weaken_joint(self, joint: str, fraction: float) -> None:
        """The joint's motor gives ``fraction`` of its torque (0 = dead motor)."""

        def edit(spec: mujoco.MjSpec) -> None:
            actuator = spec.actuator(joint)
            actuator.gear = [actuator.gear[0] * fraction, 0, 0, 0, 0, 0]

        self._edit_body(edit)

    @property
    def dt(self) -> float:
        """Control period (s): one tick is ``frame_skip`` physics steps."""
        return self.model.opt.timestep * self.frame_skip

    def total_mass(self) -> float:
        return float(self.model.body_subtreemass[self.model.body("torso").id])

    # --- gymnasium API -----------------------------------------------------------------------
    def _obs(self) -> np.ndarray:
        qpos, qvel = self.data.qpos, self.data.qvel
        return np.concatenate(
            [
                qpos[2:7],
                qpos[self._qpos_adr],
                VELOCITY_SCALE * qvel[0:6],
                VELOCITY_SCALE * qvel[self._qvel_adr],
            ]
        )

    def _info(self) -> dict[str, Any]:
        return {
            "x_distance": float(self.data.qpos[0] - self._x0),
            "x_position": float(self.data.qpos[0]),
            "damage": list(self.damage),
        }

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if self._body_damaged:
            self._compile(self._intact.copy())
        self.damage = []
        self._body_damaged = False
        mujoco.mj_resetData(self.model, self.data)
        noise = self.reset_noise_scale
        qpos = np.array(INIT_QPOS) + self.np_random.uniform(-noise, noise, self.model.nq)
        qvel = noise * self.np_random.standard_normal(self.model.nv)
        self.data.qpos[:] = qpos
        self.data.qvel[:] = qvel
        mujoco.mj_forward(self.model, self.data)
        self._x0 = float(self.data.qpos[0])
        return self._obs(), self._info()

    def step(self, action: np.ndarray):
        x_before = float(self.data.qpos[0])
        self.data.ctrl[:] = np.clip(action, -1.0, 1.0)
        mujoco.mj_step(self.model, self.data, nstep=self.frame_skip)
        obs = self._obs()
        speed = (float(self.data.qpos[0]) - x_before) / self.dt
        upside_down = self.data.xmat[self.model.body("torso").id][8] < 0.0
        terminated = bool(not np.all(np.isfinite(obs)) or (self.terminate_upside_down and upside_down))
        if not np.all(np.isfinite(obs)):
            obs = np.nan_to_num(obs, nan=0.0, posinf=0.0, neginf=0.0)
        return obs, speed, terminated, False, self._info()

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        if self._renderer is None:
            self._renderer = mujoco.Renderer(self.model, *self._size)
        self._renderer.update_scene(self.data, camera="track")
        return self._renderer.render()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
