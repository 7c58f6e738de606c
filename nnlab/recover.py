"""``python -m nnlab.recover PATH... [--tracking-uri URI]``: file job directories MLflow missed.

Every trial keeps its whole run in its job directory (``run.json``: experiment, run name,
params, tags, outcome; ``artifacts/``: history, model, config). When the store was unreachable,
broke, or was deleted mid-sweep, this files those directories with the same code a sweep's
writer uses (:mod:`nnlab.tracking.writer`):

- PATH is a job directory, its ``run.json`` or ``artifacts/history.csv``, or any directory above
  them (a sweep directory: every job below it).
- If the run id of ``run.json`` exists in the target store, the missing metric steps and
  artifact files are added to that run; otherwise a new run is created in the same experiment
  (made if needed) with the same params and tags.
- A sweep's parent run (``<sweep dir>/.nnlab/sweep.json``) that the target store does not hold
  is created again, and the sweep's trials are filed under it; a lone job directory whose parent
  is not there is filed without the link (tag ``nnlab.original_parent``).
- The status follows the saved outcome (a run that never ended is KILLED) and the run is tagged
  ``nnlab.recovered=true``.
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

from nnlab.jobdir import find_runs, read_history
from nnlab.tracking.schema import SWEEP_FILE, Tag


def target_of(meta: dict, uri: str | None) -> tuple[str, str, Any] | None:
    """(uri, experiment id, client) of the store ``run.json`` ``meta`` goes to; None for a run
    trained with ``tracking=none`` and no ``uri`` given."""
    from nnlab.tracking.store import client, prepare_store, resolve_uri, sqlite_path

    uri = uri or meta.get("tracking_uri")
    if not uri:
        return None
    uri = resolve_uri(uri, Path.cwd())
    db = sqlite_path(uri)
    base = db.parent if db is not None else Path.cwd()  # artifacts next to the db, as `mlflow ui`
    return uri, prepare_store(uri, meta["experiment_name"], "mlruns", base), client(uri)


def _exists(c: Any, run_id: str | None, experiment_id: str | None = None) -> bool:
    if not run_id:
        return False
    try:
        run = c.get_run(run_id)
    except Exception:  # not in this store
        return False
    return experiment_id is None or run.info.experiment_id == experiment_id


def interrupted_run(c: Any, experiment_id: str, digest: str, parent: str | None) -> str | None:
    """The newest run of config ``digest`` under ``parent`` (or without one) that did not
    finish: the run a writer had begun when the store broke (its trial then rewrote its
    ``run.json`` without the id)."""
    if not digest:
        return None
    query = f"tags.`{Tag.CONFIG_HASH}` = '{digest}' and attributes.status != 'FINISHED'"
    found = c.search_runs(
        [experiment_id], query, max_results=50, order_by=["attributes.start_time DESC"]
    )
    for run in found:
        if run.data.tags.get(Tag.PARENT) == parent:
            return run.info.run_id
    return None


def complete(c: Any, run_id: str, job_dir: Path) -> bool:
    """Whether run ``run_id`` already holds every step and artifact file of ``job_dir`` and
    has ended."""
    from nnlab.tracking.upload import unlogged

    if c.get_run(run_id).info.status == "RUNNING":
        return False
    if unlogged(c, run_id, read_history(job_dir / "artifacts")):
        return False
    return artifact_files(job_dir / "artifacts") <= logged_files(c, run_id)


def artifact_files(directory: Path) -> set[str]:
    return {str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file()}


def logged_files(c: Any, run_id: str, path: str | None = None) -> set[str]:
    found = set()
    for info in c.list_artifacts(run_id, path):
        found |= logged_files(c, run_id, info.path) if info.is_dir else {info.path}
    return found


def recover_one(run_file: Path, uri: str | None, parent: str | None = None) -> str:
    """File one job's saved run; return a one-line account of what was done. ``parent``: the
    sweep's parent run in the target store (from :func:`parent_of`)."""
    from nnlab.sweep.context import SweepContext
    from nnlab.tracking.writer import file_run

    meta: dict[str, Any] = json.loads(run_file.read_text())
    job_dir = run_file.parent
    target = target_of(meta, uri)
    if target is None:
        return f"{job_dir}: skipped (trained with tracking=none; pass --tracking-uri to upload)"
    uri, exp_id, c = target
    tags = dict(meta.get("tags") or {})
    parent = parent or tags.get(Tag.PARENT)
    run_id = meta.get("run_id") if _exists(c, meta.get("run_id"), exp_id) else None
    if run_id is None and meta.get("run_id") is None:  # filed live, then the store broke
        run_id = interrupted_run(c, exp_id, tags.get(Tag.CONFIG_HASH, ""), parent)
    series = read_history(job_dir / "artifacts")
    n_epochs = max((len(p) for k, p in series.items() if k != "batch_loss"), default=0)
    if run_id is not None and complete(c, run_id, job_dir):
        return f"{job_dir}: already complete: run {run_id} ({n_epochs} epochs)"
    extra = {Tag.RECOVERED: "true"}
    if parent and not _exists(c, parent):
        extra[Tag.ORIGINAL_PARENT] = parent
        parent = None
    ctx = SweepContext(
        sweep_id=tags.get(Tag.SWEEP_ID, ""),
        backend="mlflow",
        uri=uri,
        experiment_id=exp_id,
        parent_run_id=parent,
        n_trials=None,
        varying=[],
        parallel=False,
        results_dir=str(job_dir / ".nnlab"),
    )
    reopen = {tags.get(Tag.CONFIG_HASH, ""): run_id} if run_id else {}
    new_id, added, outcome = file_run(run_file, ctx, reopen, extra_tags=extra)
    verb = "updated run" if run_id is not None else "created run"
    return (
        f"{job_dir}: {verb} {new_id} in experiment {meta['experiment_name']!r} "
        f"({added} metric values added, {n_epochs} epochs, outcome {outcome})"
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
    sweeps = find_sweeps(args.paths)
    parents: dict[Path, str | None] = {}
    try:
        for sweep_file in sweeps:
            parents[sweep_file.parent.parent] = parent_of(sweep_file, args.tracking_uri)
    except ConfigError as exc:
        print(f"nnlab.recover: {exc}", file=sys.stderr)
        return 2
    for run_file in run_files:
        parent = next((p for d, p in parents.items() if d in run_file.parents), None)
        try:
            print(recover_one(run_file, args.tracking_uri, parent), flush=True)
        except ConfigError as exc:
            print(f"nnlab.recover: {exc}", file=sys.stderr)
            return 2
        except Exception as exc:
            failures += 1
            print(f"nnlab.recover: {run_file.parent}: {type(exc).__name__}: {exc}", file=sys.stderr)
    for sweep_file in sweeps:
        try:
            line = close_parent(sweep_file, args.tracking_uri)
        except Exception as exc:
            failures += 1
            line = f"nnlab.recover: {sweep_file}: {type(exc).__name__}: {exc}"
        if line:
            print(line, flush=True)
    return 1 if failures else 0


def find_sweeps(paths: list[Path]) -> list[Path]:
    """The sweep files (``<sweep dir>/.nnlab/sweep.json``) under directory ``paths``, or of the
    sweep a job directory belongs to."""
    found = set()
    for path in paths:
        if path.is_dir():
            found |= {s.resolve() for s in path.rglob(SWEEP_FILE)}
            above = path.resolve().parent / SWEEP_FILE
            if above.is_file():
                found.add(above)
    return sorted(found)


def parent_of(sweep_file: Path, uri: str | None) -> str | None:
    """The sweep's parent run in the target store: its own, or, when that store does not hold
    it (another store; the file was deleted mid-sweep), a new one made like it (``sweep.json``
    then names it, so a second recover does not make another)."""
    from nnlab.sweep.context import SweepContext
    from nnlab.tracking.parent import start_parent
    from nnlab.tracking.store import client, prepare_store, resolve_uri, sqlite_path

    ctx = SweepContext.load(sweep_file)
    target = uri or ctx.uri
    if not target or not ctx.parent_run_id:
        return None
    target = resolve_uri(target, Path.cwd())
    if _exists(client(target), ctx.parent_run_id):
        return ctx.parent_run_id
    name = _experiment_of(sweep_file)
    if name is None:
        return None
    db = sqlite_path(target)
    base = db.parent if db is not None else Path.cwd()
    ctx.uri = target
    ctx.experiment_id = prepare_store(target, name, "mlruns", base)
    ctx.parent_run_id = start_parent(ctx, ctx.task, name, recovered=True)
    ctx.save(sweep_file)
    return ctx.parent_run_id


def _experiment_of(sweep_file: Path) -> str | None:
    """The experiment of a sweep's trials (from one of its job directories)."""
    for run_file in sorted(sweep_file.parent.parent.glob(f"*/{'run.json'}")):
        try:
            return json.loads(run_file.read_text())["experiment_name"]
        except (OSError, ValueError, KeyError):
            continue
    return None


def close_parent(sweep_file: Path, uri: str | None) -> str | None:
    """End a sweep's parent run left RUNNING (its launcher could not reach the store)."""
    from mlflow.entities import RunTag

    from nnlab.tracking.store import client, resolve_uri

    ctx = json.loads(sweep_file.read_text())
    uri = uri or ctx.get("uri")
    if not uri or not ctx.get("parent_run_id"):
        return None
    c = client(resolve_uri(uri, Path.cwd()))
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
