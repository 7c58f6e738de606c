"""Everything MLflow: store set-up, the sweep callback, one run per trial, batched metrics.

The measured facts (DESIGN.md) shape this module:

- Processes that open a *new* sqlite store at once race ("table ... already exists"), and racing
  ``set_experiment`` calls can file runs under "Default". So :class:`SweepCallback` creates the
  store, the experiment and the sweep's parent run once, in the launching process, and writes
  their ids to ``<sweep dir>/.nnlab/sweep.json``; every trial starts its run with explicit
  ``experiment_id`` and ``mlflow.parentRunId``.
- Every logging call is one sqlite commit (~9 ms). :class:`MlflowSink` buffers epoch metrics and
  writes them with one ``log_batch`` at most every ``tracking.flush_interval`` seconds and at the
  end: live in the UI, cheap in total.
- ``import mlflow`` costs 2-3 s and the first store open ~1.4 s per process, so mlflow is imported
  lazily (``tracking=none`` never imports it) and clients are cached per process (loky workers
  are reused between trials).

A trial never raises into Hydra (a failed trial is recorded as FAILED with its traceback, and the
sweep goes on); the callback prints a summary at the end and exits 1 only if a trial failed or
MLflow missed part of a run.

Nothing is lost (README, Reliability): every trial checkpoints its latest epoch end at most
every ``trainer.checkpoint.interval`` seconds, at the end and on an interruption
(:class:`Checkpoints`, ``nnlab.checkpoint``), and a re-run resumes it into its own run
(``MlflowSink(resume_run_id=...)`` + ``backfill``); an interrupted sweep reopens its parent
(:func:`_reopen_parent`); the job dir keeps ``history.csv`` and ``run.json``
(:class:`LocalHistory`) whatever the store does, for ``python -m nnlab.recover``; the store is
probed before anything starts (:func:`prepare_store`), so a bad one fails in seconds.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import logging
import math
import os
import socket
import subprocess
import sys
import time
import traceback
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

import nnlab
from nnlab.checkpoint import (
    Checkpointer,
    CheckpointError,
    atomic_write,
    atomic_write_text,
    checkpoint_path,
)
from nnlab.config import ConfigError, full_error, to_plain, validate
from nnlab.train import (
    HISTORY_COLUMNS,
    Sink,
    TrainResult,
    TrainState,
    build_model,
    load_data,
    train,
)

STATUS = {  # outcome -> MLflow run status (DESIGN.md, "Run outcomes")
    "completed": "FINISHED",
    "early_stopped": "FINISHED",
    "diverged": "FINISHED",
    "failed": "FAILED",
    "killed": "KILLED",
}
OUTCOMES = (*STATUS, "skipped")
# keys that do not change the result
HASH_EXCLUDE = (
    "tracking",
    "report",
    "trainer.verbose",
    "trainer.checkpoint",
    "trainer.epoch_delay",
)
SWEEP_FILE = ".nnlab/sweep.json"
RUN_FILE = "run.json"  # in each job dir: what `python -m nnlab.recover` needs
RUN_FORMAT = "nnlab.run/1"
MAX_PARAM_LEN = 6000  # MLflow's limit on a param value

log = logging.getLogger(__name__)

# conf/hydra/launcher/joblib.yaml (our n_jobs=2 preset) shares its name with the plugin's schema on
# purpose; loky workers compose each trial's config and would print Hydra's deprecation notice
# about that. Workers import this module (the sweep callback) before composing, so filter it here.
warnings.filterwarnings("ignore", message=r"(?s).*is validated against ConfigStore schema")


# --- small pure helpers -------------------------------------------------------------------------


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}, "c": [1, 2]}`` -> ``{"a.b": 1, "c": [1, 2]}`` (lists stay leaves)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def config_hash(plain: dict) -> str:
    """Hash of the resolved config minus tracking/report/verbosity keys (16 hex digits)."""
    flat = {
        k: v
        for k, v in flatten(plain).items()
        if not any(k == x or k.startswith(f"{x}.") for x in HASH_EXCLUDE)
    }
    blob = json.dumps(flat, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def run_name(overrides: list[str], varying: list[str] | None, plain: dict) -> str:
    """``lr=0.01 batch_size=16 epochs=50``: the overrides that vary across the sweep.

    A single run (``varying is None``) is named by the three axes plus its other overrides.
    """
    if varying:
        keys = [o.split("=", 1)[0] for o in overrides]
        return " ".join(o for o, k in zip(overrides, keys, strict=True) if k in varying)
    axes = [f"{k}={plain[k]}" for k in ("lr", "batch_size", "epochs")]
    extra = [
        o
        for o in overrides
        if o.split("=", 1)[0].lstrip("+~") not in ("lr", "batch_size", "epochs")
        and not o.lstrip("+~").startswith(("tracking", "hydra"))
    ]
    return " ".join(axes + extra)


@functools.lru_cache(maxsize=1)
def git_info() -> dict[str, str]:
    """Commit and dirty flag of the nnlab checkout ("unknown" outside a git work tree)."""
    root = Path(nnlab.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {"nnlab.git_commit": "unknown", "nnlab.git_dirty": "unknown"}
    return {"nnlab.git_commit": commit, "nnlab.git_dirty": str(bool(status.strip())).lower()}


def resolve_uri(uri: str, base: Path) -> str:
    """A relative ``sqlite:///file.db`` made absolute against the launch dir ``base``."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/") and ":memory:" not in uri:
        return prefix + str((base / uri[len(prefix) :]).resolve())
    return uri


def ui_command(uri: str) -> str:
    """The command that opens the MLflow UI on ``uri`` (relative to the launch dir if possible)."""
    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///") :])
        try:
            path = path.relative_to(Path.cwd())
        except ValueError:
            pass
        return f"mlflow ui --backend-store-uri sqlite:///{path}"
    return f"open {uri} in a browser"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


# --- MLflow access (imports mlflow lazily, one client per process) ------------------------------


def _quiet_mlflow() -> None:
    # store creation logs alembic migrations at INFO; keep the terminal for nnlab's own lines.
    # mlflow sets its logger's level on import, so import first.
    import mlflow  # noqa: F401

    for name in ("mlflow", "alembic", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.WARNING)


@functools.cache
def _sqlite_synchronous_normal() -> None:
    """Every sqlite connection this process opens runs ``PRAGMA synchronous=NORMAL``.

    In WAL mode (``_use_wal``) NORMAL skips the fsync of each commit and syncs at checkpoints
    instead; a commit still survives the *process* dying (kill -9): only an OS crash or power
    loss can roll back the last commits, never corrupt the file (sqlite.org/pragma.html).
    An SQLAlchemy ``connect`` listener on all engines, filtered to sqlite connections.
    """
    import sqlite3

    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        if isinstance(dbapi_connection, sqlite3.Connection):
            dbapi_connection.execute("PRAGMA synchronous=NORMAL")

    event.listen(Engine, "connect", on_connect)


