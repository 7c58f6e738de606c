"""The run writer: one thread of the launching process turns job directories into MLflow runs.

Every trial - a single run, a trial of a serial, parallel or SLURM sweep - only writes its job
directory (``run.json``, ``artifacts/history.csv`` rewritten while it trains, the artifacts at
the end: :mod:`nnlab.jobdir`) and says where it is. :class:`RunWriter`, a thread of the
launching process, files those directories while the trials train; ``nnlab.recover`` files them
afterwards with the same code (:func:`file_job_dir`). So there is one path from a trial to its
run, and no trial process imports MLflow (2-3 s) or opens the store (~1.5 s).

For each trial the writer:

- when it first sees it: creates its run (tags, params, datasets), or continues the interrupted
  run of the same config (a reopened parent's, or the newest unfinished one of a resumed trial);
- every poll: sends the history's new steps (live curves in the UI, a checkpoint interval
  behind);
- once ``run.json`` holds the outcome: the last steps, outcome tags, artifacts, then the status.

Every metric step reaches its run once: only steps above the last one logged are sent. A store
error ends the uploads of that trial, never its training: its job directory keeps everything and
the summary names ``python -m nnlab.recover``.

Trials tell the writer where they are with :meth:`RunWriter.add` (nnlab's own launchers), or
with an announcement file in ``<results dir>/jobs/`` (jobs of Hydra's launchers and SLURM tasks,
:func:`announce`), which the writer reads once and deletes.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nnlab.checkpoint import Checkpointer, atomic_write_text
from nnlab.config import ConfigError
from nnlab.jobdir import read_history
from nnlab.tracking.schema import (
    MAX_ENTITIES_PER_BATCH,
    MAX_PARAMS_PER_BATCH,
    RUN_OUTCOMES,
    STATUS,
    Artifact,
    Tag,
    param_value,
    run_display_name,
)
from nnlab.tracking.store import one_line, say
from nnlab.tracking.upload import upload_artifacts

POLL_S = 0.2  # seconds between passes over the trials in progress
JOBS_DIR = "jobs"  # <results dir>/jobs/<job number>: the path of that trial's run.json
RECORDS_DIR = "records"  # <results dir>/records/<job number>.json: a remote job's record
DONE_OUTCOMES = ("completed", "early_stopped", "diverged", "pruned")  # checkpoint not needed
OnDone = Callable[[int, "str | None", "str | None"], None]  # (job, run id, error)


def announce(results_dir: str | Path, job: int, run_file: Path) -> None:
    """In a job started by another launcher: tell the writer where trial ``job``'s ``run.json``
    is (an atomic file ``<results dir>/jobs/<job>``: its name is only digits when complete)."""
    atomic_write_text(Path(results_dir) / JOBS_DIR / f"{job:05d}", str(run_file), sync=False)


def save_record(results_dir: str | Path, record: dict) -> None:
    """In a job started by another launcher: leave its record for the launching process."""
    path = Path(results_dir) / RECORDS_DIR / f"{record['job']:05d}.json"
    atomic_write_text(path, json.dumps(record, default=float), sync=False)


def take_records(results_dir: str | Path) -> list[dict]:
    """The records left since the last call (each file read once, then deleted)."""
    folder = Path(results_dir) / RECORDS_DIR
    found = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name) if folder.is_dir() else []:
        if not (entry.name.endswith(".json") and entry.name[:-5].isdigit()):
            continue  # an atomic write still under way (its temp name)
        try:
            found.append(json.loads(Path(entry.path).read_text()))
            os.unlink(entry.path)
        except (OSError, ValueError):
            continue
    return found


@dataclass
class Upload:
    """One trial's progress into its MLflow run."""

    job: int
    run_file: Path
    run_id: str | None = None
    artifact_uri: str | None = None
    last_step: dict[str, int] = field(default_factory=dict)  # metric -> last step logged
    seen: tuple = ()  # (size, mtime) of the history files at the last upload
    abandoned: tuple[str, str] | None = None  # (outcome, why): its process died
    sent: int = 0  # metric values sent
    named: bool = False  # created with its final name (it had ended when first seen)
    reopened: bool = False  # an interrupted run continued (its name may carry " [killed]")
    outcome: str = "running"
    error: str | None = None
    seconds: float = 0.0  # the writer's time on this trial (wall clock)
    cpu_seconds: float = 0.0  # of which the writer thread's own CPU time


