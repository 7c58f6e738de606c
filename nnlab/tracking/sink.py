"""``MlflowSink``: one trial streamed into one MLflow run, cheaply.

Every logging call is one store commit (~9 ms on sqlite). The sink buffers epoch metrics and writes
them with one ``log_batch`` at most every ``tracking.flush_interval`` seconds and at the end: live
in the UI, cheap in total. A store error while training does not stop training (see
:class:`MlflowSink`).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from nnlab.jobdir import Series  # metric -> [(step, value)], as read_history gives it
from nnlab.tracking.schema import (
    MAX_ENTITIES_PER_BATCH,
    MAX_PARAMS_PER_BATCH,
    STATUS,
    chunks,
    param_value,
)
from nnlab.tracking.store import client, one_line
from nnlab.train import Sink


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
    directly: ``MlflowClient.log_artifacts`` would first fetch the whole run to find it.
    """
    if not directory.is_dir() or not any(directory.iterdir()):
        return
    if artifact_uri is None:
        c.log_artifacts(run_id, str(directory))
        return
    if artifact_uri.startswith(("file:", "/")):  # a directory of this machine (a local store,
        from urllib.parse import unquote, urlsplit  # or a server that does not proxy artifacts)

        link_tree(directory, Path(unquote(urlsplit(artifact_uri).path)))
        return
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    repo = get_artifact_repository(artifact_uri, tracking_uri=c.tracking_uri)
    repo.log_artifacts(str(directory))