@functools.cache
def client(uri: str):
    """A cached ``MlflowClient`` for ``uri`` (the store opens once per process)."""
    _quiet_mlflow()
    if uri.startswith("sqlite:"):
        _sqlite_synchronous_normal()
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def open_experiment(uri: str, name: str, artifacts: str | None, base: Path) -> str:
    """Create the store (sqlite: tables once, here) and the experiment if needed; return its id."""
    _quiet_mlflow()
    if uri.startswith("sqlite:"):
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        _sqlite_synchronous_normal()
        root = (base / (artifacts or "mlruns")).resolve()
        store = SqlAlchemyStore(uri, root.as_uri())
        _use_wal(uri)
        exp = store.get_experiment_by_name(name)
        exp_id = exp.experiment_id if exp else store.create_experiment(name)
    else:
        c = client(uri)
        exp = c.get_experiment_by_name(name)
        exp_id = exp.experiment_id if exp else c.create_experiment(name)
    if exp is not None and exp.lifecycle_stage == "deleted":
        raise ConfigError(
            f"experiment_name={name!r}: that MLflow experiment is deleted; restore it "
            f"(mlflow experiments restore --experiment-id {exp.experiment_id}) or pick another name"
        )
    return exp_id


def _use_wal(uri: str) -> None:
    """Switch a sqlite store to write-ahead logging (persists in the file).

    Every MLflow call is a commit; with the default rollback journal each one creates, syncs and
    deletes a journal file. WAL measured 144 -> 78 ms per 40-epoch run here (median of 20, busy
    machine), and lets `mlflow ui` read while trials write. Not for network file systems.
    """
    import sqlite3

    path = uri[len("sqlite:///") :]
    try:
        with sqlite3.connect(path, timeout=30) as con:
            con.execute("PRAGMA journal_mode=WAL")
    except sqlite3.Error as exc:  # e.g. a read-only or network file system: keep the default
        log.warning("could not switch %s to WAL mode: %s", path, exc)


# MLflow retries an unreachable server for minutes by default (7 retries, backoff factor 2);
# a trial should notice a dead server in seconds (its metrics stay local, see LocalHistory).
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
PROBE_TIMEOUT = 3.0  # seconds to wait for a tracking server's TCP port


def probe_server(uri: str, timeout: float = PROBE_TIMEOUT) -> None:
    """Refuse an http(s) tracking URI whose host:port does not accept a TCP connection.

    One socket connect with a short timeout, before ``import mlflow`` and its long HTTP retries.
    """
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https"):
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise ConfigError(
            f"tracking.uri={uri!r}: no MLflow server answers at {parts.hostname}:{port} "
            f"({reason}); start one (mlflow server --host 127.0.0.1 --port {port}) or use the "
            "local store (tracking=sqlite)"
        ) from None


def probe_directory(path: Path, key: str) -> None:
    """Create ``path`` if needed and write + delete a file there; ConfigError naming ``key``."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".nnlab-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"{key}: cannot write to {path} ({exc.strerror or exc}); pick a writable directory"
        ) from None


def prepare_store(uri: str, name: str, artifacts: str | None, base: Path) -> str:
    """Check the store is usable, then ``open_experiment``; every problem is one ConfigError.

    Order: server port (http), sqlite file's directory, artifact root, store + experiment, the
    experiment's own (file) artifact location. Nothing is created in the store for a bad input
    except, at most, the experiment.
    """
    probe_server(uri)
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///") :])
        if not db.parent.is_dir() or db.is_dir():
            raise ConfigError(
                f"tracking.uri={uri!r}: {db} cannot be a sqlite file (its directory is missing "
                "or it is a directory); point it at a file in an existing directory"
            )
        probe_directory(
            (base / (artifacts or "mlruns")).resolve(), f"tracking.artifacts={artifacts!r}"
        )
    try:
        exp_id = open_experiment(uri, name, artifacts, base)
        location = client(uri).get_experiment(exp_id).artifact_location
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"tracking.uri={uri!r}: cannot open the MLflow store ({_one_line(exc)}); check the "
            "URI, or move a damaged sqlite file aside"
        ) from None
    if location.startswith("file:"):
        from urllib.parse import unquote, urlsplit

        probe_directory(
            Path(unquote(urlsplit(location).path)),
            f"experiment {name!r} artifact location {location}",
        )
    return exp_id


def finished_trials(uri: str, experiment_id: str) -> dict[str, dict]:
    """config_hash -> {run_id, run_name, loss, val_loss} of the experiment's FINISHED trials."""
    from mlflow.entities import ViewType

    c, found, token = client(uri), {}, None
    query = "tags.`nnlab.role` = 'trial' and attributes.status = 'FINISHED'"
    while True:
        page = c.search_runs(
            [experiment_id], query, ViewType.ACTIVE_ONLY, max_results=5000, page_token=token
        )
        for run in page:
            h = run.data.tags.get("nnlab.config_hash")
            if h and h not in found:
                found[h] = {
                    "run_id": run.info.run_id,
                    "run_name": run.info.run_name,
                    "outcome": run.data.tags.get("nnlab.outcome", "completed"),
                    "loss": run.data.metrics.get("loss"),
                    "val_loss": run.data.metrics.get("val_loss"),
                }
        token = page.token
        if not token:
            return found


# --- the sink that streams one trial into MLflow -------------------------------------------------


