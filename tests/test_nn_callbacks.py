"""nnlab.nn.callbacks against Keras 3's recorded numbers: EarlyStopping with each of its arguments,
the LR callbacks' mode / verbose / one-argument schedule, DivergenceGuard's monitor.

The fits and what Keras printed are in tests/fixtures/keras_callbacks.json, made by
``record_callbacks`` in tests/fixtures/make_keras_fixtures.py (keras is not needed here). Every
fit uses batches of 10 over 48 training and 24 validation samples: partial last batches.
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import numpy as np
import pytest
from fixtures.make_keras_fixtures import (
    CALLBACK_BATCH_SIZE,
    CALLBACK_CASES,
    FIT_CASES,
    callback_model,
    make_data,
)

from nnlab import nn

FIXTURES = Path(__file__).resolve().parent / "fixtures"
RECORD = json.loads((FIXTURES / "keras_callbacks.json").read_text())
# Keras arguments nnlab does not have (its EarlyStopping cannot start late or beat a baseline)
NOT_IN_NNLAB = {
    "EarlyStopping": {"baseline", "start_from_epoch"},
    "ReduceLROnPlateau": {"kwargs"},
    "LearningRateScheduler": set(),
}


def fit(name: str):
    """nnlab's run of a CALLBACK_CASES case from the recorded initial weights."""
    weights = [np.array(w, np.float32) for w in RECORD["initial_weights"]]
    model, callback = callback_model(nn, weights, CALLBACK_CASES[name])
    data = make_data()
    history = model.fit(
        data["x_train"],
        data["y_train"],
        batch_size=CALLBACK_BATCH_SIZE,
        epochs=CALLBACK_CASES[name]["epochs"],
        shuffle=False,
        validation_data=(data["x_val"], data["y_val"]),
        callbacks=[callback],
    )
    return model, callback, history.history


def numbers(line: str) -> list[float]:
    return [float(n) for n in re.findall(r"\d+(?:\.\d+)?(?:e-?\d+)?", line)]


@pytest.mark.parametrize("name", list(CALLBACK_CASES))
def test_callback_matches_recorded_keras_fit(name: str, capsys) -> None:
    capsys.readouterr()
    model, callback, history = fit(name)
    printed = [line.strip() for line in capsys.readouterr().out.splitlines() if line.strip()]
    record = RECORD["cases"][name]
    assert set(history) == set(record["history"])  # learning_rate exactly where Keras logs it
    assert len(history["loss"]) == len(record["history"]["loss"])  # stopped at the same epoch
    for key, theirs in record["history"].items():
        np.testing.assert_allclose(history[key], theirs, rtol=1e-5, atol=2e-6, err_msg=key)
    # Adam divides by sqrt(v): float32 rounding differences reach ~5e-6 in the weights
    for ours, theirs in zip(model.get_weights(), record["final_weights"], strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5)  # incl. restored weights
    for attribute, value in record["state"].items():
        assert getattr(callback, attribute) == value, attribute
    # verbose: a line where Keras prints one, with the same epochs and rates. The wording of
    # EarlyStopping's restore line differs ("Restoring weights from the best epoch: 8" vs
    # Keras's "Restoring model weights from the end of the best epoch: 8.").
    assert len(printed) == len(record["printed"]), printed
    for ours, theirs in zip(printed, record["printed"], strict=True):
        assert ours.split()[0] == theirs.split()[0]  # "Epoch" / "Restoring"
        np.testing.assert_allclose(numbers(ours), numbers(theirs), rtol=1e-6)


def test_the_cases_set_every_argument_of_each_callback() -> None:
    """Each argument of nnlab's callbacks is set away from its default in a recorded case
    (here or in the schedule fixtures), and Keras has no argument nnlab lacks unnoticed."""
    cases = [c["callback"] for c in CALLBACK_CASES.values()]
    cases += [c["callback"] for c in FIT_CASES.values() if "callback" in c]
    for cls in (nn.EarlyStopping, nn.ReduceLROnPlateau, nn.LearningRateScheduler):
        name, params = cls.__name__, inspect.signature(cls).parameters
        for arg, param in params.items():
            assert any(n == name and arg in kw and kw[arg] != param.default for n, kw in cases), (
                f"{name}({arg}=...) is in no recorded case"
            )
        assert set(RECORD["signature"][name]) - set(params) == NOT_IN_NNLAB[name]


def test_the_recorded_cases_show_what_they_claim() -> None:
    cases = RECORD["cases"]
    # patience 2 stops two epochs after the best; patience 0 at the first epoch without one
    assert cases["es_val_loss_patience_2"]["state"] == {
        "stopped_epoch": 9,
        "best_epoch": 7,
        "wait": 2,
    }
    assert cases["es_patience_0"]["state"]["stopped_epoch"] == 8
    # restore_best_weights also restores when training was not stopped, and the best epoch is
    # not the last one there: the restored weights are not the final epoch's
    not_stopped = cases["es_restore_best_not_stopped_verbose"]
    assert not_stopped["state"]["stopped_epoch"] == 0 and not_stopped["state"]["best_epoch"] < 11
    # min_delta=-0.015 acts as 0.015; mode max on a falling loss stops at once
    assert cases["es_negative_min_delta_is_its_size"] == cases["es_loss_min_delta"]
    assert len(cases["es_loss_mode_max"]["history"]["loss"]) == 2
    assert len(cases["es_loss_min_delta"]["history"]["loss"]) < 20  # min_delta did stop it


def test_divergence_guard_watches_its_monitor() -> None:
    """No Keras counterpart. On flipped validation labels the validation loss climbs while the
    training loss falls: only the guard watching val_loss stops the run."""
    data = make_data()
    x, y, xv, yv = data["x_train"], data["y_train"], data["x_val"], 1 - data["y_val"]
    runs = {}
    for monitor in ("loss", "val_loss"):
        model = nn.Sequential(
            [nn.Dense(16, activation="relu", input_dim=2), nn.Dense(1, activation="sigmoid")],
            seed=0,
        )
        model.compile(optimizer=nn.Adam(0.05), loss="binary_crossentropy")
        start = model.evaluate(x, y)["loss"]
        guard = nn.DivergenceGuard(monitor=monitor, factor=2.0, reference=start)
        history = model.fit(x, y, epochs=30, validation_data=(xv, yv), callbacks=[guard])
        runs[monitor] = (guard, history.history)
    loss_guard, loss_history = runs["loss"]
    assert not loss_guard.diverged and len(loss_history["loss"]) == 30
    val_guard, val_history = runs["val_loss"]
    assert val_guard.diverged and val_guard.diverged_epoch == len(val_history["val_loss"]) - 1
    assert val_history["val_loss"][-1] > 2.0 * val_guard.reference
    with pytest.raises(ValueError, match="DivergenceGuard monitors 'val_accuracy'"):
        model.fit(x, y, epochs=1, callbacks=[nn.DivergenceGuard(monitor="val_accuracy")])
