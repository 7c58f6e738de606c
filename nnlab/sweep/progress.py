"""What a sweep tells its user while it runs and when it ends: one line per trial, the summary.

:class:`Progress` prints each finished trial's line in the launching process - whichever worker,
SLURM task or Hydra job ran it - with a counter that only increases, the time elapsed and an
estimate of the time left::

    [120/252] completed     lr=0.1 batch_size=16  loss=0.2 val_loss=0.3 0.11s  elapsed 31s  ETA 34s

and keeps what the summary needs in a size that does not grow with the number of trials
(counts, the best trial, the first few trials MLflow missed).

:class:`Filing` joins the two streams that finish a trial - its record (from whoever ran it) and
its run (from the run writer) - by job number, for a search, which tells the study each trial's
run id; it holds only the trials between the two.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

from nnlab.tracking.schema import OUTCOMES

USABLE = ("completed", "early_stopped", "skipped")  # outcomes that can be a sweep's best
SHOWN = 10  # trials named in the summary per kind of problem


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h07m``."""
    seconds = max(seconds, 0.0)
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def trial_line(record: dict) -> str:
    """``completed     lr=0.1 batch_size=16  loss=... val_loss=... 1.23s`` (no counter)."""
    if record["outcome"] == "skipped":
        detail = f"(FINISHED run {(record.get('run_id') or '?')[:8]}"
        detail += f", {record['source']})" if record.get("source") else ")"
    else:
        detail = (
            f"loss={fmt(record.get('loss'))} val_loss={fmt(record.get('val_loss'))} "
            f"{record.get('seconds') or 0.0:.2f}s"
        )
    if record.get("error"):
        detail += f"  {record['error']}"
    if record.get("tracking_error"):
        detail += f"  not in MLflow: {record['tracking_error']}"
    return f"{record['outcome']:<13} {record['name']}  {detail}"


def best_key(record: dict) -> tuple[int, float] | None:
    """Sort key of a record as the sweep's best trial: lowest val_loss, else loss (None: it
    cannot be the best: not usable, diverged before, or no finite value)."""
    if record["outcome"] not in USABLE:
        return None
    if (record.get("prior_outcome") or "completed") not in ("completed", "early_stopped"):
        return None
    for rank, metric in enumerate(("val_loss", "loss")):
        value = record.get(metric)
        if value is not None and math.isfinite(value):
            return rank, value
    return None


class Progress:
    """The trial lines and the running tally of a sweep of ``total`` trials (None: unknown)."""

    def __init__(self, total: int | None, show: bool = True):
        self.total, self.show = total, show
        self.done = 0  # records seen (the counter)
        self.trained = 0  # of which not skipped (the ETA's rate)
        self.counts = {o: 0 for o in OUTCOMES}
        self.best: dict | None = None
        self.problems: dict[str, list[str]] = {"failed": [], "untracked": []}
        self.untracked = 0
        self.skipped_from: dict[str, int] = {}  # "parent <id>" / "a single run" -> count
        self.started = time.perf_counter()
        self.first_trained: float | None = None
        self._lock = threading.Lock()

    def add(self, record: dict) -> None:
        """Count a finished trial's record and print its line."""
        with self._lock:
            self.done += 1
            outcome = record["outcome"]
            self.counts[outcome] = self.counts.get(outcome, 0) + 1
            if outcome == "skipped":
                source = record.get("source") or "an earlier run"
                self.skipped_from[source] = self.skipped_from.get(source, 0) + 1
            else:
                self.trained += 1
                if self.first_trained is None:
                    self.first_trained = time.perf_counter() - (record.get("seconds") or 0.0)
            if outcome == "failed" and len(self.problems["failed"]) < SHOWN:
                self.problems["failed"].append(f"{record['name']}: {record.get('error')}")
            key = best_key(record)
            if key is not None and (self.best is None or key < best_key(self.best)):
                self.best = dict(record)
            if self.show:
                print(f"{self.counter()} {trial_line(record)}{self.timing()}", flush=True)

    def filed(self, job: int, error: str | None, where: str = "") -> None:
        """The run writer filed trial ``job``'s run, or could not (``error``)."""
        if error is None:
            return
        with self._lock:
            self.untracked += 1
            if len(self.problems["untracked"]) < SHOWN:
                self.problems["untracked"].append(f"job {job}{where}: {error}")

    def counter(self) -> str:
        total = f"/{self.total}" if self.total else ""
        return f"[{self.done}{total}]"

    def timing(self) -> str:
        """``  elapsed 31s  ETA 34s`` (no ETA before a trial has trained, or when done)."""
        now = time.perf_counter()
        text = f"  elapsed {duration(now - self.started)}"
        if self.total and self.trained and self.first_trained is not None:
            left = self.total - self.done
            if left > 0:
                rate = (now - self.first_trained) / self.trained
                text += f"  ETA {duration(rate * left)}"
        return text

    def missing(self) -> int:
        """Trials of the sweep that never reported (a job died before writing its record)."""
        return (self.total or self.done) - self.done

    def summary(self, sweep_id: str, objective: str = "val_loss") -> list[str]:
        """The summary's lines: counts per outcome, where skipped runs came from, problems,
        the best trial."""
        elapsed = time.perf_counter() - self.started
        lines = [f"nnlab sweep {sweep_id}: {self.done} trials in {elapsed:.1f}s"]
        lines += [f"  {o:<14}{n:>4}" for o, n in self.counts.items() if n]
        if self.counts.get("skipped"):
            sources = ", ".join(f"{n} from {s}" for s, n in sorted(self.skipped_from.items()))
            lines.append(
                f"    skipped: a FINISHED run of the same config exists ({sources}); "
                "tracking.rerun=true runs them again"
            )
        for problem in self.problems["failed"]:
            lines.append(f"    failed {problem}")
        if self.missing():
            lines.append(f"  {'no result':<14}{self.missing():>4}  (a trial's process died first)")
        if self.untracked:
            lines.append(f"  {'not in MLflow':<14}{self.untracked:>4}")
            lines += [f"    {p}" for p in self.problems["untracked"]]
        if self.best is not None:
            metric = "val_loss" if self.best.get("val_loss") is not None else "loss"
            run = f"  run {self.best['run_id']}" if self.best.get("run_id") else ""
            lines.append(
                f"  best trial (lowest {metric}): {self.best['name']}  "
                f"{metric}={fmt(self.best[metric])}{run}"
            )
        return lines


class Filing:
    """Join each trial's record with its filed run (either may come first), by job number.

    Only trials between the two are held, so memory does not grow with the sweep.
    """

    def __init__(self) -> None:
        self._filed: dict[int, tuple[str | None, str | None]] = {}
        self._cond = threading.Condition()

    def done(self, job: int, run_id: str | None, error: str | None) -> None:
        with self._cond:
            self._filed[job] = (run_id, error)
            self._cond.notify_all()

    def take(self, job: int, timeout: float = 0.0) -> tuple[str | None, str | None] | None:
        """(run id, error) of ``job`` once filed (waiting up to ``timeout`` s), else None."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while job not in self._filed:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
            return self._filed.pop(job)

    def pending(self) -> dict[int, Any]:
        with self._cond:
            return dict(self._filed)