class MlflowSink(Sink):
    """One MLflow run: params once, epoch metrics batched, tags + artifacts + status at the end.

    ``overhead`` accumulates the seconds spent in MLflow calls (the cost of tracking).

    A store error while training does not stop training: the sink keeps every metric in its
    buffer, records the error in ``error`` (the first one, one line), makes no further MLflow
    calls until ``finish``, which tries once more (the store may be back) and raises if it fails.
    The job directory keeps the history either way (``LocalHistory``).

    ``resume_run_id`` reopens that run (status back to RUNNING) instead of creating one.
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
        from mlflow.entities import Param, RunTag

        t0 = time.perf_counter()
        self.client = client(uri)
        self.flush_interval = flush_interval
        self.auto_flush = True  # False: the owner calls ``maybe_flush`` (after each checkpoint)
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
            items = [Param(k, str(v)[:MAX_PARAM_LEN]) for k, v in params.items()]
            for i in range(0, len(items), 100):  # MLflow caps params per log_batch at 100
                self.client.log_batch(self.run_id, params=items[i : i + 100])
        self.last_flush = time.perf_counter()
        self.overhead = self.last_flush - t0

    def _add(self, key: str, value: float, step: int) -> None:
        from mlflow.entities import Metric

        self.buffer.append(Metric(key, float(value), int(time.time() * 1000), step))

    def backfill(self, history: dict[str, list[float]], batches: list[tuple[int, float]]) -> int:
        """Queue the saved epochs (and batch losses) the run does not hold yet; return how many.

        Only steps above the run's last logged step per metric are added, so a resumed run ends
        with each step exactly once whatever was flushed before the interruption.
        """
        added = 0
        series = {k: list(enumerate(v, start=1)) for k, v in history.items()}
        if batches:
            series["batch_loss"] = list(batches)
        for key, points in series.items():
            logged = self.client.get_metric_history(self.run_id, key)
            last = max((m.step for m in logged), default=0)
            for step, value in points:
                if step > last:
                    self._add(key, value, step)
                    added += 1
        return added

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
            self.error = _one_line(exc)
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
        """Write buffered metrics with ``log_batch`` (chunks of 1000, MLflow's limit)."""
        t0 = time.perf_counter()
        while self.buffer:  # drop a chunk only once written (Ctrl-C may land mid-call)
            self.client.log_batch(self.run_id, metrics=self.buffer[:1000])
            del self.buffer[:1000]
        self.last_flush = time.perf_counter()
        self.overhead += self.last_flush - t0

    def finish(self, outcome: str, tags: dict[str, str], artifact_dir: Path | None) -> None:
        """The last metrics and the outcome tags in one ``log_batch``, ``artifact_dir`` in one
        upload, then the status from ``outcome``: three store calls for a short run."""
        from mlflow.entities import RunTag

        t0 = time.perf_counter()
        items = [RunTag(k, str(v)) for k, v in tags.items()]
        while len(self.buffer) + len(items) > 1000:  # MLflow: <= 1000 entities per log_batch
            self.client.log_batch(self.run_id, metrics=self.buffer[:1000])
            del self.buffer[:1000]
        self.client.log_batch(self.run_id, metrics=self.buffer, tags=items)
        self.buffer.clear()
        self.last_flush = time.perf_counter()
        if artifact_dir is not None and artifact_dir.is_dir() and any(artifact_dir.iterdir()):
            self.log_artifacts(artifact_dir)
        self.client.set_terminated(self.run_id, STATUS[outcome])
        self.overhead += time.perf_counter() - t0

    def log_artifacts(self, directory: Path) -> None:
        """Upload ``directory``'s files to the run's artifact root in one call.

        With the run's artifact URI known (from ``create_run``) the repository is built from it
        directly: ``MlflowClient.log_artifacts`` would first fetch the whole run to find it.
        """
        if self.artifact_uri is None:
            self.client.log_artifacts(self.run_id, str(directory))
            return
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        repo = get_artifact_repository(self.artifact_uri, tracking_uri=self.client.tracking_uri)
        repo.log_artifacts(str(directory))


# --- one trial (the body of a Hydra job) ---------------------------------------------------------


@dataclass
class SweepContext:
    """What the launching process tells every trial of a sweep (``<sweep dir>/.nnlab/sweep.json``)."""

    sweep_id: str
    backend: str
    uri: str | None
    experiment_id: str | None
    parent_run_id: str | None
    n_trials: int | None
    varying: list[str]
    parallel: bool
    results_dir: str
    skip: dict[str, dict] = field(default_factory=dict)
    git: dict[str, str] = field(default_factory=dict)
    sweep_hash: str = ""
    sweep_dir: str = ""

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.__dict__, indent=1))

    @classmethod
    def load(cls, path: Path) -> SweepContext:
        """Read once per process and file version (loky workers run many trials of a sweep)."""
        stat = path.stat()
        return _load_context(cls, str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4)
def _load_context(cls: type, path: str, _mtime_ns: int, _size: int) -> SweepContext:
    return cls(**json.loads(Path(path).read_text()))


def _hydra():
    """(HydraConfig or None, is_multirun)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None, False
    hc = HydraConfig.get()
    return hc, hc.mode == RunMode.MULTIRUN


def history_csv(rows: list[dict]) -> str:
    """``rows`` as history.csv text (columns ``HISTORY_COLUMNS``; floats in full precision)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=HISTORY_COLUMNS, extrasaction="ignore", restval="")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def batch_csv(batches: list[tuple[int, float]]) -> str:
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
) -> None:
    """config.yaml, overrides.yaml, history.csv, model.npz, traceback.txt into ``out``.

    Atomic; ``sync`` also fsyncs each file (``trainer.checkpoint.sync``: power-loss safety).
    """
    from omegaconf import OmegaConf

    texts = {
        "config.yaml": OmegaConf.to_yaml(OmegaConf.create(plain)),
        "overrides.yaml": OmegaConf.to_yaml(OmegaConf.create(overrides)),
        "history.csv": history_csv(rows),
    }
    if tb is not None:
        texts["traceback.txt"] = tb
    for name, text in texts.items():
        atomic_write_text(out / name, text, sync)
    if result is not None and save_model:
        atomic_write(out / "model.npz", result.model.save, sync)


class LocalHistory(Sink):
    """The job directory's own copy of a trial, so no metric depends on the tracking store.

    ``history.csv`` (and ``batch_loss.csv`` when batch losses are logged) is rewritten atomically
    in ``artifact_dir`` after an epoch when ``interval`` seconds have passed since the last write
    (0: after every epoch), and in full when the run ends (``write_artifacts``); ``run.json`` next
    to it holds what ``python -m nnlab.recover`` needs to upload the run later (experiment,
    params, tags, run id, outcome). Everything is forwarded to ``inner`` (the MLflow sink, or None).
    """

    def __init__(
        self,
        inner: Sink | None,
        artifact_dir: Path,
        run_file: Path,
        meta: dict[str, Any],
        resume: TrainState | None = None,
        interval: float = 0.0,
        sync: bool = True,
    ):
        self.inner, self.artifact_dir, self.run_file, self.meta = (
            inner,
            artifact_dir,
            run_file,
            meta,
        )
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

    def on_train_begin(self, info):
        if self.inner:
            self.inner.on_train_begin(info)

    def log_epoch(self, epoch, logs):
        self.rows.append({"epoch": epoch, **logs})
        if time.perf_counter() - self.last_write >= self.interval:
            self.write()
        if self.inner:
            self.inner.log_epoch(epoch, logs)

    def write(self) -> None:
        """Rewrite ``history.csv`` (and ``batch_loss.csv``) with every epoch so far."""
        # atomic, not fsynced: the checkpoint holds the same history
        atomic_write_text(self.artifact_dir / "history.csv", history_csv(self.rows), sync=False)
        if self.batches:
            text = batch_csv(self.batches)
            atomic_write_text(self.artifact_dir / "batch_loss.csv", text, sync=False)
        self.last_write = time.perf_counter()

    def log_batch_loss(self, step, loss):
        self.batches.append((step, loss))
        if self.inner:
            self.inner.log_batch_loss(step, loss)


