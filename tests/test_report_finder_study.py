"""The LR finder against the grid (nnlab.report.finder_study) on hand-made runs whose best lr and
suggestions are known."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from nnlab.report import finder_study as fs

GRID = 10.0 ** np.arange(-3, 0.01, 0.5)  # 1e-3 .. 1, half decades: one step = 0.5 decade
SEEDS = range(5)


def grid_runs(best: float, budgets=(5, 20), dataset="d", optimizer="sgd", bs=16) -> tuple:
    """Runs of 20 epochs whose val_loss at every epoch is lowest at ``best`` for every seed
    (a bowl in log lr, seeds shifting it by little); the largest lr diverged."""
    runs, hist = [], []
    rng = np.random.default_rng(1)
    for lr in GRID:
        for seed in SEEDS:
            rid = f"{dataset}{optimizer}{bs}-{lr:g}-{seed}"
            diverged = lr == GRID[-1]
            runs.append({"run_id": rid, "data.name": dataset, "optimizer.name": optimizer,
                         "batch_size": bs, "lr": lr, "seed": seed,
                         "outcome": "diverged" if diverged else "completed"})  # fmt: skip
            for e in range(1, 3 if diverged else max(budgets) + 1):
                value = 0.1 + (np.log10(lr) - np.log10(best)) ** 2 + rng.normal(0, 0.005) + 1 / e
                hist.append((rid, e, "val_loss", value))
    return pd.DataFrame(runs), pd.DataFrame(hist, columns=["run_id", "epoch", "metric", "value"])


def finder_runs(valley: float, minimum: float, steep: float, dataset="d", optimizer="sgd", bs=16):
    """One range test per seed, suggestions scattered by ~1.1x around the given rates."""
    rng = np.random.default_rng(2)
    return pd.DataFrame([
        {"data.name": dataset, "optimizer.name": optimizer, "batch_size": bs, "seed": s,
         "suggested_lr_valley": valley * 10 ** rng.normal(0, 0.04),
         "suggested_lr_minimum": minimum * 10 ** rng.normal(0, 0.04),
         "suggested_lr_steep": steep}
        for s in SEEDS
    ])  # fmt: skip


def test_budgets_are_an_eighth_three_eighths_and_all() -> None:
    assert fs.budgets(40) == [5, 15, 40]
    assert fs.budgets(8) == [1, 3, 8] and fs.budgets(1) == [1]


def test_each_rule_is_judged_by_its_distance_in_grid_steps() -> None:
    runs, hist = grid_runs(best=0.01)
    grid = fs.at_budgets(runs, hist, "val_loss", [5, 20])
    # valley 0.6 steps below the best, minimum 2.6 steps above, steep at the diverged lr 1.0
    table = fs.compare(grid, fs.suggestions(finder_runs(0.005, 0.2, 1.0)))
    assert list(table["budget"].unique()) == [5, 20]
    t = table[table["budget"] == 20].set_index("rule")
    assert list(t.index) == ["valley", "minimum", "steep"]
    assert np.allclose(t["best_lr"], 0.01) and t["grid_step"].iloc[0] == 0.5
    assert t.loc["valley", "steps_off"] == pytest.approx(np.log10(0.5) / 0.5, abs=0.15)
    assert t.loc["valley", "verdict"] == "within one step"
    assert t.loc["minimum", "distance"] == pytest.approx(np.log10(20) / 0.5, abs=0.15)
    assert t.loc["minimum", "verdict"] == "more than one step off"
    assert t.loc["steep", "distance"] == pytest.approx(4.0)  # 1.0 against 0.01: 2 decades
    summary = fs.summary(table).set_index(["rule", "optimizer"])
    assert summary.loc[("valley", "all"), "within one step"] == 2
    assert summary.loc[("minimum", "sgd"), "more than one step off"] == 2


def test_a_best_lr_the_seeds_disagree_on_leaves_the_verdict_unresolved() -> None:
    runs, hist = grid_runs(best=0.01)
    # seeds 0-1 find 0.01 best, seeds 2-4 find 0.1 best (bowls at opposite ends)
    shifted = runs["seed"] >= 2
    ids = set(runs.loc[shifted, "run_id"])
    lr_of = dict(zip(runs["run_id"], runs["lr"], strict=True))
    moved = hist["run_id"].isin(ids)
    hist.loc[moved, "value"] = [
        0.1 + (np.log10(lr_of[r]) + 1) ** 2 for r in hist.loc[moved, "run_id"]
    ]
    grid = fs.at_budgets(runs, hist, "val_loss", [20])
    (row,) = (
        fs.compare(grid, fs.suggestions(finder_runs(0.01, 0.01, 0.01)))
        .query("rule == 'steep'")
        .to_dict("records")
    )
    assert row["best_lr_lo"] == pytest.approx(0.01) and row["best_lr_hi"] == pytest.approx(0.1)
    assert row["distance_lo"] == 0 and row["distance_hi"] == pytest.approx(2)
    assert row["verdict"] == "unresolved"


def test_unusable_runs_count_as_never_best_and_setups_without_tests_are_left_out() -> None:
    runs, hist = grid_runs(best=1.0)  # the best lr of the bowl diverged in every seed
    grid = fs.at_budgets(runs, hist, "val_loss", [5])
    assert (grid.loc[grid["lr"] == 1.0, "value"] == math.inf).all()
    table = fs.compare(grid, fs.suggestions(finder_runs(0.3, 0.3, 0.3)))
    assert np.allclose(table["best_lr"], 10**-0.5)
    other = fs.suggestions(finder_runs(0.3, 0.3, 0.3, dataset="other"))
    assert fs.compare(grid, other).empty


def test_a_best_lr_at_the_grids_edge_is_never_called_within_one_step() -> None:
    runs, hist = grid_runs(best=1e-4)  # the bowl's bottom lies below the grid's 1e-3
    grid = fs.at_budgets(runs, hist, "val_loss", [20])
    # 0.6 steps above the edge; 3 steps above; 1 step below (beyond the edge)
    t = fs.compare(grid, fs.suggestions(finder_runs(2e-3, 3e-2, 3e-4))).set_index("rule")
    assert t["best_at_grid_edge"].all() and np.allclose(t["best_lr"], 1e-3)
    assert t.loc["valley", "distance_hi"] <= 1  # the interval alone would say "within"
    assert t.loc["valley", "verdict"] == "unresolved"
    assert t.loc["minimum", "verdict"] == "more than one step off"  # the true best is farther
    assert t.loc["steep", "verdict"] == "unresolved"  # beyond the edge: it could be closer
