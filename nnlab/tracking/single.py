"""A single run (``python -m nnlab.run`` without ``-m``): the trial in this thread, its writer
in another.

The run takes the same path to MLflow as every trial of a sweep: the trial writes its job
directory and a :class:`~nnlab.tracking.writer.RunWriter` files it. The writer opens the store
(``import mlflow`` and the store's first opening, ~3 s) while the model trains, instead of
before. A store that cannot be used is refused before training (exit 2), by the checks that
need no MLflow.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from nnlab.sweep.context import SweepContext
from nnlab.tracking.job import JobPlace
from nnlab.tracking.store import (
    check_store,
    prepare_store,
    resolve_uri,
    runs_url,
    say,
    store_lost,
    ui_command,
)


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def run_single(plain: dict, place: JobPlace) -> dict:
    """Train ``plain`` in ``place.out``; file it in MLflow unless ``tracking=none``; return
    its record. Raises (after filing) what the training raised; exits 1 if MLflow missed it."""
    from nnlab.tracking.trial import run_spec

    tracking, base = plain["tracking"], place.base
    if tracking["backend"] != "mlflow":
        record = run_spec(plain, place)
        print_result(record, None, None, None)
        return record
    uri = resolve_uri(tracking["uri"], base)
    check_store(uri, tracking["artifacts"], base)  # a bad store: exit 2 before training
    ctx = SweepContext(
        sweep_id="",
        backend="mlflow",
        uri=uri,
        experiment_id=None,
        parent_run_id=None,
        n_trials=None,
        varying=[],
        parallel=False,
        results_dir=str(place.out / ".nnlab"),
        launch_dir=str(base),
    )
    filed: dict[str, Any] = {}

    def setup() -> None:
        ctx.experiment_id = prepare_store(
            uri, plain["experiment_name"], tracking["artifacts"], base
        )

    def done(_job: int, run_id: str | None, error: str | None) -> None:
        filed.update(run_id=run_id, error=error)

    from nnlab.tracking.writer import RunWriter

    writer = RunWriter(ctx, setup=setup, on_done=done)
    place = JobPlace(place.base, place.out, place.overrides, place.job, None)
    interrupted = True
    try:  # the writer starts once nothing can refuse the run: a refused one leaves no store
        record = run_spec(
            plain, place, writer.add, lambda: _finished_before(writer, plain), writer.start
        )
        interrupted = record["outcome"] == "killed"
    finally:
        missed = writer.close(interrupted=interrupted) if writer.started else {}
    if interrupted:
        raise KeyboardInterrupt
    error = filed.get("error") or next(iter(missed.values()), None) or writer.error
    if error is None:  # the file on disk must hold what MLflow said it wrote
        error = store_lost(uri, filed.get("run_id"), filed.get("store"))
    record.update(run_id=filed.get("run_id"), tracking_error=error)
    print_result(record, uri, ctx.experiment_id, place)
    return record


def _finished_before(writer: Any, plain: dict) -> bool:
    """Whether the store holds a FINISHED run of this config (asked only when a kept
    checkpoint says its training had ended)."""
    from nnlab.tracking.schema import config_hash
    from nnlab.tracking.store import finished_trials

    if not writer.wait_ready(timeout=120) or writer.error is not None:
        return False
    return config_hash(plain) in finished_trials(writer.ctx.uri, writer.ctx.experiment_id)


def print_result(
    record: dict, uri: str | None, experiment_id: str | None, place: JobPlace | None
) -> None:
    """The run's result line; exit 1 when MLflow did not get the whole run."""
    if record["outcome"] not in ("completed", "early_stopped", "diverged", "pruned"):
        return  # failed / killed: the caller reports it
    where = record["job_dir"]
    if uri is not None and record.get("run_id") and not record.get("tracking_error"):
        where = f"MLflow run {record['run_id']} ({ui_command(uri)}, then {runs_url(uri, experiment_id)})"
    train_s = record["train_s"] if record["train_s"] is not None else 0.0
    print(
        f"{record['outcome']}: loss={fmt(record['loss'])} val_loss={fmt(record['val_loss'])} "
        f"after {record['epochs_run']} epochs (training {train_s:.2f}s, "
        f"total {record['seconds']:.1f}s) -> {where}",
        flush=True,
    )
    if uri is not None and record.get("tracking_error"):
        job_dir = Path(record["job_dir"])
        say(
            f"nnlab: the run could not be written to MLflow ({record['tracking_error']}); nothing "
            f"is lost: its history is in {job_dir / 'artifacts' / 'history.csv'}. Re-import it "
            f"with: python -m nnlab.recover {job_dir}  (--tracking-uri URI for another store)"
        )
        sys.exit(1)
