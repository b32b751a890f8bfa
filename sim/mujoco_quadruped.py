"""What every MuJoCo quadruped shares: a body built and damaged through ``mujoco.MjSpec``.

A robot subclass builds its intact spec (with leg N's lower segment geom named
:func:`leg_geom`, its actuators named after the joints, in joint order, and a body named
``torso``) and adds its own observation, reset and step. This base keeps the compiled model,
edits the spec and recompiles with the simulation state kept (so a leg can be cut at any tick),
and restores the intact body on :meth:`restore_body`. The damage methods are the vocabulary
:mod:`sim.damage` drives: ``cut_leg``, ``shorten_leg``, ``lock_joint``, ``weaken_joint``,
``slow_joint``, ``scale_friction``, ``add_payload`` and ``tilt_ground``.

Domain randomisation (:mod:`sim.randomise`) changes compiled model fields (masses, friction) with
:meth:`MujocoQuadruped.tune_model`; a recompile starts again from the spec, so the tuning is
re-applied after every one, until the next reset. A friction damage scales whatever friction the
tuning set, so the two compose.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mujoco
import numpy as np

from sim.quadruped import Quadruped

CUT_MASS = 1e-6  # kg: MuJoCo needs a moving body to have some mass
# MuJoCo's warnings of a blown-up simulation (it resets the state when it gives one)
UNSTABLE = (
    mujoco.mjtWarning.mjWARN_BADQACC,
    mujoco.mjtWarning.mjWARN_BADQPOS,
    mujoco.mjtWarning.mjWARN_BADQVEL,
)
LIMIT_MARGIN = 0.02  # rad: a joint closer than this to an end of its range, or past it, is at its limit


def leg_geom(leg: int) -> str:
    """Name of the geom of leg ``leg``'s lower segment (what cut and shorten act on)."""
    return f"lower_leg_{leg}_geom"


