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
import csv
import json
import sys
from pathlib import Path
from typing import Any

from nnlab.checkpoint import atomic_write_text

RUN_FILE = "run.json"
SWEEP_FILE = ".nnlab/sweep.json"


def find_runs(paths: list[Path]) -> list[Path]:
    """The ``run.json`` files that ``paths`` name or hold (sorted, each once)."""
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


def read_history(artifacts: Path) -> dict[str, list[tuple[int, float]]]:
    """metric -> [(step, value)] from history.csv (step = epoch) and batch_loss.csv."""
    series: dict[str, list[tuple[int, float]]] = {}
    history = artifacts / "history.csv"
    if history.is_file():
        with history.open(newline="") as fh:
            for row in csv.DictReader(fh):
                epoch = int(row.pop("epoch"))
                for key, value in row.items():
                    if value not in ("", None):
                        series.setdefault(key, []).append((epoch, float(value)))
    batches = artifacts / "batch_loss.csv"
    if batches.is_file():
        with batches.open(newline="") as fh:
            series["batch_loss"] = [
                (int(r["step"]), float(r["batch_loss"])) for r in csv.DictReader(fh)
            ]
    return series


def recover_one(run_file: Path, uri: str | None) -> str:
    """Upload one job's saved run; return a one-line account of what was done."""
    import time

    from mlflow.entities import Metric, Param, RunTag

    from nnlab import tracking

    meta: dict[str, Any] = json.loads(run_file.read_text())
    job_dir = run_file.parent
    uri = uri or meta.get("tracking_uri")
    if not uri:
        return f"{job_dir}: skipped (trained with tracking=none; pass --tracking-uri to upload)"
    if uri.startswith("sqlite:///"):
        uri = tracking.resolve_uri(uri, Path.cwd())
        base = Path(uri[len("sqlite:///") :]).parent  # artifacts next to the db, as `mlflow ui`
    else:
        base = Path.cwd()
    exp_id = tracking.prepare_store(uri, meta["experiment_name"], "mlruns", base)
    c = tracking.client(uri)

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
    parent = tags.get("mlflow.parentRunId")
    if parent:
        try:
            c.get_run(parent)
        except Exception:
            tags.pop("mlflow.parentRunId")
            tags["nnlab.original_parent"] = parent
    tags["nnlab.recovered"] = "true"
    now = int(time.time() * 1000)
    series = read_history(job_dir / "artifacts")
    metrics = []
    for key, points in series.items():  # only the steps the run does not hold yet
        logged = c.get_metric_history(run_id, key) if existing is not None else []
        last = max((m.step for m in logged), default=0)
        metrics += [Metric(key, v, now, s) for s, v in points if s > last]
    n_epochs = max((len(p) for k, p in series.items() if k != "batch_loss"), default=0)
    if existing is not None and not metrics and existing.info.status != "RUNNING":
        return f"{job_dir}: already complete: run {run_id} ({n_epochs} epochs)"

    if existing is None:
        run = c.create_run(exp_id, run_name=meta.get("run_name"), tags=tags)
        run_id = run.info.run_id
        params = [Param(k, v) for k, v in (meta.get("params") or {}).items()]
        for i in range(0, len(params), 100):
            c.log_batch(run_id, params=params[i : i + 100])
    else:
        if existing.info.status != "RUNNING":
            c.update_run(run_id, "RUNNING")
        c.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])
    for i in range(0, len(metrics), 1000):
        c.log_batch(run_id, metrics=metrics[i : i + 1000])

    outcome = meta.get("outcome") or "running"
    if outcome not in tracking.STATUS:
        outcome = "killed"  # the process died before the run ended
    c.log_batch(run_id, tags=[RunTag("nnlab.outcome", outcome)])
    artifacts = job_dir / "artifacts"
    if artifacts.is_dir() and not c.list_artifacts(run_id):
        c.log_artifacts(run_id, str(artifacts))
    c.set_terminated(run_id, tracking.STATUS[outcome])

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

    from nnlab import tracking

    ctx = json.loads(sweep_file.read_text())
    uri = uri or ctx.get("uri")
    if not uri or not ctx.get("parent_run_id"):
        return None
    c = tracking.client(uri)
    try:
        run = c.get_run(ctx["parent_run_id"])
    except Exception:  # another store: its trials were filed without the parent link
        return None
    if run.info.status != "RUNNING":
        return None
    c.log_batch(run.info.run_id, tags=[RunTag("nnlab.recovered", "true")])
    c.set_terminated(run.info.run_id, "FINISHED")
    return f"{sweep_file.parent.parent}: closed parent run {run.info.run_id} (FINISHED)"


if __name__ == "__main__":
    sys.exit(main())
