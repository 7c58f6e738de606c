"""Long-lived worker processes fed chunks of trials: ``hydra/launcher=parallel``.

Hydra's joblib launcher composes each job's config in the launching process, pickles it to a
worker, and the worker sets up a Hydra job around the trial: per trial a process round trip
and ~200 ms of Hydra. Here the launching process composes every trial once
(:mod:`nnlab.sweep.compose`), and ``n_jobs`` workers, started once per sweep, receive chunks of
ready trials (their resolved configs) through a pipe and run them one after another, reporting
each: ``begin`` (a trial starts), ``start`` (its job dir exists: the run writer may upload it),
``done`` (its record). A chunk shrinks towards the end of the sweep, so the workers finish
together.

Failures are the pool's to handle, since nothing else sees them:

- a worker that dies (``kill -9``, out of memory) ends its running trial ``failed``, naming the
  signal, and its run is filed as such (``RunWriter.abandon``); the rest of its chunk goes to a
  new worker;
- a worker outlives no launcher: it exits when its launching process is gone (it checks its
  parent every second; on Linux the kernel also sends it SIGTERM), after ending its trial
  ``killed`` with its checkpoint saved;
- Ctrl-C reaches every process of the terminal's group; SIGTERM to the launcher is passed on.
  Each worker ends its trial ``killed`` and reports it before it exits.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import math
import multiprocessing as mp
import os
import signal
import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path

from nnlab.sweep.context import SweepContext

MAX_CHUNK = 16  # trials per message at most (a chunk is also what a stack may train at once)
GRACE_S = 60.0  # seconds the workers get to end their trials after an interruption


@dataclass
class Task:
    """One trial to run: its job number, overrides, resolved config and job directory."""

    job: int
    overrides: list[str]
    plain: dict
    out: str
    prior_finished: bool = False


def died_record(task: Task, ctx: SweepContext, why: str) -> dict:
    """The record of a trial whose process died under it (outcome ``failed``)."""
    from nnlab.tracking.job import TrialRecord, run_name
    from nnlab.tracking.schema import config_hash

    record = TrialRecord(
        job=task.job,
        name=run_name(task.overrides, ctx.varying, task.plain),
        config_hash=config_hash(task.plain),
        error=why,
        job_dir=task.out,
    )
    return asdict(record)


def exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


class _Worker:
    def __init__(self, process: mp.process.BaseProcess, conn: Connection):
        self.process, self.conn = process, conn
        self.chunk: collections.deque[Task] = collections.deque()  # sent, not yet done
        self.current: int | None = None  # the job it is running
        self.ready = False


class WorkerPool:
    """``n`` worker processes for the trials of sweep ``ctx`` (see the module docstring).

    ``on_start(job, run_file)`` and ``on_abandon(job, why)`` are called from the pool's thread.
    """

    def __init__(
        self,
        n: int,
        ctx: SweepContext,
        on_start: Callable[[int, Path], None] | None = None,
        on_abandon: Callable[[int, str], None] | None = None,
    ):
        self.n, self.ctx, self.on_start, self.on_abandon = n, ctx, on_start, on_abandon
        self.mp = mp.get_context("spawn")
        self.workers: list[_Worker] = []
        self.queue: collections.deque[Task] = collections.deque()
        self.futures: dict[int, cf.Future] = {}
        self.tasks: dict[int, Task] = {}
        self.lock = threading.Lock()
        self.closing = self.interrupted = False
        self.deaths = 0  # workers died since a trial last finished
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._loop, name="nnlab-pool", daemon=True)

    # --- the launching process's side ----------------------------------------------------------

    def start(self) -> WorkerPool:
        for _ in range(self.n):
            self._spawn()
        self._thread.start()
        return self

    def submit(self, task: Task) -> cf.Future:
        """Queue a trial; the future's result is its record."""
        future: cf.Future = cf.Future()
        with self.lock:
            self.futures[task.job] = future
            self.tasks[task.job] = task
            self.queue.append(task)
        self._wake()
        return future

    def run(self, tasks: Iterable[Task], on_record: Callable[[dict], None]) -> None:
        """Run ``tasks`` (consumed as the workers need them); ``on_record`` gets each record
        in the order they end. KeyboardInterrupt propagates (see :meth:`interrupt`)."""
        outstanding: dict[cf.Future, int] = {}
        pending = iter(tasks)
        limit, exhausted = 2 * self.n * MAX_CHUNK, False
        while True:
            while not exhausted and len(outstanding) < limit:
                task = next(pending, None)
                if task is None:
                    exhausted = True
                else:
                    outstanding[self.submit(task)] = task.job
            if not outstanding:
                return
            finished, _ = cf.wait(outstanding, timeout=0.5, return_when=cf.FIRST_COMPLETED)
            for future in finished:
                outstanding.pop(future)
                on_record(future.result())

    def interrupt(self, signum: int = signal.SIGINT) -> None:
        """Stop handing out trials; pass ``signum`` to the workers (a terminal's Ctrl-C has
        reached them already: a second one is harmless, they are ending their trials)."""
        self.interrupted = True
        with self.lock:
            self.queue.clear()
        for w in self.workers:
            if w.process.is_alive():
                try:
                    os.kill(w.process.pid, signum)
                except OSError:
                    pass
        self._wake()

    def drain(self, timeout: float = GRACE_S) -> list[dict]:
        """After :meth:`interrupt`: the records the workers report while they end their
        trials (those still running after ``timeout`` are left to the writer: KILLED)."""
        done: list[dict] = []
        futures = [f for f in self.futures.values()]
        finished, _ = cf.wait(futures, timeout=timeout)
        for f in finished:
            done.append(f.result())
        return done

    def close(self) -> None:
        """Stop the workers (they finish nothing more) and the pool's thread."""
        self.closing = True
        for w in self.workers:
            try:
                w.conn.send(("stop",))
            except OSError:
                pass
        for w in self.workers:
            w.process.join(timeout=5)
            if w.process.is_alive():
                w.process.terminate()
                w.process.join(timeout=5)
        self._wake()
        self._thread.join(timeout=5)
        os.close(self._wake_r)
        os.close(self._wake_w)

    # --- the pool's thread ----------------------------------------------------------------

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def _spawn(self) -> None:
        from nnlab.sweep.worker import worker_main

        ours, theirs = self.mp.Pipe(duplex=True)
        process = self.mp.Process(
            target=worker_main,
            args=(theirs, asdict(self.ctx), os.getpid()),
            name=f"nnlab-worker-{len(self.workers)}",
            daemon=False,
        )
        process.start()
        theirs.close()
        self.workers.append(_Worker(process, ours))

    def _loop(self) -> None:
        while not self.closing:
            conns = {w.conn: w for w in self.workers}
            sentinels = {w.process.sentinel: w for w in self.workers}
            for ready in wait([*conns, *sentinels, self._wake_r], timeout=1.0):
                if ready == self._wake_r:
                    os.read(self._wake_r, 4096)
                elif ready in conns:
                    self._receive(conns[ready])
                elif ready in sentinels and not sentinels[ready].process.is_alive():
                    self._died(sentinels[ready])
            self._assign()

    def _receive(self, w: _Worker) -> None:
        try:
            message = w.conn.recv()
        except (EOFError, OSError):
            w.process.join(timeout=5)
            self._died(w)
            return
        kind = message[0]
        if kind == "ready":
            w.ready = True
        elif kind == "begin":
            w.current = message[1]
        elif kind == "start" and self.on_start is not None:
            self.on_start(message[1], Path(message[2]))
        elif kind == "done":
            record = message[2]
            self.deaths = 0
            if w.chunk and w.chunk[0].job == record["job"]:
                w.chunk.popleft()
            w.current = None
            self._resolve(record)

    def _resolve(self, record: dict) -> None:
        with self.lock:
            future = self.futures.pop(record["job"], None)
            self.tasks.pop(record["job"], None)
        if future is not None and not future.done():
            future.set_result(record)

    def _died(self, w: _Worker) -> None:
        """A worker is gone: fail its running trial, give its other trials to a new one."""
        if w not in self.workers:
            return
        self.workers.remove(w)
        w.conn.close()
        why = f"its worker process died ({exit_reason(w.process.exitcode)})"
        if w.current is not None:
            task = self.tasks.get(w.current)
            if task is not None:
                if self.on_abandon is not None:
                    self.on_abandon(task.job, why)
                self._resolve(died_record(task, self.ctx, why))
            while w.chunk and w.chunk[0].job == w.current:
                w.chunk.popleft()
        self.deaths += 1
        rest = list(w.chunk)
        if self.closing or self.interrupted:
            for task in rest:  # never ran: a re-run runs them
                self._resolve({**died_record(task, self.ctx, why), "outcome": "killed"})
            return
        if self.deaths > 3 * self.n:  # workers die at once again and again: stop trying
            for task in [*rest, *self.queue]:
                self._resolve(died_record(task, self.ctx, f"{why}; workers keep dying"))
            self.queue.clear()
            return
        with self.lock:
            self.queue.extendleft(reversed(rest))
        self._spawn()

    def _assign(self) -> None:
        """Give each idle worker its next chunk: the queue shared out, at most MAX_CHUNK."""
        for w in self.workers:
            if not w.ready or w.chunk:
                continue
            with self.lock:
                if not self.queue:
                    return
                size = min(MAX_CHUNK, max(1, math.ceil(len(self.queue) / (2 * self.n))))
                chunk = [self.queue.popleft() for _ in range(min(size, len(self.queue)))]
            w.chunk.extend(chunk)
            w.ready = False
            try:
                w.conn.send(("run", chunk))
            except OSError:  # died meanwhile: its sentinel brings the chunk back
                pass
