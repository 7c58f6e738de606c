"""One launch of a sweep in the launching process: check, open, dispatch, summarise.

nnlab's sweepers (``hydra_plugins/nnlab_sweeper``: the grid, ``nnlab_optuna_sweeper``: a
search) hand their trials to a :class:`Session`:

1. :meth:`Session.open` composes and checks one trial per value of every axis before anything
   is tracked (a bad value exits 2), opens the store, the experiment and the parent run
   (:class:`~nnlab.tracking.sweep.SweepTracking`), starts the run writer and the workers, and
   says how many trials there are and about how long they will take.
2. :meth:`Session.run` composes each trial (:mod:`nnlab.sweep.compose`), skips, before
   dispatch, those whose config already has a FINISHED run, and runs the rest on the launcher
   the config names (:mod:`nnlab.sweep.launch`), printing one line per finished trial.
3. :meth:`Session.close` prints the summary, registers the best model, ends the parent run and
   exits 1 when a trial failed or anything is missing. Whatever went wrong before, the parent
   is ended and the summary printed; Ctrl-C or SIGTERM end the running trials and the parent
   KILLED (the same command resumes them).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nnlab.build import check_model_fits, load_data
from nnlab.checkpoint import atomic_write_text
from nnlab.config import ConfigError, full_error, validate
from nnlab.sweep.compose import Composer, CompositionError
from nnlab.sweep.context import SweepContext
from nnlab.sweep.launch import Launch, launch_for
from nnlab.sweep.pool import Task
from nnlab.sweep.progress import Filing, Progress
from nnlab.tracking.schema import SWEEP_FILE, config_hash


def fail_config(message: str) -> None:
    """Print one line and exit 2 (before any MLflow run exists)."""
    if full_error():
        raise ConfigError(message)
    print(f"nnlab: invalid config: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def sweep_signature(experiment: str, what: Any) -> str:
    """Hash of what the sweep runs (its axes, or a search's plan): the same sweep again."""
    blob = json.dumps({"experiment": experiment, "sweep": what}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class Session:
    """A sweep's launch (see the module docstring).

    Parameters
    ----------
    sweeper : hydra Sweeper
        nnlab's sweeper: its ``config`` (the launch's), ``hydra_context`` and ``launcher``.
    """

    def __init__(self, sweeper: Any):
        self.config, self.sweeper = sweeper.config, sweeper
        self.base = Path(str(self.config.hydra.runtime.cwd))
        self.sweep_dir = (self.base / str(self.config.hydra.sweep.dir)).resolve()
        self.ctx: SweepContext | None = None
        self.plain: dict = {}  # the first trial's config (experiment, tracking, report)
        self.composer: Composer | None = None
        self.progress = Progress(None)
        self.filing = Filing()  # a search waits here for each trial's run id
        self.tracking: Any = None
        self.launch: Launch | None = None
        self.rerun = False
        self.study: dict | None = None  # a search's summary (nnlab.search.loop), set before close
        self.ended = False  # the parent run is ended and the summary printed: nothing to undo
        self.started = time.perf_counter()

    # --- 1. open ---------------------------------------------------------------------------

    def open(
        self,
        probes: list[list[str]],
        shared: list[str],
        varying: list[str],
        n_trials: int | None,
        what: Any,
        search: Any = None,
    ) -> None:
        """Check, open the store and parent, start the writer and the workers; print the
        header. ``probes``: job override lists covering every value of every axis; ``what``:
        what identifies the sweep (the grid's axes, a search's plan)."""
        t0 = time.perf_counter()
        loader = self.sweeper.hydra_context.config_loader
        self.composer = Composer(loader, self.config, shared)
        self.plain = self.check(probes)  # a refused sweep leaves nothing behind
        from omegaconf import OmegaConf

        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, self.sweep_dir / "multirun.yaml")
        name, tracking = self.plain["experiment_name"], self.plain["tracking"]
        self.rerun = bool(tracking["rerun"])
        launch = launch_for(self, self.config.hydra.launcher)
        ctx = self.ctx = SweepContext(
            sweep_id=uuid.uuid4().hex[:12],
            backend=tracking["backend"],
            uri=None,
            experiment_id=None,
            parent_run_id=None,
            n_trials=n_trials,
            varying=varying,
            parallel=launch.parallel,
            results_dir="",
            sweep_hash=sweep_signature(name, what),
            sweep_dir=str(self.sweep_dir),
            launch_dir=str(self.base),
            remote=launch.remote,
        )
        ctx.results_dir = str(self.sweep_dir / ".nnlab" / ctx.sweep_id)
        if search is not None:
            ctx.search = search.context(self.base, name, ctx.sweep_hash, self.plain)
        header = f"{n_trials:,} trials" if n_trials else "? trials"
        shared_lines = launch.prepare(self.plain)
        if ctx.backend == "mlflow":
            from nnlab.tracking.sweep import SweepTracking

            task = " ".join(self.config.hydra.overrides.task)
            self.tracking = SweepTracking(ctx, self.plain, task, self.filed)
            try:
                header += self.tracking.open()
            except ConfigError as exc:
                fail_config(str(exc))
        ctx.results_dir = str(self.sweep_dir / ".nnlab" / ctx.sweep_id)  # a reopened sweep's id
        Path(ctx.results_dir).mkdir(parents=True, exist_ok=True)
        ctx.save(self.sweep_dir / SWEEP_FILE)
        self.progress = Progress(n_trials)
        self.progress.started = self.started
        self.launch = launch
        launch.start()
        if self.tracking is not None:
            self.tracking.start()
        print(
            f"nnlab sweep {ctx.sweep_id}: {header}\n  outputs: {self.sweep_dir}  "
            f"(set-up {time.perf_counter() - t0:.1f}s)",
            *shared_lines,
            sep="\n",
            flush=True,
        )
        estimate = launch.estimate(self.plain, n_trials)
        if estimate:
            print(f"  {estimate}", flush=True)
        held = len(self.tracking.finished) if self.tracking is not None else 0
        if held and not self.rerun and not ctx.search:
            print(
                f"  {held} configs already have a FINISHED run in this experiment: trials with "
                "one of them are skipped (tracking.rerun=true runs them again)",
                flush=True,
            )

    def check(self, probes: list[list[str]]) -> dict:
        """Compose and validate the probe trials (every value of every axis, and the memory a
        model needs) before anything is tracked; exit 2 on a bad one. The first one's config."""
        shapes: dict[str, tuple[int, int]] = {}
        plains = []
        for overrides in probes or [[]]:
            try:
                plains.append(self.trial_config(-1, overrides, shapes)[0])
            except (ConfigError, CompositionError) as exc:
                fail_config(f"trial `{' '.join(overrides)}`: {exc}")
        fixed = {(p["experiment_name"], json.dumps(p["tracking"], sort_keys=True)) for p in plains}
        if len(fixed) > 1:
            fail_config(
                "experiment_name and tracking.* must be the same for every trial of a sweep "
                "(run one sweep per experiment)"
            )
        return plains[0]

    def trial_config(
        self, job: int, overrides: list[str], shapes: dict | None = None
    ) -> tuple[dict, str]:
        """(validated plain config, job dir) of trial ``job``; with ``shapes`` (a cache of each
        data config's features and classes) its data and model size are checked too."""
        trial = self.composer.trial(job, list(overrides))
        plain = validate(trial.plain, trial.raw)
        if shapes is not None:
            key = json.dumps(plain["data"], sort_keys=True, default=str)
            if key not in shapes:
                data = load_data(plain["data"], plain["model"].get("loss", "auto"))
                shapes[key] = (data.n_features, data.n_classes)
            check_model_fits(plain["model"], *shapes[key], plain["optimizer"])
        return plain, trial.out

    # --- 2. run ----------------------------------------------------------------------------

    def tasks(self, jobs: Iterator[tuple[int, list[str]]]) -> Iterator[Task]:
        """The trials to dispatch; a trial whose config has a FINISHED run is counted as
        skipped here and never dispatched."""
        finished = self.tracking.finished if self.tracking is not None else {}
        for job, overrides in jobs:
            task = self.task(job, overrides, finished)
            if task is not None:
                yield task

    def task(self, job: int, overrides: list[str], finished: dict) -> Task | None:
        from nnlab.tracking.job import TrialRecord, run_name

        try:
            plain, out = self.trial_config(job, overrides)
        except (ConfigError, CompositionError) as exc:  # probes passed: a combination failed
            name = " ".join(o for o in overrides if o.split("=")[0] in self.ctx.varying)
            record = TrialRecord(job, name, "", error=f"invalid config: {exc}")
            self.record(vars(record))
            return None
        digest = config_hash(plain)
        prior = finished.get(digest)
        if prior is not None and not self.rerun and not self.ctx.search:
            from nnlab.tracking.sweep import skip_source

            name = run_name(overrides, self.ctx.varying, plain)
            record = TrialRecord(job, name, digest, outcome="skipped", run_id=prior["run_id"])
            record.loss, record.val_loss = prior.get("loss"), prior.get("val_loss")
            record.prior_outcome = prior.get("outcome")
            self.record({**vars(record), "source": skip_source(prior)})
            return None
        return Task(job, list(overrides), plain, out, prior is not None)

    def run(self, jobs: Iterator[tuple[int, list[str]]]) -> None:
        """Dispatch the grid's trials; returns when every one has a record."""
        self.launch.run(self.tasks(jobs), self.record)

    def run_one(self, job: int, overrides: list[str]) -> dict:
        """One trial (a search asks them one by one, from several threads): its record, with
        its run id once the writer has filed it."""
        task = self.task(job, overrides, {})
        if task is None:  # an invalid combination: counted already
            return {"job": job, "outcome": "failed", "error": "invalid config"}
        record = self.launch.run_one(task)
        self.record(record)
        if self.tracking is not None and record["outcome"] != "killed":
            self.tracking.writer.kick()
            filed = self.filing.take(job, timeout=120.0)
            if filed is not None:
                record["run_id"], record["tracking_error"] = filed
        return record

    def record(self, record: dict) -> None:
        """A trial ended (or was skipped): count it and print its line."""
        self.progress.add(record)
        if record["outcome"] == "killed" and not (self.ctx and self.ctx.remote):
            raise KeyboardInterrupt  # Ctrl-C reached the trial first: the sweep stops

    def filed(self, job: int, run_id: str | None, error: str | None) -> None:
        """The writer filed trial ``job`` (its thread)."""
        self.progress.filed(job, error)
        if self.ctx is not None and self.ctx.search:
            self.filing.done(job, run_id, error)

    # --- 3. close --------------------------------------------------------------------------

    def close(self, interrupted: bool = False, error: BaseException | None = None) -> None:
        """The summary, the parent run, the report; exit 1 when anything is missing.

        Interrupted half-way (a second Ctrl-C while the writer files the last trials), it runs
        again from :meth:`abort`: every step here can be repeated.
        """
        if self.ended or self.ctx is None:
            return
        if self.launch is not None:
            records = self.launch.stop(interrupted)
            for record in records:  # trials that ended while the sweep was being stopped
                self.progress.add(record)
        progress, ctx, study = self.progress, self.ctx, self.study
        problems = 0
        if self.tracking is not None:
            problems += self.tracking.drain(interrupted)
            self.tracking.best_run(progress.best)
            stats = json.dumps(self.tracking.writer.stats(), indent=1)  # benchmarks read it
            atomic_write_text(Path(ctx.results_dir) / "writer.json", stats, sync=False)
        lines = progress.summary(ctx.sweep_id)
        best = progress.best
        if study is not None:
            from nnlab.tracking.search import summary_lines

            lines = summary_lines(lines, study)
            best = {"run_id": (study.get("best") or {}).get("run_id")} if study["best"] else None
        if error is not None:
            lines.append(f"  the sweep stopped early: {type(error).__name__}: {error}")
            problems += 1
        if self.tracking is not None:
            incomplete = interrupted or progress.missing() > 0  # the parent ends KILLED: resumable
            extra, n = self.tracking.close(progress.counts, best, lines, incomplete, study)
            lines += extra
            problems += n
        if progress.untracked and self.tracking is not None:
            lines.append(
                f"  nothing is lost: python -m nnlab.recover {ctx.sweep_dir} files the "
                f"{progress.untracked} trials MLflow missed from their job directories"
            )
        lines += self.launch.notes() if self.launch is not None else []
        if progress.counts.get("killed") or interrupted:
            lines.append("  killed trials resume from their checkpoints: run the same command")
        print("\n".join(lines), flush=True)
        self.ended = True
        if interrupted:
            return
        if not problems and not progress.untracked:
            self.report()
        bad = progress.counts.get("failed") or progress.counts.get("killed")
        if bad or progress.missing() or progress.untracked or problems:
            raise SystemExit(1)

    def report(self) -> None:
        """``report.enabled``: build the experiment's report with ``nnlab.report``."""
        rep = self.plain.get("report") or {}
        if not rep.get("enabled"):
            return
        if self.ctx.backend != "mlflow":
            print(
                "nnlab: report.enabled needs MLflow tracking; skipped (tracking=none)",
                file=sys.stderr,
            )
            return
        from nnlab.report import build_report

        path = build_report(
            self.plain["experiment_name"],
            rep["out"],
            metric=rep.get("metric", "val_loss"),
            tracking_uri=self.ctx.uri,
        )
        print(f"  report: {path}", flush=True)
        if self.ctx.parent_run_id:  # the parent run carries it too (artifacts report/)
            from nnlab.tracking.parent import log_report
            from nnlab.tracking.store import one_line

            try:
                log_report(self.ctx.uri, self.ctx.parent_run_id, Path(path).parent)
            except Exception as exc:  # the report is on disk: the sweep is complete
                print(f"nnlab: could not attach the report to the parent run: {one_line(exc)}",
                      file=sys.stderr)  # fmt: skip

    def abort(self) -> None:
        """Ctrl-C / SIGTERM in the launching process: end the running trials and the parent
        KILLED; the same command resumes them."""
        if self.ended or self.ctx is None:
            return
        try:
            self.close(interrupted=True)
        finally:
            killed = self.tracking.writer.killed if self.tracking is not None else 0
            parent = f"parent run {self.ctx.parent_run_id} and " if self.ctx.parent_run_id else ""
            print(
                f"nnlab: sweep {self.ctx.sweep_id} interrupted; {parent}{killed} running trials "
                "marked KILLED. Run the same command to resume.",
                file=sys.stderr,
                flush=True,
            )

    def sweep(self, jobs: Iterator[tuple[int, list[str]]]) -> None:
        """:meth:`run`, then :meth:`close` whatever happened (see the module docstring)."""
        try:
            self.run(jobs)
        except KeyboardInterrupt:
            self.abort()
            raise
        except Exception as exc:
            if full_error():
                self.close(error=exc)
                raise
            self.close(error=exc)
            raise SystemExit(1) from None
        try:
            self.close()
        except KeyboardInterrupt:  # while the last trials were being filed: end them KILLED
            self.abort()
            raise
