"""Tracking cost: the flagship sweep with ``tracking=none`` against the default sqlite store,
and the per-run cost of the MLflow calls, phase by phase.

1. Sweep, side by side: ``python -m nnlab.run -m +experiment=lr_vs_epochs`` exactly as a user
   runs it (its own launcher preset), once with ``tracking=none`` and once with the default
   store, each in a fresh temp directory (so the sqlite store is created, as on a first run).
   ``report.enabled=false`` in both: the report is timed in the analysis section.
   ``--quick`` sweeps one seed and one batch size (36 trials instead of 324).
2. Per run: the real ``nnlab.tracking.run_trial`` on flagship trials (no Hydra), with the cached
   ``MlflowClient``'s methods wrapped by timers, so each call the tracking code makes is charged
   to its phase: create (create_run), params, metrics (buffered log_batch), artifacts
   (log_artifacts), end (outcome tags + set_terminated). Their sum is the sink's own
   ``overhead``; the median over runs is compared with the 50 ms goal. The sqlite journal mode
   the store ended up in (nnlab switches it to WAL) is recorded.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import REPO, Skipped, module_available, run_worker, summarize, worker_env

EXPERIMENT = "lr_vs_epochs"
QUICK_OVERRIDES = ["seed=0", "batch_size=256"]
PHASES = ("create", "params", "metrics", "artifacts", "end")


def _check() -> None:
    for mod in ("nnlab.tracking", "nnlab.run", "nnlab.nn"):
        if not module_available(mod):
            raise Skipped(f"{mod} not available yet")
    if not (REPO / "conf" / "experiment" / f"{EXPERIMENT}.yaml").exists():
        raise Skipped(f"conf/experiment/{EXPERIMENT}.yaml not available yet")


def run_sweep(
    overrides: list[str],
    workdir: Path,
    timeout: float = 1800,
    experiment: str | None = EXPERIMENT,
    env_extra: dict[str, str] | None = None,
) -> dict:
    """One ``python -m nnlab.run -m`` in ``workdir``: wall time and the trials' own records."""
    env = worker_env()
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "XLA_FLAGS"):
        env.pop(k, None)  # a sweep as the user runs it: nnlab sets one BLAS thread per trial
    env.update(env_extra or {})
    exp = [f"+experiment={experiment}"] if experiment else []
    cmd = [sys.executable, "-m", "nnlab.run", "-m", *exp, *overrides]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    if p.returncode:
        raise RuntimeError(f"{' '.join(cmd[2:])} failed ({p.returncode}): {p.stderr[-1500:]}")
    records = [json.loads(f.read_text()) for f in workdir.glob("multirun/**/.nnlab/*/job*.json")]
    tracking = [r.get("tracking_s", 0.0) for r in records]
    return {
        "command": " ".join(["python", *cmd[1:]]),
        "wall_s": wall,
        "n_trials": len(records),
        "trial_seconds_sum": sum(r.get("seconds", 0.0) for r in records),
        "tracking_s_sum": sum(tracking),
        # train_s includes checkpoint_s (per-epoch checkpoints), when the records carry them
        "train_s_sum": sum(r.get("train_s") or 0.0 for r in records),
        "checkpoint_s_sum": sum(r.get("checkpoint_s") or 0.0 for r in records),
        "tracking_s_median": statistics.median(tracking) if tracking else None,
        "last_lines": p.stdout.strip().splitlines()[-4:],
        # nnlab prints the launching process's set-up time and the sweep's own duration
        "setup_s": _seconds(r"set-up ([0-9.]+)s", p.stdout),
        "sweep_s": _seconds(r"trials in ([0-9.]+)s", p.stdout),
    }


def _seconds(pattern: str, text: str) -> float | None:
    import re

    m = re.search(pattern, text)
    return float(m.group(1)) if m else None


