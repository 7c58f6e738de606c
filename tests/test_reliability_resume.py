"""Exact resume: checkpoints, ``kill -9`` and Ctrl-C through the real CLI, a real sqlite store.

The end-to-end tests make training slow with ``debug.epoch_delay`` (a sleep before each epoch,
not part of the config hash) and interrupt the process once its checkpoint file shows enough
epochs, so the kill lands mid-run deterministically.
"""

from __future__ import annotations

import copy
import json
import signal
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    QUIET,
    TINY,
    cli,
    client,
    compose,
    history_rows,
    rerun_resumes_parent,
    running,
    runs,
    steps,
    wait_for_epoch,
    wait_for_logged,
    weights_equal,
)

from nnlab.checkpoint import Checkpointer
from nnlab.train import TrainState, train


def config(*overrides: str):
    return compose(*TINY, QUIET, *overrides)


def without_time(history: dict) -> dict:
    return {k: v for k, v in history.items() if k != "epoch_time"}


# --- in-process: train(resume=...) through a real checkpoint file ------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        ["optimizer=adam"],
        ["optimizer=sgd", "optimizer.momentum=0.9", "trainer.batch_log_every=3"],
        # early stopping with best weights: its state is rebuilt by replaying the saved logs
        [
            "trainer.early_stopping.enabled=true",
            "trainer.early_stopping.patience=2",
            "trainer.early_stopping.restore_best_weights=true",
            "lr=0.3",
            "epochs=40",
        ],
    ],
    ids=["adam", "sgd-momentum-batch-loss", "early-stopping"],
)
def test_resume_from_any_epoch_is_bit_identical(tmp_path: Path, extra: list[str]) -> None:
    cfg = config("epochs=8", "seed=3", *extra)
    states: list[TrainState] = []
    full = train(cfg, on_checkpoint=lambda s: states.append(copy.deepcopy(s)))
    assert len(states) == full.epochs_run and states[-1].finished
    assert not any(s.finished for s in states[:-1])
    ckpt = Checkpointer(tmp_path / "c.npz")
    for k in sorted({1, len(states) // 2, len(states) - 1, len(states)} - {0}):  # last: finished
        ckpt.save(states[k - 1], {"config_hash": "h"})
        saved, meta = ckpt.load()
        assert meta["config_hash"] == "h" and saved.epoch == k
        resumed = train(cfg, resume=saved)
        assert weights_equal(resumed.model.get_weights(), full.model.get_weights())
        assert without_time(resumed.history) == without_time(full.history)
        assert (resumed.outcome, resumed.stopped_epoch) == (full.outcome, full.stopped_epoch)
        s1, s2 = resumed.model.get_state(), full.model.get_state()
        assert s1.keys() == s2.keys() and all(np.array_equal(s1[k], s2[k]) for k in s1)


def test_a_finished_checkpoint_trains_no_more(tmp_path: Path) -> None:
    cfg = config("epochs=5", "lr=1e30", "optimizer=sgd")  # diverges at epoch 1
    states: list[TrainState] = []
    full = train(cfg, on_checkpoint=lambda s: states.append(copy.deepcopy(s)))
    assert full.outcome == "diverged" and states[-1].finished
    again = train(cfg, resume=states[-1])  # the guard's verdict comes back from the replay
    assert (again.outcome, again.stopped_epoch, again.epochs_run) == ("diverged", 1, 1)


# --- end to end: the real CLI, real signals ----------------------------------------------------


def model_arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


ARGS = ["epochs=24", "seed=5", "experiment_name=resume", "hydra.run.dir=out", *TINY]


@pytest.mark.slow
def test_kill_9_then_same_command_resumes_bit_identically(make_launch_dir) -> None:
    ref_dir = make_launch_dir("reference")
    cwd = make_launch_dir("killed")
    with running(ref_dir, *ARGS) as reference:  # uninterrupted, no delay, meanwhile
        with running(cwd, *ARGS, "debug.epoch_delay=0.5") as proc:
            # the run writer (a thread of the run's process) has filed 3 epochs: kill it all
            ((_, _, killed_at),) = wait_for_logged(cwd, "resume", proc, "RUNNING", 3)
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        (run_before,) = runs(cwd, "resume")
        assert run_before.info.status == "RUNNING"  # kill -9 leaves it so

        again = cli(cwd, *ARGS, "debug.epoch_delay=0.25")  # the same command
        assert again.returncode == 0, again.stderr
        assert "resuming from" in again.stderr
        assert reference.wait(timeout=300) == 0, reference.communicate()

    (run_after,) = runs(cwd, "resume")  # the same MLflow run, now complete
    assert run_after.info.run_id == run_before.info.run_id
    assert run_after.info.status == "FINISHED"
    assert run_after.data.tags["nnlab.outcome"] == "completed"
    resumed_from = int(run_after.data.tags["nnlab.resumed_from_epoch"])
    assert 3 <= killed_at <= resumed_from < 24  # MLflow never held more than the checkpoint
    for metric in ("loss", "accuracy", "val_loss", "val_accuracy", "epoch_time"):
        assert steps(cwd, run_after.info.run_id, metric) == list(range(1, 25)), metric

    (ref_run,) = runs(ref_dir, "resume")
    assert ref_run.data.tags["nnlab.config_hash"] == run_after.data.tags["nnlab.config_hash"]
    for name in ("history.csv", "model.npz"):
        client(cwd).download_artifacts(run_after.info.run_id, name, str(cwd))
    rows, ref_rows = (
        history_rows(cwd / "history.csv", timing=False),
        history_rows(ref_dir / "out/artifacts/history.csv", timing=False),
    )
    assert len(rows) == 24 and rows == ref_rows  # every digit of every metric
    got, want = model_arrays(cwd / "model.npz"), model_arrays(ref_dir / "out/artifacts/model.npz")
    assert got.keys() == want.keys()
    assert all(np.array_equal(got[k], want[k]) for k in want)  # weights, optimizer, RNG
    ref_loss = [m.value for m in client(ref_dir).get_metric_history(ref_run.info.run_id, "loss")]
    assert [float(r["loss"]) for r in rows] == ref_loss
    assert not list((cwd / ".nnlab/checkpoints/resume").glob("*.npz"))  # keep=false: cleaned up


@pytest.mark.slow
def test_ctrl_c_ends_killed_keeps_the_checkpoint_and_resumes(make_launch_dir) -> None:
    cwd = make_launch_dir("ctrlc")
    args = [*ARGS, "epochs=6", "debug.epoch_delay=0.25", "tracking.flush_interval=60"]
    with running(cwd, *args) as proc:
        wait_for_epoch(cwd, "resume", 2, proc)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    (run_killed,) = runs(cwd, "resume")
    assert run_killed.info.status == "KILLED"
    assert run_killed.data.tags["nnlab.outcome"] == "killed"
    logged = steps(cwd, run_killed.info.run_id, "loss")  # flushed at the interrupt (not by timer)
    assert len(logged) >= 2 and logged == list(range(1, len(logged) + 1))
    (ckpt,) = (cwd / ".nnlab/checkpoints/resume").glob("*.npz")
    assert f"checkpoint {ckpt} kept: run the same command to resume" in err
    assert "Traceback" not in err
    assert not list(cwd.rglob("*.tmp"))  # no half-written file anywhere
    local = history_rows(cwd / "out/artifacts/history.csv", timing=False)
    assert len(local) == len(logged)
    with np.load(ckpt, allow_pickle=False) as data:  # the store never runs ahead of it
        assert json.loads(str(data["meta"]))["epoch"] >= len(logged)

    again = cli(cwd, *args)
    assert again.returncode == 0, again.stderr
    (run_done,) = runs(cwd, "resume")
    assert run_done.info.run_id == run_killed.info.run_id and run_done.info.status == "FINISHED"
    assert steps(cwd, run_done.info.run_id, "val_loss") == list(range(1, 7))


@pytest.mark.slow
def test_killed_sweep_resumes_under_the_same_parent(make_launch_dir) -> None:
    cwd = make_launch_dir("sweep")
    args = [
        "-m",
        "lr=0.1,0.01",
        "epochs=8",
        "experiment_name=sw",
        "debug.epoch_delay=1.0",
        "trainer.checkpoint.interval=0",  # a checkpoint every epoch: the kill lands mid-trial
        *TINY,
    ]
    with running(cwd, *args) as proc:
        # the first trial finishes and is filed (its checkpoint deleted), the second is under way
        wait_for_logged(cwd, "sw", proc, "FINISHED", 8)
        wait_for_logged(cwd, "sw", proc, "RUNNING", 2)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    (parent,) = runs(cwd, "sw", "sweep")
    assert parent.info.status == "RUNNING"  # its launcher died

    again = rerun_resumes_parent(cwd, args, "sw", parent)
    trials = runs(cwd, "sw", "trial")
    assert len(trials) == 2
    assert {t.data.tags["mlflow.parentRunId"] for t in trials} == {parent.info.run_id}
    assert all(t.info.status == "FINISHED" for t in trials)
    for t in trials:
        assert steps(cwd, t.info.run_id, "loss") == list(range(1, 9))
    outcomes = sorted(line.split()[1] for line in again.stdout.splitlines() if line.startswith("["))
    assert outcomes == ["completed", "skipped"]  # one finished before the kill, one resumed
