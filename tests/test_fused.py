"""The fused numba kernel equals the numpy path (the tested reference) at the Ant's size."""

from __future__ import annotations

import numpy as np
import pytest

from controller.genome import Genome
from controller.network import NetworkSpec
from controller.rules import RULES

pytest.importorskip("numba")
from controller import _fused  # noqa: E402  (needs numba)

ANT = ((27, 128, 64, 8), ("tanh", "tanh", "tanh"))


def _pair(rule: str, normalise: bool, activations: tuple[str, ...] = ANT[1], period: int = 1):
    """numpy and numba networks of one genome, from the same initial weights. Coefficient scales
    keep the weights O(1), where an absolute 1e-5 is a fair float32 tolerance."""
    spec = NetworkSpec(ANT[0], activations, rule, normalise=normalise, plasticity_period=period)
    scale = 0.03 if normalise else 3e-4
    vector = np.random.default_rng(3).normal(0.0, scale, Genome.parameter_count("hebbian", spec))
    genome = Genome.from_vector("hebbian", spec, "ant", vector)
    networks = genome.build("numpy"), genome.build("numba")
    for network in networks:
        network.reset(np.random.default_rng(4))
    return networks


def _max_difference(networks, ticks: int) -> float:
    """Max abs difference of the actions (every tick) and the weights (at the end)."""
    reference, fused = networks
    worst = 0.0
    for obs in np.random.default_rng(5).normal(0.0, 0.5, (ticks, reference.spec.obs_size)):
        worst = max(worst, float(np.max(np.abs(reference.tick(obs) - fused.tick(obs)))))
    for w, w_fused in zip(reference.weights, fused.weights, strict=True):
        worst = max(worst, float(np.max(np.abs(w - w_fused))))
    return worst


@pytest.mark.parametrize("normalise", [False, True], ids=["raw", "normalised"])
@pytest.mark.parametrize("rule", list(RULES))
def test_every_rule_matches_numpy_for_200_ticks(rule, normalise):
    assert _max_difference(_pair(rule, normalise), ticks=200) <= 1e-5


@pytest.mark.parametrize("normalise", [False, True], ids=["raw", "normalised"])
@pytest.mark.parametrize("period", [2, 5])
def test_a_slower_plasticity_clock_matches_numpy(period, normalise):
    """201 ticks: the last weight change several ticks back, the sums of the next half made."""
    assert _max_difference(_pair("ABCD_lr", normalise, period=period), ticks=201) <= 1e-5


def test_a_linear_output_layer_matches_numpy():
    """CarRacing's layout: the plastic update sees the raw outputs."""
    assert _max_difference(_pair("ABCD_lr", True, ("tanh", "tanh", "linear")), ticks=200) <= 1e-5


def test_tanh_is_correctly_rounded_float32():
    x = np.concatenate(
        [
            np.linspace(-12.0, 12.0, 200_001, dtype=np.float32),
            np.geomspace(1e-38, 1e-3, 1001, dtype=np.float32),
            np.float32([0.0, 9.01, 9.02, 20.0, 3e38, np.inf]),
        ]
    )
    x = np.concatenate([x, -x])
    y = x.copy()
    _fused.tanh_inplace(y)
    np.testing.assert_array_equal(y, np.tanh(x.astype(np.float64)).astype(np.float32))
    nan = np.float32([np.nan])
    _fused.tanh_inplace(nan)
    assert np.isnan(nan[0])


