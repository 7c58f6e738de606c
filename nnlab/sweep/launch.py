"""Where a sweep's trials run: one :class:`Launch` per kind of launcher.

=====================================  =========================================================
``hydra/launcher``                     how the trials run
=====================================  =========================================================
``basic`` (Hydra's default)            :class:`InProcess`: one after another in this process
``parallel`` (nnlab's)                 :class:`Pooled`: ``n_jobs`` long-lived workers fed
                                       chunks of composed trials (:mod:`nnlab.sweep.pool`)
``slurm`` (nnlab's)                    :class:`~nnlab.sweep.slurm.Slurm`: SLURM array tasks, each
                                       a chunk of trials in one Python process
anything else (``joblib``,             :class:`ViaHydra`: Hydra's own launcher, each trial a
``submitit_local``, ...)               Hydra job that composes its own config (for comparison)
=====================================  =========================================================

Whichever runs them, every trial writes its job directory and the run writer of this process
files it in MLflow; each finished trial's record comes back here for its line and the summary.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from nnlab.sweep.pool import Task, WorkerPool
from nnlab.tracking.job import JobPlace

OnRecord = Callable[[dict], None]
POOL_TARGET = "hydra_plugins.nnlab_launcher.launcher.NnlabParallelLauncher"
SLURM_TARGET = "hydra_plugins.nnlab_launcher.launcher.NnlabSlurmLauncher"
OVERHEAD_S = 0.02  # a tiny trial's cost beyond its training steps (job dir, model, filing)


def target(launcher_cfg: Any) -> str:
    return str(launcher_cfg.get("_target_", "") or "")


def launch_for(session: Any, launcher_cfg: Any) -> Launch:
    """The :class:`Launch` for the configured ``hydra.launcher``."""
    name = target(launcher_cfg)
    if name == POOL_TARGET:
        n = int(launcher_cfg.get("n_jobs", 2))
        return Pooled(session, n if n > 0 else os.cpu_count() or 1)
    if name == SLURM_TARGET:
        from nnlab.sweep.slurm import Slurm

        return Slurm(session, launcher_cfg)
    if name.endswith("BasicLauncher"):
        return InProcess(session)
    return ViaHydra(session, launcher_cfg)


class Launch:
    """What a sweep needs of a launcher (see the module docstring)."""

    parallel = False  # trials share the cores (one BLAS thread each)
    remote = False  # trials print to logs elsewhere; SIGTERM ends a trial, not the sweep
    workers = 1

    def __init__(self, session: Any):
        self.session = session

    def prepare(self, plain: dict) -> list[str]:
        """Checks before anything is tracked; lines for the header (and the summary)."""
        return []

    def start(self) -> None:
        """Start what the trials run on (the store is being opened meanwhile)."""

    def run(self, tasks: Iterable[Task], on_record: OnRecord) -> None:
        raise NotImplementedError

    def run_one(self, task: Task) -> dict:
        raise NotImplementedError

    def stop(self, interrupted: bool) -> list[dict]:
        """Stop; the records of trials that ended meanwhile (interrupted ones: ``killed``)."""
        return []

    def notes(self) -> list[str]:
        """The summary's lines about the launcher."""
        return []

    def place(self, task: Task) -> JobPlace:
        ctx = self.session.ctx
        return JobPlace(Path(ctx.launch_dir), Path(task.out), task.overrides, task.job, ctx)

    def on_start(self, job: int, run_file: Path) -> None:
        """A trial's ``run.json`` exists: the writer may start filing it."""
        tracking = self.session.tracking
        if tracking is not None:
            tracking.writer.add(job, run_file)

    def estimate(self, plain: dict, n_trials: int | None) -> str:
        """``1,000 trials: about 12s of training on 2 workers (estimated)``, or ''."""
        if not n_trials:
            return ""
        per_trial = trial_seconds(plain)
        if per_trial is None:
            return ""
        total = n_trials * (per_trial + OVERHEAD_S) / self.workers
        if total < 30:  # a short sweep: its lines' ETA says enough
            return ""
        from nnlab.sweep.progress import duration

        workers = f"{self.workers} worker{'s' * (self.workers > 1)}"
        return (
            f"{n_trials:,} trials: about {duration(total)} on {workers} (estimated from the "
            f"first trial's step time; {plain['trainer']['epochs']} epochs each)"
        )


def trial_seconds(plain: dict) -> float | None:
    """Seconds one trial like ``plain`` trains for, from the time of a few of its steps."""
    import math

    from nnlab.build import build_for, load_data

    try:
        data = load_data(plain["data"], plain["model"].get("loss", "auto"))
        model = build_for(plain, data)
        batch = int(plain["trainer"]["batch_size"])
        x, y = data.x_train[:batch], data.y_train[:batch]
        steps = 5
        t0 = time.perf_counter()
        model.fit(x, y, batch_size=batch, epochs=steps, verbose=0, shuffle=False)
        step = (time.perf_counter() - t0) / steps
    except Exception:  # an estimate only: the trials report their own problems
        return None
    per_epoch = math.ceil(len(data.x_train) / batch) * step
    return per_epoch * int(plain["trainer"]["epochs"])


