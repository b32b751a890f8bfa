"""The paper's quadruped: PyBullet's Ant (AntBulletEnv-v0), rebuilt on pybullet alone, damage-able.

pybullet's own ``pybullet_envs`` needs the old ``gym`` package, so the environment is rebuilt here
from its facts (``docs/method.md``): pybullet_data's ``mjcf/ant.xml`` on the stadium plane, torque
control at 2.5 x 100 per unit action, 0.0165 s control period in 4 substeps, walk target 1 km
along +x, lifetime over once the torso sinks to 0.26 m (it scrapes the floor). Each reset draws the
joint angles from uniform(-0.1, 0.1) rad as ``pybullet_envs`` does, clipped into each joint's range:
pybullet does not push a joint that starts outside its limits back in, and with the ankles at 0 rad
(their range is 30-100 degrees) the Ant would land on its belly, torso at 0.25 m, not alive.

Legs, joints and the action order are those of :mod:`sim.quadruped` (1 front-left, 2 back-left,
3 back-right, 4 front-right; hip_1, ankle_1, ..., hip_4, ankle_4). The model file calls leg 4's
lower segment ``right_back_foot`` although it points to +x: the paper's two damaged Ants
(``ant_asym_left``/``ant_asym_right`` of the reference code) are ``shorten-leg:1:0.25`` and
``shorten-leg:4:0.25``.

Observation (28 values, clipped to [-5, 5]):

- [0] torso z minus its z at reset (m); [1] sin and [2] cos of the angle from the heading to the
  walk target; [3:6] 0.3 x body velocity rotated into the yaw frame (m/s); [6] roll, [7] pitch (rad);
- [8:24] per joint, in joint order: position scaled to [-1, 1] between its limits, then 0.1 x its
  angular speed (rad/s);
- [24:28] foot contacts of legs 1-4: 1.0 while the lower segment touches the floor, else 0.0 (this
  tick's contacts; ``pybullet_envs`` reported the previous tick's).

Reward: the progress term, (previous - current distance to the walk target) / dt, distance measured
from the mean position of all body parts as ``pybullet_envs`` does. ``info["x_distance"]``: the
progress summed over the lifetime, in m (how much nearer the body came to the target: its x
displacement). The 40 settle ticks and the early stop are the loop's (``controller.loop``).

Damage: cut, lock and weaken act on the live body through pybullet's API. pybullet has no way to
change a link's collision shape, so ``shorten_leg`` rebuilds the body from an edited copy of the
MJCF file written to a temporary file and carries the simulation state over (base pose and
velocity, joint angles and speeds), so it also works mid-run. The faults of the fault suites: ``slow``
is a motor's torque-speed line (no drive left at the given speed), ``friction`` scales the floor's
(Bullet multiplies the two surfaces' coefficients), ``payload`` adds mass to the torso, ``slope``
tilts gravity (the observed roll and pitch stay the ground's).
"""

from __future__ import annotations

import os
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

import numpy as np
from gymnasium import spaces

from sim.quadruped import JOINTS, LEGS, Quadruped


@contextmanager
def _quiet() -> Iterator[None]:
    """pybullet's C code prints its build time and argv on import and connect: keep output clean."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        for fd, copy in zip((1, 2), saved, strict=True):
            os.dup2(copy, fd)
            os.close(copy)
        os.close(devnull)


try:
    with _quiet():
        import pybullet
        import pybullet_data
        from pybullet_utils import bullet_client
except ImportError:
    raise ImportError("the PyBullet Ant needs pybullet: pip install 'hebbian-quadruped[bullet]'") from None

TORQUE = 2.5 * 100.0  # N m per unit action: power x each joint's power coefficient
TIMESTEP = 0.0165 / 4
FRAME_SKIP = 4
WALK_TARGET = np.array([1000.0, 0.0])
ALIVE_Z = 0.26  # m: the torso sphere's radius is 0.25
SPEED_SCALE = 0.3
JOINT_SPEED_SCALE = 0.1
OBS_CLIP = 5.0
START_POSE = ((0.0, 0.0, 0.75), (0.0, 0.0, 0.0, 1.0))
CUT_MASS = 1e-6  # kg: a cut segment weighs (almost) nothing
LOCK_FORCE = 1e5  # N m: a seized joint's holding torque
GRAVITY = 9.8  # m/s^2
FLOOR_FRICTION = 0.8
LOAD_FLAGS = pybullet.URDF_USE_SELF_COLLISION | pybullet.URDF_USE_SELF_COLLISION_EXCLUDE_ALL_PARENTS


def model_path() -> str:
    return os.path.join(pybullet_data.getDataPath(), "mjcf", "ant.xml")


@cache
def _intact_tree() -> ET.ElementTree:
    return ET.parse(model_path())


def lower_segment(tree: ET.ElementTree, leg: int) -> ET.Element:
    """The body element of leg ``leg``'s lower segment: the one whose joint is ``ankle_<leg>``."""
    return next(body for body in tree.iter("body") if body.find(f"joint[@name='ankle_{leg}']") is not None)