def phases(spec: dict) -> dict:
    """In a worker process: ``n`` flagship trials through ``run_trial``, MLflow calls timed."""
    import os

    from hydra import compose, initialize_config_dir

    from nnlab import tracking

    workdir = Path(spec["workdir"])
    os.chdir(workdir)
    n, epochs = int(spec["runs"]), int(spec["epochs"])
    uri = tracking.resolve_uri("sqlite:///mlflow.db", workdir)
    client = tracking.client(uri)  # the cached instance MlflowSink will use
    spent = dict.fromkeys(PHASES, 0.0)

    def timed(name: str, phase_of) -> None:
        orig = getattr(client, name)

        def call(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return orig(*args, **kwargs)
            finally:
                spent[phase_of(kwargs)] += time.perf_counter() - t0

        setattr(client, name, call)

    def log_batch_phase(kw: dict) -> str:
        return "params" if kw.get("params") else "metrics" if kw.get("metrics") else "end"

    timed("create_run", lambda kw: "create")
    timed("log_batch", log_batch_phase)
    timed("log_artifacts", lambda kw: "artifacts")
    timed("set_terminated", lambda kw: "end")

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
            cfgs = [
                compose(
                    "config",
                    overrides=[
                        f"+experiment={EXPERIMENT}",
                        "report.enabled=false",
                        "batch_size=64",
                        f"epochs={epochs}",
                        f"seed={s}",
                        "trainer.verbose=0",
                    ],
                )
                for s in range(n + 1)
            ]
    rows, totals = [], []
    for i, cfg in enumerate(cfgs):
        for k in spent:
            spent[k] = 0.0
        rec = tracking.run_trial(cfg)
        if i == 0:  # warm-up: imports, store creation, first connection
            continue
        rows.append(dict(spent))
        totals.append(rec["tracking_s"])
    return {
        "runs": n,
        "epochs": epochs,
        "journal_mode": _journal_mode(workdir / "mlflow.db"),
        "phase_median_s": {k: statistics.median(r[k] for r in rows) for k in PHASES},
        "total_s": summarize(totals),
    }


def _journal_mode(path: Path) -> str:
    import sqlite3

    with sqlite3.connect(path) as con:
        return str(con.execute("PRAGMA journal_mode").fetchone()[0])


def run(quick: bool = False, core: int = 0) -> dict:
    _check()
    overrides = ["report.enabled=false"] + (QUICK_OVERRIDES if quick else [])
    sweeps = {}
    with tempfile.TemporaryDirectory(prefix="nnlab-bench-tracking-") as tmp:
        for mode, extra in (("none", ["tracking=none"]), ("sqlite", [])):
            d = Path(tmp) / mode
            d.mkdir()
            sweeps[mode] = run_sweep(overrides + extra, d)
            print(
                f"  sweep tracking={mode:<6} {sweeps[mode]['n_trials']} trials "
                f"in {sweeps[mode]['wall_s']:.1f} s",
                flush=True,
            )
        d = Path(tmp) / "phases"
        d.mkdir()
        spec = {"kind": "tracking_phases", "workdir": str(d), "runs": 10 if quick else 30,
                "epochs": 40}  # fmt: skip
        per_run = run_worker(spec, core=core)
    t_none, t_sql = sweeps["none"]["wall_s"], sweeps["sqlite"]["wall_s"]
    per_run["total_median_s"] = per_run["total_s"]["median"]
    ph = per_run["phase_median_s"]
    return {
        "quick": quick,
        "sweeps": sweeps,
        "added_share": t_sql / t_none - 1.0,
        "overhead_share": 1.0 - t_none / t_sql,
        "per_run": per_run,
        "summary": [
            f"flagship sweep ({sweeps['sqlite']['n_trials']} trials): tracking=none "
            f"{t_none:.1f} s, sqlite {t_sql:.1f} s -> tracking adds {100 * (t_sql / t_none - 1):.0f}%"
            f" ({100 * (1 - t_none / t_sql):.0f}% of the tracked wall time)",
            f"trials' own tracking_s: median {1000 * (sweeps['sqlite']['tracking_s_median'] or 0):.0f}"
            f" ms, sum {sweeps['sqlite']['tracking_s_sum']:.1f} s; launcher set-up "
            f"{sweeps['none']['setup_s']} s (none) vs {sweeps['sqlite']['setup_s']} s (sqlite)",
            *(
                f"  {mode:<6}: trials' own time {sw['trial_seconds_sum']:.1f} s = training "
                f"{sw['train_s_sum']:.1f} s (checkpoints {sw['checkpoint_s_sum']:.1f} s) + "
                f"tracking {sw['tracking_s_sum']:.1f} s + rest; wall {sw['wall_s']:.1f} s"
                for mode, sw in sweeps.items()
            ),
            f"per run (run_trial, {per_run['runs']} runs x {per_run['epochs']} epochs): median "
            f"{1000 * per_run['total_median_s']:.1f} ms = "
            + " + ".join(f"{k} {1000 * v:.1f}" for k, v in ph.items())
            + f" (sqlite journal: {per_run['journal_mode']})",
        ],
    }