class Checkpoints:
    """Time-bounded checkpoints: at most one save every ``interval`` seconds, plus the end.

    ``on_state`` is ``train``'s ``on_checkpoint``: it sees every epoch's end, keeps that state
    (cheap: the model state is a copy of a few small arrays) and saves it when ``interval``
    seconds have passed since the last save, when training has ended, or when ``save_latest``
    is called (Ctrl-C, SIGTERM, an exception). A resume starts from whichever epoch the file
    holds, so it stays bit-identical; at most ``interval`` seconds of epochs are trained again
    after ``kill -9``.

    The MLflow sink flushes only right after a save (``sink.auto_flush = False``), so the store
    never holds an epoch the checkpoint lacks (a resume backfills the steps it misses).
    """

    def __init__(
        self, save: Any, sink: MlflowSink | None, interval: float, meta: dict[str, Any]
    ) -> None:
        self.save, self.sink, self.interval, self.meta = save, sink, interval, meta
        self.latest: tuple[TrainState, int] | None = None
        self.saved_epoch: int | None = None
        self.last_save = time.perf_counter()
        if sink is not None:
            sink.auto_flush = False

    def on_state(self, state: TrainState) -> None:
        # the batch-loss list keeps growing: remember how much of it belongs to this epoch end
        self.latest = (state, len(state.batch_losses))
        if state.finished or time.perf_counter() - self.last_save >= self.interval:
            self.save_latest()

    def save_latest(self) -> None:
        """Save the latest epoch end (if not saved yet), then let the sink flush."""
        if self.latest is None or self.latest[0].epoch == self.saved_epoch:
            return
        state, n_batches = self.latest
        if len(state.batch_losses) != n_batches or any(
            len(v) != state.epoch for v in state.history.values()
        ):  # later epochs (or a part of one) were appended since: cut them off
            state = TrainState(
                state.epoch,
                state.model_state,
                {k: v[: state.epoch] for k, v in state.history.items()},
                state.batch_losses[:n_batches],
                state.finished,
                state.best_weights,
            )
        self.save(state, self.meta)
        self.saved_epoch = state.epoch
        self.last_save = time.perf_counter()
        if self.sink is not None:
            self.sink.maybe_flush(state.epoch)


def _one_line(exc: BaseException) -> str:
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {text}"[:300]


def run_trial(cfg: Any) -> dict:
    """Train one Hydra job with tracking as ``cfg.tracking`` says; return a small result record.

    In a multirun a failure is recorded (FAILED run, traceback artifact) and returned, so the rest
    of the sweep runs and the summary prints; in a single run it is re-raised after recording.
    ``ConfigError`` is raised before any run is created (in a multirun: a failed record without a
    run). ``KeyboardInterrupt`` marks the run KILLED, keeps its checkpoint and propagates.
    """
    t_start = time.perf_counter()
    plain = validate(cfg)
    hc, multirun = _hydra()
    base = Path(hc.runtime.cwd) if hc else Path.cwd()
    ctx = SweepContext.load(base / hc.sweep.dir / SWEEP_FILE) if multirun else None
    overrides = list(hc.overrides.task) if hc else []
    job = int(hc.job.num) if multirun else 0
    digest = config_hash(plain)
    name = run_name(overrides, ctx.varying if ctx else None, plain)
    record: dict[str, Any] = {
        "job": job,
        "name": name,
        "config_hash": digest,
        "run_id": None,
        "loss": None,
        "val_loss": None,
        "seconds": 0.0,
        "tracking_s": 0.0,
    }

    if ctx is not None and digest in ctx.skip:
        prior = ctx.skip[digest]
        record.update(
            outcome="skipped",
            run_id=prior["run_id"],
            loss=prior.get("loss"),
            val_loss=prior.get("val_loss"),
            prior_outcome=prior.get("outcome"),
        )
        return _report(record, ctx)
    out = (
        Path(hc.runtime.output_dir)
        if hc
        else Path.cwd() / "outputs" / f"run-{uuid.uuid4().hex[:8]}"
    )
    try:
        return _run_trial(plain, ctx, base, out, overrides, record, t_start)
    except ConfigError as exc:
        if ctx is None:
            raise
        record.update(outcome="failed", error=f"invalid config: {exc}")
        return _report(record, ctx)


def _open_checkpoint(plain: dict, base: Path, digest: str):
    """(Checkpointer or None, saved TrainState or None, its meta) for this trial."""
    ck = plain["trainer"]["checkpoint"]
    if not ck["enabled"]:
        return None, None, {}
    path = checkpoint_path(base, ck["dir"], plain["experiment_name"], digest)
    ckpt = Checkpointer(path, sync=ck["sync"])
    try:
        locked = ckpt.acquire()
    except OSError as exc:
        raise ConfigError(
            f"trainer.checkpoint.dir={ck['dir']!r}: cannot write checkpoints there "
            f"({exc.strerror or exc}); pick a writable directory or set "
            "trainer.checkpoint.enabled=false"
        ) from None
    if not locked:
        print(
            f"nnlab: another process is training this config ({ckpt.path.with_suffix('.lock')} "
            "is held); this trial runs without a checkpoint",
            file=sys.stderr,
            flush=True,
        )
        return None, None, {}
    loaded = ckpt.load() if ck["resume"] else None
    if loaded is None:
        return ckpt, None, {}
    state, meta = loaded
    if meta.get("config_hash") != digest:
        ckpt.release()
        raise CheckpointError(
            f"checkpoint {ckpt.path} belongs to config {meta.get('config_hash')!r}, not {digest!r}; "
            "delete it, or run with trainer.checkpoint.resume=false"
        )
    return ckpt, state, meta


def _prior_status(uri: str, run_id: str, experiment_id: str) -> str | None:
    """Status of ``run_id`` if it is a live run of ``experiment_id`` in the store, else None."""
    try:
        run = client(uri).get_run(run_id)
    except Exception:  # gone, or another store: the trial resumes into a new run
        return None
    if run.info.experiment_id != experiment_id or run.info.lifecycle_stage != "active":
        return None
    return run.info.status


