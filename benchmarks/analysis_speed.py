"""Analysis speed: ``load_histories`` and the full ``python -m nnlab.report`` on a big sweep.

A synthetic sweep (500 trials x 100 epochs by default; 5 metrics per epoch) is written through
MLflow's ``log_batch`` in the schema of docs/architecture.md (a parent run tagged
``nnlab.role=sweep``, child trials with flattened params, outcome tags, metrics with
step = 1-based epoch) into a temp sqlite store. The curves are simulated, so this times reading
and plotting only, each in a fresh process as a user would run it.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import Skipped, module_available, worker_env

EXPERIMENT = "bench_analysis"
METRICS = ("loss", "accuracy", "val_loss", "val_accuracy", "epoch_time")


def write_sweep(uri: str, n_runs: int, epochs: int, seed: int = 0) -> float:
    """Log ``n_runs`` trials of ``epochs`` epochs each; returns the seconds it took."""
    import logging

    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    for name in ("mlflow", "alembic"):  # store creation logs its migrations at INFO
        logging.getLogger(name).setLevel(logging.WARNING)
    t0 = time.perf_counter()
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment(EXPERIMENT)
    parent = client.create_run(exp, run_name="sweep", tags={"nnlab.role": "sweep"})
    sweep_id = parent.info.run_id
    lrs = np.geomspace(1e-4, 3.0, 10)
    grid = list(itertools.product(lrs, (8, 16, 32, 64, 128), range(10)))  # 500 combinations
    rng = np.random.default_rng(seed)
    ep = np.arange(1, epochs + 1)
    for job in range(n_runs):
        lr, bs, s = grid[job % len(grid)]
        s += 10 * (job // len(grid))
        rate = 40 * lr / np.sqrt(bs)
        floor = 0.07 + 0.25 * min(lr, 1.0) ** 1.5
        loss = floor + (0.69 - floor) * np.exp(-rate * ep) + rng.normal(0, 0.004, epochs)
        outcome, stopped = "completed", None
        if lr > 2.0:  # the largest lr diverges: inf then stop, as the divergence guard would
            stopped = 4
            loss = loss[:stopped]
            loss[-1] = np.inf
            outcome = "diverged"
        val = loss + 0.01
        series = {
            "loss": loss,
            "val_loss": val,
            "accuracy": 1 - np.minimum(loss, 1) / 1.4,
            "val_accuracy": 1 - np.minimum(val, 1) / 1.4,
            "epoch_time": np.full(len(loss), 0.05),
        }
        run = client.create_run(
            exp,
            run_name=f"lr={lr:.3g},batch_size={bs},epochs={epochs},seed={s}",
            tags={
                "mlflow.parentRunId": sweep_id,
                "nnlab.role": "trial",
                "nnlab.sweep_id": sweep_id,
                "nnlab.job": str(job),
            },
        )
        params = {
            "lr": lr,
            "batch_size": bs,
            "epochs": epochs,
            "seed": s,
            "data.name": "moons",
            "data.noise": 0.2,
            "data.n_samples": 1000,
            "data.seed": 0,
            "model.hidden": "[16, 16]",
            "model.activation": "relu",
            "optimizer.name": "adam",
            "trainer.shuffle": True,
        }
        ts = int(time.time() * 1000)
        ms = [Metric(k, float(v), ts, i + 1) for k in METRICS for i, v in enumerate(series[k])]
        tags = [RunTag("nnlab.outcome", outcome)]
        if stopped:
            tags.append(RunTag("nnlab.stopped_epoch", str(stopped)))
        for i in range(0, len(ms), 1000):
            client.log_batch(
                run.info.run_id,
                metrics=ms[i : i + 1000],
                params=[Param(k, str(v)) for k, v in params.items()] if i == 0 else [],
                tags=tags if i == 0 else [],
            )
        client.set_terminated(run.info.run_id, "FINISHED")
    client.set_terminated(sweep_id, "FINISHED")
    return time.perf_counter() - t0


LOAD_SNIPPET = """
import json, sys, time
t0 = time.perf_counter()
from nnlab.analysis import load_histories, load_runs
t1 = time.perf_counter()
h = load_histories(sys.argv[1], ("loss", "val_loss"), tracking_uri=sys.argv[2])
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_histories_s": t2 - t1, "rows": len(h),
                  "runs": int(h["run_id"].nunique())}))
"""


def run(quick: bool = False, core: int = 0, n_runs: int = 500, epochs: int = 100) -> dict:
    for mod in ("nnlab.analysis", "nnlab.report"):
        if not module_available(mod):
            raise Skipped(f"{mod} not available yet")
    env = worker_env()
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(k, None)  # analysis is not a single-core comparison: the user's defaults
    with tempfile.TemporaryDirectory(prefix="nnlab-bench-analysis-") as tmp:
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        write_s = write_sweep(uri, n_runs, epochs)
        print(
            f"  wrote {n_runs} runs x {epochs} epochs x {len(METRICS)} metrics in {write_s:.0f} s",
            flush=True,
        )
        p = subprocess.run(
            [sys.executable, "-c", LOAD_SNIPPET, EXPERIMENT, uri],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if p.returncode:
            raise RuntimeError(f"load_histories failed: {p.stderr.strip()[-2000:]}")
        load = json.loads(p.stdout.strip().splitlines()[-1])
        print(
            f"  load_histories {load['load_histories_s']:.2f} s "
            f"({load['rows']:,} rows; import {load['import_s']:.1f} s)",
            flush=True,
        )
        t0 = time.perf_counter()
        p = subprocess.run(
            [
                sys.executable,
                "-m",
                "nnlab.report",
                "--experiment",
                EXPERIMENT,
                "--tracking-uri",
                uri,
                "--out",
                str(Path(tmp) / "report"),
            ],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        report_s = time.perf_counter() - t0
        if p.returncode:
            raise RuntimeError(f"nnlab.report failed: {p.stderr.strip()[-2000:]}")
        print(f"  python -m nnlab.report {report_s:.1f} s", flush=True)
    return {
        "n_runs": n_runs,
        "epochs": epochs,
        "metrics_per_epoch": len(METRICS),
        "write_s": write_s,
        **load,
        "report_s": report_s,
        "summary": [
            f"{n_runs} runs x {epochs} epochs: load_histories {load['load_histories_s']:.2f} s "
            f"(+ import {load['import_s']:.1f} s), python -m nnlab.report {report_s:.1f} s "
            f"(whole process)",
        ],
    }
