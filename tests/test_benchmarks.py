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
