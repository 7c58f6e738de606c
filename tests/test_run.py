"""``python -m nnlab.run`` end to end: the real Hydra CLI in a subprocess, a real sqlite store.

Each test launches from its own temp dir (the launch dir holds mlflow.db and mlruns/), with tiny
data so a trial takes milliseconds; most of the time is Python + mlflow start-up.
"""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import (
    TINY,
    cli,
    client,
    download,
    env,
    running,
    runs,
    steps,
    trial_lines,
    wait_until,
)


@pytest.fixture(scope="module")
def sweep(make_launch_dir) -> tuple[Path, subprocess.CompletedProcess]:
    """The 2 x 2 x 2 sweep of the issue, run once for the tests below."""
    cwd = make_launch_dir("sweep")
    proc = cli(
        cwd, "-m", "lr=0.1,0.01", "batch_size=16,64", "epochs=2,3", "experiment_name=grid",
        "hydra.sweep.dir=multirun/grid", *TINY,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return cwd, proc


def test_sweep_files_one_parent_and_eight_children(sweep, tmp_path: Path) -> None:
    cwd, proc = sweep
    parents = runs(cwd, "grid", "sweep")
    trials = runs(cwd, "grid", "trial")
    assert len(parents) == 1 and len(trials) == 8
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["nnlab.n_completed"] == "8"
    assert runs(cwd, "Default") == []  # nothing misfiled
    combos = set()
    for run in trials:
        p, tags = run.data.params, run.data.tags
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        assert tags["nnlab.sweep_id"] == parent.data.tags["nnlab.sweep_id"]
        assert tags["nnlab.outcome"] == "completed" and run.info.status == "FINISHED"
        assert {"mlflow.source.git.commit", "nnlab.git_dirty", "nnlab.version", "nnlab.job"} <= set(
            tags
        )
        assert len(tags["nnlab.config_hash"]) == 16
        # the resolved config: interpolations followed into the groups
        assert p["optimizer.learning_rate"] == p["lr"] and p["trainer.epochs"] == p["epochs"]
        assert p["data.n_samples"] == "200" and p["model.hidden"] == "[8]"
        assert (
            run.info.run_name == f"lr={p['lr']} batch_size={p['batch_size']} epochs={p['epochs']}"
        )
        combos.add((p["lr"], p["batch_size"], p["epochs"]))
        epochs = int(p["epochs"])
        for metric in ("loss", "accuracy", "val_loss", "val_accuracy", "epoch_time"):
            history = client(cwd).get_metric_history(run.info.run_id, metric)
            assert sorted(m.step for m in history) == list(range(1, epochs + 1)), metric
        artifacts = {a.path for a in client(cwd).list_artifacts(run.info.run_id)}
        assert artifacts == {"config.yaml", "overrides.yaml", "model.npz", "history.csv", "model"}
    assert len(combos) == 8

    run = trials[0]
    rows = list(csv.DictReader(download(cwd, run.info.run_id, "history.csv", tmp_path).open()))
    assert list(rows[0]) == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "epoch_time"]
    assert [int(r["epoch"]) for r in rows] == list(range(1, int(run.data.params["epochs"]) + 1))
    final = client(cwd).get_metric_history(run.info.run_id, "val_loss")[-1].value
    assert float(rows[-1]["val_loss"]) == pytest.approx(final)

    from nnlab import nn

    model = nn.load_model(download(cwd, run.info.run_id, "model.npz", tmp_path))
    assert model.get_weights()[0].shape == (2, 8)

    # the terminal: one line per finished trial, then the summary
    assert proc.stdout.count("] completed") == 8
    assert "completed        8" in proc.stdout
    assert f"parent run: {parent.info.run_id}" in proc.stdout
    assert "mlflow ui --backend-store-uri sqlite:///mlflow.db" in proc.stdout
    best = best_by_val_loss(trials)
    assert summary_line(proc.stdout, "best trial") == best_line(best)
    assert parent.data.tags["nnlab.best_run_id"] == best.info.run_id


def best_by_val_loss(trials: list):
    """The trial with the lowest final val_loss, read from the store."""
    return min(trials, key=lambda r: r.data.metrics["val_loss"])


def best_line(run, name: str | None = None) -> str:
    """The summary's best-trial line for ``run``: its name in this sweep (default: its run
    name), value (4 significant digits) and full run id."""
    value, name = run.data.metrics["val_loss"], name or run.info.run_name
    return f"best trial (lowest val_loss): {name}  val_loss={value:.4g}  run {run.info.run_id}"


