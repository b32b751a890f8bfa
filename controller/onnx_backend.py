"""The ``onnx`` backend: a genome's exported tick graph run by ONNX Runtime, as a network.

It runs the graph ``controller export`` writes (less a co-evolved genome's default initial weights:
they come from the genome), so what is tested here is what a robot computer runs. Nothing is copied
per tick but the observation in and the action out: every input and output is bound once (IO
binding) to a preallocated array, and the weights live in two buffers per layer that take turns as
the tick's input and output; committing an update just swaps their roles.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType

import numpy as np

from controller.errors import UserError
from controller.network import FeedForward
from controller.onnx_export import (
    ACTION,
    OBSERVATION,
    SUMS,
    TICKS,
    TickGenome,
    build_model,
    weight_input,
    weight_output,
)


def _onnxruntime() -> ModuleType:
    try:
        import onnxruntime
    except ImportError:
        raise UserError("backend 'onnx' needs onnxruntime: pip install 'hebbian-quadruped[onnx]'") from None
    return onnxruntime


class OnnxNetwork(FeedForward):
    """A network whose ticks run in ONNX Runtime, with the interface of the numpy/numba networks.

    ``act(obs)`` runs the whole tick graph and keeps its new weights aside; ``update()`` commits them,
    so act without update leaves the weights as they were, as in the other backends. Each lifetime's
    initial weights come from the genome's numpy network, so for the same ``rng`` every backend
    starts from the same weights.
    """

    def __init__(self, genome: TickGenome, threads: int = 1) -> None:
        super().__init__(genome.spec, "numpy", genome.frontend)  # state buffers; the compute is ONNX's
        ort = _onnxruntime()
        self.backend = "onnx"
        self._reference = genome.build("numpy")
        self._plastic = genome.kind == "hebbian"
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # a tick is microseconds of work: threads cost more
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            build_model(genome, initial_weights=False).SerializeToString(),
            options,
            providers=["CPUExecutionProvider"],
        )
        self._obs = np.zeros(genome.spec.obs_shape, dtype=np.float32)
        self._action = np.zeros(genome.spec.action_size, dtype=np.float32)
        if self._plastic:
            self._buffers = [self.weights, [np.zeros_like(w) for w in self.weights]]
            # a slower plasticity clock's state, in two sets that take turns as the weights do
            self._sums = [np.zeros(sum(genome.spec.layer_sizes), np.float32) for _ in range(2)]
            self._ticks = [np.zeros(1, np.float32) for _ in range(2)]
        else:
            self.set_weights(self._reference.weights)
        self._bindings = [self._bind(ort, turn) for turn in ((0, 1) if self._plastic else (0,))]
        self._turn = 0
        self._staged = False

    def _bind(self, ort: ModuleType, turn: int) -> object:
        """An IO binding reading weight buffer set ``turn`` and writing the other one."""
        binding = self._session.io_binding()
        binding.bind_ortvalue_input(OBSERVATION, ort.OrtValue.ortvalue_from_numpy(self._obs))
        binding.bind_ortvalue_output(ACTION, ort.OrtValue.ortvalue_from_numpy(self._action))
        if self._plastic:
            sources, targets = self._buffers[turn], self._buffers[1 - turn]
            for layer, (w, w_next) in enumerate(zip(sources, targets, strict=True), start=1):
                binding.bind_ortvalue_input(weight_input(layer), ort.OrtValue.ortvalue_from_numpy(w))
                binding.bind_ortvalue_output(weight_output(layer), ort.OrtValue.ortvalue_from_numpy(w_next))
            if self.spec.plasticity_period > 1:
                for name, state in ((SUMS, self._sums), (TICKS, self._ticks)):
                    binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(state[turn]))
                    binding.bind_ortvalue_output(
                        f"{name}_next", ort.OrtValue.ortvalue_from_numpy(state[1 - turn])
                    )
        return binding

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        super().set_weights(weights)
        self._staged = False

    def reset(self, rng: np.random.Generator) -> None:
        """Fresh initial weights for a new lifetime, drawn as the numpy network draws them."""
        self._reference.reset(rng)
        self._obs[...] = 0.0
        if self._plastic:
            self.set_weights(self._reference.weights)
            for state in (*self._sums, *self._ticks):
                state[...] = 0.0

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Run the tick graph: the action now, the weights' update kept for :meth:`update`."""
        obs = np.asarray(obs)
        if obs.shape != self.spec.obs_shape:
            raise ValueError(f"observation has shape {obs.shape}, the network expects {self.spec.obs_shape}")
        self._obs[...] = obs
        self._session.run_with_iobinding(self._bindings[self._turn])
        self._staged = self._plastic
        return self._action.copy()

    def update(self) -> None:
        """Commit the update computed by the last :meth:`act` (static networks have none)."""
        if not self._plastic:
            return
        if not self._staged:
            raise RuntimeError(
                "update() needs an act() first: the graph computes a tick's update from its forward pass"
            )
        self._turn = 1 - self._turn
        self.weights = self._buffers[self._turn]
        self._staged = False
