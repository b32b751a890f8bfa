"""Import coefficient files saved by the paper's reference code (``torch.save``) as genomes.

The reference layout: one float32 array of shape (synapses, coefficients per synapse), the rows of
each layer in input-major order (the synapse from input i to output j of a layer is row
``offset + i * n_out + j``) and the layers in order; the columns are the rule's coefficients in the
reference code's order (ABCD_lr: A, B, C, eta, D). That is exactly this project's per-layer
(n_in, n_out, k) arrays flattened, so a quadruped file imports by splitting and reshaping.

CarRacing also needs the evolved conv kernels (the reference's CNN parameters: conv1 (6, 3, 3, 3)
then conv2 (8, 6, 5, 5), flattened). The reference fed frames as ``np.swapaxes(frame, 0, 2)``,
(channels, width, height), while :mod:`sim.carracing` gives (channels, height, width): the
import transposes each kernel's two spatial axes and reorders the first plastic layer's inputs
(the 8x9x9 feature map read transposed), so the imported genome computes exactly what the reference
network computed on its transposed frames.

Files are read with ``torch.load(weights_only=True)`` (no code runs); anything but one plain
floating-point tensor or numpy array is refused.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from controller.conv import get_frontend
from controller.errors import UserError
from controller.genome import Genome
from controller.network import NetworkSpec, task_spec
from controller.rules import get_rule

HIDDEN = (128, 64)
NOT_NORMALISED = ("ant-bullet",)  # the reference code normalised the weights of every non-Bullet task

_multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray


def _numpy_array_globals() -> list:
    """What unpickling a float numpy array needs, under numpy 2's and numpy 1's module names."""
    reconstruct = _multiarray._reconstruct
    float_dtypes = [np.dtype(t).__class__ for t in (np.float16, np.float32, np.float64)]
    return [
        (reconstruct, "numpy._core.multiarray._reconstruct"),
        (reconstruct, "numpy.core.multiarray._reconstruct"),
        np.ndarray,
        np.dtype,
        *float_dtypes,
    ]


def load_array(path: str | os.PathLike, what: str = "coefficient file") -> np.ndarray:
    """One floating-point array from a ``torch.save`` file, or a :class:`UserError` saying why not."""
    try:
        import torch
    except ImportError:
        raise UserError(
            "reading torch.save files needs torch: pip install 'hebbian-quadruped[torch]'"
        ) from None
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} {path} not found")
    try:
        with torch.serialization.safe_globals(_numpy_array_globals()):
            value = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a file that is not a plain tensor
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"{what} {path} is not a plain tensor or array saved with torch.save "
            f"(weights_only load refused it: {reason[:120]})"
        ) from None
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if not isinstance(value, np.ndarray):
        raise UserError(f"{what} {path} holds a {type(value).__name__}, not a plain tensor or array")
    if not np.issubdtype(value.dtype, np.floating):
        raise UserError(f"{what} {path} holds {value.dtype} values, expected floating point")
    if not np.all(np.isfinite(value)):
        raise UserError(f"{what} {path} holds NaN or infinite values")
    return value.astype(np.float32)


def split_coefficients(array: np.ndarray, spec: NetworkSpec) -> list[np.ndarray]:
    """The reference's (synapses, k) rows as per-layer (n_in, n_out, k) arrays, shape-checked."""
    k = get_rule(spec.rule).size
    if array.shape != (spec.synapses, k):
        detail = (
            f"{spec.synapses} synapses x {k} coefficients of rule {spec.rule}, "
            f"layers {' -> '.join(map(str, spec.layer_sizes))}"
        )
        if array.ndim == 2 and array.shape[0] == spec.synapses:
            detail += f"; {array.shape[1]} coefficients per synapse would be another rule"
        raise UserError(
            f"coefficient array has shape {array.shape}, expected ({spec.synapses}, {k}): {detail}"
        )
    offsets = np.cumsum([0] + [a * b for a, b in spec.layer_shapes])
    return [
        array[start:stop].reshape(n_in, n_out, k)
        for (n_in, n_out), start, stop in zip(spec.layer_shapes, offsets[:-1], offsets[1:], strict=True)
    ]


def from_reference_frames(
    coefficients: list[np.ndarray], kernels: list[np.ndarray], spec: NetworkSpec
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Kernels and first-layer coefficients trained on (C, W, H) frames, made to see (C, H, W)."""
    first = coefficients[0]
    grid = first.reshape(*get_frontend(spec.frontend).output_shape, *first.shape[1:])  # (c, w, h, ...)
    first = np.ascontiguousarray(grid.swapaxes(1, 2)).reshape(first.shape)
    return [first, *coefficients[1:]], [np.ascontiguousarray(k.swapaxes(2, 3)) for k in kernels]


def import_reference(
    path: str | os.PathLike,
    rule: str,
    task: str,
    conv: str | os.PathLike | None = None,
    init: str = "uniform",
) -> Genome:
    """A Hebbian genome for ``task`` from a reference coefficient file (and CarRacing's conv file)."""
    import sim

    try:
        get_rule(rule)
        env = sim.make(task)
    except ValueError as exc:  # an unknown rule or task (sim.SpecError is a ValueError)
        raise UserError(str(exc)) from None
    try:
        spec = task_spec(
            env.observation_space,
            env.action_space,
            HIDDEN,
            rule=rule,
            init=init,
            normalise=task not in NOT_NORMALISED,
        )
    except ValueError as exc:  # an unknown init
        raise UserError(str(exc)) from None
    finally:
        env.close()
    coefficients = split_coefficients(load_array(path), spec)
    kernels: list[np.ndarray] = []
    if spec.frontend and conv is None:
        raise UserError(f"task {task} has a conv front end: give its evolved kernels with --conv FILE")
    if conv is not None:
        if not spec.frontend:
            raise UserError(f"task {task} has no conv front end; drop --conv")
        flat = load_array(conv, "conv file").reshape(-1)
        sizes = [int(np.prod(shape)) for shape in spec.frontend_shapes]
        if flat.size != sum(sizes):
            raise UserError(f"conv file {conv} holds {flat.size} values, the front end has {sum(sizes)}")
        parts = np.split(flat, np.cumsum(sizes)[:-1])
        kernels = [part.reshape(shape) for part, shape in zip(parts, spec.frontend_shapes, strict=True)]
        coefficients, kernels = from_reference_frames(coefficients, kernels, spec)
    provenance = {"note": "imported from the reference code's coefficient file", "source": str(path)}
    return Genome("hebbian", spec, task, coefficients, [], provenance, kernels)