def _run_trial(
    plain: dict,
    ctx: SweepContext | None,
    base: Path,
    out: Path,
    overrides: list[str],
    record: dict,
    t_start: float,
) -> dict:
    # every check that can refuse the trial runs before the store is touched: no run is created
    data = load_data(plain["data"], plain["model"].get("loss", "auto"))
    ckpt, resume, ckmeta = _open_checkpoint(plain, base, record["config_hash"])
    try:
        if resume is not None:  # the saved state must fit this config's model exactly
            try:
                model_cfg, opt_cfg = plain["model"], plain["optimizer"]
                build_model(model_cfg, opt_cfg, data.n_features, data.n_classes).set_state(
                    resume.model_state
                )
            except (ValueError, KeyError, TypeError, IndexError) as exc:
                raise CheckpointError(
                    f"checkpoint {ckpt.path} does not fit this config's model ({exc}); delete "
                    "that file to start this trial afresh, or run with "
                    "trainer.checkpoint.resume=false"
                ) from None
        uri = exp_id = None
        if plain["tracking"]["backend"] == "mlflow":  # fail fast on an unusable store
            uri = ctx.uri if ctx else resolve_uri(plain["tracking"]["uri"], base)
            exp_id = (
                ctx.experiment_id
                if ctx
                else prepare_store(
                    uri, plain["experiment_name"], plain["tracking"]["artifacts"], base
                )
            )
        return _train_tracked(
            plain, ctx, out, overrides, record, t_start, data, uri, exp_id, ckpt, resume, ckmeta
        )
    finally:
        if ckpt is not None:
            ckpt.release()


def _train_tracked(
    plain, ctx, out, overrides, record, t_start, data, uri, exp_id, ckpt, resume, ckmeta
) -> dict:
    digest, name, job = record["config_hash"], record["name"], record["job"]
    multirun = ctx is not None
    tr = plain["trainer"]
    verbose = (0 if multirun else 1) if tr["verbose"] == "auto" else int(tr["verbose"])
    artifact_dir = out / "artifacts"

    reopen = None
    if resume is not None and uri is not None and ckmeta.get("run_id"):
        status = _prior_status(uri, ckmeta["run_id"], exp_id)
        if status == "FINISHED":  # stale: that run ended and was tracked; train afresh
            resume = None
        elif status is not None:
            reopen = ckmeta["run_id"]
    if resume is not None and resume.finished and uri is None:
        resume = None  # nothing to finish without a tracker: train afresh
    if resume is not None:
        where = f" into MLflow run {reopen}" if reopen else ""
        print(
            f"nnlab: {name}: resuming from {ckpt.path} after epoch {resume.epoch}{where}",
            file=sys.stderr,
            flush=True,
        )

    params = flatten(plain)
    tags = {
        "nnlab.role": "trial",
        "nnlab.version": nnlab.__version__,
        "nnlab.config_hash": digest,
        "nnlab.job": str(job),
        "mlflow.source.name": "nnlab.run",
        "mlflow.source.type": "LOCAL",
        **(ctx.git if ctx and ctx.git else git_info()),
    }
    if ctx is not None:
        tags |= {"nnlab.sweep_id": ctx.sweep_id, "mlflow.parentRunId": ctx.parent_run_id}
    if resume is not None:
        tags["nnlab.resumed_from_epoch"] = str(resume.epoch)

    sink: MlflowSink | None = None
    tracking_error = None
    if uri is not None:
        try:
            sink = MlflowSink(
                uri, exp_id, name, tags, params, plain["tracking"]["flush_interval"], reopen
            )
            if resume is not None:
                sink.backfill(resume.history, resume.batch_losses)
            record["run_id"] = sink.run_id
        except Exception as exc:  # the store broke since the sweep began: train, keep it local
            tracking_error = _one_line(exc)
            sink = None
            print(
                f"nnlab: {name}: MLflow error ({tracking_error}); training without it, "
                "the history is kept in the job directory",
                file=sys.stderr,
                flush=True,
            )
    local = LocalHistory(
        sink,
        artifact_dir,
        out / RUN_FILE,
        {
            "format": RUN_FORMAT,
            "tracking_uri": uri,
            "experiment_name": plain["experiment_name"],
            "experiment_id": exp_id,
            "run_id": record["run_id"],
            "run_name": name,
            "params": {k: str(v)[:MAX_PARAM_LEN] for k, v in params.items()},
            "tags": tags,
            "outcome": "running",
            "tracked": None if uri is not None else False,
            "error": tracking_error,
        },
        resume,
        interval=tr["checkpoint"]["interval"],
        sync=tr["checkpoint"]["sync"],
    )
    ck_meta = {
        "config_hash": digest,
        "run_id": record["run_id"],
        "experiment_id": exp_id,
        "experiment_name": plain["experiment_name"],
    }

    def save_checkpoint(state: TrainState, meta: dict) -> None:
        nonlocal ckpt
        if ckpt is None:
            return
        try:
            ckpt.save(state, meta)
        except OSError as exc:  # e.g. disk full: keep training, without resume from here on
            print(
                f"nnlab: {name}: could not write checkpoint {ckpt.path} ({exc}); "
                "continuing without checkpoints",
                file=sys.stderr,
                flush=True,
            )
            ckpt = None

    points = (
        Checkpoints(save_checkpoint, sink, tr["checkpoint"]["interval"], ck_meta)
        if ckpt is not None
        else None
    )

    result, tb, outcome = None, None, "failed"
    kwargs = dict(
        verbose=verbose,
        data=data,
        resume=resume,
        on_checkpoint=points.on_state if points is not None else None,
    )
    try:
        if ctx is not None and ctx.parallel:  # one BLAS thread per trial when trials share cores
            from threadpoolctl import threadpool_info, threadpool_limits

            with threadpool_limits(limits=1, user_api="blas"):
                blas = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
                record["blas_threads"] = max(blas, default=None)
                result = train(plain, local, **kwargs)
        else:
            result = train(plain, local, **kwargs)
        outcome = result.outcome
    except KeyboardInterrupt:
        outcome = "killed"
        _save_latest(points)
        _finish(sink, outcome, None, plain, overrides, local, None, artifact_dir, tracking_error)
        where = f"MLflow run {sink.run_id} marked KILLED" if sink else "stopped"
        kept = (
            f"; checkpoint {ckpt.path} kept: run the same command to resume"
            if ckpt is not None and ckpt.path.exists()
            else ""
        )
        print(
            f"nnlab: {name}: interrupted after {len(local.rows)} epochs; {where}{kept}",
            file=sys.stderr,
            flush=True,
        )
        raise
    except Exception as exc:
        tb = traceback.format_exc()
        record["error"] = f"{type(exc).__name__}: {exc}"
        _save_latest(points)
        _finish(sink, outcome, None, plain, overrides, local, tb, artifact_dir, tracking_error)
        if ctx is None:
            raise
    else:
        tracking_error = _finish(
            sink, outcome, result, plain, overrides, local, None, artifact_dir, tracking_error
        )
        if ckpt is not None and not tr["checkpoint"]["keep"] and tracking_error is None:
            ckpt.delete()  # training ended and the tracker has it all

    rows = local.rows
    record.update(
        outcome=outcome,
        seconds=time.perf_counter() - t_start,
        tracking_s=sink.overhead if sink else 0.0,
        checkpoint_s=ckpt.seconds if ckpt is not None else 0.0,
        epochs_run=len(rows),
        train_s=result.seconds if result is not None else None,
        loss=rows[-1].get("loss") if rows else None,
        val_loss=rows[-1].get("val_loss") if rows else None,
    )
    if tracking_error is not None:
        record["tracking_error"] = tracking_error
        record["job_dir"] = str(out)
    if ctx is None:
        where = (
            f"MLflow run {record['run_id']} ({ui_command(sink.client.tracking_uri)})"
            if sink and tracking_error is None
            else str(out)
        )
        print(
            f"{outcome}: loss={_fmt(record['loss'])} val_loss={_fmt(record['val_loss'])} "
            f"after {len(rows)} epochs (training {record['train_s']:.2f}s, "
            f"total {record['seconds']:.1f}s) -> {where}",
            flush=True,
        )
        if tracking_error is not None:
            print(
                f"nnlab: the run could not be written to MLflow ({tracking_error}); nothing is "
                f"lost: its history is in {artifact_dir / 'history.csv'}. Re-import it with: "
                f"python -m nnlab.recover {out}  (--tracking-uri URI for another store)",
                file=sys.stderr,
                flush=True,
            )
            raise SystemExit(1)
    return _report(record, ctx)


