"""Losses with Keras 3's formulas and reductions.

Functional forms return one value per sample, shape ``(n,)``; loss classes return the batch
mean (Keras's ``sum_over_batch_size``). For training, each class also gives
``value_and_delta``: the batch-mean loss and its exact gradient with respect to the output
layer's pre-activation ``z`` — fused where the algebra collapses, the chain rule otherwise:

=====================  ==========================  ===================================
loss                   output activation           dL/dz (batch of n samples, K units)
=====================  ==========================  ===================================
binary_crossentropy    sigmoid                     m * (p - y) / (n K)
categorical_ce         softmax                     (p * sum(w) / sum(p) - w) / n, w = m y
mean_squared_error     linear                      2 (p - y) / (n K)
any, from_logits=True  linear                      (sigmoid(z) - y) / (n K) or
                                                   (softmax(z) * sum(y) - y) / n
other pairs            any                         dL/dp, then the activation's derivative
=====================  ==========================  ===================================

For a stack of M models (``nnlab.nn.stacked``) outputs, targets and deltas carry a leading model
axis, (M, n, K), and batch means are a float64 array (M,), one per model, each computed as that
model alone computes its float.

``m`` is the mask of probabilities inside Keras's clip range ``(1e-7, 1 - 1e-7)``. Outside it
the reported (clipped) loss is flat, so its exact derivative is 0 — the same gradient Keras
computes on the JAX backend. A saturated sigmoid therefore stops learning from that sample; use
``from_logits=True`` with a linear output layer if that matters.
"""

from __future__ import annotations

import numpy as np

from . import activations

EPSILON = 1e-7  # keras.backend.epsilon()


def _clip(p: np.ndarray) -> np.ndarray:
    """``clip(p, 1e-7, 1 - 1e-7)`` as two ufunc calls (np.clip's wrapper costs ~2 us)."""
    q = np.maximum(p, EPSILON)
    return np.minimum(q, 1.0 - EPSILON, out=q)


def _row_sums(a: np.ndarray) -> np.ndarray:
    """Sums over the last axis, kept as a column (np.add.reduce skips ndarray.sum's wrapper)."""
    return np.add.reduce(a, axis=-1, keepdims=True)


def _batch_mean(terms: np.ndarray, count: int):
    """The sum of each model's ``terms`` / ``count``: a float for one model's (n, K) array, a
    float64 array (M,) for a stack's (M, n, K) (each row summed as the single array is)."""
    if terms.ndim < 3:
        return float(terms.sum()) / count
    sums = np.add.reduce(terms.reshape(terms.shape[0], -1), axis=1)
    return sums.astype(np.float64) / count


def _log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


# --- functional forms: per-sample values -------------------------------------------------


def binary_crossentropy(y_true, y_pred, from_logits: bool = False) -> np.ndarray:
    """Per-sample BCE, mean over the last axis. y_true, y_pred: (n, K) -> (n,)."""
    y, x = np.asarray(y_true), np.asarray(y_pred)
    y = y.astype(x.dtype, copy=False)
    if from_logits:
        per = np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))
    else:
        q = _clip(x)
        per = -(y * np.log(q) + (1.0 - y) * np.log(1.0 - q))
    return per.mean(axis=-1)


def categorical_crossentropy(y_true, y_pred, from_logits: bool = False) -> np.ndarray:
    """Per-sample CCE. y_true one-hot (n, K), y_pred (n, K) -> (n,)."""
    y, x = np.asarray(y_true), np.asarray(y_pred)
    y = y.astype(x.dtype, copy=False)
    if from_logits:
        log_p = _log_softmax(x)
    else:
        log_p = np.log(_clip(x / x.sum(axis=-1, keepdims=True)))
    return -(y * log_p).sum(axis=-1)


def sparse_categorical_crossentropy(y_true, y_pred, from_logits: bool = False) -> np.ndarray:
    """Per-sample CCE with integer class ids. y_true (n,), y_pred (n, K) -> (n,)."""
    x = np.asarray(y_pred)
    ids = np.asarray(y_true).reshape(-1).astype(np.int64)
    return categorical_crossentropy(np.eye(x.shape[-1], dtype=x.dtype)[ids], x, from_logits)


