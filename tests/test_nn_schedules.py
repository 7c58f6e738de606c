"""Learning-rate schedules and the LR callbacks: Keras's own test vectors, recorded Keras 3 numbers
(tests/fixtures, made by tests/fixtures/make_keras_fixtures.py), exact resume, errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from fixtures.make_keras_fixtures import (
    BATCH_SIZE,
    FIT_CASES,
    build,
    make_data,
    nnlab_model,
)

from nnlab import nn
from nnlab.nn import schedules

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def load_fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


# --- Keras's own test vectors (keras/src/optimizers/schedules/learning_rate_schedule_test.py) -


def test_exponential_decay_keras_vectors():
    assert schedules.ExponentialDecay(0.05, 10, 0.96)(5) == pytest.approx(0.05 * 0.96**0.5, 1e-6)
    stairs = schedules.ExponentialDecay(0.1, 3, 0.96, staircase=True)
    assert stairs(1) == stairs(2) == 0.1
    assert stairs(100) == pytest.approx(0.1 * 0.96 ** (100 // 3), 1e-6)


def test_piecewise_constant_keras_vectors():
    lr = schedules.PiecewiseConstantDecay([100, 110, 120], [1.0, 0.1, 0.01, 0.001])
    expected = {-999: 1.0, 100: 1.0, 105: 0.1, 110: 0.1, 120: 0.01, 999: 0.001}
    assert {step: lr(step) for step in expected} == expected
    lr = schedules.PiecewiseConstantDecay([1, 2, 3], [0.4, 0.5, 0.6, 0.7])
    assert [lr(step) for step in range(5)] == [0.4, 0.4, 0.5, 0.6, 0.7]


@pytest.mark.parametrize(
    ("step", "end_lr", "power", "cycle", "expected"),
    [
        (5, 0.0, 1.0, False, 0.05 * 0.5),
        (10, 0.001, 1.0, False, 0.001),
        (5, 0.001, 1.0, False, (0.05 + 0.001) * 0.5),
        (15, 0.001, 1.0, False, 0.001),
        (15, 0.001, 1.0, True, (0.05 - 0.001) * 0.25 + 0.001),
        (5, 0.0, 0.5, False, 0.05 * 0.5**0.5),
        (10, 0.001, 0.5, False, 0.001),
        (5, 0.001, 0.5, False, (0.05 - 0.001) * 0.5**0.5 + 0.001),
        (15, 0.001, 0.5, False, 0.001),
        (15, 0.001, 0.5, True, (0.05 - 0.001) * 0.25**0.5 + 0.001),
    ],
)
def test_polynomial_decay_keras_vectors(step, end_lr, power, cycle, expected):
    lr = schedules.PolynomialDecay(0.05, 10, end_lr, power=power, cycle=cycle)
    assert lr(step) == pytest.approx(expected, rel=1e-6)


def test_polynomial_decay_cycle_begins_at_initial_rate():
    assert schedules.PolynomialDecay(0.001, 10, cycle=True)(0) == pytest.approx(0.001, 1e-6)


def test_inverse_time_decay_keras_vectors():
    smooth = schedules.InverseTimeDecay(0.1, 10, 0.96)
    stairs = schedules.InverseTimeDecay(0.1, 10, 0.96, staircase=True)
    for i in range(11):
        assert smooth(i) == pytest.approx(0.1 / (1 + i / 10 * 0.96), 1e-6)
        assert stairs(i) == pytest.approx(0.1 / (1 + 0.96 * (i // 10)), 1e-6)


def np_cosine_decay(step, decay_steps, alpha=0.0):
    step = min(step, decay_steps)
    decay = 0.5 * (1.0 + math.cos(math.pi * step / decay_steps))
    return (1.0 - alpha) * decay + alpha


def np_cosine_decay_restarts(step, decay_steps, t_mul=2.0, m_mul=1.0, alpha=0.0):
    fac = 1.0
    while step >= decay_steps:
        step -= decay_steps
        decay_steps *= t_mul
        fac *= m_mul
    decay = fac * 0.5 * (1.0 + math.cos(math.pi * step / decay_steps))
    return (1.0 - alpha) * decay + alpha


@pytest.mark.parametrize("alpha", [0.0, 0.1])
def test_cosine_decay_keras_vectors(alpha):
    for step in range(0, 1500, 250):
        lr = schedules.CosineDecay(1.0, 1000, alpha)
        assert lr(step) == pytest.approx(np_cosine_decay(step, 1000, alpha), abs=1e-6)


def test_cosine_decay_warmup_keras_vectors():
    for step in range(0, 1500, 250):
        lr = schedules.CosineDecay(0.0, 10, warmup_target=10.0, warmup_steps=1500)
        assert lr(step) == pytest.approx(step / 1500 * 10.0, abs=1e-6)
    for step in range(0, 3000, 250):
        lr = schedules.CosineDecay(0.0, 1000, warmup_target=10.0, warmup_steps=2000)
        if step < 2001:
            expected = step / 2000 * 10.0
        else:
            expected = 10.0 * np_cosine_decay(step - 2000, 1000)
        assert lr(step) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("kwargs", [{}, {"alpha": 0.1}, {"m_mul": 0.9}, {"t_mul": 1.0}], ids=str)
def test_cosine_decay_restarts_keras_vectors(kwargs):
    for step in range(0, 1500, 250):
        lr = schedules.CosineDecayRestarts(1.0, 1000, **kwargs)
        assert lr(step) == pytest.approx(np_cosine_decay_restarts(step, 1000, **kwargs), abs=1e-6)


def test_fit_with_exponential_decay_matches_keras_vector():
    # Keras's TestFitLRSchedulesFlow: Dense(2) from ones, Adam on ExponentialDecay(0.05, 1, 0.9)
    model = nn.Sequential([nn.Dense(2, input_dim=2)], seed=0)
    model.compile(optimizer=nn.Adam(schedules.ExponentialDecay(0.05, 1, 0.9)), loss="mse")
    model.set_weights([np.ones((2, 2)), np.ones(2)])
    x = np.arange(32).reshape((16, 2))
    history = model.fit(x, x, epochs=3, batch_size=4, shuffle=False)
    assert model.optimizer.iterations == 4 * 3
    expected = [230.79457092285156, 128.30319213867188, 79.33648681640625]
    np.testing.assert_allclose(history.history["loss"], expected, rtol=5e-5)


# --- Keras's own callback test vectors (reduce_lr_on_plateau_test.py, ...scheduler_test.py) ----


def keras_callback_setup(optimizer):
    """Keras's setUp: 10 samples of 3 features, 2 one-hot classes, Dense(5) -> Dense(2), mse."""
    rng = np.random.default_rng(0)
    x, xv = rng.normal(size=(10, 3)), rng.normal(size=(10, 3))
    y, yv = np.eye(2)[rng.integers(0, 2, 10)], np.eye(2)[rng.integers(0, 2, 10)]
    model = nn.Sequential([nn.Dense(5, input_dim=3), nn.Dense(2)], seed=0)
    model.compile(optimizer=optimizer, loss="mse")
    return model, (x, y), (xv, yv)