class MujocoQuadruped(Quadruped):
    """A damage-able MuJoCo body. Subclasses call ``super().__init__`` with their intact spec."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}
    camera = "track"
    sensed = slice(None)  # observation channels read from sensors (the rest the robot knows exactly)

    def __init__(
        self,
        intact: mujoco.MjSpec,
        frame_skip: int,
        render_mode: str | None = None,
        width: int = 640,
        height: int = 480,
    ) -> None:
        self._intact = intact
        self.frame_skip = int(frame_skip)
        self.render_mode = render_mode
        self._size = (height, width)
        self._renderer: mujoco.Renderer | None = None
        self._body_damaged = False
        self.model_tuning: Callable[[mujoco.MjModel], None] | None = None
        self.friction_scale = 1.0
        self.tilt = 0.0  # rad: the ground's rise along +x (gravity tilted by as much)
        self._compile(self._intact.copy())
        self.damage: list[str] = []

    # --- model -------------------------------------------------------------------------------
    def _compile(self, spec: mujoco.MjSpec) -> None:
        self.mjspec = spec
        self.model = spec.compile()
        self.data = mujoco.MjData(self.model)
        self._after_compile()

    def _after_compile(self) -> None:
        """Look the joints up again and re-apply the lifetime's model tuning to the new model, then the
        friction damage on top of the friction the tuning left."""
        self._index()
        if self.model_tuning is not None:
            self.model_tuning(self.model)
            mujoco.mj_setConst(self.model, mujoco.MjData(self.model))  # derived masses, inverse weights
        self._friction = self.model.geom_friction[:, 0].copy()
        if self.friction_scale != 1.0:
            self.model.geom_friction[:, 0] = self._friction * self.friction_scale

    def _index(self) -> None:
        """Addresses of the joints in qpos/qvel, looked up by name (they survive recompiles)."""
        ids = [self.model.joint(name).id for name in self.joints]
        self._qpos_adr = self.model.jnt_qposadr[ids]
        self._qvel_adr = self.model.jnt_dofadr[ids]
        ranges = np.where(self.model.jnt_limited[ids, None], self.model.jnt_range[ids], [-np.inf, np.inf])
        self._stops = ranges + [LIMIT_MARGIN, -LIMIT_MARGIN]  # inside these, a joint is off its stops
        self._renderer = None

    def _edit_body(self, edit: Callable[[mujoco.MjSpec], None]) -> None:
        """Edit the body through its spec and recompile, keeping the simulation state as it is."""
        edit(self.mjspec)
        self.model, self.data = self.mjspec.recompile(self.model, self.data)
        self._body_damaged = True
        self._after_compile()

    def restore_body(self) -> None:
        """Undo every body edit and model tuning (a fresh model and data if there was any), clear
        the damage list."""
        if self._body_damaged or self.model_tuning is not None:
            self.model_tuning = None
            self.friction_scale, self.tilt = 1.0, 0.0
            self._compile(self._intact.copy())
        self.damage = []
        self._body_damaged = False

    def tune_model(self, tuning: Callable[[mujoco.MjModel], None]) -> None:
        """Apply ``tuning`` (edits of compiled model fields) now and after every recompile until the
        next reset. It must set fields from their compiled values (scale them once), not accumulate."""
        self.model_tuning = tuning
        self.model.geom_friction[:, 0] = self._friction  # the friction before any friction damage
        self._after_compile()

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

    def slow_joint(self, joint: str, speed: float) -> None:
        """The joint moves no faster than about ``speed`` (rad/s) at full drive: viscous damping that
        eats the motor's whole torque at that speed, as a worn gearbox or a starved motor does."""
        torque = float(self.model.actuator_gear[self.model.actuator(joint).id][0])

        def edit(spec: mujoco.MjSpec) -> None:
            spec.joint(joint).damping = spec.joint(joint).damping + torque / speed

        self._edit_body(edit)

    def scale_friction(self, scale: float) -> None:
        """Every geom's sliding friction (floor and feet) times ``scale``: ice, polished floor, rubber."""
        self.friction_scale *= scale
        self._body_damaged = True  # the next reset recompiles the nominal friction
        self.model.geom_friction[:, 0] = self._friction * self.friction_scale

    def add_payload(self, fraction: float) -> None:
        """A load of ``fraction`` of the robot's mass strapped to the torso: a small block at its centre
        that touches nothing, whose mass and inertia MuJoCo adds to the torso's."""
        load = fraction * self.total_mass()
        if load <= 0:
            return

        def edit(spec: mujoco.MjSpec) -> None:
            spec.body("torso").add_geom(
                name=f"payload_{len(self.damage)}",
                type=mujoco.mjtGeom.mjGEOM_SPHERE,
                size=[0.01, 0, 0],
                mass=load,
                contype=0,
                conaffinity=0,
                rgba=[0.2, 0.2, 0.8, 1.0],
            )

        self._edit_body(edit)

    def tilt_ground(self, degrees: float) -> None:
        """The ground rises ``degrees`` along +x: gravity is tilted by as much, so walking +x climbs
        and distances stay measured along the ground."""
        self.tilt += np.radians(degrees)
        g = float(np.linalg.norm(self.model.opt.gravity))
        gravity = [-g * np.sin(self.tilt), 0.0, -g * np.cos(self.tilt)]

        def edit(spec: mujoco.MjSpec) -> None:
            spec.option.gravity = gravity

        self._edit_body(edit)

    # --- a lifetime -------------------------------------------------------------------------------
    def _initial_state(self) -> None:
        """Set the reset state in ``data`` (qpos, qvel, ...), drawing from ``np_random``."""
        raise NotImplementedError

    def _obs(self) -> np.ndarray:
        raise NotImplementedError

    def _info(self) -> dict[str, Any]:
        return {
            "x_distance": self._x - self._x0,
            "x_position": self._x,
            "damage": list(self.damage),
        }

    def joint_angles(self) -> np.ndarray:
        """The actuated joints' angles (rad), in action order."""
        return self.data.qpos[self._qpos_adr]

    def at_limit(self) -> np.ndarray:
        """Which joints sit within LIMIT_MARGIN of an end of their range or past it: a gait that pins
        its joints there moves the body by the few it leaves free (docs/results.md, "What the gaits are")."""
        angles = self.joint_angles()
        return (angles < self._stops[:, 0]) | (angles > self._stops[:, 1])

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """The intact body (no damage, no tuning) in the robot's initial state; x distance from here."""
        super().reset(seed=seed)
        self.restore_body()
        mujoco.mj_resetData(self.model, self.data)
        self._initial_state()
        mujoco.mj_forward(self.model, self.data)
        self._x0 = self._x = float(self.data.qpos[0])
        self._warned = 0  # MuJoCo's count of unstable steps since the reset
        return self._obs(), self._info()

    def _end_tick(self, x_before: float, seconds: float, fallen: bool) -> tuple:
        """A tick's step result (obs, forward speed, terminated, truncated, info). The lifetime ends when
        the robot fell or the simulation blew up this tick: MuJoCo warned of a bad acceleration, position
        or velocity (it then resets the state, which may blow up again) or the observation is not finite.
        A blow-up ends the lifetime where the tick began: no distance is credited from it, and the
        observation's non-finite values read 0."""
        warned = sum(self.data.warning[w].number for w in UNSTABLE)
        obs = self._obs()
        blew_up = warned > self._warned or not bool(np.all(np.isfinite(obs)))
        self._warned = warned
        if blew_up:
            obs = np.nan_to_num(obs, nan=0.0, posinf=0.0, neginf=0.0)
        self._x = x_before if blew_up else float(self.data.qpos[0])
        speed = (self._x - x_before) / seconds
        return obs, speed, bool(blew_up or fallen), False, self._info()

    @property
    def dt(self) -> float:
        """Control period (s): one tick is ``frame_skip`` physics steps."""
        return self.model.opt.timestep * self.frame_skip

    def total_mass(self) -> float:
        return float(self.model.body_subtreemass[self.model.body("torso").id])

    # --- rendering ---------------------------------------------------------------------------
    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        if self._renderer is None:
            self._renderer = mujoco.Renderer(self.model, *self._size)
        self._renderer.update_scene(self.data, camera=self.camera)
        return self._renderer.render()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