def summary_line(stdout: str, start: str) -> str:
    (line,) = [x.strip() for x in stdout.splitlines() if x.strip().startswith(start)]
    return line


def test_each_trial_line_reports_its_own_run(sweep) -> None:
    cwd, proc = sweep
    by_name = {r.info.run_name: r for r in runs(cwd, "grid", "trial")}
    lines = trial_lines(proc.stdout)
    # a counter that only increases, whatever order the trials end in
    assert [int(x[1 : x.index("/")]) for x in lines] == list(range(1, 9))
    for i, line in enumerate(lines, start=1):
        name = line.split("completed", 1)[1].split("  loss=")[0].strip()
        m = by_name[name].data.metrics
        assert line.startswith(
            f"[{i}/8] completed     {name}  loss={m['loss']:.4g} val_loss={m['val_loss']:.4g} "
        ), line
        assert " elapsed " in line


@pytest.fixture(scope="module")
def rerun(sweep, make_launch_dir) -> dict:
    """The grid's store (a copy), swept again: one config it holds, one new (lr=0.001: it barely
    trains in 2 epochs, so the held config is the sweep's best); then the held one once more
    with tracking.rerun=true."""
    import sqlite3

    cwd = make_launch_dir("rerun")
    with sqlite3.connect(sweep[0] / "mlflow.db") as src, sqlite3.connect(cwd / "mlflow.db") as dst:
        src.backup(dst)
    grid = {r.info.run_id: r for r in runs(cwd, "grid", "trial")}
    common = ["-m", "batch_size=16", "epochs=2", "experiment_name=grid", *TINY]
    again = cli(cwd, *common, "lr=0.1,0.001", "hydra.sweep.dir=multirun/again")
    assert again.returncode == 0, again.stderr
    after_again = {r.info.run_id: r for r in runs(cwd, "grid", "trial")}
    forced = cli(cwd, *common, "lr=0.1", "tracking.rerun=true", "hydra.sweep.dir=multirun/forced")
    assert forced.returncode == 0, forced.stderr
    return {"cwd": cwd, "grid": grid, "again": again, "after_again": after_again, "forced": forced}


def test_a_finished_config_is_skipped_and_a_new_one_trains(rerun) -> None:
    grid, after, out = rerun["grid"], rerun["after_again"], rerun["again"].stdout
    (held,) = [
        r for r in grid.values()
        if (r.data.params["lr"], r.data.params["batch_size"], r.data.params["epochs"])
        == ("0.1", "16", "2")
    ]  # fmt: skip
    (new,) = [after[i] for i in set(after) - set(grid)]  # one new run: lr=0.001
    assert new.data.params["lr"] == "0.001" and new.data.tags["nnlab.outcome"] == "completed"
    assert f"{len(grid)} configs already have a FINISHED run in this experiment" in out
    source = f"parent {held.data.tags['mlflow.parentRunId'][:8]}"
    assert trial_lines(out)[0].startswith(
        f"[1/2] skipped       lr=0.1  (FINISHED run {held.info.run_id[:8]}, {source})"
    )
    assert trial_lines(out)[1].startswith("[2/2] completed     lr=0.001  loss=")
    assert summary_line(out, "skipped          1")
    assert summary_line(out, "skipped:") == (
        f"skipped: a FINISHED run of the same config exists (1 from {source}); "
        "tracking.rerun=true runs them again"
    )
    assert summary_line(out, "completed") == "completed        1"
    # nothing trained for the skipped trial: no job files, no run
    sweep_dir = rerun["cwd"] / "multirun" / "again"
    assert not (sweep_dir / "0" / "run.json").exists() and (sweep_dir / "1" / "run.json").is_file()
    # the best is chosen among the held run's stored values and the new run's; a skipped trial
    # is named by this sweep's overrides
    assert best_by_val_loss([held, new]) is held
    assert summary_line(out, "best trial") == best_line(held, "lr=0.1")
    (parent,) = [
        p for p in runs(rerun["cwd"], "grid", "sweep")
        if "lr=0.1,0.001" in p.data.params["sweep.overrides"]
    ]  # fmt: skip
    assert parent.data.tags["nnlab.n_skipped"] == "1"
    assert parent.data.tags["nnlab.n_completed"] == "1"
    assert parent.data.tags["nnlab.best_run_id"] == held.info.run_id