def f32(value: float) -> np.float32:
    return np.float32(value)


@pytest.mark.parametrize(
    ("kwargs", "epochs", "expected"),
    [
        ({"min_delta": 100}, 2, 0.01),  # test_reduces_lr_with_model_fit
        ({"min_delta": 10, "min_lr": 0.005}, 4, 0.005),  # test_honors_min_lr
        ({"min_delta": 100, "cooldown": 2}, 4, 0.001),  # test_cooldown
    ],
    ids=["reduces", "min_lr", "cooldown"],
)
def test_reduce_lr_on_plateau_keras_vectors(kwargs, epochs, expected):
    model, train, val = keras_callback_setup(nn.Adam(0.1))
    reduce_lr = nn.ReduceLROnPlateau(patience=1, factor=0.1, monitor="val_loss", **kwargs)
    model.fit(*train, validation_data=val, callbacks=[reduce_lr], epochs=epochs)
    # Keras: assertEqual on the float32 variable; assertAllClose after two reductions
    assert f32(model.optimizer.learning_rate) == pytest.approx(f32(expected), rel=1e-6)
    if "cooldown" not in kwargs:
        assert f32(model.optimizer.learning_rate) == f32(expected)


def test_reduce_lr_on_plateau_at_min_lr_stops_counting_reductions():
    # Keras compares the float32 rate with np.float32(min_lr): float32(0.004) > 0.004, so a
    # float64 comparison would "reduce" 0.004 to 0.004 and restart the cooldown every time
    model, train, val = keras_callback_setup(nn.Adam(0.1))
    reduce_lr = nn.ReduceLROnPlateau(
        patience=1, factor=0.1, monitor="val_loss", min_delta=100, min_lr=0.004, cooldown=2
    )
    history = model.fit(*train, validation_data=val, callbacks=[reduce_lr], epochs=8)
    assert f32(model.optimizer.learning_rate) == f32(0.004)
    assert history.history["learning_rate"][-3:] == [float(f32(0.004))] * 3
    assert (reduce_lr.cooldown_counter, reduce_lr.wait) == (0, 3)


