"""What the test modules share: the real CLI in a subprocess, tiny configs, a real MLflow store.

Fixtures (the empty store template, launch directories, the module-wide tracking store) are in
``conftest.py``; this module holds plain functions, imported as ``from helpers import ...``.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
# a trial in milliseconds: 160 training + 40 validation samples, one hidden layer of 8 units
TINY = ("data.n_samples=200", "model.hidden=[8]")
QUIET = "trainer.verbose=0"
TIMEOUT = 600  # seconds a CLI process may take before the test fails (a busy 2-core machine)


# --- the real CLI -------------------------------------------------------------------------------


def env(**extra: str) -> dict[str, str]:
    """This process's environment without the user's MLflow / Hydra / nnlab settings, plus
    ``extra``: a developer's ``MLFLOW_TRACKING_URI`` or ``HYDRA_FULL_ERROR`` must not leak in."""
    keep = {
        k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "HYDRA_", "NNLAB_"))
    }
    return keep | extra


def cli(
    cwd: Path,
    *args: str,
    module: str = "nnlab.run",
    timeout: float = TIMEOUT,
    environ: dict[str, str] | None = None,
    **kwargs: Any,
) -> subprocess.CompletedProcess:
    """``python -m <module> *args`` in ``cwd``, run to the end (text output captured)."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environ if environ is not None else env(),
        **kwargs,
    )


def timed_cli(cwd: Path, *args: str, **kwargs: Any) -> tuple[subprocess.CompletedProcess, float]:
    """:func:`cli` and the seconds it took (for "refused at once" checks)."""
    t0 = time.perf_counter()
    proc = cli(cwd, *args, **kwargs)
    return proc, time.perf_counter() - t0


def start(
    cwd: Path, *args: str, module: str = "nnlab.run", environ: dict[str, str] | None = None
) -> subprocess.Popen:
    """``python -m <module> *args`` in ``cwd``, started in the background (pipes for output)."""
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environ if environ is not None else env(),
    )


@contextlib.contextmanager
def running(cwd: Path, *args: str, **kwargs: Any) -> Iterator[subprocess.Popen]:
    """:func:`start`, and on the way out (also when the test fails) kill it if it still runs."""
    proc = start(cwd, *args, **kwargs)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def wait_until(
    done: Callable[[], Any],
    proc: subprocess.Popen,
    what: str,
    timeout: float = 120,
    interval: float = 0.05,
) -> Any:
    """Poll ``done()`` every ``interval`` seconds until it is truthy and return its value; fail
    when ``proc`` ends first (with its output) or after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := done()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(interval)
    return value


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (for a test's own server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_mlflow_server(
    cwd: Path, port: int, *args: str, log: Path | None = None, timeout: float = 180
) -> subprocess.Popen:
    """``mlflow server`` (one worker, no job execution) on 127.0.0.1:``port`` in ``cwd``, its
    store ``sqlite:///mlflow.db`` unless ``args`` name another; returns once /health answers.

    The server runs in its own process group (it forks a uvicorn worker):
    :func:`stop_mlflow_server` stops both. ``log`` receives its output (else discarded).
    """
    import urllib.request

    store = () if "--backend-store-uri" in args else ("--backend-store-uri", "sqlite:///mlflow.db")
    out = log.open("w") if log is not None else subprocess.DEVNULL
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", *store, *args],
        cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
        env=env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"), start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + timeout
    try:
        while True:
            assert proc.poll() is None, log.read_text() if log else "mlflow server exited"
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5).read()
                return proc
            except OSError:
                assert time.monotonic() < deadline, f"mlflow server did not start in {timeout}s"
                time.sleep(0.3)
    except BaseException:
        stop_mlflow_server(proc)
        raise
    finally:
        if log is not None:
            out.close()  # the child keeps its own descriptor


