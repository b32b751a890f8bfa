"""The search space's ties. Mirror-tied rules (``symmetry: mirror``): the Ant's reflection map is its
physics' own, and a network whose rules are tied by it answers a reflected world with reflected actions.
Shared rules (``rules``, ``merge_to``): synapses of one neuron, layer or cluster carry one rule, alone or
with the mirror, and a run that merges its rules resumes exactly."""

from __future__ import annotations

import json
from pathlib import Path

import mujoco
import numpy as np
import pytest

import sim
from controller.genome import Genome, load_genome
from controller.network import NetworkSpec
from evolve.cli import main
from evolve.config import make_config
from evolve.fitness import network_spec
from evolve.search_space import SearchSpace, merge, mirror_ties, search_space
from sim.quadruped import Mirror

SMOKE = str(Path(__file__).resolve().parents[1] / "launch" / "smoke" / "ant.yaml")


def reflect(vector: np.ndarray, source: tuple[int, ...], sign: tuple[float, ...]) -> np.ndarray:
    return np.asarray(sign) * np.asarray(vector)[list(source)]


def test_the_ants_mirror_map_reflects_its_observations_and_dynamics():
    """Two Ants, one in the reflection of the other's state, driven by reflected actions, stay each
    other's reflection tick after tick: the map's leg swap and signs are the model's symmetry."""
    left, right = sim.make("ant"), sim.make("ant")
    left.reset(seed=3)
    right.reset(seed=4)
    a, b = left.unwrapped, right.unwrapped
    mirror = a.mirror
    joints, signs = np.array(mirror.action_source), np.array(mirror.action_sign)
    qpos, qvel = a._qpos_adr, a._qvel_adr  # the joints' entries, in the action's order
    b.data.qpos[:2] = a.data.qpos[:2] * [1, -1]
    b.data.qpos[2] = a.data.qpos[2]
    b.data.qpos[3:7] = a.data.qpos[3:7] * [1, -1, 1, -1]
    b.data.qpos[qpos] = signs * a.data.qpos[qpos[joints]]
    b.data.qvel[:6] = a.data.qvel[:6] * [1, -1, 1, -1, 1, -1]
    b.data.qvel[qvel] = signs * a.data.qvel[qvel[joints]]
    mujoco.mj_forward(b.model, b.data)
    reflected = reflect(a._obs(), mirror.observation_source, mirror.observation_sign)
    np.testing.assert_allclose(b._obs(), reflected)
    rng = np.random.default_rng(0)
    for _ in range(25):
        action = rng.uniform(-1, 1, 8)
        obs_a, *_ = left.step(action)
        obs_b, *_ = right.step(reflect(action, mirror.action_source, mirror.action_sign))
        mirrored = reflect(obs_a, mirror.observation_source, mirror.observation_sign)
        np.testing.assert_allclose(obs_b, mirrored, atol=1e-6)
    assert abs(obs_a[0] - 0.75) > 0.01 or np.abs(obs_a[5:13]).max() > 0.1  # the bodies moved


def _ant_space(kind: str = "hebbian") -> tuple[SearchSpace, NetworkSpec, Mirror]:
    config = make_config({"genome_kind": kind, "symmetry": "mirror"})
    env = sim.make("ant")
    spec = network_spec(config, env.observation_space, env.action_space)
    return search_space(config, spec, env.unwrapped), spec, env.unwrapped.mirror