class InProcess(Launch):
    """Hydra's basic launcher: the trials one after another in this process."""

    def run(self, tasks: Iterable[Task], on_record: OnRecord) -> None:
        for task in tasks:
            on_record(self.run_one(task))

    def run_one(self, task: Task) -> dict:
        from nnlab.tracking.trial import run_spec

        return run_spec(task.plain, self.place(task), self.on_start, task.prior_finished)


class Pooled(Launch):
    """``hydra/launcher=parallel``: nnlab's worker pool (:mod:`nnlab.sweep.pool`)."""

    parallel = True

    def __init__(self, session: Any, n: int):
        super().__init__(session)
        self.workers = n
        self.pool: WorkerPool | None = None
        self.lock = threading.Lock()  # a search's threads start the pool once

    def start(self) -> None:
        """Nothing yet: the workers start with the first trial to run (a re-run whose trials
        are all skipped starts none)."""

    def _pool(self) -> WorkerPool:
        if self.pool is None:
            self.pool = WorkerPool(self.workers, self.session.ctx, self.on_start, self.abandon)
            self.pool.start()
        return self.pool

    def abandon(self, job: int, why: str) -> None:
        tracking = self.session.tracking
        if tracking is not None:
            tracking.writer.abandon(job, "failed", why)

    def run(self, tasks: Iterable[Task], on_record: OnRecord) -> None:
        tasks = iter(tasks)
        first = next(tasks, None)
        if first is not None:
            self._pool().run(itertools.chain([first], tasks), on_record)

    def run_one(self, task: Task) -> dict:
        with self.lock:
            pool = self._pool()
        return pool.submit(task).result()

    def stop(self, interrupted: bool) -> list[dict]:
        if self.pool is None:
            return []
        records = []
        if interrupted:
            self.pool.interrupt()
            records = self.pool.drain()
        self.pool.close()
        self.pool = None
        return records


class ViaHydra(Launch):
    """Hydra's own launcher (``joblib``, ``submitit_local``...): each trial a Hydra job that
    composes its own config and leaves its record in the results dir."""

    def __init__(self, session: Any, launcher_cfg: Any):
        super().__init__(session)
        from nnlab.tracking import launchers

        self.remote = launchers.is_remote(launcher_cfg)
        self.parallel = launchers.is_parallel(launcher_cfg)
        self.workers = int(launcher_cfg.get("n_jobs", 1) or 1) if self.parallel else 1
        if self.workers < 1:
            self.workers = os.cpu_count() or 1
        self.launcher_cfg = launcher_cfg

    def prepare(self, plain: dict) -> list[str]:
        from nnlab.tracking import launchers

        if self.remote:
            launchers.pin_sweep_dir(self.session.config, self.session.sweep_dir)
        return []

    def run(self, tasks: Iterable[Task], on_record: OnRecord) -> None:
        """Launch contiguous runs of job numbers (Hydra numbers a batch from its first job)
        while this thread prints the records the jobs leave."""
        from nnlab.tracking.writer import take_records

        results_dir = self.session.ctx.results_dir
        batch: list[Task] = []
        errors: list[BaseException] = []

        def launch(batch: list[Task]) -> None:
            try:
                jobs = self.session.sweeper.launcher.launch(
                    [t.overrides for t in batch], initial_job_idx=batch[0].job
                )
                for job in jobs:
                    _ = job.return_value  # re-raises a job's own exception
            except BaseException as exc:  # reported by the launching thread
                errors.append(exc)

        for task in [*tasks, None]:
            if task is not None and (not batch or task.job == batch[-1].job + 1):
                batch.append(task)
                continue
            if batch:
                thread = threading.Thread(target=launch, args=(batch,), daemon=True)
                thread.start()
                while thread.is_alive():
                    thread.join(0.2)
                    for record in take_records(results_dir):
                        on_record(record)
                for record in take_records(results_dir):
                    on_record(record)
                if errors:
                    raise errors[0]
            batch = [task] if task is not None else []

    def run_one(self, task: Task) -> dict:
        from nnlab.tracking.writer import RECORDS_DIR

        (job,) = self.session.sweeper.launcher.launch([task.overrides], initial_job_idx=task.job)
        try:
            record = job.return_value
        except Exception as exc:  # the job raised (the trial's own failures come as records)
            record = {"job": task.job, "outcome": "failed", "error": f"{type(exc).__name__}: {exc}"}
        path = Path(self.session.ctx.results_dir) / RECORDS_DIR / f"{task.job:05d}.json"
        path.unlink(missing_ok=True)
        return record if isinstance(record, dict) else {"job": task.job, "outcome": "failed"}
