"""One compiled call per tick: every layer's forward pass and Hebbian update, fused.

Optional (needs numba). Same state layout and arithmetic order as the numpy path in
:mod:`controller.network`, so the two agree to float32 rounding.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def tick(
    weights: np.ndarray,
    terms: np.ndarray,
    activations: np.ndarray,
    weight_offsets: np.ndarray,
    activation_offsets: np.ndarray,
    sizes: np.ndarray,
    tanh: np.ndarray,
    normalise: bool,
) -> None:
    """Forward then update, layer by layer; ``terms`` holds effective A, B, C, D per synapse.

    Absent terms are zero, and adding an exact zero changes nothing, so every rule runs the same
    branch-free loop.
    """
    for layer in range(sizes.shape[0] - 1):
        n_in, n_out = sizes[layer], sizes[layer + 1]
        x0, y0, w0 = activation_offsets[layer], activation_offsets[layer + 1], weight_offsets[layer]
        for j in range(n_out):
            activations[y0 + j] = 0.0
        for i in range(n_in):
            xi = activations[x0 + i]
            row = w0 + i * n_out
            for j in range(n_out):
                activations[y0 + j] += xi * weights[row + j]
        if tanh[layer]:
            for j in range(n_out):
                activations[y0 + j] = np.tanh(activations[y0 + j])
        peak = np.float32(0.0)
        for i in range(n_in):
            xi = activations[x0 + i]
            row = w0 + i * n_out
            for j in range(n_out):
                yj = activations[y0 + j]
                c = 4 * (row + j)
                dw = ((terms[c] * (xi * yj) + terms[c + 1] * xi) + terms[c + 2] * yj) + terms[c + 3]
                w = weights[row + j] + dw
                weights[row + j] = w
                peak = max(peak, abs(w))
        if normalise and peak > 0:
            for k in range(w0, w0 + n_in * n_out):
                weights[k] = weights[k] / peak
