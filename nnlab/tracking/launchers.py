"""What a sweep's tracking needs to know about the Hydra launcher its trials run on.

Hydra's basic launcher runs trials in the launching process and joblib in worker processes of
the same machine: they share its terminal and directories. Hydra's submitit launchers
(``hydra/launcher=slurm``, ``submitit_slurm``, ``submitit_local``) run each trial as a job of
its own, elsewhere, and that changes four things, all handled here:

- a job's stdout goes to its log file, so the launching process prints each finished trial's
  line itself (:class:`TrialLines`, from the records the trials leave in the sweep directory);
- a job composes its config anew from the launch's overrides, perhaps on a node whose working
  directory is not the launch directory, so the sweep directory is pinned as an absolute path
  (:func:`pin_sweep_dir`; checkpoints resolve against the launch directory, see
  ``SweepContext.launch_dir``);
- submitit takes SIGTERM for itself in the job (it logs and ignores it, for preemption), so
  ``scancel`` and a time limit would let the trial run on until SLURM's SIGKILL and leave its run
  RUNNING: :func:`sigterm_interrupts` gives SIGTERM back to nnlab for the length of the trial;
- without SLURM accounting every ``sacct`` poll fails, printing sacct's error and submitit's
  "Bypassing sacct error" warning on the user's terminal: :func:`quiet_submitit`; and a job
  that ends without a result file (cancelled before it started, killed hard) cannot be told
  from a pending one, so the launcher would wait for it silently: :class:`LostJobs` names it.

Before any of it, :func:`check_slurm` refuses (one line, exit 2, nothing tracked) a machine where
SLURM does not answer.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from nnlab.config import ConfigError

SLURM_PROBE_TIMEOUT = 15.0  # seconds for `sinfo` to answer before a SLURM sweep is refused


def target(launcher_cfg: Any) -> str:
    """The launcher's ``_target_`` (class path), '' if none."""
    return str(launcher_cfg.get("_target_", "") or "")


def is_remote(launcher_cfg: Any) -> bool:
    """Trials run as submitit jobs (SLURM or local), each a process of its own with a log file."""
    return "hydra_submitit_launcher" in target(launcher_cfg)


def is_slurm(launcher_cfg: Any) -> bool:
    return is_remote(launcher_cfg) and target(launcher_cfg).endswith("SlurmLauncher")


def is_parallel(launcher_cfg: Any) -> bool:
    """Trials share cores (joblib with n_jobs != 1, or submitit jobs): one BLAS thread each."""
    joblib = "joblib" in target(launcher_cfg) and launcher_cfg.get("n_jobs", 1) != 1
    return joblib or is_remote(launcher_cfg)


