"""Smoke tests of the benchmark harness: it runs nnlab on a real (small) workload in a pinned
subprocess, writes its JSON and table, and reads W3 from the Hydra config. No peers needed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

# benchmarks/ sits at the repo root and is not an installed package: make plain `pytest` find it
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import run as bench_run  # noqa: E402
from benchmarks.common import REPO, run_worker  # noqa: E402
from benchmarks.workloads import (  # noqa: E402
    Workload,
    initial_weights,
    make_data,
    targets,
    w3_from_config,
)

TINY = Workload("T", (3, 8, 4), batch_size=16, n_samples=200)


def test_worker_trains_nnlab_and_pairs_the_gemm_share():
    spec = {"kind": "train", "system": "nnlab", "workload": TINY.to_dict(), "epochs": 1,
            "repeats": 3, "gemm_share": True}  # fmt: skip
    r = run_worker(spec)
    assert len(r["samples_per_s"]["values"]) == 3
    assert r["samples_per_s"]["min"] <= r["samples_per_s"]["median"] <= r["samples_per_s"]["max"]
    assert r["samples_per_s"]["min"] > 0
    assert np.isfinite(r["first_epoch_loss"]) and r["last_epoch_loss"] < r["first_epoch_loss"]
    assert len(r["outside_gemm_share"]["values"]) == 3
    assert all(s < 1.0 for s in r["outside_gemm_share"]["values"])
    # the worker really ran single-threaded BLAS
    assert all(b["num_threads"] == 1 for b in r["blas"] if b["internal_api"] != "openmp")


def test_run_cli_writes_json_table_and_goals(tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = bench_run.main(["--quick", "--only", "W1", "--systems", "nnlab", "--out", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())
    nn = res["workloads"]["W1"]["systems"]["nnlab"]
    assert nn["samples_per_s"]["median"] > 0 and nn["n_samples"] == 20_000
    assert res["machine"]["blas_in_worker"] and res["machine"]["versions"]["numpy"]
    goals = {g["goal"]: g for g in res["goals"]}
    assert goals["W1 nnlab / torch"]["met"] is None  # no peer measured: not claimed either way
    assert "W1: 2-64-64-1" in capsys.readouterr().out


def test_unknown_section_is_one_line_error(capsys):
    with pytest.raises(SystemExit) as exc:
        bench_run.main(["--only", "W9"])
    assert exc.value.code == 2
    assert "unknown section/system ['W9']" in capsys.readouterr().err


def test_w3_follows_the_flagship_config():
    exp = REPO / "conf" / "experiment" / "lr_vs_epochs.yaml"
    w = w3_from_config()
    if not exp.exists():
        assert w.source.startswith("placeholder")
        return
    cfg = OmegaConf.load(exp)
    hidden = (
        cfg.get("model", {}).get("hidden") or OmegaConf.load(REPO / "conf/model/mlp.yaml").hidden
    )
    assert list(w.layers[1:-1]) == list(hidden)
    batches = [int(b) for b in str(cfg.hydra.sweeper.params.batch_size).split(",")]
    assert w.batch_size == min(batches)
    x, y = make_data(w)
    assert x.shape == (w.n_samples, w.layers[0]) and x.dtype == np.float32


def test_shared_initial_weights_and_targets():
    ws = initial_weights(TINY)
    assert [a.shape for a in ws] == [(3, 8), (8,), (8, 4), (4,)]
    assert all(a.dtype == np.float32 for a in ws)
    assert np.abs(ws[0]).max() <= np.sqrt(6 / 11) and not ws[1].any()
    assert all(np.array_equal(a, b) for a, b in zip(ws, initial_weights(TINY), strict=True))
    x, y = make_data(TINY)
    t = targets(TINY, y)
    assert t.shape == (200, 4) and np.array_equal(t.argmax(1), y) and t.sum() == 200


# ------------------------------------------------------------------------- tracking section


def _sweep_dir(tmp_path: Path, records: list[dict], writer: dict | None = None) -> Path:
    """A finished sweep's results as nnlab writes them: one record per trial (+ writer.json)."""
    results = tmp_path / "multirun" / "2026-01-01" / "00-00-00" / ".nnlab" / "abc123"
    results.mkdir(parents=True)
    for job, rec in enumerate(records):
        (results / f"job{job:05d}.json").write_text(json.dumps({"job": job, **rec}))
    if writer is not None:
        (results / "writer.json").write_text(json.dumps(writer))
    return tmp_path


