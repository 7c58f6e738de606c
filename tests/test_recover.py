"""``python -m nnlab.recover`` against a real sqlite store: job directories -> MLflow runs.

A job directory is written with nnlab's own writer (``nnlab.jobdir.LocalHistory``) as a trial
writes it; a run the store "half holds" is filed by the run writer from a job directory that held only
its first epochs, before the store broke (the run stays RUNNING).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import epoch_logs, file_now, history_rows, runs, steps
from helpers import write_job as helper_job

from nnlab import recover
from nnlab.jobdir import LocalHistory
from nnlab.tracking import store as mlstore
from nnlab.tracking.schema import RUN_FORMAT, SWEEP_FILE, run_display_name

METRICS = tuple(epoch_logs(1)[0])  # loss, accuracy, val_loss, epoch_time
PARAMS = {"lr": "0.1", "batch_size": "16", "epochs": "5", "model.hidden": "[8]"}
STEPS_PER_EPOCH = 5  # batch losses logged at steps 5, 10, ... (one per epoch)


@pytest.fixture(scope="module")
def store(make_launch_dir) -> tuple[Path, str]:
    """(launch dir, absolute sqlite URI) of a store shared by this module's tests."""
    base = make_launch_dir("recover")
    return base, mlstore.resolve_uri("sqlite:///mlflow.db", base)


def write_job(
    job: Path,
    uri: str | None,
    experiment: str,
    run_id: str | None,
    n_epochs: int,
    outcome: str = "completed",
    tags: dict[str, str] | None = None,
) -> Path:
    """A trial's job directory (``run.json``, ``artifacts/history.csv``, ``batch_loss.csv``)
    holding ``n_epochs`` epochs; returns its ``run.json``."""
    meta = {
        "format": RUN_FORMAT,
        "tracking_uri": uri,
        "experiment_name": experiment,
        "experiment_id": None,
        "run_id": run_id,
        "run_name": job.name,
        "params": dict(PARAMS),
        "tags": {"nnlab.role": "trial", "nnlab.config_hash": "0123456789abcdef", **(tags or {})},
        "outcome": "running",
        "tracked": None,
        "error": "OperationalError: the store broke",
    }
    local = LocalHistory(job / "artifacts", job / "run.json", meta)
    for epoch, logs in enumerate(epoch_logs(n_epochs), start=1):
        local.log_batch_loss(epoch * STEPS_PER_EPOCH, 1.0 / (10 * epoch))
        local.log_epoch(epoch, logs)
    local.write_meta(outcome=outcome)
    return job / "run.json"


def half_logged_run(uri: str, experiment: str, n_epochs: int, where: Path) -> str:
    """A run that holds the first ``n_epochs`` epochs (and their batch losses), left RUNNING:
    the run writer filed that much, then the store broke."""
    exp_id = mlstore.open_experiment(
        uri, experiment, "mlruns", Path(uri[len("sqlite:///") :]).parent
    )
    tags = {"nnlab.role": "trial", "nnlab.config_hash": "0123456789abcdef"}
    batches = [(e * STEPS_PER_EPOCH, 1.0 / (10 * e)) for e in range(1, n_epochs + 1)]
    run_file = helper_job(where, experiment, epoch_logs(n_epochs), tags=tags, params=PARAMS,
                          batches=batches)  # fmt: skip
    return file_now(uri, exp_id, run_file).run_id


def test_a_half_logged_run_gets_exactly_the_missing_steps(store, tmp_path: Path) -> None:
    base, uri = store
    run_id = half_logged_run(uri, "half", 2, tmp_path / "before")
    run_file = write_job(tmp_path / "job", uri, "half", run_id, 5)
    c = mlstore.client(uri)
    assert c.get_run(run_id).info.status == "RUNNING"
    assert steps(uri, run_id, "loss") == [1, 2]

    line = recover.recover_one(run_file, None)
    # epochs 3-5 of the 4 metrics, and their 3 batch losses
    assert line == (
        f"{tmp_path / 'job'}: updated run {run_id} in experiment 'half' "
        f"(15 metric values added, 5 epochs, outcome completed)"
    )
    rows = history_rows(tmp_path / "job" / "artifacts" / "history.csv")
    for metric in METRICS:
        logged = c.get_metric_history(run_id, metric)
        assert sorted(m.step for m in logged) == [1, 2, 3, 4, 5], metric  # each step once
        by_step = {m.step: m.value for m in logged}
        assert [by_step[int(r["epoch"])] for r in rows] == [float(r[metric]) for r in rows]
    assert steps(uri, run_id, "batch_loss") == [5, 10, 15, 20, 25]
    run = c.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["nnlab.outcome"] == "completed"
    assert run.data.tags["nnlab.recovered"] == "true"
    assert run.data.params == PARAMS  # logged once, when the run was created
    assert {a.path for a in c.list_artifacts(run_id)} == {"history.csv", "batch_loss.csv"}
    meta = json.loads(run_file.read_text())
    assert (meta["run_id"], meta["tracked"], meta["error"]) == (run_id, True, None)
    assert len(runs(uri, "half", "trial")) == 1  # no second run

    again = recover.recover_one(run_file, None)  # twice: nothing more
    assert again == f"{tmp_path / 'job'}: already complete: run {run_id} (5 epochs)"
    assert steps(uri, run_id, "loss") == [1, 2, 3, 4, 5]
    assert steps(uri, run_id, "batch_loss") == [5, 10, 15, 20, 25]


