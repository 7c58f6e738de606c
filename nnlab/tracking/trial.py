"""One tracked trial: the body of every Hydra job of ``python -m nnlab.run``.

:func:`run_trial` validates the config, then a :class:`Trial` goes through named steps:

1. :meth:`Trial.prepare` - everything that can refuse the trial, before the store is touched:
   data, checkpoint (lock, load, fit to this model), the store (a single run probes it; a
   sweep's trials use the store the launcher opened).
2. :meth:`Trial.open_sinks` - the MLflow run (new, or the interrupted one reopened with the
   missing steps backfilled), the job directory's ``LocalHistory``, the checkpoint schedule.
3. :meth:`Trial.fit` - ``nnlab.train.train`` with those sinks, then :meth:`Trial.finish`:
   artifacts, outcome tags, run status.

A trial never raises into Hydra in a sweep: a failure is recorded (FAILED run, traceback
artifact) so the rest of the sweep runs and the summary prints; in a single run it is re-raised
after recording. Ctrl-C / SIGTERM marks the run KILLED, keeps its checkpoint and propagates.
"""

from __future__ import annotations

import contextlib
import math
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

import nnlab
from nnlab.build import build_for, check_model_fits, load_data
from nnlab.checkpoint import Checkpointer, CheckpointError, CheckpointSchedule, checkpoint_path
from nnlab.config import ConfigError, validate
from nnlab.jobdir import LocalHistory, write_artifacts
from nnlab.provenance import source_tags
from nnlab.tracking.datasets import dataset_records
from nnlab.tracking.job import JobPlace, TrialRecord, run_name
from nnlab.tracking.launchers import sigterm_interrupts
from nnlab.tracking.pyfunc import logged_model_tag, write_trial_model
from nnlab.tracking.schema import (
    RUN_FILE,
    RUN_FORMAT,
    Tag,
    config_hash,
    flatten,
    param_value,
)
from nnlab.tracking.sink import MlflowSink
from nnlab.tracking.store import (
    client,
    one_line,
    prepare_store,
    resolve_uri,
    runs_url,
    say,
    ui_command,
)
from nnlab.tracking.sweep import fmt, record_trial
from nnlab.tracking.writer import announce
from nnlab.train import Sink, TrainResult, TrainState, train


def run_trial(cfg: Any) -> dict:
    """Train one Hydra job with tracking as ``cfg.tracking`` says; return its record as a dict.

    ``ConfigError`` is raised before any run is created (in a sweep: a failed record without a
    run). In a submitit job (``ctx.remote``) SIGTERM (``scancel``, a time limit) ends the trial
    KILLED and its record is returned, so the job still reports to the launching process.
    """
    t_start = time.perf_counter()
    plain = validate(cfg)
    place = JobPlace.from_hydra()
    ctx = place.ctx
    digest = config_hash(plain)
    record = TrialRecord(
        job=place.job,
        name=run_name(place.overrides, ctx.varying if ctx else None, plain),
        config_hash=digest,
    )
    if ctx is not None and digest in ctx.skip:
        prior = ctx.skip[digest]
        record.outcome, record.run_id = "skipped", prior["run_id"]
        record.loss, record.val_loss = prior.get("loss"), prior.get("val_loss")
        record.prior_outcome = prior.get("outcome")
    else:
        remote = ctx is not None and ctx.remote
        try:
            with sigterm_interrupts() if remote else contextlib.nullcontext():
                Trial(plain, place, record, t_start).run()
        except ConfigError as exc:
            if ctx is None:
                raise
            record.outcome, record.error = "failed", f"invalid config: {exc}"
        except KeyboardInterrupt:
            if not remote:
                raise
            record.outcome = "killed"
    return record_trial(asdict(record), ctx)