def _save_latest(points: Checkpoints | None) -> None:
    """Save the last finished epoch after an interruption or error (never raises)."""
    if points is None:
        return
    try:
        points.save_latest()
    except BaseException as exc:  # a second Ctrl-C mid-save: the previous file stays intact
        print(f"nnlab: could not save the last checkpoint: {_one_line(exc)}", file=sys.stderr)
        return
    if points.sink is not None and points.latest is not None:
        state, n_batches = points.latest
        last_step = state.batch_losses[n_batches - 1][0] if n_batches else 0
        points.sink.discard_after(state.epoch, last_step)


def _finish(
    sink, outcome, result, plain, overrides, local, tb, artifact_dir, tracking_error
) -> str | None:
    """Write the artifacts; with MLflow, tag the outcome, upload them and close the run.

    Errors here are reported, not raised: the run must still end with its outcome and status.
    Returns the tracking error (one line) when MLflow did not get the whole run, else None.
    """
    try:
        save_model = bool(plain["tracking"].get("log_model", True))
        sync = plain["trainer"]["checkpoint"]["sync"]
        write_artifacts(artifact_dir, plain, overrides, result, local.rows, tb, save_model, sync)
    except Exception as exc:
        print(f"nnlab: could not write artifacts to {artifact_dir}: {exc}", file=sys.stderr)
    local.write_meta(outcome=outcome)
    if sink is None:
        return tracking_error
    tags = {"nnlab.outcome": outcome}
    if result is not None and result.stopped_epoch is not None:
        tags["nnlab.stopped_epoch"] = str(result.stopped_epoch)
    try:
        sink.finish(outcome, tags, artifact_dir)
    except Exception as exc:  # never hide the training error behind a tracking error
        tracking_error = _one_line(exc)
        print(
            f"nnlab: could not close MLflow run {sink.run_id}: {tracking_error}",
            file=sys.stderr,
            flush=True,
        )
    local.write_meta(tracked=tracking_error is None, error=tracking_error)
    return tracking_error


def _report(record: dict, ctx: SweepContext | None) -> dict:
    """In a sweep: save the record for the summary and print one line for the finished trial."""
    if ctx is None:
        return record
    path = Path(ctx.results_dir) / f"job{record['job']:05d}.json"
    atomic_write_text(path, json.dumps(record, default=float), sync=False)  # read by the summary
    total = f"/{ctx.n_trials}" if ctx.n_trials else ""
    detail = (
        f"(FINISHED run {record['run_id'][:8]})"
        if record["outcome"] == "skipped"
        else f"loss={_fmt(record['loss'])} val_loss={_fmt(record['val_loss'])} {record['seconds']:.2f}s"
    )
    if record.get("error"):
        detail += f"  {record['error']}"
    if record.get("tracking_error"):
        detail += f"  not in MLflow: {record['tracking_error']}"
    print(
        f"[{record['job'] + 1}{total}] {record['outcome']:<13} {record['name']}  {detail}",
        flush=True,
    )
    return record


# --- the sweep: Hydra callback in the launching process -----------------------------------------

_SWEEP: dict[str, Any] = {}  # the launching process's sweep state (for the summary and abort)


def expand_sweep(config: Any) -> tuple[list[list[str]], list[str]] | None:
    """The job overrides of a BasicSweeper multirun, in job order, and the keys that vary.

    None for other sweepers (their trials are not known in advance).
    """
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if not str(config.hydra.sweeper.get("_target_", "")).endswith("BasicSweeper"):
        return None
    params = config.hydra.sweeper.get("params") or {}
    arguments = [f"{k}={v}" for k, v in params.items()] + list(config.hydra.overrides.task)
    parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
    parsed = parser.parse_overrides(arguments)
    varying = [o.get_key_element() for o in parsed if o.is_sweep_override()]
    return BasicSweeper.split_arguments(parsed, None)[0], varying


def compose_trial(config: Any, overrides: list[str], checked_data: set[str]) -> dict:
    """The resolved, validated job config of one trial (what its job will see).

    Each distinct data config is loaded once, so a bad data value also fails before any run.
    """
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import open_dict, read_write

    job = GlobalHydra.instance().config_loader().load_sweep_config(config, list(overrides))
    with read_write(job), open_dict(job):
        del job["hydra"]
    plain = validate(job)
    key = json.dumps(plain["data"], sort_keys=True, default=str)
    if key not in checked_data:
        load_data(plain["data"])
        checked_data.add(key)
    return plain


