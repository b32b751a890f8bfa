"""The recovery measure of a lifetime damaged mid-run (docs/results.md's recovery column)."""

from __future__ import annotations

import time

import gymnasium
import numpy as np
import pytest
from gymnasium import spaces

from controller.loop import Lifetime, Pacer, median_recovery, run_lifetime
from controller.network import HebbianNetwork, NetworkSpec

DT = 0.05  # 1 s = 20 ticks
ONSET = 200


def lifetime(after: list[float], terminated: bool = False) -> Lifetime:
    """1 m/s for ONSET ticks, then the given speeds."""
    return Lifetime(dt=DT, speeds=[1.0] * ONSET + after, damage_onset=ONSET, terminated=terminated)


@pytest.mark.parametrize(
    ("after", "terminated", "ticks"),
    [
        ([0.8] * 300, False, 19),  # never below half: back at the end of the first 1 s window
        ([0.1] * 40 + [0.9] * 260, False, 49),  # stopped 2 s, then walked on: held from window 30
        ([0.9] * 200 + [0.3] * 20 + [0.9] * 80, False, 19),  # a dip after 10 s of walking on
        ([0.8] * 60 + [0.1] * 240, False, None),  # coasted 3 s, then stopped
        ([0.8] * 300, True, None),  # walked on, then fell
        ([0.1] * 300, False, None),
    ],
)
def test_recovery_is_when_the_speed_is_back_above_half_and_holds_5_s(after, terminated, ticks):
    assert lifetime(after, terminated).recovery_ticks() == ticks


def test_no_onset_is_no_recovery():
    assert Lifetime(dt=DT, speeds=[1.0] * 300).recovery_ticks() is None


def test_median_counts_lifetimes_that_never_recovered():
    assert median_recovery([19, 25, None]) == (25.0, 2)
    assert median_recovery([19, None, None]) == (None, 1)


class _Body(gymnasium.Env):
    """A body that stops obeying for the first ``hold`` steps (``info["control"]`` False), as a robot
    ramping to its first pose does, and whose steps take ``work_s`` of wall-clock time each."""

    observation_space = spaces.Box(-1.0, 1.0, (3,), np.float32)
    action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
    dt = 0.01
    fitness = "distance"

    def __init__(self, hold: int = 0, work_s: tuple[float, ...] = ()) -> None:
        self.hold, self.work_s = hold, work_s

    def reset(self, *, seed=None, options=None):
        self.k = 0
        return np.full(3, 0.5, np.float32), {"x_distance": 0.0, "control": self.hold == 0}

    def step(self, action):
        if self.k < len(self.work_s):
            time.sleep(self.work_s[self.k])
        self.k += 1
        info = {"x_distance": 0.1 * self.k, "control": self.k >= self.hold}
        return np.full(3, 0.5, np.float32), 0.0, False, False, info


def _network() -> HebbianNetwork:
    spec = NetworkSpec((3, 2), ("tanh",), rule="ABCD")
    return HebbianNetwork(spec, [np.full((3, 2, 4), 0.1, np.float32)], "numpy")


def test_a_body_that_does_not_obey_gets_a_forward_pass_that_does_not_learn():
    network = _network()
    life = run_lifetime(network, _Body(hold=3), 3, seed=0)
    after = [w.copy() for w in network.weights]
    network.reset(np.random.default_rng([0, 1]))  # the weights the lifetime started from
    assert life.ticks == 3 and life.compute_s == []  # no plastic tick ran
    assert all(np.array_equal(a, b) for a, b in zip(after, network.weights, strict=True))
    life = run_lifetime(network, _Body(hold=3), 5, seed=0)
    assert len(life.compute_s) == 2  # it learns from the step that obeys on


def test_on_tick_gets_the_observation_the_network_acted_on():
    seen = []
    run_lifetime(_network(), _Body(), 2, 0, on_tick=lambda tick, obs, action, info: seen.append(obs))
    assert [o.tolist() for o in seen] == [[0.5] * 3] * 2


def test_a_stopped_lifetime_keeps_what_it_did():
    class Stop(Exception):
        pass

    def stop_at_3(tick, obs, action, info):
        if tick == 3:
            raise Stop

    life = Lifetime()
    with pytest.raises(Stop):
        run_lifetime(_network(), _Body(), 10, 0, on_tick=stop_at_3, life=life)
    assert life.ticks == 4 and life.distance == pytest.approx(0.4)


def test_pacer_counts_a_late_tick_runs_the_next_at_once_and_never_drops_one():
    """Issue 23 item 5: late ticks were dropped (the network ran at 449 Hz of 500). A tick late by less
    than a period is a miss and the schedule catches up; one late by more restarts it from now (no
    ticks back to back) and counts the deadlines it ran through."""
    pacer = Pacer(0.05)
    body = _Body(work_s=(0.0, 0.075, 0.0, 0.0, 0.175, 0.0, 0.0))
    life = run_lifetime(_network(), body, 7, 0, pacer=pacer)
    assert life.ticks == pacer.ticks == 7 and len(pacer.work_s) == 7
    assert pacer.misses == 2 and pacer.skipped == 2  # the 0.175 s tick ran through two more deadlines


def test_pacer_holds_the_period_on_time():
    pacer = Pacer(0.01)
    start = time.perf_counter()
    run_lifetime(_network(), _Body(), 20, 0, pacer=pacer)
    assert pacer.misses == 0 and time.perf_counter() - start >= 20 * 0.01 - 1e-3
