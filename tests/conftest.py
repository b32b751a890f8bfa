"""Shared fixtures: small genomes and a helper to run the CLIs in-process."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest

from controller.genome import Genome, save_genome
from controller.network import NetworkSpec
from sim.servo_quad import OBS_SIZE


def terminal_sigint() -> None:
    """A child's Ctrl-C as a terminal's (``preexec_fn``), even when this test run was started as a
    shell's background job, whose children inherit SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


ANT_SPEC = NetworkSpec((27, 128, 64, 8), ("tanh", "tanh", "tanh"), "ABCD_lr", normalise=True)


def random_genome(
    spec: NetworkSpec = ANT_SPEC, kind: str = "hebbian", task: str = "ant", seed: int = 0
) -> Genome:
    vector = np.random.default_rng(seed).normal(0.0, 0.1, Genome.parameter_count(kind, spec))
    return Genome.from_vector(kind, spec, task, vector, seed=seed)


@pytest.fixture
def genome_file(tmp_path):
    return save_genome(random_genome(), tmp_path / "genome.npz")


def still_genome(path: Path) -> Path:
    """A servo-quad genome whose rules never change its small random weights: small actions, a robot
    that stands (for runs that must not fall)."""
    spec = NetworkSpec((OBS_SIZE, 128, 64, 8), ("tanh", "tanh", "tanh"), "ABCD_lr")
    vector = np.zeros(Genome.parameter_count("hebbian", spec))
    return save_genome(Genome.from_vector("hebbian", spec, "servo-quad", vector), path)