class RunWriter:
    """The thread that files trials' job directories as MLflow runs (the module docstring).

    Parameters
    ----------
    ctx : SweepContext
        Its ``uri``, ``experiment_id``, ``parent_run_id`` (None: single runs) and
        ``results_dir`` (where announcements arrive).
    setup : callable, optional
        Runs first, in the thread, while the first trials already train: opens the store, sets
        ``ctx.experiment_id`` (and ``ctx.parent_run_id``) and returns what ``reopen`` holds
        otherwise.
    reopen : dict, optional
        config hash -> run id of the unfinished trials of a reopened parent: continued.
    on_done : callable, optional
        Called (in the writer's thread) with (job, run id, error) once a trial's run is filed,
        or given up (error set).
    """

    def __init__(
        self,
        ctx: Any,
        setup: Callable[[], dict[str, str] | None] | None = None,
        reopen: dict[str, str] | None = None,
        on_done: OnDone | None = None,
        poll: float = POLL_S,
    ):
        self.ctx, self.setup, self.reopen, self.poll_s = ctx, setup, dict(reopen or {}), poll
        self.on_done = on_done
        self.jobs: dict[int, Upload] = {}  # the trials in progress
        self.errored: list[Upload] = []  # given up on: run.json says so once the trial ends
        self.error: str | None = None  # the store could not be opened: nothing is uploaded
        self.setup_s = self.drain_s = 0.0
        self.killed = self.filed = self.failed = 0  # runs ended KILLED; runs filed; given up
        self.per_trial: list[tuple[float, float]] = []  # (wall, cpu) s per filed run (bounded)
        self._new: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()
        self._wake = threading.Event()  # poll now (someone waits for a trial's run)
        self._ready = threading.Event()  # setup has run (the store is open, or failed)
        self._end_running = False  # the final pass ends trials still "running" as killed
        self._thread = threading.Thread(target=self._main, name="nnlab-run-writer", daemon=True)
        self.client: Any = None
        self.store: Any = None  # MLflow's SqlAlchemyStore behind the client (sqlite)
        self.bulk = False  # new runs' rows in one transaction (insert_new_run)
        self.reopen_all = False  # continue the run in ``reopen`` even if the trial did not resume
        self.extra_tags: dict[str, str] = {}  # added to every run's (nnlab.recover's)

    # --- what the launching process calls --------------------------------------------------

    def start(self) -> RunWriter:
        self._thread.start()
        return self

    @property
    def started(self) -> bool:
        return self._thread.is_alive() or self._ready.is_set()

    def add(self, job: int, run_file: Path) -> None:
        """Trial ``job`` writes its job directory at ``run_file``'s directory (thread-safe)."""
        self._new.put(("add", job, Path(run_file)))

    def abandon(self, job: int, outcome: str, why: str) -> None:
        """Trial ``job``'s process died: file what its job dir holds and end it ``outcome``."""
        self._new.put(("abandon", job, (outcome, why)))

    def kick(self) -> None:
        """Poll now instead of at the next tick (a search waits for a trial's run id)."""
        self._wake.set()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Until the store is open (True) or the timeout passed."""
        return self._ready.wait(timeout)

    def close(self, interrupted: bool = False) -> dict[int, str]:
        """File what is left and stop; ``interrupted``: trials still running end KILLED.

        Returns job -> why for the trials MLflow did not get whole (``run.json`` says so too).
        """
        t0 = time.perf_counter()
        self._end_running = interrupted
        self._stop.set()
        self._wake.set()
        self._thread.join()
        self.drain_s = time.perf_counter() - t0
        missed = {}
        for job, up in list(self.jobs.items()):
            missed[job] = up.error or self.error or "its run was not closed"
            _mark_untracked(up, missed[job])
            self._done(up)
        for up in self.errored:  # their trials may have rewritten run.json since
            _mark_untracked(up, up.error)
        return missed

    # --- the thread --------------------------------------------------------------------------

    def connect(self) -> None:
        """Run ``setup`` and open the client (``error`` says why not, once, on stderr)."""
        from nnlab.tracking.store import client

        t0 = time.perf_counter()
        try:
            if self.setup is not None:
                self.reopen.update(self.setup() or {})
            self.client = client(self.ctx.uri)
            self.store = getattr(getattr(self.client, "_tracking_client", None), "store", None)
            self.bulk = hasattr(self.store, "engine") and self.ctx.uri.startswith("sqlite:")
        except Exception as exc:  # ConfigError included: the trials go on, kept locally
            self.error = str(exc) if isinstance(exc, ConfigError) else one_line(exc)
            say(f"nnlab: the MLflow store cannot be used ({self.error}); the trials go on")
        self.setup_s = time.perf_counter() - t0
        self._ready.set()

    def _main(self) -> None:
        self.connect()
        while True:
            stopping = self._stop.is_set()
            try:
                self._take_new()
                if self.error is None:
                    self.poll()
            except Exception as exc:  # never let the thread die: the trials stay in the dirs
                say(f"nnlab: the run writer hit {one_line(exc)}; it goes on")
            if stopping:
                return
            self._wake.wait(self.poll_s)
            self._wake.clear()

    def _take_new(self) -> None:
        """Register the trials added or announced since the last pass."""
        while True:
            try:
                kind, job, what = self._new.get_nowait()
            except queue.Empty:
                break
            if kind == "add":
                self.jobs.setdefault(job, Upload(job, what))
            elif job in self.jobs:
                self.jobs[job].abandoned = what
        folder = Path(self.ctx.results_dir) / JOBS_DIR
        for entry in os.scandir(folder) if folder.is_dir() else []:
            if not entry.name.isdigit():
                continue  # an announcement still being written (its temp name)
            try:
                run_file = Path(Path(entry.path).read_text())
                os.unlink(entry.path)
            except OSError:
                continue
            self.jobs.setdefault(int(entry.name), Upload(int(entry.name), run_file))

    def poll(self) -> None:
        """One pass over every trial in progress."""
        for up in list(self.jobs.values()):
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                done = self.sync(up)
            except Exception as exc:
                up.error = one_line(exc)
                say(
                    f"nnlab: MLflow error on {up.run_file.parent} ({up.error}); the trial goes "
                    "on, its history is kept in its job directory"
                )
                _mark_untracked(up, up.error)
                if len(self.errored) < 100_000:
                    self.errored.append(up)
                done = True
            up.seconds += time.perf_counter() - t0
            up.cpu_seconds += time.thread_time() - c0
            if done:
                self._done(up)

    def _done(self, up: Upload) -> None:
        self.jobs.pop(up.job, None)
        if up.error is None:
            self.filed += 1
            if len(self.per_trial) < 100_000:
                self.per_trial.append((up.seconds, up.cpu_seconds))
        else:
            self.failed += 1
        if self.on_done is not None:
            self.on_done(up.job, up.run_id, up.error)

    def sync(self, up: Upload) -> bool:
        """Bring trial ``up``'s run level with its job directory; True once it is closed."""
        try:
            meta = json.loads(up.run_file.read_text())
        except FileNotFoundError:
            if up.abandoned is None and not self._end_running:
                return False  # not written yet
            raise
        outcome = meta.get("outcome") or "running"
        if outcome not in RUN_OUTCOMES:  # still training, or stopped before it could say
            if up.abandoned is not None:
                outcome = up.abandoned[0]
                meta.setdefault("end_tags", {})["nnlab.error"] = up.abandoned[1][:500]
            else:
                outcome = "killed" if self._end_running else "running"
        final = outcome != "running"
        artifacts = up.run_file.parent / "artifacts"
        seen = _stamp(artifacts)
        if up.run_id is not None and not final and seen == up.seen:
            return False
        series = read_history(artifacts)
        up.seen = seen
        params = self._open(up, meta, series) if up.run_id is None else []
        metrics = self._new_points(up, series)
        tags = self._end_tags(up, meta, outcome) if final else {}
        if final:  # the files first: a run is never FINISHED without them
            upload_artifacts(self.client, up.run_id, up.artifact_uri, artifacts)
        ended = self._send(up, params, metrics, tags, STATUS[outcome] if final else None)
        up.sent += len(metrics)
        if final:
            up.outcome = outcome
            self._close(up, meta, outcome, ended)
        return final

    # --- the store calls ---------------------------------------------------------------------

    def _open(self, up: Upload, meta: dict, series: dict) -> list:
        """Create the trial's run (or reopen its interrupted one); return the params to send."""
        from mlflow.entities import Param, RunTag

        from nnlab.tracking.parent import launcher_tag

        c = self.client
        tags = {k: str(v) for k, v in (meta.get("tags") or {}).items()}
        tags[Tag.LAUNCHER] = launcher_tag()  # who files it: a dead one leaves it to be ended
        if self.ctx.parent_run_id:
            tags |= {Tag.PARENT: self.ctx.parent_run_id, Tag.SWEEP_ID: self.ctx.sweep_id}
        else:  # a single run, or a recovered one whose parent the store does not hold
            tags.pop(Tag.PARENT, None)
        tags |= self.extra_tags
        reopened, digest = None, tags.get(Tag.CONFIG_HASH, "")
        if self.reopen_all:
            reopened = self.reopen.pop(digest, None)
        elif Tag.RESUMED_FROM_EPOCH in tags:  # a trial resumed from its checkpoint continues
            reopened = self.reopen.pop(digest, None) or self._interrupted_run(digest)
        if reopened is not None:  # the interrupted run of this config: continue it
            up.run_id, up.reopened = reopened, True
            c.update_run(reopened, "RUNNING")
            c.log_batch(reopened, tags=[RunTag(k, v) for k, v in tags.items()])
            for key in c.get_run(reopened).data.metrics:  # steps it holds are not sent again
                logged = c.get_metric_history(reopened, key)
                up.last_step[key] = max((m.step for m in logged), default=0)
            return []
        name = meta.get("run_name")
        if meta.get("outcome") in RUN_OUTCOMES:  # ended before it was seen: named as it ended
            name, up.named = run_display_name(name or "", meta["outcome"]), True
        run = c.create_run(self.ctx.experiment_id, run_name=name, tags=tags)
        up.run_id, up.artifact_uri = run.info.run_id, run.info.artifact_uri
        if meta.get("datasets"):
            from nnlab.tracking.datasets import inputs_of

            try:
                c.log_inputs(up.run_id, datasets=inputs_of(meta["datasets"]))
            except Exception as exc:  # the run goes on without its Dataset column
                say(f"nnlab: could not log the datasets of MLflow run {up.run_id}: {one_line(exc)}")
        return [Param(k, param_value(v)) for k, v in (meta.get("params") or {}).items()]

    def _interrupted_run(self, digest: str) -> str | None:
        """The newest unfinished run of config ``digest`` under this parent (or of a single
        run), which a trial resumed from its checkpoint continues; None if there is none."""
        parent = self.ctx.parent_run_id
        query = f"tags.`{Tag.CONFIG_HASH}` = '{digest}' and attributes.status != 'FINISHED'"
        if parent:
            query += f" and tags.`{Tag.PARENT}` = '{parent}'"
        runs = self.client.search_runs(
            [self.ctx.experiment_id], query, max_results=20, order_by=["attributes.start_time DESC"]
        )
        for run in runs:
            if parent or Tag.PARENT not in run.data.tags:
                return run.info.run_id
        return None

    def _send(
        self, up: Upload, params: list, metrics: list, tags: dict[str, str], status: str | None
    ) -> bool:
        """params, metrics and tags in as few ``log_batch`` calls as MLflow's limits allow; a
        run created just now, on sqlite: one transaction (:func:`insert_new_run`), which also
        ends it with ``status`` if given. True when the run was ended here."""
        from mlflow.entities import RunTag

        if params and self.bulk:
            try:
                insert_new_run(self.store, up.run_id, params, metrics, tags, status)
                return status is not None
            except Exception as exc:  # another schema than this MLflow's: the API from now on
                self.bulk = False
                say(f"nnlab: bulk insert unavailable ({one_line(exc)}); using MLflow's log_batch")
        items = [RunTag(k, v) for k, v in tags.items()]
        while params or metrics or items:
            p = params[:MAX_PARAMS_PER_BATCH]
            t = items[: MAX_ENTITIES_PER_BATCH - len(p)]
            m = metrics[: MAX_ENTITIES_PER_BATCH - len(p) - len(t)]
            self.client.log_batch(up.run_id, metrics=m, params=p, tags=t)
            params, items, metrics = params[len(p) :], items[len(t) :], metrics[len(m) :]
        return False

    def _end_tags(self, up: Upload, meta: dict, outcome: str) -> dict[str, str]:
        from nnlab.tracking.pyfunc import logged_model_tag

        tags = {k: str(v) for k, v in (meta.get("end_tags") or {}).items()}
        tags[Tag.OUTCOME] = outcome
        model = up.run_file.parent / "artifacts" / Artifact.MLFLOW_MODEL / "MLmodel"
        if model.is_file():  # the worker could not know the run id: the model names it now
            info = json.loads(model.read_text())
            info["run_id"] = up.run_id
            atomic_write_text(model, json.dumps(info, indent=2) + "\n", sync=False)
        return {**tags, **logged_model_tag(up.run_file.parent / "artifacts")}

    def _close(self, up: Upload, meta: dict, outcome: str, ended: bool) -> None:
        """The status (unless ``ended``); the checkpoint of a trial that trained to its end is
        deleted; ``run.json`` names the run."""
        name = meta.get("run_name") or ""
        shown = run_display_name(name, outcome)
        if not up.named and (shown != name or up.reopened):
            self.client.update_run(up.run_id, name=shown)  # the table tells a diverged run by it
        if not ended:
            self.client.set_terminated(up.run_id, STATUS[outcome])
        self.killed += outcome == "killed"
        checkpoint = meta.get("checkpoint")
        if checkpoint and outcome in DONE_OUTCOMES and not meta.get("keep_checkpoint"):
            Checkpointer(Path(checkpoint)).delete()  # trained and tracked: nothing to resume
        meta.update(run_id=up.run_id, experiment_id=self.ctx.experiment_id, outcome=outcome)
        meta.update(tracking_uri=self.ctx.uri)
        meta.update(tracked=True, error=None)
        atomic_write_text(up.run_file, json.dumps(meta, indent=1, default=str), sync=False)

    @staticmethod
    def _new_points(up: Upload, series: dict) -> list:
        """The points above the steps already sent, as Metrics; they count as sent from now."""
        from nnlab.tracking.upload import points_after

        new = points_after(series, up.last_step)
        for key, points in series.items():
            if points:
                up.last_step[key] = max(up.last_step.get(key, 0), max(s for s, _ in points))
        return new

    def stats(self) -> dict:
        """What the benchmark reads (``writer.json``)."""
        return {
            "trials": self.filed,
            "per_trial_s": [w for w, _ in self.per_trial],
            "per_trial_cpu_s": [c for _, c in self.per_trial],
            "setup_s": self.setup_s,
            "drain_s": self.drain_s,
            "errors": self.failed,
        }