def stop_mlflow_server(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group (SIGKILL after 30 s) and wait for it."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextlib.contextmanager
def mlflow_server(
    cwd: Path, *args: str, log: Path | None = None, timeout: float = 180
) -> Iterator[str]:
    """:func:`start_mlflow_server` on a free port for the ``with`` block; yields its URL."""
    port = free_port()
    proc = start_mlflow_server(cwd, port, *args, log=log, timeout=timeout)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_mlflow_server(proc)


def trial_lines(stdout: str) -> list[str]:
    """The sweep's per-trial lines (``[3/8] completed  lr=...``)."""
    return [line for line in stdout.splitlines() if line.startswith("[")]


# --- configs ------------------------------------------------------------------------------------


def compose(*overrides: str, config: str = "config"):
    """``conf/<config>.yaml`` composed with ``overrides`` (Hydra's compose API, no job)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose(config, overrides=list(overrides))


def with_values(plain: dict, values: dict[str, Any]) -> dict:
    """A deep copy of the plain config ``plain`` with dotted ``values`` set
    (``{"trainer.early_stopping.patience": 3}``); no Hydra composition, so it is cheap."""
    import copy

    plain = copy.deepcopy(plain)
    for dotted, value in values.items():
        *path, last = dotted.split(".")
        node = plain
        for part in path:
            node = node[part]
        node[last] = value
    return plain


def epoch_logs(n: int) -> list[dict[str, float]]:
    """``n`` epochs of made-up logs, as ``nnlab.train`` hands them to a sink (epoch e: loss 1/e)."""
    return [
        {"loss": 1.0 / e, "accuracy": 0.5 + e / 100, "val_loss": 1.1 / e, "epoch_time": 0.01}
        for e in range(1, n + 1)
    ]


# --- reading a real MLflow store ----------------------------------------------------------------


def store_uri(where: Path | str) -> str:
    """A launch directory's ``mlflow.db``, a ``.db`` file, or a URI as it is."""
    if isinstance(where, Path):
        return f"sqlite:///{where if where.suffix == '.db' else where / 'mlflow.db'}"
    return where


def client(where: Path | str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(store_uri(where))


def runs(where: Path | str, experiment: str, role: str | None = None) -> list:
    """Every run of ``experiment`` in the store, optionally only one ``nnlab.role``."""
    c = client(where)
    exp = c.get_experiment_by_name(experiment)
    query = f"tags.`nnlab.role` = '{role}'" if role else ""
    return list(c.search_runs([exp.experiment_id], query, max_results=1000))


def steps(where: Path | str, run_id: str, metric: str) -> list[int]:
    """The steps of ``metric`` logged in the run, sorted (a step logged twice shows twice)."""
    return sorted(m.step for m in client(where).get_metric_history(run_id, metric))


def rerun_resumes_parent(
    cwd: Path, args: tuple[str, ...] | list[str], experiment: str, parent: Any
) -> subprocess.CompletedProcess:
    """Run an interrupted sweep's command again: it must succeed, say it resumed, and end the
    same parent run FINISHED. Returns the second run's process."""
    again = cli(cwd, *args)
    assert again.returncode == 0, again.stderr
    assert "(resumed: same sweep as an interrupted one)" in again.stdout
    (parent_after,) = runs(cwd, experiment, "sweep")
    assert parent_after.info.run_id == parent.info.run_id
    assert parent_after.info.status == "FINISHED"
    return again


def download(where: Path | str, run_id: str, path: str, dst: Path) -> Path:
    return Path(client(where).download_artifacts(run_id, path, str(dst)))


# --- job directories and checkpoints ------------------------------------------------------------


def history_rows(path: Path, timing: bool = True) -> list[dict]:
    """A ``history.csv`` as dicts of strings; ``timing=False`` drops ``epoch_time``."""
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    return rows if timing else [{k: v for k, v in r.items() if k != "epoch_time"} for r in rows]


def checkpoint_epoch(cwd: Path, experiment: str) -> int:
    """The most epochs any checkpoint of ``experiment`` in launch dir ``cwd`` holds (0: none)."""
    best = 0
    for path in (cwd / ".nnlab" / "checkpoints" / experiment).glob("*.npz"):
        try:
            with np.load(path, allow_pickle=False) as data:
                best = max(best, json.loads(str(data["meta"]))["epoch"])
        except (OSError, ValueError, KeyError):  # deleted or replaced between glob and load
            pass
    return best


def wait_for_epoch(
    cwd: Path, experiment: str, epoch: int, proc: subprocess.Popen, timeout: float = 120
) -> int:
    """Block until a checkpoint of ``experiment`` holds >= ``epoch`` epochs; return its epoch.

    Fails when ``proc`` ends first or after ``timeout`` seconds.
    """
    return wait_until(
        lambda: (n := checkpoint_epoch(cwd, experiment)) >= epoch and n,
        proc,
        f"a checkpoint of {experiment!r} at epoch {epoch}",
        timeout,
    )


def weights_equal(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    """Bit-identical lists of arrays."""
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


class SavedStates:
    """A ``CheckpointSchedule`` ``save`` callable that records (epoch, history copy) per save."""

    def __init__(self) -> None:
        self.saved: list[tuple[int, dict[str, list[float]]]] = []

    def __call__(self, state) -> None:
        self.saved.append((state.epoch, {k: list(v) for k, v in state.history.items()}))


def train_state(epoch: int, history: dict, batches: list, finished: bool = False):
    """A ``TrainState`` without model arrays (what the schedule and sinks look at)."""
    from nnlab.train import TrainState

    return TrainState(epoch, {}, history, batches, finished)


# --- job directories filed as the run writer files them -------------------------------------------


def write_job(
    job: Path,
    experiment: str,
    epochs: list[dict[str, float]],
    outcome: str = "running",
    tags: dict[str, str] | None = None,
    params: dict[str, Any] | None = None,
    uri: str | None = None,
    batches: list[tuple[int, float]] = (),
    run_id: str | None = None,
) -> Path:
    """A trial's job directory (``run.json``, ``artifacts/history.csv`` and, with ``batches``,
    ``batch_loss.csv``) as nnlab's own ``LocalHistory`` writes it; returns its ``run.json``."""
    from nnlab.jobdir import LocalHistory
    from nnlab.tracking.schema import RUN_FORMAT

    meta = {
        "format": RUN_FORMAT,
        "tracking_uri": uri,
        "experiment_name": experiment,
        "run_id": run_id,
        "run_name": job.name,
        "params": dict(params or {}),
        "tags": {"nnlab.role": "trial", "nnlab.config_hash": "0123456789abcdef", **(tags or {})},
        "outcome": "running",
        "tracked": None,
    }
    local = LocalHistory(job / "artifacts", job / "run.json", meta)
    local.batches = list(batches)
    for epoch, logs in enumerate(epochs, start=1):
        local.log_epoch(epoch, logs)
    local.write_meta(outcome=outcome)
    return job / "run.json"


def file_now(uri: str, experiment_id: str, run_file: Path, parent: str | None = None):
    """File ``run_file``'s job directory once, as the run writer's poll does (a trial still
    ``running`` stays RUNNING with what it has so far); returns the writer's Upload."""
    from nnlab.sweep.context import SweepContext
    from nnlab.tracking.writer import RunWriter, Upload

    ctx = SweepContext.from_dict(
        {"uri": uri, "experiment_id": experiment_id, "parent_run_id": parent, "sweep_id": "s"}
    )
    writer = RunWriter(ctx)
    writer.connect()
    up = Upload(0, run_file)
    writer.sync(up)
    return up


def logged_trials(
    cwd: Path,
    experiment: str,
    status: str | None = None,
    steps_at_least: int = 0,
    store: str = "mlflow.db",
):
    """The trial runs of ``experiment`` MLflow holds now (with ``status``, and at least
    ``steps_at_least`` loss steps), read with sqlite3 from ``cwd/store`` (a server's file too)
    so a test can poll while a sweep writes; (run id, status, loss steps) each."""
    import sqlite3

    db = cwd / store
    if not db.is_file():
        return []
    query = """
        SELECT r.run_uuid, r.status, COUNT(m.step) FROM runs r
        JOIN experiments e ON e.experiment_id = r.experiment_id AND e.name = ?
        JOIN tags t ON t.run_uuid = r.run_uuid AND t.key = 'nnlab.role' AND t.value = 'trial'
        LEFT JOIN metrics m ON m.run_uuid = r.run_uuid AND m.key = 'loss'
        GROUP BY r.run_uuid"""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            rows = con.execute(query, (experiment,)).fetchall()
    except sqlite3.Error:  # the store is being created, or broken on purpose
        return []
    return [r for r in rows if (status is None or r[1] == status) and r[2] >= steps_at_least]


def wait_for_logged(
    cwd: Path,
    experiment: str,
    proc: subprocess.Popen,
    status: str = "RUNNING",
    steps_at_least: int = 1,
    timeout: float = 180,
    store: str = "mlflow.db",
) -> list:
    """Block until the run writer has filed a trial of ``experiment`` with ``status`` and at
    least ``steps_at_least`` loss steps (the store is live for it); return those runs."""
    return wait_until(
        lambda: logged_trials(cwd, experiment, status, steps_at_least, store),
        proc,
        f"a {status} trial of {experiment!r} with {steps_at_least} steps in MLflow",
        timeout,
        0.1,
    )
