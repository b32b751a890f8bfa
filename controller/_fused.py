"""One compiled call per tick: every layer's forward pass and, in a Hebbian network, its update.

The default backend of every network (numba is a core dependency). Same state layout and the same
float32 operations, in the same order, as the numpy path in :mod:`controller.network`, so the two
agree to float32 rounding: the only differences are the order of the forward pass's sums (numpy
hands them to BLAS, whose kernel, and so its rounding, follows the CPU; here one fixed order, so a
genome walks the same on every install) and tanh (computed here in float64 and rounded once: the
nearest float32 on every value tested, where numpy's is often 1 ulp off).

Written for the vectoriser: no fastmath (every product and sum rounds as numpy's does), no Python
error checks in the loops (``error_model="numpy"``: a checked division stops LLVM vectorising a
loop), a tanh made of multiplies and adds instead of 200 libm calls per tick, the peak |w| found
on the float bits with integer max (which vectorises without fastmath and propagates NaN as
``np.max`` does), the forward pass summing four input rows per sweep of the outputs, and the
normalisation's division done with multiply-adds where that rounds exactly as a division does.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

_JIT = {"cache": True, "nogil": True, "error_model": "numpy"}
# Column of the layout array (one row per weight layer); every *_AT is an offset into the one buffer.
N_IN, N_OUT, X_AT, Y_AT, W_AT, T_AT, T_STRIDE, TANH, NORMALISE, SUM_X_AT, SUM_Y_AT, PERIOD, COUNT_AT = range(
    13
)
_SAFE = np.float32(2.0**-60)  # operands of the fma division stay this far inside float32's normal range
_NO_WEIGHT = np.int32(0x7F800000)  # the bits of +inf: the least nonzero |w| before any is seen
_TANH_ONE = 20.0  # float32 tanh is exactly +-1 from |x| = 9.01 on
_EXPM1_TAYLOR = tuple(1.0 / math.factorial(k) for k in range(11, 0, -1))  # Horner order: 1/11! ... 1/1!


def layout(
    sizes: np.ndarray,
    activations_at: np.ndarray,
    weights_at: np.ndarray,
    terms_at: int,
    tanh: np.ndarray,
    normalise: bool,
    sums_at: int,
    period: int,
) -> np.ndarray:
    """The kernel's description of the network (int64, one row per weight layer): its sizes, where
    its input, output, weights and first term start in the network's buffer, how far apart the
    terms' rows are, whether tanh follows it, whether weights are normalised, where its input's and
    output's activation sums start, the plasticity period and where the tick count is. Everything
    the tick needs besides the observation is in this array and the buffer: two arguments to
    dispatch instead of six (each one costs the call a tenth of a microsecond or more)."""
    n = len(tanh)
    synapses = int(weights_at[n])
    neuron_at = sums_at + activations_at - activations_at[0]
    columns = (
        sizes[:n],
        sizes[1:],
        activations_at[:n],
        activations_at[1 : n + 1],
        weights_at[:n],
        terms_at + weights_at[:n],
        np.full(n, synapses),
        tanh,
        np.full(n, normalise),
        neuron_at[:n],
        neuron_at[1 : n + 1],
        np.full(n, period),
        np.full(n, neuron_at[-1]),  # the count follows every neuron's sum
    )
    return np.stack(columns, axis=1).astype(np.int64)


@numba.njit(inline="always", **_JIT)
def _tanh(x: np.float32) -> np.float32:
    """tanh(x) = u / (u + 2) with u = expm1(2|x|), in float64: expm1 of r = 2|x|/32 by its Taylor
    series to r^11, then five doublings u -> u * (2 + u). Wherever float32 tanh is not yet +-1
    (|x| < 9.01, r < 0.57) the relative error stays below 1e-10, far under float32's 6e-8."""
    a = abs(np.float64(x))
    a = _TANH_ONE if a > _TANH_ONE else a  # written so that NaN passes through
    r = a * (2.0 / 32.0)
    u = 0.0
    for c in _EXPM1_TAYLOR:
        u = u * r + c
    u *= r
    for _ in range(5):
        u = u * (2.0 + u)
    t = u / (u + 2.0)
    return np.float32(-t if x < 0 else t)


@numba.njit(**_JIT)
def tanh_inplace(y: np.ndarray) -> None:
    """The kernel's tanh over an array (for tests)."""
    for j in range(y.shape[0]):
        y[j] = _tanh(y[j])


