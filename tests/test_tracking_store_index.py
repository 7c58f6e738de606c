"""nnlab.tracking.store_index reads, without MLflow, what MLflow's own queries answer: the
FINISHED trials a sweep skips, the parent it may continue; and it refuses what it cannot be sure
of (another schema revision, a deleted experiment). Real sqlite stores, real MLflow runs."""

from __future__ import annotations

import math
import sqlite3
import time
from pathlib import Path

from helpers import client

from nnlab.tracking.schema import Tag
from nnlab.tracking.store import finished_trials, sqlite_path
from nnlab.tracking.store_index import head_revision, read_index


def _run(c, exp_id: str, tags: dict, status: str = "FINISHED", loss: float | None = None) -> str:
    from mlflow.entities import Metric

    run_id = c.create_run(exp_id, run_name=tags.get("name", "r"), tags=tags).info.run_id
    if loss is not None:
        now = int(time.time() * 1000)
        c.log_batch(
            run_id, metrics=[Metric("loss", loss, now, 1), Metric("val_loss", math.nan, now, 1)]
        )
    c.set_terminated(run_id, status)
    time.sleep(0.005)  # distinct start times: "the newest run of a config" is well defined
    return run_id


def test_index_answers_as_mlflow_does(tracking_store) -> None:
    _, uri, _ = tracking_store
    c = client(uri)
    exp = c.create_experiment(f"index-{time.time_ns()}")
    trial = {Tag.ROLE: "trial"}
    _run(c, exp, {**trial, Tag.CONFIG_HASH: "a", Tag.OUTCOME: "completed"}, loss=0.5)
    newest_a = _run(c, exp, {**trial, Tag.CONFIG_HASH: "a", Tag.OUTCOME: "diverged"}, loss=9.0)
    _run(c, exp, {**trial, Tag.CONFIG_HASH: "b", Tag.OUTCOME: "pruned"}, loss=0.1)
    _run(c, exp, {**trial, Tag.CONFIG_HASH: "c", Tag.OUTCOME: "failed"}, status="FAILED")
    deleted = _run(c, exp, {**trial, Tag.CONFIG_HASH: "d", Tag.OUTCOME: "completed"}, loss=0.2)
    c.delete_run(deleted)
    _run(c, exp, {**trial, Tag.CONFIG_HASH: "e", Tag.OUTCOME: "early_stopped"}, loss=math.inf)
    _run(c, exp, {**trial, Tag.CONFIG_HASH: "f"})  # no outcome tag, no metrics
    sweep = {Tag.ROLE: "sweep", Tag.SWEEP_HASH: "s1", Tag.SWEEP_ID: "id1", Tag.LAUNCHER: "h:1"}
    _run(c, exp, sweep, status="FINISHED")
    killed = _run(c, exp, sweep, status="KILLED")
    _run(c, exp, {**sweep, Tag.SWEEP_HASH: "other"}, status="KILLED")

    name = c.get_experiment(exp).name
    index = read_index(sqlite_path(uri), name, "s1")
    assert index is not None and index.experiment_id == exp
    want = finished_trials(uri, exp)
    assert set(index.finished) == set(want) == {"a", "e", "f"}
    assert index.finished["a"]["run_id"] == newest_a
    for digest, record in want.items():  # NaN as NaN, inf as MLflow stores it
        got = index.finished[digest]
        assert {k: str(v) for k, v in got.items()} == {k: str(v) for k, v in record.items()}
    run_id, status, tags = index.parent
    assert (run_id, status) == (killed, "KILLED") and tags[Tag.SWEEP_ID] == "id1"
    assert read_index(sqlite_path(uri), name, "none-such").parent is None
    assert read_index(sqlite_path(uri), "no experiment of that name", "s1").experiment_id is None


def test_index_refuses_what_it_cannot_be_sure_of(tracking_store, tmp_path: Path) -> None:
    base, uri, _ = tracking_store
    c = client(uri)
    name = f"gone-{time.time_ns()}"
    c.delete_experiment(c.create_experiment(name))
    assert head_revision() is not None
    assert read_index(sqlite_path(uri), name, "s") is None  # deleted: MLflow says what to do
    copy = tmp_path / "old.db"
    with sqlite3.connect(sqlite_path(uri)) as src, sqlite3.connect(copy) as dst:
        src.backup(dst)
    with sqlite3.connect(copy) as con:
        con.execute("UPDATE alembic_version SET version_num = 'an0ther0ne'")
    assert read_index(copy, "unit", "s") is None  # another schema revision
    with sqlite3.connect(copy) as src, sqlite3.connect(tmp_path / "bare.db") as dst:
        src.backup(dst)
    with sqlite3.connect(tmp_path / "bare.db") as con:
        con.execute("DROP TABLE tags")
        con.execute("UPDATE alembic_version SET version_num = ?", (head_revision(),))
    assert read_index(tmp_path / "bare.db", "unit", "s") is None  # not the tables it reads
