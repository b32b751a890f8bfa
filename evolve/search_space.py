"""The search space of an evolution: a genome's parameters, some of them tied to share one value.

Two kinds of tie, which compose:

- Rule sharing (``rules``, Pedersen & Risi, "Evolving and merging Hebbian learning rules", GECCO 2021):
  synapses share one rule per input neuron, per output neuron or per layer, or per cluster of a k-means
  grouping of the rules (``merge_every``/``merge_to``, evolve-and-merge: :func:`merge`). Why: fewer
  rules than synapses is a "genomic bottleneck" that the paper found to generalise better to unseen
  bodies, and a search over a few thousand values rather than sixty thousand.
- The mirror (``symmetry: mirror``): every synapse shares its rule (and, for a static or co-evolved
  genome, its weight) with its mirror image: the synapse between the reflections of its two neurons. The
  robot's :class:`sim.quadruped.Mirror` reflects inputs and outputs (left legs <-> right legs, signs of
  y-like values); hidden neuron ``k`` of a layer of ``n`` reflects to ``(k + n/2) mod n``. Why: a network
  free to give its left and right legs different rules can grow a lopsided gait that a right-hand cut
  stops (the untied Ant line did: docs/results.md, "What was tried"); tied, a lifetime's random initial
  weights are all that tell the sides apart.

The genome files stay full genomes: the plastic network and the deploy path never see a tie.

A reflected synapse carries the same update when each coefficient takes the sign of what it multiplies:
for dw_ij = eta * (A o_i o_j + B o_i + C o_j + D) + Dout and a reflection that flips input i by s_i and
output j by s_j (so that w' = s_i s_j w), A and eta keep their sign, B takes s_j, C takes s_i, D, Dout and
the weight take s_i s_j. Ties are edges "parameter a = sign x parameter b"; a group of tied parameters
whose edges disagree (a parameter tied to its own negation, directly or round a loop) is pinned to zero.
"""

from __future__ import annotations

import numpy as np

from controller.genome import Genome
from controller.network import NetworkSpec
from controller.rules import cluster_rules, get_rule
from evolve.config import Config, ConfigError
from sim.quadruped import Mirror

# coefficient -> (power of the input's sign, power of the output's sign)
SIGN_POWERS = {"A": (0, 0), "B": (0, 1), "C": (1, 0), "eta": (0, 0), "D": (1, 1), "Dout": (1, 1)}


Ties = tuple[np.ndarray, np.ndarray, np.ndarray]  # (a, b, sign): parameter a = sign x parameter b


class SearchSpace:
    """A linear map from the ES's vector to a genome's full parameter vector: ``full = sign * v[index]``.

    A zero ``sign`` pins a parameter whose ties disagree (a self-mirrored synapse's odd term)."""

    def __init__(self, index: np.ndarray, sign: np.ndarray, size: int) -> None:
        self.index, self.sign, self.size = index, sign.astype(np.float32), size

    @classmethod
    def full(cls, kind: str, spec: NetworkSpec) -> SearchSpace:
        n = Genome.parameter_count(kind, spec)
        return cls(np.arange(n), np.ones(n), n)

    @classmethod
    def tied(cls, n: int, ties: list[Ties]) -> SearchSpace:
        """The space of ``n`` parameters under ``ties``: one value per group of tied parameters (the
        group's lowest index stands for it, and the groups are numbered in that order), each member
        taking its sign relative to that one."""
        parent, parity, broken = list(range(n)), [0] * n, [False] * n

        def find(x: int) -> tuple[int, int]:
            path = []
            while parent[x] != x:
                path.append(x)
                x = parent[x]
            flip = 0
            for node in reversed(path):  # path compression, each node's parity now to the root
                flip ^= parity[node]
                parity[node], parent[node] = flip, x
            return x, parity[path[0]] if path else 0

        for a, b, sign in ties:
            for u, v, negative in zip(a.tolist(), b.tolist(), (sign < 0).tolist(), strict=True):
                (ru, pu), (rv, pv) = find(u), find(v)
                if ru == rv:
                    broken[ru] |= (pu ^ pv) != negative
                else:
                    parent[ru], parity[ru] = rv, pu ^ pv ^ negative
                    broken[rv] |= broken[ru]
        roots, flips = zip(*(find(x) for x in range(n)), strict=True) if n else ((), ())
        roots, flips = np.array(roots, dtype=np.int64), np.array(flips)
        lowest = np.full(n, n, dtype=np.int64)
        np.minimum.at(lowest, roots, np.arange(n))
        representative = lowest[roots]  # each parameter's group, named by its lowest member
        pinned = np.array(broken)[roots]
        relative = flips ^ flips[representative]  # sign relative to the lowest member
        kept, index = np.unique(representative[~pinned], return_inverse=True)
        full_index = np.zeros(n, dtype=np.int64)
        full_index[~pinned] = index
        full_sign = np.where(relative == 1, -1.0, 1.0)
        full_sign[pinned] = 0.0
        return cls(full_index, full_sign, kept.size)

    def expand(self, vector: np.ndarray) -> np.ndarray:
        """The genome's full parameter vector."""
        return self.sign * np.asarray(vector, dtype=np.float32)[self.index]

    def reduce(self, full: np.ndarray) -> np.ndarray:
        """The nearest vector of this space (least squares): each tied group's mean, signs undone.
        Starts a tied search from an untied genome (``init_from``), and merges rules (:func:`merge`)."""
        weight = self.sign.astype(np.float64)
        total = np.bincount(self.index, weights=weight * full, minlength=self.size)
        count = np.bincount(self.index, weights=weight**2, minlength=self.size)
        return (total / np.maximum(count, 1)).astype(np.float32)


