"""The sweep writer: one thread of the launching process puts a parallel sweep into MLflow.

In a joblib sweep every worker process would otherwise import MLflow (2-3 s) and open the store
(~1.5 s), and the trials would queue on sqlite's single writer. Instead the trials of a parallel
sweep only write their job directories - ``run.json``, ``artifacts/history.csv`` rewritten
right after each checkpoint save (so never ahead of the checkpoint; every
``tracking.flush_interval`` seconds without checkpoints), the artifacts at the end: what
``nnlab.recover`` reads too - and announce them in ``<results dir>/jobs/``. This thread, started by the sweep's set-up, uploads
them while they train:

- a trial seen for the first time: its run is created (tags, params, datasets), or, when the
  sweep reopened an interrupted parent, that config's unfinished run is reopened;
- every poll: the history's new steps (live curves in the UI, a checkpoint interval behind);
- once ``run.json`` holds the outcome: the last steps, outcome tags, artifacts, then the status.

Every metric step reaches its run once: only steps above the last one logged are sent. A store
error ends the uploads of that trial, never its training: its job directory keeps everything and
the summary names ``python -m nnlab.recover``.
"""

from __future__ import annotations

import json
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
    SWEEP_FILE,
    Artifact,
    Tag,
    param_value,
)
from nnlab.tracking.sink import upload_artifacts
from nnlab.tracking.store import one_line, say

POLL_S = 0.2  # seconds between scans of the sweep's job directories
JOBS_DIR = "jobs"  # <results dir>/jobs/<job number>: the path of that trial's run.json
DONE_OUTCOMES = ("completed", "early_stopped", "diverged", "pruned")  # checkpoint not needed


def quick_setup(ctx: Any, plain: dict, task: str) -> tuple[SweepWriter, str] | None:
    """A parallel sweep's set-up on a sqlite store, without importing MLflow here.

    The store is checked (file, directories) and read (:mod:`nnlab.tracking.store_index`) for
    the trials to skip and the parent to continue; the writer, once started, opens the store,
    creates the experiment and the parent run (or takes the interrupted one over) while the first
    trials train. Returns (writer, what the header says), or None when MLflow must be asked
    (another store, a schema this MLflow does not write, a deleted experiment).
    """
    from nnlab.tracking.parent import reusable, start_parent, take_over, unfinished_trials
    from nnlab.tracking.store import (
        check_store,
        is_new_sqlite,
        prepare_store,
        probe_location,
        sqlite_path,
        ui_command,
    )
    from nnlab.tracking.store_index import StoreIndex, read_index

    db, tracking, name = sqlite_path(ctx.uri), plain["tracking"], plain["experiment_name"]
    if db is None:
        return None
    base = Path(ctx.launch_dir)
    check_store(ctx.uri, tracking["artifacts"], base)
    new = is_new_sqlite(ctx.uri)
    index = StoreIndex() if new else read_index(db, name, ctx.sweep_hash)
    if index is None:
        return None
    if index.artifact_location:
        probe_location(index.artifact_location, name)
    ctx.experiment_id = index.experiment_id
    if not tracking["rerun"]:
        ctx.skip = index.finished
    previous = index.parent
    reused = previous is not None and reusable(previous[1], previous[2], False)
    if reused:
        ctx.parent_run_id, tags = previous[0], previous[2]
        ctx.sweep_id = tags.get(Tag.SWEEP_ID, ctx.sweep_id)
    sweep_file = Path(ctx.sweep_dir) / SWEEP_FILE

    def setup() -> dict[str, str] | None:
        ctx.experiment_id = prepare_store(ctx.uri, name, tracking["artifacts"], base)
        reopen = None
        if reused:
            take_over(ctx, tags)
            reopen = unfinished_trials(ctx)
        else:
            ctx.parent_run_id = start_parent(ctx, task, name)
        ctx.save(sweep_file)  # for nnlab.recover: the parent to close
        return reopen

    where = ("a new store " if new else "") + ui_command(ctx.uri).split()[-1]
    if reused:
        where += f", parent run {ctx.parent_run_id} (resumed: same sweep as an interrupted one)"
    return SweepWriter(ctx, setup), f", experiment {name!r} in {where}"