@numba.njit(inline="always", **_JIT)
def _forward(x: np.ndarray, w: np.ndarray, y: np.ndarray) -> None:
    """y = x @ w summed in input order; four input rows per sweep over y quarter its loads and
    stores (each y[j] is still rounded after every single product is added)."""
    n_in, n_out = w.shape
    for j in range(n_out):
        y[j] = 0.0
    first = n_in % 4
    for i in range(first):
        xi, wi = x[i], w[i]
        for j in range(n_out):
            y[j] += xi * wi[j]
    for i in range(first, n_in, 4):
        xa, xb, xc, xd = x[i], x[i + 1], x[i + 2], x[i + 3]
        wa, wb, wc, wd = w[i], w[i + 1], w[i + 2], w[i + 3]
        for j in range(n_out):
            y[j] = (((y[j] + xa * wa[j]) + xb * wb[j]) + xc * wc[j]) + xd * wd[j]


@intrinsic
def _float32_from_bits(typingctx, bits):
    """Reinterpret an int32's bits as a float32 (no conversion, no allocation)."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.int32), codegen


@intrinsic
def _bits_of_float32(typingctx, value):
    """Reinterpret a float32's bits as an int32."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.int32(types.float32), codegen


@intrinsic
def _fma(typingctx, a, b, c):
    """a * b + c rounded once (llvm.fma: one instruction on x86-64 since Haswell and on arm64)."""

    def codegen(context, builder, signature, args):
        f32 = ir.FloatType()
        fma = builder.module.declare_intrinsic("llvm.fma", [f32], ir.FunctionType(f32, [f32, f32, f32]))
        return builder.call(fma, args)

    return types.float32(types.float32, types.float32, types.float32), codegen


@numba.njit(inline="always", **_JIT)
def _divide(w: np.ndarray, peak: np.float32, smallest: np.float32) -> None:
    """w / peak, rounded exactly as numpy's division rounds it.

    A division per weight is the slowest instruction of the tick, so where every operand is far from
    the subnormal range it is replaced by three multiply-adds: the quotient through the rounded
    reciprocal is within an ulp, its remainder is exact with an fma, and one correction rounds it to
    the correctly rounded quotient (Markstein's theorem; the remainder is negated so that -0 stays
    -0). ``smallest`` is the least nonzero |w|: with subnormal weights (rule A drives most weights
    there) or an extreme peak the theorem does not hold, and the layer is divided plainly.
    """
    if _SAFE < peak < 1.0 / _SAFE and smallest >= peak * _SAFE:
        reciprocal = np.float32(1.0) / peak
        for s in range(w.shape[0]):
            q = w[s] * reciprocal
            w[s] = _fma(-_fma(q, peak, -w[s]), reciprocal, q)
    else:
        for s in range(w.shape[0]):
            w[s] = w[s] / peak


@numba.njit(inline="always", **_JIT)
def _extremes(bits: np.int32, low: np.int32, value: np.float32) -> tuple[np.int32, np.int32]:
    """The bits of the largest |w| and of the least nonzero |w| so far, with ``value`` seen: int32
    throughout, so both run 16 lanes a vector."""
    magnitude = _bits_of_float32(abs(value))
    return max(bits, magnitude), min(low, magnitude if magnitude != 0 else _NO_WEIGHT)


@numba.njit(**_JIT)
def normalise_inplace(w: np.ndarray) -> None:
    """The kernel's w / max|w| over an array, peak and smallest weight found as the tick finds them
    (for tests)."""
    bits, low = np.int32(0), _NO_WEIGHT
    for s in range(w.shape[0]):
        bits, low = _extremes(bits, low, w[s])
    peak = _float32_from_bits(bits)
    if peak > 0:
        _divide(w, peak, _float32_from_bits(low))


@numba.njit(inline="always", **_JIT)
def _dw(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray, s: int, pre: float, post: float) -> float:
    """One synapse's change, summed in the numpy path's order."""
    return ((a[s] * (pre * post) + b[s] * pre) + c[s] * post) + d[s]


@numba.njit(inline="always", **_JIT)
def _update(w: np.ndarray, terms: tuple, x: np.ndarray, y: np.ndarray) -> None:
    a, b, c, d = terms
    n_out = y.shape[0]
    for i in range(x.shape[0]):
        xi, row = x[i], i * n_out
        for j in range(n_out):
            s = row + j
            w[s] = w[s] + _dw(a, b, c, d, s, xi, y[j])


