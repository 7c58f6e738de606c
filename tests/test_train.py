"""train(cfg, sinks): real configs from conf/, real data and network, recording sinks."""

from __future__ import annotations

import contextlib
import functools
import io
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import CONF, QUIET, TINY, compose, weights_equal, with_values

from nnlab.config import ConfigError
from nnlab.train import FailAtEpoch, Sink, train


def config(*overrides: str, tiny: tuple[str, ...] = (*TINY, QUIET)):
    return compose(*tiny, *overrides)


class Recorder(Sink):
    def __init__(self, calls: list | None = None) -> None:
        self.info: dict = {}
        self.epochs: list[tuple[int, dict]] = []
        self.batches: list[tuple[int, float]] = []
        self.calls = calls if calls is not None else []  # (hook, self) in call order

    def on_train_begin(self, info):
        self.info = info
        self.calls.append(("begin", self))

    def log_epoch(self, epoch, logs):
        self.epochs.append((epoch, logs))
        self.calls.append(("epoch", self))

    def log_batch_loss(self, step, loss):
        self.batches.append((step, loss))
        self.calls.append(("batch", self))


def test_completed_run_reports_every_epoch_to_the_sink() -> None:
    sink = Recorder()
    result = train(config("epochs=4", "lr=0.05"), [sink])
    assert result.outcome == "completed" and result.stopped_epoch is None
    assert result.epochs_run == 4
    assert [e for e, _ in sink.epochs] == [1, 2, 3, 4]  # 1-based, as MLflow steps
    keys = {"loss", "accuracy", "val_loss", "val_accuracy", "epoch_time"}
    assert all(set(logs) == keys for _, logs in sink.epochs)
    assert all(logs["epoch_time"] > 0 for _, logs in sink.epochs)
    assert sink.info == {
        "dataset": "moons",
        "n_train": 160,
        "n_val": 40,
        "n_features": 2,
        "n_classes": 2,
    }
    assert result.history["loss"] == [logs["loss"] for _, logs in sink.epochs]
    assert result.history["loss"][-1] < result.history["loss"][0]  # it learns
    rows = result.rows()
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert rows[-1]["val_loss"] == result.final("val_loss")
    # binary task: one sigmoid unit
    assert result.model.get_weights()[-1].shape == (1,)


def test_every_hook_reaches_each_sink_in_list_order() -> None:
    calls: list = []
    first, second = Recorder(calls), Recorder(calls)
    # 160 training samples at batch 80: 2 steps per epoch, one batch loss each
    train(config("epochs=2", "batch_size=80", "trainer.batch_log_every=2"), [first, second])
    hooks = ["begin", "batch", "epoch", "batch", "epoch"]
    assert calls == [(hook, sink) for hook in hooks for sink in (first, second)]
    assert first.epochs == second.epochs and first.batches == second.batches
    assert first.info == second.info != {}
    train(config("epochs=1"))  # no sinks at all is fine
    with pytest.raises(TypeError, match=r"pass a list of sinks, e.g. train\(cfg, \[sink\]\)"):
        train(config("epochs=1"), first)  # type: ignore[arg-type]


def test_same_seed_same_history_other_seed_differs() -> None:
    a = train(config("epochs=3", "seed=1")).history
    b = train(config("epochs=3", "seed=1")).history
    c = train(config("epochs=3", "seed=2")).history
    assert a["loss"] == b["loss"] and a["val_loss"] == b["val_loss"]
    assert a["loss"] != c["loss"]


def test_absurd_learning_rate_diverges_and_stops() -> None:
    result = train(config("epochs=20", "lr=1e30", "optimizer=sgd"))
    assert result.outcome == "diverged"
    assert result.stopped_epoch == result.epochs_run < 20
    assert not math.isfinite(result.history["loss"][-1])


# Divergence tests force their outcome instead of relying on a chaotic trajectory (those differ
# between BLAS kernels): with data.noise=100 the moons labels are coin flips as far as x can tell,
# so a model made confident by a huge Adam step (every weight moves by ~lr) is wrong on about half
# the samples and its clipped cross-entropy is ~8, >10x the untrained ~0.7. With 160 training
# samples and batch_size=160 an epoch is one step, so epoch k's loss is the loss *before* step k:
# epoch 1 reports the untrained model itself.
COIN_FLIPS = ("data.noise=100",)
ONE_STEP = ("batch_size=160",)


