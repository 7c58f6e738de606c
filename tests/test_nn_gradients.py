"""float64 central-difference checks of the trainer's gradients (h = 1e-6, rel. error < 1e-6).

Every output activation x loss pair the library accepts, hidden activations of every kind,
one-sample, full and partial batches, plus the exact batching arithmetic of fit.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from nnlab import nn
from nnlab.nn import activations

H = 1e-6
HIDDEN = ["tanh", "relu", "sigmoid", "linear", "elu", "softplus", "leaky_relu", "softmax"]
PROB_LOSSES = ["binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy"]


def allowed_pairs():
    """(output activation, loss name, from_logits) for every combination compile accepts."""
    pairs = [(act, "mean_squared_error", False) for act in activations.ACTIVATIONS]
    for loss in PROB_LOSSES:
        for act in activations.ACTIVATIONS:
            from_logits = act not in activations.PROBABILISTIC
            pairs.append((act, loss, from_logits))
    return pairs


def make_loss(name, from_logits):
    if name == "mean_squared_error":
        return nn.MeanSquaredError()
    return nn.losses.LOSSES[name](from_logits=from_logits)


def targets(loss_name, n, k, rng):
    if loss_name == "binary_crossentropy":
        y = (rng.random((n, k)) > 0.5).astype(np.float64)
        y[:, 0] = rng.random(n)  # soft labels are allowed too
        return y
    if loss_name == "categorical_crossentropy":
        return np.eye(k)[rng.integers(0, k, n)]
    if loss_name == "sparse_categorical_crossentropy":
        return rng.integers(0, k, n).astype(np.float64)
    return rng.normal(size=(n, k))


def numeric_gradient(model, x, y):
    params = model._params
    grad = np.empty_like(params)
    for j in range(params.size):
        old = params[j]
        params[j] = old + H
        up, _ = model._loss_and_grads(x, y)
        params[j] = old - H
        down, _ = model._loss_and_grads(x, y)
        params[j] = old
        grad[j] = (up - down) / (2 * H)
    return grad


def relative_error(a, b):
    return np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-300)


def check(hidden, out_act, loss, k, n, seed=0):
    rng = np.random.default_rng(seed)
    model = nn.Sequential(
        [
            nn.Dense(5, activation=hidden, input_dim=3),
            nn.Dense(4, activation="tanh"),
            nn.Dense(k, activation=out_act),
        ],
        seed=seed,
        dtype="float64",
    )
    model.set_weights([w + 0.1 * rng.normal(size=w.shape) for w in model.get_weights()])
    model.compile(optimizer="sgd", loss=loss)
    x = rng.normal(size=(n, 3))
    y = targets(loss.name, n, k, rng)
    value, grad = model._loss_and_grads(x, y)
    assert math.isfinite(value)
    assert np.abs(grad).max() > 0
    num = numeric_gradient(model, x, y)
    err = relative_error(grad, num)
    assert err < 1e-6, (hidden, out_act, loss, k, n, err)


@pytest.mark.parametrize("n", [1, 8, 5], ids=["batch1", "full", "partial"])
@pytest.mark.parametrize(("out_act", "loss_name", "from_logits"), allowed_pairs())
def test_output_pairs(out_act, loss_name, from_logits, n):
    check("tanh", out_act, make_loss(loss_name, from_logits), k=3, n=n)


@pytest.mark.parametrize(
    ("out_act", "loss"),
    [
        ("sigmoid", nn.BinaryCrossentropy()),
        ("linear", nn.BinaryCrossentropy(from_logits=True)),
        ("linear", nn.MeanSquaredError()),
        ("sigmoid", nn.MeanSquaredError()),
    ],
)
@pytest.mark.parametrize("n", [1, 8, 5], ids=["batch1", "full", "partial"])
def test_single_unit_outputs(out_act, loss, n):
    check("relu", out_act, loss, k=1, n=n, seed=1)


@pytest.mark.parametrize("hidden", HIDDEN)
def test_hidden_activations(hidden):
    check(hidden, "softmax", nn.CategoricalCrossentropy(), k=3, n=7, seed=2)
    check(hidden, "sigmoid", nn.BinaryCrossentropy(), k=1, n=7, seed=3)


def test_compile_rejects_pairs_outside_the_table():
    for act, loss_name, from_logits in [
        ("linear", "binary_crossentropy", False),
        ("sigmoid", "binary_crossentropy", True),
        ("relu", "categorical_crossentropy", False),
        ("softmax", "sparse_categorical_crossentropy", True),
    ]:
        model = nn.Sequential([nn.Dense(2, activation=act, input_dim=2)])
        with pytest.raises(ValueError, match="from_logits"):
            model.compile(loss=make_loss(loss_name, from_logits))


def test_saturated_sigmoid_has_zero_gradient_like_keras_jax():
    """In the clipped region the reported BCE is flat, so its exact derivative is 0."""
    model = nn.Sequential([nn.Dense(1, activation="sigmoid", input_dim=1)], seed=0, dtype="float64")
    model.set_weights([np.array([[1.0]]), np.array([0.0])])
    model.compile(optimizer="sgd", loss="binary_crossentropy")
    x = np.array([[40.0], [1.0]])  # p = 1 - 4e-18 is clipped; p = 0.73 is not
    y = np.array([0.0, 1.0])
    _, grad = model._loss_and_grads(x, y)
    _, grad_unsaturated = model._loss_and_grads(x[1:], y[1:])
    np.testing.assert_allclose(grad, grad_unsaturated / 2, rtol=1e-12)


def test_fit_batches_are_slices_with_partial_last_and_weighted_loss():
    """fit == manual SGD over ceil(11/4) = 3 batches (4, 4, 3); History loss = weighted mean."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(11, 2)).astype(np.float32)
    y = (rng.random(11) > 0.5).astype(np.float32)

    def new_model():
        m = nn.Sequential(
            [nn.Dense(6, activation="relu", input_dim=2), nn.Dense(1, activation="sigmoid")], seed=9
        )
        m.compile(optimizer=nn.SGD(learning_rate=0.1), loss="binary_crossentropy")
        return m

    manual = new_model()
    lr = np.float32(0.1)
    losses, sizes = [], []
    for start in (0, 4, 8):
        loss, grad = manual._loss_and_grads(x[start : start + 4], y[start : start + 4])
        losses.append(loss)
        sizes.append(len(x[start : start + 4]))
        manual._params -= grad * lr
    trained = new_model()
    hist = trained.fit(x, y, batch_size=4, epochs=1, shuffle=False)
    for a, b in zip(trained.get_weights(), manual.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert sizes == [4, 4, 3]
    assert hist.history["loss"][0] == pytest.approx(np.dot(losses, sizes) / 11, rel=1e-12)

    # shuffle=True: batches are contiguous slices of one fresh permutation per epoch, drawn
    # from the model's generator after the initial weights
    rng_model = np.random.default_rng(9)
    rng_model.uniform(size=(2, 6))
    rng_model.uniform(size=(6, 1))
    order = rng_model.permutation(11)
    manual = new_model()
    for start in (0, 4, 8):
        idx = order[start : start + 4]
        _, grad = manual._loss_and_grads(x[idx], y[idx])
        manual._params -= grad * lr
    shuffled = new_model()
    shuffled.fit(x, y, batch_size=4, epochs=1, shuffle=True)
    for a, b in zip(shuffled.get_weights(), manual.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
