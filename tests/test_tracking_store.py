"""nnlab.tracking.store: URIs, creating and opening a real sqlite store, probes, what it holds."""

from __future__ import annotations

import socket
import sqlite3
import time
from pathlib import Path

import pytest
from helpers import file_now, write_job

from nnlab.config import ConfigError
from nnlab.tracking import store as mlstore


def test_resolve_uri_makes_sqlite_paths_absolute(tmp_path: Path) -> None:
    assert mlstore.resolve_uri("sqlite:///mlflow.db", tmp_path) == f"sqlite:///{tmp_path}/mlflow.db"
    assert mlstore.resolve_uri("sqlite:////abs/x.db", tmp_path) == "sqlite:////abs/x.db"
    assert mlstore.resolve_uri("http://127.0.0.1:5000", tmp_path) == "http://127.0.0.1:5000"


def test_opening_the_store_creates_the_experiment_once_with_artifacts_under_launch_dir(
    tracking_store,
) -> None:
    launch_dir, uri, exp_id = tracking_store
    assert (launch_dir / "mlflow.db").is_file()
    exp = mlstore.client(uri).get_experiment(exp_id)
    assert exp.name == "unit"
    assert exp.artifact_location == (launch_dir / "mlruns" / exp_id).as_uri()
    with sqlite3.connect(launch_dir / "mlflow.db") as con:  # write-ahead log: cheaper commits
        assert con.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    # opening again finds the same experiment instead of creating a second one
    assert mlstore.open_experiment(uri, "unit", "mlruns", launch_dir) == exp_id


def test_sqlite_commits_are_not_synced(tracking_store) -> None:
    _, uri, _ = tracking_store
    mlstore.client(uri)  # installs the connect listener, as every nnlab process does
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    engine = SqlAlchemyStore(uri, "mlruns").engine  # connections nnlab's process opens
    with engine.connect() as con:
        assert con.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL (FULL is 2)
        assert con.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_finished_trials_maps_config_hash_to_run(tracking_store, tmp_path: Path) -> None:
    launch_dir, uri, _ = tracking_store
    exp_id = mlstore.open_experiment(uri, "skips", "mlruns", launch_dir)
    ok = write_job(tmp_path / "a", "skips", [{"loss": 0.3, "val_loss": 0.4}], "completed",
                   tags={"nnlab.config_hash": "h1"})  # fmt: skip
    done = file_now(uri, exp_id, ok)
    bad = write_job(tmp_path / "b", "skips", [], "failed", tags={"nnlab.config_hash": "h2"})
    file_now(uri, exp_id, bad)
    found = mlstore.finished_trials(uri, exp_id)
    assert set(found) == {"h1"}  # a FAILED run is not a reason to skip
    assert found["h1"]["run_id"] == done.run_id
    assert found["h1"]["val_loss"] == pytest.approx(0.4)


def test_deleted_experiment_is_a_config_error(tracking_store) -> None:
    launch_dir, uri, _ = tracking_store
    exp_id = mlstore.open_experiment(uri, "doomed", "mlruns", launch_dir)
    mlstore.client(uri).delete_experiment(exp_id)
    with pytest.raises(ConfigError, match="experiment_name='doomed'.*deleted"):
        mlstore.open_experiment(uri, "doomed", "mlruns", launch_dir)


def test_probe_server_fails_fast_on_a_closed_port_and_passes_an_open_one() -> None:
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