def test_rerun_true_trains_a_finished_config_again(rerun) -> None:
    out = rerun["forced"].stdout
    before, now = (
        rerun["after_again"],
        {r.info.run_id: r for r in runs(rerun["cwd"], "grid", "trial")},
    )
    (new,) = [now[i] for i in set(now) - set(before)]
    assert (new.data.params["lr"], new.data.params["batch_size"]) == ("0.1", "16")
    assert "already have a FINISHED run" not in out and "skipped" not in out
    assert trial_lines(out) and trial_lines(out)[0].startswith("[1/1] completed     ")


@pytest.mark.slow
def test_rerun_skips_finished_trials_unless_asked(sweep) -> None:
    cwd, _ = sweep
    args = ["-m", "lr=0.1,0.01", "batch_size=16,64", "epochs=2,3", "experiment_name=grid", *TINY]
    again = cli(cwd, *args, "hydra.sweep.dir=multirun/again")
    assert again.returncode == 0, again.stderr
    assert "8 configs already have a FINISHED run" in again.stdout
    assert "skipped          8" in again.stdout and "skipped: a FINISHED run" in again.stdout
    assert again.stdout.count("] skipped") == 8
    assert len(runs(cwd, "grid", "trial")) == 8  # no new trial runs

    forced = cli(cwd, *args, "tracking.rerun=true", "hydra.sweep.dir=multirun/forced")
    assert forced.returncode == 0, forced.stderr
    assert "skipped" not in forced.stdout
    assert len(runs(cwd, "grid", "trial")) == 16


def test_diverged_and_failed_trials_leave_the_rest_running(launch_dir: Path) -> None:
    tmp_path = launch_dir
    proc = cli(
        tmp_path, "-m", "lr=0.01,1e30", "debug.fail_at_epoch=null,2", "epochs=3",
        "experiment_name=bad", *TINY,
    )  # fmt: skip
    assert proc.returncode == 1  # a trial failed
    by_key = {
        (r.data.params["lr"], r.data.params["debug.fail_at_epoch"]): r
        for r in runs(tmp_path, "bad", "trial")
    }
    assert len(by_key) == 4
    ok = by_key[("0.01", "None")]
    assert ok.data.tags["nnlab.outcome"] == "completed" and ok.info.status == "FINISHED"

    diverged = by_key[("1e+30", "None")]
    assert diverged.data.tags["nnlab.outcome"] == "diverged"
    assert diverged.info.status == "FINISHED"
    assert diverged.data.tags["nnlab.stopped_epoch"] == "1"
    assert len(client(tmp_path).get_metric_history(diverged.info.run_id, "loss")) == 1

    failed = by_key[("0.01", "2")]
    assert failed.data.tags["nnlab.outcome"] == "failed" and failed.info.status == "FAILED"
    tb = download(tmp_path, failed.info.run_id, "traceback.txt", tmp_path).read_text()
    assert "FailAtEpoch: debug.fail_at_epoch=2" in tb and "Traceback" in tb
    assert len(client(tmp_path).get_metric_history(failed.info.run_id, "loss")) == 2  # flushed

    assert by_key[("1e+30", "2")].data.tags["nnlab.outcome"] == "diverged"  # stopped at epoch 1
    assert "failed           1" in proc.stdout and "diverged         2" in proc.stdout
    assert summary_line(proc.stdout, "best trial") == best_line(ok)  # the only usable one
    assert runs(tmp_path, "bad", "sweep")[0].data.tags["nnlab.n_failed"] == "1"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["lr=-1"], "nnlab: invalid config: lr=-1: must be a number > 0"),
        (
            ["batch_size=0", "epochs=2"],
            "nnlab: invalid config: batch_size=0: must be an integer >= 1",
        ),
        (["data.noise=-3"], "nnlab: invalid config: data: dataset 'moons': noise must be"),
        (["-m", "lr=0.1,-2", "epochs=2"], "nnlab: invalid config: trial `lr=-2 epochs=2`: lr=-2:"),
        (["-m", "model.activation=relu,nope"], "model.activation='nope': must be one of"),
        (["-m", "experiment_name=a,b"], "experiment_name and tracking.* must be the same"),
    ],
)
def test_bad_config_is_one_line_and_creates_no_run(tmp_path: Path, args, message) -> None:
    proc = cli(tmp_path, *args)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "mlflow.db").exists()  # no store, so certainly no run


