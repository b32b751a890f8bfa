"""Feed-forward networks whose weights self-organise every tick by evolved Hebbian rules.

The network knows no simulator: it maps an observation vector to an action vector and, for the
Hebbian kind, changes its own weights after every forward pass. Each lifetime starts from random
weights (:meth:`HebbianNetwork.reset`); only the per-synapse rule coefficients are inherited.

Weights are stored input-major, ``W[i, j]`` from input ``i`` to output ``j`` (the reference code's
synapse order), as float32. A network that sees pixels has a fixed convolutional front end
(:mod:`controller.conv`) before its first plastic layer.
Two in-process backends share one state layout: ``numpy`` (the tested reference) and ``numba`` (one
fused compiled call per tick: forward and update together); :data:`BACKENDS` lists every backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from controller.conv import ConvFrontEnd, frontend_for, get_frontend
from controller.rules import effective_coefficients, get_rule

ACTIVATIONS = ("tanh", "linear")
MAX_PLASTICITY_PERIOD = 1000  # ticks per weight change: 50 s at the Ant's 20 Hz


def _uniform(rng: np.random.Generator, n_in: int, n_out: int) -> np.ndarray:
    return rng.uniform(-0.1, 0.1, (n_in, n_out))


def _normal(rng: np.random.Generator, n_in: int, n_out: int) -> np.ndarray:
    return rng.normal(0.0, 0.024, (n_in, n_out))


def _zeros(rng: np.random.Generator, n_in: int, n_out: int) -> np.ndarray:
    return np.zeros((n_in, n_out))


def _xavier_uniform(rng: np.random.Generator, n_in: int, n_out: int) -> np.ndarray:
    bound = np.sqrt(6.0 / (n_in + n_out))
    return rng.uniform(-bound, bound, (n_in, n_out))


def _xavier_normal(rng: np.random.Generator, n_in: int, n_out: int) -> np.ndarray:
    return rng.normal(0.0, np.sqrt(2.0 / (n_in + n_out)), (n_in, n_out))


def _kaiming_uniform(rng: np.random.Generator, n_in: int, n_out: int) -> np.ndarray:
    bound = np.sqrt(6.0 / n_in)
    return rng.uniform(-bound, bound, (n_in, n_out))


def _kaiming_normal(rng: np.random.Generator, n_in: int, n_out: int) -> np.ndarray:
    return rng.normal(0.0, np.sqrt(2.0 / n_in), (n_in, n_out))


def _torch_default(rng: np.random.Generator, n_in: int, n_out: int) -> np.ndarray:
    """torch.nn.Linear's default: uniform(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / np.sqrt(n_in)
    return rng.uniform(-bound, bound, (n_in, n_out))


class PCG32:
    """PCG32 (pcg-random.org's pcg32_srandom_r and pcg32_random_r), the generator the C tick draws a
    robot's initial weights from (firmware_bridge/firmware/plastic/hq_pcg32.c): the same seed gives the
    same float32 weights here and on the robot. Draws are computed as a batch by jumping the LCG ahead,
    so a lifetime's 10k weights cost microseconds, not a Python loop."""

    MULTIPLIER = 6364136223846793005
    MASK = (1 << 64) - 1
    WEIGHT_SCALE = np.float32(0.1) / np.float32(1 << 23)  # exact: a power of two

    def __init__(self, seed: int, stream: int = 0) -> None:
        self.inc = ((stream << 1) | 1) & self.MASK
        self.state = 0
        self.next_uint32(1)
        self.state = (self.state + seed) & self.MASK
        self.next_uint32(1)

    def next_uint32(self, n: int) -> np.ndarray:
        """The next ``n`` outputs (uint32)."""
        # state after k steps = mult[k] * state + add[k] (mod 2^64), filled in doubling blocks
        mult, add = np.ones(n + 1, dtype=np.uint64), np.zeros(n + 1, dtype=np.uint64)
        step_mult, step_add, done = self.MULTIPLIER, self.inc, 1
        while done <= n:
            size = min(done, n + 1 - done)
            mult[done : done + size] = mult[:size] * np.uint64(step_mult)
            add[done : done + size] = add[:size] * np.uint64(step_mult) + np.uint64(step_add)
            step_add = (step_mult * step_add + step_add) & self.MASK
            step_mult = (step_mult * step_mult) & self.MASK
            done += size
        states = mult * np.uint64(self.state) + add
        self.state = int(states[-1])
        old = states[:-1]
        xorshifted = (((old >> np.uint64(18)) ^ old) >> np.uint64(27)).astype(np.uint32)
        rot = (old >> np.uint64(59)).astype(np.uint32)
        return (xorshifted >> rot) | (xorshifted << ((np.uint32(32) - rot) & np.uint32(31)))

    def uniform_weights(self, n: int) -> np.ndarray:
        """``n`` float32 weights uniform in [-0.1, 0.1): each draw's top 24 bits, centred, times
        0.1 / 2^23 (one rounding), as hq_pcg32_uniform_weight computes them."""
        centred = (self.next_uint32(n) >> np.uint32(8)).astype(np.int32) - np.int32(1 << 23)
        return centred.astype(np.float32) * self.WEIGHT_SCALE