def model_xml(lengths: dict[int, float]) -> str:
    """The Ant's MJCF with each listed leg's lower segment scaled to a fraction of its length."""
    tree = ET.ElementTree(ET.fromstring(ET.tostring(_intact_tree().getroot())))
    for leg, fraction in lengths.items():
        geom = lower_segment(tree, leg).find("geom")
        start, end = np.split(np.array(geom.get("fromto").split(), dtype=float), 2)
        geom.set("fromto", " ".join(f"{v:.6g}" for v in (*start, *(start + fraction * (end - start)))))
    return ET.tostring(tree.getroot(), encoding="unicode")


class AntBulletEnv(Quadruped):
    """The PyBullet Ant with a damage-able body. Damage is undone by :meth:`reset`."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": round(1.0 / (TIMESTEP * FRAME_SKIP))}

    def __init__(self, render_mode: str | None = None, width: int = 320, height: int = 240) -> None:
        self.render_mode = render_mode
        self._size = (width, height)
        with _quiet():
            self.client = bullet_client.BulletClient(connection_mode=pybullet.DIRECT)
        # Unbounded and float64 as the MuJoCo Ant's: observation noise (a damage) may leave [-5, 5].
        self.observation_space = spaces.Box(-np.inf, np.inf, (28,), np.float64)
        self.action_space = spaces.Box(-1.0, 1.0, (len(JOINTS),), np.float32)
        self.damage: list[str] = []
        self._lengths: dict[int, float] = {}
        self._cut: set[int] = set()
        self._locked: dict[str, float] = {}
        self._gain = np.ones(len(JOINTS))
        self._faults: dict[str, Any] = {}
        self._no_load = np.full(len(JOINTS), np.inf)  # rad/s at which each motor's drive is spent
        self._speeds = np.zeros(len(JOINTS))
        self._build_world()

    # --- world and body ----------------------------------------------------------------------
    def _build_world(self) -> None:
        """A fresh world with the intact Ant (full reset: runs are repeatable bit for bit)."""
        p = self.client
        p.resetSimulation()
        p.setPhysicsEngineParameter(deterministicOverlappingPairs=1)
        p.setGravity(0, 0, -GRAVITY)
        p.setDefaultContactERP(0.9)
        p.setPhysicsEngineParameter(
            fixedTimeStep=TIMESTEP * FRAME_SKIP, numSolverIterations=5, numSubSteps=FRAME_SKIP
        )
        (self._floor,) = p.loadSDF(os.path.join(pybullet_data.getDataPath(), "plane_stadium.sdf"))
        p.changeDynamics(self._floor, -1, lateralFriction=FLOOR_FRICTION, restitution=0.5)
        self._load_body(model_path())

    def _load_body(self, path: str) -> None:
        p = self.client
        (self.body,) = p.loadMJCF(path, flags=LOAD_FLAGS)
        links = {p.getJointInfo(self.body, j)[12].decode(): j for j in range(p.getNumJoints(self.body))}
        joints = {p.getJointInfo(self.body, j)[1].decode(): j for j in range(p.getNumJoints(self.body))}
        self._links = list(range(p.getNumJoints(self.body)))
        self.joint_ids = [joints[name] for name in JOINTS]
        self.foot_links = tuple(links[lower_segment(_intact_tree(), leg).get("name")] for leg in LEGS)
        self._limits = np.array([p.getJointInfo(self.body, j)[8:10] for j in self.joint_ids])
        self._mid = self._limits.mean(axis=1)
        self._half = (self._limits[:, 1] - self._limits[:, 0]) / 2
        for j in self._links:  # switch the default velocity motors off: torque control only
            p.setJointMotorControl2(
                self.body, j, pybullet.POSITION_CONTROL, positionGain=0.1, velocityGain=0.1, force=0
            )

    def _rebuild(self) -> None:
        """Reload the body with the current segment lengths, keeping pose, speeds and damage."""
        p = self.client
        base = p.getBasePositionAndOrientation(self.body), p.getBaseVelocity(self.body)
        joints = [state[:2] for state in p.getJointStates(self.body, self.joint_ids)]
        p.removeBody(self.body)
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "ant.xml")
            with open(path, "w") as f:
                f.write(model_xml(self._lengths))
            self._load_body(path)
        p.resetBasePositionAndOrientation(self.body, *base[0])
        p.resetBaseVelocity(self.body, *base[1])
        for j, (angle, speed) in zip(self.joint_ids, joints, strict=True):
            p.resetJointState(self.body, j, angle, speed)
        for leg in self._cut:
            self._remove_segment(leg)
        for joint, angle in self._locked.items():
            self._hold(joint, angle)
        self._apply_faults()

    # --- damage (the vocabulary every simulated robot offers; see sim.damage) ---------------------
    def cut_leg(self, leg: int) -> None:
        """The lower segment is gone: it touches nothing, weighs (almost) nothing, is not drawn."""
        self._cut.add(leg)
        self._remove_segment(leg)

    def _remove_segment(self, leg: int) -> None:
        p, link = self.client, self.foot_links[leg - 1]
        p.setCollisionFilterGroupMask(self.body, link, 0, 0)
        p.changeDynamics(self.body, link, mass=CUT_MASS, localInertiaDiagonal=[CUT_MASS] * 3)
        p.changeVisualShape(self.body, link, rgbaColor=[0.0, 0.0, 0.0, 0.0])

    def shorten_leg(self, leg: int, fraction: float) -> None:
        """The lower segment keeps ``fraction`` of its length (and, by its density, of its mass)."""
        self._lengths[leg] = self._lengths.get(leg, 1.0) * fraction
        self._rebuild()

    def lock_joint(self, joint: str) -> None:
        """Jam a joint at its current angle (a seized servo): held stiffly, motor torque off."""
        index = self.joint_ids[JOINTS.index(joint)]
        self._locked[joint] = self.client.getJointState(self.body, index)[0]
        self._gain[JOINTS.index(joint)] = 0.0
        self._hold(joint, self._locked[joint])

    def _hold(self, joint: str, angle: float) -> None:
        index = self.joint_ids[JOINTS.index(joint)]
        self.client.setJointMotorControl2(
            self.body, index, pybullet.POSITION_CONTROL, targetPosition=angle, force=LOCK_FORCE
        )

    def weaken_joint(self, joint: str, fraction: float) -> None:
        """The joint's motor gives ``fraction`` of its torque (0 = dead motor)."""
        self._gain[JOINTS.index(joint)] *= fraction

    def slow_joint(self, joint: str, speed: float) -> None:
        """The joint's motor drives it no faster than ``speed`` (rad/s): its torque falls to nothing
        at that speed, as a DC motor's does along its torque-speed line. (pybullet's joint damping does
        not act on this body; an explicit damping torque at the control rate would be unstable.)"""
        self._no_load[JOINTS.index(joint)] = speed

    def scale_friction(self, scale: float) -> None:
        """The floor's friction times ``scale`` (every contact's, as Bullet multiplies the two)."""
        self._faults["friction"] = self._faults.get("friction", 1.0) * scale
        self._apply_faults()

    def add_payload(self, fraction: float) -> None:
        """A load of ``fraction`` of the robot's mass on the torso."""
        self._faults["payload"] = self._faults.get("payload", 0.0) + fraction * self.total_mass()
        self._apply_faults()

    def tilt_ground(self, degrees: float) -> None:
        """The ground rises ``degrees`` along +x: gravity tilted by as much."""
        tilt = self._faults["tilt"] = self._faults.get("tilt", 0.0) + np.radians(degrees)
        self.client.setGravity(-GRAVITY * np.sin(tilt), 0.0, -GRAVITY * np.cos(tilt))

    def _apply_faults(self) -> None:
        """(Re-)apply the faults that live on the body, after a fault or a rebuild of the body."""
        p = self.client
        if "friction" in self._faults:
            p.changeDynamics(self._floor, -1, lateralFriction=FLOOR_FRICTION * self._faults["friction"])
        if "payload" in self._faults:
            base = p.getDynamicsInfo(self.body, -1)[0] if "base_mass" not in self._faults else None
            self._faults.setdefault("base_mass", base)
            p.changeDynamics(self.body, -1, mass=self._faults["base_mass"] + self._faults["payload"])

    @property
    def dt(self) -> float:
        """Control period (s): one tick is ``FRAME_SKIP`` physics substeps."""
        return TIMESTEP * FRAME_SKIP

    def total_mass(self) -> float:
        p = self.client
        return sum(p.getDynamicsInfo(self.body, link)[0] for link in [-1, *self._links])

    # --- gymnasium API -----------------------------------------------------------------------
    def _observe(self) -> np.ndarray:
        """The 28 values, and the body's distance to the walk target for the progress term."""
        p, body = self.client, self.body
        position, orientation = p.getBasePositionAndOrientation(body)
        velocity, _ = p.getBaseVelocity(body)
        parts = np.array([position] + [s[0] for s in p.getLinkStates(body, self._links)])
        to_target = WALK_TARGET - parts[:, :2].mean(axis=0)
        self._target_distance = float(np.linalg.norm(to_target))
        z = position[2]
        if self._initial_z is None:
            self._initial_z = z
        roll, pitch, yaw = p.getEulerFromQuaternion(orientation)
        angle = np.arctan2(to_target[1], to_target[0]) - yaw
        c, s = np.cos(-yaw), np.sin(-yaw)
        vx, vy = c * velocity[0] - s * velocity[1], s * velocity[0] + c * velocity[1]
        states = p.getJointStates(body, self.joint_ids)
        angles = self._angles = np.array([state[0] for state in states])
        speeds = self._speeds = np.array([state[1] for state in states])
        touching = {contact[3] for contact in p.getContactPoints(bodyA=body, bodyB=self._floor)}
        obs = np.concatenate(
            [
                [z - self._initial_z, np.sin(angle), np.cos(angle)],
                SPEED_SCALE * np.array([vx, vy, velocity[2]]),
                [roll, pitch],
                np.stack([(angles - self._mid) / self._half, JOINT_SPEED_SCALE * speeds], axis=1).ravel(),
                [float(link in touching) for link in self.foot_links],
            ]
        )
        self._torso_z = z
        return np.clip(obs, -OBS_CLIP, OBS_CLIP)

    def joint_angles(self) -> np.ndarray:
        """The actuated joints' angles (rad) at the last observation, in action order."""
        return self._angles.copy()

    def _info(self) -> dict[str, Any]:
        return {"x_distance": self._start_distance - self._target_distance, "damage": list(self.damage)}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.damage = []
        self._lengths, self._cut, self._locked = {}, set(), {}
        self._gain[:] = 1.0
        self._faults = {}
        self._no_load[:] = np.inf
        self._build_world()
        p = self.client
        p.resetBasePositionAndOrientation(self.body, *START_POSE)
        angles = np.clip(self.np_random.uniform(-0.1, 0.1, len(JOINTS)), *self._limits.T)
        for j, angle in zip(self.joint_ids, angles, strict=True):
            p.resetJointState(self.body, j, angle, 0.0)
        self._initial_z = None
        obs = self._observe()
        self._start_distance = self._target_distance
        return obs, self._info()

    def step(self, action: np.ndarray):
        torque = TORQUE * self._gain * np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        if np.isfinite(self._no_load).any():  # a slow motor: less drive the faster it already turns that way
            torque *= np.clip(1.0 - np.sign(torque) * self._speeds / self._no_load, 0.0, 1.0)
        self.client.setJointMotorControlArray(
            self.body, self.joint_ids, pybullet.TORQUE_CONTROL, forces=torque.tolist()
        )
        before = self._target_distance
        self.client.stepSimulation()
        obs = self._observe()
        progress = (before - self._target_distance) / self.dt
        finite = bool(np.all(np.isfinite(obs)))
        terminated = not finite or self._torso_z <= ALIVE_Z
        if not finite:
            obs = np.nan_to_num(obs, nan=0.0, posinf=0.0, neginf=0.0)
        return obs, progress, terminated, False, self._info()

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        p = self.client
        target, _ = p.getBasePositionAndOrientation(self.body)
        view = p.computeViewMatrixFromYawPitchRoll(target, 3.0, 0.0, -30.0, 0.0, 2)
        width, height = self._size
        projection = p.computeProjectionMatrixFOV(60.0, width / height, 0.1, 100.0)
        pixels = p.getCameraImage(width, height, view, projection, renderer=pybullet.ER_TINY_RENDERER)[2]
        return np.reshape(np.asarray(pixels, dtype=np.uint8), (height, width, 4))[:, :, :3]

    def close(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client = None
