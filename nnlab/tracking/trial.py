"""One trial: train one config and write its job directory; the run writer files it in MLflow.

A trial never talks to MLflow. It writes its job directory - ``run.json`` (params, tags,
outcome), ``artifacts/history.csv`` while it trains, the other artifacts at the end, see
:mod:`nnlab.jobdir` - and says where that directory is (``on_start``); one writer of the launching
process (:mod:`nnlab.tracking.writer`) turns it into the MLflow run: live while it trains, whole
once it ends. That is the one path from a trial to its run, for a single run, a serial or
parallel sweep, a SLURM job and ``nnlab.recover`` alike.

:func:`run_spec` runs one trial of a sweep; :func:`run_trial` is the Hydra task function (a
single run, or a job of one of Hydra's own launchers). A :class:`Trial` goes through steps:

1. :meth:`Trial.prepare` - everything that can refuse the trial: data, model size, checkpoint
   (lock, load, fit to this model).
2. :meth:`Trial.open_sinks` - the job directory's ``LocalHistory`` and the checkpoint schedule.
3. :meth:`Trial.fit` - ``nnlab.train.train`` with those sinks, then :meth:`Trial.finish`:
   artifacts and the outcome in ``run.json``.

In a sweep a trial never raises: a failure is recorded (outcome ``failed``, ``traceback.txt``)
so the rest of the sweep runs. Ctrl-C / SIGTERM ends it ``killed``, keeps its checkpoint and
returns its record; the caller stops.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
import traceback
from collections.abc import Callable
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
from nnlab.tracking.pyfunc import write_trial_model
from nnlab.tracking.schema import RUN_FILE, RUN_FORMAT, Tag, config_hash, flatten, param_value
from nnlab.tracking.store import one_line, resolve_uri, say
from nnlab.train import Sink, TrainResult, TrainState, train

OnStart = Callable[[int, Path], None]  # (job, run.json path): the writer may start uploading


def run_trial(cfg: Any) -> dict:
    """The Hydra task function: a single run (:mod:`nnlab.tracking.single`), or one job of a
    sweep that one of Hydra's own launchers runs (``hydra/launcher=joblib``); return its record.
    """
    plain = validate(cfg)
    place = JobPlace.from_hydra()
    if place.ctx is None:
        from nnlab.tracking.single import run_single

        return run_single(plain, place)
    from nnlab.tracking.writer import announce, save_record

    ctx = place.ctx
    if ctx.parallel:  # a worker of Hydra's joblib launcher: one BLAS thread per trial
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1, user_api="blas")
    record = run_spec(plain, place, lambda job, path: announce(ctx.results_dir, job, path))
    save_record(ctx.results_dir, record)
    if record["outcome"] == "killed" and not ctx.remote:
        raise KeyboardInterrupt
    return record


def run_spec(
    plain: dict,
    place: JobPlace,
    on_start: OnStart | None = None,
    prior_finished: bool | Callable[[], bool] = False,
    on_prepared: Callable[[], None] | None = None,
) -> dict:
    """Train one trial (of a sweep: ``place.ctx``); return its record (:class:`TrialRecord`).

    ``prior_finished`` (or a function that answers it when asked): the store holds a FINISHED
    run of this config (a sweep with ``tracking.rerun=true`` trains it again), so a kept
    checkpoint of its ended training is not resumed. ``on_prepared`` is called once nothing
    more can refuse the trial (its data, model and checkpoint are fine). ``ConfigError`` ends the
    trial
    ``failed``; Ctrl-C / SIGTERM end it ``killed`` (the caller decides whether to go on). An
    exception of a single run's training propagates, after its job directory is written.
    """
    t_start = time.perf_counter()
    ctx = place.ctx
    record = TrialRecord(
        job=place.job,
        name=run_name(place.overrides, ctx.varying if ctx else None, plain),
        config_hash=config_hash(plain),
        job_dir=str(place.out),
    )
    remote = ctx is not None and ctx.remote
    try:
        with sigterm_interrupts() if remote else contextlib.nullcontext():
            trial = Trial(plain, place, record, t_start, on_start, prior_finished)
            trial.on_prepared = on_prepared
            trial.run()
    except ConfigError as exc:
        if ctx is None:
            raise
        record.outcome, record.error = "failed", f"invalid config: {exc}"
    except KeyboardInterrupt:
        record.outcome = "killed"
    return asdict(record)


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


def save_on_interrupt(schedule: CheckpointSchedule | None, local: LocalHistory) -> None:
    """After an interruption or error: save the last finished epoch (never raises), and drop
    from the job dir's history what lies beyond it (the epoch under way's batch losses): the
    resumed trial logs those again, and a run must hold each step once."""
    if schedule is None:
        return
    try:
        schedule.save_latest()
    except BaseException as exc:  # a second Ctrl-C mid-save: the previous file stays intact
        say(f"nnlab: could not save the last checkpoint: {one_line(exc)}")
        return
    saved = schedule.last_saved_step()
    if saved is not None:
        epoch, step = saved
        local.rows[:] = [r for r in local.rows if r["epoch"] <= epoch]
        local.batches[:] = [b for b in local.batches if b[0] <= step]
        local.write()


@functools.cache
def blas_threads() -> int | None:
    """The BLAS threads this process trains with (asked once: a worker limits them first)."""
    from threadpoolctl import threadpool_info

    return max(
        (p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"), default=None
    )


def trial_tags(record: TrialRecord, ctx: Any, resume: TrainState | None, search: bool) -> dict:
    """The tags a trial's run starts with (the writer adds the parent and sweep ids)."""
    tags = {
        Tag.ROLE: "trial",
        Tag.VERSION: nnlab.__version__,
        Tag.CONFIG_HASH: record.config_hash,
        Tag.JOB: str(record.job),
        **(ctx.git if ctx and ctx.git else source_tags()),
    }
    if resume is not None:
        tags[Tag.RESUMED_FROM_EPOCH] = str(resume.epoch)
    if search:
        tags |= {Tag.OPTUNA_TRIAL: str(record.job), Tag.OPTUNA_STATE: "RUNNING"}
    return tags


