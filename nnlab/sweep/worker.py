"""The body of a worker process of :class:`nnlab.sweep.pool.WorkerPool`.

It sets itself up once (one BLAS thread, signals, a watch on its launching process), says
``ready``, then runs the chunks of trials it is sent, reporting each trial's ``begin``,
``start`` (its job dir's ``run.json``) and ``done`` (its record). After an interrupted trial it
reports it and exits.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path

PR_SET_PDEATHSIG = 1  # prctl: a signal for this process when its parent thread exits


def watch_parent(parent_pid: int) -> None:
    """SIGTERM to this process once ``parent_pid`` (the launching process) is gone: from the
    kernel on Linux, and from a thread that checks every second (other systems, and a parent
    whose starting thread ended first)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass

    def check() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    if os.getppid() != parent_pid:  # gone before we got here
        os.kill(os.getpid(), signal.SIGTERM)
    threading.Thread(target=check, name="nnlab-parent-watch", daemon=True).start()


def worker_main(conn: Connection, ctx_fields: dict, parent_pid: int) -> None:
    """Run chunks of trials until told to stop, interrupted, or the launcher is gone."""
    from nnlab.train import request_interrupt

    signal.signal(signal.SIGINT, request_interrupt)
    signal.signal(signal.SIGTERM, request_interrupt)
    try:
        watch_parent(parent_pid)
        from threadpoolctl import threadpool_limits

        from nnlab.sweep.context import SweepContext
        from nnlab.tracking.job import JobPlace
        from nnlab.tracking.trial import run_spec

        threadpool_limits(limits=1, user_api="blas")  # the trials share the cores
        ctx = SweepContext(**ctx_fields)
        base = Path(ctx.launch_dir)
        conn.send(("ready",))
        while True:
            message = conn.recv()
            if message[0] != "run":
                return
            for task in message[1]:
                conn.send(("begin", task.job))
                place = JobPlace(base, Path(task.out), task.overrides, task.job, ctx)
                record = run_spec(
                    task.plain,
                    place,
                    lambda job, path: conn.send(("start", job, str(path))),
                    task.prior_finished,
                )
                conn.send(("done", task.job, record))
                if record["outcome"] == "killed":
                    return  # interrupted: report it and leave
            conn.send(("ready",))
    except (KeyboardInterrupt, EOFError, BrokenPipeError):
        return  # interrupted between trials, or the launcher is gone
    finally:
        sys.stdout.flush()
