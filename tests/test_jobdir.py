"""nnlab.jobdir: the job directory's own copy of a trial (``LocalHistory``)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from helpers import epoch_logs

from nnlab import jobdir


def test_local_history_is_on_disk_after_every_epoch(tmp_path: Path) -> None:
    local = jobdir.LocalHistory(tmp_path / "artifacts", tmp_path / "run.json", {"a": 1})
    assert json.loads((tmp_path / "run.json").read_text()) == {"a": 1}
    for epoch, logs in enumerate(epoch_logs(3), start=1):
        local.log_batch_loss(epoch * 10, 0.5)
        local.log_epoch(epoch, logs)
        rows = list(csv.DictReader((tmp_path / "artifacts" / "history.csv").open()))
        assert [int(r["epoch"]) for r in rows] == list(range(1, epoch + 1))
        assert float(rows[-1]["loss"]) == logs["loss"]  # full precision
    batch = (tmp_path / "artifacts" / "batch_loss.csv").read_text().splitlines()
    assert batch == ["step,batch_loss", "10,0.5", "20,0.5", "30,0.5"]
    local.write_meta(outcome="completed")
    assert json.loads((tmp_path / "run.json").read_text()) == {"a": 1, "outcome": "completed"}
    assert sorted(p.name for p in tmp_path.rglob("*")) == [
        "artifacts", "batch_loss.csv", "history.csv", "run.json",
    ]  # fmt: skip


def test_local_history_waits_for_its_interval(tmp_path: Path) -> None:
    local = jobdir.LocalHistory(tmp_path / "a", tmp_path / "run.json", {}, interval=3600)
    for epoch, logs in enumerate(epoch_logs(3), start=1):
        local.log_epoch(epoch, logs)
    assert not (tmp_path / "a" / "history.csv").exists()
    local.write()
    assert (tmp_path / "a" / "history.csv").read_text().count("\n") == 4
