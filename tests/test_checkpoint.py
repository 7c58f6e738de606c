"""nnlab.checkpoint: the checkpoint file, its lock, atomic writes, when to save."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import SavedStates, epoch_logs, train_state

from nnlab import checkpoint
from nnlab.checkpoint import Checkpointer, CheckpointError, atomic_write, checkpoint_path
from nnlab.tracking import store as mlstore
from nnlab.tracking.sink import MlflowSink


def test_checkpoints_are_time_bounded_and_the_store_never_runs_ahead(tracking_store) -> None:
    _, uri, exp_id = tracking_store
    sink = MlflowSink(uri, exp_id, "bounded", {}, {}, flush_interval=0.0)
    saver = SavedStates()
    sink.auto_flush = False  # as a trial with checkpoints sets it: flush only right after a save
    points = checkpoint.CheckpointSchedule(saver, interval=3600, after_save=sink.maybe_flush)
    history: dict[str, list[float]] = {}
    for epoch, logs in enumerate(epoch_logs(4), start=1):
        for k, v in logs.items():
            history.setdefault(k, []).append(v)
        points.on_state(train_state(epoch, history, [], finished=epoch == 4))
        sink.log_epoch(epoch, logs)
        stored = mlstore.client(uri).get_metric_history(sink.run_id, "loss")
        # flush_interval=0, yet nothing reaches the store before a checkpoint holds it
        assert (len(stored), len(saver.saved)) == ((3, 1) if epoch == 4 else (0, 0))
    assert [s[0] for s in saver.saved] == [4]  # not every epoch: only the end (interval 1 h)

    every = SavedStates()
    points = checkpoint.CheckpointSchedule(every, interval=0.0)
    for epoch in range(1, 4):
        points.on_state(train_state(epoch, {"loss": [0.5] * epoch}, []))
    assert [s[0] for s in every.saved] == [1, 2, 3]  # interval 0: every epoch
    sink.finish("completed", {}, None)


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
