"""The recovery measure of a lifetime damaged mid-run (docs/results.md's recovery column)."""

from __future__ import annotations

import pytest

from controller.loop import Lifetime, median_recovery

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