def test_reduce_lr_on_plateau_resets_across_fit_calls():
    model, _, _ = keras_callback_setup(nn.Adam(0.1))
    reduce_lr = nn.ReduceLROnPlateau(
        patience=1, factor=0.1, monitor="loss", min_delta=0, cooldown=2
    )
    reduce_lr.set_model(model)
    reduce_lr.on_train_begin()
    reduce_lr.best, reduce_lr.wait, reduce_lr.cooldown_counter = 0.5, 3, 2
    reduce_lr.on_train_begin()
    assert (reduce_lr.best, reduce_lr.wait, reduce_lr.cooldown_counter) == (None, 0, 0)


def test_learning_rate_scheduler_keras_vectors():
    model, train, _ = keras_callback_setup("sgd")
    model.fit(*train, callbacks=[nn.LearningRateScheduler(lambda epoch: 1.0 / (2.0 + epoch))])
    assert model.optimizer.learning_rate == 0.5
    model, train, _ = keras_callback_setup(nn.Adam(0.03))
    model.fit(*train, epochs=2, callbacks=[nn.LearningRateScheduler(lambda epoch, lr: lr / 2)])
    assert f32(model.optimizer.learning_rate) == f32(0.03) / 4
    model, train, _ = keras_callback_setup("sgd")
    history = model.fit(*train, callbacks=[nn.LearningRateScheduler(lambda epoch, lr: 0.5)])
    assert history.history["learning_rate"] == [0.5]
    assert type(history.history["learning_rate"][0]) is float


@pytest.mark.parametrize("make", [nn.ReduceLROnPlateau, lambda: nn.LearningRateScheduler(abs)])
def test_lr_callbacks_refuse_an_optimizer_with_a_schedule(make):
    model, train, val = keras_callback_setup(
        nn.Adam(schedules.PolynomialDecay(initial_learning_rate=0.1, decay_steps=10))
    )
    with pytest.raises(TypeError, match="LearningRateSchedule") as info:
        model.fit(*train, validation_data=val, callbacks=[make()], epochs=2)
    assert "\n" not in str(info.value)


# --- recorded Keras 3 numbers (tests/fixtures) ------------------------------------------------


def test_schedules_match_recorded_keras_values():
    record = load_fixture("keras_schedules.json")
    assert {c["class_name"] for c in record["cases"]} == set(schedules.SCHEDULES)
    worst = 0.0
    for case in record["cases"]:
        schedule = schedules.deserialize(case)
        ours = np.array([schedule(step) for step in case["steps"]])
        theirs = np.array(case["values"])
        # Keras evaluates in float32: agreement to float32 rounding of the rate's scale
        scale = max(case["config"].get("initial_learning_rate", 1.0), 1.0)
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-7 * scale, err_msg=str(case))
        worst = max(worst, float(np.max(np.abs(ours - theirs))))
    assert worst < 1e-6