def file_job_dir(job_dir: Path, plain: dict, base: Path) -> str:
    """File the finished job directory ``job_dir`` as one run of ``plain``'s experiment, in the
    store ``plain["tracking"]`` names (relative paths from ``base``); return the run id.

    What a single run's writer does, for a job written by other code (``nnlab.lr_find``).
    ConfigError for a store that cannot be used.
    """
    from nnlab.sweep.context import SweepContext
    from nnlab.tracking.schema import RUN_FILE
    from nnlab.tracking.store import prepare_store, resolve_uri

    tracking = plain["tracking"]
    uri = resolve_uri(tracking["uri"], base)
    experiment_id = prepare_store(uri, plain["experiment_name"], tracking["artifacts"], base)
    ctx = SweepContext("", "mlflow", uri, experiment_id, None, None, [], False, str(job_dir))
    return file_run(Path(job_dir) / RUN_FILE, ctx)[0]  # (run id, values sent, outcome)


def file_run(
    run_file: Path,
    ctx: Any,
    reopen: dict[str, str] | None = None,
    extra_tags: dict[str, str] | None = None,
) -> tuple[str, int, str]:
    """File one job directory (its ``run_file``) as a run, now, in this thread.

    What the writer thread does for a trial, all at once: for a job directory whose trial has
    ended (or died: a run that never ended is filed KILLED). ``ctx`` names the store
    (``uri``), ``experiment_id`` and ``parent_run_id``; ``reopen`` maps a config hash to the run
    to continue (whatever the trial says of its resume); ``extra_tags`` are added to the run's.
    Returns (run id, metric values sent, outcome). Raises on a store error.
    """
    writer = RunWriter(ctx, reopen=reopen)
    writer.reopen_all, writer.extra_tags = True, dict(extra_tags or {})
    writer.connect()
    if writer.error is not None:
        raise ConfigError(writer.error)
    writer._end_running = True
    up = Upload(0, Path(run_file))
    writer.sync(up)
    return up.run_id, up.sent, up.outcome


