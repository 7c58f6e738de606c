"""nnlab.checkpoint: the checkpoint file, its lock, atomic writes, when to save."""

from __future__ import annotations

import copy
import json
import math
import resource
import signal
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    QUIET,
    TINY,
    SavedStates,
    cli,
    compose,
    epoch_logs,
    history_rows,
    train_state,
)

from nnlab import checkpoint
from nnlab.checkpoint import Checkpointer, CheckpointError, atomic_write, checkpoint_path
from nnlab.config import validate
from nnlab.jobdir import LocalHistory, read_history
from nnlab.tracking.schema import config_hash
from nnlab.train import train


def test_checkpoints_are_time_bounded_and_the_job_dir_never_runs_ahead(tmp_path: Path) -> None:
    """What the run writer files is ``history.csv``: with checkpoints it is rewritten only
    right after a save (as a trial wires it), so the store never holds an epoch the
    checkpoint lacks."""
    local = LocalHistory(tmp_path / "artifacts", tmp_path / "run.json", {}, interval=math.inf)
    saver = SavedStates()
    points = checkpoint.CheckpointSchedule(saver, interval=3600, after_save=lambda _: local.write())
    history: dict[str, list[float]] = {}
    for epoch, logs in enumerate(epoch_logs(4), start=1):
        for k, v in logs.items():
            history.setdefault(k, []).append(v)
        points.on_state(train_state(epoch, history, [], finished=epoch == 4))
        local.log_epoch(epoch, logs)
        written = read_history(tmp_path / "artifacts").get("loss", [])
        # nothing reaches the job dir's history before a checkpoint holds it
        assert (len(written), len(saver.saved)) == ((3, 1) if epoch == 4 else (0, 0))
    assert [s[0] for s in saver.saved] == [4]  # not every epoch: only the end (interval 1 h)

    every = SavedStates()
    points = checkpoint.CheckpointSchedule(every, interval=0.0)
    for epoch in range(1, 4):
        points.on_state(train_state(epoch, {"loss": [0.5] * epoch}, []))
    assert [s[0] for s in every.saved] == [1, 2, 3]  # interval 0: every epoch


def test_checkpoint_writes_are_atomic(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "f.bin"
    atomic_write(path, lambda fh: fh.write(b"old"))

    def broken(fh):
        fh.write(b"half")
        raise KeyboardInterrupt  # Ctrl-C while the content is produced

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, broken)

    def interrupted(src, dst):  # Ctrl-C after the temp file is written, before the rename
        assert Path(src).read_bytes() == b"new"
        raise KeyboardInterrupt

    monkeypatch.setattr("nnlab.checkpoint.os.replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, lambda fh: fh.write(b"new"))
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]  # no temp file left


def test_unusable_checkpoints_name_the_file_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "c.npz"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"c\.npz is unreadable.*resume=false"):
        Checkpointer(path).load()
    np.savez(path, meta=np.array(json.dumps({"format": "other"})))
    with pytest.raises(CheckpointError, match="is not an nnlab.checkpoint/1 file"):
        Checkpointer(path).load()
    assert Checkpointer(tmp_path / "none.npz").load() is None


def test_one_process_per_checkpoint(tmp_path: Path) -> None:
    a, b = Checkpointer(tmp_path / "c.npz"), Checkpointer(tmp_path / "c.npz")
    assert a.acquire() and not b.acquire()
    a.release()
    assert b.acquire()
    b.release()


def test_checkpoint_path_is_stable_and_safe(tmp_path: Path) -> None:
    p = checkpoint_path(tmp_path, ".nnlab/checkpoints", "my exp/../x", "0123456789abcdef")
    assert p == tmp_path / ".nnlab/checkpoints/my_exp_.._x/0123456789abcdef.npz"
    assert p.parent.parent == tmp_path / ".nnlab/checkpoints"


# --- the trainer's own save path, crashed in the middle of a write -----------------------------

CRASH = (*TINY, QUIET, "model.hidden=[32,32]", "tracking=none", "epochs=4", "batch_size=8",
         "trainer.batch_log_every=1", "trainer.checkpoint.interval=0", "hydra.run.dir=job")  # fmt: skip


def _checkpoint_sizes(plain: dict, tmp: Path) -> list[int]:
    """Bytes of the checkpoint a trial of ``plain`` (tracking=none) writes after each epoch.

    The size depends only on the arrays' shapes and the meta's length (one batch loss per step:
    each epoch adds 20 steps x 16 bytes), so an in-process copy of the save measures it.
    """
    states: list = []
    train(plain, on_checkpoint=lambda s: states.append(copy.deepcopy(s)))
    meta = {"config_hash": config_hash(plain), "experiment_name": plain["experiment_name"]}
    sizes = []
    for i, state in enumerate(states):
        path = tmp / f"{i}.npz"
        Checkpointer(path, sync=False).save(state, meta)
        sizes.append(path.stat().st_size)
    return sizes


def test_a_crash_in_the_middle_of_a_checkpoint_write_keeps_the_previous_one(tmp_path: Path) -> None:
    """The real CLI with a file-size limit between the sizes of the epoch-2 and epoch-3
    checkpoints: writing epoch 3's stops half-way with EFBIG, as a full disk would. The file on
    disk must still be epoch 2's, whole, and the same command must resume from it."""
    plain = validate(compose(*CRASH))
    sizes = _checkpoint_sizes(plain, tmp_path)
    assert sizes[2] - sizes[1] >= 256, sizes  # room for a limit between them
    limit = (sizes[1] + sizes[2]) // 2

    def limited() -> None:  # in the child, before exec: writes past `limit` bytes fail
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an error, not a killed process

    launch = tmp_path / "launch"
    launch.mkdir()
    crashed = cli(launch, *CRASH, preexec_fn=limited)
    assert crashed.returncode == 0, crashed.stderr  # training goes on without checkpoints
    assert "could not write checkpoint" in crashed.stderr and "File too large" in crashed.stderr
    path = checkpoint_path(launch, ".nnlab/checkpoints", "nnlab", config_hash(plain))
    assert path.stat().st_size == sizes[1]
    state, meta = Checkpointer(path).load()  # whole: the crashed write never replaced it
    assert (state.epoch, meta["config_hash"]) == (2, config_hash(plain))
    # no temp file left beside it
    assert {p.name for p in path.parent.iterdir()} == {path.name, path.with_suffix(".lock").name}

    resumed = cli(launch, *CRASH)  # the same command, no limit
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from {path} after epoch 2" in resumed.stderr
    rows = history_rows(launch / "job" / "artifacts" / "history.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    saved = [float(r["epoch_time"]) for r in rows[:2]]
    assert saved == state.history["epoch_time"]  # epochs 1-2 come from the checkpoint
