"""The job directory's own copy of a trial, so no metric depends on the tracking store.

Every trial writes, in its Hydra job directory::

    run.json                    what `python -m nnlab.recover` needs (experiment, params, tags,
                                MLflow run id, outcome)
    artifacts/history.csv       one row per epoch (rewritten atomically while training)
    artifacts/batch_loss.csv    (step, batch_loss) when trainer.batch_log_every > 0
    artifacts/config.yaml, overrides.yaml, model.npz, traceback.txt   at the end

:class:`LocalHistory` writes them; :func:`find_runs` and :func:`read_history` read them back.
"""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path
from typing import Any

from nnlab.checkpoint import atomic_write, atomic_write_text
from nnlab.tracking.schema import RUN_FILE, Artifact
from nnlab.train import HISTORY_COLUMNS, OPTIONAL_COLUMNS, Sink, TrainResult, TrainState

Series = dict[str, list[tuple[int, float]]]  # metric -> [(step, value)]


def history_csv(rows: list[dict]) -> str:
    """``rows`` as history.csv text (``HISTORY_COLUMNS``, the ``OPTIONAL_COLUMNS`` only when
    logged; floats in full precision)."""
    buf = io.StringIO()
    optional = OPTIONAL_COLUMNS
    columns = [c for c in HISTORY_COLUMNS if c not in optional or any(c in r for r in rows)]
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", restval="")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def batch_csv(batches: list[tuple[int, float]]) -> str:
    """(step, loss) pairs as batch_loss.csv text."""
    return "step,batch_loss\n" + "".join(f"{s},{v!r}\n" for s, v in batches)


def write_artifacts(
    out: Path,
    plain: dict,
    overrides: list[str],
    result: TrainResult | None,
    rows: list[dict],
    tb: str | None,
    save_model: bool,
    sync: bool = True,
    batches: list[tuple[int, float]] | None = None,
) -> None:
    """config.yaml, overrides.yaml, history.csv, batch_loss.csv (``batches``: (step, loss)
    pairs, if any), model.npz, traceback.txt into ``out``.

    Atomic; ``sync`` also fsyncs each file (``trainer.checkpoint.sync``: power-loss safety).
    """
    from omegaconf import OmegaConf

    texts = {
        Artifact.CONFIG: OmegaConf.to_yaml(OmegaConf.create(plain)),
        Artifact.OVERRIDES: OmegaConf.to_yaml(OmegaConf.create(overrides)),
        Artifact.HISTORY: history_csv(rows),
    }
    if batches:
        texts[Artifact.BATCH_LOSS] = batch_csv(batches)
    if tb is not None:
        texts[Artifact.TRACEBACK] = tb
    for name, text in texts.items():
        atomic_write_text(out / name, text, sync)
    if result is not None and save_model:
        atomic_write(out / Artifact.MODEL, result.model.save, sync)


class LocalHistory(Sink):
    """A sink that keeps the trial's history in its job directory.

    ``history.csv`` (and ``batch_loss.csv`` when batch losses are logged) is rewritten atomically
    in ``artifact_dir`` after an epoch when ``interval`` seconds have passed since the last write
    (0: after every epoch), and in full when the run ends (:func:`write_artifacts`); ``run_file``
    (``run.json``) holds ``meta``, updated with :meth:`write_meta`.
    """

    def __init__(
        self,
        artifact_dir: Path,
        run_file: Path,
        meta: dict[str, Any],
        resume: TrainState | None = None,
        interval: float = 0.0,
        sync: bool = True,
    ):
        self.artifact_dir, self.run_file, self.meta = artifact_dir, run_file, meta
        self.interval, self.sync = interval, sync
        self.last_write = time.perf_counter()
        self.rows: list[dict] = []
        self.batches: list[tuple[int, float]] = []
        if resume is not None:  # the epochs before the interruption, from the checkpoint
            for e in range(resume.epoch):
                self.rows.append({"epoch": e + 1, **{k: v[e] for k, v in resume.history.items()}})
            self.batches = list(resume.batch_losses)
        artifact_dir.mkdir(parents=True, exist_ok=True)
        self.write_meta()

    def write_meta(self, **updates: Any) -> None:
        self.meta.update(updates)
        atomic_write_text(self.run_file, json.dumps(self.meta, indent=1, default=str), self.sync)

    def log_epoch(self, epoch: int, logs: dict[str, float]) -> None:
        self.rows.append({"epoch": epoch, **logs})
        if time.perf_counter() - self.last_write >= self.interval:
            self.write()

    def write(self) -> None:
        """Rewrite ``history.csv`` (and ``batch_loss.csv``) with every epoch so far."""
        # atomic, not fsynced: the checkpoint holds the same history
        atomic_write_text(self.artifact_dir / Artifact.HISTORY, history_csv(self.rows), False)
        if self.batches:
            text = batch_csv(self.batches)
            atomic_write_text(self.artifact_dir / Artifact.BATCH_LOSS, text, sync=False)
        self.last_write = time.perf_counter()

    def log_batch_loss(self, step: int, loss: float) -> None:
        self.batches.append((step, loss))


def find_runs(paths: list[Path]) -> list[Path]:
    """The ``run.json`` files that ``paths`` name or hold (sorted, each once).

    A path is a job directory, its ``run.json`` or a file in its ``artifacts/``, or any directory
    above them (a sweep directory: every job below it). A missing path exits with one line.
    """
    found: dict[Path, None] = {}
    for path in paths:
        if path.is_file() and path.name == RUN_FILE:
            found[path.resolve()] = None
        elif path.is_file() and path.parent.name == "artifacts":  # history.csv and friends
            found[(path.parent.parent / RUN_FILE).resolve()] = None
        elif path.is_dir():
            for run_file in sorted(path.rglob(RUN_FILE)):  # job dirs (sweep.json is not one)
                found[run_file.resolve()] = None
        else:
            raise SystemExit(f"nnlab.recover: {path}: no such file or directory")
    return [p for p in found if p.is_file()]


def read_history(artifacts: Path) -> Series:
    """metric -> [(step, value)] from history.csv and batch_loss.csv.

    history.csv's first column is the step: ``epoch`` for a trial, ``step`` (the optimizer
    step) for an LR range test (``nnlab.lr_find``).
    """
    series: Series = {}
    history = artifacts / Artifact.HISTORY
    if history.is_file():
        with history.open(newline="") as fh:
            for row in csv.DictReader(fh):
                step = int(row.pop("epoch") if "epoch" in row else row.pop("step"))
                for key, value in row.items():
                    if value not in ("", None):
                        series.setdefault(key, []).append((step, float(value)))
    batches = artifacts / Artifact.BATCH_LOSS
    if batches.is_file():
        with batches.open(newline="") as fh:
            series["batch_loss"] = [
                (int(r["step"]), float(r["batch_loss"])) for r in csv.DictReader(fh)
            ]
    return series