def insert_new_run(
    store: Any, run_id: str, params: list, metrics: list, tags: dict, status: str | None = None
) -> None:
    """A run's params, metrics (and their latest values), tags and, if given, its final
    ``status`` (with the end time, as ``set_terminated``) in one transaction.

    For a run created a moment ago, on sqlite, and never logged to. ``log_batch`` builds an ORM
    object per metric and looks up each key's latest value: ~25 ms for a 40-epoch trial here.
    These inserts go through MLflow's own table definitions and value sanitising (NaN stored as
    0 with ``is_nan``, +-inf as +-max float) and pick each key's latest value as ``log_batch``
    does (highest step, then timestamp, then value), in ~2 ms. tests/test_tracking_writer.py
    checks that such a run reads back through ``MlflowClient`` exactly as a ``log_batch`` one.
    """
    from mlflow.store.tracking.dbmodels.models import (
        SqlLatestMetric,
        SqlMetric,
        SqlParam,
        SqlRun,
        SqlTag,
    )
    from sqlalchemy import insert, update

    rows: list[dict] = []
    latest: dict[str, dict] = {}
    for m in metrics:
        is_nan, value = store.sanitize_metric_value(float(m.value))
        row = {"key": m.key, "value": value, "timestamp": m.timestamp, "step": m.step,
               "is_nan": is_nan, "run_uuid": run_id}  # fmt: skip
        rows.append(row)
        best = latest.get(m.key)
        if best is None or (m.step, m.timestamp, value) > (
            best["step"],
            best["timestamp"],
            best["value"],
        ):
            latest[m.key] = row
    with store.engine.begin() as conn:
        conn.execute(
            insert(SqlParam.__table__),
            [{"key": p.key, "value": p.value, "run_uuid": run_id} for p in params],
        )
        if rows:
            conn.execute(insert(SqlMetric.__table__), rows)
            conn.execute(insert(SqlLatestMetric.__table__), list(latest.values()))
        if tags:
            conn.execute(
                insert(SqlTag.__table__),
                [{"key": k, "value": v, "run_uuid": run_id} for k, v in tags.items()],
            )
        if status is not None:
            runs = SqlRun.__table__
            end = int(time.time() * 1000)
            conn.execute(
                update(runs).where(runs.c.run_uuid == run_id).values(status=status, end_time=end)
            )


def _stamp(artifacts: Path) -> tuple:
    out = []
    for name in (Artifact.HISTORY, Artifact.BATCH_LOSS):
        try:
            st = (artifacts / name).stat()
            out.append((st.st_size, st.st_mtime_ns))
        except OSError:
            out.append(None)
    return tuple(out)


def _mark_untracked(up: Upload, error: str) -> None:
    """``run.json`` says MLflow missed the run (``nnlab.recover`` reads it)."""
    try:
        meta = json.loads(up.run_file.read_text())
        meta.update(tracked=False, error=error)
        if up.run_id is not None:
            meta["run_id"] = up.run_id
        atomic_write_text(up.run_file, json.dumps(meta, indent=1, default=str), sync=False)
    except (OSError, ValueError):
        pass
