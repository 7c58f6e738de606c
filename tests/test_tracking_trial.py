"""nnlab.tracking.trial: naming a trial, saving its last epoch end when it is interrupted."""

from __future__ import annotations

import copy
import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import QUIET, TINY, SavedStates, compose, history_rows, train_state, with_values

from nnlab import checkpoint
from nnlab.checkpoint import Checkpointer, checkpoint_path
from nnlab.config import validate
from nnlab.jobdir import LocalHistory, read_history
from nnlab.tracking import trial
from nnlab.tracking.schema import config_hash
from nnlab.train import train


def test_run_name_uses_the_overrides_that_vary() -> None:
    plain = {"lr": 0.01, "batch_size": 16, "epochs": 50}
    overrides = ["lr=0.01", "batch_size=16", "epochs=50", "data.n_samples=200"]
    name = trial.run_name(overrides, ["lr", "batch_size", "epochs"], plain)
    assert name == "lr=0.01 batch_size=16 epochs=50"
    single = trial.run_name(["optimizer=sgd", "tracking=none"], None, plain)
    assert single == "lr=0.01 batch_size=16 epochs=50 optimizer=sgd"


def test_an_interruption_saves_the_last_epoch_end_cut_to_it(tmp_path: Path) -> None:
    local = LocalHistory(tmp_path / "artifacts", tmp_path / "run.json", {}, interval=3600)
    saver = SavedStates()
    points = checkpoint.CheckpointSchedule(saver, interval=3600, after_save=lambda _: local.write())
    history = {"loss": [0.9, 0.8]}
    batches = [(1, 0.9), (2, 0.8)]
    points.on_state(train_state(2, history, batches))
    local.log_epoch(1, {"loss": 0.9})
    local.log_epoch(2, {"loss": 0.8})
    for step, value in batches:
        local.log_batch_loss(step, value)
    assert saver.saved == []
    # epoch 3 is under way when Ctrl-C lands: a batch loss and a part of its logs exist
    batches.append((3, 0.7))
    local.log_batch_loss(3, 0.7)
    history["loss"].append(0.7)
    trial.save_on_interrupt(points, local)
    assert [(s[0], s[1]) for s in saver.saved] == [(2, {"loss": [0.9, 0.8]})]
    assert local.batches == [(1, 0.9), (2, 0.8)] and [r["epoch"] for r in local.rows] == [1, 2]
    series = read_history(tmp_path / "artifacts")  # what the writer would file
    assert [s for s, _ in series["batch_loss"]] == [1, 2]
    assert [s for s, _ in series["loss"]] == [1, 2]


# --- config wiring: every trainer.checkpoint.* key changes what the trial does ----------------
#
# As the trainer table in test_train.py: run `a` and run `b` of a real single trial (in-process,
# tracking=none, launched from a temp dir) differ in one key, and a check says what must differ.


@dataclass
class TrialRun:
    base: Path  # the launch directory
    record: dict
    saves: int  # Checkpointer.save calls
    fsyncs: int  # os.fsync calls within them
    stderr: str

    def checkpoint(self, directory: str = ".nnlab/checkpoints") -> Path:
        return checkpoint_path(self.base, directory, "nnlab", self.record["config_hash"])

    def history(self) -> list[dict]:
        (job,) = (self.base / "outputs").iterdir()
        return history_rows(job / "artifacts" / "history.csv")


CK = "trainer.checkpoint"
TRIAL_BASE = (*TINY, QUIET, "tracking=none", "epochs=3", f"{CK}.keep=true")


@functools.cache
def _trial_config() -> dict:
    return validate(compose(*TRIAL_BASE))


def _run_trial(base: Path, values: dict[str, Any], monkeypatch, capsys) -> TrialRun:
    plain = with_values(_trial_config(), values)
    counts = {"save": 0, "fsync": 0, "saving": False}
    real_save, real_fsync = Checkpointer.save, os.fsync

    def save(self, state, meta):  # the real save, counted
        counts["save"] += 1
        counts["saving"] = True
        try:
            real_save(self, state, meta)
        finally:
            counts["saving"] = False

    def fsync(fd):
        counts["fsync"] += counts["saving"]
        real_fsync(fd)

    monkeypatch.chdir(base)
    monkeypatch.setattr(Checkpointer, "save", save)
    monkeypatch.setattr("nnlab.checkpoint.os.fsync", fsync)
    capsys.readouterr()
    record = trial.run_trial(plain)
    monkeypatch.undo()
    return TrialRun(base, record, counts["save"], counts["fsync"], capsys.readouterr().err)


