"""``controller analyse``: rule clusters, and weight trajectories whose verdict follows what the rules do.

Genomes with known answers: with every coefficient zero the weights keep their random start (each
lifetime its own matrix, held still); with only a positive D term every weight grows to the same
normalised matrix (one attractor, a fixed point). The shipped genomes run through it on their tasks.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from controller.cli import main
from controller.genome import SHIPPED, Genome, load_genome, save_genome
from controller.rules import cluster_rules, get_rule


def test_cluster_rules_finds_separated_groups_and_is_seeded():
    rng = np.random.default_rng(0)
    centres = np.array([[5.0, 0, 0, 0], [0, 5.0, 0, 0], [0, 0, 0, -5.0]])
    points = np.concatenate([c + 0.1 * rng.normal(size=(40, 4)) for c in centres])
    found, labels, inertia = cluster_rules(points, 3, seed=1)
    assert sorted(np.bincount(labels).tolist()) == [40, 40, 40]
    assert all(len(set(labels[k * 40 : (k + 1) * 40])) == 1 for k in range(3))
    assert inertia < 0.02 * ((points - points.mean(axis=0)) ** 2).sum()
    assert np.allclose(sorted(found.tolist()), sorted(centres.tolist()), atol=0.1)
    again = cluster_rules(points, 3, seed=1)
    assert np.array_equal(again[1], labels) and again[2] == inertia
    with pytest.raises(ValueError, match="cannot make 121 clusters of 120 rules"):
        cluster_rules(points, 121, seed=1)


def _with_rules(tmp_path, name: str, **terms: float):
    """The shipped Ant genome's network with every synapse's rule set to ``terms`` (others zero)."""
    shipped = load_genome("ant")
    names = get_rule(shipped.spec.rule).coefficients
    coefficients = [np.zeros_like(c) for c in shipped.coefficients]
    for c in coefficients:
        for term, value in terms.items():
            c[..., names.index(term)] = value
    genome = Genome("hebbian", shipped.spec, "ant", coefficients, provenance={"settle_ticks": 0})
    return save_genome(genome, tmp_path / f"{name}.npz")


def _analyse(tmp_path, genome, *extra: str) -> dict:
    out = tmp_path / "out"
    args = [str(genome), "--sim", "ant", "--lifetimes", "4", "--steps", "80", "--out", str(out), *extra]
    assert main(["analyse", *args]) == 0
    return json.loads((out / "analysis.json").read_text())


def test_rules_that_do_nothing_keep_each_random_start(tmp_path):
    result = _analyse(tmp_path, _with_rules(tmp_path, "still"), "--no-plots")
    intact = result["intact"]
    assert intact["late_gap"] > 0.9 and intact["random_starts_gap"] > 0.9  # independent matrices
    assert intact["median_late_wander_relative"] < 1e-6
    assert result["verdict"].startswith("each lifetime keeps weights of its own")
    assert "hold still" in result["verdict"]


def test_a_constant_growth_rule_draws_every_lifetime_to_one_fixed_matrix(tmp_path):
    result = _analyse(tmp_path, _with_rules(tmp_path, "grow", eta=1.0, D=1.0), "--no-plots")
    intact = result["intact"]
    assert intact["late_gap"] < 0.01 and intact["median_late_wander_relative"] < 0.01
    assert result["verdict"].startswith("the lifetimes' weights converge to one attractor")
    # one rule everywhere: a single cluster explains it all
    assert all(layer["fewest_clusters"] == {"90%": 1, "95%": 1} for layer in result["rule_clusters"])


def test_the_shipped_ant_cycles_with_its_gait_and_a_damage_moves_its_attractor(tmp_path):
    result = _analyse(tmp_path, "ant", "--damage", "cut-leg:2@2")
    assert result["layers"][0]["shape"] == [27, 128]
    assert set(result["layers"][0]["coefficients"]) == {"A", "B", "C", "eta", "D"}
    damage = result["damage"]
    assert damage["onset_tick"] == 40  # 2 s at 20 Hz: the lifetimes are the intact ones until then
    assert max(damage["gap_intact_to_damaged"][k] for k, t in enumerate(damage["ticks"]) if t < 40) == 0
    assert damage["attractor_shift"] > 0
    assert {p.name for p in (tmp_path / "out").iterdir()} == {
        "analysis.json",
        "coefficients.png",
        "trajectories.png",
    }


SLOW_TASKS = {"carracing", "ant-bullet"}  # pixels, and PyBullet's start-up: in the slow run


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=[pytest.mark.slow] if load_genome(name).task in SLOW_TASKS else [])
        for name in sorted(set(SHIPPED) - {"ant", "ant-hebbian"})
    ],
)
def test_analyse_runs_on_every_shipped_genome(tmp_path, name):
    task = load_genome(name).task
    out = tmp_path / "out"
    args = [
        "analyse",
        name,
        "--sim",
        task,
        "--lifetimes",
        "2",
        "--steps",
        "12",
        "--out",
        str(out),
        "--no-plots",
    ]
    assert main(args) == 0
    result = json.loads((out / "analysis.json").read_text())
    assert result["kind"] == load_genome(name).kind and result["verdict"]


def test_analyse_refuses_an_output_that_is_a_file(tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("")
    assert main(["analyse", "ant", "--sim", "ant", "--out", str(target)]) == 2
    assert capsys.readouterr().err.strip() == f"error: --out {target} is a file; name a folder"