def fit_case(name: str, dtype: str = "float32"):
    """nnlab's run of a FIT_CASES case from the recorded initial weights: (model, history)."""
    case = FIT_CASES[name]
    record = load_fixture(f"keras_fit_{name}.json")
    data = {k: np.array(v, np.float32) for k, v in load_fixture("keras_fit_data.json").items()}
    model = nnlab_model(case, dtype=dtype)
    optimizer, callbacks = build(case, nn)
    model.compile(optimizer=optimizer, loss=case["loss"], metrics=["accuracy"])
    model.set_weights([np.array(w) for w in record["initial_weights"]])
    history = model.fit(
        data["x_train"],
        data["y_train"],
        batch_size=BATCH_SIZE,
        epochs=case["epochs"],
        shuffle=False,
        validation_data=(data["x_val"], data["y_val"]),
        callbacks=callbacks,
    )
    return model, history.history, record


# Adam divides by sqrt(v): float32 rounding differences grow to ~5e-6 in the weights; the same
# fit with a constant rate differs from Keras as much (6e-6), so that is not the schedule
WEIGHT_ATOL = {"adam_cosine_warmup": 1e-5, "adam_reduce_lr_on_plateau": 1e-5}


@pytest.mark.parametrize("name", list(FIT_CASES))
def test_fit_matches_recorded_keras_run(name):
    model, history, record = fit_case(name)
    assert set(history) == set(record["history"])  # learning_rate exactly where Keras logs it
    for key, theirs in record["history"].items():
        np.testing.assert_allclose(history[key], theirs, rtol=1e-6, atol=2e-6, err_msg=key)
    for ours, theirs in zip(model.get_weights(), record["final_weights"], strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=WEIGHT_ATOL.get(name, 1e-6))


def test_recorded_plateau_runs_do_reduce_and_cool_down():
    # the fixtures exercise what they claim: several reductions; with cooldown=2, none in
    # consecutive epochs (cooldown=1 ends within the epoch after a reduction: no pause)
    for name, spacing in (("adam_reduce_lr_on_plateau", 2), ("sgd_reduce_lr_on_plateau_loss", 1)):
        rates = load_fixture(f"keras_fit_{name}.json")["history"]["learning_rate"]
        drops = [i for i in range(1, len(rates)) if rates[i] < rates[i - 1]]
        assert len(drops) >= 4 and min(np.diff(drops)) == spacing, (name, rates)


def test_fixture_data_is_what_the_script_makes():
    recorded = load_fixture("keras_fit_data.json")
    for key, values in make_data().items():
        np.testing.assert_array_equal(np.array(recorded[key], np.float32), values)


@pytest.mark.slow  # importing jax and compiling take ~10 s per case
@pytest.mark.parametrize("name", list(FIT_CASES))
def test_fit_matches_live_keras(name):
    import os

    os.environ.setdefault("KERAS_BACKEND", "jax")
    pytest.importorskip("jax")
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "jax":
        pytest.skip("keras is running another backend")
    from fixtures.make_keras_fixtures import keras_fit

    model, history, record = fit_case(name)
    data = {k: np.array(v, np.float32) for k, v in load_fixture("keras_fit_data.json").items()}
    theirs, weights = keras_fit(
        FIT_CASES[name], data, [np.array(w) for w in record["initial_weights"]]
    )
    assert set(history) == set(theirs)
    for key in theirs:
        np.testing.assert_allclose(history[key], theirs[key], rtol=1e-6, atol=2e-6, err_msg=key)
    for a, b in zip(model.get_weights(), weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=WEIGHT_ATOL.get(name, 1e-6))


# --- the optimizer side -------------------------------------------------------------------


def test_first_update_uses_the_schedule_at_step_zero():
    lr = schedules.PiecewiseConstantDecay([0, 1], [1.0, 0.5, 0.25])
    opt = nn.SGD(lr)
    w = np.zeros(1, np.float32)
    expected = []
    for rate in (1.0, 0.5, 0.25, 0.25):
        assert opt.learning_rate == rate  # the rate the next update uses
        opt.update(w, np.ones(1, np.float32))
        expected.append(-rate)
    assert w[0] == sum(expected) and opt.iterations == 4


def test_float64_model_uses_float64_rates():
    model, _, _ = fit_case("sgd_nesterov_exponential_staircase", dtype="float64")
    opt = model.optimizer
    assert opt.learning_rate == opt.schedule(opt.iterations)  # not rounded to float32
    assert model.get_weights()[0].dtype == np.float64


