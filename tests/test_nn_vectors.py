"""Keras's own test vectors for optimizers and losses, and numerical safety of the primitives."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from nnlab import nn
from nnlab.nn import activations, losses, metrics

G = np.array([1.0, 6.0, 7.0, 2.0], dtype=np.float32)
W0 = np.array([1.0, 2.0, 3.0, 4.0], dtype=np.float32)


def one_step(optimizer, w=W0, g=G):
    w = w.copy()
    optimizer.update(w, g.copy())
    return w


@pytest.mark.parametrize(
    ("optimizer", "expected"),
    [
        (nn.Adam(learning_rate=0.5), [0.5, 1.5, 2.5, 3.5]),
        (nn.SGD(learning_rate=0.5), [0.5, -1.0, -0.5, 3.0]),
        (nn.RMSprop(learning_rate=0.5), [-0.5811, 0.4189, 1.4189, 2.4189]),
    ],
    ids=["adam", "sgd", "rmsprop"],
)
def test_optimizer_keras_vectors(optimizer, expected):
    w = one_step(optimizer)
    assert w.dtype == np.float32
    np.testing.assert_allclose(w, expected, atol=1e-4)
    assert optimizer.iterations == 1


def reference_steps(name, config, w, grads):
    """The Keras update rules written out in float64, for several steps."""
    w = w.astype(np.float64).copy()
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    mg = np.zeros_like(w)
    lr = config["learning_rate"]
    for t, g in enumerate(grads, start=1):
        g = g.astype(np.float64)
        if name == "sgd":
            mom = config.get("momentum", 0.0)
            if mom == 0:
                w = w - lr * g
            else:
                m = mom * m - lr * g
                w = w + (mom * m - lr * g if config.get("nesterov") else m)
        elif name == "adam":
            b1, b2, eps = 0.9, 0.999, 1e-7
            alpha = lr * np.sqrt(1 - b2**t) / (1 - b1**t)
            m = m + (g - m) * (1 - b1)
            v = v + (g * g - v) * (1 - b2)
            w = w - alpha * m / (np.sqrt(v) + eps)
        else:  # rmsprop
            rho, eps, mom = 0.9, 1e-7, config.get("momentum", 0.0)
            v = rho * v + (1 - rho) * g * g
            denom = v + eps
            if config.get("centered"):
                mg = rho * mg + (1 - rho) * g
                denom = v - mg * mg + eps
            inc = lr * g / np.sqrt(denom)
            if mom > 0:
                m = mom * m + inc
                w = w - m
            else:
                w = w - inc
    return w


@pytest.mark.parametrize(
    ("cls", "config"),
    [
        (nn.SGD, {"learning_rate": 0.1}),
        (nn.SGD, {"learning_rate": 0.1, "momentum": 0.9}),
        (nn.SGD, {"learning_rate": 0.1, "momentum": 0.9, "nesterov": True}),
        (nn.Adam, {"learning_rate": 0.01}),
        (nn.RMSprop, {"learning_rate": 0.01}),
        (nn.RMSprop, {"learning_rate": 0.01, "centered": True}),
        (nn.RMSprop, {"learning_rate": 0.01, "momentum": 0.5, "centered": True}),
    ],
)
def test_optimizer_multi_step_matches_formulas(cls, config):
    rng = np.random.default_rng(1)
    grads = [rng.normal(size=6).astype(np.float32) for _ in range(5)]
    w0 = rng.normal(size=6).astype(np.float32)
    opt = cls(**config)
    w = w0.copy()
    for g in grads:
        opt.update(w, g)
    np.testing.assert_allclose(
        w, reference_steps(opt.name, config, w0, grads), rtol=1e-5, atol=1e-6
    )
    assert all(s.dtype == np.float32 for s in opt.slots.values())


def test_bce_from_logits_keras_vector():
    y = np.array([[0, 1], [0, 0]], dtype=np.float32)
    x = np.array([[-18.6, 0.51], [2.94, -12.8]], dtype=np.float32)
    per = losses.binary_crossentropy(y, x, from_logits=True)
    np.testing.assert_allclose(per, [0.235, 1.496], atol=1e-3)
    assert nn.BinaryCrossentropy(from_logits=True)(y, x) == pytest.approx(0.8654, abs=1e-4)


def test_bce_probabilities_keras_vector():
    per = losses.binary_crossentropy([[0, 1], [0, 0]], np.array([[0.6, 0.4], [0.4, 0.6]]))
    np.testing.assert_allclose(per, [0.916, 0.714], atol=1e-3)


def test_cce_keras_vector():
    y = np.array([[0, 1, 0], [0, 0, 1]], dtype=np.float32)
    p = np.array([[0.05, 0.95, 0], [0.1, 0.8, 0.1]], dtype=np.float32)
    np.testing.assert_allclose(losses.categorical_crossentropy(y, p), [0.0513, 2.303], atol=1e-3)
    assert nn.CategoricalCrossentropy()(y, p) == pytest.approx(1.177, abs=1e-3)
    # the same with class ids
    np.testing.assert_allclose(
        losses.sparse_categorical_crossentropy([1, 2], p), [0.0513, 2.303], atol=1e-3
    )
    assert nn.SparseCategoricalCrossentropy()(np.array([1, 2]), p) == pytest.approx(1.177, abs=1e-3)


def test_cce_from_logits_equals_softmax_then_cce():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(5, 4))
    y = np.eye(4)[rng.integers(0, 4, 5)]
    p = activations.apply("softmax", z)
    np.testing.assert_allclose(
        losses.categorical_crossentropy(y, z, from_logits=True),
        losses.categorical_crossentropy(y, p),
        rtol=1e-12,
    )


def test_mse_keras_vector():
    y = np.array([[1, 9, 2], [-5, -2, 6]], dtype=np.float32)
    p = np.array([[4, 8, 12], [8, 1, 3]], dtype=np.float32)
    assert nn.MeanSquaredError()(y, p) == pytest.approx(49.5, rel=1e-6)
    assert losses.get("mse").name == "mean_squared_error"


def test_bce_clips_probabilities_like_keras():
    # p = 0 with y = 1 is -log(1e-7), not inf
    value = losses.binary_crossentropy(np.array([[1.0]]), np.array([[0.0]]))
    assert value[0] == pytest.approx(-np.log(1e-7), rel=1e-9)


def test_accuracy_resolution():
    assert metrics.get("accuracy", 1) is metrics.binary_accuracy
    assert metrics.get("acc", 3) is metrics.categorical_accuracy
    y = np.array([[1.0], [0.0], [1.0]])
    p = np.array([[0.6], [0.5], [0.4]])  # threshold is strict: 0.5 -> class 0
    np.testing.assert_array_equal(metrics.binary_accuracy(y, p), [1.0, 1.0, 0.0])
    np.testing.assert_array_equal(
        metrics.sparse_categorical_accuracy([2, 0], [[0, 1, 2], [3, 1, 0]]), [1, 1]
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activations_match_reference_formulas(dtype):
    z = np.linspace(-6, 6, 25, dtype=dtype).reshape(5, 5)
    ref = {
        "linear": z,
        "relu": np.maximum(z, 0),
        "sigmoid": 1 / (1 + np.exp(-z.astype(np.float64))),
        "tanh": np.tanh(z),
        "softmax": np.exp(z) / np.exp(z).sum(axis=1, keepdims=True),
        "elu": np.where(z > 0, z, np.expm1(z)),
        "softplus": np.log1p(np.exp(z.astype(np.float64))),
        "leaky_relu": np.where(z >= 0, z, 0.2 * z),
    }
    for name, expected in ref.items():
        out = activations.apply(name, z)
        assert out.dtype == dtype, name
        np.testing.assert_allclose(
            out, expected, rtol=2e-6 if dtype == np.float32 else 1e-12, atol=1e-7
        )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_no_runtime_warning_for_extreme_logits(dtype):
    z = np.array([[-1e4, 1e4, 0.0], [1e4, 1e4, -1e4]], dtype=dtype)
    y = np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in activations.ACTIVATIONS:
            a = activations.ACTIVATIONS[name](z.copy(), None)
            assert np.isfinite(a).all(), name
            delta = np.ones_like(z)
            activations.DERIVATIVES[name](a, delta, None)
            assert np.isfinite(delta).all(), name
        sig = activations.apply("sigmoid", z)
        np.testing.assert_array_equal(sig, [[0, 1, 0.5], [1, 1, 0]])
        soft = activations.apply("softmax", z)
        assert np.isfinite(soft).all()
        for loss in (
            nn.BinaryCrossentropy(from_logits=True),
            nn.CategoricalCrossentropy(from_logits=True),
        ):
            assert np.isfinite(loss.per_sample(y, z)).all()
            delta = np.empty_like(z)
            loss.value_and_delta(y, z, "linear", delta)
            assert np.isfinite(delta).all()
        for loss, act in (
            (nn.BinaryCrossentropy(), "sigmoid"),
            (nn.CategoricalCrossentropy(), "softmax"),
        ):
            p = activations.apply(act, z)
            delta = np.empty_like(z)
            value = loss.value_and_delta(y, p, act, delta)
            assert np.isfinite(value) and np.isfinite(delta).all()


def test_no_runtime_warning_in_model_with_extreme_inputs():
    x = np.array([[1e4, -1e4], [-1e4, 1e4], [1e4, 1e4], [0.0, 0.0]], dtype=np.float32)
    y = np.array([0.0, 1.0, 1.0, 0.0], dtype=np.float32)
    for act, loss in (
        ("sigmoid", "binary_crossentropy"),
        ("linear", nn.BinaryCrossentropy(from_logits=True)),
    ):
        model = nn.Sequential(
            [nn.Dense(8, activation="tanh", input_dim=2), nn.Dense(1, activation=act)], seed=3
        )
        model.set_weights([w * 1e3 for w in model.get_weights()])  # logits of order 1e4
        model.compile(optimizer="sgd", loss=loss, metrics=["accuracy"])
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert np.isfinite(model.predict(x)).all()
            assert np.isfinite(model.evaluate(x, y)["loss"])
            _, grads = model._loss_and_grads(x, y)
            assert np.isfinite(grads).all()


@pytest.mark.parametrize(
    "make",
    [
        lambda: nn.SGD(0.1, momentum=0.9, nesterov=True),
        lambda: nn.Adam(0.01),
        lambda: nn.RMSprop(0.01, momentum=0.5, centered=True),
    ],
    ids=["sgd", "adam", "rmsprop"],
)
def test_blockwise_update_is_bit_identical_to_one_pass(make):
    rng = np.random.default_rng(2)
    w0 = rng.normal(size=1000).astype(np.float32)
    whole, blocks = make(), make()
    blocks.CHUNK = 64  # 16 blocks, the last one partial
    a, b = w0.copy(), w0.copy()
    for _ in range(3):
        g = rng.normal(size=1000).astype(np.float32)
        whole.update(a, g)
        blocks.update(b, g)
    assert len(blocks._blocks) == 16 and len(whole._blocks) == 1
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "loss",
    [
        nn.BinaryCrossentropy(),
        nn.BinaryCrossentropy(from_logits=True),
        nn.CategoricalCrossentropy(),
        nn.CategoricalCrossentropy(from_logits=True),
        nn.SparseCategoricalCrossentropy(),
        nn.MeanSquaredError(),
    ],
    ids=repr,
)
def test_training_batch_mean_equals_mean_of_per_sample_losses(loss):
    rng = np.random.default_rng(4)
    out = rng.random((9, 3)) if not loss.from_logits else rng.normal(size=(9, 3)) * 5
    out[0, 0] = 0.0 if not loss.from_logits else out[0, 0]  # a clipped probability
    y = np.eye(3)[rng.integers(0, 3, 9)]
    if isinstance(loss, nn.BinaryCrossentropy):
        y[:, 1] = rng.random(9)
    expected = loss.dense_per_sample(y, out).mean()
    assert loss.batch_mean(y, out) == pytest.approx(expected, rel=1e-12)
    if isinstance(loss, nn.SparseCategoricalCrossentropy):
        assert loss(y.argmax(axis=1), out) == pytest.approx(expected, rel=1e-12)
    else:
        assert loss(y, out) == pytest.approx(expected, rel=1e-12)


def test_metric_batch_totals_equal_sums_of_per_sample_values():
    rng = np.random.default_rng(5)
    for units, fn in (
        (1, metrics.binary_accuracy),
        (4, metrics.binary_accuracy),
        (4, metrics.categorical_accuracy),
        (4, metrics.mean_absolute_error),
    ):
        y = (
            np.eye(units)[rng.integers(0, units, 20)]
            if units > 1
            else (rng.random((20, 1)) > 0.5) * 1.0
        )
        out = rng.random((20, units))
        assert metrics.batch_total(fn, y, out) == pytest.approx(float(fn(y, out).sum()), rel=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cce_softmax_fast_path_is_bit_identical_to_batch_mean_and_fused_delta(dtype):
    # value_and_delta shares row sums between the loss and its gradient: it must give exactly
    # what batch_mean and fused_delta give separately, clipped probabilities included
    rng = np.random.default_rng(6)
    z = (rng.normal(size=(50, 4)) * 8).astype(dtype)
    z[0] = [40.0, -40.0, 0.0, 0.0]  # softmax saturates: probabilities outside the clip range
    out = activations.softmax(z.copy())
    y = np.eye(4, dtype=dtype)[rng.integers(0, 4, 50)]
    y[0] = [0.0, 1.0, 0.0, 0.0]
    loss = nn.CategoricalCrossentropy()
    delta, tmp = np.empty_like(out), np.full_like(out, np.nan)
    value = loss.value_and_delta(y, out, "softmax", delta, tmp)
    expected_delta = np.empty_like(out)
    assert loss.fused_delta(y, out, "softmax", expected_delta)
    assert value == loss.batch_mean(y, out)
    np.testing.assert_array_equal(delta, expected_delta)
    assert delta.dtype == dtype and delta[0, 1] == 0.0  # clipped: no gradient, as Keras
