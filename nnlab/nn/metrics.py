"""Metrics: per-sample functions and the name table ``compile(metrics=[...])`` resolves.

Each function maps ``(y_true, y_pred)`` of shape ``(n, K)`` to per-sample values ``(n,)``;
an epoch's metric is the sample-weighted mean over all its batches (Keras's running mean).
``"accuracy"`` resolves as Keras does: binary accuracy (threshold 0.5) for a 1-unit output,
categorical accuracy otherwise (sparse labels are one-hot encoded before, so this is also
sparse categorical accuracy).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def binary_accuracy(y_true, y_pred, threshold: float = 0.5) -> np.ndarray:
    """Mean over units of ``y_true == (y_pred > threshold)``. (n, K) -> (n,)."""
    y, p = np.asarray(y_true), np.asarray(y_pred)
    return np.equal(y, p > threshold).mean(axis=-1)


def categorical_accuracy(y_true, y_pred) -> np.ndarray:
    """``argmax(y_true) == argmax(y_pred)`` per sample. (n, K) -> (n,)."""
    y, p = np.asarray(y_true), np.asarray(y_pred)
    return np.equal(y.argmax(axis=-1), p.argmax(axis=-1)).astype(p.dtype)


def sparse_categorical_accuracy(y_true, y_pred) -> np.ndarray:
    """``y_true == argmax(y_pred)`` with class ids y_true (n,) or one-hot (n, K)."""
    y, p = np.asarray(y_true), np.asarray(y_pred)
    ids = y.argmax(axis=-1) if y.ndim == 2 and y.shape[-1] == p.shape[-1] > 1 else y.reshape(-1)
    return np.equal(ids, p.argmax(axis=-1)).astype(p.dtype)


def mean_squared_error(y_true, y_pred) -> np.ndarray:
    """``mean((y - p)^2)`` over units. (n, K) -> (n,)."""
    d = np.asarray(y_pred) - np.asarray(y_true)
    return (d * d).mean(axis=-1)


def mean_absolute_error(y_true, y_pred) -> np.ndarray:
    """``mean(|y - p|)`` over units. (n, K) -> (n,)."""
    return np.abs(np.asarray(y_pred) - np.asarray(y_true)).mean(axis=-1)


MetricFn = Callable[[np.ndarray, np.ndarray], np.ndarray]

METRICS: dict[str, MetricFn] = {
    "binary_accuracy": binary_accuracy,
    "categorical_accuracy": categorical_accuracy,
    "sparse_categorical_accuracy": sparse_categorical_accuracy,
    "mean_squared_error": mean_squared_error,
    "mean_absolute_error": mean_absolute_error,
}
ALIASES = {"mse": "mean_squared_error", "mae": "mean_absolute_error"}
ACCURACY_NAMES = ("accuracy", "acc")
#: metrics where larger is better (EarlyStopping's mode="auto")
HIGHER_IS_BETTER = ("accuracy", "acc", "binary_accuracy", "categorical_accuracy",
                    "sparse_categorical_accuracy")  # fmt: skip


def batch_total(fn: MetricFn, y: np.ndarray, out: np.ndarray):
    """Sum over the batch of ``fn``'s per-sample values (fast paths for the accuracies).

    y, out: (n, K) -> a float; or (M, n, K) for a stack of M models (y may stay (n, K),
    shared) -> a float64 array (M,), each model's total as it computes it alone.
    """
    if out.ndim == 3:
        return _stack_totals(fn, y, out)
    if fn is binary_accuracy:
        return float(np.count_nonzero(np.equal(y, out > 0.5))) / out.shape[-1]
    if fn is categorical_accuracy:
        return float(np.count_nonzero(y.argmax(axis=-1) == out.argmax(axis=-1)))
    return float(fn(y, out).sum())


def _stack_totals(fn: MetricFn, y: np.ndarray, out: np.ndarray) -> np.ndarray:
    m = out.shape[0]
    if fn is binary_accuracy:
        hits = np.equal(y, out > 0.5).reshape(m, -1)
        return np.add.reduce(hits, axis=1, dtype=np.int64) / out.shape[-1]
    if fn is categorical_accuracy:
        hits = y.argmax(axis=-1) == out.argmax(axis=-1)
        return np.add.reduce(hits, axis=1, dtype=np.int64).astype(np.float64)
    return np.add.reduce(fn(y, out), axis=-1).astype(np.float64)


def valid_names() -> list[str]:
    return [*ACCURACY_NAMES, *METRICS, *ALIASES]


def get(name: str, units: int) -> MetricFn:
    """The per-sample function for a metric name given the output width ``units``."""
    if not isinstance(name, str):
        raise TypeError(f"metrics must be names (str); got {type(name).__name__}")
    key = name.lower()
    if key in ACCURACY_NAMES:
        return binary_accuracy if units == 1 else categorical_accuracy
    key = ALIASES.get(key, key)
    if key not in METRICS:
        raise ValueError(f"unknown metric {name!r}; valid: {', '.join(valid_names())}")
    if key == "sparse_categorical_accuracy":
        return categorical_accuracy  # the trainer's labels are one-hot by then
    return METRICS[key]
