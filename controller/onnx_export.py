"""Export one whole control tick of a genome's network as an ONNX graph.

Robot computers often run ONNX Runtime rather than Python numerics. A plastic network is stateful,
so the graph is a pure function of its state: inputs ``observation`` and ``W1``..``Wn`` (each
(n_in, n_out), input-major), outputs ``action`` and ``W1_next``..``Wn_next``; the caller feeds each
tick's ``Wk_next`` back as the next tick's ``Wk``. Inside: the forward pass, then the plasticity
update, operation for operation as the numpy backend computes them (so the two agree to float32
rounding). The rule's coefficients are initializers, folded into effective A, B, C, D once, exactly as
the numpy backend folds them; terms the rule lacks are left out. With normalisation, each layer's
new weights are divided by their max |w| (when it is positive). A static genome exports its forward
pass only (input ``observation``, output ``action``, weights as initializers). A genome with
co-evolved initial weights carries them as the default values (initializers) of ``W1``..``Wn``.
A genome with a plasticity period of K > 1 ticks adds the state ``activity_sums`` (every neuron's
activation summed since the last weight change, layer by layer) and ``ticks_summed`` (shape (1,))
as inputs, and their ``_next`` values as outputs, fed back the same way; both start at zero. A conv
front end (pixels) becomes Conv -> Tanh -> MaxPool stages ahead of the first layer. docs/deploy.md has the
contract and a consumer.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from controller.errors import UserError
from controller.files import atomic_write, code_version
from controller.network import FeedForward, NetworkSpec
from controller.rules import effective_coefficients, get_rule

if TYPE_CHECKING:
    import onnx

DEFAULT_OPSET = 17
MIN_OPSET = 13  # Unsqueeze takes its axes as an input from opset 13 on; every op used here exists there
OBSERVATION = "observation"
ACTION = "action"
SUMS = "activity_sums"  # a slower plasticity clock's state: each neuron's activation summed, layer order
TICKS = "ticks_summed"  # and how many ticks those sums hold, shape (1,)


class TickGenome(Protocol):
    """What the exporter reads of a :class:`controller.genome.Genome`; a protocol, not an import, because
    the genome builds its onnx backend from this graph (an import would make a cycle)."""

    kind: str
    task: str
    spec: NetworkSpec
    coefficients: list[np.ndarray]
    weights: list[np.ndarray]
    frontend: list[np.ndarray]
    provenance: dict[str, Any]

    @property
    def coevolved(self) -> bool: ...

    def build(self, backend: str = "auto") -> FeedForward: ...


def weight_input(layer: int) -> str:
    """Graph input of weight layer ``layer`` (counted from 1)."""
    return f"W{layer}"


def weight_output(layer: int) -> str:
    """Graph output with weight layer ``layer``'s weights after this tick's update."""
    return f"W{layer}_next"


def _onnx() -> ModuleType:
    """The onnx package, imported only to export (its constants above need no onnx)."""
    try:
        import onnx
        import onnx.numpy_helper
    except ImportError:
        raise UserError("ONNX export needs the onnx package: pip install 'hebbian-quadruped[onnx]'") from None
    return onnx


class _Graph:
    """Nodes and initializers under fresh names: the bookkeeping the helper API leaves to us."""

    def __init__(self) -> None:
        self.onnx = _onnx()
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def constant(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(self.onnx.numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, *inputs: str, output: str | None = None, **attributes: object) -> str:
        name = f"{op_type}_{len(self.nodes)}"
        output = output or name
        self.nodes.append(
            self.onnx.helper.make_node(op_type, list(inputs), [output], name=name, **attributes)
        )
        return output

    def tensor(self, name: str, shape: tuple[int, ...]) -> onnx.ValueInfoProto:
        """A float32 graph input or output."""
        return self.onnx.helper.make_tensor_value_info(name, self.onnx.TensorProto.FLOAT, list(shape))


def _front_end(graph: _Graph, genome: TickGenome) -> str:
    """The fixed conv front end on one (channels, height, width) image, flattened channel-major."""
    from controller.conv import get_frontend

    spec = get_frontend(genome.spec.frontend)
    axis0 = graph.constant("axis_0", np.array([0], dtype=np.int64))
    x = graph.op("Unsqueeze", OBSERVATION, axis0)  # a batch of one, as Conv wants
    for k, (kernel, stride) in enumerate(zip(genome.frontend, spec.strides, strict=True), start=1):
        weights = graph.constant(f"frontend{k}", kernel.astype(np.float32))
        x = graph.op("Conv", x, weights, strides=[stride, stride])
        x = graph.op("Tanh", x)
        x = graph.op("MaxPool", x, kernel_shape=[2, 2], strides=[2, 2])
    return graph.op("Reshape", x, graph.constant("flat", np.array([-1], dtype=np.int64)))


def _plasticity(
    graph: _Graph,
    layer: int,
    x: str,
    y: str,
    terms: np.ndarray,
    present: tuple[bool, ...],
    normalise: bool,
    output: str | None,
) -> str:
    """Wk's update from Wk and the pre (x) and post (y) activations, in the numpy backend's order:
    dW = (pre*post)*A [+ B*pre] [+ C*post] [+ D]; W + dW; then / max|W| if normalising."""
    pre = graph.op("Unsqueeze", x, graph.constant(f"layer{layer}.column", np.array([1], dtype=np.int64)))
    post = graph.op("Unsqueeze", y, graph.constant(f"layer{layer}.row", np.array([0], dtype=np.int64)))
    term = {
        name: graph.constant(f"layer{layer}.{name}", terms[t]) for t, name in enumerate("ABCD") if present[t]
    }
    dw = graph.op("Mul", graph.op("Mul", pre, post), term["A"])
    if "B" in term:
        dw = graph.op("Add", dw, graph.op("Mul", term["B"], pre))
    if "C" in term:
        dw = graph.op("Add", dw, graph.op("Mul", term["C"], post))
    if "D" in term:
        dw = graph.op("Add", dw, term["D"])
    if not normalise:
        return graph.op("Add", weight_input(layer), dw, output=output)
    w = graph.op("Add", weight_input(layer), dw)
    peak = graph.op("ReduceMax", graph.op("Abs", w), keepdims=0)
    positive = graph.op("Greater", peak, graph.constant(f"layer{layer}.zero", np.float32(0.0)))
    return graph.op("Where", positive, graph.op("Div", w, peak), w, output=output)


def _plastic_layers(
    graph: _Graph, genome: TickGenome, activity: list[str], inputs: list, outputs: list
) -> None:
    """Every layer's Wk_next. With a plasticity period of K > 1 ticks the graph also carries each
    neuron's activation sum and the count of ticks summed: every K-th tick the rule runs on the
    means (the sums / K) and both are zeroed; on the others the weights pass through unchanged."""
    spec = genome.spec
    rule = get_rule(spec.rule)
    period = spec.plasticity_period
    pre_post = list(zip(activity, activity[1:], strict=False))
    if period > 1:
        neurons = sum(spec.layer_sizes)
        inputs += [graph.tensor(SUMS, (neurons,)), graph.tensor(TICKS, (1,))]
        outputs += [graph.tensor(f"{SUMS}_next", (neurons,)), graph.tensor(f"{TICKS}_next", (1,))]
        sums = graph.op("Add", SUMS, graph.op("Concat", *activity, axis=0))
        ticks = graph.op("Add", TICKS, graph.constant("one_tick", np.float32([1.0])))
        change = graph.op("GreaterOrEqual", ticks, graph.constant("period", np.float32([period])))
        means = graph.op("Div", sums, "period")
        edges = np.concatenate([[0], np.cumsum(spec.layer_sizes)])
        parts = [
            graph.op(
                "Slice",
                means,
                graph.constant(f"neurons{k}.start", np.int64([edges[k]])),
                graph.constant(f"neurons{k}.end", np.int64([edges[k + 1]])),
            )
            for k in range(len(spec.layer_sizes))
        ]
        pre_post = list(zip(parts, parts[1:], strict=False))
        zeros = graph.constant("no_sums", np.zeros(neurons, np.float32))
        graph.op("Where", change, zeros, sums, output=f"{SUMS}_next")
        graph.op(
            "Where", change, graph.constant("no_ticks", np.float32([0.0])), ticks, output=f"{TICKS}_next"
        )
    for layer, (x, y) in enumerate(pre_post, start=1):
        terms, present = effective_coefficients(rule, genome.coefficients[layer - 1])
        if period == 1:
            _plasticity(graph, layer, x, y, terms, present, spec.normalise, weight_output(layer))
        else:
            changed = _plasticity(graph, layer, x, y, terms, present, spec.normalise, None)
            graph.op("Where", change, changed, weight_input(layer), output=weight_output(layer))


def build_model(
    genome: TickGenome, opset: int = DEFAULT_OPSET, initial_weights: bool = True
) -> onnx.ModelProto:
    """The tick graph of ``genome``, checked with ``onnx.checker`` (full check).

    ``initial_weights``: carry a co-evolved genome's initial weights as the default values of the
    weight inputs (ONNX Runtime warns that such inputs are not constants: a runner that takes the
    initial weights from the genome itself leaves them out).
    """
    graph = _Graph()
    onnx, helper = graph.onnx, graph.onnx.helper
    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise UserError(f"opset {opset} is not supported: choose {MIN_OPSET} to {newest}")
    spec = genome.spec
    plastic = genome.kind == "hebbian"
    inputs = [graph.tensor(OBSERVATION, spec.obs_shape)]
    outputs = [graph.tensor(ACTION, (spec.action_size,))]
    x = _front_end(graph, genome) if spec.frontend else OBSERVATION
    activity = [x]
    for layer, (shape, activation) in enumerate(
        zip(spec.layer_shapes, spec.activations, strict=True), start=1
    ):
        if plastic:
            weights = weight_input(layer)
            inputs.append(graph.tensor(weights, shape))
            outputs.append(graph.tensor(weight_output(layer), shape))
            if initial_weights and genome.coevolved:
                graph.constant(weights, genome.weights[layer - 1].astype(np.float32))
        else:
            weights = graph.constant(weight_input(layer), genome.weights[layer - 1].astype(np.float32))
        y = graph.op("MatMul", x, weights)
        if activation == "tanh":
            y = graph.op("Tanh", y)
        activity.append(y)
        x = y
    graph.op("Identity", x, output=ACTION)
    if plastic:
        _plastic_layers(graph, genome, activity, inputs, outputs)
    kind = f"Hebbian ({spec.rule})" if plastic else "static"
    model = helper.make_model(
        helper.make_graph(
            graph.nodes,
            "hebbian_tick" if plastic else "static_forward",
            inputs,
            outputs,
            graph.initializers,
            doc_string=f"One control tick of a {kind} network {'->'.join(map(str, spec.layer_sizes))}; "
            "feed Wk_next back as the next tick's Wk.",
        ),
        opset_imports=[helper.make_opsetid("", opset)],
        producer_name="hebbian-quadruped",
        producer_version=code_version(),
    )
    model.ir_version = helper.find_min_ir_version_for(list(model.opset_import))  # loadable by older runtimes
    helper.set_model_props(model, _metadata(genome))
    onnx.checker.check_model(model, full_check=True)
    return model


def _metadata(genome: TickGenome) -> dict[str, str]:
    """What a consumer needs to know beyond the graph: the genome's spec, task and provenance."""
    spec = genome.spec
    return {
        "kind": genome.kind,
        "rule": spec.rule if genome.kind == "hebbian" else "",
        "layer_sizes": json.dumps(list(spec.layer_sizes)),
        "activations": json.dumps(list(spec.activations)),
        "init": spec.init,
        "normalise": json.dumps(spec.normalise),
        "plasticity_period": str(spec.plasticity_period),
        "frontend": spec.frontend or "",
        "task": genome.task,
        "provenance": json.dumps(genome.provenance, default=str),
    }


def export_onnx(genome: TickGenome, path: str | os.PathLike, opset: int = DEFAULT_OPSET) -> Path:
    """Write the tick graph to ``path`` atomically; returns the path."""
    return atomic_write(path, build_model(genome, opset).SerializeToString())