class MlflowSink(Sink):
    """One MLflow run: params once, epoch metrics batched, tags + artifacts + status at the end.

    ``overhead`` accumulates the seconds spent in MLflow calls (the cost of tracking).

    A store error while training does not stop training: the sink keeps every metric in its
    buffer, records the error in ``error`` (the first one, one line), makes no further MLflow
    calls until ``finish``, which tries once more (the store may be back) and raises if it fails.
    The job directory keeps the history either way (``nnlab.jobdir.LocalHistory``).

    ``resume_run_id`` reopens that run (status back to RUNNING) instead of creating one.
    ``auto_flush=False`` leaves flushing to the owner (``maybe_flush`` after each checkpoint).
    """

    def __init__(
        self,
        uri: str,
        experiment_id: str,
        name: str,
        tags: dict[str, str],
        params: dict[str, Any],
        flush_interval: float = 1.0,
        resume_run_id: str | None = None,
    ):
        from mlflow.entities import RunTag

        t0 = time.perf_counter()
        self.client = client(uri)
        self.flush_interval = flush_interval
        self.auto_flush = True
        self.buffer: list = []
        self.error: str | None = None
        if resume_run_id is not None:
            self.run_id = resume_run_id
            self.client.update_run(resume_run_id, "RUNNING")
            self.client.log_batch(resume_run_id, tags=[RunTag(k, v) for k, v in tags.items()])
            self.artifact_uri = None  # looked up by ``log_artifacts`` when needed
        else:
            run = self.client.create_run(experiment_id, run_name=name, tags=tags)
            self.run_id, self.artifact_uri = run.info.run_id, run.info.artifact_uri
            log_params(self.client, self.run_id, params)
        self.last_flush = time.perf_counter()
        self.overhead = self.last_flush - t0

    def _add(self, key: str, value: float, step: int) -> None:
        from mlflow.entities import Metric

        self.buffer.append(Metric(key, float(value), int(time.time() * 1000), step))

    def backfill(self, history: dict[str, list[float]], batches: list[tuple[int, float]]) -> int:
        """Queue the saved epochs (and batch losses) the run does not hold yet; return how many."""
        series: Series = {k: list(enumerate(v, start=1)) for k, v in history.items()}
        if batches:
            series["batch_loss"] = list(batches)
        missing = unlogged(self.client, self.run_id, series)
        self.buffer += missing
        return len(missing)

    def log_epoch(self, epoch: int, logs: dict[str, float]) -> None:
        t0 = time.perf_counter()
        for key, value in logs.items():
            self._add(key, value, epoch)
        self.overhead += time.perf_counter() - t0
        if self.auto_flush:
            self.maybe_flush(epoch)

    def maybe_flush(self, epoch: int | None = None) -> None:
        """``flush`` if ``flush_interval`` seconds have passed; a store error is kept, not raised.

        After an error no further call is made until ``finish`` (which tries once more).
        """
        if self.error is not None or not self.buffer:
            return
        if time.perf_counter() - self.last_flush < self.flush_interval:
            return
        try:
            self.flush()
        except Exception as exc:  # keep training; the buffer and the job dir keep the metrics
            self.error = one_line(exc)
            print(
                f"nnlab: MLflow error at epoch {epoch} of run {self.run_id}: {self.error}; "
                "training goes on, metrics are kept (job dir history.csv) and retried at the end",
                file=sys.stderr,
                flush=True,
            )

    def log_batch_loss(self, step: int, loss: float) -> None:
        self._add("batch_loss", loss, step)

    def discard_after(self, epoch: int, step: int) -> None:
        """Drop buffered values past a checkpoint (epoch ``epoch``, optimizer step ``step``).

        After an interruption the checkpoint is where the trial resumes: values beyond it will
        be logged again by the resumed run, so they must not reach the store now.
        """
        self.buffer = [
            m for m in self.buffer if m.step <= (step if m.key == "batch_loss" else epoch)
        ]

    def flush(self) -> None:
        """Write buffered metrics with ``log_batch`` (in chunks of MLflow's limit)."""
        t0 = time.perf_counter()
        while self.buffer:  # drop a chunk only once written (Ctrl-C may land mid-call)
            self.client.log_batch(self.run_id, metrics=self.buffer[:MAX_ENTITIES_PER_BATCH])
            del self.buffer[:MAX_ENTITIES_PER_BATCH]
        self.last_flush = time.perf_counter()
        self.overhead += self.last_flush - t0

    def finish(self, outcome: str, tags: dict[str, str], artifact_dir: Path | None) -> None:
        """The last metrics and the outcome tags in one ``log_batch``, ``artifact_dir`` in one
        upload, then the status from ``outcome``: three store calls for a short run."""
        from mlflow.entities import RunTag

        t0 = time.perf_counter()
        items = [RunTag(k, str(v)) for k, v in tags.items()]
        while len(self.buffer) + len(items) > MAX_ENTITIES_PER_BATCH:
            self.client.log_batch(self.run_id, metrics=self.buffer[:MAX_ENTITIES_PER_BATCH])
            del self.buffer[:MAX_ENTITIES_PER_BATCH]
        self.client.log_batch(self.run_id, metrics=self.buffer, tags=items)
        self.buffer.clear()
        self.last_flush = time.perf_counter()
        if artifact_dir is not None:
            self.log_artifacts(artifact_dir)
        self.client.set_terminated(self.run_id, STATUS[outcome])
        self.overhead += time.perf_counter() - t0

    def log_artifacts(self, directory: Path) -> None:
        """Upload ``directory``'s files to the run's artifact root in one call."""
        upload_artifacts(self.client, self.run_id, self.artifact_uri, directory)

    def log_datasets(self, data: Any, data_cfg: dict) -> None:
        """The trial's training and validation splits as the run's dataset inputs (one call,
        :mod:`nnlab.tracking.datasets`). A failure is reported, not raised: the run goes on."""
        from nnlab.tracking.datasets import log_datasets

        t0 = time.perf_counter()
        try:
            log_datasets(self.client, self.run_id, data, data_cfg)
        except Exception as exc:
            print(
                f"nnlab: could not log the datasets of MLflow run {self.run_id}: {one_line(exc)}",
                file=sys.stderr,
                flush=True,
            )
        self.overhead += time.perf_counter() - t0
