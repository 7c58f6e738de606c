"""The tracking store breaks mid-run: nothing is lost and ``nnlab.recover`` puts it back.
Parallel writers: joblib workers on a fresh store file every trial correctly and completely.

Real parts only: the CLI in a subprocess, a real sqlite store that is overwritten with garbage
while a sweep writes to it (what a disk or sync error does), then restored from a backup.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from pathlib import Path

import pytest
from helpers import (
    TINY,
    cli,
    client,
    free_port,
    history_rows,
    running,
    runs,
    start_mlflow_server,
    stop_mlflow_server,
    wait_for_logged,
)


def local_history(job_dir: Path) -> list[dict]:
    return history_rows(job_dir / "artifacts" / "history.csv")


@pytest.mark.slow
def test_store_broken_mid_sweep_loses_nothing_and_recovers(make_launch_dir) -> None:
    tmp_path = make_launch_dir("lost")
    db = tmp_path / "mlflow.db"
    args = [
        "-m", "lr=0.1,0.01", "epochs=30", "experiment_name=lost", "debug.epoch_delay=0.3",
        "trainer.checkpoint.interval=0", "tracking.flush_interval=0", "hydra.sweep.dir=multirun/lost",
        *TINY,
    ]  # fmt: skip
    with running(tmp_path, *args) as proc:
        wait_for_logged(tmp_path, "lost", proc, "RUNNING", 2)  # trial 1 mid-run, filed live
        with sqlite3.connect(db) as src, sqlite3.connect(tmp_path / "backup.db") as dst:
            src.backup(dst)  # what a nightly backup would hold
        for wal in ("mlflow.db-wal", "mlflow.db-shm"):
            (tmp_path / wal).unlink(missing_ok=True)
        with db.open("r+b") as fh:  # the store now errors on every call
            fh.write(b"not a database " * 1000)
        out, err = proc.communicate(timeout=300)

    assert proc.returncode == 1, err
    sweep_dir = tmp_path / "multirun/lost"
    # seen live (the writer's error) or at the end (the file no longer holds the sweep)
    assert "not in MLflow    2" in out or "MLflow error on" in err, (out, err)
    assert f"python -m nnlab.recover {sweep_dir}" in out
    jobs = sorted(p.parent for p in sweep_dir.glob("*/run.json"))
    assert len(jobs) == 2
    for job in jobs:  # every epoch of both trials is on disk
        assert [int(r["epoch"]) for r in local_history(job)] == list(range(1, 31))
        assert json.loads((job / "run.json").read_text())["outcome"] == "completed"
    first_run = json.loads((jobs[0] / "run.json").read_text())["run_id"]
    assert first_run is not None  # created before the store broke (run.json says so)

    db.unlink()
    shutil.move(tmp_path / "backup.db", db)  # the store comes back, missing the rest
    before = {r.info.run_id: r for r in runs(db, "lost", "trial")}  # what the backup holds
    assert first_run in before and "RUNNING" in {r.info.status for r in before.values()}

    rec = cli(tmp_path, str(sweep_dir), module="nnlab.recover")
    assert rec.returncode == 0, rec.stderr
    assert f"updated run {first_run}" in rec.stdout
    assert "closed parent run" in rec.stdout
    by_id = {r.info.run_id: r for r in runs(db, "lost", "trial")}
    assert len(by_id) == 2 and first_run in by_id
    c = client(db)
    experiment_id = next(iter(before.values())).info.experiment_id
    parent = c.search_runs([experiment_id], "tags.`nnlab.role` = 'sweep'")[0]
    assert parent.info.status == "FINISHED"
    for job in jobs:
        run_id = json.loads((job / "run.json").read_text())["run_id"]
        run = by_id[run_id]
        assert run.info.status == "FINISHED" and run.data.tags["nnlab.outcome"] == "completed"
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.params["lr"] in ("0.1", "0.01")
        for metric in ("loss", "val_loss", "accuracy", "val_accuracy", "epoch_time"):
            history = c.get_metric_history(run_id, metric)
            assert sorted(m.step for m in history) == list(range(1, 31)), (run_id, metric)
            by_step = {m.step: m.value for m in history}
            assert [by_step[int(r["epoch"])] for r in local_history(job)] == [
                float(r[metric]) for r in local_history(job)
            ]
        assert "history.csv" in {a.path for a in c.list_artifacts(run_id)}

    again = cli(tmp_path, str(sweep_dir), module="nnlab.recover")  # idempotent
    assert again.returncode == 0 and again.stdout.count("already complete") == 2, again.stdout
    assert len(runs(db, "lost", "trial")) == 2
    assert sum(len(c.get_metric_history(r, "loss")) for r in by_id) == 60


@pytest.mark.slow
def test_store_gone_for_good_recovers_into_another(make_launch_dir) -> None:
    tmp_path = make_launch_dir("gone")
    args = [
        "epochs=40",
        "experiment_name=gone",
        "debug.epoch_delay=0.3",
        "trainer.checkpoint.interval=0",
        "hydra.run.dir=job",
        *TINY,
    ]
    with running(tmp_path, *args) as proc:
        wait_for_logged(tmp_path, "gone", proc, "RUNNING", 2)  # the run's writer is live
        for name in ("mlflow.db-wal", "mlflow.db-shm"):
            (tmp_path / name).unlink(missing_ok=True)
        (tmp_path / "mlflow.db").write_bytes(b"")  # truncated to nothing
        _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1
    assert "nothing is lost" in err and "python -m nnlab.recover" in err and "Traceback" not in err
    assert len(local_history(tmp_path / "job")) == 40

    new_db = tmp_path / "elsewhere" / "new.db"
    new_db.parent.mkdir()
    rec = cli(
        tmp_path,
        "job/artifacts/history.csv",
        "--tracking-uri",
        f"sqlite:///{new_db}",
        module="nnlab.recover",
    )
    assert rec.returncode == 0, rec.stderr
    (run,) = runs(new_db, "gone", "trial")
    assert run.info.status == "FINISHED" and run.data.tags["nnlab.recovered"] == "true"
    assert run.data.params["epochs"] == "40"
    loss = client(new_db).get_metric_history(run.info.run_id, "loss")
    assert sorted(m.step for m in loss) == list(range(1, 41))
    # artifacts next to the new store, the job's history among them
    (uploaded,) = (new_db.parent / "mlruns").rglob(f"{run.info.run_id}/artifacts/history.csv")
    assert history_rows(uploaded) == local_history(tmp_path / "job")


@pytest.mark.slow
@pytest.mark.parametrize("n_jobs", [2, 4])
def test_parallel_writers_file_every_trial_completely(tmp_path: Path, n_jobs: int) -> None:
    """24 trials on a fresh store (no mlflow.db yet), n_jobs loky workers writing at once."""
    proc = cli(
        tmp_path,
        "-m", "lr=0.1,0.03,0.01", "batch_size=16,32", "seed=0,1,2,3", "epochs=3",
        "hydra/launcher=joblib", f"hydra.launcher.n_jobs={n_jobs}", "experiment_name=par",
        *TINY, "trainer.batch_log_every=5",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "completed       24" in proc.stdout
    with sqlite3.connect(tmp_path / "mlflow.db") as con:
        exps = dict(con.execute("SELECT name, experiment_id FROM experiments"))
        assert set(exps) == {"Default", "par"}
        rows = con.execute(
            "SELECT r.run_uuid, r.experiment_id, r.status, "
            "(SELECT value FROM tags t WHERE t.run_uuid = r.run_uuid AND t.key = 'nnlab.role'), "
            "(SELECT value FROM tags t WHERE t.run_uuid = r.run_uuid AND t.key = 'mlflow.parentRunId') "
            "FROM runs r"
        ).fetchall()
        counts = con.execute(
            "SELECT run_uuid, key, COUNT(*), COUNT(DISTINCT step), MIN(step), MAX(step) "
            "FROM metrics GROUP BY run_uuid, key"
        ).fetchall()
    parents = [r for r in rows if r[3] == "sweep"]
    children = [r for r in rows if r[3] == "trial"]
    assert len(rows) == 25 and len(parents) == 1 and len(children) == 24
    assert {r[1] for r in rows} == {exps["par"]}  # nothing filed under Default
    assert {r[4] for r in children} == {parents[0][0]}
    assert {r[2] for r in rows} == {"FINISHED"}
    per_run: dict[str, dict] = {}
    for run_id, key, n, distinct, lo, hi in counts:
        if run_id != parents[0][0]:  # the parent carries the sweep's numbers (n_completed...)
            per_run.setdefault(run_id, {})[key] = (n, distinct, lo, hi)
    assert set(per_run) == {r[0] for r in children}
    for metrics in per_run.values():
        for key in ("loss", "accuracy", "val_loss", "val_accuracy", "epoch_time"):
            assert metrics[key] == (3, 3, 1, 3), key  # 3 epochs, each once
        n, distinct, lo, _ = metrics["batch_loss"]
        assert n == distinct and lo == 5  # every 5th optimizer step, each once
    jobs = [json.loads(p.read_text()) for p in tmp_path.glob("multirun/*/*/*/run.json")]
    assert len(jobs) == 24 and all(j["blas_threads"] == 1 for j in jobs)


SRV = ("--backend-store-uri", "sqlite:///srv.db")


@pytest.mark.slow
def test_server_dies_mid_run_and_the_run_is_completed_when_it_is_back(tmp_path: Path) -> None:
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    server = start_mlflow_server(tmp_path, port, *SRV)
    try:
        args = ["tracking=server", f"tracking.uri={uri}", "epochs=20", "debug.epoch_delay=0.3",
                "trainer.checkpoint.interval=0", "tracking.flush_interval=0", "hydra.run.dir=job",
                "experiment_name=srv", *TINY]  # fmt: skip
        with running(tmp_path, *args) as proc:
            wait_for_logged(tmp_path, "srv", proc, "RUNNING", 2, store="srv.db")  # writer live
            stop_mlflow_server(server)
            t_dead = time.monotonic()
            _, err = proc.communicate(timeout=300)
        assert time.monotonic() - t_dead < 60  # a dead server costs seconds, not MLflow's minutes
        assert proc.returncode == 1, err
        assert "the trial goes on" in err and "nothing is lost" in err
        assert [int(r["epoch"]) for r in local_history(tmp_path / "job")] == list(range(1, 21))
        run_id = json.loads((tmp_path / "job" / "run.json").read_text())["run_id"]

        server = start_mlflow_server(tmp_path, port, *SRV)  # back, with what it had before
        rec = cli(tmp_path, "job", module="nnlab.recover")
        assert rec.returncode == 0, rec.stderr
        assert f"updated run {run_id}" in rec.stdout
        from mlflow.tracking import MlflowClient

        c = MlflowClient(uri)
        run = c.get_run(run_id)
        assert run.info.status == "FINISHED" and run.data.tags["nnlab.outcome"] == "completed"
        for metric in ("loss", "val_loss"):
            assert sorted(m.step for m in c.get_metric_history(run_id, metric)) == list(
                range(1, 21)
            )
    finally:
        stop_mlflow_server(server)