def test_tracking_sweep_facts_fixed_cost_and_per_trial_source(tmp_path):
    from benchmarks.tracking_cost import sweep_facts

    recs = [
        {"train_started": 103.0, "ended": 104.0, "tracking_s": 0.03, "seconds": 1.0},
        {"train_started": 102.5, "ended": 106.0, "tracking_s": 0.01, "seconds": 3.5},
        {"train_started": 104.0, "ended": 105.0, "tracking_s": 0.02, "seconds": 1.0},
    ]
    d = _sweep_dir(tmp_path, recs)
    f = sweep_facts(d, started_at=100.0, exited_at=107.5)
    assert f["n_trials"] == 3
    # first training began 2.5 s after the launch, the process exited 1.5 s after the last end
    assert f["fixed_cost"] == {"before_s": 2.5, "after_s": 1.5, "total_s": 4.0}
    assert f["per_trial"]["source"] == "in the trials"
    assert f["per_trial"]["median_s"] == pytest.approx(0.02)
    assert f["writer"] is None

    writer = {"trials": 3, "per_trial_s": [0.004, 0.006, 0.1], "setup_s": 0.9, "drain_s": 0.2,
              "errors": 0}  # fmt: skip
    (next(d.glob("multirun/**/.nnlab/abc123")) / "writer.json").write_text(json.dumps(writer))
    f = sweep_facts(d, started_at=100.0, exited_at=107.5)
    assert f["per_trial"]["source"] == "sweep writer"
    assert f["per_trial"]["median_s"] == pytest.approx(0.006)
    assert f["writer"]["setup_s"] == 0.9 and "per_trial_s" not in f["writer"]


def test_tracking_sweep_facts_without_wall_clock_fields(tmp_path):
    from benchmarks.tracking_cost import sweep_facts

    d = _sweep_dir(tmp_path, [{"tracking_s": 0.0, "seconds": 1.0}])
    assert sweep_facts(d, 0.0, 1.0)["fixed_cost"] is None


def test_tracking_goal_lines_read_the_section():
    res = {
        "tracking": {
            "median_ratio": 1.1,
            "replay": {"sqlite": {"median_s": 0.02}, "server": {"median_s": 0.05}},
            "fixed_cost_s": {"sqlite": 1.5, "none": 1.0},
        }
    }
    goals = {g["goal"]: g for g in bench_run.goals(res)}
    assert goals["tracked / untracked sweep wall, median of pairs"]["met"] is True
    assert goals["tracking per trial, sqlite, writer alone (s)"]["met"] is False
    assert goals["tracking per trial, server, writer alone (s)"]["measured"] == 0.05
    assert goals["sweep fixed cost, sqlite (s)"]["met"] is True
    assert goals["sweep fixed cost tracking adds, sqlite - none (s)"]["measured"] == 0.5
    table = bench_run.format_table(res)
    assert "tracking per trial, sqlite, writer alone (s)" in table and "MISSED" in table


def test_tracking_server_requests_counted_by_endpoint():
    from benchmarks.tracking_cost import request_counts

    log = [
        'INFO:     127.0.0.1:1 - "POST /api/2.0/mlflow/runs/create HTTP/1.1" 200 OK',
        'INFO:     127.0.0.1:1 - "POST /api/2.0/mlflow/runs/log-batch HTTP/1.1" 200 OK',
        'INFO:     127.0.0.1:1 - "POST /api/2.0/mlflow/runs/log-batch HTTP/1.1" 200 OK',
        'INFO:     127.0.0.1:1 - "PUT /api/2.0/mlflow-artifacts/artifacts/1/a/model.npz HTTP/1.1"',
        'INFO:     127.0.0.1:1 - "PUT /api/2.0/mlflow-artifacts/artifacts/1/a/x.csv HTTP/1.1"',
        "INFO:     Shutting down",
    ]
    assert request_counts(log) == {
        "POST runs/create": 1,
        "POST runs/log-batch": 2,
        "PUT mlflow-artifacts": 2,
    }