def check_slurm(timeout: float = SLURM_PROBE_TIMEOUT) -> None:
    """Refuse, before anything is tracked or submitted, a machine where SLURM does not answer.

    ``sbatch`` must be on PATH, ``SLURM_CONF`` (if set) a file, and ``sinfo`` must reach the
    controller within ``timeout`` seconds (it retries a missing config for a minute and an
    unreachable controller for ~10 s). ConfigError naming the problem and the fix.
    """
    fix = (
        "launch from a machine that submits SLURM jobs, or start the local test cluster: "
        'scripts/local-slurm.sh start; eval "$(scripts/local-slurm.sh env)" (docs/cluster.md)'
    )
    if shutil.which("sbatch") is None:
        raise ConfigError(f"hydra/launcher=slurm: sbatch is not on PATH; {fix}")
    conf = os.environ.get("SLURM_CONF")
    if conf and not Path(conf).is_file():
        raise ConfigError(f"hydra/launcher=slurm: SLURM_CONF={conf} is not a file; {fix}")
    try:
        proc = subprocess.run(
            ["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        raise ConfigError(
            f"hydra/launcher=slurm: sinfo got no answer from SLURM in {timeout:.0f} s; {fix}"
        ) from None
    except OSError as exc:
        raise ConfigError(f"hydra/launcher=slurm: cannot run sinfo ({exc}); {fix}") from None
    if proc.returncode != 0:
        said = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
        why = said[-1] if said else f"exit code {proc.returncode}"
        raise ConfigError(f"hydra/launcher=slurm: SLURM does not answer (sinfo: {why}); {fix}")


def pin_sweep_dir(config: Any, sweep_dir: Path) -> None:
    """Make ``hydra.sweep.dir`` the absolute ``sweep_dir`` for the launcher and for every job.

    Each job composes its config again from ``hydra.overrides.hydra`` plus its own overrides
    (Hydra's ``load_sweep_config``), so the absolute path is appended there as an override too;
    the launcher (instantiated after this, in the launching process) reads ``hydra.sweep.dir``
    itself, and so does submitit's folder (``${hydra.sweep.dir}/.submitit/%j``).
    """
    from omegaconf import open_dict, read_write

    quoted = "'" + str(sweep_dir).replace("\\", "\\\\").replace("'", "\\'") + "'"
    with read_write(config), open_dict(config):
        config.hydra.sweep.dir = str(sweep_dir)
        config.hydra.overrides.hydra.append(f"hydra.sweep.dir={quoted}")


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt (nnlab's Ctrl-C path: the run ends
    KILLED and its checkpoint is kept); the job's previous handler is back afterwards.

    For a trial in a submitit job: on ``scancel`` or a time limit SLURM sends SIGTERM, then
    SIGKILL ``KillWait`` seconds later (30 s by default); submitit's own handler would only log
    the SIGTERM. Outside the block SIGTERM stays ignored, so the job still writes its result
    file, which is how the launching process learns the trial has ended.
    """
    from nnlab.train import request_interrupt

    previous = signal.signal(signal.SIGTERM, request_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class _SacctNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Bypassing sacct error" not in record.getMessage()


def quiet_submitit() -> None:
    """Launching process, SLURM: no sacct noise on every status poll.

    On a cluster without accounting ``sacct`` fails on each of submitit's polls; submitit logs
    "Bypassing sacct error" (three times: its stdout and stderr handlers, and Hydra's root
    handler) and goes by the jobs' result files, which is all it needs. This drops that warning
    and discards sacct's own stderr ("Slurm accounting storage is disabled"); what submitit
    decides does not change. Nothing changes inside the jobs.
    """
    from submitit.slurm.slurm import SlurmJob  # configures submitit's logger on first import

    logger = logging.getLogger("submitit")
    if not any(isinstance(f, _SacctNoise) for f in logger.filters):
        logger.addFilter(_SacctNoise())
    watcher = SlurmJob.watcher  # one per process, shared by every SLURM job
    if getattr(watcher, "_nnlab_quiet", False):
        return
    make: Callable[[], list[str] | None] = watcher._make_command

    def command() -> list[str] | None:
        argv = make()
        return None if argv is None else ["sh", "-c", 'exec "$@" 2>/dev/null', "sh", *argv]

    watcher._make_command = command
    watcher._nnlab_quiet = True


def slurm_job_ids(sweep_dir: Path) -> list[str]:
    """The SLURM job (array) ids submitit used for this sweep, from its folder names."""
    folder = sweep_dir / ".submitit"
    if not folder.is_dir():
        return []
    ids = {p.name.split("_")[0] for p in folder.iterdir() if p.name.split("_")[0].isdigit()}
    return sorted(ids, key=int)


class TrialLines:
    """Print each finished trial's line in the launching process (submitit: jobs log elsewhere).

    A thread (daemon: it never holds the process up) reads the records the trials write (``<results_dir>/job#####.json``, atomically)
    every ``interval`` seconds and prints the ones it has not printed, in the order they end,
    as a joblib sweep's workers print them. :meth:`stop` prints the rest.
    """

    def __init__(
        self,
        results_dir: str,
        line: Callable[[dict], str],
        interval: float = 0.5,
        also: Callable[[], None] | None = None,
    ):
        self.results_dir, self.line, self.interval = Path(results_dir), line, interval
        self.also = also  # called on every poll too (LostJobs.poll)
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="nnlab-trial-lines", daemon=True)

    def start(self) -> TrialLines:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()
            if self.also is not None:
                self.also()

    def poll(self) -> None:
        with self._lock:
            for path in sorted(self.results_dir.glob("job*.json")):
                if path.name in self.seen:
                    continue
                try:
                    record = json.loads(path.read_text())
                except (OSError, ValueError):  # not there yet after all: next time
                    continue
                self.seen.add(path.name)
                print(self.line(record), flush=True)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self.poll()


class LostJobs:
    """SLURM: name the sweep's jobs that left the queue without a result file.

    submitit learns that a job ended from its result file, or else from ``sacct``. Without
    accounting, a job cancelled before it started or killed hard (SIGKILL, out of memory, a lost
    node) has neither, and the launcher waits for it forever. :meth:`poll` lists the user's
    queued jobs (one ``squeue`` call every ``interval`` seconds); a task of this sweep missing
    from two lists in a row without a result file is reported once, on stderr, with the way out.
    """

    def __init__(self, sweep_dir: Path, interval: float = 15.0):
        self.folder, self.interval = sweep_dir / ".submitit", interval
        self.next_poll = 0.0
        self.missing: set[str] = set()
        self.reported: set[str] = set()

    def tasks(self) -> list[Path]:
        """submitit's folder of each task of the sweep's job arrays (``<job id>_<task>``)."""
        if not self.folder.is_dir():
            return []
        return [p for p in self.folder.iterdir() if re.fullmatch(r"\d+_\d+", p.name)]

    def poll(self) -> None:
        if time.monotonic() < self.next_poll:
            return
        self.next_poll = time.monotonic() + self.interval
        tasks = self.tasks()
        if not tasks:
            return
        try:
            out = subprocess.run(
                ["squeue", "--me", "-h", "-r", "-o", "%i"],
                capture_output=True,
                text=True,
                timeout=30,
            )
        except (OSError, subprocess.TimeoutExpired):
            return
        if out.returncode != 0:
            return
        queued = set(out.stdout.split())
        for task in tasks:
            name = task.name
            if name in queued or name in self.reported or any(task.glob("*_result.pkl")):
                self.missing.discard(name)
            elif name not in self.missing:
                self.missing.add(name)  # seen gone once: maybe it is writing its result now
            else:
                self.reported.add(name)
                print(
                    f"nnlab: SLURM job {name} left the queue without a result (cancelled before "
                    "it started, or killed hard); if this cluster has no SLURM accounting the "
                    "launcher cannot tell and waits for it: Ctrl-C, then run the same command "
                    "to resume the sweep",
                    file=sys.stderr,
                    flush=True,
                )
