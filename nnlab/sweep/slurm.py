"""``hydra/launcher=slurm``: a sweep as a SLURM job array whose tasks each run a chunk of trials.

One SLURM job per trial pays a fresh Python, imports and scheduling per trial (seconds each).
Here each array task runs ``trials_per_task`` composed trials one after another in one Python
process (:class:`ChunkRunner`); every trial is still its own job directory and MLflow run. The
tasks need no MLflow and no Hydra: they get resolved configs, write job directories on shared
storage, announce them and leave their records; the launching process files the runs
(its run writer) and prints the lines.

- ``trials_per_task`` (null: chosen here) spreads the trials over the CPUs SLURM offers, with at
  most about a minute of trials per task, from the first trial's measured step time.
- ``scancel`` (SIGTERM) ends the task's running trial KILLED with its checkpoint; the trials after
  it never start, so the sweep ends incomplete (parent KILLED) and the same command runs them.
- Ctrl-C or SIGTERM to the launching process cancels the sweep's tasks the same way: no trial
  trains on with nobody to file its run.
- A time limit (``timeout_min``) requeues the task (``max_num_timeout``): its finished trials are
  not run again, its interrupted one resumes from its checkpoint.
"""

from __future__ import annotations

import json
import math
import subprocess
import time
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from nnlab.sweep.launch import Launch, OnRecord, trial_seconds
from nnlab.sweep.pool import Task
from nnlab.tracking.schema import RUN_FILE, RUN_OUTCOMES

TASK_SECONDS = 60.0  # about this much training per task at most
GRACE_S = 60.0  # seconds cancelled tasks get to end their trials and leave their records
INIT_KEYS = ("max_num_timeout",)  # submitit's executor takes these when it is made
BASE_KEYS = ("timeout_min", "cpus_per_task", "gpus_per_node", "tasks_per_node", "mem_gb",
             "nodes", "name", "stderr_to_stdout")  # fmt: skip


def cluster_cpus() -> int | None:
    """The CPUs of the SLURM cluster's nodes (``sinfo``), None if unknown."""
    try:
        out = subprocess.run(
            ["sinfo", "-h", "-o", "%C"], capture_output=True, text=True, timeout=15
        ).stdout
        return sum(int(line.split("/")[3]) for line in out.split())  # alloc/idle/other/total
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
        return None


def trials_per_task(n: int, per_trial: float | None, slots: int) -> int:
    """Trials per task: spread ``n`` trials over ``slots`` tasks running at once, at most about
    :data:`TASK_SECONDS` of training per task (``per_trial`` seconds each, if known)."""
    spread = max(1, math.ceil(n / max(slots, 1)))
    if per_trial is None or per_trial <= 0:
        return spread
    return max(1, min(spread, math.ceil(TASK_SECONDS / per_trial)))


class ChunkRunner:
    """What an array task runs: its trials in order (picklable; submitit requeues it after a
    time limit through :meth:`checkpoint`, and finished trials are then skipped)."""

    def __init__(self, ctx_fields: dict, tasks: list[Task]):
        self.ctx_fields, self.tasks = ctx_fields, tasks

    def __call__(self) -> list[dict]:
        from threadpoolctl import threadpool_limits

        from nnlab.sweep.context import SweepContext
        from nnlab.tracking.job import JobPlace
        from nnlab.tracking.trial import run_spec
        from nnlab.tracking.writer import announce, save_record

        threadpool_limits(limits=1, user_api="blas")
        ctx = SweepContext(**self.ctx_fields)
        records = []
        for task in self.tasks:
            if _finished(Path(task.out)):
                continue  # a requeued task: done before the time limit
            place = JobPlace(Path(ctx.launch_dir), Path(task.out), task.overrides, task.job, ctx)
            record = run_spec(
                task.plain,
                place,
                lambda job, path: announce(ctx.results_dir, job, path),
                task.prior_finished,
            )
            save_record(ctx.results_dir, record)
            print(f"nnlab: job {task.job} {record['outcome']}", flush=True)
            records.append(record)
            if record["outcome"] == "killed":
                break  # scancel: the rest resume when the same command runs again
        return records

    def checkpoint(self) -> Any:
        import submitit

        return submitit.helpers.DelayedSubmission(self)


def _finished(job_dir: Path) -> bool:
    try:
        return json.loads((job_dir / RUN_FILE).read_text()).get("outcome") in (
            o for o in RUN_OUTCOMES if o != "killed"
        )
    except (OSError, ValueError):
        return False


