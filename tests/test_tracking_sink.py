"""nnlab.tracking against a real MLflow sqlite store in a temp dir (no training needed)."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import pytest

from nnlab import checkpoint, jobdir
from nnlab.config import ConfigError
from nnlab.tracking import schema, sweep, trial
from nnlab.tracking import store as mlstore
from nnlab.tracking.sink import MlflowSink

pytest.importorskip("mlflow")


@pytest.fixture(scope="module")
def launch_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("launch")


@pytest.fixture(scope="module")
def store(launch_dir: Path) -> tuple[str, str]:
    """One sqlite store for the module (creating one costs ~1.5 s): (uri, experiment_id)."""
    uri = mlstore.resolve_uri("sqlite:///mlflow.db", launch_dir)
    exp_id = mlstore.open_experiment(uri, "unit", "mlruns", launch_dir)
    return uri, exp_id


def _epochs(n: int) -> list[dict[str, float]]:
    return [
        {"loss": 1.0 / e, "accuracy": 0.5 + e / 100, "val_loss": 1.1 / e, "epoch_time": 0.01}
        for e in range(1, n + 1)
    ]


def test_resolve_uri_makes_sqlite_paths_absolute(tmp_path: Path) -> None:
    assert mlstore.resolve_uri("sqlite:///mlflow.db", tmp_path) == f"sqlite:///{tmp_path}/mlflow.db"
    assert mlstore.resolve_uri("sqlite:////abs/x.db", tmp_path) == "sqlite:////abs/x.db"
    assert mlstore.resolve_uri("http://127.0.0.1:5000", tmp_path) == "http://127.0.0.1:5000"


def test_flatten_and_hash_ignore_tracking_keys() -> None:
    cfg = {"lr": 0.1, "model": {"hidden": [4, 4], "seed": 0}, "tracking": {"rerun": False}}
    assert schema.flatten(cfg) == {
        "lr": 0.1,
        "model.hidden": [4, 4],
        "model.seed": 0,
        "tracking.rerun": False,
    }
    same = {**cfg, "tracking": {"rerun": True}, "report": {"enabled": True}}
    assert schema.config_hash(cfg) == schema.config_hash(same)
    assert schema.config_hash(cfg) != schema.config_hash({**cfg, "lr": 0.01})


def test_run_name_uses_the_overrides_that_vary() -> None:
    plain = {"lr": 0.01, "batch_size": 16, "epochs": 50}
    overrides = ["lr=0.01", "batch_size=16", "epochs=50", "data.n_samples=200"]
    name = trial.run_name(overrides, ["lr", "batch_size", "epochs"], plain)
    assert name == "lr=0.01 batch_size=16 epochs=50"
    single = trial.run_name(["optimizer=sgd", "tracking=none"], None, plain)
    assert single == "lr=0.01 batch_size=16 epochs=50 optimizer=sgd"


def test_store_is_created_once_with_artifacts_under_launch_dir(launch_dir: Path, store) -> None:
    uri, exp_id = store
    assert (launch_dir / "mlflow.db").is_file()
    exp = mlstore.client(uri).get_experiment(exp_id)
    assert exp.name == "unit"
    assert exp.artifact_location == (launch_dir / "mlruns" / exp_id).as_uri()
    with sqlite3.connect(launch_dir / "mlflow.db") as con:  # write-ahead log: cheaper commits
        assert con.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    # opening again finds the same experiment instead of creating a second one
    assert mlstore.open_experiment(uri, "unit", "mlruns", launch_dir) == exp_id


def test_sink_buffers_metrics_until_flush(tmp_path: Path, store) -> None:
    uri, exp_id = store
    sink = MlflowSink(uri, exp_id, "buffered", {"nnlab.role": "trial"}, {"lr": 0.1}, 3600)
    c = mlstore.client(uri)
    for epoch, logs in enumerate(_epochs(3), start=1):
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


def test_sink_flushes_when_the_interval_passed(store) -> None:
    uri, exp_id = store
    sink = MlflowSink(uri, exp_id, "live", {}, {}, flush_interval=0.0)
    sink.log_epoch(1, _epochs(1)[0])
    sink.log_batch_loss(7, 0.25)  # batch losses wait for the next flush
    assert len(mlstore.client(uri).get_metric_history(sink.run_id, "loss")) == 1
    assert mlstore.client(uri).get_metric_history(sink.run_id, "batch_loss") == []
    sink.finish("failed", {"nnlab.outcome": "failed"}, None)
    run = mlstore.client(uri).get_run(sink.run_id)
    assert run.info.status == "FAILED"
    assert [m.step for m in mlstore.client(uri).get_metric_history(sink.run_id, "batch_loss")] == [7]


def test_many_params_and_nan_metrics_are_stored(store) -> None:
    uri, exp_id = store
    params = {f"p{i}": i for i in range(250)}  # more than one log_batch allows
    sink = MlflowSink(uri, exp_id, "many", {}, params, flush_interval=3600)
    sink.log_epoch(1, {"loss": math.nan})
    sink.finish("diverged", {"nnlab.outcome": "diverged", "nnlab.stopped_epoch": "1"}, None)
    run = mlstore.client(uri).get_run(sink.run_id)
    assert len(run.data.params) == 250
    assert math.isnan(run.data.metrics["loss"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["nnlab.stopped_epoch"] == "1"


def test_finished_trials_maps_config_hash_to_run(launch_dir: Path, store) -> None:
    uri, _ = store
    exp_id = mlstore.open_experiment(uri, "skips", "mlruns", launch_dir)
    done = MlflowSink(uri, exp_id, "a", {"nnlab.role": "trial", "nnlab.config_hash": "h1"}, {}, 0)
    done.log_epoch(1, {"loss": 0.3, "val_loss": 0.4})
    done.finish("completed", {"nnlab.outcome": "completed"}, None)
    failed = MlflowSink(uri, exp_id, "b", {"nnlab.role": "trial", "nnlab.config_hash": "h2"}, {}, 0)
    failed.finish("failed", {"nnlab.outcome": "failed"}, None)
    found = mlstore.finished_trials(uri, exp_id)
    assert set(found) == {"h1"}  # a FAILED run is not a reason to skip
    assert found["h1"]["run_id"] == done.run_id
    assert found["h1"]["val_loss"] == pytest.approx(0.4)


def test_deleted_experiment_is_a_config_error(launch_dir: Path, store) -> None:
    uri, _ = store
    exp_id = mlstore.open_experiment(uri, "doomed", "mlruns", launch_dir)
    mlstore.client(uri).delete_experiment(exp_id)
    with pytest.raises(ConfigError, match="experiment_name='doomed'.*deleted"):
        mlstore.open_experiment(uri, "doomed", "mlruns", launch_dir)


# --- reliability: probes, reopening a run, the job dir's own copy --------------------------------


def test_probe_server_fails_fast_on_a_closed_port_and_passes_an_open_one() -> None:
    import socket
    import time

    with socket.socket() as listener:  # an open port
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        mlstore.probe_server(f"http://127.0.0.1:{port}")
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=rf"no MLflow server answers at 127.0.0.1:{port}"):
        mlstore.probe_server(f"http://127.0.0.1:{port}")  # closed now
    assert time.perf_counter() - t0 < mlstore.PROBE_TIMEOUT + 1
    mlstore.probe_server("sqlite:///x.db")  # not a server: nothing to probe


def test_reopened_run_gets_only_the_missing_steps(store) -> None:
    uri, exp_id = store
    first = MlflowSink(uri, exp_id, "cut", {"nnlab.role": "trial"}, {"lr": 0.1}, 0)
    for epoch, logs in enumerate(_epochs(2), start=1):
        first.log_epoch(epoch, logs)  # flushed (interval 0); then the process "dies"
    c = mlstore.client(uri)
    assert c.get_run(first.run_id).info.status == "RUNNING"

    history = {k: [e[k] for e in _epochs(4)] for k in _epochs(1)[0]}
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


def test_local_history_is_on_disk_after_every_epoch(tmp_path: Path) -> None:
    import csv
    import json

    local = jobdir.LocalHistory(tmp_path / "artifacts", tmp_path / "run.json", {"a": 1})
    assert json.loads((tmp_path / "run.json").read_text()) == {"a": 1}
    for epoch, logs in enumerate(_epochs(3), start=1):
        local.log_batch_loss(epoch * 10, 0.5)
        local.log_epoch(epoch, logs)
        rows = list(csv.DictReader((tmp_path / "artifacts" / "history.csv").open()))
        assert [int(r["epoch"]) for r in rows] == list(range(1, epoch + 1))
        assert float(rows[-1]["loss"]) == logs["loss"]  # full precision
    batch = (tmp_path / "artifacts" / "batch_loss.csv").read_text().splitlines()
    assert batch == ["step,batch_loss", "10,0.5", "20,0.5", "30,0.5"]
    local.write_meta(outcome="completed")
    assert json.loads((tmp_path / "run.json").read_text()) == {"a": 1, "outcome": "completed"}
    assert sorted(p.name for p in tmp_path.rglob("*")) == [
        "artifacts", "batch_loss.csv", "history.csv", "run.json",
    ]  # fmt: skip


def test_same_sweep_same_signature_and_dead_launchers() -> None:
    from types import SimpleNamespace

    cfg = SimpleNamespace(hydra=SimpleNamespace(overrides=SimpleNamespace(task=["lr=0.1"])))
    jobs = [["lr=0.1"], ["lr=0.01"]]
    assert sweep.sweep_signature("e", jobs, cfg) == sweep.sweep_signature("e", jobs, cfg)
    assert sweep.sweep_signature("e", jobs, cfg) != sweep.sweep_signature("f", jobs, cfg)
    assert sweep.sweep_signature("e", jobs, cfg) != sweep.sweep_signature("e", jobs[:1], cfg)
    me = sweep._launcher_tag()
    assert not sweep._launcher_gone(me)  # this process is alive
    host = me.rpartition(":")[0]
    assert sweep._launcher_gone(f"{host}:{2**22 + 12345}")  # above Linux's pid_max: no process
    assert not sweep._launcher_gone("another-host:1")  # cannot tell: assume alive
    assert not sweep._launcher_gone(None)


def test_store_calls_per_run_are_few_and_sqlite_commits_are_not_synced(store) -> None:
    uri, exp_id = store
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
        for epoch, logs in enumerate(_epochs(100), start=1):
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

    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    engine = SqlAlchemyStore(uri, "mlruns").engine  # connections nnlab's process opens
    with engine.connect() as con:
        assert con.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL (FULL is 2)
        assert con.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


class _Saver:
    def __init__(self) -> None:
        self.saved: list = []

    def __call__(self, state) -> None:
        self.saved.append((state.epoch, {k: list(v) for k, v in state.history.items()}))


def _state(epoch: int, history: dict, batches: list, finished: bool = False):
    from nnlab.train import TrainState

    return TrainState(epoch, {}, history, batches, finished)


def test_checkpoints_are_time_bounded_and_the_store_never_runs_ahead(store) -> None:
    uri, exp_id = store
    sink = MlflowSink(uri, exp_id, "bounded", {}, {}, flush_interval=0.0)
    saver = _Saver()
    sink.auto_flush = False  # as a trial with checkpoints sets it: flush only right after a save
    points = checkpoint.CheckpointSchedule(saver, interval=3600, after_save=sink.maybe_flush)
    history: dict[str, list[float]] = {}
    for epoch, logs in enumerate(_epochs(4), start=1):
        for k, v in logs.items():
            history.setdefault(k, []).append(v)
        points.on_state(_state(epoch, history, [], finished=epoch == 4))
        sink.log_epoch(epoch, logs)
        stored = mlstore.client(uri).get_metric_history(sink.run_id, "loss")
        # flush_interval=0, yet nothing reaches the store before a checkpoint holds it
        assert (len(stored), len(saver.saved)) == ((3, 1) if epoch == 4 else (0, 0))
    assert [s[0] for s in saver.saved] == [4]  # not every epoch: only the end (interval 1 h)

    every = _Saver()
    points = checkpoint.CheckpointSchedule(every, interval=0.0)
    for epoch in range(1, 4):
        points.on_state(_state(epoch, {"loss": [0.5] * epoch}, []))
    assert [s[0] for s in every.saved] == [1, 2, 3]  # interval 0: every epoch
    sink.finish("completed", {}, None)


def test_an_interruption_saves_the_last_epoch_end_cut_to_it(store) -> None:
    uri, exp_id = store
    sink = MlflowSink(uri, exp_id, "cut", {}, {}, flush_interval=3600)
    saver = _Saver()
    sink.auto_flush = False
    points = checkpoint.CheckpointSchedule(saver, interval=3600, after_save=sink.maybe_flush)
    history = {"loss": [0.9, 0.8]}
    batches = [(1, 0.9), (2, 0.8)]
    points.on_state(_state(2, history, batches))
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


def test_local_history_waits_for_its_interval(tmp_path: Path) -> None:
    local = jobdir.LocalHistory(tmp_path / "a", tmp_path / "run.json", {}, interval=3600)
    for epoch, logs in enumerate(_epochs(3), start=1):
        local.log_epoch(epoch, logs)
    assert not (tmp_path / "a" / "history.csv").exists()
    local.write()
    assert (tmp_path / "a" / "history.csv").read_text().count("\n") == 4
