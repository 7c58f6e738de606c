"""``python -m nnlab.recover PATH... [--tracking-uri URI]``: upload saved local histories to MLflow.

Every trial keeps its own copy in its Hydra job directory: ``artifacts/history.csv`` (rewritten
atomically after each epoch), ``artifacts/batch_loss.csv`` when batch losses are logged, and
``run.json`` (experiment, run name, params, tags, outcome, MLflow run id). When the tracking store
was unreachable or broke mid-run, this command puts those runs into MLflow:

- PATH is a job directory, its ``run.json`` or ``artifacts/history.csv``, or any directory above
  them (a sweep directory: every job below it).
- If the run id of ``run.json`` exists in the target store, the missing metric steps are added to
  that run; otherwise a new run is created in the same experiment (made if needed) with the same
  params and tags (the parent link is kept only if the parent exists there).
- Metrics are the history's columns with ``step`` = epoch (``batch_loss`` with its global step),
  artifacts are the job's ``artifacts/`` files, the status follows the saved outcome (a run that
  never ended is KILLED) and the run is tagged ``nnlab.recovered=true``.
- Running it twice adds nothing: steps already in the run are skipped, a complete run is left
  alone; ``run.json`` is updated with the run id it went to. A sweep's parent run left RUNNING is
  ended. Run it once the sweep has stopped, not while its trials still train.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from nnlab.checkpoint import atomic_write_text
from nnlab.jobdir import find_runs, read_history
from nnlab.tracking.schema import (
    MAX_ENTITIES_PER_BATCH,
    RUN_OUTCOMES,
    STATUS,
    SWEEP_FILE,
    Tag,
    chunks,
)


def recover_one(run_file: Path, uri: str | None) -> str:
    """Upload one job's saved run; return a one-line account of what was done."""
    from mlflow.entities import RunTag

    from nnlab.tracking.sink import log_params, unlogged
    from nnlab.tracking.store import client, prepare_store, resolve_uri, sqlite_path

    meta: dict[str, Any] = json.loads(run_file.read_text())
    job_dir = run_file.parent
    uri = uri or meta.get("tracking_uri")
    if not uri:
        return f"{job_dir}: skipped (trained with tracking=none; pass --tracking-uri to upload)"
    uri = resolve_uri(uri, Path.cwd())
    db = sqlite_path(uri)
    base = db.parent if db is not None else Path.cwd()  # artifacts next to the db, as `mlflow ui`
    exp_id = prepare_store(uri, meta["experiment_name"], "mlruns", base)
    c = client(uri)

    run_id = meta.get("run_id")
    existing = None
    if run_id:
        try:
            existing = c.get_run(run_id)
        except Exception:  # not in this store
            existing = None
        if existing is not None and existing.info.experiment_id != exp_id:
            existing = None
    tags = dict(meta.get("tags") or {})
    parent = tags.get(Tag.PARENT)
    if parent:
        try:
            c.get_run(parent)
        except Exception:
            tags.pop(Tag.PARENT)
            tags[Tag.ORIGINAL_PARENT] = parent
    tags[Tag.RECOVERED] = "true"
    series = read_history(job_dir / "artifacts")
    # only the steps the run does not hold yet
    metrics = unlogged(c, run_id if existing is not None else None, series)
    n_epochs = max((len(p) for k, p in series.items() if k != "batch_loss"), default=0)
    if existing is not None and not metrics and existing.info.status != "RUNNING":
        return f"{job_dir}: already complete: run {run_id} ({n_epochs} epochs)"

    if existing is None:
        run = c.create_run(exp_id, run_name=meta.get("run_name"), tags=tags)
        run_id = run.info.run_id
        log_params(c, run_id, meta.get("params") or {})
    else:
        if existing.info.status != "RUNNING":
            c.update_run(run_id, "RUNNING")
        c.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])
    for chunk in chunks(metrics, MAX_ENTITIES_PER_BATCH):
        c.log_batch(run_id, metrics=list(chunk))

    outcome = meta.get("outcome") or "running"
    if outcome not in RUN_OUTCOMES:
        outcome = "killed"  # the process died before the run ended
    c.log_batch(run_id, tags=[RunTag(Tag.OUTCOME, outcome)])
    artifacts = job_dir / "artifacts"
    if artifacts.is_dir() and not c.list_artifacts(run_id):
        c.log_artifacts(run_id, str(artifacts))
    c.set_terminated(run_id, STATUS[outcome])

    meta.update(run_id=run_id, tracking_uri=uri, tracked=True, error=None, outcome=outcome)
    atomic_write_text(run_file, json.dumps(meta, indent=1, default=str))
    verb = "updated run" if existing is not None else "created run"
    return (
        f"{job_dir}: {verb} {run_id} in experiment {meta['experiment_name']!r} "
        f"({len(metrics)} metric values added, {n_epochs} epochs, outcome {outcome})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nnlab.recover",
        description="Upload the local history of runs that MLflow missed (see nnlab.recover).",
    )
    parser.add_argument(
        "paths", nargs="+", type=Path, help="job dir, run.json, history.csv, or a dir above them"
    )
    parser.add_argument(
        "--tracking-uri",
        default=None,
        help="target store (default: the one each run was started with)",
    )
    args = parser.parse_args(argv)
    from nnlab.config import ConfigError

    run_files = find_runs(args.paths)
    if not run_files:
        print(
            "nnlab.recover: no run.json found under " + ", ".join(map(str, args.paths)),
            file=sys.stderr,
        )
        return 2
    failures = 0
    for run_file in run_files:
        try:
            print(recover_one(run_file, args.tracking_uri), flush=True)
        except ConfigError as exc:
            print(f"nnlab.recover: {exc}", file=sys.stderr)
            return 2
        except Exception as exc:
            failures += 1
            print(f"nnlab.recover: {run_file.parent}: {type(exc).__name__}: {exc}", file=sys.stderr)
    for sweep_file in find_sweeps(args.paths):
        try:
            line = close_parent(sweep_file, args.tracking_uri)
        except Exception as exc:
            failures += 1
            line = f"nnlab.recover: {sweep_file}: {type(exc).__name__}: {exc}"
        if line:
            print(line, flush=True)
    return 1 if failures else 0


def find_sweeps(paths: list[Path]) -> list[Path]:
    """The sweep files (``<sweep dir>/.nnlab/sweep.json``) under directory ``paths``."""
    return sorted({s.resolve() for p in paths if p.is_dir() for s in p.rglob(SWEEP_FILE)})


def close_parent(sweep_file: Path, uri: str | None) -> str | None:
    """End a sweep's parent run left RUNNING (its launcher could not reach the store)."""
    from mlflow.entities import RunTag

    from nnlab.tracking.store import client

    ctx = json.loads(sweep_file.read_text())
    uri = uri or ctx.get("uri")
    if not uri or not ctx.get("parent_run_id"):
        return None
    c = client(uri)
    try:
        run = c.get_run(ctx["parent_run_id"])
    except Exception:  # another store: its trials were filed without the parent link
        return None
    if run.info.status != "RUNNING":
        return None
    c.log_batch(run.info.run_id, tags=[RunTag(Tag.RECOVERED, "true")])
    c.set_terminated(run.info.run_id, "FINISHED")
    return f"{sweep_file.parent.parent}: closed parent run {run.info.run_id} (FINISHED)"


if __name__ == "__main__":
    sys.exit(main())
