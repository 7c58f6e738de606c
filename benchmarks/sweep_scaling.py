"""Sweep scaling: the same CPU-heavy sweep with the joblib launcher at n_jobs=1 and n_jobs=2.

Each trial trains a 2-128-128-1 MLP on 16,000 moons samples (a few seconds of NumPy work), the
sweep runs ``seed=0..k-1`` with the default sqlite tracking, each launch in a fresh temp
directory. Throughput = trials / wall time of the whole command (start-up, loky workers and
MLflow imports included, as the user waits for them). nnlab gives each parallel trial one BLAS
thread; here nothing else limits threads.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from benchmarks.common import REPO, Skipped, module_available
from benchmarks.tracking_cost import run_sweep

HEAVY = ["data.n_samples=20000", "model.hidden=[128,128]", "batch_size=32", "lr=0.01"]


def run(quick: bool = False, core: int = 0) -> dict:
    for mod in ("nnlab.tracking", "nnlab.run", "nnlab.nn"):
        if not module_available(mod):
            raise Skipped(f"{mod} not available yet")
    if not (REPO / "conf" / "hydra" / "launcher" / "joblib.yaml").exists():
        raise Skipped("conf/hydra/launcher/joblib.yaml not available yet")
    n_trials, epochs = (4, 3) if quick else (8, 5)
    seeds = ",".join(str(s) for s in range(n_trials))
    out: dict = {"trials": n_trials, "epochs": epochs, "overrides": HEAVY, "runs": {}}
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
            r = run_sweep(overrides, d, experiment=None)
            r["trials_per_s"] = r["n_trials"] / r["wall_s"]
            out["runs"][f"n_jobs={n_jobs}"] = r
            print(
                f"  n_jobs={n_jobs}: {r['n_trials']} trials in {r['wall_s']:.1f} s "
                f"(trials' own time {r['trial_seconds_sum']:.1f} s)",
                flush=True,
            )
    one, two = out["runs"]["n_jobs=1"], out["runs"]["n_jobs=2"]
    out["speedup"] = two["trials_per_s"] / one["trials_per_s"]
    # Ideal 1.0: how much slower one trial runs while another shares the machine.
    out["parallel_trial_slowdown"] = (two["trial_seconds_sum"] / two["n_trials"]) / (
        one["trial_seconds_sum"] / one["n_trials"]
    )
    out["serial_overhead_s"] = one["wall_s"] - one["trial_seconds_sum"]
    out["summary"] = [
        f"{n_trials} trials x {epochs} epochs (2-128-128-1, 16k samples): n_jobs=1 "
        f"{one['wall_s']:.1f} s, n_jobs=2 {two['wall_s']:.1f} s -> {out['speedup']:.2f}x "
        f"throughput (mean trial {one['trial_seconds_sum'] / one['n_trials']:.1f} s alone, "
        f"{two['trial_seconds_sum'] / two['n_trials']:.1f} s in parallel)",
        f"time outside the trials at n_jobs=1 (start-up, imports, Hydra composing, store): "
        f"{out['serial_overhead_s']:.1f} s",
    ]
    return out