def open_checkpoint(
    plain: dict, base: Path, digest: str
) -> tuple[Checkpointer | None, TrainState | None, dict]:
    """(Checkpointer or None, saved TrainState or None, its meta) for this trial."""
    ck = plain["trainer"]["checkpoint"]
    if not ck["enabled"]:
        return None, None, {}
    ckpt = Checkpointer(
        checkpoint_path(base, ck["dir"], plain["experiment_name"], digest), sync=ck["sync"]
    )
    try:
        locked = ckpt.acquire()
    except OSError as exc:
        raise ConfigError(
            f"trainer.checkpoint.dir={ck['dir']!r}: cannot write checkpoints there "
            f"({exc.strerror or exc}); pick a writable directory or set "
            "trainer.checkpoint.enabled=false"
        ) from None
    if not locked:
        say(
            f"nnlab: another process is training this config ({ckpt.path.with_suffix('.lock')} "
            "is held); this trial runs without a checkpoint"
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


def open_study_trial(search: dict, number: int, plain: dict) -> Sink:
    """The sink of study trial ``number`` (``hydra/sweeper=optuna``): reports the objective
    every epoch, stops training when the pruner says so. ConfigError if the study is unusable."""
    try:
        from nnlab.search.study import PruningSink

        return PruningSink(search, number, int(plain["trainer"]["epochs"]))
    except Exception as exc:
        raise ConfigError(
            f"search: cannot open trial {number} of study {search['study']} in "
            f"{search['journal']} ({one_line(exc)})"
        ) from None


def _prior_status(uri: str, run_id: str, experiment_id: str) -> str | None:
    """Status of ``run_id`` if it is a live run of ``experiment_id`` in the store, else None."""
    try:
        run = client(uri).get_run(run_id)
    except Exception:  # gone, or another store: the trial resumes into a new run
        return None
    if run.info.experiment_id != experiment_id or run.info.lifecycle_stage != "active":
        return None
    return run.info.status


def save_on_interrupt(schedule: CheckpointSchedule | None, sink: MlflowSink | None) -> None:
    """Save the last finished epoch after an interruption or error (never raises), and drop
    what the sink buffered beyond it (the resumed run logs those steps again)."""
    if schedule is None:
        return
    try:
        schedule.save_latest()
    except BaseException as exc:  # a second Ctrl-C mid-save: the previous file stays intact
        say(f"nnlab: could not save the last checkpoint: {one_line(exc)}")
        return
    saved = schedule.last_saved_step()
    if sink is not None and saved is not None:
        sink.discard_after(*saved)


class Trial:
    """One trial's state between the steps of :meth:`run` (see the module docstring)."""

    def __init__(self, plain: dict, place: JobPlace, record: TrialRecord, t_start: float):
        self.plain, self.place, self.record, self.t_start = plain, place, record, t_start
        tr = plain["trainer"]
        multirun = place.ctx is not None
        self.verbose = (0 if multirun else 1) if tr["verbose"] == "auto" else int(tr["verbose"])
        self.artifact_dir = place.out / "artifacts"
        self.data: Any = None
        self.ckpt: Checkpointer | None = None
        self.resume: TrainState | None = None
        self.ckmeta: dict = {}
        self.uri: str | None = None
        self.exp_id: str | None = None
        self.reopen: str | None = None  # run id of the interrupted run to continue
        self.sink: MlflowSink | None = None
        self.local: LocalHistory | None = None
        self.schedule: CheckpointSchedule | None = None
        self.tracking_error: str | None = None
        self.pruning: Sink | None = None  # a search's trial: reports to the Optuna study
        # a parallel sweep's trial: the launcher's writer uploads its job dir (no MLflow here)
        self.writer = place.ctx is not None and place.ctx.writer

    def run(self) -> None:
        self.prepare()
        try:
            self.choose_resume()
            self.open_sinks()
            self.fit()
        finally:
            if self.ckpt is not None:
                self.ckpt.release()

    # --- 1. everything that can refuse the trial, before the store is touched -----------------

    def prepare(self) -> None:
        plain, place = self.plain, self.place
        self.data = load_data(plain["data"], plain["model"].get("loss", "auto"))
        check_model_fits(
            plain["model"], self.data.n_features, self.data.n_classes, plain["optimizer"]
        )
        if place.ctx is not None and place.ctx.search:
            self.pruning = open_study_trial(place.ctx.search, self.record.job, plain)
        self.ckpt, self.resume, self.ckmeta = open_checkpoint(
            plain, place.base, self.record.config_hash
        )
        try:
            if self.resume is not None:  # the saved state must fit this config's model exactly
                self._check_resume_fits()
            if plain["tracking"]["backend"] == "mlflow":  # fail fast on an unusable store
                tracking, ctx = plain["tracking"], place.ctx
                self.uri = ctx.uri if ctx else resolve_uri(tracking["uri"], place.base)
                self.exp_id = (
                    ctx.experiment_id
                    if ctx
                    else prepare_store(
                        self.uri, plain["experiment_name"], tracking["artifacts"], place.base
                    )
                )
        except BaseException:
            if self.ckpt is not None:
                self.ckpt.release()
            raise

    def _check_resume_fits(self) -> None:
        try:
            build_for(self.plain, self.data).set_state(self.resume.model_state)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise CheckpointError(
                f"checkpoint {self.ckpt.path} does not fit this config's model ({exc}); delete "
                "that file to start this trial afresh, or run with "
                "trainer.checkpoint.resume=false"
            ) from None

    def choose_resume(self) -> None:
        """Resume into the interrupted run when the store still has it; else train afresh."""
        direct = self.uri is not None and not self.writer  # the writer reopens by config hash
        if self.resume is not None and direct and self.ckmeta.get("run_id"):
            status = _prior_status(self.uri, self.ckmeta["run_id"], self.exp_id)
            if status == "FINISHED":  # stale: that run ended and was tracked; train afresh
                self.resume = None
            elif status is not None:
                self.reopen = self.ckmeta["run_id"]
        if self.resume is not None and self.resume.finished and self.uri is None:
            self.resume = None  # nothing to finish without a tracker: train afresh
        if self.resume is not None:
            where = f" into MLflow run {self.reopen}" if self.reopen else ""
            say(
                f"nnlab: {self.record.name}: resuming from {self.ckpt.path} after epoch "
                f"{self.resume.epoch}{where}"
            )

    # --- 2. where the trial reports ------------------------------------------------------------

    def tags(self) -> dict[str, str]:
        ctx = self.place.ctx
        tags = {
            Tag.ROLE: "trial",
            Tag.VERSION: nnlab.__version__,
            Tag.CONFIG_HASH: self.record.config_hash,
            Tag.JOB: str(self.record.job),
            **(ctx.git if ctx and ctx.git else source_tags()),
        }
        if ctx is not None:
            tags[Tag.SWEEP_ID] = ctx.sweep_id
        if ctx is not None and ctx.parent_run_id:  # a writer's new store: the writer adds it
            tags[Tag.PARENT] = ctx.parent_run_id
        if self.resume is not None:
            tags[Tag.RESUMED_FROM_EPOCH] = str(self.resume.epoch)
        if self.pruning is not None:
            tags |= {Tag.OPTUNA_TRIAL: str(self.record.job), Tag.OPTUNA_STATE: "RUNNING"}
        return tags

    def open_sinks(self) -> None:
        plain, record, tr = self.plain, self.record, self.plain["trainer"]
        params, tags = flatten(plain), self.tags()
        if self.uri is not None and not self.writer:
            try:
                self.sink = MlflowSink(
                    self.uri,
                    self.exp_id,
                    record.name,
                    tags,
                    params,
                    plain["tracking"]["flush_interval"],
                    self.reopen,
                )
                if self.resume is not None:
                    self.sink.backfill(self.resume.history, self.resume.batch_losses)
                record.run_id = self.sink.run_id
                if self.reopen is None and plain["tracking"].get("log_datasets", True):
                    self.sink.log_datasets(self.data, plain["data"])
            except Exception as exc:  # the store broke since the sweep began: keep it local
                self.tracking_error, self.sink = one_line(exc), None
                say(
                    f"nnlab: {record.name}: MLflow error ({self.tracking_error}); training "
                    "without it, the history is kept in the job directory"
                )
        if self.pruning is not None:
            self.pruning.set_run(record.run_id)
            if self.resume is not None:
                self.pruning.backfill(self.resume.history)
        meta = {
            "format": RUN_FORMAT,
            "tracking_uri": self.uri,
            "experiment_name": plain["experiment_name"],
            "experiment_id": self.exp_id,
            "run_id": record.run_id,
            "run_name": record.name,
            "params": {k: param_value(v) for k, v in params.items()},
            "tags": tags,
            "outcome": "running",
            "tracked": None if self.uri is not None else False,
            "error": self.tracking_error,
        }
        interval = tr["checkpoint"]["interval"]
        if self.writer:  # what the writer needs; history.csv as fresh as the live curves, and
            meta |= self.writer_meta()  # with a checkpoint, rewritten only right after a save
            flush = plain["tracking"]["flush_interval"]
            interval = math.inf if self.ckpt is not None else min(interval, flush)
        self.local = LocalHistory(
            self.artifact_dir,
            self.place.out / RUN_FILE,
            meta,
            self.resume,
            interval=interval,
            sync=tr["checkpoint"]["sync"],
        )
        if self.writer:
            announce(self.place.ctx.results_dir, record.job, self.place.out / RUN_FILE)
        if self.ckpt is not None:
            # the MLflow sink flushes only right after a save: the store never holds an epoch
            # the checkpoint lacks (a resume backfills the steps it misses); in a parallel
            # sweep history.csv, which the writer uploads, is rewritten only then
            after_save = None
            if self.sink is not None:
                self.sink.auto_flush = False
                after_save = self.sink.maybe_flush
            elif self.writer:
                local = self.local
                after_save = lambda _epoch: local.write()  # noqa: E731
            self.schedule = CheckpointSchedule(
                self.save_checkpoint, tr["checkpoint"]["interval"], after_save
            )

    def writer_meta(self) -> dict[str, Any]:
        """``run.json``'s extra keys for the sweep's writer: datasets, the checkpoint to delete
        once the run is uploaded (``trainer.checkpoint.keep=false``)."""
        plain = self.plain
        extra: dict[str, Any] = {
            "checkpoint": str(self.ckpt.path) if self.ckpt is not None else None,
            "keep_checkpoint": bool(plain["trainer"]["checkpoint"]["keep"]),
        }
        if plain["tracking"].get("log_datasets", True):
            extra["datasets"] = dataset_records(self.data, plain["data"])
        return extra

    def save_checkpoint(self, state: TrainState) -> None:
        if self.ckpt is None:
            return
        meta = {
            "config_hash": self.record.config_hash,
            "run_id": self.record.run_id,
            "experiment_id": self.exp_id,
            "experiment_name": self.plain["experiment_name"],
        }
        try:
            self.ckpt.save(state, meta)
        except OSError as exc:  # e.g. disk full: keep training, without resume from here on
            say(
                f"nnlab: {self.record.name}: could not write checkpoint {self.ckpt.path} "
                f"({exc}); continuing without checkpoints"
            )
            self.ckpt = None

    # --- 3. train, then close the run with its outcome ----------------------------------------

    def _train(self) -> TrainResult:
        sinks: list[Sink] = [s for s in (self.local, self.sink, self.pruning) if s is not None]
        kwargs: dict[str, Any] = dict(
            verbose=self.verbose,
            data=self.data,
            resume=self.resume,
            on_checkpoint=self.schedule.on_state if self.schedule is not None else None,
        )
        ctx = self.place.ctx
        self.record.train_started = time.time()
        if ctx is None or not ctx.parallel:
            return train(self.plain, sinks, **kwargs)
        # one BLAS thread per trial when trials share the cores
        from threadpoolctl import threadpool_info, threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):
            blas = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
            self.record.blas_threads = max(blas, default=None)
            return train(self.plain, sinks, **kwargs)

    def fit(self) -> None:
        result, tb, outcome = None, None, "failed"
        try:
            result = self._train()
            outcome = result.outcome
        except KeyboardInterrupt:
            self.save_last_checkpoint()
            self.finish("killed", None, None)
            where = f"MLflow run {self.sink.run_id} marked KILLED" if self.sink else "stopped"
            kept = (
                f"; checkpoint {self.ckpt.path} kept: run the same command to resume"
                if self.ckpt is not None and self.ckpt.path.exists()
                else ""
            )
            say(
                f"nnlab: {self.record.name}: interrupted after {len(self.local.rows)} epochs; "
                f"{where}{kept}"
            )
            if self.place.ctx is not None:  # the record of a killed trial, for the summary
                self.summarize("killed", None)
            raise
        except Exception as exc:
            tb = traceback.format_exc()
            self.record.error = f"{type(exc).__name__}: {exc}"
            self.save_last_checkpoint()
            self.finish(outcome, None, tb)
            if self.place.ctx is None:
                raise
        else:
            self.finish(outcome, result, None)
            keep = self.plain["trainer"]["checkpoint"]["keep"]
            done = self.tracking_error is None and not self.writer  # the writer deletes it
            if self.ckpt is not None and not keep and done:
                self.ckpt.delete()  # training ended and the tracker has it all
        self.summarize(outcome, result)

    def save_last_checkpoint(self) -> None:
        save_on_interrupt(self.schedule, self.sink)

    def finish(self, outcome: str, result: TrainResult | None, tb: str | None) -> None:
        """Write the artifacts; with MLflow, tag the outcome, upload them and close the run.

        Errors here are reported, not raised: the run must still end with its outcome and
        status. ``tracking_error`` is set when MLflow did not get the whole run.
        """
        plain, local = self.plain, self.local
        try:
            write_artifacts(
                self.artifact_dir,
                plain,
                self.place.overrides,
                result,
                local.rows,
                tb,
                bool(plain["tracking"].get("log_model", True)),
                plain["trainer"]["checkpoint"]["sync"],
                local.batches,
            )
        except Exception as exc:
            say(f"nnlab: could not write artifacts to {self.artifact_dir}: {exc}")
        if result is not None and plain["tracking"].get("log_model", True):  # artifacts/model/
            write_trial_model(self.artifact_dir, self.data, self.record.run_id, self.sink)
        end_tags = {}
        if result is not None and result.stopped_epoch is not None:
            end_tags[Tag.STOPPED_EPOCH] = str(result.stopped_epoch)
        local.write_meta(outcome=outcome, end_tags=end_tags)  # the writer's cue: all is written
        if self.sink is None:
            return
        tags = {Tag.OUTCOME: outcome, **logged_model_tag(self.artifact_dir), **end_tags}
        try:
            self.sink.finish(outcome, tags, self.artifact_dir)
        except Exception as exc:  # never hide the training error behind a tracking error
            self.tracking_error = one_line(exc)
            say(f"nnlab: could not close MLflow run {self.sink.run_id}: {self.tracking_error}")
        local.write_meta(tracked=self.tracking_error is None, error=self.tracking_error)

    def summarize(self, outcome: str, result: TrainResult | None) -> None:
        """Fill the record; a single run prints its result line (exit 1 if MLflow missed it)."""
        record, rows = self.record, self.local.rows
        record.outcome = outcome
        record.seconds = time.perf_counter() - self.t_start
        record.ended = time.time()
        record.tracking_s = self.sink.overhead if self.sink else 0.0
        record.checkpoint_s = self.ckpt.seconds if self.ckpt is not None else 0.0
        record.epochs_run = len(rows)
        record.train_s = result.seconds if result is not None else None
        record.loss = rows[-1].get("loss") if rows else None
        record.val_loss = rows[-1].get("val_loss") if rows else None
        if self.tracking_error is not None:
            record.tracking_error, record.job_dir = self.tracking_error, str(self.place.out)
        if self.place.ctx is not None:
            return
        uri = self.uri or ""
        where = (
            f"MLflow run {record.run_id} ({ui_command(uri)}, then {runs_url(uri, self.exp_id)})"
            if self.sink and self.tracking_error is None
            else str(self.place.out)
        )
        print(
            f"{outcome}: loss={fmt(record.loss)} val_loss={fmt(record.val_loss)} "
            f"after {len(rows)} epochs (training {record.train_s:.2f}s, "
            f"total {record.seconds:.1f}s) -> {where}",
            flush=True,
        )
        if self.tracking_error is not None:
            say(
                f"nnlab: the run could not be written to MLflow ({self.tracking_error}); nothing "
                f"is lost: its history is in {self.artifact_dir / 'history.csv'}. Re-import it "
                f"with: python -m nnlab.recover {self.place.out}  (--tracking-uri URI for another "
                "store)"
            )
            raise SystemExit(1)
