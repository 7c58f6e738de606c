"""The MLflow calls that file a run, shared by the run writer (:mod:`nnlab.tracking.writer`),
``nnlab.recover`` and the parent run: params in few calls, only the metric points a run lacks,
artifacts as hard links where the store is a local directory."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from nnlab.jobdir import Series  # metric -> [(step, value)], as read_history gives it
from nnlab.tracking.schema import (
    MAX_PARAMS_PER_BATCH,
    chunks,
    param_value,
)


def unlogged(c: Any, run_id: str | None, series: Series) -> list:
    """The points of ``series`` above the run's last logged step of each metric, as Metrics
    (all of them for ``run_id=None``: a run created now).

    A resumed or recovered run thus ends with each step exactly once, whatever was flushed
    before the interruption.
    """
    last = {}
    for key in series:
        logged = c.get_metric_history(run_id, key) if run_id is not None else []
        last[key] = max((m.step for m in logged), default=0)
    return points_after(series, last)


def points_after(series: Series, last: dict[str, int]) -> list:
    """The points of ``series`` above ``last[metric]`` (0 if absent), as Metrics stamped now."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [
        Metric(key, float(v), now, int(s))
        for key, points in series.items()
        for s, v in points
        if s > last.get(key, 0)
    ]


def log_params(c: Any, run_id: str, params: dict[str, Any]) -> None:
    """``params`` in as few ``log_batch`` calls as MLflow allows (values truncated to its limit)."""
    from mlflow.entities import Param

    items = [Param(k, param_value(v)) for k, v in params.items()]
    for chunk in chunks(items, MAX_PARAMS_PER_BATCH):
        c.log_batch(run_id, params=list(chunk))


def link_tree(src: Path, dst: Path) -> None:
    """Put ``src``'s files under ``dst``: hard links where the file system allows, else copies.

    A local store's artifacts are files beside the job directory: a link costs one system call
    where MLflow's upload copies each file (~1 ms each, a dozen per trial). Safe because nnlab
    never rewrites a job's file in place (every write is a new file renamed over the old).
    """
    import os
    import shutil

    for root, _dirs, files in os.walk(src):
        target = dst / Path(root).relative_to(src)
        target.mkdir(parents=True, exist_ok=True)
        for name in files:
            source, dest = Path(root) / name, target / name
            try:
                os.link(source, dest)
            except FileExistsError:  # uploaded before: replace it, never write through a link
                dest.unlink()
                os.link(source, dest)
            except OSError:  # another file system, or links not allowed: a copy
                shutil.copyfile(source, dest)


def upload_artifacts(c: Any, run_id: str, artifact_uri: str | None, directory: Path) -> None:
    """Upload ``directory``'s files to the run's artifact root in one call (nothing when it is
    missing or empty).

    With the run's artifact URI known (from ``create_run``) the repository is built from it
    directly (one call fewer); a continued run's is looked up. Every file goes again, so what
    an interrupted upload missed arrives; on a local store each is a fresh link.
    """
    if not directory.is_dir() or not any(directory.iterdir()):
        return
    if artifact_uri is None:
        artifact_uri = c.get_run(run_id).info.artifact_uri
    if artifact_uri.startswith(("file:", "/")):  # a directory of this machine (a local store,
        from urllib.parse import unquote, urlsplit  # or a server that does not proxy artifacts)

        link_tree(directory, Path(unquote(urlsplit(artifact_uri).path)))
        return
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    repo = get_artifact_repository(artifact_uri, tracking_uri=c.tracking_uri)
    repo.log_artifacts(str(directory))