class SweepCallback(Callback):
    """Hydra callback: tracking set-up once per sweep, summary table at its end."""

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        base = Path(config.hydra.runtime.cwd)
        sweep_dir = (base / str(config.hydra.sweep.dir)).resolve()
        launcher = config.hydra.launcher
        parallel = "joblib" in str(launcher.get("_target_", "")) and launcher.get("n_jobs", 1) != 1
        sweep_id = uuid.uuid4().hex[:12]
        t0 = time.perf_counter()

        expanded = expand_sweep(config)
        jobs, varying = expanded if expanded is not None else ([], [])
        probes = _validate_values(config, jobs)
        if probes:
            _skip_second_composition()
        base_cfg = probes[0] if probes else to_plain(_task_config(config))
        tracking = base_cfg["tracking"]

        ctx = SweepContext(
            sweep_id=sweep_id,
            backend=tracking["backend"],
            uri=None,
            experiment_id=None,
            parent_run_id=None,
            n_trials=len(jobs) or None,
            varying=varying,
            parallel=parallel,
            results_dir=str(sweep_dir / ".nnlab" / sweep_id),
            sweep_hash=sweep_signature(base_cfg["experiment_name"], jobs, config),
            sweep_dir=str(sweep_dir),
        )
        header = f"{len(jobs) or '?'} trials"
        if tracking["backend"] == "mlflow":
            ctx.uri = resolve_uri(tracking["uri"], base)
            ctx.git = git_info()
            try:
                ctx.experiment_id = prepare_store(
                    ctx.uri, base_cfg["experiment_name"], tracking["artifacts"], base
                )
            except ConfigError as exc:
                _fail_config(str(exc))
            if not tracking["rerun"]:  # each trial looks its own config hash up in this map
                ctx.skip = finished_trials(ctx.uri, ctx.experiment_id)
            reused = _reopen_parent(ctx)
            if reused is None:
                ctx.parent_run_id = _start_parent(ctx, config, base_cfg["experiment_name"])
            header += (
                f", experiment {base_cfg['experiment_name']!r} (id {ctx.experiment_id}), "
                f"parent run {ctx.parent_run_id}"
                + (" (resumed: same sweep as an interrupted one)" if reused else "")
            )
        Path(ctx.results_dir).mkdir(parents=True, exist_ok=True)
        ctx.save(sweep_dir / SWEEP_FILE)
        _SWEEP.update(ctx=ctx, config=base_cfg, started=time.perf_counter())

        print(
            f"nnlab sweep {ctx.sweep_id}: {header}\n  outputs: {sweep_dir}  "
            f"(set-up {time.perf_counter() - t0:.1f}s)",
            flush=True,
        )
        if ctx.skip:
            print(
                f"  {len(ctx.skip)} configs already have a FINISHED run in this experiment: "
                "trials with one of them are skipped (tracking.rerun=true runs them again)",
                flush=True,
            )

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        ctx: SweepContext = _SWEEP["ctx"]
        records = [
            json.loads(p.read_text()) for p in sorted(Path(ctx.results_dir).glob("job*.json"))
        ]
        counts = {o: sum(r["outcome"] == o for r in records) for o in OUTCOMES}
        missing = (ctx.n_trials or len(records)) - len(records)
        elapsed = time.perf_counter() - _SWEEP["started"]
        best = _best(records)
        lines = [f"nnlab sweep {ctx.sweep_id}: {len(records)} trials in {elapsed:.1f}s"]
        lines += [f"  {o:<14}{n:>4}" for o, n in counts.items() if n]
        if counts["skipped"]:
            lines[-1] += "  (a FINISHED run exists; tracking.rerun=true runs them again)"
        if missing:
            lines.append(f"  {'no result':<14}{missing:>4}  (a job died before reporting)")
        untracked = sum(bool(r.get("tracking_error")) for r in records)
        if untracked:
            lines.append(
                f"  {'not in MLflow':<14}{untracked:>4}  (nothing lost: re-import the job dirs' "
                f"history with python -m nnlab.recover {ctx.sweep_dir})"
            )
        if best:
            metric = "val_loss" if best.get("val_loss") is not None else "loss"
            run = f"  run {best['run_id']}" if best.get("run_id") else ""
            lines.append(f"  best by {metric}: {best['name']}  {metric}={_fmt(best[metric])}{run}")
        if ctx.parent_run_id:
            lines.append(f"  parent run: {ctx.parent_run_id}")
            lines.append(f"  browse: {ui_command(ctx.uri)}")
            try:
                _end_parent(ctx, counts, best, "\n".join(lines))
            except Exception as exc:
                lines.append(f"  could not close the parent run in MLflow: {_one_line(exc)}")
                untracked += 1
        print("\n".join(lines), flush=True)
        if not untracked:
            _maybe_report(_SWEEP["config"], ctx)
        if counts["failed"] or missing or untracked:
            raise SystemExit(1)


def _validate_values(config: Any, jobs: list[list[str]]) -> list[dict]:
    """Validate every value of every sweep axis before anything is tracked; exit 2 on a bad one.

    Validation rules are per key, so composing the first trial and, for each axis, the first
    trial with that axis set to each of its other values covers the whole sweep with
    1 + sum(values - 1) compositions instead of one per trial (Hydra composes each trial twice
    more itself). Returns the composed probe configs, the first trial's first.
    """
    if not jobs:
        return []
    first = jobs[0]
    probes = [list(first)]
    for i, setting in enumerate(first):
        for other in dict.fromkeys(job[i] for job in jobs):
            if other != setting:
                probes.append([*first[:i], other, *first[i + 1 :]])
    checked: set[str] = set()
    plains = []
    for overrides in probes:
        try:
            plains.append(compose_trial(config, overrides, checked))
        except ConfigError as exc:
            _fail_config(f"trial `{' '.join(overrides)}`: {exc}")
    fixed = {(p["experiment_name"], json.dumps(p["tracking"], sort_keys=True)) for p in plains}
    if len(fixed) > 1:
        _fail_config(
            "experiment_name and tracking.* must be the same for every trial of a sweep "
            "(run one sweep per experiment)"
        )
    return plains


def _skip_second_composition() -> None:
    """Let Hydra's BasicSweeper launch without composing every trial again first.

    ``BasicSweeper.sweep`` calls ``validate_batch_is_legal``, which composes each trial's config
    serially in this process before any job starts (~0.1 s per trial: ~25 s of the 252-trial
    flagship, with the workers idle). ``_validate_values`` has just composed every value of every
    axis, which is what that check catches, so in this (launching) process it is a no-op. Every
    job still composes its own config in its worker, as Hydra always does.
    """
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    BasicSweeper.validate_batch_is_legal = lambda self, batch: None  # type: ignore[method-assign]


