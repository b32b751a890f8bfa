"""Position-controlled hobby servos, as they behave: what a genome for a real 8-servo robot must live with.

A hobby servo is a DC motor behind a gearbox, with a potentiometer on the output shaft and a small
amplifier that drives the motor in proportion to the position error. Modelled per physics step:

- **latency**: a command reaches the servo ``latency`` seconds after it is sent (serial transfer, the
  firmware's loop, the wait for the next PWM pulse); until then the previous target holds;
- **dead band**: errors smaller than ``dead_band`` (rad) are ignored, the motor is not driven;
- **proportional drive**: the duty cycle is ``u = clip(error / proportional_band, -1, 1)``;
- **torque and speed limits**: the motor's torque-speed line, ``torque = stall_torque * (u - w /
  no_load_speed)``, clipped to +-``stall_torque``: full torque at standstill, none at the no-load
  speed, so a step is followed no faster than ``no_load_speed`` and the torque never exceeds the stall
  torque (back-EMF also brakes a joint that is pushed faster than it is driven).

Gear friction and the rotor's reflected inertia are the joint's ``frictionloss`` and ``armature`` in
the model (passive, integrated by MuJoCo). ``strength`` and ``speed`` scale each servo's stall torque
and no-load speed (domain randomisation, a weak battery); ``max_speed`` caps a servo's no-load speed
(rad/s; the ``slow`` fault: a worn gearbox); ``limp`` switches the drive off (ESTOP).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ServoSpec:
    """One servo type; figures and sources in docs/robots.md."""

    stall_torque: float  # N m at the output shaft
    no_load_speed: float  # rad/s
    proportional_band: float  # rad of error at which the drive saturates
    dead_band: float  # rad
    latency: float  # s from command sent to the servo acting on it


class Servos:
    """A bank of ``n`` identical servos; one call of :meth:`torque` per physics step."""

    def __init__(self, spec: ServoSpec, n: int) -> None:
        self.spec = spec
        self.n = n
        self.strength = np.ones(n)
        self.speed = np.ones(n)
        self.max_speed = np.full(n, np.inf)
        self._aimed = np.zeros(n)
        self._last: float | None = None
        self.latency = spec.latency
        self.limp = False
        self.target = np.zeros(n)
        self._pending: deque[tuple[float, np.ndarray]] = deque()
        self._error, self._scratch, self._stall, self._out = (np.zeros(n) for _ in range(4))
        self._idle = np.zeros(n, dtype=bool)

    def reset(self, target: np.ndarray) -> None:
        """A new lifetime: nominal servos holding ``target``, nothing in flight."""
        self.target = np.array(target, dtype=np.float64)
        self._pending.clear()
        self.limp = False
        self.strength[:] = 1.0
        self.speed[:] = 1.0
        self.max_speed[:] = np.inf
        self._last = None
        self.latency = self.spec.latency

    def command(self, target: np.ndarray, now: float) -> None:
        """Send a target (rad); the servos act on it ``latency`` seconds after ``now``."""
        self._pending.append((now + self.latency, np.array(target, dtype=np.float64)))

    def _aim(self, now: float) -> np.ndarray:
        """Where the drive aims: the target, or for a slow servo (``max_speed``) a point that moves
        towards it no faster than that speed, so the joint cannot follow faster. (A braking term of that
        size instead would make the stiff damping unstable at the physics step.)"""
        if not np.isfinite(self.max_speed).any():
            return self.target
        if self._last is None:
            self._aimed = self.target.copy()
        else:
            reach = self.max_speed * (now - self._last)
            np.clip(self.target, self._aimed - reach, self._aimed + reach, out=self._aimed)
        self._last = now
        return self._aimed

    def torque(self, now: float, angle: np.ndarray, velocity: np.ndarray) -> np.ndarray:
        """Output torque (N m) of every servo at time ``now`` (s), given the joints' state: a buffer
        that the next call overwrites.

        Called ten times a tick: the arithmetic runs in place on preallocated arrays (a fresh array
        per operation cost more than the physics step itself)."""
        while self._pending and self._pending[0][0] <= now + 1e-9:
            self.target = self._pending.popleft()[1]
        out, scratch, idle = self._out, self._scratch, self._idle
        if self.limp:
            out[:] = 0.0
            return out
        spec = self.spec
        error = np.subtract(self._aim(now), angle, out=self._error)
        np.less(np.abs(error, out=scratch), spec.dead_band, out=idle)
        np.copyto(error, 0.0, where=idle)
        duty = np.divide(error, spec.proportional_band, out=error)
        np.minimum(np.maximum(duty, -1.0, out=duty), 1.0, out=duty)
        braking = np.divide(velocity, np.multiply(self.speed, spec.no_load_speed, out=scratch), out=scratch)
        stall = np.multiply(self.strength, spec.stall_torque, out=self._stall)
        np.multiply(stall, np.subtract(duty, braking, out=out), out=out)
        return np.minimum(np.maximum(out, np.negative(stall, out=scratch), out=out), stall, out=out)
