"""Every rule, on every backend, equals its definition computed synapse by synapse in float64.

The reference below is written from the paper's formulas and the reference code's coefficient order
(``docs/method.md``), not from :mod:`controller.rules`, so a slip in the shared folding of the
rules into four terms shows up here. Coefficient scales keep the weights O(1) for the whole run
(normalisation bounds them; without it the drift per tick is kept small): an absolute 1e-5 is then
about a hundred float32 roundings, while grown weights would make float32 itself miss it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from controller.genome import Genome
from controller.network import NetworkSpec
from controller.rules import RULES

# dw_ij for each rule, from the paper (x: pre-synaptic o_i, y: post-synaptic o_j).
FORMULAS = {
    "A": lambda c, x, y: c["A"] * x * y,
    "AD": lambda c, x, y: c["A"] * x * y + c["D"],
    "AD_lr": lambda c, x, y: c["eta"] * (c["A"] * x * y + c["D"]),
    "ABC": lambda c, x, y: c["A"] * x * y + c["B"] * x + c["C"] * y,
    "ABC_lr": lambda c, x, y: c["eta"] * (c["A"] * x * y + c["B"] * x + c["C"] * y),
    "ABCD": lambda c, x, y: c["A"] * x * y + c["B"] * x + c["C"] * y + c["D"],
    "ABCD_lr": lambda c, x, y: c["eta"] * (c["A"] * x * y + c["B"] * x + c["C"] * y + c["D"]),
    "ABCD_lr_D_out": lambda c, x, y: c["eta"] * (c["A"] * x * y + c["B"] * x + c["C"] * y) + c["Dout"],
    "ABCD_lr_D_in_and_out": lambda c, x, y: (
        c["eta"] * (c["A"] * x * y + c["B"] * x + c["C"] * y + c["D"]) + c["Dout"]
    ),
}
# Per-synapse coefficient order of the reference code.
ORDER = {
    "A": ("A",),
    "AD": ("A", "D"),
    "AD_lr": ("A", "D", "eta"),
    "ABC": ("A", "B", "C"),
    "ABC_lr": ("A", "B", "C", "eta"),
    "ABCD": ("A", "B", "C", "D"),
    "ABCD_lr": ("A", "B", "C", "eta", "D"),
    "ABCD_lr_D_out": ("A", "B", "C", "eta", "Dout"),
    "ABCD_lr_D_in_and_out": ("A", "B", "C", "eta", "D", "Dout"),
}
SMALL = ((6, 5, 4, 3), ("tanh", "linear", "tanh"))  # a linear layer too
ANT = ((27, 128, 64, 8), ("tanh", "tanh", "tanh"))
TOLERANCE = 1e-5


def _backends() -> list:
    marks = {
        "onnx": pytest.mark.skipif(
            any(_missing(m) for m in ("onnx", "onnxruntime")), reason="onnx/onnxruntime not installed"
        ),
    }
    return [pytest.param(name, marks=marks.get(name, ())) for name in ("numpy", "numba", "onnx")]


def _missing(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return True
    return False


class Float64Reference:
    """The network as plain nested lists of Python floats (float64), one synapse at a time."""

    def __init__(self, spec: NetworkSpec, genome: Genome, weights: list[np.ndarray]) -> None:
        self.spec = spec
        self.formula = FORMULAS[spec.rule]
        self.coefficients = [
            [[dict(zip(ORDER[spec.rule], c.tolist(), strict=True)) for c in row] for row in layer]
            for layer in genome.coefficients
        ]
        self.weights = [w.astype(np.float64).tolist() for w in weights]
        self.sums = [[0.0] * n for n in spec.layer_sizes]  # a slower plasticity clock's activity sums
        self.count = 0

    def tick(self, obs: np.ndarray) -> list[float]:
        activity = [[float(v) for v in obs]]
        for w, activation in zip(self.weights, self.spec.activations, strict=True):
            x, n_out = activity[-1], len(w[0])
            y = [sum(x[i] * w[i][j] for i in range(len(x))) for j in range(n_out)]
            activity.append([math.tanh(v) for v in y] if activation == "tanh" else y)
        period = self.spec.plasticity_period
        means = activity
        if period > 1:  # each neuron's mean over the period's ticks, once every period ticks
            self.sums = [
                [s + v for s, v in zip(*pair, strict=True)] for pair in zip(self.sums, activity, strict=True)
            ]
            self.count += 1
            if self.count < period:
                return activity[-1]
            means = [[s / period for s in sums] for sums in self.sums]
            self.sums, self.count = [[0.0] * len(sums) for sums in self.sums], 0
        for w, coefficients, x, y in zip(self.weights, self.coefficients, means, means[1:], strict=False):
            for i in range(len(x)):
                for j in range(len(y)):
                    w[i][j] += self.formula(coefficients[i][j], x[i], y[j])
            if self.spec.normalise:
                peak = max(abs(v) for row in w for v in row)
                if peak > 0:
                    for row in w:
                        row[:] = [v / peak for v in row]
        return activity[-1]


def _compare(shape: tuple, rule: str, normalise: bool, backend: str, ticks: int, period: int = 1) -> float:
    """Max abs difference of actions (every tick) and weights (at the end) from the reference."""
    spec = NetworkSpec(*shape, rule, normalise=normalise, plasticity_period=period)
    scale = 0.05 if normalise else 0.002
    vector = np.random.default_rng(7).normal(0.0, scale, Genome.parameter_count("hebbian", spec))
    genome = Genome.from_vector("hebbian", spec, "ant", vector)
    network = genome.build(backend)
    network.reset(np.random.default_rng(8))
    reference = Float64Reference(spec, genome, network.weights)
    observations = np.random.default_rng(9).normal(0.0, 0.5, (ticks, spec.obs_size))
    worst = 0.0
    for obs in observations:
        worst = max(worst, float(np.max(np.abs(network.tick(obs) - np.array(reference.tick(obs))))))
    for w, w_ref in zip(network.weights, reference.weights, strict=True):
        worst = max(worst, float(np.max(np.abs(w - np.array(w_ref)))))
    return worst


def test_reference_covers_every_rule_in_the_reference_codes_order():
    assert set(FORMULAS) == set(RULES) == set(ORDER)
    for name, rule in RULES.items():
        assert rule.coefficients == ORDER[name]


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("normalise", [False, True], ids=["raw", "normalised"])
@pytest.mark.parametrize("rule", list(RULES))
def test_every_rule_equals_the_float64_loop_for_200_ticks(rule, normalise, backend):
    assert _compare(SMALL, rule, normalise, backend, ticks=200) <= TOLERANCE


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("rule", ["ABCD_lr", "ABCD_lr_D_in_and_out"])
def test_ant_sized_network_equals_the_float64_loop(rule, backend):
    assert _compare(ANT, rule, True, backend, ticks=3) <= TOLERANCE


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("normalise", [False, True], ids=["raw", "normalised"])
@pytest.mark.parametrize("period", [2, 7])
@pytest.mark.parametrize("rule", ["ABCD_lr", "ABCD_lr_D_in_and_out"])
def test_a_slower_plasticity_clock_equals_the_float64_loop(rule, period, normalise, backend):
    """The rule on each neuron's mean activation, once every ``period`` ticks (201 ticks: a change
    just made, the next period's sums begun)."""
    assert _compare(SMALL, rule, normalise, backend, ticks=201, period=period) <= TOLERANCE


def test_a_slower_plasticity_clock_holds_the_weights_between_changes():
    spec = NetworkSpec(*SMALL, "ABCD_lr", plasticity_period=4)
    vector = np.random.default_rng(7).normal(0.0, 0.05, Genome.parameter_count("hebbian", spec))
    network = Genome.from_vector("hebbian", spec, "ant", vector).build("numba")
    network.reset(np.random.default_rng(8))
    changed = []
    for obs in np.random.default_rng(9).normal(0.0, 0.5, (12, spec.obs_size)):
        before = [w.copy() for w in network.weights]
        network.tick(obs)
        changed.append(any(not np.array_equal(b, w) for b, w in zip(before, network.weights, strict=True)))
    assert changed == [False, False, False, True] * 3


@pytest.mark.parametrize("period", [0, -1, 1001, 2.5, True])
def test_a_plasticity_period_out_of_range_is_refused(period):
    with pytest.raises(ValueError, match="plasticity_period must be a whole number of ticks 1-1000"):
        NetworkSpec(*SMALL, plasticity_period=period)