def mean_squared_error(y_true, y_pred) -> np.ndarray:
    """Per-sample ``mean((y - p)^2)`` over the last axis. (n, K) -> (n,)."""
    y, p = np.asarray(y_true), np.asarray(y_pred)
    d = p - y.astype(p.dtype, copy=False)
    return (d * d).mean(axis=-1)


# --- loss classes ------------------------------------------------------------------------


class Loss:
    """Base class. ``__call__(y_true, y_pred)`` returns the batch-mean loss.

    Subclasses define ``per_sample``, ``prepare_targets`` (validate labels, return (N, K)) and
    ``output_grad`` (dL/d(output) for the batch mean) and may override ``fused_delta``.
    """

    name = "loss"
    probabilistic = False  # True: expects probabilities unless from_logits

    def __init__(self, from_logits: bool = False) -> None:
        if not isinstance(from_logits, bool | np.bool_):
            raise TypeError(f"from_logits must be True or False; got {from_logits!r}")
        self.from_logits = bool(from_logits)

    def __call__(self, y_true, y_pred) -> float:
        return float(np.mean(self.per_sample(y_true, y_pred)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(from_logits={self.from_logits})"

    def get_config(self) -> dict:
        return {"name": self.name, "from_logits": self.from_logits}

    def per_sample(self, y_true, y_pred) -> np.ndarray:
        raise NotImplementedError

    def dense_per_sample(self, y: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Per-sample loss with targets as ``prepare_targets`` returns them, (n, K) -> (n,)."""
        return self.per_sample(y, out)

    def batch_mean(self, y: np.ndarray, out: np.ndarray):
        """Batch-mean loss with targets as ``prepare_targets`` returns them: a Python float, or
        a float64 array (M,) for a stack's (M, n, K) outputs.

        Subclasses compute it as one sum divided by the count: ``ndarray.mean`` costs several
        microseconds of Python overhead per call, which matters at ~100 us per training step.
        """
        values = self.dense_per_sample(y, out)
        return float(values.mean()) if values.ndim == 1 else values.mean(axis=-1).astype(np.float64)

    def check_activation(self, activation: str) -> None:
        """Reject output activations that make this loss meaningless (one-line ValueError)."""
        if not self.probabilistic:
            return
        if self.from_logits and activation in activations.PROBABILISTIC:
            raise ValueError(
                f"{self.name} with from_logits=True expects raw scores, but the output layer "
                f"applies {activation!r}; use from_logits=False, or an output activation of "
                "'linear'"
            )
        if not self.from_logits and activation not in activations.PROBABILISTIC:
            raise ValueError(
                f"{self.name} expects probabilities, but the output activation is "
                f"{activation!r}; use activation 'sigmoid' or 'softmax', or "
                f"{type(self).__name__}(from_logits=True)"
            )

    def prepare_targets(self, y: np.ndarray, units: int, dtype: np.dtype, what: str) -> np.ndarray:
        """Return y as a float (N, units) array; ValueError if it does not fit the output."""
        y = _as_2d(y, units, what, self.name)
        return y.astype(dtype, copy=False)

    # -- training: batch loss and dL/dz -------------------------------------------------

    def value_and_delta(
        self, y: np.ndarray, out: np.ndarray, activation: str, delta: np.ndarray, tmp=None
    ):
        """Return the batch-mean loss; write dL/dz (z = output pre-activation) into delta.

        y, out, delta: (n, K), or (M, n, K) for a stack (y may stay (n, K), shared); ``out`` is
        the output layer's activation output. The loss as ``batch_mean`` returns it.
        """
        value = self.batch_mean(y, out)
        if not self.fused_delta(y, out, activation, delta):
            delta[...] = self.output_grad(y, out)
            activations.DERIVATIVES[activation](out, delta, tmp)
        return value

    def fused_delta(self, y, out, activation, delta) -> bool:
        return False

    def output_grad(self, y: np.ndarray, out: np.ndarray) -> np.ndarray:
        raise NotImplementedError


def _as_2d(y: np.ndarray, units: int, what: str, loss_name: str) -> np.ndarray:
    if y.ndim == 1 and units == 1:
        return y.reshape(-1, 1)
    if y.ndim != 2 or y.shape[1] != units:
        raise ValueError(
            f"{what} has shape {y.shape} but the output layer has {units} unit(s) and loss "
            f"{loss_name} needs shape (n, {units})" + (" or (n,)" if units == 1 else "")
        )
    return y


class BinaryCrossentropy(Loss):
    """``-(y log p + (1-y) log(1-p))``, p clipped to [1e-7, 1-1e-7], mean over units."""

    name = "binary_crossentropy"
    probabilistic = True

    def per_sample(self, y_true, y_pred):
        return binary_crossentropy(y_true, y_pred, self.from_logits)

    def batch_mean(self, y, out):
        if self.from_logits:
            t = np.abs(out)
            np.negative(t, out=t)
            np.exp(t, out=t)
            np.log1p(t, out=t)
            t -= out * y
            t += np.maximum(out, 0)
        else:
            q = _clip(out)
            t = y * np.log(q)
            np.subtract(1.0, q, out=q)
            np.log(q, out=q)
            q *= 1.0 - y
            t += q
            np.negative(t, out=t)
        return _batch_mean(t, out.shape[-2] * out.shape[-1])

    def prepare_targets(self, y, units, dtype, what):
        y = super().prepare_targets(y, units, dtype, what)
        if y.size and (y.min() < 0 or y.max() > 1):
            raise ValueError(
                f"binary_crossentropy needs {what} in [0, 1]; got values in "
                f"[{y.min():g}, {y.max():g}] (for class ids use sparse_categorical_crossentropy)"
            )
        return y

    def fused_delta(self, y, out, activation, delta):
        n, k = out.shape[-2:]
        if self.from_logits and activation == "linear":
            delta[...] = out
            activations.sigmoid(delta)
            delta -= y
        elif not self.from_logits and activation == "sigmoid":
            np.subtract(out, y, out=delta)
            delta *= (out > EPSILON) & (out < 1.0 - EPSILON)
        else:
            return False
        delta *= 1.0 / (n * k)
        return True

    def output_grad(self, y, out):
        n, k = out.shape[-2:]
        if self.from_logits:
            g = activations.sigmoid(out.copy()) - y
        else:
            q = _clip(out)
            g = ((1.0 - y) / (1.0 - q) - y / q) * ((out > EPSILON) & (out < 1.0 - EPSILON))
        return g * (1.0 / (n * k))


class CategoricalCrossentropy(Loss):
    """``-sum(y log p)`` per sample with p = out / sum(out) clipped to [1e-7, 1-1e-7]."""

    name = "categorical_crossentropy"
    probabilistic = True

    def per_sample(self, y_true, y_pred):
        return categorical_crossentropy(y_true, y_pred, self.from_logits)

    def batch_mean(self, y, out):
        if self.from_logits:
            log_p = _log_softmax(out)
        else:
            log_p = out / _row_sums(out)
            np.maximum(log_p, EPSILON, out=log_p)
            np.minimum(log_p, 1.0 - EPSILON, out=log_p)
            np.log(log_p, out=log_p)
        log_p *= y
        return -_batch_mean(log_p, out.shape[-2])

    def prepare_targets(self, y, units, dtype, what):
        if y.ndim == 1 and units > 1:
            raise ValueError(
                f"categorical_crossentropy needs one-hot {what} of shape (n, {units}); got "
                f"shape {y.shape}: use sparse_categorical_crossentropy for class ids"
            )
        return super().prepare_targets(y, units, dtype, what)

    def _weights(self, y, out):
        """w = y * mask of unclipped normalised probabilities, and the row sums of out."""
        s = _row_sums(out)
        q = out / s
        return y * ((q > EPSILON) & (q < 1.0 - EPSILON)), s

    def value_and_delta(self, y, out, activation, delta, tmp=None):
        if self.from_logits or activation != "softmax":
            return super().value_and_delta(y, out, activation, delta, tmp)
        # batch_mean and fused_delta in one: the row sums and normalised probabilities they
        # share are computed once (same operations, bit-identical; ~8 us less at 128 x 10)
        n = out.shape[-2]
        s = _row_sums(out)
        q = np.divide(out, s, out=tmp) if tmp is not None else out / s
        w = y * ((q > EPSILON) & (q < 1.0 - EPSILON))
        np.maximum(q, EPSILON, out=q)
        np.minimum(q, 1.0 - EPSILON, out=q)
        np.log(q, out=q)
        q *= y
        value = -_batch_mean(q, n)
        np.multiply(out, _row_sums(w) / s, out=delta)
        delta -= w
        delta *= 1.0 / n
        return value

    def fused_delta(self, y, out, activation, delta):
        n = out.shape[-2]
        if self.from_logits and activation == "linear":
            delta[...] = out
            activations.softmax(delta)
            delta *= _row_sums(y)
            delta -= y
        elif not self.from_logits and activation == "softmax":
            w, s = self._weights(y, out)
            np.multiply(out, _row_sums(w) / s, out=delta)
            delta -= w
        else:
            return False
        delta *= 1.0 / n
        return True

    def output_grad(self, y, out):
        n = out.shape[-2]
        if self.from_logits:
            g = activations.softmax(out.copy()) * _row_sums(y) - y
        else:
            # d/dp_j of -sum_i w_i log(p_i / S) = -w_j / p_j + sum(w) / S
            w, s = self._weights(y, out)
            p_safe = np.where(w != 0, out, 1.0)
            g = _row_sums(w) / s - w / p_safe
        return g * (1.0 / n)


class SparseCategoricalCrossentropy(CategoricalCrossentropy):
    """Categorical cross-entropy with integer class ids as labels (n,) or (n, 1).

    The trainer one-hot encodes the ids once per fit and then shares the categorical math.
    """

    name = "sparse_categorical_crossentropy"

    def per_sample(self, y_true, y_pred):
        return sparse_categorical_crossentropy(y_true, y_pred, self.from_logits)

    def dense_per_sample(self, y, out):
        return categorical_crossentropy(y, out, self.from_logits)

    def batch_mean(self, y, out):
        return CategoricalCrossentropy.batch_mean(self, y, out)

    def prepare_targets(self, y, units, dtype, what):
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise ValueError(
                f"sparse_categorical_crossentropy needs class ids {what} of shape (n,); got "
                f"shape {y.shape}: use categorical_crossentropy for one-hot labels"
            )
        if y.size and (np.any(y != np.floor(y)) or y.min() < 0 or y.max() > units - 1):
            raise ValueError(
                f"sparse_categorical_crossentropy needs integer class ids in [0, {units - 1}] "
                f"for a {units}-unit output; {what} has values in [{y.min():g}, {y.max():g}]"
            )
        return np.eye(units, dtype=dtype)[y.astype(np.int64)]


class MeanSquaredError(Loss):
    """``mean((y - p)^2)`` over units, then over the batch."""

    name = "mean_squared_error"

    def __init__(self) -> None:
        super().__init__(from_logits=False)

    def get_config(self) -> dict:
        return {"name": self.name}

    def per_sample(self, y_true, y_pred):
        return mean_squared_error(y_true, y_pred)

    def batch_mean(self, y, out):
        d = out - y
        d *= d
        return _batch_mean(d, out.shape[-2] * out.shape[-1])

    def fused_delta(self, y, out, activation, delta):
        if activation != "linear":
            return False
        n, k = out.shape[-2:]
        np.subtract(out, y, out=delta)
        delta *= 2.0 / (n * k)
        return True

    def output_grad(self, y, out):
        n, k = out.shape[-2:]
        return (out - y) * (2.0 / (n * k))


LOSSES: dict[str, type[Loss]] = {
    "binary_crossentropy": BinaryCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "mean_squared_error": MeanSquaredError,
}
ALIASES = {"mse": "mean_squared_error"}


def get(identifier) -> Loss:
    """A Loss from a name (``"binary_crossentropy"``, ``"mse"``, ...), a config dict or a Loss."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, dict):
        config = dict(identifier)
        cls = LOSSES[ALIASES.get(config.pop("name"), identifier["name"])]
        return cls(**config)
    if isinstance(identifier, str):
        key = ALIASES.get(identifier.lower(), identifier.lower())
        if key in LOSSES:
            return LOSSES[key]()
        raise ValueError(
            f"unknown loss {identifier!r}; valid: {', '.join([*LOSSES, *ALIASES])} "
            "or a Loss instance"
        )
    if identifier is None:
        raise ValueError(f"compile() needs a loss; valid: {', '.join(LOSSES)}")
    raise TypeError(f"loss must be a name or a Loss instance; got {type(identifier).__name__}")