def lifetime_seed(rng: np.random.Generator) -> int:
    """The one 64-bit seed a ``uniform_pcg32`` lifetime draws its weights from (give it to the C
    tick's hq_plastic_reset to start the robot from the same weights)."""
    return int(rng.integers(0, 1 << 64, dtype=np.uint64))


def _uniform_pcg32(rng: PCG32, n_in: int, n_out: int) -> np.ndarray:
    """uniform(-0.1, 0.1) like ``uniform``, but from the PCG32 stream a robot can draw too."""
    return rng.uniform_weights(n_in * n_out).reshape(n_in, n_out)


def _sparse(rng: np.random.Generator, n_in: int, n_out: int) -> np.ndarray:
    """Normal(0, 0.01) with 80% of each output's incoming synapses zero, as torch's sparse_."""
    w = rng.normal(0.0, 0.01, (n_in, n_out))
    w[rng.random((n_in, n_out)) < 0.8] = 0.0
    return w


INITS = {
    "uniform": _uniform,
    "normal": _normal,
    "zeros": _zeros,
    "xavier_uniform": _xavier_uniform,
    "xavier_normal": _xavier_normal,
    "kaiming_uniform": _kaiming_uniform,
    "kaiming_normal": _kaiming_normal,
    "default": _torch_default,
    "sparse": _sparse,
    "uniform_pcg32": _uniform_pcg32,  # its generator is the lifetime's PCG32, seeded from the rng
}


@dataclass(frozen=True)
class NetworkSpec:
    """What a network is, as data: layer sizes, activations, rule, initial weights, normalisation,
    and the fixed front end (``frontend``, a :data:`controller.conv.FRONTENDS` name) for pixels."""

    layer_sizes: tuple[int, ...]
    activations: tuple[str, ...]
    rule: str = "ABCD_lr"
    init: str = "uniform"
    normalise: bool = False
    frontend: str | None = None
    # ticks per weight change: 1 (the paper's) changes them every tick; K > 1 once every K ticks, by
    # the rule applied to each neuron's mean activation over those K ticks (a slower plasticity clock)
    plasticity_period: int = 1

    def __post_init__(self) -> None:
        sizes = tuple(int(n) for n in self.layer_sizes)
        object.__setattr__(self, "layer_sizes", sizes)
        object.__setattr__(self, "activations", tuple(self.activations))
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"layer_sizes needs at least two positive sizes, got {list(sizes)}")
        if len(self.activations) != len(sizes) - 1:
            raise ValueError(
                f"{len(sizes) - 1} weight layers need {len(sizes) - 1} activations, "
                f"got {len(self.activations)}"
            )
        for name in self.activations:
            if name not in ACTIVATIONS:
                raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")
        if self.init not in (*INITS, "coevolve"):
            raise ValueError(f"unknown init {self.init!r}; choose one of {', '.join(INITS)} or coevolve")
        get_rule(self.rule)
        period = self.plasticity_period
        if type(period) is not int or not 1 <= period <= MAX_PLASTICITY_PERIOD:
            raise ValueError(
                f"plasticity_period must be a whole number of ticks 1-{MAX_PLASTICITY_PERIOD}, got {period!r}"
            )
        if self.frontend is not None and get_frontend(self.frontend).output_size != sizes[0]:
            raise ValueError(
                f"front end {self.frontend} gives {get_frontend(self.frontend).output_size} features, "
                f"the first layer takes {sizes[0]}"
            )

    @property
    def layer_shapes(self) -> list[tuple[int, int]]:
        """(n_in, n_out) of each weight layer."""
        return list(zip(self.layer_sizes[:-1], self.layer_sizes[1:], strict=True))

    @property
    def synapses(self) -> int:
        return sum(a * b for a, b in self.layer_shapes)

    @property
    def obs_shape(self) -> tuple[int, ...]:
        """Shape of one observation: the front end's input, or a vector."""
        return get_frontend(self.frontend).input_shape if self.frontend else (self.layer_sizes[0],)

    @property
    def obs_size(self) -> int:
        return int(np.prod(self.obs_shape))

    @property
    def frontend_shapes(self) -> list[tuple[int, ...]]:
        """Shapes of the front end's conv kernels (none without a front end)."""
        return list(get_frontend(self.frontend).kernels) if self.frontend else []

    @property
    def action_size(self) -> int:
        return self.layer_sizes[-1]


