"""init: coevolve (evolved initial weights, reviewer 1's question) works for every task."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import sim
from controller.errors import UserError
from controller.genome import Genome, load_genome, save_genome
from controller.loop import run_lifetime
from controller.network import task_spec
from evolve.cli import main as evolve
from evolve.config import ConfigError, make_config, read_mapping
from evolve.run import initial_mean, plan
from evolve.search_space import search_space

ROOT = Path(__file__).resolve().parents[1]
NEEDS = {"ant": "mujoco", "ant-bullet": "pybullet", "carracing": "Box2D"}
TASKS = [
    pytest.param(
        task, marks=pytest.mark.skipif(importlib.util.find_spec(module) is None, reason=f"no {module}")
    )
    for task, module in NEEDS.items()
]


def coevolved(task: str, seed: int = 0) -> tuple[Genome, object]:
    env = sim.make(task)
    spec = task_spec(env.observation_space, env.action_space, (16, 8), init="coevolve", normalise=True)
    vector = np.random.default_rng(seed).normal(0.0, 0.1, Genome.parameter_count("hebbian", spec))
    return Genome.from_vector("hebbian", spec, task, vector), env


@pytest.mark.parametrize("task", TASKS)
def test_every_lifetime_starts_from_the_evolved_weights(task, tmp_path):
    genome, env = coevolved(task)
    assert genome.coevolved and [w.shape for w in genome.weights] == genome.spec.layer_shapes
    expected = sum(a * b * 6 for a, b in genome.spec.layer_shapes)  # 5 coefficients + 1 initial weight
    assert Genome.parameter_count("hebbian", genome.spec) == expected + sum(
        int(np.prod(s)) for s in genome.spec.frontend_shapes
    )
    loaded = load_genome(save_genome(genome, tmp_path / "g.npz"), task=task)
    assert np.array_equal(loaded.to_vector(), genome.to_vector())
    network = loaded.build("numpy")
    for seed in (1, 2):  # the rng is not drawn from: the weights are inherited
        network.reset(np.random.default_rng(seed))
        for w, initial in zip(network.weights, genome.weights, strict=True):
            assert np.array_equal(w, initial)
    life = run_lifetime(network, env, 5, seed=0)
    assert life.ticks == 5
    assert any(not np.array_equal(w, i) for w, i in zip(network.weights, genome.weights, strict=True))


def test_a_coevolved_genome_without_its_weights_is_refused(tmp_path):
    genome, _ = coevolved("ant")
    path = save_genome(genome, tmp_path / "g.npz")
    with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files if k != "weights_1"}
    np.savez(tmp_path / "broken.npz", **arrays)
    with pytest.raises(UserError, match="missing array 'weights_1'"):
        load_genome(tmp_path / "broken.npz")


@pytest.mark.parametrize("config", ["ant_bullet", "carracing"])
def test_evolve_coevolves_the_initial_weights(config, tmp_path):
    pytest.importorskip("pybullet" if "bullet" in config else "Box2D")
    out = tmp_path / "run"
    config_file = ROOT / "launch" / "smoke" / f"{config}.yaml"
    args = ["--config", str(config_file), "--out", str(out), "--workers", "1"]
    assert evolve([*args, "--set", "init=coevolve", "--set", "generations=1"]) == 0
    genome = load_genome(out / "final.npz")
    assert genome.coevolved and len(genome.weights) == 3
    network = genome.build("numpy")
    network.reset(np.random.default_rng(0))
    assert np.array_equal(network.weights[0], genome.weights[0])


def test_a_coevolved_run_starts_from_a_rules_only_genome(tmp_path):
    """init_from a genome evolved without initial weights: its rules, and weights drawn once from the seed."""
    values = read_mapping(ROOT / "launch" / "smoke" / "ant.yaml")
    rules_only = make_config(values)
    spec, _, _ = plan(rules_only)
    vector = np.random.default_rng(3).normal(0.0, 0.5, Genome.parameter_count("hebbian", spec))
    source = save_genome(Genome.from_vector("hebbian", spec, "ant", vector), tmp_path / "rules.npz")

    def start(seed: int, **more) -> Genome:
        config = make_config({**values, "init": "coevolve", "init_from": str(source), "seed": seed, **more})
        spec, robot, _ = plan(config)
        space = search_space(config, spec, robot)
        return Genome.from_vector("hebbian", spec, "ant", space.expand(initial_mean(config, spec, space)))

    genome = start(0)
    assert genome.coevolved
    for mine, theirs in zip(genome.coefficients, load_genome(source).coefficients, strict=True):
        assert np.array_equal(mine, theirs)
    drawn = np.concatenate([w.ravel() for w in genome.weights])
    assert np.all(np.abs(drawn) <= 0.1) and drawn.std() > 0.05  # uniform(-0.1, 0.1), as its lifetimes drew
    assert np.array_equal(start(0).to_vector(), genome.to_vector())
    assert not np.array_equal(start(1).weights[0], genome.weights[0])
    with pytest.raises(ConfigError, match="init_from"):  # other layers: still refused
        start(0, hidden=[8])


def test_a_plastic_run_starts_from_a_static_genome_and_walks_as_it_does(tmp_path):
    """init_from a static genome: its weights as the initial weights, every rule term zero (ABCD_lr: A, B,
    C, eta, D, with eta 0.1 off the saddle at zero); the first generation is the static network to the bit,
    whatever the plasticity clock."""
    values = read_mapping(ROOT / "launch" / "smoke" / "ant.yaml")
    spec, _, _ = plan(make_config({**values, "genome_kind": "static"}))
    vector = np.random.default_rng(4).normal(0.0, 0.5, Genome.parameter_count("static", spec))
    static = Genome.from_vector("static", spec, "ant", vector)
    source = save_genome(static, tmp_path / "static.npz")

    def start(**more) -> Genome:
        config = make_config({**values, "init": "coevolve", "init_from": str(source), **more})
        spec, robot, _ = plan(config)
        space = search_space(config, spec, robot)
        return Genome.from_vector("hebbian", spec, "ant", space.expand(initial_mean(config, spec, space)))

    genome = start(normalise=False, plasticity_period=3)
    assert genome.coevolved and genome.spec.plasticity_period == 3
    assert all(
        not c[..., :3].any() and (c[..., 3] == 0.1).all() and not c[..., 4].any() for c in genome.coefficients
    )
    lives = [run_lifetime(g.build(), sim.make("ant"), 30, seed=0) for g in (static, genome)]
    assert lives[0].distance == lives[1].distance and lives[0].speeds == lives[1].speeds
    with pytest.raises(ConfigError, match="normalise: false"):  # normalising would rescale its weights
        start(normalise=True)
