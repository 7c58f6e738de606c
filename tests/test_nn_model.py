"""Sequential end to end: determinism, persistence, resume, learning, callbacks, errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from fixtures.make_keras_fixtures import EVALUATE_CASES, evaluate_data, make_data, nnlab_model

from nnlab import nn


def blobs_xor(n=400, seed=0):
    """Four Gaussian blobs at the corners of a square; label = XOR of the signs."""
    rng = np.random.default_rng(seed)
    centers = np.array([[1, 1], [-1, -1], [1, -1], [-1, 1]], dtype=float)
    labels = np.array([0, 0, 1, 1])
    which = rng.integers(0, 4, n)
    x = centers[which] + 0.25 * rng.normal(size=(n, 2))
    return x.astype(np.float32), labels[which].astype(np.float32)


def two_moons(n=400, noise=0.1, seed=0):
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, np.pi, n)
    upper = rng.random(n) < 0.5
    x = np.where(
        upper[:, None],
        np.c_[np.cos(t), np.sin(t)],
        np.c_[1 - np.cos(t), 0.5 - np.sin(t)],
    )
    x += noise * rng.normal(size=x.shape)
    return x.astype(np.float32), (~upper).astype(np.float32)


def small_model(seed=0, optimizer="adam", loss="binary_crossentropy", hidden=16, dtype="float32"):
    model = nn.Sequential(
        [nn.Dense(hidden, activation="relu", input_dim=2), nn.Dense(1, activation="sigmoid")],
        seed=seed,
        dtype=dtype,
    )
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
    return model


def assert_same_weights(a, b):
    wa, wb = a.get_weights(), b.get_weights()
    assert len(wa) == len(wb)
    for x, y in zip(wa, wb, strict=True):
        np.testing.assert_array_equal(x, y)


# --- determinism, weights, persistence ---------------------------------------------------


def test_same_seed_bit_identical_history_and_weights():
    x, y = two_moons()
    runs = []
    for _ in range(2):
        model = small_model(seed=7)
        hist = model.fit(x, y, batch_size=16, epochs=3, validation_split=0.2)
        runs.append((model, hist.history))
    assert runs[0][1] == runs[1][1]
    assert_same_weights(runs[0][0], runs[1][0])
    other = small_model(seed=8)
    assert other.fit(x, y, batch_size=16, epochs=3, validation_split=0.2).history != runs[0][1]


def test_seed_fixes_shuffling_too():
    x, y = two_moons()
    a, b = small_model(seed=1), small_model(seed=2)
    b.set_weights(a.get_weights())  # same start, different shuffling streams
    a.fit(x, y, batch_size=16, epochs=1)
    b.fit(x, y, batch_size=16, epochs=1)
    assert not np.array_equal(a.get_weights()[0], b.get_weights()[0])


def test_get_set_weights_keras_order_and_copies():
    model = nn.Sequential(
        [nn.Dense(4, activation="relu", input_dim=3), nn.Dense(2, activation="softmax")], seed=0
    )
    weights = model.get_weights()
    assert [w.shape for w in weights] == [(3, 4), (4,), (4, 2), (2,)]
    assert all(w.dtype == np.float32 for w in weights)
    np.testing.assert_array_equal(weights[1], 0)  # zero biases
    limit = math.sqrt(6 / (3 + 4))  # glorot_uniform
    assert np.abs(weights[0]).max() <= limit and np.abs(weights[0]).std() > 0.2 * limit
    weights[0][...] = 5  # a copy: the model is unchanged
    assert not np.any(model.get_weights()[0] == 5)
    new = [np.full(w.shape, i, dtype=np.float64) for i, w in enumerate(weights)]
    model.set_weights(new)
    for got, want in zip(model.get_weights(), new, strict=True):
        np.testing.assert_array_equal(got, want)
        assert got.dtype == np.float32
    assert model.count_params() == 3 * 4 + 4 + 4 * 2 + 2


def test_save_load_round_trip(tmp_path):
    x, y = two_moons()
    model = small_model(seed=3)
    model.fit(x, y, batch_size=32, epochs=2)
    path = tmp_path / "m.npz"
    model.save(path)
    with np.load(path, allow_pickle=False) as data:  # every entry readable without pickle
        assert {"config", "weights/0", "rng", "optimizer/m"} <= set(data.files)
        for key in data.files:
            assert data[key].dtype != object
    loaded = nn.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert loaded.get_config() == model.get_config()
    # optimizer slots, step and shuffle state came along: training continues identically
    model.fit(x, y, batch_size=32, epochs=1)
    loaded.fit(x, y, batch_size=32, epochs=1)
    assert_same_weights(model, loaded)


def test_load_model_rejects_other_npz(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, a=np.zeros(3))
    with pytest.raises(ValueError, match="not an nnlab model"):
        nn.load_model(path)


@pytest.mark.parametrize(
    "optimizer", ["adam", "rmsprop", nn.SGD(0.05, momentum=0.9, nesterov=True)]
)
def test_get_state_set_state_resume_is_bit_identical(tmp_path, optimizer):
    x, y = two_moons(n=203)
    xv, yv = two_moons(n=50, seed=1)

    def fresh(seed):
        opt = optimizer if isinstance(optimizer, str) else nn.optimizers.get(optimizer.get_config())
        return small_model(seed=seed, optimizer=opt)

    straight = fresh(0)
    full = straight.fit(x, y, batch_size=16, epochs=6, validation_data=(xv, yv))

    first = fresh(0)
    part1 = first.fit(x, y, batch_size=16, epochs=3, validation_data=(xv, yv))
    np.savez(tmp_path / "state.npz", **first.get_state())
    with np.load(tmp_path / "state.npz", allow_pickle=False) as data:
        state = {k: data[k] for k in data.files}
    resumed = fresh(123)  # a different seed: everything must come from the state
    resumed.set_state(state)
    part2 = resumed.fit(x, y, batch_size=16, epochs=6, initial_epoch=3, validation_data=(xv, yv))

    assert_same_weights(resumed, straight)
    assert part2.epoch == [3, 4, 5]
    for key, values in full.history.items():
        assert part1.history[key] + part2.history[key] == values


def test_set_state_needs_matching_optimizer():
    model = small_model(optimizer="adam")
    model.fit(*two_moons(n=20), epochs=1)
    other = small_model(optimizer="sgd")
    with pytest.raises(ValueError, match="'adam' optimizer slots"):
        other.set_state(model.get_state())


# --- Keras semantics of fit ---------------------------------------------------------------


def test_validation_split_takes_last_samples_before_shuffling():
    x, y = two_moons(n=101)
    split = math.ceil(101 * 0.75)
    a = small_model(seed=4).fit(x, y, batch_size=8, epochs=2, validation_split=0.25)
    b = small_model(seed=4).fit(
        x[:split], y[:split], batch_size=8, epochs=2, validation_data=(x[split:], y[split:])
    )
    assert a.history == b.history
    assert set(a.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}


def test_val_metrics_measured_after_last_update():
    x, y = two_moons(n=64)
    xv, yv = two_moons(n=40, seed=2)
    model = small_model(seed=5)
    hist = model.fit(x, y, batch_size=16, epochs=2, validation_data=(xv, yv))
    after = model.evaluate(xv, yv, batch_size=16)
    assert hist.history["val_loss"][-1] == after["loss"]
    assert hist.history["val_accuracy"][-1] == after["accuracy"]


def test_history_values_are_python_floats_and_accuracy_is_fraction():
    x, y = two_moons(n=50)
    hist = small_model().fit(x, y, batch_size=7, epochs=2)
    assert all(type(v) is float for values in hist.history.values() for v in values)
    # 50 samples: accuracy is a multiple of 1/50
    for acc in hist.history["accuracy"]:
        assert abs(acc * 50 - round(acc * 50)) < 1e-9


def test_multiclass_softmax_with_sparse_and_one_hot_labels():
    rng = np.random.default_rng(0)
    centers = np.array([[2, 0], [-2, 0], [0, 2]], dtype=np.float32)
    ids = rng.integers(0, 3, 300)
    x = (centers[ids] + 0.3 * rng.normal(size=(300, 2))).astype(np.float32)
    results = []
    for loss, labels in (
        ("sparse_categorical_crossentropy", ids.astype(np.float32)),
        ("categorical_crossentropy", np.eye(3, dtype=np.float32)[ids]),
    ):
        model = nn.Sequential(
            [nn.Dense(8, activation="tanh", input_dim=2), nn.Dense(3, activation="softmax")], seed=0
        )
        model.compile(optimizer=nn.Adam(0.05), loss=loss, metrics=["accuracy"])
        results.append(model.fit(x, labels, batch_size=32, epochs=15).history)
    assert results[0] == results[1]  # sparse ids are one-hot encoded: the same numbers
    assert results[0]["accuracy"][-1] > 0.97


def test_float64_option():
    x, y = two_moons(n=80)
    model = small_model(dtype="float64")
    model.fit(x, y, batch_size=16, epochs=2)
    assert all(w.dtype == np.float64 for w in model.get_weights())
    assert model.predict(x).dtype == np.float64
    assert all(s.dtype == np.float64 for s in model.optimizer.slots.values())


def test_float32_stays_float32_with_float64_and_int_inputs():
    x, y = two_moons(n=80)
    model = small_model(optimizer=nn.SGD(learning_rate=np.float64(0.1), momentum=0.5))
    model.fit(x.astype(np.float64), y.astype(np.int64), batch_size=16, epochs=1)
    assert model._params.dtype == model._grads.dtype == np.float32
    assert all(s.dtype == np.float32 for s in model.optimizer.slots.values())
    assert all(b.a[0].dtype == np.float32 for b in model._buffers.values())
    assert model.predict(x.astype(np.float64)).dtype == np.float32


def test_verbose_prints_one_line_per_epoch(capsys):
    x, y = two_moons(n=40)
    small_model().fit(x, y, batch_size=8, epochs=3, validation_split=0.25, verbose=1)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("Epoch 1/3 - ")
    for key in ("loss: ", "accuracy: ", "val_loss: ", "val_accuracy: "):
        assert key in lines[-1]
    small_model().fit(x, y, epochs=1, verbose=0)
    assert capsys.readouterr().out == ""


def test_summary_lists_layers_and_param_counts(capsys):
    model = nn.Sequential(
        [nn.Dense(256, activation="relu", input_dim=784), nn.Dense(10, activation="softmax")]
    )
    model.summary()
    out = capsys.readouterr().out
    assert 'Model: "sequential"' in out
    assert "dense (Dense)" in out and "dense_1 (Dense)" in out
    assert "200,960" in out and "2,570" in out
    assert "Total params: 203,530" in out


def test_deferred_build_from_data():
    model = nn.Sequential(
        [nn.Dense(4, activation="relu"), nn.Dense(1, activation="sigmoid")], seed=0
    )
    assert model.get_weights() == []
    model.compile(optimizer="adam", loss="binary_crossentropy")
    model.fit(*two_moons(n=20), epochs=1)
    assert model.input_dim == 2 and model.get_weights()[0].shape == (2, 4)


def test_epochs_zero_and_initial_epoch_equal_epochs_train_nothing():
    x, y = two_moons(n=20)
    model = small_model()
    before = model.get_weights()
    assert model.fit(x, y, epochs=0).history == {"loss": [], "accuracy": []}
    model.fit(x, y, epochs=2, initial_epoch=2)
    for a, b in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


# --- learning --------------------------------------------------------------------------------


@pytest.mark.parametrize("make_data", [blobs_xor, two_moons], ids=["xor", "moons"])
def test_learns_to_over_97_percent(make_data):
    x, y = make_data(n=400)
    xt, yt = make_data(n=400, seed=1)
    model = nn.Sequential(
        [
            nn.Dense(16, activation="tanh", input_dim=2),
            nn.Dense(16, activation="tanh"),
            nn.Dense(1, activation="sigmoid"),
        ],
        seed=0,
    )
    model.compile(
        optimizer=nn.Adam(learning_rate=0.02), loss="binary_crossentropy", metrics=["accuracy"]
    )
    model.fit(x, y, batch_size=32, epochs=60)
    assert model.evaluate(xt, yt)["accuracy"] > 0.97


# --- callbacks -------------------------------------------------------------------------------


class Recorder(nn.Callback):
    def __init__(self):
        super().__init__()
        self.calls, self.weights, self.steps = [], [], []

    def on_train_begin(self, logs=None):
        self.calls.append("train_begin")

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(f"begin{epoch}")

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(f"end{epoch}")
        self.weights.append(self.model.get_weights())

    def on_train_end(self, logs=None):
        self.calls.append("train_end")


class BatchRecorder(nn.Callback):
    def __init__(self):
        super().__init__()
        self.steps, self.losses = [], []

    def on_train_batch_end(self, step, logs=None):
        self.steps.append(step)
        self.losses.append(logs["loss"])


def test_callback_protocol_and_batch_hook_only_when_overridden(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the base on_train_batch_end must not be called")

    monkeypatch.setattr(nn.Callback, "on_train_batch_end", fail)
    x, y = two_moons(n=50)
    rec, batches = Recorder(), BatchRecorder()
    hist = small_model().fit(x, y, batch_size=16, epochs=2, callbacks=[rec, batches])
    assert rec.calls == ["train_begin", "begin0", "end0", "begin1", "end1", "train_end"]
    assert batches.steps == list(range(1, 9))  # ceil(50/16) = 4 batches per epoch, global step
    assert all(type(v) is float for v in batches.losses)
    weighted = np.dot(batches.losses[:4], [16, 16, 16, 2]) / 50
    assert hist.history["loss"][0] == pytest.approx(weighted, rel=1e-12)


def test_stop_training_ends_after_current_epoch():
    class StopAt1(nn.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                self.model.stop_training = True

    hist = small_model().fit(*two_moons(n=30), epochs=10, callbacks=[StopAt1()])
    assert hist.epoch == [0, 1]


def test_early_stopping_restores_best_weights():
    x, y = two_moons(n=200)
    xv, yv = x[:100], 1 - y[:100]  # flipped labels: validation gets worse as training succeeds
    rec = Recorder()
    stop = nn.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    model = small_model(optimizer=nn.Adam(0.05))
    hist = model.fit(
        x, y, batch_size=32, epochs=30, validation_data=(xv, yv), callbacks=[rec, stop]
    )
    val = hist.history["val_loss"]
    best = int(np.argmin(val))
    assert stop.stopped_epoch == len(val) - 1 == best + 2
    assert stop.best_epoch == best
    for a, b in zip(model.get_weights(), rec.weights[best], strict=True):
        np.testing.assert_array_equal(a, b)


def test_early_stopping_mode_auto_and_missing_monitor():
    assert nn.EarlyStopping(monitor="val_accuracy").mode == "max"
    assert nn.EarlyStopping(monitor="loss").mode == "min"
    with pytest.raises(ValueError, match="'val_loss'.*validation_data"):
        small_model().fit(*two_moons(n=20), epochs=2, callbacks=[nn.EarlyStopping()])


def test_divergence_guard_stops_huge_learning_rate():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 2)).astype(np.float32)
    y = (x @ np.array([[3.0], [-2.0]], dtype=np.float32)) * 10
    model = nn.Sequential([nn.Dense(8, activation="relu", input_dim=2), nn.Dense(1)], seed=0)
    model.compile(optimizer=nn.SGD(learning_rate=5.0), loss="mse")
    guard = nn.DivergenceGuard()
    hist = model.fit(x, y, batch_size=8, epochs=50, callbacks=[guard])
    assert guard.diverged and guard.diverged_epoch == hist.epoch[-1] < 49
    last = hist.history["loss"][-1]
    assert not math.isfinite(last) or last > 10 * hist.history["loss"][0]

    calm = nn.DivergenceGuard()
    small_model().fit(*two_moons(n=64), epochs=5, callbacks=[calm])
    assert not calm.diverged and calm.diverged_epoch is None


def test_divergence_guard_reference_catches_a_run_wrecked_in_its_first_epoch():
    # Adam at lr=3 saturates BCE (~8, its clipped ceiling) within epoch 1: against that epoch
    # the run looks flat; against the untrained model's loss it is far above its start.
    x, y = two_moons(n=400)
    flat = nn.DivergenceGuard(factor=5.0)
    small_model(optimizer=nn.Adam(learning_rate=3.0)).fit(x, y, epochs=4, callbacks=[flat])
    model = small_model(optimizer=nn.Adam(learning_rate=3.0))
    start = model.evaluate(x, y)["loss"]
    guard = nn.DivergenceGuard(factor=5.0, reference=start)
    hist = model.fit(x, y, epochs=4, callbacks=[guard])
    assert hist.history["loss"][0] > 5.0 * start
    assert not flat.diverged
    assert guard.diverged and guard.diverged_epoch == 0 and guard.reference == start

    with pytest.raises(ValueError, match="reference must be"):
        nn.DivergenceGuard(reference=float("nan"))


# --- bad input -------------------------------------------------------------------------------


def compiled(loss="binary_crossentropy", units=1, act="sigmoid"):
    model = nn.Sequential(
        [nn.Dense(4, activation="relu", input_dim=2), nn.Dense(units, activation=act)]
    )
    model.compile(optimizer="adam", loss=loss, metrics=["accuracy"])
    return model


X = np.zeros((6, 2), dtype=np.float32)
Y = np.array([0, 1, 0, 1, 0, 1], dtype=np.float32)
NAN_X = X.copy()
NAN_X[2, 1] = np.nan
INF_Y = Y.copy()
INF_Y[3] = np.inf


@pytest.mark.parametrize(
    ("call", "error", "pattern"),
    [
        (lambda: compiled().fit(X, Y[:5]), ValueError, "6 samples but y has 5"),
        (lambda: compiled().fit(np.zeros((6, 3)), Y), ValueError, "3 features.*input_dim=2"),
        (lambda: compiled().fit(X[:, 0], Y), ValueError, "2-D.*reshape"),
        (lambda: compiled().fit(np.array([["a", "b"]] * 6), Y), TypeError, "numeric"),
        (lambda: compiled().fit(NAN_X, Y), ValueError, r"x contains NaN or inf.*\(2, 1\)"),
        (lambda: compiled().fit(X, INF_Y), ValueError, "y contains NaN or inf"),
        (lambda: compiled().fit(X, Y + 1), ValueError, r"binary_crossentropy needs y in \[0, 1\]"),
        (
            lambda: compiled("mse", 2, "linear").fit(X, np.zeros((6, 3))),
            ValueError,
            r"shape \(6, 3\).*2 unit",
        ),
        (
            lambda: compiled("sparse_categorical_crossentropy", 3, "softmax").fit(X, Y * 3),
            ValueError,
            r"class ids in \[0, 2\]",
        ),
        (
            lambda: compiled("sparse_categorical_crossentropy", 3, "softmax").fit(X, Y * 0.5),
            ValueError,
            "integer class ids",
        ),
        (
            lambda: compiled("categorical_crossentropy", 3, "softmax").fit(
                X, np.eye(4)[[0, 1, 2, 3, 0, 1]]
            ),
            ValueError,
            r"shape \(6, 4\).*3 unit",
        ),
        (
            lambda: compiled("categorical_crossentropy", 3, "softmax").fit(X, Y),
            ValueError,
            "one-hot.*sparse_categorical_crossentropy",
        ),
        (
            lambda: nn.Dense(3, activation="swish"),
            ValueError,
            "unknown activation 'swish'; valid: linear, relu",
        ),
        (
            lambda: compiled(loss="hinge"),
            ValueError,
            "unknown loss 'hinge'; valid: binary_crossentropy",
        ),
        (
            lambda: compiled().compile(optimizer="adagrad", loss="mse"),
            ValueError,
            "unknown optimizer 'adagrad'; valid: sgd, adam, rmsprop",
        ),
        (
            lambda: compiled().compile(loss="mse", metrics=["auc"]),
            ValueError,
            "unknown metric 'auc'; valid: accuracy",
        ),
        (lambda: compiled().fit(X, Y, batch_size=0), ValueError, "batch_size must be >= 1"),
        (lambda: compiled().fit(X, Y, batch_size=2.5), TypeError, "batch_size must be an integer"),
        (lambda: compiled().fit(X, Y, epochs=-1), ValueError, "epochs must be >= 0"),
        (lambda: nn.Adam(learning_rate=0), ValueError, "learning_rate must be a finite number > 0"),
        (
            lambda: nn.SGD(learning_rate=-0.1),
            ValueError,
            "learning_rate must be a finite number > 0",
        ),
        (lambda: nn.RMSprop(learning_rate=float("nan")), ValueError, "learning_rate"),
        (lambda: compiled().fit(X, Y, validation_split=1.5), ValueError, "validation_split"),
        (
            lambda: compiled().fit(X, Y, validation_data=(X, Y[:3])),
            ValueError,
            "x_val has 6 samples but y_val has 3",
        ),
        (lambda: small_uncompiled().fit(X, Y), ValueError, r"fit\(\) needs a compiled model"),
        (
            lambda: small_uncompiled().evaluate(X, Y),
            ValueError,
            r"evaluate\(\) needs a compiled model",
        ),
        (lambda: small_uncompiled().set_weights([np.zeros((2, 4))]), ValueError, "needs 4 arrays"),
        (lambda: nn.Sequential(dtype="float16"), ValueError, "unknown dtype.*float32, float64"),
        (lambda: nn.Dense(0), ValueError, "units must be a positive integer"),
        (lambda: nn.Sequential().compile(loss="mse"), ValueError, "no layers"),
        (lambda: compiled(loss=None), ValueError, "needs a loss"),
    ],
)
def test_bad_input_gets_a_clear_one_line_error(call, error, pattern):
    with pytest.raises(error, match=pattern) as info:
        call()
    assert "\n" not in str(info.value)


def small_uncompiled():
    return nn.Sequential(
        [nn.Dense(4, activation="relu", input_dim=2), nn.Dense(1, activation="sigmoid")]
    )


# --- evaluate over partial last batches: Keras 3's recorded numbers ------------------------------

EVALUATE = json.loads(
    (Path(__file__).resolve().parent / "fixtures" / "keras_evaluate.json").read_text()
)


@pytest.mark.parametrize("name", list(EVALUATE_CASES))
def test_evaluate_matches_recorded_keras_over_partial_batches(name):
    """Keras weights each batch's mean by its size: over 50 samples in batches of 16 the last
    batch of 2 counts 2/50, not 1/4. The fixture tells the two apart (its batch means are kept)."""
    units, activation, loss = EVALUATE_CASES[name]
    record = EVALUATE["cases"][name]
    model = nnlab_model({"output": (units, activation)})
    model.compile(optimizer="adam", loss=loss, metrics=["accuracy"])
    model.set_weights([np.array(w, np.float32) for w in record["weights"]])
    x, y = evaluate_data(make_data())
    assert len(x) == EVALUATE["n"]
    for batch_size, theirs in record["evaluate"].items():
        size = None if batch_size == "None" else int(batch_size)
        ours = model.evaluate(x, y, batch_size=size)
        assert set(ours) == set(theirs) - {"batch_losses"}
        for key in ours:
            assert ours[key] == pytest.approx(theirs[key], rel=1e-6, abs=1e-7), (batch_size, key)
        if len(x) % (size or 32):  # a partial last batch: a plain mean of the batch means is off
            plain = float(np.mean(theirs["batch_losses"]))
            assert abs(plain - theirs["loss"]) > 100 * max(1e-6 * theirs["loss"], 1e-7)


# --- cross-check against real Keras (skipped unless keras and jax are installed) -----------


KERAS_CASES = [
    ("adam", "binary_crossentropy", "sigmoid", 1),
    ("sgd_nesterov", "mse", "linear", 1),
    ("rmsprop_centered", "sparse_categorical_crossentropy", "softmax", 2),
]


@pytest.mark.slow  # importing jax and compiling take ~10 s
@pytest.mark.parametrize(
    ("opt", "loss", "act", "units"), KERAS_CASES, ids=[c[0] for c in KERAS_CASES]
)
def test_two_epochs_match_keras(opt, loss, act, units):
    import os

    os.environ.setdefault("KERAS_BACKEND", "jax")
    pytest.importorskip("jax")
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "jax":
        pytest.skip("keras is running another backend")
    optimizers = {
        "adam": (nn.Adam(0.01), keras.optimizers.Adam(0.01)),
        "sgd_nesterov": (
            nn.SGD(0.05, momentum=0.9, nesterov=True),
            keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
        ),
        "rmsprop_centered": (
            nn.RMSprop(0.01, centered=True),
            keras.optimizers.RMSprop(0.01, centered=True),
        ),
    }[opt]
    x, y = two_moons(n=100, seed=3)
    xv, yv = two_moons(n=40, seed=4)
    ours = nn.Sequential(
        [
            nn.Dense(16, activation="relu", input_dim=2),
            nn.Dense(8, activation="tanh"),
            nn.Dense(units, activation=act),
        ],
        seed=0,
    )
    ours.compile(optimizer=optimizers[0], loss=loss, metrics=["accuracy"])
    theirs = keras.Sequential(
        [
            keras.Input((2,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(8, activation="tanh"),
            keras.layers.Dense(units, activation=act),
        ]
    )
    theirs.compile(optimizer=optimizers[1], loss=loss, metrics=["accuracy"])
    theirs.set_weights(ours.get_weights())
    fit = {"batch_size": 16, "epochs": 2, "shuffle": False, "validation_data": (xv, yv)}
    h_ours = ours.fit(x, y, **fit).history
    h_theirs = theirs.fit(x, y, verbose=0, **fit).history
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(h_ours[key], h_theirs[key], rtol=1e-5, atol=1e-6, err_msg=key)
    for a, b in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_save_load_uncompiled_float64(tmp_path):
    model = nn.Sequential(
        [nn.Dense(3, activation="elu", input_dim=4), nn.Dense(2, activation="softmax")],
        seed=11,
        dtype="float64",
        name="tiny",
    )
    model.save(tmp_path / "tiny")  # NumPy appends .npz
    loaded = nn.load_model(tmp_path / "tiny.npz")
    x = np.random.default_rng(0).normal(size=(5, 4))
    assert loaded.loss is None and loaded.name == "tiny" and loaded.seed == 11
    assert loaded.predict(x).dtype == np.float64
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_unbuilt_model_cannot_be_saved(tmp_path):
    model = nn.Sequential([nn.Dense(3)])
    with pytest.raises(ValueError, match="unbuilt model"):
        model.save(tmp_path / "m.npz")


def test_finite_inputs_whose_sum_overflows_are_accepted_and_non_finite_ones_named():
    # the finiteness check sums first: an overflowing sum must fall back to element-wise
    big = np.full((6, 2), 3e38, dtype=np.float32)
    model = compiled()
    model.fit(big, Y, epochs=1, verbose=0)  # finite, although big.sum() is inf
    for bad in (np.inf, -np.inf, np.nan):
        x = big.copy()
        x[4, 0] = bad
        with pytest.raises(ValueError, match=r"x contains NaN or inf.*\(4, 0\)"):
            model.fit(x, Y, epochs=1, verbose=0)
