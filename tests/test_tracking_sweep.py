"""A sweep's identity, its launcher's, its lines and its summary (nnlab.sweep, nnlab.tracking)."""

from __future__ import annotations

import math
import os
import subprocess
import sys

from helpers import env

from nnlab.sweep.progress import Progress, best_key, duration
from nnlab.sweep.session import sweep_signature
from nnlab.tracking import parent

AXES = {"lr": ["lr=0.1", "lr=0.01"]}


def test_sweep_signature_names_the_axes_and_the_experiment() -> None:
    signature = sweep_signature("e", AXES)
    assert len(signature) == 16 and int(signature, 16) >= 0  # 16 hex digits
    assert sweep_signature("e", {"lr": ["lr=0.1", "lr=0.01"]}) == signature
    assert sweep_signature("f", AXES) != signature
    assert sweep_signature("e", {"lr": ["lr=0.1"]}) != signature
    assert sweep_signature("e", {"lr": ["lr=0.01", "lr=0.1"]}) != signature  # another order


def test_sweep_signature_is_the_same_in_another_process() -> None:
    # the same command run again (another process, another str hash seed) must find its sweep
    code = (
        "from nnlab.sweep.session import sweep_signature\n"
        "print(sweep_signature('e', {'lr': ['lr=0.1', 'lr=0.01']}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=env(PYTHONHASHSEED="1"),
        check=True,
    ).stdout
    assert out.strip() == sweep_signature("e", AXES)


def test_dead_launchers_are_recognised_by_more_than_their_pid() -> None:
    me = parent.launcher_tag()
    host, pid, start = me.split(":")
    assert int(pid) == os.getpid() and start
    assert not parent.launcher_gone(me)  # this process is alive
    assert parent.launcher_gone(f"{host}:{2**22 + 12345}:1")  # above Linux's pid_max
    # a live pid that another process holds now: another start time
    assert parent.launcher_gone(f"{host}:{pid}:{int(start) + 1}")
    assert not parent.launcher_gone(f"{host}:{pid}")  # an older tag: the pid alone
    assert not parent.launcher_gone("another-host:1:5")  # cannot tell: assume alive
    assert not parent.launcher_gone(None)


def _record(job: int, outcome: str, val_loss: float | None, **extra) -> dict:
    return {"job": job, "name": f"job{job}", "outcome": outcome, "run_id": f"run{job}",
            "loss": 1.0, "val_loss": val_loss, "seconds": 0.5, "config_hash": f"h{job}",
            **extra}  # fmt: skip


def best_of(records: list[dict]) -> dict | None:
    progress = Progress(len(records), show=False)
    for record in records:
        progress.add(record)
    return progress.best


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
    assert best_of(records)["job"] == 7
    assert best_of(records[:2])["job"] == 1
    assert best_of([r for r in records if r["job"] in (2, 3, 4, 6)]) is None
    # no val_loss anywhere: the lowest loss
    by_loss = [_record(0, "completed", None, loss=0.3), _record(1, "completed", None, loss=0.2)]
    assert best_of(by_loss)["job"] == 1
    assert best_key(_record(0, "completed", 0.1)) < best_key(_record(1, "completed", None))


def test_lines_count_up_whatever_the_order_and_say_elapsed_and_eta(capsys) -> None:
    progress = Progress(4)
    for job in (3, 0, 2):
        progress.add(_record(job, "completed", 0.5))
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["[1/4]", "[2/4]", "[3/4]"]
    assert lines[0].startswith("[1/4] completed     job3  loss=1 val_loss=0.5 0.50s  elapsed ")
    assert all(" ETA " in line for line in lines)  # one left
    progress.add(_record(1, "completed", 0.5))
    assert " ETA " not in capsys.readouterr().out  # none left
    assert (duration(42), duration(185), duration(7620)) == ("42s", "3m05s", "2h07m")


def test_summary_counts_outcomes_says_where_skips_come_from_and_names_the_best() -> None:
    progress = Progress(5, show=False)
    for record in [
        _record(0, "completed", 0.5),
        _record(1, "skipped", 0.25, source="parent 1a2b3c4d"),
        _record(2, "diverged", 0.1),
        _record(3, "completed", 0.75),
    ]:
        progress.add(record)
    progress.filed(3, "OperationalError: gone")
    progress.filed(0, None)
    lines = progress.summary("s1")
    assert lines[0].startswith("nnlab sweep s1: 4 trials in ")
    assert lines[1:] == [
        "  completed        2",
        "  diverged         1",
        "  skipped          1",
        "    skipped: a FINISHED run of the same config exists (1 from parent 1a2b3c4d); "
        "tracking.rerun=true runs them again",
        "  no result        1  (a trial's process died first)",
        "  not in MLflow    1",
        "    job 3: OperationalError: gone",
        "  best trial (lowest val_loss): job1  val_loss=0.25  run run1",
    ]
    assert {k: n for k, n in progress.counts.items() if n} == {
        "completed": 2, "diverged": 1, "skipped": 1,
    }  # fmt: skip