def mirror_ties(kind: str, spec: NetworkSpec, mirror: Mirror) -> Ties:
    """Each parameter tied to its reflection's."""
    neurons = _reflected_neurons(spec, mirror)
    partners, signs, offset = [], [], 0
    for name, shape in Genome.array_shapes(kind, spec):
        layer = int(name.rsplit("_", 1)[1])
        (source_in, sign_in), (source_out, sign_out) = neurons[layer], neurons[layer + 1]
        if name.startswith("coefficients"):
            powers = np.array([SIGN_POWERS[c] for c in get_rule(spec.rule).coefficients])
        else:  # a weight goes as D does
            powers = np.array([SIGN_POWERS["D"]])
        i, j, c = np.meshgrid(*(np.arange(n) for n in (*shape[:2], len(powers))), indexing="ij")
        partner = np.ravel_multi_index((source_in[i], source_out[j], c), (*shape[:2], len(powers)))
        partners.append(offset + partner.reshape(-1))
        signs.append((sign_in[i] ** powers[c, 0] * sign_out[j] ** powers[c, 1]).reshape(-1))
        offset += partner.size
    partner = np.concatenate(partners)
    return np.arange(offset), partner, np.concatenate(signs)


def _coefficient_offsets(kind: str, spec: NetworkSpec) -> list[tuple[int, tuple[int, ...]]]:
    """Where each layer's rule coefficients (n_in, n_out, k) start in the genome's vector."""
    offsets, offset = [], 0
    for name, shape in Genome.array_shapes(kind, spec):
        if name.startswith("coefficients"):
            offsets.append((offset, shape))
        offset += int(np.prod(shape))
    return offsets


def sharing_ties(kind: str, spec: NetworkSpec, rules: str) -> Ties:
    """Every synapse's rule tied to the one its input neuron, output neuron or layer shares."""
    a, b = [], []
    for offset, (n_in, n_out, k) in _coefficient_offsets(kind, spec):
        i, j, c = np.meshgrid(np.arange(n_in), np.arange(n_out), np.arange(k), indexing="ij")
        keep_i, keep_j = rules in ("per_input_neuron",), rules in ("per_output_neuron",)
        shared = np.ravel_multi_index((i * keep_i, j * keep_j, c), (n_in, n_out, k))
        a.append(offset + np.ravel_multi_index((i, j, c), (n_in, n_out, k)).reshape(-1))
        b.append(offset + shared.reshape(-1))
    a_all, b_all = (np.concatenate(x) if x else np.zeros(0, dtype=np.int64) for x in (a, b))
    return a_all, b_all, np.ones(a_all.size)


def _synapse_parameters(kind: str, spec: NetworkSpec) -> np.ndarray:
    """Each synapse's rule coefficients' indices in the genome's vector: one row per synapse, layers in
    order."""
    return np.concatenate(
        [
            offset + np.arange(n_in * n_out * k).reshape(n_in * n_out, k)
            for offset, (n_in, n_out, k) in _coefficient_offsets(kind, spec)
        ]
    )