def test_a_run_wrecked_in_its_first_epoch_is_diverged_a_noisy_one_completes() -> None:
    # 4 steps in epoch 1: the first at the untrained loss, three at ~8. A guard comparing with
    # epoch 1 could never stop epoch 1; against the untrained loss it is ~8x the factor-3 line
    wrecked = train(config(*COIN_FLIPS, "lr=100", "batch_size=40", "epochs=10"))
    assert wrecked.outcome == "diverged" and wrecked.stopped_epoch == wrecked.epochs_run == 1
    assert math.isfinite(wrecked.history["loss"][0]) and wrecked.history["loss"][0] > 4
    # lr=0.5 in one-step epochs bounces to ~2x the untrained loss (measured 1.43 vs 0.73) and
    # back: above epoch 1, below 3x, so it completes; the same run with factor 1.5 is stopped
    noisy = train(config(*COIN_FLIPS, *ONE_STEP, "lr=0.5", "epochs=4"))
    assert noisy.outcome == "completed" and noisy.epochs_run == 4
    untrained = noisy.history["loss"][0]
    assert 1.5 * untrained < noisy.history["loss"][1] < 3 * untrained
    tight = train(
        config(*COIN_FLIPS, *ONE_STEP, "lr=0.5", "epochs=4", "trainer.divergence_factor=1.5")
    )
    assert (tight.outcome, tight.stopped_epoch) == ("diverged", 2)
    assert tight.history["loss"] == noisy.history["loss"][:2]  # same run, the guard only stops it


def test_divergence_reference_is_the_same_on_resume() -> None:
    from nnlab.train import TrainState

    # epoch 1 is the untrained loss (~0.7), epoch 2 follows one lr=100 step (~8): diverged at 2
    cfg = config(*COIN_FLIPS, *ONE_STEP, "lr=100", "epochs=15")
    states: list[TrainState] = []
    whole = train(cfg, on_checkpoint=states.append)
    assert (whole.outcome, whole.stopped_epoch) == ("diverged", 2)
    assert math.isfinite(whole.history["loss"][1])  # stopped by the reference, not by a NaN
    # resumed after epoch 1, the guard measures the same seeded untrained model (~0.7), not the
    # restored weights (~8: 3x that is above the ~16 ceiling of the clipped loss, so a guard
    # measuring them would never stop) and stops at the same epoch
    first = states[0]
    state = TrainState(1, first.model_state, {k: v[:1] for k, v in first.history.items()})
    again = train(cfg, resume=state)
    assert (again.outcome, again.stopped_epoch) == (whole.outcome, whole.stopped_epoch)
    assert again.history["loss"] == whole.history["loss"]


def test_divergence_guard_can_be_turned_off() -> None:
    result = train(config("epochs=3", "lr=1e30", "optimizer=sgd", "trainer.divergence_factor=null"))
    assert result.outcome == "completed" and result.epochs_run == 3


def test_early_stopping_stops_and_says_where() -> None:
    # min_delta=100: only epoch 1 counts as an improvement (the clipped loss is < 17, so no later
    # one can fall by 100), whatever the trajectory; patience 2 then stops at epoch 3
    result = train(
        config(
            "epochs=200",
            "lr=0.3",
            "trainer.early_stopping.enabled=true",
            "trainer.early_stopping.patience=2",
            "trainer.early_stopping.monitor=val_loss",
            "trainer.early_stopping.min_delta=100",
        )
    )
    assert result.outcome == "early_stopped"
    assert result.stopped_epoch == result.epochs_run == 3


def test_fail_at_epoch_raises_after_reporting_that_epoch() -> None:
    sink = Recorder()
    with pytest.raises(FailAtEpoch, match="debug.fail_at_epoch=2"):
        train(config("epochs=5", "debug.fail_at_epoch=2"), [sink])
    assert [e for e, _ in sink.epochs] == [1, 2]


def test_batch_losses_every_n_steps() -> None:
    sink = Recorder()
    # 160 training samples at batch 16: 10 steps per epoch, 20 in all
    train(config("epochs=2", "batch_size=16", "trainer.batch_log_every=5"), [sink])
    assert [s for s, _ in sink.batches] == [5, 10, 15, 20]
    assert all(math.isfinite(v) for _, v in sink.batches)


