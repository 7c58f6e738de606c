"""The simple gradient noise scale, B_simple = tr(Sigma) / |G|^2 (McCandlish et al. 2018).

``G`` is the true gradient of the loss and ``Sigma`` the covariance of the per-example
gradients. B_simple estimates the critical batch size: below it, doubling the batch nearly halves
the steps a run needs; far above it, extra examples per step buy little.

Both quantities come from per-example gradient norms, which backprop through Dense layers gives
almost for free: the kernel gradient of example ``r`` is the outer product of its layer input
``a_r`` and its delta ``d_r`` (dL_r/dz), so ``|g_r|^2 = sum over layers of (|a_r|^2 + 1) |d_r|^2``
(the ``+ 1`` is the bias, whose gradient is ``d_r``). Per batch of ``B`` examples with mean gradient
``g``, unbiased estimates are::

    tr(Sigma) ~ (sum_r |g_r|^2 - B |g|^2) / (B - 1)
    |G|^2     ~ |g|^2 - tr(Sigma) / B

and an epoch sums them over its batches before dividing (a ratio of sums, not a mean of ratios:
one batch's tiny |G|^2 estimate cannot blow the epoch's value up).

:class:`GradientNoiseScale` is the callback that measures it during ``fit`` and puts the epoch's
value in the epoch logs as ``noise_scale``; without it, training pays nothing.
"""

from __future__ import annotations

import math

import numpy as np

from .callbacks import Callback


class _Work:
    """Work arrays for one batch size, so a batch allocates nothing: per layer, the squares of
    its input and of its delta (n, w), the ones vectors (w,) that sum their rows (a
    matrix-vector product: ~2x faster than ``sum(axis=1)`` at these sizes), the row sums (n,)."""

    def __init__(self, x: np.ndarray, activations: list[np.ndarray], deltas: list[np.ndarray]):
        def parts(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            return np.empty_like(a), np.ones(a.shape[1], a.dtype), np.empty(a.shape[0], a.dtype)

        self.layers = [
            (*parts(activations[i - 1] if i else x), *parts(d)) for i, d in enumerate(deltas)
        ]


def sq_norm_sum(
    x: np.ndarray,
    activations: list[np.ndarray],
    deltas: list[np.ndarray],
    work: _Work | None = None,
) -> float:
    """Sum over the batch of each example's squared share of the batch-mean gradient.

    Parameters
    ----------
    x : ndarray, shape (B, in)
        The batch's input (the first layer's input).
    activations : list of ndarray, shapes (B, units_i)
        Each layer's output; layer ``i`` reads ``activations[i - 1]`` (``x`` for the first).
    deltas : list of ndarray, shapes (B, units_i)
        Each layer's ``dL/dz`` of the batch-mean loss ``L`` (what backprop leaves).
    work : optional
        Work arrays of this batch size, kept between calls.

    Returns
    -------
    float
        ``sum_r sum_layers (|a_r|^2 + 1) |d_r|^2``; times ``B^2`` it is ``sum_r |g_r|^2`` for the
        gradients ``g_r`` of the examples' own losses (the batch mean divides each delta by B).
    """
    work = work or _Work(x, activations, deltas)
    total = 0.0
    for i, (d, (sq_a, ones_a, rows_a, sq_d, ones_d, rows_d)) in enumerate(
        zip(deltas, work.layers, strict=True)
    ):
        a = activations[i - 1] if i else x
        np.dot(np.multiply(a, a, out=sq_a), ones_a, out=rows_a)
        rows_a += 1.0  # the bias: its gradient is the delta itself
        np.dot(np.multiply(d, d, out=sq_d), ones_d, out=rows_d)
        total += float(np.dot(rows_a, rows_d))
    return total


def batch_estimates(sq_sum: float, n: int, mean_grad: np.ndarray) -> tuple[float, float] | None:
    """Unbiased (tr(Sigma), |G|^2) from one batch, or None for a batch of one example.

    Parameters
    ----------
    sq_sum : float
        :func:`sq_norm_sum` of the batch.
    n : int
        Examples in the batch (B).
    mean_grad : ndarray, shape (P,)
        The batch-mean gradient, all parameters flat.
    """
    if n < 2:  # no spread to measure
        return None
    g2 = float(np.dot(mean_grad, mean_grad))
    trace = (n * n * sq_sum - n * g2) / (n - 1)
    return trace, g2 - trace / n


class GradientNoiseScale(Callback):
    """Adds ``noise_scale`` (B_simple over the epoch's batches) to every epoch's logs.

    Each training batch's per-example gradient norms come from the backward pass that ``fit``
    runs anyway (the model calls this callback's probe right after it); the epoch's value is
    ``sum(tr(Sigma)) / sum(|G|^2)`` over its batches of two or more examples (NaN when there is
    none, or when the summed ``|G|^2`` is not positive: the noise swamps the signal).
    """

    def __init__(self) -> None:
        super().__init__()
        self._trace = self._signal = 0.0
        self._batches = self._calls = 0  # batches with an estimate; batches seen
        self._work: dict[int, _Work] = {}  # per batch size

    def on_train_begin(self, logs=None):
        self.model._grad_probe = self.add_batch

    def on_epoch_begin(self, epoch, logs=None):
        self._trace = self._signal = 0.0
        self._batches = self._calls = 0

    def add_batch(
        self,
        x: np.ndarray,
        activations: list[np.ndarray],
        deltas: list[np.ndarray],
        mean_grad: np.ndarray,
    ) -> None:
        """Accumulate one batch (arguments as :func:`sq_norm_sum` and :func:`batch_estimates`)."""
        self._calls += 1
        work = self._work.get(x.shape[0])
        if work is None:
            work = self._work[x.shape[0]] = _Work(x, activations, deltas)
        sq_sum = sq_norm_sum(x, activations, deltas, work)
        est = batch_estimates(sq_sum, x.shape[0], mean_grad)
        if est is not None:
            self._trace += est[0]
            self._signal += est[1]
            self._batches += 1

    def value(self) -> float:
        """B_simple of the batches so far this epoch (NaN as the class docstring says)."""
        if not self._batches or not self._signal > 0:
            return math.nan
        return self._trace / self._signal

    def on_epoch_end(self, epoch, logs=None):
        if not self._calls:  # never a silent NaN: say who trained without the probe
            raise RuntimeError(
                f"GradientNoiseScale saw no batch in epoch {epoch + 1}: the model was trained by "
                "something that does not call Sequential's gradient probe (e.g. nn.Stack); "
                "fit the model on its own"
            )
        if logs is not None:
            logs["noise_scale"] = self.value()

    def on_train_end(self, logs=None):
        self.model._grad_probe = None