@pytest.mark.slow
def test_tracking_server_answers_raw_calls_and_is_stopped(tmp_path):
    from benchmarks.tracking_cost import MlflowServer, process_tree, server_calls

    srv = MlflowServer(tmp_path / "srv", workers=1)
    try:
        assert srv.wait_ready() > 0
        calls = server_calls(srv.uri)
        mem = srv.rss()
        group = process_tree(srv.pid)
    finally:
        srv.stop()
    assert len(calls["create_run_s"]["values"]) == 20 and calls["log_batch_s"]["median"] > 0
    assert mem["rss_mb"] > 50 and mem["processes"] >= 1
    # nothing of the server's process group is left running
    assert not [p for p in group if Path(f"/proc/{p}").exists()]


def test_stacking_contender_served_and_crossover_cell_in_pinned_workers():
    from benchmarks import stacking
    from benchmarks.common import WorkerServer

    fl = stacking.flagship()
    w = fl["workload"]
    base = {"workload": w, "hidden": [4, 4], "batch_size": 64, "lrs": fl["lrs"]}
    server = WorkerServer({**base, "contender": "stacked"}, kind="stacking")
    try:
        ready = server.ready()
        reply = server.request({"epochs": 1})
    finally:
        server.close()
    assert ready["ready"] and np.isfinite(ready["first_loss"]) and reply["us"] > 0
    spec = {
        "kind": "stacking_crossover",
        "base": base,
        "rounds": 2,
        "target_s": 0.001,
        "groups": [{"width": 4, "batch_size": 64, "features": 3, "ks": [2, 4]}],
    }
    cells = run_worker(spec)["cells"]
    assert [(c["k"], c["features"], c["width"]) for c in cells] == [(2, 3, 4), (4, 3, 4)]
    assert all(c["alone_us"] > 0 and c["stacked_us"] > 0 and c["ratio"] > 0 for c in cells)


def test_stacking_table_lines():
    from benchmarks import stacking

    cell = {
        "width": 16,
        "batch_size": 16,
        "features": 2,
        "k": 64,
        "ratio": 9.5,
        "stacking_pays": True,
    }
    out = {
        "workload": w3_from_config().to_dict(),
        "k": 64,
        "lrs": [1e-3, 1e-2],
        "rounds": 3,
        "jax_skipped": "JAX is not installed",
        "auto_min_ratio": 9.5,
        "auto_slower_cells": [],
        "contenders": {
            "alone": {
                "us_per_model_step": {"median": 60.0, "min": 55.0, "max": 70.0},
                "first_epoch_loss": 0.5,
            },
            "stacked": {
                "us_per_model_step": {"median": 6.0, "min": 5.0, "max": 7.0},
                "first_epoch_loss": 0.5,
            },
        },
        "ratio_alone": 10.0,
        "crossover": [cell, {**cell, "features": 64, "ratio": 0.9, "stacking_pays": False}],
    }
    text = "\n".join(stacking.summary_lines(out))
    assert "JAX rows skipped: JAX is not installed" in text
    assert "x10.00" in text and "9.50*" in text and "64 input features, width 16" in text
    assert "stacks 1 of 2 cells" in text and "slower: 0" in text
    goals = {g["goal"]: g for g in bench_run.goals({"stacking": out})}
    assert goals["64 flagship models: one at a time / stacked, time per model-step"]["met"]
    assert (
        goals["64 flagship models: JAX jit(vmap(step)) / stacked, time per model-step"]["met"]
        is None
    )
