"""The exported tick graph under ONNX Runtime equals the numpy network; the onnx backend behaves as
the other backends do; ``controller export`` writes a valid graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from controller.cli import main
from controller.errors import UserError
from controller.genome import Genome, load_genome, save_genome
from controller.network import NetworkSpec
from controller.rules import RULES

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from controller.onnx_export import MIN_OPSET, build_model, export_onnx  # noqa: E402

ANT = (27, 128, 64, 8)


def _genome(rule: str = "ABCD_lr", normalise: bool = True, kind: str = "hebbian", **spec) -> Genome:
    """An Ant-sized genome whose weights stay O(1) for 1000 ticks (normalised, or a small drift per
    tick), where an absolute 1e-5 is a fair float32 tolerance."""
    spec = NetworkSpec(ANT, ("tanh",) * 3, rule, normalise=normalise, **spec)
    scale = {"static": 0.3, "hebbian": 0.03 if normalise else 3e-4}[kind]
    vector = np.random.default_rng(11).normal(0.0, scale, Genome.parameter_count(kind, spec))
    return Genome.from_vector(kind, spec, "ant", vector)


def _observations(ticks: int, shape: tuple[int, ...] = (27,)) -> np.ndarray:
    return np.random.default_rng(12).normal(0.0, 0.5, (ticks, *shape))


def _run_exported(path, genome: Genome, ticks: int) -> float:
    """Drive the exported file as a consumer would (plain session.run, weights fed back) beside the
    numpy network from the same initial weights; max abs difference of actions and weights."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    reference = genome.build("numpy")
    reference.reset(np.random.default_rng(13))
    weights = [w.copy() for w in reference.weights]
    names = [f"W{k}" for k in range(1, len(weights) + 1)]
    plastic = genome.kind == "hebbian"
    worst = 0.0
    for obs in _observations(ticks, genome.spec.obs_shape):
        feed = dict(zip(names, weights, strict=True)) if plastic else {}
        action, *new = session.run(None, {"observation": obs.astype(np.float32), **feed})
        worst = max(worst, float(np.max(np.abs(action - reference.tick(obs)))))
        weights = new if plastic else weights
    for w, w_ref in zip(weights, reference.weights, strict=True):
        worst = max(worst, float(np.max(np.abs(w - w_ref))))
    return worst


@pytest.mark.parametrize("normalise", [False, True], ids=["raw", "normalised"])
@pytest.mark.parametrize("rule", list(RULES))
def test_every_rule_runs_1000_ticks_as_the_numpy_network(tmp_path, rule, normalise):
    genome = _genome(rule, normalise)
    assert _run_exported(export_onnx(genome, tmp_path / "tick.onnx"), genome, 1000) <= 1e-5


def test_static_network_runs_1000_ticks_as_the_numpy_network(tmp_path):
    genome = _genome(kind="static")
    path = export_onnx(genome, tmp_path / "static.onnx")
    assert [i.name for i in onnx.load(path).graph.input] == ["observation"]
    assert _run_exported(path, genome, 1000) <= 1e-5


def test_conv_front_end_runs_as_the_numpy_network(tmp_path):
    genome = load_genome("carracing")
    assert genome.spec.frontend and genome.spec.activations[-1] == "linear"
    assert _run_exported(export_onnx(genome, tmp_path / "car.onnx"), genome, 10) <= 1e-5


def test_graph_contract(tmp_path):
    """Names, shapes, opset and metadata as docs/deploy.md states them; the full checker passes."""
    path = export_onnx(_genome("ABC", True), tmp_path / "tick.onnx")
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)

    def shapes(values):
        return {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in values}

    layers = {"W1": [27, 128], "W2": [128, 64], "W3": [64, 8]}
    assert shapes(model.graph.input) == {"observation": [27], **layers}
    assert shapes(model.graph.output) == {"action": [8], **{f"{k}_next": v for k, v in layers.items()}}
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["rule"] == "ABC" and meta["normalise"] == "true" and meta["layer_sizes"] == "[27, 128, 64, 8]"
    initializers = {t.name for t in model.graph.initializer}
    assert {"layer1.A", "layer1.B", "layer1.C"} <= initializers and "layer1.D" not in initializers


