"""The numerical core of training: weight views into a flat parameter vector, work buffers, and
the forward and backward passes through Dense layers.

One model (``Sequential``) and a stack of M models of one architecture (``nnlab.nn.stacked``)
share this code; a stack only adds a leading model axis to every array:

==============  ====================  ==========================================
array           one model             stack of M models
==============  ====================  ==========================================
parameters      (P,)                  (M, P), one row per model
kernel i        (in, out)             (M, in, out)
bias i          (out,)                (M, out), added to outputs as (M, 1, out)
x batch         (n, in)               (M, n, in), or (n, in) shared by all
buffers         (n, w)                (M, n, w)
==============  ====================  ==========================================

``np.matmul`` on the stacked arrays makes one BLAS call per model slice with that model's
operands, so each model's numbers are the ones it computes alone, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def layout(dims: Sequence[int]) -> list[tuple[int, int, int]]:
    """``(offset, fan_in, units)`` per layer in the parameter vector: the kernel at ``offset``
    (row-major ``(fan_in, units)``), then the bias. ``dims`` = input width, then each layer's."""
    out, offset = [], 0
    for fan_in, units in zip(dims[:-1], dims[1:], strict=True):
        out.append((offset, fan_in, units))
        offset += fan_in * units + units
    return out


def size(dims: Sequence[int]) -> int:
    """Length of the parameter vector of the layers ``dims`` describes."""
    return sum(a * b + b for a, b in zip(dims[:-1], dims[1:], strict=True))


class Views:
    """Kernel and bias views into a flat vector ``flat`` (P,) or a stack of them (M, P).

    Attributes
    ----------
    kernels : list of (..., in, out) arrays
    biases : list of (..., out) arrays
    kernels_t : list of (..., out, in) arrays, the kernels transposed (for input gradients)
    backprop : list of ufuncs computing ``d @ kernels_t[i]`` (np.matmul, or np.multiply for a
        1-unit layer)
    biases_rows : list of arrays added to a layer's outputs: the bias (out,) for one model,
        (M, 1, out) for a stack
    """

    def __init__(self, flat: np.ndarray, layers: Sequence[tuple[int, int, int]]) -> None:
        lead = flat.shape[:-1]
        self.kernels: list[np.ndarray] = []
        self.biases: list[np.ndarray] = []
        for offset, fan_in, units in layers:
            stop = offset + fan_in * units
            self.kernels.append(flat[..., offset:stop].reshape(*lead, fan_in, units))
            self.biases.append(flat[..., stop : stop + units])
        self.kernels_t = [w.swapaxes(-1, -2) for w in self.kernels]
        self.biases_rows = [b[..., None, :] if lead else b for b in self.biases]
        # input gradients d @ kernel.T; through a 1-unit layer that GEMM has an inner size of 1:
        # an outer product, each element one rounded product, which np.multiply computes alike
        # (half the time for a stack)
        self.backprop = [np.multiply if units == 1 else np.matmul for _, _, units in layers]


class Buffers:
    """Work arrays for batches of ``n`` samples: outputs a[i], deltas d[i], scratch t[i], each
    ``(*lead, n, w_i)``; ``a_t`` are the outputs transposed (for kernel gradients)."""

    def __init__(self, lead: tuple[int, ...], n: int, widths: Sequence[int], dtype) -> None:
        self.a = [np.empty((*lead, n, w), dtype) for w in widths]
        self.d = [np.empty((*lead, n, w), dtype) for w in widths]
        self.t = [np.empty((*lead, n, w), dtype) for w in widths]
        self.a_t = [a.swapaxes(-1, -2) for a in self.a]
        self.ones = np.ones(n, dtype)  # bias gradients as ones @ delta: a BLAS call, ~3x np.sum
        # the same gemv per model either way; np.dot's call costs 0.5 us less but takes no stack
        self.vecmat = np.matmul if lead else np.dot


Activation = Callable[[np.ndarray, np.ndarray], np.ndarray]
Derivative = Callable[[np.ndarray, np.ndarray, np.ndarray], None]


def forward(x: np.ndarray, w: Views, fns: Sequence[Activation], bufs: Buffers) -> np.ndarray:
    """Output of the network for ``x`` (see the module table for shapes), left in bufs.a[-1]."""
    a = x
    for W, b, z, t, f in zip(w.kernels, w.biases_rows, bufs.a, bufs.t, fns, strict=True):
        np.matmul(a, W, out=z)
        z += b
        f(z, t)
        a = z
    return a


def backward(
    x_t: np.ndarray, w: Views, grads: Views, derivatives: Sequence[Derivative], bufs: Buffers
) -> None:
    """Kernel and bias gradients into ``grads``, given the forward outputs in ``bufs.a`` and
    dL/dz of the output layer in ``bufs.d[-1]``. ``x_t`` is the input batch transposed
    (..., in, n). The first layer's input gradient is never computed."""
    a, a_t, d, t, ones, vecmat = bufs.a, bufs.a_t, bufs.d, bufs.t, bufs.ones, bufs.vecmat
    g_kernels, g_biases, kernels_t, backprop = grads.kernels, grads.biases, w.kernels_t, w.backprop
    for i in range(len(d) - 1, -1, -1):
        # d[i] = dL/dz_i: gradients of layer i, then d[i-1]
        np.matmul(a_t[i - 1] if i else x_t, d[i], out=g_kernels[i])
        vecmat(ones, d[i], out=g_biases[i])
        if i:
            backprop[i](d[i], kernels_t[i], out=d[i - 1])
            derivatives[i - 1](a[i - 1], d[i - 1], t[i - 1])