class Trial:
    """One trial's state between the steps of :meth:`run` (see the module docstring)."""

    def __init__(
        self,
        plain: dict,
        place: JobPlace,
        record: TrialRecord,
        t_start: float,
        on_start: OnStart | None = None,
        prior_finished: bool | Callable[[], bool] = False,
    ):
        self.plain, self.place, self.record, self.t_start = plain, place, record, t_start
        self.on_start, self.prior_finished = on_start, prior_finished
        self.on_prepared: Callable[[], None] | None = None
        tr = plain["trainer"]
        multirun = place.ctx is not None
        self.verbose = (0 if multirun else 1) if tr["verbose"] == "auto" else int(tr["verbose"])
        self.artifact_dir = place.out / "artifacts"
        self.tracked = plain["tracking"]["backend"] == "mlflow"
        self.data: Any = None
        self.ckpt: Checkpointer | None = None
        self.resume: TrainState | None = None
        self.local: LocalHistory | None = None
        self.schedule: CheckpointSchedule | None = None
        self.pruning: Sink | None = None  # a search's trial: reports to the Optuna study

    def run(self) -> None:
        self.prepare()
        if self.on_prepared is not None:  # a single run starts its writer now
            self.on_prepared()
        try:
            self.choose_resume()
            self.open_sinks()
            self.fit()
        finally:
            if self.ckpt is not None:
                self.ckpt.release()

    # --- 1. everything that can refuse the trial -------------------------------------------

    def prepare(self) -> None:
        plain, place = self.plain, self.place
        self.data = load_data(plain["data"], plain["model"].get("loss", "auto"))
        check_model_fits(
            plain["model"], self.data.n_features, self.data.n_classes, plain["optimizer"]
        )
        if place.ctx is not None and place.ctx.search:
            self.pruning = open_study_trial(place.ctx.search, self.record.job, plain)
        self.ckpt, self.resume, _meta = open_checkpoint(plain, place.base, self.record.config_hash)
        if self.resume is not None:  # the saved state must fit this config's model exactly
            try:
                build_for(plain, self.data).set_state(self.resume.model_state)
            except (ValueError, KeyError, TypeError, IndexError) as exc:
                self.ckpt.release()
                raise CheckpointError(
                    f"checkpoint {self.ckpt.path} does not fit this config's model ({exc}); "
                    "delete that file to start this trial afresh, or run with "
                    "trainer.checkpoint.resume=false"
                ) from None

    def choose_resume(self) -> None:
        """Resume from the checkpoint, unless it holds a training that already ended and was
        filed (``prior_finished``), or that nothing would file (``tracking=none``)."""
        if self.resume is not None and self.resume.finished:
            prior = self.prior_finished
            if not self.tracked or (prior() if callable(prior) else prior):
                self.resume = None  # stale: that training ended and was tracked; train afresh
        if self.resume is not None:
            say(
                f"nnlab: {self.record.name}: resuming from {self.ckpt.path} after epoch "
                f"{self.resume.epoch}"
            )

    # --- 2. the job directory ----------------------------------------------------------------

    def open_sinks(self) -> None:
        plain, record, tr = self.plain, self.record, self.plain["trainer"]
        params = flatten(plain)
        ctx = self.place.ctx
        meta: dict[str, Any] = {
            "format": RUN_FORMAT,
            "job": record.job,
            "tracking_uri": (
                resolve_uri(plain["tracking"]["uri"], self.place.base) if self.tracked else None
            ),
            "experiment_name": plain["experiment_name"],
            "run_name": record.name,
            "params": {k: param_value(v) for k, v in params.items()},
            "tags": trial_tags(record, ctx, self.resume, self.pruning is not None),
            "outcome": "running",
            "tracked": None if self.tracked else False,
            "checkpoint": str(self.ckpt.path) if self.ckpt is not None else None,
            "keep_checkpoint": bool(tr["checkpoint"]["keep"]),
            "blas_threads": blas_threads(),
        }
        if self.tracked and plain["tracking"].get("log_datasets", True):
            meta["datasets"] = dataset_records(self.data, plain["data"])
        # history.csv as fresh as the live curves; with a checkpoint, rewritten only right
        # after a save, so the store never holds an epoch the checkpoint lacks
        interval = min(tr["checkpoint"]["interval"], plain["tracking"]["flush_interval"])
        self.local = LocalHistory(
            self.artifact_dir,
            self.place.out / RUN_FILE,
            meta,
            self.resume,
            interval=math.inf if self.ckpt is not None else interval,
            sync=tr["checkpoint"]["sync"],
        )
        if self.pruning is not None and self.resume is not None:
            self.pruning.backfill(self.resume.history)
        if self.tracked and self.on_start is not None:
            self.on_start(record.job, self.place.out / RUN_FILE)
        if self.ckpt is not None:
            local = self.local
            self.schedule = CheckpointSchedule(
                self.save_checkpoint,
                tr["checkpoint"]["interval"],
                lambda _epoch: local.write(),
            )

    def save_checkpoint(self, state: TrainState) -> None:
        if self.ckpt is None:
            return
        meta = {
            "config_hash": self.record.config_hash,
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

    # --- 3. train, then write the outcome ---------------------------------------------------

    def _train(self) -> TrainResult:
        sinks: list[Sink] = [s for s in (self.local, self.pruning) if s is not None]
        kwargs: dict[str, Any] = dict(
            verbose=self.verbose,
            data=self.data,
            resume=self.resume,
            on_checkpoint=self.schedule.on_state if self.schedule is not None else None,
        )
        self.record.train_started = time.time()
        return train(self.plain, sinks, **kwargs)

    def fit(self) -> None:
        result, tb, outcome = None, None, "failed"
        try:
            result = self._train()
            outcome = result.outcome
        except KeyboardInterrupt:
            self.save_last_checkpoint()
            self.finish("killed", None, None)
            kept = (
                f"; checkpoint {self.ckpt.path} kept: run the same command to resume"
                if self.ckpt is not None and self.ckpt.path.exists()
                else ""
            )
            say(f"nnlab: {self.record.name}: interrupted after {len(self.local.rows)} epochs{kept}")
            self.summarize("killed", None)
            raise
        except Exception as exc:
            tb = traceback.format_exc()
            self.record.error = f"{type(exc).__name__}: {exc}"
            self.save_last_checkpoint()
            self.finish(outcome, None, tb)
            if self.place.ctx is None:
                self.summarize(outcome, None)
                raise
        else:
            self.finish(outcome, result, None)
            keep = self.plain["trainer"]["checkpoint"]["keep"]
            if self.ckpt is not None and not keep and not self.tracked:
                self.ckpt.delete()  # nothing will file it: the job dir has everything
        self.summarize(outcome, result)

    def save_last_checkpoint(self) -> None:
        save_on_interrupt(self.schedule, self.local)

    def finish(self, outcome: str, result: TrainResult | None, tb: str | None) -> None:
        """Write the artifacts and the outcome (``run.json``: the writer's cue that all is
        written). Errors here are reported, not raised: the outcome must still be written."""
        plain, local = self.plain, self.local
        log_model = bool(plain["tracking"].get("log_model", True))
        try:
            write_artifacts(
                self.artifact_dir,
                plain,
                self.place.overrides,
                result,
                local.rows,
                tb,
                log_model,
                plain["trainer"]["checkpoint"]["sync"],
                local.batches,
            )
        except Exception as exc:
            say(f"nnlab: could not write artifacts to {self.artifact_dir}: {exc}")
        if result is not None and log_model:  # artifacts/model/
            write_trial_model(self.artifact_dir, self.data, None)
        end_tags = {}
        if result is not None and result.stopped_epoch is not None:
            end_tags[Tag.STOPPED_EPOCH] = str(result.stopped_epoch)
        if self.pruning is not None:
            end_tags |= getattr(self.pruning, "end_tags", dict)()
        local.write_meta(outcome=outcome, end_tags=end_tags)

    def summarize(self, outcome: str, result: TrainResult | None) -> None:
        """Fill the record from what was trained."""
        record, rows = self.record, self.local.rows
        record.outcome = outcome
        record.seconds = time.perf_counter() - self.t_start
        record.ended = time.time()
        record.checkpoint_s = self.ckpt.seconds if self.ckpt is not None else 0.0
        record.epochs_run = len(rows)
        record.train_s = result.seconds if result is not None else None
        record.loss = rows[-1].get("loss") if rows else None
        record.val_loss = rows[-1].get("val_loss") if rows else None
        record.job_dir = str(self.place.out)