class Slurm(Launch):
    """nnlab's SLURM launch (see the module docstring)."""

    parallel = remote = True

    def __init__(self, session: Any, launcher_cfg: Any):
        super().__init__(session)
        from omegaconf import OmegaConf

        self.params = OmegaConf.to_container(launcher_cfg, resolve=True)
        self.params.pop("_target_", None)
        self.jobs: list[Any] = []

    def prepare(self, plain: dict) -> list[str]:
        """Refuse a machine where SLURM does not answer (exit 2); name what the nodes share."""
        from nnlab.config import ConfigError
        from nnlab.sweep.session import fail_config
        from nnlab.tracking import launchers

        try:
            launchers.check_slurm()
        except ConfigError as exc:
            fail_config(str(exc))
        launchers.quiet_submitit()
        cpus = cluster_cpus() or 1
        self.workers = max(1, min(int(self.params["array_parallelism"]), cpus))
        lines = [f"  shared with the nodes: sweep dir {self.session.sweep_dir}"]
        ck = plain["trainer"]["checkpoint"]
        if ck["enabled"]:
            checkpoints = (self.session.base / ck["dir"]).resolve()
            lines.append(f"  shared with the nodes: checkpoints {checkpoints}")
        self.lines = lines
        return lines

    def notes(self) -> list[str]:
        return getattr(self, "lines", [])

    def executor(self) -> Any:
        import submitit

        params = dict(self.params)
        params.pop("trials_per_task", None)
        folder = params.pop("submitit_folder")
        init = {f"slurm_{k}": params.pop(k) for k in INIT_KEYS if k in params}
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm", **init)
        executor.update_parameters(
            **{k if k in BASE_KEYS else f"slurm_{k}": v for k, v in params.items() if v is not None}
        )
        return executor

    def run(self, tasks: Iterable[Task], on_record: OnRecord) -> None:
        """Submit the trials as one job array of chunks; print the records as they come."""
        from nnlab.tracking import launchers
        from nnlab.tracking.writer import take_records

        todo = list(tasks)
        if not todo:
            return
        size = self.params.get("trials_per_task") or trials_per_task(
            len(todo), trial_seconds(todo[0].plain), self.workers
        )
        chunks = [todo[i : i + size] for i in range(0, len(todo), size)]
        fields = asdict(self.session.ctx)
        runners = [ChunkRunner(fields, chunk) for chunk in chunks]
        print(
            f"  SLURM: {len(todo)} trials in {len(chunks)} array tasks of up to {size}",
            flush=True,
        )
        executor = self.executor()
        with executor.batch():
            self.jobs = [executor.submit(runner) for runner in runners]
        lost = launchers.LostJobs(self.session.sweep_dir)
        results_dir = self.session.ctx.results_dir
        while not all(job.done() for job in self.jobs):
            for record in take_records(results_dir):
                on_record(record)
            lost.poll()
            time.sleep(0.5)
        for record in take_records(results_dir):
            on_record(record)

    def stop(self, interrupted: bool) -> list[dict]:
        """Ctrl-C or SIGTERM in the launching process (a time limit on the login node): the
        sweep's tasks are cancelled (their running trials end KILLED, checkpoints kept), so no
        trial trains on with nobody to file it; the same command resumes the rest."""
        if not interrupted or not self.jobs:
            return []
        from nnlab.tracking import launchers
        from nnlab.tracking.writer import take_records

        ids = launchers.slurm_job_ids(self.session.sweep_dir)
        if ids:
            subprocess.run(["scancel", *ids], capture_output=True, timeout=60)
            print(
                f"nnlab: cancelled the sweep's SLURM tasks (scancel {' '.join(ids)}); their "
                "running trials end KILLED with their checkpoints",
                flush=True,
            )
        deadline = time.monotonic() + GRACE_S
        while time.monotonic() < deadline and queued(ids):
            time.sleep(0.5)
        return take_records(self.session.ctx.results_dir)


def queued(ids: list[str]) -> bool:
    """Whether a task of the SLURM jobs ``ids`` is still queued or running."""
    if not ids:
        return False
    try:
        out = subprocess.run(
            ["squeue", "-h", "-r", "-o", "%i", "-j", ",".join(ids)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and bool(out.stdout.split())