def _saved_at_epoch_2(base: Path) -> None:
    """The checkpoint an interrupted run of the trial config left after epoch 2, with made-up
    epoch times (111 s, 222 s) that only a resume can bring into the job's history."""
    plain = _trial_config()
    states: list = []
    train(plain, on_checkpoint=lambda s: states.append(copy.deepcopy(s)))
    state = states[1]
    state.history["epoch_time"] = [111.0, 222.0]
    digest = config_hash(plain)
    ckpt = Checkpointer(checkpoint_path(base, ".nnlab/checkpoints", "nnlab", digest))
    ckpt.save(state, {"config_hash": digest})


def _epochs_in_file(path: Path) -> int:
    loaded = Checkpointer(path).load()
    assert loaded is not None, f"no checkpoint at {path}"
    return loaded[0].epoch


def check_enabled(a: TrialRun, b: TrialRun) -> None:
    assert _epochs_in_file(a.checkpoint()) == 3 and a.saves >= 1
    assert not (b.base / ".nnlab").exists() and b.saves == 0


def check_dir(a: TrialRun, b: TrialRun) -> None:
    assert _epochs_in_file(a.checkpoint("ck1")) == 3 and not (a.base / "ck2").exists()
    assert _epochs_in_file(b.checkpoint("ck2")) == 3 and not (b.base / "ck1").exists()


def check_keep(a: TrialRun, b: TrialRun) -> None:
    assert not a.checkpoint().exists() and a.saves >= 1  # deleted once the run ended
    assert _epochs_in_file(b.checkpoint()) == 3


def check_resume(a: TrialRun, b: TrialRun) -> None:
    assert [float(r["epoch_time"]) for r in a.history()[:2]] == [111.0, 222.0]
    assert "resuming from" in a.stderr and "after epoch 2" in a.stderr
    assert 111.0 not in [float(r["epoch_time"]) for r in b.history()]
    assert "resuming" not in b.stderr


def check_interval(a: TrialRun, b: TrialRun) -> None:
    assert (a.saves, b.saves) == (3, 1)  # every epoch vs only the end


def check_sync(a: TrialRun, b: TrialRun) -> None:
    assert (a.fsyncs, b.fsyncs) == (0, 1) and b.saves == 1


# key: (check, values of run a, values run b changes, set-up of each launch dir)
CHECKPOINT_WIRING: dict[str, tuple] = {
    f"{CK}.enabled": (check_enabled, {}, {f"{CK}.enabled": False}, None),
    f"{CK}.dir": (check_dir, {f"{CK}.dir": "ck1"}, {f"{CK}.dir": "ck2"}, None),
    f"{CK}.keep": (check_keep, {f"{CK}.keep": False}, {f"{CK}.keep": True}, None),
    f"{CK}.resume": (check_resume, {}, {f"{CK}.resume": False}, _saved_at_epoch_2),
    f"{CK}.interval": (check_interval, {f"{CK}.interval": 0.0}, {f"{CK}.interval": 3600.0}, None),
    f"{CK}.sync": (check_sync, {f"{CK}.sync": False}, {f"{CK}.sync": True}, None),
}


def test_the_checkpoint_wiring_table_covers_every_key() -> None:
    assert set(CHECKPOINT_WIRING) == {f"{CK}.{k}" for k in _trial_config()["trainer"]["checkpoint"]}


@pytest.mark.parametrize("key", list(CHECKPOINT_WIRING))
def test_each_checkpoint_key_changes_what_the_trial_does(key, tmp_path, monkeypatch, capsys):
    check, a_values, b_values, setup = CHECKPOINT_WIRING[key]
    runs = []
    for name, values in (("a", a_values), ("b", {**a_values, **b_values})):
        (tmp_path / name).mkdir()
        if setup is not None:
            setup(tmp_path / name)
        runs.append(_run_trial(tmp_path / name, values, monkeypatch, capsys))
    check(*runs)