def test_single_run_is_a_trial_without_parent(launch_dir: Path) -> None:
    tmp_path = launch_dir
    proc = cli(tmp_path, "epochs=3", "experiment_name=one", *TINY)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("Epoch ") == 3  # per-epoch progress
    (run,) = runs(tmp_path, "one")
    assert run.data.tags["nnlab.role"] == "trial" and "mlflow.parentRunId" not in run.data.tags
    assert run.data.tags["nnlab.outcome"] == "completed"
    assert (
        run.info.run_name
        == "lr=0.01 batch_size=32 epochs=3 experiment_name=one data.n_samples=200 model.hidden=[8]"
    )
    assert f"MLflow run {run.info.run_id}" in proc.stdout


def test_flagship_lr_1_is_tagged_diverged_at_epoch_1(launch_dir: Path) -> None:
    # clipped BCE: lr=1 Adam sits at ~8 from epoch 1 on (10x the untrained loss), never non-finite
    proc = cli(
        launch_dir, "+experiment=lr_vs_epochs", "lr=1", "batch_size=16", "epochs=5", "seed=0",
        "trainer.verbose=0",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("diverged: loss=7.") and "after 1 epochs" in proc.stdout
    (run,) = runs(launch_dir, "lr_vs_epochs")
    assert run.info.status == "FINISHED"
    assert run.data.tags["nnlab.outcome"] == "diverged"
    assert run.data.tags["nnlab.stopped_epoch"] == "1"


def test_tracking_none_trains_without_mlflow(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from nnlab.run import main\n"
        "sys.argv = ['nnlab.run', 'tracking=none', 'epochs=2', 'hydra.run.dir=out', "
        "'data.n_samples=200']\n"
        "main()\n"
        "print('mlflow imported:', 'mlflow' in sys.modules)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env=env(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "mlflow imported: False" in proc.stdout
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()
    files = {p.name for p in (tmp_path / "out" / "artifacts").iterdir()}
    # model/: the MLflow Model (nnlab.tracking.pyfunc), written without importing MLflow
    assert files == {"config.yaml", "overrides.yaml", "model.npz", "history.csv", "model"}
    assert (tmp_path / "out" / "artifacts" / "model" / "MLmodel").is_file()


@pytest.mark.slow
def test_joblib_on_a_fresh_store_files_every_run_under_the_parent(tmp_path: Path) -> None:
    proc = cli(tmp_path, "-m", "+experiment=quick", "hydra/launcher=joblib", "epochs=2")
    assert proc.returncode == 0, proc.stderr
    assert "ConfigStore schema" not in proc.stderr  # no Hydra deprecation noise from workers
    (parent,) = runs(tmp_path, "quick", "sweep")
    trials = runs(tmp_path, "quick", "trial")
    assert len(trials) == 4
    assert {r.data.tags["mlflow.parentRunId"] for r in trials} == {parent.info.run_id}
    assert all(r.info.status == "FINISHED" for r in trials)
    assert runs(tmp_path, "Default") == []
    assert parent.data.params["sweep.parallel"] == "True"
    jobs = [json.loads(p.read_text()) for p in tmp_path.glob("multirun/*/*/*/run.json")]
    assert [j["blas_threads"] for j in jobs] == [1, 1, 1, 1]  # one BLAS thread per trial
    assert {r.info.run_name for r in trials} == {
        f"lr={lr} batch_size={bs}" for lr in ("0.1", "0.01") for bs in (16, 64)
    }


@pytest.mark.slow
def test_sigterm_marks_the_running_trial_killed(launch_dir: Path) -> None:
    args = ["-m", "lr=0.1,0.01", "epochs=1000000", "experiment_name=long", *TINY]

    def first_trial_logged() -> bool:
        exp = client(launch_dir).get_experiment_by_name("long")
        trials = runs(launch_dir, "long", "trial") if exp else []
        return bool(trials and steps(launch_dir, trials[0].info.run_id, "loss"))

    with running(launch_dir, *args) as proc:
        wait_until(first_trial_logged, proc, "the first trial's epochs", interval=0.5)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, f"stdout:\n{out[-2000:]}\nstderr:\n{err[-4000:]}"
    (trial,) = runs(launch_dir, "long", "trial")  # the second trial never started
    assert trial.info.status == "KILLED" and trial.data.tags["nnlab.outcome"] == "killed"
    (parent,) = runs(launch_dir, "long", "sweep")
    assert parent.info.status == "KILLED"
    assert "Run the same command to resume" in err
