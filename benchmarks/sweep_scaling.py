"""Sweep scaling: the same CPU-heavy sweep with the joblib launcher at n_jobs=1 and n_jobs=2.

Each trial trains a 2-256-256-1 MLP on 16,000 moons samples for 15 epochs (~5 s of NumPy work
on one core), the sweep runs ``seed=0..7`` with the default sqlite tracking, each launch in a
fresh temp directory. Throughput = trials / wall time of the whole command (start-up, loky
workers and MLflow imports included, as the user waits for them).

Both launches run with one BLAS thread (``OPENBLAS_NUM_THREADS=1``; nnlab sets the same for
parallel trials), so n_jobs=1 uses one core and the ratio measures the launcher. Left at its
default, OpenBLAS gives an in-process trial both cores, which for these small GEMMs is no
faster and, when anything else runs on the machine, measured 13x slower (busy-waiting threads).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from benchmarks.common import Skipped, module_available
from benchmarks.tracking_cost import run_sweep

HEAVY = ["data.n_samples=20000", "model.hidden=[256,256]", "batch_size=32", "lr=0.01"]
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


PROBE = """
import time, numpy as np
a = np.ones((256, 256), np.float32)
n, t0 = 0, time.perf_counter()
while time.perf_counter() - t0 < 2.0:
    a @ a
    n += 1
print(n)
"""


def capacity() -> float:
    """How many cores are free right now: the work two CPU-bound one-thread processes do at once,
    over the work of one alone (2.0 on an idle 2-core machine). Other work on the machine lowers
    it, and with it any parallel speed-up; the sweeps are only comparable to this number."""
    import subprocess
    import sys

    from benchmarks.common import worker_env

    env = {**worker_env(), **ONE_THREAD}

    def start():
        return subprocess.Popen([sys.executable, "-c", PROBE], env=env, stdout=subprocess.PIPE,
                                text=True)  # fmt: skip

    one = int(start().communicate()[0])
    pair = [start(), start()]
    both = sum(int(p.communicate()[0]) for p in pair)
    return both / one


def run(quick: bool = False, core: int = 0) -> dict:
    for mod in ("nnlab.tracking", "nnlab.run", "nnlab.nn"):
        if not module_available(mod):
            raise Skipped(f"{mod} not available yet")
    n_trials, epochs = (4, 8) if quick else (8, 15)
    seeds = ",".join(str(s) for s in range(n_trials))
    out: dict = {"trials": n_trials, "epochs": epochs, "overrides": HEAVY, "runs": {}}
    cap = [capacity()]
    with tempfile.TemporaryDirectory(prefix="nnlab-bench-scaling-") as tmp:
        for n_jobs in (1, 2):
            d = Path(tmp) / f"jobs{n_jobs}"
            d.mkdir()
            overrides = [
                "hydra/launcher=joblib",
                f"hydra.launcher.n_jobs={n_jobs}",
                *HEAVY,
                f"epochs={epochs}",
                f"seed={seeds}",
                "report.enabled=false",
            ]
            r = run_sweep(overrides, d, experiment=None, env_extra=ONE_THREAD)
            r["trials_per_s"] = r["n_trials"] / r["wall_s"]
            out["runs"][f"n_jobs={n_jobs}"] = r
            print(
                f"  n_jobs={n_jobs}: {r['n_trials']} trials in {r['wall_s']:.1f} s "
                f"(trials' own time {r['trial_seconds_sum']:.1f} s)",
                flush=True,
            )
    cap.append(capacity())
    out["capacity"] = cap  # before and after the sweeps
    one, two = out["runs"]["n_jobs=1"], out["runs"]["n_jobs=2"]
    out["speedup"] = two["trials_per_s"] / one["trials_per_s"]
    # Ideal 1.0: how much slower one trial runs while another shares the machine.
    out["parallel_trial_slowdown"] = (two["trial_seconds_sum"] / two["n_trials"]) / (
        one["trial_seconds_sum"] / one["n_trials"]
    )
    out["serial_overhead_s"] = one["wall_s"] - one["trial_seconds_sum"]
    out["summary"] = [
        f"{n_trials} trials x {epochs} epochs (2-256-256-1, 16k samples, 1 BLAS thread): n_jobs=1 "
        f"{one['wall_s']:.1f} s, n_jobs=2 {two['wall_s']:.1f} s -> {out['speedup']:.2f}x "
        f"throughput (mean trial {one['trial_seconds_sum'] / one['n_trials']:.1f} s alone, "
        f"{two['trial_seconds_sum'] / two['n_trials']:.1f} s in parallel)",
        f"free cores while measuring (2 = idle machine): {cap[0]:.2f} before, {cap[1]:.2f} after",
        f"time outside the trials at n_jobs=1 (start-up, imports, Hydra composing, store): "
        f"{out['serial_overhead_s']:.1f} s",
    ]
    return out