def test_multiclass_csv_gets_a_softmax_output(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    centers = np.array([[0, 0], [4, 0], [0, 4]])
    labels = np.repeat([0, 1, 2], 40)
    x = centers[labels] + rng.normal(size=(120, 2))
    path = tmp_path / "three.csv"
    rows = [f"{a:.4f},{b:.4f},{c}" for (a, b), c in zip(x, labels, strict=True)]
    path.write_text("a,b,label\n" + "\n".join(rows) + "\n")
    cfg = config(
        "data=csv",
        f"data.path={path}",
        "data.target=label",
        "epochs=30",
        "lr=0.05",
        tiny=TINY[1:] + (QUIET,),
    )
    result = train(cfg)
    assert result.info["n_classes"] == 3
    assert result.model.get_weights()[-1].shape == (3,)  # 3 softmax units
    assert result.history["val_accuracy"][-1] > 0.8


def test_bad_config_fails_before_training() -> None:
    sink = Recorder()
    with pytest.raises(ConfigError, match=r"^lr=-1\.0: must be a number > 0"):
        train(config("lr=-1.0"), [sink])
    with pytest.raises(ConfigError, match="data: dataset 'moons'"):
        train(config("data.val_fraction=2"), [sink])
    assert sink.epochs == [] and sink.info == {}


def test_model_loss_can_force_softmax_or_refuse_many_classes(tmp_path: Path) -> None:
    result = train(config("epochs=2", "model.loss=sparse_categorical_crossentropy"))
    assert result.model.get_weights()[-1].shape == (2,)  # 2 softmax units for a binary task
    path = tmp_path / "three.csv"
    path.write_text("a,label\n" + "".join(f"{i},{i % 3}\n" for i in range(30)))
    csv_cfg = ["data=csv", f"data.path={path}", "data.target=label", "epochs=1"]
    auto = train(config(*csv_cfg, tiny=TINY[1:] + (QUIET,)))
    assert auto.model.get_weights()[-1].shape == (3,)
    with pytest.raises(ConfigError, match=r"has 3 classes .* but the loss needs binary 0/1 labels"):
        train(config(*csv_cfg, "model.loss=binary_crossentropy", tiny=TINY[1:] + (QUIET,)))


def test_a_model_too_big_for_memory_is_refused_before_anything_is_allocated() -> None:
    import tracemalloc

    # 2 -> 200000 -> 200000 -> 1: 40,001,000,001 parameters, ~596 GiB with Adam (4 float32 copies)
    sink = Recorder()
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError) as err:
            train(config("model.hidden=[200000,200000]"), [sink])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(err.value)
    assert peak < 50 * 2**20  # nothing of the model was allocated (numpy's allocations are traced)
    assert message.startswith("model.hidden=[200000, 200000]: 40,001,000,001 parameters need")
    assert re.search(r"at least 596\.1 GiB .* but only [\d,.]+ GiB of memory is", message)
    assert "use a smaller model.hidden" in message and "\n" not in message
    assert sink.info == {}  # refused before the sinks heard of a run


@pytest.mark.parametrize(
    "overrides",
    [
        ("model.hidden=[8]",),  # adam: m, v
        (
            "model.hidden=[32,16]",
            "model.loss=sparse_categorical_crossentropy",
            "model.dtype=float64",
        ),
        ("model.hidden=[8]", "optimizer=sgd"),  # no slot
        ("model.hidden=[8]", "optimizer=sgd", "optimizer.momentum=0.9"),
        ("model.hidden=[8]", "optimizer=rmsprop", "optimizer.centered=true"),
    ],
)
def test_memory_estimate_matches_the_arrays_a_fit_allocates(overrides) -> None:
    from nnlab.build import build_model, check_model_fits, fit_memory
    from nnlab.config import validate

    plain = validate(config(*overrides, tiny=()))
    n_params, needed, _ = fit_memory(plain["model"], 2, 2, plain["optimizer"])
    assert check_model_fits(plain["model"], 2, 2, plain["optimizer"]) == n_params  # it fits
    model = build_model(plain["model"], plain["optimizer"], 2, 2)
    model.fit(np.zeros((4, 2), np.float32), np.zeros(4, np.int64), epochs=1, verbose=0)
    assert n_params == model.count_params()
    weights = sum(w.nbytes for w in model.get_weights())
    assert needed == 2 * weights + sum(v.nbytes for v in model.optimizer.slots.values())