def cluster_ties(kind: str, spec: NetworkSpec, clusters: np.ndarray) -> Ties:
    """Every clustered synapse's rule tied to its cluster's (``clusters``: one label per synapse, layers in
    order; -1 for a synapse that follows its mirror image's instead)."""
    synapses = _synapse_parameters(kind, spec)
    if clusters.shape != (len(synapses),):
        raise ValueError(f"{clusters.shape[0]} cluster labels for {len(synapses)} synapses")
    clustered = np.flatnonzero(clusters >= 0)
    first = np.full(int(clusters.max()) + 1, -1)
    first[clusters[clustered[::-1]]] = clustered[::-1]  # each cluster's first synapse stands for it
    a, b = synapses[clustered], synapses[first[clusters[clustered]]]
    return a.reshape(-1), b.reshape(-1), np.ones(a.size)


def synapse_partners(kind: str, spec: NetworkSpec, mirror: Mirror) -> np.ndarray:
    """Each synapse's mirror image (its index among the synapses, layers in order)."""
    first = _synapse_parameters(kind, spec)[:, 0]
    _, partner, _ = mirror_ties(kind, spec, mirror)
    return np.searchsorted(first, partner[first])


def rule_matrix(kind: str, spec: NetworkSpec, full: np.ndarray) -> np.ndarray:
    """Every synapse's rule coefficients as rows (layers in order), from a genome's full vector."""
    return np.concatenate(
        [
            full[o : o + n_in * n_out * k].reshape(n_in * n_out, k)
            for o, (n_in, n_out, k) in _coefficient_offsets(kind, spec)
        ]
    )


def search_space(
    config: Config, spec: NetworkSpec, robot: object, clusters: np.ndarray | None = None
) -> SearchSpace:
    """The configured search space for this robot (``rules``, ``symmetry``, and the rule ``clusters`` of
    the last merge, if any), or a one-line error naming the key."""
    kind, search = config.network.genome_kind, config.search
    ties = []
    if search.rules != "per_synapse":
        ties.append(sharing_ties(kind, spec, search.rules))
    if clusters is not None:
        ties.append(cluster_ties(kind, spec, clusters))
    if search.symmetry == "mirror":
        mirror = getattr(robot, "mirror", None)
        if mirror is None:
            raise ConfigError(
                f"config key 'symmetry': task {config.task!r} has no mirror map; set symmetry: none"
            )
        try:
            ties.append(mirror_ties(kind, spec, mirror))
        except ValueError as exc:
            raise ConfigError(f"config key 'symmetry': {exc}") from None
    if not ties:
        return SearchSpace.full(kind, spec)
    return SearchSpace.tied(Genome.parameter_count(kind, spec), ties)


def merge(
    config: Config, spec: NetworkSpec, robot: object, full: np.ndarray, count: int, seed: int
) -> np.ndarray:
    """Evolve-and-merge's step: the synapses' rules (from a genome's full vector) grouped into ``count``
    clusters by k-means (:func:`controller.rules.cluster_rules`, from ``seed``); the search then goes on
    over one rule per cluster, each starting at its cluster's mean (``SearchSpace.reduce``). With the
    mirror, only one synapse of each mirror pair is clustered (-1 for the other, which follows it through
    the mirror's signs): clustering both would tie pairs of clusters together through the mirror."""
    kind = config.network.genome_kind
    rules = rule_matrix(kind, spec, full)
    chosen = np.ones(len(rules), dtype=bool)
    if config.search.symmetry == "mirror":
        chosen = np.arange(len(rules)) <= synapse_partners(kind, spec, robot.mirror)
    _, labels, _ = cluster_rules(rules[chosen], count, seed)
    clusters = np.full(len(rules), -1)
    clusters[chosen] = labels
    return clusters


def _reflected_neurons(spec: NetworkSpec, mirror: Mirror) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per layer of neurons, each one's reflection and the sign it takes there."""
    if spec.frontend_shapes:
        raise ValueError("a network with a convolutional front end has no mirror map")
    sizes = spec.layer_sizes
    if len(mirror.observation_source) != sizes[0] or len(mirror.action_source) != sizes[-1]:
        raise ValueError(f"the mirror map does not fit a network with layers {list(sizes)}")
    neurons = [(np.array(mirror.observation_source), np.array(mirror.observation_sign))]
    for n in sizes[1:-1]:
        if n % 2:
            raise ValueError(f"a mirrored network pairs its hidden neurons: sizes must be even, got {n}")
        neurons.append(((np.arange(n) + n // 2) % n, np.ones(n)))
    neurons.append((np.array(mirror.action_source), np.array(mirror.action_sign)))
    return neurons
