"""The gradient noise scale against a brute-force estimate: per-example gradients computed one
example at a time, the full-batch gradient from all of them, the same formulas applied."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nnlab import nn


def problem(n: int, classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n points in 3-D with labels from a noisy rule (binary or ``classes`` classes)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    score = x[:, 0] - 0.5 * x[:, 1] * x[:, 2] + 0.1 * rng.normal(size=n)
    y = np.digitize(score, np.quantile(score, np.linspace(0, 1, classes + 1)[1:-1]))
    return x, y.astype(np.float64)


def model_for(classes: int, optimizer: str, seed: int = 3) -> nn.Sequential:
    out = nn.Dense(1, "sigmoid") if classes == 2 else nn.Dense(classes, "softmax")
    model = nn.Sequential(
        [nn.Dense(5, "tanh", input_dim=3), nn.Dense(4, "relu"), out], seed=seed, dtype="float64"
    )
    loss = "binary_crossentropy" if classes == 2 else "sparse_categorical_crossentropy"
    opt = nn.SGD(learning_rate=0.1) if optimizer == "sgd" else nn.Adam(learning_rate=0.01)
    model.compile(optimizer=opt, loss=loss)
    return model


def brute_force(model: nn.Sequential, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(tr(Sigma), |G|^2) of the batch (x, y) at the model's weights, unbiased as the noise
    scale's estimates: every example's gradient on its own, their sample covariance's trace."""
    per_example = np.stack(
        [model._loss_and_grads(x[i : i + 1], y[i : i + 1])[1] for i in range(len(x))]
    )
    full = model._loss_and_grads(x, y)[1]
    np.testing.assert_allclose(per_example.mean(axis=0), full, rtol=1e-9, atol=1e-12)
    n = len(x)
    trace = float(((per_example - full) ** 2).sum()) / (n - 1)
    return trace, float(full @ full) - trace / n


@pytest.mark.parametrize("classes", [2, 4])
def test_one_full_batch_equals_the_brute_force_noise_scale(classes):
    x, y = problem(64, classes)
    reference = model_for(classes, "sgd")
    trace, signal = brute_force(reference, x, y)  # at the initial weights
    model = model_for(classes, "sgd")
    hist = model.fit(
        x, y, batch_size=64, epochs=1, shuffle=False, callbacks=[nn.GradientNoiseScale()]
    )
    assert trace > 0 and signal > 0
    assert hist.history["noise_scale"][0] == pytest.approx(trace / signal, rel=1e-9)


@pytest.mark.parametrize(("classes", "optimizer"), [(2, "adam"), (4, "sgd")])
def test_an_epoch_sums_each_batch_estimate_before_dividing(classes, optimizer):
    """Several batches (the last one partial, one of a single example skipped), the weights
    moving between them: replayed one batch at a time on a twin model."""
    x, y = problem(71, classes)
    batch = 10  # 7 batches of 10 and one of 1
    model = model_for(classes, optimizer)
    hist = model.fit(
        x, y, batch_size=batch, epochs=2, shuffle=False, callbacks=[nn.GradientNoiseScale()]
    )
    twin = model_for(classes, optimizer)
    for epoch in range(2):
        traces, signals = [], []
        for start in range(0, len(x), batch):
            xb, yb = x[start : start + batch], y[start : start + batch]
            if len(xb) > 1:
                trace, signal = brute_force(twin, xb, yb)
                traces.append(trace)
                signals.append(signal)
            twin.fit(xb, yb, batch_size=batch, epochs=1, shuffle=False)
        expected = sum(traces) / sum(signals)
        assert expected > 0  # a problem where the gradient's signal is measurable
        assert hist.history["noise_scale"][epoch] == pytest.approx(expected, rel=1e-9)
    np.testing.assert_allclose(model.get_weights()[0], twin.get_weights()[0], rtol=1e-12)


def test_measuring_changes_nothing_and_leaves_no_probe_behind():
    x, y = problem(50, 2)
    plain, measured = model_for(2, "adam"), model_for(2, "adam")
    a = plain.fit(x, y, batch_size=8, epochs=3)
    b = measured.fit(x, y, batch_size=8, epochs=3, callbacks=[nn.GradientNoiseScale()])
    assert a.history["loss"] == b.history["loss"]
    for wa, wb in zip(plain.get_weights(), measured.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)
    assert measured._grad_probe is None and "noise_scale" not in a.history
    assert all(v > 0 for v in b.history["noise_scale"])


def test_no_usable_batch_or_no_signal_is_nan():
    x, y = problem(5, 2)
    cb = nn.GradientNoiseScale()
    model_for(2, "sgd").fit(x, y, batch_size=1, epochs=1, callbacks=[cb])  # batches of one
    assert math.isnan(cb.value())
    assert nn.noise_scale.batch_estimates(1.0, 1, np.ones(3)) is None


def test_a_trainer_that_skips_the_probe_is_an_error_not_a_silent_nan():
    x, y = problem(40, 2)
    models = [model_for(2, "sgd", seed) for seed in (0, 1)]
    with pytest.raises(RuntimeError, match="saw no batch in epoch 1"):
        nn.Stack(models).fit(
            x, y, batch_size=8, epochs=1, callbacks=[[nn.GradientNoiseScale()], []]
        )
