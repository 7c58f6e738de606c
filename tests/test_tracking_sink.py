"""nnlab.tracking.sink: ``MlflowSink`` against a real MLflow sqlite store (no training needed)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from helpers import epoch_logs

from nnlab.tracking import store as mlstore
from nnlab.tracking.sink import MlflowSink


def test_sink_buffers_metrics_until_flush(tmp_path: Path, tracking_store) -> None:
    _, uri, exp_id = tracking_store
    sink = MlflowSink(uri, exp_id, "buffered", {"nnlab.role": "trial"}, {"lr": 0.1}, 3600)
    c = mlstore.client(uri)
    for epoch, logs in enumerate(epoch_logs(3), start=1):
        sink.log_epoch(epoch, logs)
    assert c.get_metric_history(sink.run_id, "loss") == []  # nothing written yet: one flush later
    (tmp_path / "art").mkdir()
    (tmp_path / "art" / "history.csv").write_text("epoch,loss\n1,1.0\n")
    sink.finish("completed", {"nnlab.outcome": "completed"}, tmp_path / "art")

    run = c.get_run(sink.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"lr": "0.1"}
    assert run.data.tags["nnlab.outcome"] == "completed"
    history = c.get_metric_history(sink.run_id, "loss")
    assert [m.step for m in history] == [1, 2, 3]
    assert [m.value for m in history] == pytest.approx([1.0, 0.5, 1 / 3])
    assert [a.path for a in c.list_artifacts(sink.run_id)] == ["history.csv"]
    assert sink.overhead > 0


def test_sink_flushes_when_the_interval_passed(tracking_store) -> None:
    _, uri, exp_id = tracking_store
    sink = MlflowSink(uri, exp_id, "live", {}, {}, flush_interval=0.0)
    sink.log_epoch(1, epoch_logs(1)[0])
    sink.log_batch_loss(7, 0.25)  # batch losses wait for the next flush
    assert len(mlstore.client(uri).get_metric_history(sink.run_id, "loss")) == 1
    assert mlstore.client(uri).get_metric_history(sink.run_id, "batch_loss") == []
    sink.finish("failed", {"nnlab.outcome": "failed"}, None)
    run = mlstore.client(uri).get_run(sink.run_id)
    assert run.info.status == "FAILED"
    assert [m.step for m in mlstore.client(uri).get_metric_history(sink.run_id, "batch_loss")] == [
        7
    ]


def test_many_params_and_nan_metrics_are_stored(tracking_store) -> None:
    _, uri, exp_id = tracking_store
    params = {f"p{i}": i for i in range(250)}  # more than one log_batch allows
    sink = MlflowSink(uri, exp_id, "many", {}, params, flush_interval=3600)
    sink.log_epoch(1, {"loss": math.nan})
    sink.finish("diverged", {"nnlab.outcome": "diverged", "nnlab.stopped_epoch": "1"}, None)
    run = mlstore.client(uri).get_run(sink.run_id)
    assert len(run.data.params) == 250
    assert math.isnan(run.data.metrics["loss"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["nnlab.stopped_epoch"] == "1"


def test_reopened_run_gets_only_the_missing_steps(tracking_store) -> None:
    _, uri, exp_id = tracking_store
    first = MlflowSink(uri, exp_id, "cut", {"nnlab.role": "trial"}, {"lr": 0.1}, 0)
    for epoch, logs in enumerate(epoch_logs(2), start=1):
        first.log_epoch(epoch, logs)  # flushed (interval 0); then the process "dies"
    c = mlstore.client(uri)
    assert c.get_run(first.run_id).info.status == "RUNNING"

    history = {k: [e[k] for e in epoch_logs(4)] for k in epoch_logs(1)[0]}
    again = MlflowSink(uri, exp_id, "cut", {"nnlab.resumed_from_epoch": "3"}, {}, 3600,
                                resume_run_id=first.run_id)  # fmt: skip
    assert again.run_id == first.run_id
    assert again.backfill({k: v[:3] for k, v in history.items()}, [(5, 0.5)]) == 4 + 1  # epoch 3
    again.log_epoch(4, {k: v[3] for k, v in history.items()})
    again.finish("completed", {"nnlab.outcome": "completed"}, None)
    run = c.get_run(first.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["nnlab.resumed_from_epoch"] == "3"
    assert run.data.params == {"lr": "0.1"}  # logged once, at creation
    for key, values in history.items():
        logged = c.get_metric_history(first.run_id, key)
        assert [m.step for m in logged] == [1, 2, 3, 4]
        assert [m.value for m in logged] == pytest.approx(values)


def test_store_calls_per_run_are_few(tracking_store) -> None:
    _, uri, exp_id = tracking_store
    c = mlstore.client(uri)
    calls: list[str] = []
    originals = {n: getattr(c, n) for n in ("create_run", "log_batch", "set_terminated")}

    def counting(name):
        def call(*args, **kwargs):
            calls.append(name)
            return originals[name](*args, **kwargs)

        return call

    try:
        for name in originals:
            setattr(c, name, counting(name))
        sink = MlflowSink(uri, exp_id, "few", {"a": "b"}, {"lr": 0.1}, 3600)
        for epoch, logs in enumerate(epoch_logs(100), start=1):
            sink.log_epoch(epoch, logs)
        sink.finish("completed", {"nnlab.outcome": "completed"}, None)
    finally:
        for name, fn in originals.items():
            setattr(c, name, fn)
    # create, params, metrics + outcome tags together, status
    assert calls == ["create_run", "log_batch", "log_batch", "set_terminated"]
    run = c.get_run(sink.run_id)
    assert run.data.tags["nnlab.outcome"] == "completed" and run.data.metrics["loss"] == 0.01
    assert len(c.get_metric_history(sink.run_id, "val_loss")) == 100
