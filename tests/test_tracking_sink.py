"""How a job directory becomes an MLflow run (the run writer's filing, nnlab.tracking.writer and
the calls it shares in nnlab.tracking.upload), against a real sqlite store, no training needed."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from helpers import epoch_logs, file_now, write_job

from nnlab.tracking import store as mlstore
from nnlab.tracking.writer import RunWriter, Upload


def test_a_running_trial_is_live_and_its_end_files_the_rest(tmp_path: Path, tracking_store) -> None:
    _, uri, exp_id = tracking_store
    run_file = write_job(tmp_path / "live", "unit", epoch_logs(2), params={"lr": 0.1})
    up = file_now(uri, exp_id, run_file)  # what one poll sends while the trial trains
    c = mlstore.client(uri)
    assert c.get_run(up.run_id).info.status == "RUNNING"
    assert [m.step for m in c.get_metric_history(up.run_id, "loss")] == [1, 2]

    write_job(tmp_path / "live", "unit", epoch_logs(3), "completed", params={"lr": 0.1})
    (tmp_path / "live" / "artifacts" / "model.npz").write_bytes(b"weights")
    writer = RunWriter(up_context(uri, exp_id))
    writer.connect()
    writer.sync(up)  # the same Upload: only what it has not sent
    run = c.get_run(up.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"lr": "0.1"}
    assert run.data.tags["nnlab.outcome"] == "completed"
    history = c.get_metric_history(up.run_id, "loss")
    assert [m.step for m in history] == [1, 2, 3]  # each step once
    assert [m.value for m in history] == pytest.approx([1.0, 0.5, 1 / 3])
    assert {a.path for a in c.list_artifacts(up.run_id)} == {"history.csv", "model.npz"}


def up_context(uri: str, exp_id: str):
    from nnlab.sweep.context import SweepContext

    return SweepContext.from_dict({"uri": uri, "experiment_id": exp_id})


def test_many_params_and_nan_metrics_are_stored(tmp_path: Path, tracking_store) -> None:
    _, uri, exp_id = tracking_store
    params = {f"p{i}": i for i in range(250)}  # more than one log_batch allows
    run_file = write_job(
        tmp_path / "many",
        "unit",
        [{"loss": math.nan}],
        "diverged",
        params=params,
    )
    meta_end = {"nnlab.stopped_epoch": "1"}
    import json

    meta = json.loads(run_file.read_text())
    run_file.write_text(json.dumps(meta | {"end_tags": meta_end}))
    up = file_now(uri, exp_id, run_file)
    run = mlstore.client(uri).get_run(up.run_id)
    assert len(run.data.params) == 250
    assert math.isnan(run.data.metrics["loss"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["nnlab.stopped_epoch"] == "1"


def test_a_resumed_trial_continues_its_run_with_only_the_missing_steps(
    tmp_path: Path, tracking_store
) -> None:
    _, uri, exp_id = tracking_store
    digest = {"nnlab.config_hash": "cafe0123cafe0123"}
    first = file_now(uri, exp_id, write_job(tmp_path / "a", "unit", epoch_logs(2), tags=digest))
    c = mlstore.client(uri)
    assert c.get_run(first.run_id).info.status == "RUNNING"  # then its process "dies"

    resumed = {**digest, "nnlab.resumed_from_epoch": "2"}
    again = write_job(tmp_path / "b", "unit", epoch_logs(4), "completed", tags=resumed)
    up = file_now(uri, exp_id, again)
    assert up.run_id == first.run_id  # the interrupted run, continued
    run = c.get_run(first.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["nnlab.resumed_from_epoch"] == "2"
    history = {k: [e[k] for e in epoch_logs(4)] for k in epoch_logs(1)[0]}
    for key, values in history.items():
        logged = c.get_metric_history(first.run_id, key)
        assert [m.step for m in logged] == [1, 2, 3, 4], key
        assert [m.value for m in logged] == pytest.approx(values)
    # a trial that did not resume (no checkpoint) never writes into an old run
    fresh = file_now(uri, exp_id, write_job(tmp_path / "c", "unit", epoch_logs(1), tags=digest))
    assert fresh.run_id != first.run_id


def test_store_calls_per_run_are_few_off_sqlite(tmp_path: Path, tracking_store) -> None:
    """Through MLflow's API (a server's path; sqlite's is one transaction): create, datasets
    (none here), one log_batch of params + metrics + end tags, artifacts, status."""
    _, uri, exp_id = tracking_store
    writer = RunWriter(up_context(uri, exp_id))
    writer.connect()
    writer.bulk = False
    c = writer.client
    calls: list[str] = []
    originals = {n: getattr(c, n) for n in ("create_run", "log_batch", "set_terminated")}

    def counting(name):
        def call(*args, **kwargs):
            calls.append(name)
            return originals[name](*args, **kwargs)

        return call

    run_file = write_job(tmp_path / "few", "unit", epoch_logs(100), "completed", params={"a": 1})
    try:
        for name in originals:
            setattr(c, name, counting(name))
        up = Upload(0, run_file)
        writer.sync(up)
    finally:
        for name, fn in originals.items():
            setattr(c, name, fn)
    assert calls == ["create_run", "log_batch", "set_terminated"]
    run = c.get_run(up.run_id)
    assert run.data.tags["nnlab.outcome"] == "completed" and run.data.metrics["loss"] == 0.01
    assert len(c.get_metric_history(up.run_id, "val_loss")) == 100
