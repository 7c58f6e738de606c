"""nnlab.tracking.trial: naming a trial, saving its last epoch end when it is interrupted."""

from __future__ import annotations

from helpers import SavedStates, train_state

from nnlab import checkpoint
from nnlab.tracking import store as mlstore
from nnlab.tracking import trial
from nnlab.tracking.sink import MlflowSink


def test_run_name_uses_the_overrides_that_vary() -> None:
    plain = {"lr": 0.01, "batch_size": 16, "epochs": 50}
    overrides = ["lr=0.01", "batch_size=16", "epochs=50", "data.n_samples=200"]
    name = trial.run_name(overrides, ["lr", "batch_size", "epochs"], plain)
    assert name == "lr=0.01 batch_size=16 epochs=50"
    single = trial.run_name(["optimizer=sgd", "tracking=none"], None, plain)
    assert single == "lr=0.01 batch_size=16 epochs=50 optimizer=sgd"


def test_an_interruption_saves_the_last_epoch_end_cut_to_it(tracking_store) -> None:
    _, uri, exp_id = tracking_store
    sink = MlflowSink(uri, exp_id, "cut", {}, {}, flush_interval=3600)
    saver = SavedStates()
    sink.auto_flush = False
    points = checkpoint.CheckpointSchedule(saver, interval=3600, after_save=sink.maybe_flush)
    history = {"loss": [0.9, 0.8]}
    batches = [(1, 0.9), (2, 0.8)]
    points.on_state(train_state(2, history, batches))
    sink.log_epoch(1, {"loss": 0.9})
    sink.log_epoch(2, {"loss": 0.8})
    for step, value in batches:
        sink.log_batch_loss(step, value)
    assert saver.saved == []
    # epoch 3 is under way when Ctrl-C lands: a batch loss and a part of its logs exist
    batches.append((3, 0.7))
    sink.log_batch_loss(3, 0.7)
    history["loss"].append(0.7)
    trial.save_on_interrupt(points, sink)
    assert [(s[0], s[1]) for s in saver.saved] == [(2, {"loss": [0.9, 0.8]})]
    sink.finish("killed", {"nnlab.outcome": "killed"}, None)
    c = mlstore.client(uri)
    assert [m.step for m in c.get_metric_history(sink.run_id, "batch_loss")] == [1, 2]
    assert [m.step for m in c.get_metric_history(sink.run_id, "loss")] == [1, 2]