def test_epoch_delay_sleeps_outside_the_epoch_time() -> None:
    import time

    t0 = time.perf_counter()
    result = train(config("epochs=3", "debug.epoch_delay=0.1"))
    assert time.perf_counter() - t0 >= 0.3
    assert all(t < 0.1 for t in result.history["epoch_time"])


def test_a_swallowed_interrupt_still_stops_training_at_the_next_epoch() -> None:
    from nnlab import train as train_module

    sink = Recorder()
    try:
        with pytest.raises(KeyboardInterrupt):
            train_module.request_interrupt()  # as if SIGTERM arrived; imagine it was swallowed
        with pytest.raises(KeyboardInterrupt):
            train(config("epochs=5"), [sink])
    finally:
        train_module._INTERRUPT["requested"] = False
    assert sink.epochs == []  # stopped at the first epoch boundary


# --- config wiring: every trainer.*, model.* and optimizer.* key changes what is trained -------
#
# One row per key: run `a` and run `b` differ in that key only, and a check says what must then
# differ. A key that never reaches `fit` (say `trainer.shuffle` ignored by train()) makes `a` and
# `b` the same run and fails its row; a key added to conf/ without a row fails
# test_the_wiring_table_covers_every_key. trainer.checkpoint.* is read by the trial, not by
# train(): its table is in test_tracking_trial.py.

WIRED_BASE = (*TINY, QUIET, "epochs=2")  # 160 training samples: 5 steps per epoch at batch 32
ES = "trainer.early_stopping"
# 2-D blobs 20 std apart: separable, so the training accuracy reaches 1.0 within a few epochs
# and cannot improve on it, while the loss keeps falling
SEPARABLE = ("data=blobs", "data.separation=20", "data.noise=0.1")


@dataclass
class Trained:
    result: Any
    sink: Recorder
    stdout: str
    weights: list[list[np.ndarray]]  # at the end of each epoch

    @property
    def final(self) -> list[np.ndarray]:
        return self.result.model.get_weights()


@dataclass
class Row:
    """Run `a`: ``context`` composed, then ``a`` set; run `b`: ``b_context`` (default: the same)
    composed, ``a`` then ``b`` set. ``check(a, b)`` asserts what the key changed."""

    check: Callable[[Trained, Trained], None]
    b: dict[str, Any]
    a: dict[str, Any] = field(default_factory=dict)
    context: tuple[str, ...] = ()
    b_context: tuple[str, ...] | None = None


@functools.cache
def _composed(overrides: tuple[str, ...]) -> dict:
    from nnlab.config import validate

    return validate(compose(*WIRED_BASE, *overrides))


def _fit(context: tuple[str, ...], *values: dict[str, Any]) -> Trained:
    plain = with_values(_composed(context), {k: v for d in values for k, v in d.items()})
    sink, weights, out = Recorder(), [], io.StringIO()
    with contextlib.redirect_stdout(out):  # trainer.verbose prints
        result = train(plain, [sink], on_checkpoint=lambda s: weights.append(_weights(s)))
    return Trained(result, sink, out.getvalue(), weights)


def _weights(state) -> list[np.ndarray]:
    n = sum(k.startswith("weights/") for k in state.model_state)
    return [state.model_state[f"weights/{i}"].copy() for i in range(n)]


def trained_differently(a: Trained, b: Trained) -> None:
    assert not weights_equal(a.final, b.final), "the same weights: the key changed nothing"


def _optimizer(option: str, key: str, value: Any) -> Row:
    def check(a: Trained, b: Trained) -> None:
        assert b.result.model.optimizer.get_config()[key] == pytest.approx(value)
        trained_differently(a, b)

    a = {"optimizer.momentum": 0.9} if (option, key) == ("sgd", "nesterov") else {}
    return Row(check, {f"optimizer.{key}": value}, a, (f"optimizer={option}",))


def steps_per_epoch(a: Trained, b: Trained) -> None:
    assert (a.result.model.optimizer.iterations, b.result.model.optimizer.iterations) == (10, 20)


def epochs(a: Trained, b: Trained) -> None:
    assert (len(a.sink.epochs), len(b.sink.epochs)) == (2, 3)


def shuffled(a: Trained, b: Trained) -> None:
    # shuffling draws from the model's RNG; without it the RNG ends as it started
    from nnlab.build import build_model

    plain = _composed(())
    initial = build_model(plain["model"], plain["optimizer"], 2, 2).get_state()["rng"]
    trained_differently(a, b)
    assert not np.array_equal(a.result.model.get_state()["rng"], initial)
    assert np.array_equal(b.result.model.get_state()["rng"], initial)