def _task_config(config: Any) -> Any:
    from omegaconf import OmegaConf, open_dict, read_write

    job = OmegaConf.create(OmegaConf.to_container(config, resolve=False))
    with read_write(job), open_dict(job):
        del job["hydra"]
    return job


def _fail_config(message: str) -> None:
    """Print one line and exit 2 (before any MLflow run exists)."""
    if full_error():
        raise ConfigError(message)
    print(f"nnlab: invalid config: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def _best(records: list[dict]) -> dict | None:
    good = [
        r
        for r in records
        if r["outcome"] in ("completed", "early_stopped", "skipped")
        and r.get("prior_outcome", "completed") != "diverged"
    ]
    for metric in ("val_loss", "loss"):
        scored = [r for r in good if r.get(metric) is not None and math.isfinite(r[metric])]
        if scored:
            return min(scored, key=lambda r: r[metric])
    return None


def sweep_signature(experiment: str, jobs: list[list[str]], config: Any) -> str:
    """Hash of what the sweep runs (its trials' overrides), to recognise the same sweep again."""
    what = jobs or [list(config.hydra.overrides.task)]
    blob = json.dumps({"experiment": experiment, "jobs": what}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _launcher_tag() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _launcher_gone(tag: str | None) -> bool:
    """True when ``host:pid`` names a process of this host that no longer exists."""
    host, _, pid = (tag or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def _reopen_parent(ctx: SweepContext) -> str | None:
    """Reuse the parent run of an interrupted run of the same sweep; return its id or None.

    The latest parent with the same ``nnlab.sweep_hash`` is reused when it ended KILLED (Ctrl-C,
    SIGTERM) or is still RUNNING although its launcher process is gone (``kill -9``). Its trials
    that FINISHED are skipped, interrupted ones resume into their own runs, so the sweep ends
    with one parent holding every trial.
    """
    from mlflow.entities import RunTag

    c = client(ctx.uri)
    query = f"tags.`nnlab.role` = 'sweep' and tags.`nnlab.sweep_hash` = '{ctx.sweep_hash}'"
    latest = c.search_runs(
        [ctx.experiment_id], query, max_results=1, order_by=["attributes.start_time DESC"]
    )
    if not latest:
        return None
    run = latest[0]
    status, tags = run.info.status, run.data.tags
    if not (
        status == "KILLED" or (status == "RUNNING" and _launcher_gone(tags.get("nnlab.launcher")))
    ):
        return None
    ctx.parent_run_id = run.info.run_id
    ctx.sweep_id = tags.get("nnlab.sweep_id", ctx.sweep_id)
    c.update_run(ctx.parent_run_id, "RUNNING")
    resumes = int(tags.get("nnlab.resumes", "0")) + 1
    c.log_batch(
        ctx.parent_run_id,
        tags=[RunTag("nnlab.launcher", _launcher_tag()), RunTag("nnlab.resumes", str(resumes))],
    )
    return ctx.parent_run_id


def _start_parent(ctx: SweepContext, config: Any, experiment_name: str) -> str:
    from mlflow.entities import Param

    c = client(ctx.uri)
    task = " ".join(config.hydra.overrides.task)
    tags = {
        "nnlab.role": "sweep",
        "nnlab.sweep_id": ctx.sweep_id,
        "nnlab.sweep_hash": ctx.sweep_hash,
        "nnlab.launcher": _launcher_tag(),
        "nnlab.version": nnlab.__version__,
        "mlflow.source.name": "nnlab.run",
        "mlflow.source.type": "LOCAL",
        **ctx.git,
    }
    run = c.create_run(ctx.experiment_id, run_name=f"sweep {task}"[:250] or "sweep", tags=tags)
    params = {
        "sweep.overrides": task,
        "sweep.n_trials": ctx.n_trials,
        "sweep.parallel": ctx.parallel,
        "experiment_name": experiment_name,
    }
    c.log_batch(
        run.info.run_id, params=[Param(k, str(v)[:MAX_PARAM_LEN]) for k, v in params.items()]
    )
    return run.info.run_id


def _end_parent(ctx: SweepContext, counts: dict, best: dict | None, summary: str) -> None:
    from mlflow.entities import RunTag

    c = client(ctx.uri)
    tags = [RunTag(f"nnlab.n_{o}", str(n)) for o, n in counts.items()]
    if best and best.get("run_id"):
        tags.append(RunTag("nnlab.best_run_id", best["run_id"]))
    c.log_batch(ctx.parent_run_id, tags=tags)
    c.log_text(ctx.parent_run_id, summary + "\n", "summary.txt")
    c.set_terminated(ctx.parent_run_id, "FINISHED")


def abort_sweep() -> None:
    """After Ctrl-C / SIGTERM in the launching process: mark the parent and running trials KILLED."""
    ctx: SweepContext | None = _SWEEP.get("ctx")
    if ctx is None or not ctx.parent_run_id:
        return
    from mlflow.entities import RunTag

    c = client(ctx.uri)
    running = c.search_runs(
        [ctx.experiment_id],
        f"tags.`mlflow.parentRunId` = '{ctx.parent_run_id}' and attributes.status = 'RUNNING'",
    )
    for run in running:
        c.log_batch(run.info.run_id, tags=[RunTag("nnlab.outcome", "killed")])
        c.set_terminated(run.info.run_id, "KILLED")
    c.set_terminated(ctx.parent_run_id, "KILLED")
    print(
        f"nnlab: sweep {ctx.sweep_id} interrupted; parent run {ctx.parent_run_id} and "
        f"{len(running)} running trials marked KILLED. Run the same command to resume.",
        file=sys.stderr,
        flush=True,
    )


def _maybe_report(plain: dict, ctx: SweepContext) -> None:
    """``report.enabled``: build the experiment's report (nnlab.report, when it exists)."""
    rep = plain.get("report") or {}
    if not rep.get("enabled"):
        return
    if ctx.backend != "mlflow":
        print(
            "nnlab: report.enabled needs MLflow tracking; skipped (tracking=none)", file=sys.stderr
        )
        return
    try:
        from nnlab.report import build_report
    except ImportError as exc:
        print(f"nnlab: report skipped, nnlab.report is not available ({exc})", file=sys.stderr)
        return
    path = build_report(
        plain["experiment_name"],
        rep["out"],
        metric=rep.get("metric", "val_loss"),
        tracking_uri=ctx.uri,
    )
    print(f"  report: {path}", flush=True)
