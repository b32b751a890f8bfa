"""What every simulated quadruped shares, whichever simulator runs it: legs, joints, scoring.

One leg table and one joint order serve the MuJoCo Ant (``sim.ant``) and the PyBullet Ant
(``sim.ant_bullet``), so a damage spec, a log column or an action index means the same body part on
both. Every quadruped implements the damage vocabulary that :mod:`sim.damage` drives:
``cut_leg(leg)``, ``shorten_leg(leg, fraction)``, ``lock_joint(joint)``, ``weaken_joint(joint,
fraction)``, keeps the active specs in ``damage`` and reports ``info["x_distance"]``.

Legs (the Ant walks towards +x, +y is its left):

====  ===========  =================
leg   position     joints
====  ===========  =================
1     front-left   hip_1, ankle_1
2     back-left    hip_2, ankle_2
3     back-right   hip_3, ankle_3
4     front-right  hip_4, ankle_4
====  ===========  =================

(The model files' body names say front/back differently; the table follows where each leg points.)
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium

LEGS = {1: "front-left", 2: "back-left", 3: "back-right", 4: "front-right"}
JOINTS = tuple(f"{part}_{leg}" for leg in LEGS for part in ("hip", "ankle"))
MIRROR_LEGS = {1: 4, 2: 3, 3: 2, 4: 1}  # reflected in the body's x-z plane (y -> -y)


@dataclass(frozen=True)
class Mirror:
    """A robot's left-right reflection (y -> -y) on its observation and action vectors: entry ``i`` of
    the reflected vector is ``sign[i] * vector[source[i]]``. It is what lets a search tie the rules of
    mirror-image synapses (evolve's ``symmetry: mirror``), so a network has no side to favour."""

    observation_source: tuple[int, ...]
    observation_sign: tuple[float, ...]
    action_source: tuple[int, ...]
    action_sign: tuple[float, ...]


class Quadruped(gymnasium.Env):
    """Base of the simulated quadrupeds: the leg table, and how the paper scores a lifetime.

    ``fitness`` names what evolution maximises ("distance": ``info["x_distance"]`` gained, m);
    ``early_stop`` is the paper's (after, patience): past ``after`` ticks, ``patience`` ticks in a
    row without a new best distance end the lifetime (read by ``controller.loop.EarlyStop.of``);
    ``settle_ticks`` zero-action ticks let the body land on the floor before control starts.
    """

    legs = tuple(LEGS)
    leg_names = LEGS
    joints = JOINTS
    fitness = "distance"
    early_stop = (200, 30)
    settle_ticks = 40