def printed(a: Trained, b: Trained) -> None:
    assert a.stdout == "" and b.stdout.count("Epoch ") == 2, b.stdout


def outcomes(a_outcome: tuple, b_outcome: tuple) -> Callable[[Trained, Trained], None]:
    """(outcome, epochs run) of `a` and of `b`."""

    def check(a: Trained, b: Trained) -> None:
        got = [(t.result.outcome, t.result.epochs_run) for t in (a, b)]
        assert got == [a_outcome, b_outcome], [t.result.history["loss"] for t in (a, b)]

    return check


def monitored(a: Trained, b: Trained) -> None:
    # the loss falls every epoch: `a` runs to the end; accuracy reaches 1.0 and cannot improve
    assert (a.result.outcome, a.result.epochs_run) == ("completed", 6)
    assert b.result.outcome == "early_stopped", b.result.history["accuracy"]
    assert b.result.history["accuracy"][-2:] == [1.0, 1.0]


def restored(a: Trained, b: Trained) -> None:
    # min_delta=100: only epoch 1 counts as an improvement; patience 2 stops both at epoch 3
    assert a.result.epochs_run == b.result.epochs_run == 3
    assert weights_equal(a.final, a.weights[2])  # the last epoch's weights
    assert weights_equal(b.final, b.weights[0])  # the best (first) epoch's


def batch_losses(a: Trained, b: Trained) -> None:
    assert a.sink.batches == [] and [s for s, _ in b.sink.batches] == [5, 10]


def noise_scales(a: Trained, b: Trained) -> None:
    # measured and reported every epoch (history, sinks, history.csv rows); training unchanged
    assert all("noise_scale" not in logs for _, logs in a.sink.epochs)
    reported = [logs["noise_scale"] for _, logs in b.sink.epochs]
    assert len(reported) == 2 and all(v > 0 for v in reported)
    assert b.result.history["noise_scale"] == reported
    assert [r["noise_scale"] for r in b.result.rows()] == reported
    assert weights_equal(a.final, b.final)


def shapes(a: Trained, b: Trained) -> None:
    assert [w.shape for w in a.final] == [(2, 8), (8,), (8, 1), (1,)]
    assert [w.shape for w in b.final] == [(2, 4), (4,), (4, 1), (1,)]


def activation(a: Trained, b: Trained) -> None:
    assert [x["activation"] for x in b.result.model.get_config()["layers"]] == ["tanh", "sigmoid"]
    trained_differently(a, b)


def loss(a: Trained, b: Trained) -> None:
    assert b.result.model.get_config()["compile"]["loss"]["name"] == (
        "sparse_categorical_crossentropy"
    )
    assert (a.final[-1].shape, b.final[-1].shape) == ((1,), (2,))  # 1 sigmoid vs 2 softmax units


def dtype(a: Trained, b: Trained) -> None:
    assert {w.dtype.name for w in a.final} == {"float32"}
    assert {w.dtype.name for w in b.final} == {"float64"}


def seeded(a: Trained, b: Trained) -> None:
    assert not weights_equal(a.weights[0], b.weights[0]) and b.result.model.seed == 1


def optimizer_class(a: Trained, b: Trained) -> None:
    assert (type(a.result.model.optimizer).__name__, type(b.result.model.optimizer).__name__) == (
        "Adam",
        "SGD",
    )
    trained_differently(a, b)