@pytest.mark.parametrize(
    "scale, smallest",
    [(1.3, 1e-7), (1e30, 1e-7), (1e-30, 1e-7), (1.3, 1e-44), (1.3, 1e-20)],
    ids=["normal", "huge-peak", "tiny-peak", "subnormal-weights", "tiny-weights"],
)
def test_normalisation_rounds_exactly_as_numpy_divides(scale, smallest):
    """The kernel divides through multiply-adds where that is exact and plainly where it is not (an
    extreme peak, subnormal weights); either way every bit equals numpy's w / max|w|, -0 included."""
    rng = np.random.default_rng(7)
    magnitude = 10.0 ** rng.uniform(np.log10(smallest), 0.0, 200_000)
    w = (np.where(rng.random(200_000) < 0.5, -1.0, 1.0) * magnitude * scale).astype(np.float32)
    w[:3] = [0.0, -0.0, -scale]
    expected = w / np.max(np.abs(w))
    _fused.normalise_inplace(w)
    np.testing.assert_array_equal(w.view(np.int32), expected.view(np.int32))


def test_a_nan_weight_spreads_as_in_numpy():
    """The peak |w| taken on the float bits is NaN when a weight is, as np.max(np.abs(w)) is: neither
    backend then divides, and both carry the NaN on."""
    networks = _pair("ABCD_lr", True)
    for network in networks:
        network.weights[1][3, 5] = np.nan
    obs = np.full(27, 0.1)
    actions = [network.tick(obs) for network in networks]
    np.testing.assert_allclose(actions[0], actions[1], atol=1e-6)  # NaN where NaN
    for w, w_fused in zip(networks[0].weights, networks[1].weights, strict=True):
        np.testing.assert_allclose(w, w_fused, atol=1e-6)
    layer = networks[1].weights[1]
    assert np.isnan(layer).any() and np.nanmax(np.abs(layer)) < 1.0  # not divided: a normalised peak is 1


def test_layout_describes_every_layer():
    """Offsets into the one buffer: the weights at 0, the four term rows after them (12,160 apart),
    then the activations, then their sums and the count of ticks summed; one row per layer."""
    network = _pair("A", True, period=3)[1]
    s = 27 * 128 + 128 * 64 + 64 * 8
    acts = 5 * s
    sums = acts + 227
    assert network._layout.tolist() == [
        [27, 128, acts, acts + 27, 0, s, s, 1, 1, sums, sums + 27, 3, sums + 227],
        [
            128,
            64,
            acts + 27,
            acts + 155,
            27 * 128,
            s + 27 * 128,
            s,
            1,
            1,
            sums + 27,
            sums + 155,
            3,
            sums + 227,
        ],
        [
            *(64, 8, acts + 155, acts + 219, 27 * 128 + 128 * 64, s + 27 * 128 + 128 * 64, s, 1, 1),
            *(sums + 155, sums + 219, 3, sums + 227),
        ],
    ]
    assert network._buffer.size == sums + 228
    for part in (*network.weights, network._flat_terms, *network.activations):
        assert np.shares_memory(part, network._buffer)


def _in_input_order(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """x @ w with each output's sum rounded to float32 after every product, inputs in order: the
    one order every CPU gives (BLAS blocks and fuses its sums by the CPU it finds)."""
    y = np.zeros(w.shape[1], dtype=np.float32)
    for i in range(w.shape[0]):
        y = (y + x[i] * w[i]).astype(np.float32)
    return y


def test_a_static_network_sums_in_input_order_whatever_the_blas():
    """A static genome's figures were the CPU's: its forward pass was numpy's matmul, and OpenBLAS
    rounds by the kernel it picks (an AMD and an Intel machine differed by 0.5 m in 1000 ticks)."""
    spec = NetworkSpec(ANT[0], ANT[1], "ABCD_lr")
    rng = np.random.default_rng(6)
    vector = rng.normal(0.0, 0.2, Genome.parameter_count("static", spec))
    network = Genome.from_vector("static", spec, "ant", vector).build("numba")
    for obs in rng.normal(0.0, 1.0, (20, spec.obs_size)).astype(np.float32):
        x = obs
        for w in network.weights:
            x = np.float32([_fused._tanh(v) for v in _in_input_order(x, w)])
        np.testing.assert_array_equal(network.act(obs), x)
        np.testing.assert_array_equal(network.tick(obs), x)
