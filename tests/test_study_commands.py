"""The batch-size and LR-finder studies end to end: a tiny version of each through
``python -m nnlab.run -m +experiment=...``; what the report says is recomputed from the store's
raw histories and params with the rules written out here again (not by calling the modules)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from helpers import cli, runs

from nnlab.analysis import load_histories, load_runs

pytestmark = pytest.mark.slow


def test_critical_batch_study_recomputed_from_the_store(make_launch_dir) -> None:
    """moons x SGD x batch 8, 32, 128 x 3 lrs x 3 seeds (27 trials, 240 samples)."""
    d = make_launch_dir("critical")
    proc = cli(d, "-m", "+experiment=critical_batch", "problem=moons", "optimizer=sgd",
               "batch=b8,b32,b128", "lr=0.1,0.3,1.0", "seed=0,1,2",
               "problems.moons.n_samples=300", "hydra/launcher=basic",
               f"hydra.sweep.dir={d / 'multirun'}")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    uri = f"sqlite:///{d / 'mlflow.db'}"
    trials = load_runs("critical_batch", uri)
    assert len(trials) == 27 and "final_noise_scale" in trials  # NaN where |G|² < 0 at the end
    hist = load_histories("critical_batch", ("loss",), uri, runs=trials)
    # the rules: each run's lowest training loss; per batch size the best lr's median over
    # seeds; target = 1.25 x the loosest of those; steps = first epoch at or below it x
    # ceil(240 / batch size); per batch size the fewest median steps over the lrs
    h = hist.sort_values("epoch").groupby("run_id")["value"].apply(np.array)
    ok = trials["outcome"].isin(["completed", "early_stopped"])
    best = [h[r].min() if good else math.inf for r, good in zip(trials["run_id"], ok, strict=True)]
    trials = trials.assign(best=best)
    per_bs = trials.groupby(["batch_size", "lr"])["best"].median().groupby("batch_size").min()
    target = 1.25 * per_bs.max()

    def steps(row) -> float:
        if not row["ok"]:
            return math.inf
        hit = np.flatnonzero(h[row["run_id"]] <= target)
        return (hit[0] + 1) * math.ceil(240 / row["batch_size"]) if hit.size else math.inf

    trials["ok"] = ok
    trials["steps"] = trials.apply(steps, axis=1)
    fewest = trials.groupby(["batch_size", "lr"])["steps"].median().groupby("batch_size").min()

    out = d / "reports" / "critical_batch"
    table = pd.read_csv(out / "batch_study.csv")
    assert list(table["batch_size"]) == [8, 32, 128]
    np.testing.assert_allclose(table["target_loss"], target)
    np.testing.assert_allclose(table["steps"], fewest.to_numpy())
    (found,) = json.loads((out / "findings.json").read_text())["critical_batch"]
    assert (found["dataset"], found["optimizer"], found["seeds"]) == ("moons", "sgd", 3)
    for key in ("b_crit", "b_simple", "b_simple_over_b_crit"):
        x = found[key]
        assert x["lo"] <= x["value"] <= x["hi"], (key, x)
    html = (out / "index.html").read_text(encoding="utf-8")
    for fig in ("critical_batch_steps", "critical_batch_lr"):
        assert f"src='{fig}.png'" in html and (out / f"{fig}.png").stat().st_size > 10_000


def test_lr_find_vs_grid_runs_the_grid_then_one_range_test_per_setup(make_launch_dir) -> None:
    """moons x SGD and Adam x batch 16 x 3 lrs x 2 seeds x 8 epochs (12 trials) + 4 tests."""
    d = make_launch_dir("finder")
    args = ("-m", "+experiment=lr_find_vs_grid", "problem=moons", "optimizer=sgd,adam",
            "batch_size=16", "lr=0.01,0.1,1.0", "seed=0,1", "epochs=8",
            "problems.moons.n_samples=200", "hydra/launcher=basic",
            f"hydra.sweep.dir={d / 'multirun'}")  # fmt: skip
    proc = cli(d, *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "nnlab: lr_find: 4 LR range tests, 0 already tracked" in proc.stdout
    # the tests ran before the grid (so the report, after it, reads them)
    assert proc.stdout.index("[lr_find 4/4]") < proc.stdout.index("nnlab sweep")
    uri = f"sqlite:///{d / 'mlflow.db'}"
    assert len(load_runs("lr_find_vs_grid", uri)) == 12  # the tests are not trials
    finders = load_runs("lr_find_vs_grid", uri, role="lr_find")
    assert sorted(zip(finders["optimizer.name"], finders["seed"], strict=True)) == [
        ("adam", 0), ("adam", 1), ("sgd", 0), ("sgd", 1)
    ]  # fmt: skip
    assert (finders["batch_size"] == 16).all() and (finders["status"] == "FINISHED").all()

    trials = load_runs("lr_find_vs_grid", uri)
    hist = load_histories("lr_find_vs_grid", ("val_loss",), uri, runs=trials)
    table = pd.read_csv(d / "reports" / "lr_find_vs_grid" / "lr_find_vs_grid.csv")
    assert len(table) == 2 * 3 * 3  # optimizers x budgets (1, 3, 8) x rules
    at8 = hist[hist["epoch"] == 8].merge(trials[["run_id", "optimizer.name", "lr", "outcome"]])
    at8.loc[~at8["outcome"].isin(["completed", "early_stopped"]), "value"] = np.inf
    for opt in ("sgd", "adam"):
        med = at8[at8["optimizer.name"] == opt].groupby("lr")["value"].median()
        mine = finders[finders["optimizer.name"] == opt]
        for rule in ("valley", "minimum", "steep"):
            (row,) = table.query("optimizer == @opt and budget == 8 and rule == @rule").to_dict(
                "records"
            )
            assert row["best_lr"] == pytest.approx(med.idxmin())
            sugg = 10 ** np.median(np.log10(mine[f"suggested_lr_{rule}"].astype(float)))
            assert row["suggested_lr"] == pytest.approx(sugg)
            assert row["distance"] == pytest.approx(abs(np.log10(sugg / med.idxmin())) / 1.0)

    again = cli(d, *args)  # the same command: the tests are tracked already
    assert again.returncode == 0, again.stderr[-3000:]
    assert "nnlab: lr_find: 4 LR range tests, 4 already tracked" in again.stdout
    assert len(runs(d, "lr_find_vs_grid", "lr_find")) == 4