def _reflected_weights(weights: list[np.ndarray], spec: NetworkSpec, mirror: Mirror) -> list[np.ndarray]:
    """w'[reflection of i, reflection of j] = s_i s_j w[i, j], hidden neuron k reflected to k + n/2."""
    neurons = [(np.array(mirror.observation_source), np.array(mirror.observation_sign))]
    neurons += [((np.arange(n) + n // 2) % n, np.ones(n)) for n in spec.layer_sizes[1:-1]]
    neurons += [(np.array(mirror.action_source), np.array(mirror.action_sign))]
    reflected = []
    for w, (src_in, s_in), (src_out, s_out) in zip(weights, neurons, neurons[1:], strict=False):
        r = np.empty_like(w)
        r[np.ix_(src_in, src_out)] = s_in[:, None] * s_out[None, :] * w
        reflected.append(r)
    return reflected


def test_a_mirror_tied_genome_answers_reflected_observations_with_reflected_actions():
    """Tied rules from a random search vector, the reflected initial weights, a reflected observation
    stream: every tick's actions (after plastic updates) are the reflection of the other network's, so
    the signs of B, C and D and the hidden pairing are right."""
    space, spec, mirror = _ant_space()
    assert space.size * 2 == Genome.parameter_count("hebbian", spec)  # no synapse is its own reflection
    vector = np.random.default_rng(1).normal(0, 0.3, space.size)
    genome = Genome.from_vector("hebbian", spec, "ant", space.expand(vector))
    a, b = genome.build("numpy"), genome.build("numpy")
    a.reset(np.random.default_rng(2))
    b.reset(np.random.default_rng(3))
    b.set_weights(_reflected_weights([w.copy() for w in a.weights], spec, mirror))
    rng = np.random.default_rng(4)
    for _ in range(20):
        obs = rng.normal(0, 0.5, 27)
        action = a.tick(obs)
        a.update()
        mirrored = b.tick(reflect(obs, mirror.observation_source, mirror.observation_sign))
        b.update()
        np.testing.assert_allclose(
            mirrored, reflect(action, mirror.action_source, mirror.action_sign), atol=1e-5
        )
    assert np.abs(action).max() > 0.1


def test_tying_keeps_a_tied_vector_and_averages_an_untied_genome_into_the_space():
    space, spec, _ = _ant_space("static")
    tied = space.expand(np.random.default_rng(0).normal(size=space.size))
    np.testing.assert_allclose(space.expand(space.reduce(tied)), tied, rtol=1e-6)
    untied = np.random.default_rng(1).normal(size=tied.size).astype(np.float32)
    projected = space.expand(space.reduce(untied))
    assert np.dot(untied - projected, projected) == pytest.approx(0.0, abs=1e-2)  # least squares


def test_a_mirror_run_searches_half_the_parameters_and_writes_a_full_tied_genome(tmp_path):
    run = tmp_path / "run"
    args = ["--config", SMOKE, "--out", str(run), "--workers", "1", "--set", "generations=1"]
    assert main([*args, "--set", "symmetry=mirror"]) == 0
    space, spec, _ = _ant_space()
    with np.load(run / "checkpoint.npz", allow_pickle=False) as checkpoint:
        assert checkpoint["mean"].size == space.size
    full = load_genome(run / "final.npz").to_vector()
    assert full.size == Genome.parameter_count("hebbian", spec)
    np.testing.assert_allclose(space.expand(space.reduce(full)), full, rtol=1e-6)


def test_a_synapse_that_is_its_own_reflection_keeps_only_the_terms_the_reflection_leaves_alone():
    """A one-layer network whose inputs and output are their own reflections, the output and input 1
    flipped (yaw-like values): each coefficient that the reflection negates must be zero, the rest are free
    (0 -> 0: B and D pinned; 1 -> 0: B and C pinned)."""
    spec = NetworkSpec((2, 1), ("tanh",), rule="ABCD_lr")
    ties = mirror_ties("hebbian", spec, Mirror((0, 1), (1.0, -1.0), (0,), (-1.0,)))
    space = SearchSpace.tied(Genome.parameter_count("hebbian", spec), [ties])
    coefficients = space.expand(np.arange(1, space.size + 1)).reshape(2, 1, 5)  # A, B, C, eta, D
    assert list(coefficients[0, 0] != 0) == [True, False, True, True, False]
    assert list(coefficients[1, 0] != 0) == [True, False, False, True, True]
    assert space.size == 6


def test_ties_that_disagree_round_a_loop_pin_their_group_and_the_rest_stay_free():
    # 0 = 1, 1 = -2, 2 = 0: the loop says 0 = -0, so 0, 1, 2 are pinned; 3 = -4 is one free value
    ties = (np.array([0, 1, 2, 3]), np.array([1, 2, 0, 4]), np.array([1.0, -1.0, 1.0, -1.0]))
    space = SearchSpace.tied(6, [ties])
    assert space.size == 2
    np.testing.assert_array_equal(space.expand(np.array([7.0, 5.0])), [0, 0, 0, 7, -7, 5])


@pytest.mark.parametrize(
    ("rules", "size", "one"),
    [
        ("per_input_neuron", 1095, np.s_[:, :1]),  # (27 + 128 + 64) neurons x 5 coefficients
        ("per_output_neuron", 1000, np.s_[:1, :]),  # (128 + 64 + 8) x 5
        ("per_layer", 15, np.s_[:1, :1]),  # 3 layers x 5
    ],
)
def test_shared_rules_give_every_synapse_of_a_neuron_or_layer_one_rule(rules, size, one):
    config = make_config({"rules": rules})
    env = sim.make("ant")
    spec = network_spec(config, env.observation_space, env.action_space)
    space = search_space(config, spec, env.unwrapped)
    assert space.size == size
    full = space.expand(np.random.default_rng(0).normal(size=size))
    for c in Genome.from_vector("hebbian", spec, "ant", full).coefficients:
        np.testing.assert_array_equal(c, np.broadcast_to(c[one], c.shape))
        assert np.unique(c.reshape(-1, 5), axis=0).shape[0] == c[one].shape[0] * c[one].shape[1]


def test_shared_rules_and_the_mirror_compose():
    config = make_config({"rules": "per_input_neuron", "symmetry": "mirror"})
    env = sim.make("ant")
    spec, mirror = network_spec(config, env.observation_space, env.action_space), env.unwrapped.mirror
    space = search_space(config, spec, env.unwrapped)
    full = space.expand(np.random.default_rng(0).normal(size=space.size))
    genome = Genome.from_vector("hebbian", spec, "ant", full)
    first = genome.coefficients[0]
    np.testing.assert_array_equal(first, np.broadcast_to(first[:, :1], first.shape))  # shared per input
    source = np.array(mirror.observation_source)
    np.testing.assert_array_equal(first[source, :, 0], first[:, :, 0])  # A: the reflected input's rule
    assert space.size < 1095 and np.abs(full).max() > 0


def test_a_merging_run_ends_with_its_clusters_rules_and_resumes_across_a_merge(tmp_path):
    args = ["--config", SMOKE, "--workers", "1", "--set", "merge_every=2", "--set", "merge_to=[300, 40]"]
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert main([*args, "--out", str(whole), "--set", "generations=5"]) == 0
    merges = [r for r in map(json.loads, (whole / "log.jsonl").read_text().splitlines()) if "merged_to" in r]
    assert [(r["generation"], r["merged_to"], r["searched_parameters"]) for r in merges] == [
        (1, 300, 1500),  # after the 2nd generation (records count from 0)
        (3, 40, 200),
    ]
    genome = load_genome(whole / "final.npz")
    rows = np.concatenate([c.reshape(-1, 5) for c in genome.coefficients])
    assert np.unique(rows, axis=0).shape[0] == 40 and genome.provenance["searched_parameters"] == 200
    assert main([*args, "--out", str(split), "--set", "generations=3"]) == 0  # stops after the first merge
    assert main(["--resume", str(split), "--set", "generations=5", "--workers", "1"]) == 0
    assert np.array_equal(load_genome(split / "final.npz").to_vector(), genome.to_vector())


def test_merge_groups_rules_with_k_means():
    spec = NetworkSpec((4, 3), ("tanh",), rule="ABCD_lr")
    rules = np.repeat(np.eye(5)[:3] * 4, 4, axis=0)  # 12 synapses, 3 distinct rules
    clusters = merge(make_config({}), spec, None, rules.reshape(-1), 3, seed=0)
    assert len(set(clusters.tolist())) == 3
    assert all(len(set(clusters[k * 4 : (k + 1) * 4].tolist())) == 1 for k in range(3))


def test_merging_under_the_mirror_clusters_one_synapse_of_each_pair_and_keeps_the_count():
    """Clustering both synapses of a mirror pair would tie clusters together through the mirror (and pin
    their odd terms): one of each pair is clustered, the other follows it, so 380 clusters stay 380 rules
    of 5 values, each with its mirror image."""
    config = make_config({"symmetry": "mirror"})
    env = sim.make("ant")
    spec = network_spec(config, env.observation_space, env.action_space)
    full = load_genome("ant-faults").to_vector()
    clusters = merge(config, spec, env.unwrapped, full, 380, seed=0)
    assert len(set(clusters[clusters >= 0].tolist())) == 380 and (clusters < 0).sum() > 5000
    space = search_space(config, spec, env.unwrapped, clusters)
    assert 1800 <= space.size <= 1900  # 380 x 5, less the odd terms of self-mirrored groups
    merged = Genome.from_vector("hebbian", spec, "ant", space.expand(space.reduce(full)))
    rows = np.concatenate([c.reshape(-1, 5) for c in merged.coefficients])
    assert len(np.unique(rows[clusters >= 0], axis=0)) == 380
