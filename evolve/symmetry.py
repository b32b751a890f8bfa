"""The search space of an evolution: a genome's parameters, or half of them tied by the robot's mirror.

With ``symmetry: mirror`` every synapse shares its rule (and, for a static or co-evolved genome, its
weight) with its mirror image: the synapse between the reflections of its two neurons. The robot's
:class:`sim.quadruped.Mirror` reflects inputs and outputs (left legs <-> right legs, signs of y-like
values); hidden neuron ``k`` of a layer of ``n`` reflects to ``(k + n/2) mod n``. Why: a network free to
give its left and right legs different rules can grow a lopsided gait that a right-hand cut stops (the
untied Ant line did: docs/results.md, "What was tried"); tied, a lifetime's random initial weights are all
that tell the sides apart, and the search has half the parameters. The genome files stay full genomes: the
plastic network and the deploy path never see the tie.

A reflected synapse carries the same update when each coefficient takes the sign of what it multiplies:
for dw_ij = eta * (A o_i o_j + B o_i + C o_j + D) + Dout and a reflection that flips input i by s_i and
output j by s_j (so that w' = s_i s_j w), A and eta keep their sign, B takes s_j, C takes s_i, D, Dout and
the weight take s_i s_j.
"""

from __future__ import annotations

import numpy as np

from controller.genome import Genome
from controller.network import NetworkSpec
from controller.rules import get_rule
from evolve.config import Config, ConfigError
from sim.quadruped import Mirror

# coefficient -> (power of the input's sign, power of the output's sign)
SIGN_POWERS = {"A": (0, 0), "B": (0, 1), "C": (1, 0), "eta": (0, 0), "D": (1, 1), "Dout": (1, 1)}


class SearchSpace:
    """A linear map from the ES's vector to a genome's full parameter vector: ``full = sign * v[index]``.

    A zero ``sign`` pins a parameter that its own reflection negates (a self-mirrored synapse's odd term)."""

    def __init__(self, index: np.ndarray, sign: np.ndarray, size: int) -> None:
        self.index, self.sign, self.size = index, sign.astype(np.float32), size

    @classmethod
    def full(cls, kind: str, spec: NetworkSpec) -> SearchSpace:
        n = Genome.parameter_count(kind, spec)
        return cls(np.arange(n), np.ones(n), n)

    @classmethod
    def mirrored(cls, kind: str, spec: NetworkSpec, mirror: Mirror) -> SearchSpace:
        """Tie each parameter to its reflection's (the lower flat index of the two stands for both)."""
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
        partner, sign = np.concatenate(partners), np.concatenate(signs)
        flat = np.arange(offset)
        representative = np.minimum(flat, partner)
        pinned = (partner == flat) & (sign < 0)
        kept, index = np.unique(representative[~pinned], return_inverse=True)
        full_index = np.zeros(offset, dtype=np.int64)
        full_index[~pinned] = index
        full_sign = np.where(flat == representative, 1.0, sign)
        full_sign[pinned] = 0.0
        return cls(full_index, full_sign, kept.size)

    def expand(self, vector: np.ndarray) -> np.ndarray:
        """The genome's full parameter vector."""
        return self.sign * np.asarray(vector, dtype=np.float32)[self.index]

    def reduce(self, full: np.ndarray) -> np.ndarray:
        """The nearest vector of this space (least squares): each tied group's mean, signs undone.
        Starts a tied search from an untied genome (``init_from``)."""
        weight = self.sign.astype(np.float64)
        total = np.bincount(self.index, weights=weight * full, minlength=self.size)
        count = np.bincount(self.index, weights=weight**2, minlength=self.size)
        return (total / np.maximum(count, 1)).astype(np.float32)


def search_space(config: Config, spec: NetworkSpec, robot: object) -> SearchSpace:
    """The configured search space for this robot (``symmetry``), or a one-line error naming the key."""
    kind = config.network.genome_kind
    if config.search.symmetry == "none":
        return SearchSpace.full(kind, spec)
    mirror = getattr(robot, "mirror", None)
    if mirror is None:
        raise ConfigError(
            f"config key 'symmetry': task {config.task!r} has no mirror map; set symmetry: none"
        )
    try:
        return SearchSpace.mirrored(kind, spec, mirror)
    except ValueError as exc:
        raise ConfigError(f"config key 'symmetry': {exc}") from None


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