@numba.njit(inline="always", **_JIT)
def _update_normalised(w: np.ndarray, terms: tuple, x: np.ndarray, y: np.ndarray) -> None:
    """The update, then w / max|w|. The peak (and the least nonzero |w|, for :func:`_divide`) is taken
    as each new weight is written (one pass over w fewer), as np.max(np.abs(w)) gives it, NaN
    included: for non-negative floats the order of the bit patterns is the order of the values, and
    NaN's bits are above every number's."""
    a, b, c, d = terms
    n_out = y.shape[0]
    bits, low = np.int32(0), _NO_WEIGHT
    for i in range(x.shape[0]):
        xi, row = x[i], i * n_out
        for j in range(n_out):
            s = row + j
            new = w[s] + _dw(a, b, c, d, s, xi, y[j])
            w[s] = new
            bits, low = _extremes(bits, low, new)
    peak = _float32_from_bits(bits)
    if peak > 0:
        _divide(w, peak, _float32_from_bits(low))


@numba.njit(inline="always", **_JIT)
def _forward_layers(obs: np.ndarray, buffer: np.ndarray, layout: np.ndarray) -> None:
    """Load the observation, then every layer's forward pass (and tanh) on the network's buffer."""
    first = layout[0, X_AT]
    for i in range(obs.shape[0]):
        buffer[first + i] = obs[i]  # rounded to float32 as numpy's assignment does
    for layer in range(layout.shape[0]):
        n_in, n_out = layout[layer, N_IN], layout[layer, N_OUT]
        x = buffer[layout[layer, X_AT] : layout[layer, X_AT] + n_in]
        y = buffer[layout[layer, Y_AT] : layout[layer, Y_AT] + n_out]
        w = buffer[layout[layer, W_AT] : layout[layer, W_AT] + n_in * n_out]
        _forward(x, w.reshape((n_in, n_out)), y)
        if layout[layer, TANH]:
            for j in range(n_out):
                y[j] = _tanh(y[j])


@numba.njit(**_JIT)
def forward(obs: np.ndarray, buffer: np.ndarray, layout: np.ndarray) -> None:
    """The forward pass alone: a static network's tick, summed in the same fixed order on every CPU
    (BLAS picks its kernel, and so its rounding, by CPU)."""
    _forward_layers(obs, buffer, layout)


@numba.njit(**_JIT)
def tick(obs: np.ndarray, buffer: np.ndarray, layout: np.ndarray) -> None:
    """Every layer's forward pass, then every layer's update, on the network's buffer.

    The buffer holds the weights, the effective A, B, C, D terms (one row each, in the weights'
    order) and the activations. A layer's update changes only its own weights, which no other
    layer's forward pass reads, so updating after all the forward passes is the same as updating
    layer by layer. With a plasticity period of K > 1 ticks, the update runs every K-th tick on each
    neuron's mean activation since the last (the activations summed, then divided by K, each rounded
    to float32, as the numpy path does). Absent terms are zero, and adding an exact zero changes
    nothing, so every rule runs the same loop.
    """
    _forward_layers(obs, buffer, layout)
    x_at, y_at, period = X_AT, Y_AT, layout[0, PERIOD]
    if period > 1:  # a slower plasticity clock: sum the activations; every period-th tick, their means
        first, sums, count = layout[0, X_AT], layout[0, SUM_X_AT], layout[0, COUNT_AT]
        for i in range(count - sums):
            buffer[sums + i] += buffer[first + i]
        buffer[count] += 1.0
        if buffer[count] < period:
            return
        for i in range(count - sums):
            buffer[sums + i] /= np.float32(period)
        x_at, y_at = SUM_X_AT, SUM_Y_AT
    for layer in range(layout.shape[0]):
        n_in, n_out = layout[layer, N_IN], layout[layer, N_OUT]
        n = n_in * n_out
        x = buffer[layout[layer, x_at] : layout[layer, x_at] + n_in]
        y = buffer[layout[layer, y_at] : layout[layer, y_at] + n_out]
        w = buffer[layout[layer, W_AT] : layout[layer, W_AT] + n]
        t, stride = layout[layer, T_AT], layout[layer, T_STRIDE]
        terms = (
            buffer[t : t + n],
            buffer[t + stride : t + stride + n],
            buffer[t + 2 * stride : t + 2 * stride + n],
            buffer[t + 3 * stride : t + 3 * stride + n],
        )
        if layout[layer, NORMALISE]:
            _update_normalised(w, terms, x, y)
        else:
            _update(w, terms, x, y)
    if period > 1:
        for i in range(layout[0, SUM_X_AT], layout[0, COUNT_AT] + 1):
            buffer[i] = 0.0
