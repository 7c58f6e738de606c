"""End to end through the real CLI (slow): a sweep whose config asks for the report writes it at
its end and prints the path; a trial that raises shows up in the report as failed, counted and
listed, while the figures still build."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pandas as pd
import pytest

from nnlab.report import FIGURES

pytestmark = pytest.mark.slow


def nnlab_run(cwd, *overrides):
    cmd = [sys.executable, "-m", "nnlab.run", "-m", *overrides]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)


def test_sweep_writes_the_report_and_failed_trials_are_reported(tmp_path):
    common = ["data.n_samples=120", "batch_size=16", "experiment_name=slow", "report.enabled=true"]
    ok = nnlab_run(tmp_path, "lr=1e-2,1e-1", "epochs=4", "seed=0,1", *common)
    assert ok.returncode == 0, ok.stderr[-3000:]
    printed = re.search(r"report: (\S+index\.html)", ok.stdout)
    assert printed, ok.stdout[-2000:]
    index = tmp_path / printed.group(1)
    assert index.exists()

    # A second sweep into the same experiment with one trial that raises at epoch 2: the sweep
    # exits 1 (a trial failed) and still writes the report, now counting the failure.
    bad = nnlab_run(tmp_path, "lr=0.05", "epochs=4", "seed=0", "debug.fail_at_epoch=2", *common)
    assert bad.returncode == 1, bad.stderr[-3000:]
    out = index.parent
    findings = json.loads((out / "findings.json").read_text())
    assert findings["outcomes"].get("failed") == 1
    counts = pd.read_csv(out / "outcomes.csv")
    assert counts.loc[counts["lr"] == 0.05, "failed"].sum() == 1
    html = index.read_text(encoding="utf-8")
    assert "Failed runs by lr: lr=0.05: 1/1" in html
    assert re.search(r"Caution: .*debug\.fail_at_epoch: 2, None", html)  # two set-ups pooled
    runs = pd.read_csv(out / "runs.csv")
    failed = runs[runs["outcome"] == "failed"]
    assert len(failed) == 1 and failed["status"].eq("FAILED").all()
    assert failed["run_name"].iloc[0] in html  # listed in the table of unusable runs
    for key, _ in FIGURES:
        if key != "decision_boundaries":
            assert (out / f"{key}.png").stat().st_size > 10_000, key