def announce(results_dir: str | Path, job: int, run_file: Path) -> None:
    """In a worker: tell the writer where trial ``job`` keeps its ``run.json``."""
    atomic_write_text(Path(results_dir) / JOBS_DIR / f"{job:05d}", str(run_file), sync=False)


@dataclass
class Upload:
    """One trial's progress into its MLflow run."""

    run_file: Path
    run_id: str | None = None
    artifact_uri: str | None = None
    last_step: dict[str, int] = field(default_factory=dict)  # metric -> last step logged
    seen: tuple = ()  # (size, mtime) of the history files at the last upload
    done: bool = False
    error: str | None = None
    seconds: float = 0.0  # the writer's time on this trial (wall clock)
    cpu_seconds: float = 0.0  # of which the writer thread's own CPU time


class SweepWriter:
    """The thread that uploads a parallel sweep's trials (see the module docstring).

    ``setup`` (optional) runs first, in the thread, while the first trials already train: it
    opens the store, sets ``ctx.experiment_id`` and ``ctx.parent_run_id`` and returns what
    ``reopen`` holds otherwise: config hash -> run id of the unfinished trials of a reopened
    parent (:func:`quick_setup`).
    """

    def __init__(
        self,
        ctx: Any,
        setup: Callable[[], dict[str, str] | None] | None = None,
        reopen: dict[str, str] | None = None,
        poll: float = POLL_S,
    ):
        self.ctx, self.setup, self.reopen, self.poll_s = ctx, setup, dict(reopen or {}), poll
        self.jobs: dict[str, Upload] = {}
        self.error: str | None = None  # the store could not be opened: nothing is uploaded
        self.setup_s = self.drain_s = 0.0
        self.killed = 0  # runs ended KILLED (Ctrl-C, SIGTERM)
        self._stop = threading.Event()
        self._end_running = False  # the final pass ends trials still "running" as killed
        self._thread = threading.Thread(target=self._main, name="nnlab-sweep-writer", daemon=True)
        self.client: Any = None
        self.store: Any = None  # MLflow's SqlAlchemyStore behind the client (sqlite)
        self.bulk = False  # new runs' rows in one transaction (insert_new_run)

    def start(self) -> None:
        self._thread.start()

    def close(self, interrupted: bool = False) -> None:
        """Upload what is left and stop; ``interrupted``: trials still running end KILLED."""
        t0 = time.perf_counter()
        self._end_running = interrupted
        self._stop.set()
        self._thread.join()
        self.drain_s = time.perf_counter() - t0
        for name, error in self._missed().items():
            _mark_untracked(self.jobs[name], error)

    def _missed(self) -> dict[str, str]:
        """job name -> why MLflow did not get that trial whole."""
        missed = {}
        for name, up in self.jobs.items():
            error = up.error or self.error
            if error is None and not up.done:
                error = "its run was not closed"
            if error is not None:
                missed[name] = error
        return missed

    def _main(self) -> None:
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
            say(f"nnlab: the sweep's MLflow store cannot be used ({self.error}); the trials go on")
        self.setup_s = time.perf_counter() - t0
        while True:
            stopping = self._stop.is_set()
            if self.error is None:
                self.poll()
            if stopping:
                return
            self._stop.wait(self.poll_s)

    def poll(self) -> None:
        """One pass over every announced trial not yet done."""
        jobs = Path(self.ctx.results_dir) / JOBS_DIR
        for entry in sorted(jobs.iterdir()) if jobs.is_dir() else []:
            up = self.jobs.get(entry.name)
            if up is None:
                up = self.jobs[entry.name] = Upload(Path(entry.read_text()))
            if up.done or up.error is not None:
                continue
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                self.sync(up)
            except Exception as exc:
                up.error = one_line(exc)
                say(
                    f"nnlab: MLflow error on {up.run_file.parent} ({up.error}); the trial goes "
                    "on, its history is kept in its job directory"
                )
            up.seconds += time.perf_counter() - t0
            up.cpu_seconds += time.thread_time() - c0

    def sync(self, up: Upload) -> None:
        """Bring trial ``up``'s run level with its job directory."""
        meta = json.loads(up.run_file.read_text())
        outcome = meta.get("outcome") or "running"
        if outcome not in RUN_OUTCOMES:  # still training, or stopped before it could say
            outcome = "killed" if self._end_running else "running"
        final = outcome != "running"
        artifacts = up.run_file.parent / "artifacts"
        seen = _stamp(artifacts)
        if up.run_id is not None and not final and seen == up.seen:
            return
        series = read_history(artifacts)
        up.seen = seen
        params = self._open(up, meta, series) if up.run_id is None else []
        metrics = self._new_points(up, series)
        tags = self._end_tags(up, meta, outcome) if final else {}
        if final:  # the files first: a run is never FINISHED without them
            upload_artifacts(
                self.client, up.run_id, up.artifact_uri, up.run_file.parent / "artifacts"
            )
        ended = self._send(up, params, metrics, tags, STATUS[outcome] if final else None)
        if final:
            self._close(up, meta, outcome, ended)

    # --- the store calls ---------------------------------------------------------------------

    def _open(self, up: Upload, meta: dict, series: dict) -> list:
        """Create the trial's run (or reopen its interrupted one); return the params to send."""
        from mlflow.entities import Param, RunTag

        c = self.client
        tags = {k: str(v) for k, v in (meta.get("tags") or {}).items()}
        tags |= {Tag.PARENT: self.ctx.parent_run_id, Tag.SWEEP_ID: self.ctx.sweep_id}
        reopened = self.reopen.pop(tags.get(Tag.CONFIG_HASH, ""), None)
        if reopened is not None:  # the interrupted run of this config: continue it
            up.run_id = reopened
            c.update_run(reopened, "RUNNING")
            c.log_batch(reopened, tags=[RunTag(k, v) for k, v in tags.items()])
            for key in c.get_run(reopened).data.metrics:  # steps it holds are not sent again
                logged = c.get_metric_history(reopened, key)
                up.last_step[key] = max((m.step for m in logged), default=0)
            return []
        run = c.create_run(self.ctx.experiment_id, run_name=meta.get("run_name"), tags=tags)
        up.run_id, up.artifact_uri = run.info.run_id, run.info.artifact_uri
        if meta.get("datasets"):
            from nnlab.tracking.datasets import inputs_of

            try:
                c.log_inputs(up.run_id, datasets=inputs_of(meta["datasets"]))
            except Exception as exc:  # the run goes on without its Dataset column
                say(f"nnlab: could not log the datasets of MLflow run {up.run_id}: {one_line(exc)}")
        return [Param(k, param_value(v)) for k, v in (meta.get("params") or {}).items()]

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
        if not ended:
            self.client.set_terminated(up.run_id, STATUS[outcome])
        up.done = True
        self.killed += outcome == "killed"
        checkpoint = meta.get("checkpoint")
        if checkpoint and outcome in DONE_OUTCOMES and not meta.get("keep_checkpoint"):
            Checkpointer(Path(checkpoint)).delete()  # trained and tracked: nothing to resume
        meta.update(run_id=up.run_id, experiment_id=self.ctx.experiment_id, outcome=outcome)
        meta.update(tracked=True, error=None)
        atomic_write_text(up.run_file, json.dumps(meta, indent=1, default=str), sync=False)

    @staticmethod
    def _new_points(up: Upload, series: dict) -> list:
        """The points above the steps already sent, as Metrics; they count as sent from now."""
        from nnlab.tracking.sink import points_after

        new = points_after(series, up.last_step)
        for key, points in series.items():
            if points:
                up.last_step[key] = max(up.last_step.get(key, 0), max(s for s, _ in points))
        return new

    # --- what the sweep's end needs -----------------------------------------------------------

    def results(self) -> dict[int, tuple[str | None, str | None]]:
        """job number -> (run id, error) of every trial the writer saw."""
        missed = self._missed()
        return {int(name): (up.run_id, missed.get(name)) for name, up in self.jobs.items()}

    def stats(self) -> dict:
        """What the benchmark reads (``writer.json``)."""
        done = [up for up in self.jobs.values() if up.done]
        return {
            "trials": len(done),
            "per_trial_s": [up.seconds for up in done],
            "per_trial_cpu_s": [up.cpu_seconds for up in done],
            "setup_s": self.setup_s,
            "drain_s": self.drain_s,
            "errors": sum(up.error is not None for up in self.jobs.values()),
        }


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