@pytest.mark.parametrize(
    ("outcome", "status"), [("completed", "FINISHED"), ("failed", "FAILED"), ("running", "KILLED")]
)
def test_a_run_the_store_never_had_is_created_whole(store, tmp_path, outcome, status) -> None:
    base, uri = store
    experiment = f"new-{outcome}"
    parent = "f" * 32  # a sweep parent this store does not hold
    tags = {"mlflow.parentRunId": parent, "nnlab.sweep_id": "s1"}
    elsewhere = "sqlite:////nonexistent/other.db"  # where it was trained
    run_file = write_job(tmp_path / "job", elsewhere, experiment, "0" * 32, 3, outcome, tags)

    line = recover.recover_one(run_file, uri)
    (run,) = runs(uri, experiment, "trial")
    shown = "killed" if outcome == "running" else outcome  # a run that never ended
    assert line == (
        f"{tmp_path / 'job'}: created run {run.info.run_id} in experiment {experiment!r} "
        f"(15 metric values added, 3 epochs, outcome {shown})"
    )
    # a run without a usable result is named by its outcome in the runs table
    assert run.info.status == status and run.info.run_name == run_display_name("job", shown)
    assert run.data.params == PARAMS
    assert run.data.tags["nnlab.outcome"] == shown
    assert run.data.tags["nnlab.recovered"] == "true"
    assert run.data.tags["nnlab.sweep_id"] == "s1"
    assert "mlflow.parentRunId" not in run.data.tags  # its parent is not in this store
    assert run.data.tags["nnlab.original_parent"] == parent
    for metric in METRICS:
        assert steps(uri, run.info.run_id, metric) == [1, 2, 3], metric
    assert steps(uri, run.info.run_id, "batch_loss") == [5, 10, 15]
    meta = json.loads(run_file.read_text())
    assert (meta["run_id"], meta["tracking_uri"]) == (run.info.run_id, uri)


def test_a_sweep_dir_recovers_every_job_and_closes_its_parent(store, tmp_path, capsys) -> None:
    base, uri = store
    exp_id = mlstore.open_experiment(uri, "swept", "mlruns", base)
    parent = mlstore.client(uri).create_run(exp_id, tags={"nnlab.role": "sweep"}).info.run_id
    sweep_dir = tmp_path / "multirun" / "s"
    (sweep_dir / SWEEP_FILE).parent.mkdir(parents=True)
    (sweep_dir / SWEEP_FILE).write_text(json.dumps({"uri": uri, "parent_run_id": parent}))
    for job in ("0", "1"):
        write_job(sweep_dir / job, uri, "swept", None, 2, tags={"mlflow.parentRunId": parent})

    assert recover.main([str(sweep_dir)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3 and all(": created run " in line for line in out[:2])
    assert out[2] == f"{sweep_dir}: closed parent run {parent} (FINISHED)"
    trials = runs(uri, "swept", "trial")
    assert len(trials) == 2
    assert {t.data.tags["mlflow.parentRunId"] for t in trials} == {parent}
    assert mlstore.client(uri).get_run(parent).info.status == "FINISHED"

    assert recover.main([str(sweep_dir)]) == 0  # again: nothing to do
    assert capsys.readouterr().out.count("already complete") == 2
    assert len(runs(uri, "swept", "trial")) == 2


def test_what_cannot_be_recovered_is_said_in_one_line(store, tmp_path, capsys) -> None:
    base, uri = store
    untracked = write_job(tmp_path / "untracked", None, "none", None, 2)  # tracking=none
    assert recover.recover_one(untracked, None) == (
        f"{tmp_path / 'untracked'}: skipped (trained with tracking=none; pass --tracking-uri "
        "to upload)"
    )
    (tmp_path / "empty").mkdir()
    assert recover.main([str(tmp_path / "empty")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"nnlab.recover: no run.json found under {tmp_path / 'empty'}"
    )
    with pytest.raises(SystemExit, match="no such file or directory"):
        recover.main([str(tmp_path / "missing")])