WIRING: dict[str, Row] = {
    "trainer.batch_size": Row(steps_per_epoch, {"trainer.batch_size": 16}),
    "trainer.epochs": Row(epochs, {"trainer.epochs": 3}),
    "trainer.shuffle": Row(shuffled, {"trainer.shuffle": False}, {"trainer.shuffle": True}),
    "trainer.verbose": Row(printed, {"trainer.verbose": 1}, {"trainer.verbose": 0}),
    f"{ES}.enabled": Row(
        outcomes(("completed", 5), ("early_stopped", 2)),
        {f"{ES}.enabled": True},
        {f"{ES}.min_delta": 100.0, f"{ES}.patience": 0, "trainer.epochs": 5},
    ),
    f"{ES}.patience": Row(
        outcomes(("early_stopped", 2), ("early_stopped", 4)),
        {f"{ES}.patience": 3},
        {f"{ES}.enabled": True, f"{ES}.min_delta": 100.0, f"{ES}.patience": 1, "trainer.epochs": 6},
    ),
    # a small-lr run's training loss falls every epoch: with min_delta=0 it never stops
    f"{ES}.min_delta": Row(
        outcomes(("completed", 5), ("early_stopped", 2)),
        {f"{ES}.min_delta": 100.0},
        {f"{ES}.enabled": True, f"{ES}.monitor": "loss", f"{ES}.patience": 0, "trainer.epochs": 5},
    ),
    f"{ES}.monitor": Row(
        monitored,
        {f"{ES}.monitor": "accuracy"},  # mode auto: max
        {f"{ES}.enabled": True, f"{ES}.monitor": "loss", f"{ES}.patience": 0, "trainer.epochs": 6},
        SEPARABLE,
    ),
    f"{ES}.restore_best_weights": Row(
        restored,
        {f"{ES}.restore_best_weights": True},
        {f"{ES}.enabled": True, f"{ES}.min_delta": 100.0, f"{ES}.patience": 2, "trainer.epochs": 9},
    ),
    # the coin-flip run of test_a_run_wrecked_in_its_first_epoch...: its loss bounces to ~2x the
    # untrained loss at epoch 2, under 3x and above 1.5x
    "trainer.divergence_factor": Row(
        outcomes(("completed", 4), ("diverged", 2)),
        {"trainer.divergence_factor": 1.5},
        {
            "trainer.divergence_factor": 3.0,
            "trainer.epochs": 4,
            "trainer.batch_size": 160,
            "optimizer.learning_rate": 0.5,
        },
        (*COIN_FLIPS,),
    ),  # fmt: skip
    "trainer.batch_log_every": Row(batch_losses, {"trainer.batch_log_every": 5}),
    "trainer.noise_scale": Row(noise_scales, {"trainer.noise_scale": True}),
    "model.hidden": Row(shapes, {"model.hidden": [4]}),
    "model.activation": Row(activation, {"model.activation": "tanh"}),
    "model.loss": Row(loss, {"model.loss": "sparse_categorical_crossentropy"}),
    "model.dtype": Row(dtype, {"model.dtype": "float64"}),
    "model.seed": Row(seeded, {"model.seed": 1}),
    "optimizer.name": Row(
        optimizer_class, {}, context=("optimizer=adam",), b_context=("optimizer=sgd",)
    ),  # fmt: skip
    **{
        f"optimizer={option}.{key}": _optimizer(option, key, value)
        for option, key, value in [
            ("adam", "learning_rate", 0.05),
            ("adam", "beta_1", 0.5),
            ("adam", "beta_2", 0.9),
            ("adam", "epsilon", 0.1),
            ("rmsprop", "learning_rate", 0.05),
            ("rmsprop", "rho", 0.5),
            ("rmsprop", "momentum", 0.9),
            ("rmsprop", "epsilon", 0.1),
            ("rmsprop", "centered", True),
            ("sgd", "learning_rate", 0.05),
            ("sgd", "momentum", 0.9),
            ("sgd", "nesterov", True),  # with momentum 0.9 in both runs
        ]
    },
}
# keys that change nothing trained, and why
NOT_TRAINED = {
    "model.name": "names the architecture; mlp is the only one and build_model reads no name",
}


def _config_keys() -> set[str]:
    """Every trainer.* (but checkpoint), model.* and optimizer=<option>.* key in conf/."""
    from nnlab.tracking.schema import flatten

    keys = {
        k
        for k in flatten(_composed(()))
        if k.startswith(("trainer.", "model.")) and not k.startswith("trainer.checkpoint.")
    }
    for path in sorted((CONF / "optimizer").glob("*.yaml")):
        keys |= {f"optimizer={path.stem}.{k}" for k in _composed((f"optimizer={path.stem}",))[
            "optimizer"] if k != "name"}  # fmt: skip
    return keys | {"optimizer.name"}


def test_the_wiring_table_covers_every_key() -> None:
    assert set(WIRING) | set(NOT_TRAINED) == _config_keys()


@pytest.mark.parametrize("key", list(WIRING))
def test_each_config_key_changes_what_is_trained(key: str) -> None:
    row = WIRING[key]
    a = _fit(row.context, row.a)
    b = _fit(row.b_context if row.b_context is not None else row.context, row.a, row.b)
    row.check(a, b)
