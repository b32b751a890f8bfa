"""Fixed convolutional front ends: pixels in, the feature vector the plastic layers see out.

The paper's CarRacing network puts two convolutions before its three plastic layers. Their weights
are evolved directly (they are part of the genome) and never change during a lifetime; only the
fully connected layers are Hebbian. The forward pass is compiled with numba (no torch on the deploy
path) and matches ``torch.nn.Conv2d`` (cross-correlation, no bias) and ``MaxPool2d(2, 2)`` (floor).
Each output pixel is summed in one fixed order (input channel, then kernel row, then column) and
tanh is the plastic kernel's: the same features on every CPU, where a BLAS matmul's rounding follows
the kernel BLAS picks for the CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np

from controller._fused import _JIT, _tanh


@dataclass(frozen=True)
class FrontEndSpec:
    """A conv -> tanh -> maxpool(2) stack: input shape (channels, height, width), kernels, strides."""

    input_shape: tuple[int, int, int]
    kernels: tuple[tuple[int, int, int, int], ...]  # (out channels, in channels, kh, kw) per layer
    strides: tuple[int, ...]

    @property
    def output_shape(self) -> tuple[int, int, int]:
        channels, height, width = self.input_shape
        for (out, _, kh, kw), stride in zip(self.kernels, self.strides, strict=True):
            height, width = ((height - kh) // stride + 1) // 2, ((width - kw) // stride + 1) // 2
            channels = out
        return channels, height, width

    @property
    def output_size(self) -> int:
        return int(np.prod(self.output_shape))


FRONTENDS: dict[str, FrontEndSpec] = {
    # Najarro & Risi's CarRacing CNN: 3x84x84 -> conv 3->6 3x3 s1 -> conv 6->8 5x5 s2 -> 648 features.
    "cnn84": FrontEndSpec((3, 84, 84), ((6, 3, 3, 3), (8, 6, 5, 5)), (1, 2)),
}


def get_frontend(name: str) -> FrontEndSpec:
    try:
        return FRONTENDS[name]
    except KeyError:
        raise ValueError(f"unknown front end {name!r}; choose one of {', '.join(FRONTENDS)}") from None


def frontend_for(obs_shape: tuple[int, ...]) -> str | None:
    """The front end that takes observations of this shape: None for a vector, a name for pixels."""
    if len(obs_shape) == 1:
        return None
    for name, spec in FRONTENDS.items():
        if spec.input_shape == tuple(obs_shape):
            return name
    raise ValueError(f"no front end takes observations of shape {tuple(obs_shape)}")


@numba.njit(**_JIT)
def _conv_tanh_pool(x: np.ndarray, kernel: np.ndarray, stride: int) -> np.ndarray:
    """One conv, tanh, then 2x2 max pooling. Each kernel weight sweeps a whole output map (a loop
    the compiler vectorises), so every output pixel adds its products in the kernel's order."""
    out, channels, kh, kw = kernel.shape
    height, width = (x.shape[1] - kh) // stride + 1, (x.shape[2] - kw) // stride + 1
    y = np.zeros((out, height, width), dtype=np.float32)
    for o in range(out):
        for c in range(channels):
            for i in range(kh):
                for j in range(kw):
                    k = kernel[o, c, i, j]
                    for r in range(height):
                        row, target = x[c, r * stride + i], y[o, r]
                        for q in range(width):
                            target[q] += k * row[q * stride + j]
        for r in range(height):
            for q in range(width):
                y[o, r, q] = _tanh(y[o, r, q])
    pooled = np.empty((out, height // 2, width // 2), dtype=np.float32)
    for o in range(out):
        for r in range(height // 2):
            for q in range(width // 2):
                a, b = y[o, 2 * r, 2 * q], y[o, 2 * r + 1, 2 * q]
                c, d = y[o, 2 * r, 2 * q + 1], y[o, 2 * r + 1, 2 * q + 1]
                pooled[o, r, q] = max(max(a, b), max(c, d))
    return pooled


class ConvFrontEnd:
    """A front end with its evolved kernels, fixed for life."""

    def __init__(self, spec: FrontEndSpec, kernels: Sequence[np.ndarray]) -> None:
        if len(kernels) != len(spec.kernels):
            raise ValueError(f"the front end has {len(spec.kernels)} conv layers, got {len(kernels)} kernels")
        for kernel, shape in zip(kernels, spec.kernels, strict=True):
            if kernel.shape != shape:
                raise ValueError(f"conv kernel has shape {kernel.shape}, expected {shape}")
        self.spec = spec
        self.kernels = [np.asarray(k, dtype=np.float32) for k in kernels]

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Features of one (channels, height, width) image, flattened channel-major (as torch's view)."""
        x = np.ascontiguousarray(image, dtype=np.float32)
        for kernel, stride in zip(self.kernels, self.spec.strides, strict=True):
            x = _conv_tanh_pool(x, kernel, stride)
        return x.reshape(-1)
