"""Shared plumbing: pinned single-core worker subprocesses, machine facts, small statistics."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"

# One core, one thread for every system alike: trials of a parallel sweep each get one core.
SINGLE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
    "KERAS_BACKEND": "jax",
    "JAX_PLATFORMS": "cpu",
    "TF_CPP_MIN_LOG_LEVEL": "3",
    "PYTHONWARNINGS": "ignore",
}
# Tuning knobs some images set for OpenBLAS; they can pick a slower kernel. Removed in every
# benchmark subprocess alike, and recorded (see machine_info()["openblas_env_removed"]).
OPENBLAS_TUNING_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


class Skipped(Exception):
    """A section or system cannot run yet (its module is missing): recorded, not an error."""


class WorkerError(RuntimeError):
    """A benchmark subprocess failed; the message carries the tail of its stderr."""


def worker_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in OPENBLAS_TUNING_VARS}
    env.update(SINGLE_THREAD_ENV)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    return env


def run_worker(spec: dict, core: int = 0, timeout: float = 900.0) -> dict:
    """Run ``benchmarks.worker`` with ``spec`` in a fresh process pinned to ``core``; its JSON."""

    def pin() -> None:
        os.sched_setaffinity(0, {core})

    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.worker", json.dumps(spec)],
        cwd=REPO,
        env=worker_env(),
        preexec_fn=pin if hasattr(os, "sched_setaffinity") else None,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise WorkerError(f"worker {spec.get('kind')}/{spec.get('system', '')} failed:\n{tail}")
    # The last stdout line is the result; frameworks may print above it.
    return json.loads(proc.stdout.strip().splitlines()[-1])


class WorkerServer:
    """A ``benchmarks.worker`` in serve mode, pinned to ``core``: built and warmed up once,
    then one timed repeat per :meth:`request`. Its stderr goes to a temp file (read on failure).
    ``kind`` picks the worker's server (``worker.SERVERS``): the trainer sessions by default."""

    def __init__(self, spec: dict, core: int = 0, kind: str = "serve") -> None:
        import tempfile

        self.name = f"{kind}/{spec.get('system', spec.get('contender', ''))}"
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.worker", json.dumps({**spec, "kind": kind})],
            cwd=REPO,
            env=worker_env(),
            preexec_fn=(lambda: os.sched_setaffinity(0, {core}))
            if hasattr(os, "sched_setaffinity")
            else None,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
        )

    def _read(self) -> dict:
        for line in self.proc.stdout:  # frameworks may print non-JSON lines first
            if line.startswith("{"):
                return json.loads(line)
        self.proc.wait()
        self.stderr.seek(0)
        tail = "\n".join(self.stderr.read().strip().splitlines()[-15:])
        raise WorkerError(f"worker {self.name} exited ({self.proc.returncode}):\n{tail}")

    def ready(self) -> dict:
        return self._read()

    def request(self, obj: dict) -> dict:
        try:
            self.proc.stdin.write(json.dumps(obj) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass  # it died: _read reports its stderr
        return self._read()

    def close(self) -> None:
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()


def summarize(values: Sequence[float]) -> dict:
    """Median, min, max and all values (a rate per repeat)."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "values": list(values),
    }


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    names = [
        "nnlab",
        "numpy",
        "keras",
        "jax",
        "jaxlib",
        "torch",
        "scikit-learn",
        "mlflow",
        "hydra-core",
        "hydra-joblib-launcher",
        "pandas",
        "threadpoolctl",
    ]
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info(blas: list[dict] | None = None) -> dict:
    """CPU, cores, Python, package versions; ``blas`` is threadpoolctl's view from a worker."""
    return {
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": package_versions(),
        "git_commit": git_commit(),
        "blas_in_worker": blas,
        "worker_env": SINGLE_THREAD_ENV,
        "openblas_env_removed": {k: os.environ[k] for k in OPENBLAS_TUNING_VARS if k in os.environ},
    }


def module_available(name: str) -> bool:
    """True when ``name`` (e.g. ``nnlab.tracking``) can be imported without importing it."""
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False