def test_co_evolved_initial_weights_are_the_inputs_defaults():
    genome = _genome(init="coevolve")
    model = build_model(genome)
    defaults = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    for k, w in enumerate(genome.weights, start=1):
        np.testing.assert_array_equal(defaults[f"W{k}"], w)


def test_opsets(tmp_path):
    genome = _genome("AD")
    assert _run_exported(export_onnx(genome, tmp_path / "old.onnx", opset=MIN_OPSET), genome, 5) <= 1e-5
    with pytest.raises(UserError, match="opset 12"):
        build_model(genome, opset=12)


@pytest.fixture
def twins():
    """The onnx backend and the numpy network of one genome, from the same initial weights."""
    genome = _genome("ABCD_lr_D_in_and_out", True)
    networks = genome.build("numpy"), genome.build("onnx")
    for network in networks:
        network.reset(np.random.default_rng(14))
    return networks


def test_backend_ticks_as_numpy_without_copying_weights(twins):
    reference, network = twins
    assert network.backend == "onnx"
    arrays = set()
    for obs in _observations(300):
        np.testing.assert_allclose(network.tick(obs), reference.tick(obs), rtol=0, atol=1e-5)
        arrays |= {id(w) for w in network.weights}
    assert len(arrays) == 2 * len(network.weights)  # two buffers per layer, taking turns
    for w, w_ref in zip(network.weights, reference.weights, strict=True):
        np.testing.assert_allclose(w, w_ref, rtol=0, atol=1e-5)


def test_act_without_update_leaves_the_weights(twins):
    _, network = twins
    before = [w.copy() for w in network.weights]
    obs = _observations(1)[0]
    first = network.act(obs)
    np.testing.assert_array_equal(network.act(obs), first)
    for w, w0 in zip(network.weights, before, strict=True):
        np.testing.assert_array_equal(w, w0)
    network.update()
    assert any(not np.array_equal(w, w0) for w, w0 in zip(network.weights, before, strict=True))
    with pytest.raises(RuntimeError, match="act"):
        network.update()


def test_reset_draws_the_numpy_networks_weights():
    genome = _genome()
    networks = genome.build("numpy"), genome.build("onnx")
    for network in networks:
        network.tick(_observations(1)[0])
        network.reset(np.random.default_rng(15))
    for w, w_onnx in zip(networks[0].weights, networks[1].weights, strict=True):
        np.testing.assert_array_equal(w, w_onnx)


def test_cli_export(tmp_path, capsys):
    genome_path = save_genome(_genome(), tmp_path / "genome.npz")
    out = tmp_path / "tick.onnx"
    assert main(["export", str(genome_path), "-o", str(out)]) == 0
    assert (
        "inputs observation, W1, W2, W3; outputs action, W1_next, W2_next, W3_next" in capsys.readouterr().out
    )
    onnx.checker.check_model(onnx.load(out), full_check=True)
    assert main(["export", str(genome_path), "-o", str(out), "--opset", "3"]) == 2
    assert "error: opset 3 is not supported" in capsys.readouterr().err


def test_the_consumer_in_docs_deploy_runs(tmp_path, monkeypatch):
    text = (Path(__file__).resolve().parents[1] / "docs" / "deploy.md").read_text()
    code = text.split("```python\n")[1].split("```")[0]
    monkeypatch.chdir(tmp_path)
    export_onnx(_genome(), "tick.onnx")
    sent: list[np.ndarray] = []
    exec(code, {"read_observation": lambda: np.zeros(27), "send": sent.append})
    assert len(sent) == 1000 and all(a.shape == (8,) and np.all(np.abs(a) <= 1) for a in sent)
