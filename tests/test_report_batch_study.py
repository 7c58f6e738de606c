"""The batch-size study's numbers (nnlab.report.batch_study) against known truths: exact model
curves for the fits, a planted study whose critical batch size, noise scale and lr exponent are
chosen, and hand computations for the target and the steps."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from nnlab.report import batch_study as bs

BATCH = np.array([8, 16, 32, 64, 128, 256], float)


def test_the_critical_batch_fit_recovers_the_model_it_fits() -> None:
    steps = 50 * (1 + 100 / BATCH)
    b_crit, s_min = bs.fit_critical(BATCH, steps)
    assert b_crit == pytest.approx(100, rel=0.025)  # the candidates are 2.3% apart
    assert s_min == pytest.approx(50, rel=0.03)
    # rows are fitted each on its own; a missing point is left out; < 3 points: NaN
    rows = np.vstack([steps, 20 * (1 + 10 / BATCH), np.where(BATCH < 64, np.inf, steps)])
    b, _ = bs.fit_critical(BATCH, rows)
    assert b[0] == pytest.approx(100, rel=0.025) and b[1] == pytest.approx(10, rel=0.025)
    assert b[2] == pytest.approx(100, rel=0.025)
    assert np.isnan(bs.fit_critical(BATCH[:2], steps[:2])[0])


def test_the_exponent_fit_is_the_log_log_slope() -> None:
    assert bs.fit_exponent(BATCH, 0.01 * BATCH**0.5) == pytest.approx(0.5)
    assert bs.fit_exponent(BATCH, 3e-3 * BATCH) == pytest.approx(1.0)
    censored = np.where(BATCH == 256, np.nan, 0.01 * BATCH**0.7)
    assert bs.fit_exponent(BATCH, censored) == pytest.approx(0.7)
    assert np.isnan(bs.fit_exponent(BATCH[:2], BATCH[:2]))


def test_the_best_lr_is_refined_between_grid_points_and_censored_at_the_edges() -> None:
    grid = 10.0 ** np.arange(-3, 1.01, 0.5)  # 1e-3 .. 10, half decades
    x = np.log(grid)
    vertex = np.log(0.05)  # between the grid's 0.0316 and 0.1
    steps = np.exp(3 + 0.8 * (x - vertex) ** 2)  # log(steps) is a parabola in log(lr)
    edge = np.exp(3 + 0.8 * (x - np.log(1e-3)) ** 2)  # best at the grid's smallest lr
    never = np.full_like(grid, np.inf)
    fewest, lr, censored = bs.best_lr(grid, np.vstack([steps, edge, never]))
    assert lr[0] == pytest.approx(0.05, rel=1e-9) and not censored[0]
    assert fewest[0] == pytest.approx(steps.min())
    assert lr[1] == pytest.approx(1e-3) and censored[1]
    assert np.isnan(lr[2]) and fewest[2] == np.inf and not censored[2]
    # a neighbour that never reached: no refinement, the grid lr itself
    holed = steps.copy()
    holed[3] = np.inf  # 0.0316
    assert bs.best_lr(grid, holed)[1] == pytest.approx(0.1)


def _runs_and_hist(curves: dict[tuple, list[float]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(load_runs-like, load_histories-like) frames from {(dataset, opt, bs, lr, seed): losses}."""
    runs, hist = [], []
    for i, ((ds, opt, b, lr, seed), losses) in enumerate(curves.items()):
        rid = f"r{i}"
        runs.append({"run_id": rid, "data.name": ds, "optimizer.name": opt, "batch_size": b,
                     "lr": lr, "seed": seed, "outcome": "completed"})  # fmt: skip
        for e, v in enumerate(losses, 1):
            hist.append((rid, e, "loss", v))
            hist.append((rid, e, "noise_scale", 100.0 * e))
    return pd.DataFrame(runs), pd.DataFrame(hist, columns=["run_id", "epoch", "metric", "value"])