def task_spec(
    observation_space: Any,
    action_space: Any,
    hidden: Sequence[int],
    *,
    activation: str = "tanh",
    rule: str = "ABCD_lr",
    init: str = "uniform",
    normalise: bool = False,
    plasticity_period: int = 1,
) -> NetworkSpec:
    """The network for a task's (gymnasium Box) spaces: the front end that takes its observation
    (the paper's CNN for 3x84x84 pixels), the hidden layers, and an output squashed by
    ``activation`` into a bounded action space, or linear for an unbounded one: such a task squashes
    the raw outputs itself (CarRacing), and the plastic update sees them raw, as in the paper."""
    frontend = frontend_for(observation_space.shape)
    first = get_frontend(frontend).output_size if frontend else observation_space.shape[0]
    sizes = (first, *hidden, action_space.shape[0])
    raw = not np.all(np.isfinite(action_space.high))
    activations = (activation,) * (len(sizes) - 2) + ("linear" if raw else activation,)
    return NetworkSpec(sizes, activations, rule, init, normalise, frontend, plasticity_period)


# The backend registry: every name a network's ``backend`` takes, and what it runs. numba is a core
# dependency, so "auto" is numba on every install and a command prints the same figures everywhere.
BACKENDS = {
    "numba": "one fused compiled call per tick (controller/_fused.py)",
    "numpy": "the tested reference",
    "onnx": "the exported tick graph under ONNX Runtime (controller/onnx_backend.py; the onnx extra)",
}
AUTO_BACKEND = "numba"


def resolve_backend(backend: str) -> str:
    """The registry's name for ``backend`` ("auto" -> numba); an unknown name is a ValueError."""
    name = AUTO_BACKEND if backend == "auto" else backend
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose auto, {', '.join(BACKENDS)}")
    return name