def test_learning_rate_setter():
    opt = nn.Adam(0.1)
    opt.learning_rate = 0.02
    assert opt.learning_rate == 0.02 and opt.get_config()["learning_rate"] == 0.02
    opt.learning_rate = schedules.CosineDecay(0.1, 10)  # Keras allows swapping in a schedule
    assert opt.learning_rate == 0.1
    with pytest.raises(TypeError, match="created with a LearningRateSchedule"):
        opt.learning_rate = 0.5
    with pytest.raises(ValueError, match=">= 0"):
        nn.SGD(0.1).learning_rate = -1.0


def test_constant_rate_updates_are_unchanged_by_schedule_support():
    # a constant ExponentialDecay and a number give bit-identical training
    x, y = make_data()["x_train"], make_data()["y_train"]
    runs = []
    for rate in (0.05, schedules.ExponentialDecay(0.05, 10, 1.0)):
        model = nnlab_model(FIT_CASES["adam_cosine_warmup"])
        model.compile(optimizer=nn.Adam(rate), loss="binary_crossentropy")
        runs.append((model.fit(x, y, epochs=3, batch_size=8).history, model.get_weights()))
    assert runs[0][0] == runs[1][0]
    for a, b in zip(runs[0][1], runs[1][1], strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", sorted(schedules.SCHEDULES))
def test_serialize_round_trip_and_optimizer_config(name):
    record = next(
        c for c in load_fixture("keras_schedules.json")["cases"] if c["class_name"] == name
    )
    schedule = schedules.deserialize(record)
    again = schedules.deserialize(json.loads(json.dumps(schedules.serialize(schedule))))
    assert again == schedule and [again(s) for s in record["steps"]] == [
        schedule(s) for s in record["steps"]
    ]
    opt = nn.optimizers.get(nn.Adam(schedule).get_config())
    assert opt.schedule == schedule and name in repr(opt)


def test_history_has_learning_rate_only_with_an_lr_callback():
    # as Keras 3: a schedule alone does not add learning_rate to the logs
    _, history, _ = fit_case("adam_cosine_warmup")
    assert "learning_rate" not in history
    _, history, _ = fit_case("sgd_learning_rate_scheduler")
    assert history["learning_rate"] == [float(f32(r)) for r in (0.2, 0.2, 0.1, 0.05)]


# --- exact resume ---------------------------------------------------------------------------


def resume_run(name: str, split: int, carry_callback_state: bool = True, via=None):
    """Fit ``name`` straight, and in two halves split after ``split`` epochs through
    ``get_state``/``set_state`` (or ``via(model) -> model``); return both (history, weights)."""
    case = FIT_CASES[name]
    data = make_data()
    xy = (data["x_train"], data["y_train"])
    fit = {"batch_size": BATCH_SIZE, "validation_data": (data["x_val"], data["y_val"])}

    def fresh():
        model = nnlab_model(case, seed=3)
        optimizer, callbacks = build(case, nn)
        model.compile(optimizer=optimizer, loss=case["loss"], metrics=["accuracy"])
        return model, callbacks

    model, callbacks = fresh()
    straight = model.fit(*xy, epochs=case["epochs"], callbacks=callbacks, **fit).history
    whole = (straight, model.get_weights())

    first, callbacks = fresh()
    part1 = first.fit(*xy, epochs=split, callbacks=callbacks, **fit).history
    state = first.get_state()
    if not carry_callback_state:
        state = {k: v for k, v in state.items() if not k.startswith("callbacks/")}
    if via is not None:
        second = via(first)
        _, callbacks = fresh()
    else:
        second, callbacks = fresh()
        second.set_state(state)
    part2 = second.fit(*xy, epochs=case["epochs"], initial_epoch=split, callbacks=callbacks, **fit)
    joined = {k: part1[k] + part2.history[k] for k in part1}
    return whole, (joined, second.get_weights()), callbacks, first


def assert_identical(a, b):
    assert a[0] == b[0]
    for x, y in zip(a[1], b[1], strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("name", ["adam_cosine_warmup", "rmsprop_piecewise"])
def test_resume_with_a_schedule_is_bit_identical(name):
    whole, resumed, _, first = resume_run(name, split=2)
    opt, end = first.optimizer, FIT_CASES[name]["epochs"] * 6
    assert opt.learning_rate != float(f32(opt.schedule(end)))  # split while the rate still moves
    assert_identical(whole, resumed)


def test_resume_mid_cooldown_is_bit_identical():
    name = "adam_reduce_lr_on_plateau"
    whole, resumed, callbacks, first = resume_run(name, split=5)
    state = first.get_state()
    assert int(state["callbacks/ReduceLROnPlateau/cooldown_counter"]) > 0  # mid-cooldown
    assert_identical(whole, resumed)
    # without the callback's state the resumed run reduces at other epochs: the state matters
    _, lost, _, _ = resume_run(name, split=5, carry_callback_state=False)
    assert lost[0]["learning_rate"] != whole[0]["learning_rate"]


def test_resume_through_a_saved_file(tmp_path):
    def save_and_load(model):
        model.save(tmp_path / "m.npz")
        return nn.load_model(tmp_path / "m.npz")

    for name in ("sgd_reduce_lr_on_plateau_loss", "adam_cosine_warmup"):
        whole, resumed, _, _ = resume_run(name, split=5, via=save_and_load)
        assert_identical(whole, resumed)


def test_state_with_another_schedule_is_refused():
    model, _, _ = fit_case("adam_cosine_warmup")
    other = nnlab_model(FIT_CASES["adam_cosine_warmup"])
    other.compile(optimizer=nn.Adam(schedules.CosineDecay(0.0, 25)), loss="binary_crossentropy")
    with pytest.raises(ValueError, match="saved with learning_rate schedule") as info:
        other.set_state(model.get_state())
    assert "\n" not in str(info.value)
    constant = nnlab_model(FIT_CASES["adam_cosine_warmup"])
    constant.compile(optimizer=nn.Adam(0.01), loss="binary_crossentropy")
    with pytest.raises(ValueError, match="has number 0.01"):
        constant.set_state(model.get_state())


# --- bad input: one-line errors -----------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "pattern"),
    [
        (lambda: schedules.ExponentialDecay(0.1, 0, 0.9), "ExponentialDecay: decay_steps must"),
        (lambda: schedules.CosineDecay(0.1, -5), "CosineDecay: decay_steps must"),
        (lambda: schedules.InverseTimeDecay(math.nan, 10, 0.5), "initial_learning_rate must"),
        (lambda: schedules.PolynomialDecay(0.1, 10, power=True), "power must be a number"),
        (lambda: schedules.PiecewiseConstantDecay([1, 2], [0.1]), "one more entry"),
        (lambda: schedules.PiecewiseConstantDecay([5, 2], [1, 2, 3]), "non-decreasing"),
        (lambda: schedules.CosineDecayRestarts(0.1, 10, t_mul=0.5), "t_mul must"),
        (lambda: schedules.deserialize({"class_name": "Foo"}), "unknown learning-rate schedule"),
        (lambda: nn.ReduceLROnPlateau(factor=1.0), "0 < factor < 1"),
        (lambda: nn.ReduceLROnPlateau(patience=-1), "patience must"),
        (lambda: nn.ReduceLROnPlateau(min_lr=-1), "min_lr must"),
    ],
)
def test_bad_arguments_are_one_line_errors(make, pattern):
    with pytest.raises(ValueError, match=pattern) as info:
        make()
    assert "\n" not in str(info.value)


def test_scheduler_returning_a_non_rate_is_a_one_line_error():
    model, train, _ = keras_callback_setup("sgd")
    with pytest.raises(ValueError, match="at epoch 0 returned 'fast'") as info:
        model.fit(*train, callbacks=[nn.LearningRateScheduler(lambda epoch: "fast")])
    assert "\n" not in str(info.value)


def test_plateau_monitor_missing_is_named():
    model, train, _ = keras_callback_setup("sgd")
    with pytest.raises(ValueError, match="monitors 'val_loss'.*validation_data"):
        model.fit(*train, callbacks=[nn.ReduceLROnPlateau()])