def test_target_and_steps_by_hand() -> None:
    # one dataset, 40 training samples; batch 8 -> 5 steps per epoch, batch 20 -> 2
    curves = {
        ("d", "sgd", 8, 0.1, 0): [0.9, 0.5, 0.3],  # best 0.3
        ("d", "sgd", 8, 0.1, 1): [0.9, 0.6, 0.4],  # best 0.4 -> median over seeds 0.35
        ("d", "sgd", 8, 1.0, 0): [0.8, 0.7, 0.65],
        ("d", "sgd", 8, 1.0, 1): [0.8, 0.7, 0.65],  # median 0.65; batch 8's best: 0.35
        ("d", "sgd", 20, 0.1, 0): [0.9, 0.45],
        ("d", "sgd", 20, 0.1, 1): [0.9, 0.55],  # median 0.5: batch 20's best, the loosest
    }
    runs, hist = _runs_and_hist(curves)
    table = bs.run_table(runs, hist, {"d": 40})
    target = bs.targets(table)
    assert target["d"] == pytest.approx(1.25 * 0.5)  # 0.625
    reached = bs.reach(table, target).set_index(["batch_size", "lr", "seed"])
    # first epoch at or below 0.625: epoch 2 -> 2 x 5 steps; never; epoch 2 -> 2 x 2 steps
    assert reached.loc[(8, 0.1, 0), "steps"] == 10
    assert reached.loc[(8, 1.0, 0), "steps"] == math.inf
    assert reached.loc[(20, 0.1, 1), "steps"] == 4
    assert reached.loc[(8, 0.1, 0), "noise_at_target"] == 200.0  # its epoch 2
    assert math.isnan(reached.loc[(8, 1.0, 1), "noise_at_target"])
    diverged = runs.assign(outcome=np.where(runs.index == 0, "diverged", "completed"))
    table = bs.run_table(diverged, hist, {"d": 40})
    assert table.loc[0, "best"] == math.inf  # never the best, never reached


def planted(
    exponent: float, b_crit: float, b_noise: float, seeds: int = 5, top: float = 1.0
) -> pd.DataFrame:
    """A :func:`bs.reach` table whose truth is known: at batch B the best lr is
    0.01 (B / 8) ** exponent, the steps there are 40 (1 + b_crit / B), an lr k half-decades off
    takes 2**(k**2) times longer; the runs at each batch size's best grid lr measure a noise
    scale of b_noise at the target, all others 10 x that; seeds scatter the steps by a few
    percent and the noise scale by ~10%. The lr grid: quarter decades from 0.001 to ``top``."""
    rng = np.random.default_rng(0)
    grid = 10.0 ** np.arange(-3, np.log10(top) + 0.01, 0.25)
    rows = []
    for b in BATCH:
        best = 0.01 * (b / 8) ** exponent
        k = (np.log10(grid) - np.log10(best)) / 0.5
        at_best = grid[np.argmin(k**2)]
        for lr, kk in zip(grid, k, strict=True):
            noise = b_noise * (1 if lr == at_best else 10)
            for seed in range(seeds):
                steps = 40 * (1 + b_crit / b) * 2 ** (kk**2) * np.exp(rng.normal(0, 0.03))
                rows.append({"dataset": "d", "optimizer": "sgd", "batch_size": int(b), "lr": lr,
                             "seed": seed, "target": 0.5, "steps": steps,
                             "noise_at_target": noise * np.exp(rng.normal(0, 0.1))})  # fmt: skip
    return pd.DataFrame(rows)


def test_a_planted_study_is_recovered_with_intervals_around_the_truth() -> None:
    (r,) = bs.analyse(planted(exponent=1.0, b_crit=60.0, b_noise=60.0))
    assert r.exponent.lo <= 1.0 <= r.exponent.hi and r.exponent.value == pytest.approx(1, abs=0.1)
    assert r.b_crit.lo <= 60 <= r.b_crit.hi and r.b_crit.value == pytest.approx(60, rel=0.25)
    assert r.b_simple.value == pytest.approx(60, rel=0.1)
    assert r.ratio.lo <= 1 <= r.ratio.hi
    np.testing.assert_allclose(r.best_lr, 0.01 * BATCH / 8, rtol=0.15)
    (f,) = bs.findings([r])
    assert (f["rule_verdict"], f["b_simple_vs_b_crit"]) == ("inside", "inside")
    assert f["knee_in_range"] and f["fit_points"] == 6


def test_the_verdicts_follow_the_intervals() -> None:
    # sqrt-scaling SGD with a noise scale 10x the knee: slower than linear, B_simple too large
    (r,) = bs.analyse(planted(exponent=0.5, b_crit=30.0, b_noise=300.0))
    (f,) = bs.findings([r])
    assert r.exponent.hi < 1.0 and f["rule_verdict"] == "below"
    assert f["exponent_vs_sqrt"] == "inside"
    assert r.ratio.lo > 1 and f["b_simple_vs_b_crit"] == "above"
    # a grid that stops below the large batches' best lr: those are censored, not fitted
    (cut,) = bs.analyse(planted(exponent=1.0, b_crit=60.0, b_noise=60.0, top=0.1))
    assert list(cut.censored) == [False, False, False, True, True, True]
    assert cut.exponent.value == pytest.approx(1, abs=0.1)
    # a knee far beyond the batch sizes tried is not claimed to be in range
    (far,) = bs.findings(bs.analyse(planted(exponent=1.0, b_crit=5000.0, b_noise=5000.0)))
    assert not far["knee_in_range"]