class FeedForward:
    """Forward pass shared by the static and the Hebbian network.

    Every layer's input and output of the last forward pass stays in ``activations`` (float32,
    preallocated): the Hebbian update needs exactly these pre- and post-synaptic values.
    """

    TERMS = 0  # floats per synapse a subclass keeps in the buffer beside the weights
    SUMS = False  # whether a subclass keeps each neuron's activation sum and a tick count after them

    def __init__(
        self, spec: NetworkSpec, backend: str = "auto", frontend_kernels: Sequence[np.ndarray] = ()
    ) -> None:
        self.spec = spec
        self.backend = resolve_backend(backend)
        if self.backend == "onnx":  # its graph is the genome's export: Genome.build("onnx") makes it
            raise ValueError("the onnx backend runs a genome's exported graph; build it with Genome.build")
        self.frontend = ConvFrontEnd(get_frontend(spec.frontend), frontend_kernels) if spec.frontend else None
        sizes = spec.layer_sizes
        offsets = np.concatenate([[0], np.cumsum([a * b for a, b in spec.layer_shapes])])
        synapses = int(offsets[-1])
        # One float32 buffer: the weights, then TERMS floats per synapse, then the activations, then
        # (SUMS) each neuron's activation summed since the last weight change and the ticks summed.
        act_offsets = np.concatenate([[0], np.cumsum(sizes)]) + (1 + self.TERMS) * synapses
        sums_at = int(act_offsets[-1])
        self._buffer = np.zeros(sums_at + (sum(sizes) + 1 if self.SUMS else 0), dtype=np.float32)
        self._sums = self._buffer[sums_at:]  # (SUMS) the sums, then the count
        self._flat_weights = self._buffer[:synapses]
        self._flat_terms = self._buffer[synapses : act_offsets[0]].reshape(self.TERMS, synapses)
        self._flat_activations = self._buffer[act_offsets[0] : act_offsets[-1]]
        self.weights = [
            self._flat_weights[offsets[k] : offsets[k + 1]].reshape(shape)
            for k, shape in enumerate(spec.layer_shapes)
        ]
        self.activations = [self._buffer[act_offsets[k] : act_offsets[k + 1]] for k in range(len(sizes))]
        self._tanh = [name == "tanh" for name in spec.activations]
        self._weight_offsets = offsets.astype(np.int64)
        self._activation_offsets = act_offsets.astype(np.int64)
        self._sizes = np.asarray(sizes, dtype=np.int64)
        self._tanh_mask = np.asarray(self._tanh, dtype=np.bool_)
        if self.backend == "numba":
            from controller import _fused

            self._forward_kernel = _fused.forward
            self._tick_kernel = _fused.tick
            self._obs_shape = (spec.layer_sizes[0],)
            self._action = self.activations[-1]
            self._layout = _fused.layout(
                self._sizes,
                self._activation_offsets,
                self._weight_offsets,
                synapses,
                self._tanh_mask,
                spec.normalise,
                sums_at,
                spec.plasticity_period,
            )

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        for w, new in zip(self.weights, weights, strict=True):
            if new.shape != w.shape:
                raise ValueError(f"weight shape {new.shape} does not match layer shape {w.shape}")
            w[...] = new

    def _load_obs(self, obs: np.ndarray) -> None:
        obs = np.asarray(obs)
        if obs.shape != self.spec.obs_shape:
            raise ValueError(f"observation has shape {obs.shape}, the network expects {self.spec.obs_shape}")
        self.activations[0][...] = obs if self.frontend is None else self.frontend(obs)

    def _kernel_obs(self, obs: np.ndarray) -> np.ndarray:
        """What the compiled kernel loads: ``obs`` itself when it is the layer input's shape, else the
        front end's output (or a shape error) already loaded onto the buffer."""
        if type(obs) is not np.ndarray or obs.shape != self._obs_shape or self.frontend is not None:
            self._load_obs(obs)
            return self.activations[0]
        return obs

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Forward pass: the action for this observation (a fresh float32 array)."""
        if self.backend == "numba":
            self._forward_kernel(self._kernel_obs(obs), self._buffer, self._layout)
            return self._action.copy()
        self._load_obs(obs)
        for k, w in enumerate(self.weights):
            out = self.activations[k + 1]
            np.matmul(self.activations[k], w, out=out)
            if self._tanh[k]:
                np.tanh(out, out=out)
        return self.activations[-1].copy()

    def update(self) -> None:
        """No plasticity by default."""

    def tick(self, obs: np.ndarray) -> np.ndarray:
        """One control tick: forward pass, then the plasticity update."""
        action = self.act(obs)
        self.update()
        return action

    def reset(self, rng: np.random.Generator) -> None:
        """Start a lifetime. Static weights are inherited: nothing to draw."""
        self._flat_activations[:] = 0.0


class StaticNetwork(FeedForward):
    """The baseline: evolved weights, fixed for life (no plasticity)."""

    def __init__(
        self,
        spec: NetworkSpec,
        weights: Sequence[np.ndarray],
        backend: str = "auto",
        frontend_kernels: Sequence[np.ndarray] = (),
    ):
        super().__init__(spec, backend, frontend_kernels)
        self.set_weights(weights)


class HebbianNetwork(FeedForward):
    """Random initial weights every lifetime, changed every tick by per-synapse Hebbian rules."""

    TERMS = 4  # the effective A, B, C, D of every synapse (lr folded in), for the fused kernel
    SUMS = True  # the slower plasticity clock's activation sums (spec.plasticity_period > 1)

    def __init__(
        self,
        spec: NetworkSpec,
        coefficients: Sequence[np.ndarray],
        backend: str = "auto",
        initial_weights: Sequence[np.ndarray] | None = None,
        frontend_kernels: Sequence[np.ndarray] = (),
    ) -> None:
        super().__init__(spec, backend, frontend_kernels)
        rule = get_rule(spec.rule)
        if len(coefficients) != len(self.weights):
            raise ValueError(f"{len(self.weights)} layers need {len(self.weights)} coefficient arrays")
        # The kernel reads the terms as (4, all synapses), one row per term; the numpy path as per-layer
        # (4, n_in, n_out) views of the same rows.
        self._terms = []
        for k, ((n_in, n_out), c) in enumerate(zip(spec.layer_shapes, coefficients, strict=True)):
            if c.shape != (n_in, n_out, rule.size):
                raise ValueError(
                    f"coefficient array has shape {c.shape}, expected {(n_in, n_out, rule.size)}"
                )
            terms = self._flat_terms[:, self._weight_offsets[k] : self._weight_offsets[k + 1]]
            terms = terms.reshape(4, n_in, n_out)  # a view: each term's row is contiguous
            folded, self.present = effective_coefficients(rule, c)
            terms[...] = folded
            self._terms.append(terms)
        neurons = np.concatenate([[0], np.cumsum(spec.layer_sizes)])
        self._means = [self._sums[neurons[k] : neurons[k + 1]] for k in range(len(spec.layer_sizes))]
        self._count = self._sums[-1:]
        self._scratch = [np.empty(shape, dtype=np.float32) for shape in spec.layer_shapes]
        self._dw = [np.empty(shape, dtype=np.float32) for shape in spec.layer_shapes]
        self._initial_weights = (
            None if initial_weights is None else [np.asarray(w, dtype=np.float32) for w in initial_weights]
        )

    def reset(self, rng: np.random.Generator) -> None:
        """Fresh random weights (or the co-evolved initial weights) for a new lifetime."""
        super().reset(rng)
        self._sums[:] = 0.0
        if self._initial_weights is not None:
            self.set_weights(self._initial_weights)
        elif self.spec.init == "coevolve":
            raise ValueError("init 'coevolve' needs the genome's evolved initial weights")
        else:
            init = INITS[self.spec.init]
            source = PCG32(lifetime_seed(rng)) if self.spec.init == "uniform_pcg32" else rng
            self.set_weights([init(source, n_in, n_out) for n_in, n_out in self.spec.layer_shapes])

    def update(self) -> None:
        """Apply every synapse's rule to the last forward pass, one whole dW per layer; with a
        plasticity period of K ticks, once every K ticks to the mean activations since the last.

        dW is computed in full and added once, so W rounds once per change whatever the rule.
        """
        activations = self.activations
        if self.spec.plasticity_period > 1:
            self._sums[:-1] += self._flat_activations
            self._count += 1
            if self._count[0] < self.spec.plasticity_period:
                return
            self._sums /= np.float32(self.spec.plasticity_period)  # the count becomes 1: zeroed below
            activations = self._means
        _, b_on, c_on, d_on = self.present
        for k, w in enumerate(self.weights):
            pre = activations[k][:, None]
            post = activations[k + 1][None, :]
            terms, dw, tmp = self._terms[k], self._dw[k], self._scratch[k]
            np.multiply(pre, post, out=dw)
            dw *= terms[0]
            if b_on:
                np.multiply(terms[1], pre, out=tmp)
                dw += tmp
            if c_on:
                np.multiply(terms[2], post, out=tmp)
                dw += tmp
            if d_on:
                dw += terms[3]
            w += dw
            if self.spec.normalise:
                peak = np.max(np.abs(w))
                if peak > 0:
                    w /= peak
        if self.spec.plasticity_period > 1:
            self._sums[:] = 0.0

    def tick(self, obs: np.ndarray) -> np.ndarray:
        if self.backend == "numpy":
            return super().tick(obs)
        self._tick_kernel(self._kernel_obs(obs), self._buffer, self._layout)
        return self._action.copy()
