"""nnlab.tracking.sweep: recognising the same sweep again, its launcher, its summary."""

from __future__ import annotations

import math
import subprocess
import sys
from types import SimpleNamespace

from helpers import env

from nnlab.tracking import parent, sweep


def _config(*task: str) -> SimpleNamespace:
    """The part of a Hydra config ``sweep_signature`` reads: the command line's overrides."""
    return SimpleNamespace(hydra=SimpleNamespace(overrides=SimpleNamespace(task=list(task))))


def test_sweep_signature_names_the_trials_and_the_experiment() -> None:
    jobs = [["lr=0.1"], ["lr=0.01"]]
    signature = sweep.sweep_signature("e", jobs, _config("lr=0.1,0.01"))
    assert len(signature) == 16 and int(signature, 16) >= 0  # 16 hex digits
    # a grid sweep is its jobs: how the command line spelled them does not matter
    assert (
        sweep.sweep_signature("e", [["lr=0.1"], ["lr=0.01"]], _config("lr=0.01,0.1")) == signature
    )
    assert sweep.sweep_signature("f", jobs, _config("lr=0.1,0.01")) != signature
    assert sweep.sweep_signature("e", jobs[:1], _config("lr=0.1,0.01")) != signature
    # another sweeper (jobs unknown in advance): the command line's overrides are the sweep
    other = sweep.sweep_signature("e", [], _config("lr=0.1"))
    assert other == sweep.sweep_signature("e", [["lr=0.1"]], _config())
    assert other != sweep.sweep_signature("e", [], _config("lr=0.2"))


def test_sweep_signature_is_the_same_in_another_process() -> None:
    # the same command run again (another process, another str hash seed) must find its sweep
    code = (
        "from types import SimpleNamespace as N\n"
        "from nnlab.tracking.sweep import sweep_signature\n"
        "cfg = N(hydra=N(overrides=N(task=['lr=0.1,0.01'])))\n"
        "print(sweep_signature('e', [['lr=0.1'], ['lr=0.01']], cfg))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=env(PYTHONHASHSEED="1"),
        check=True,
    ).stdout
    assert out.strip() == sweep.sweep_signature("e", [["lr=0.1"], ["lr=0.01"]], _config("x"))


def test_dead_launchers_are_recognised() -> None:
    me = parent.launcher_tag()
    assert not parent.launcher_gone(me)  # this process is alive
    host = me.rpartition(":")[0]
    assert parent.launcher_gone(f"{host}:{2**22 + 12345}")  # above Linux's pid_max: no process
    assert not parent.launcher_gone("another-host:1")  # cannot tell: assume alive
    assert not parent.launcher_gone(None)


def _record(job: int, outcome: str, val_loss: float | None, **extra) -> dict:
    return {"job": job, "name": f"job{job}", "outcome": outcome, "run_id": f"run{job}",
            "loss": 1.0, "val_loss": val_loss, "seconds": 0.5, **extra}  # fmt: skip


def test_best_is_the_lowest_val_loss_of_a_usable_run() -> None:
    records = [
        _record(0, "completed", 0.5),
        _record(1, "early_stopped", 0.4),  # early stopping is usable
        _record(2, "diverged", 0.1),  # not usable
        _record(3, "failed", 0.05),
        _record(4, "killed", 0.05),
        _record(5, "completed", math.nan),  # not a number
        _record(6, "skipped", 0.2, prior_outcome="diverged"),  # its stored run diverged
        _record(7, "skipped", 0.3, prior_outcome="completed"),  # a finished run of this config
        _record(8, "completed", None),
    ]
    assert sweep.best_record(records)["job"] == 7
    assert sweep.best_record(records[:2])["job"] == 1
    assert sweep.best_record([r for r in records if r["job"] in (2, 3, 4, 6)]) is None
    # no val_loss anywhere: the lowest loss
    by_loss = [_record(0, "completed", None, loss=0.3), _record(1, "completed", None, loss=0.2)]
    assert sweep.best_record(by_loss)["job"] == 1


def test_summary_counts_outcomes_and_names_the_best() -> None:
    ctx = sweep.SweepContext(
        sweep_id="s1", backend="mlflow", uri="sqlite:///x.db", experiment_id="1",
        parent_run_id="p", n_trials=5, varying=["lr"], parallel=False, results_dir="r",
        sweep_dir="/sweeps/s1",
    )  # fmt: skip
    records = [
        _record(0, "completed", 0.5),
        _record(1, "skipped", 0.25),
        _record(2, "diverged", 0.1),
        _record(3, "completed", 0.75, tracking_error="OperationalError: gone"),
    ]
    lines, counts, best = sweep.summary_lines(ctx, records, 12.34)
    assert lines == [
        "nnlab sweep s1: 4 trials in 12.3s",
        "  completed        2",
        "  diverged         1",
        "  skipped          1  (a FINISHED run exists; tracking.rerun=true runs them again)",
        "  no result        1  (a job died before reporting)",
        "  not in MLflow    1  (nothing lost: re-import the job dirs' history with "
        "python -m nnlab.recover /sweeps/s1)",
        "  best by val_loss: job1  val_loss=0.25  run run1",
    ]
    assert {k: n for k, n in counts.items() if n} == {"completed": 2, "diverged": 1, "skipped": 1}
    assert best is records[1]
