"""What each report figure shows, checked against the data it is drawn from.

The figures are pure functions of tables, so the inputs here are hand-built frames shaped like
``nnlab.analysis``'s (a small synthetic sweep with a best lr in the middle of the range, a
diverging lr, an lr that never learns and one diverged seed among good ones) passed through the
real ``nnlab.report.tables`` functions. Each figure exposes what it places as ``fig.nnlab_data``;
the tests recompute the expected values from the raw frames independently, and check that the
exposed values are the ones actually drawn (lines, patches, markers on the axes)."""

from __future__ import annotations

import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from bootstrap_reference import median_interval
from matplotlib.collections import PathCollection
from matplotlib.patches import Rectangle

from nnlab import figures as fg
from nnlab.report import tables as rt

METRIC = "loss"
LRS = (1e-3, 1e-2, 1e-1, 3.0, 100.0)  # 3.0 never learns, 100.0 diverges at epoch 2
STUCK_LR, DIVERGED_LR = 3.0, 100.0
BATCH_SIZES = (16, 64)
EPOCHS = (2, 5)
SEEDS = (0, 1, 2, 3, 4, 5)  # enough for the intervals to decide (nnlab.report.intervals)
ODD_RUN = (0.1, 64, 5, 2)  # (lr, bs, epochs, seed): the one seed of a good lr that diverged
# Per lr: (floor, rate): loss(e) = floor + (1 - floor) * rate**e. 0.1 is best at 2 epochs,
# 0.01 at 5: the best lr is in the middle of the range and moves with the budget.
SHAPE = {1e-3: (0.05, 0.9), 1e-2: (0.05, 0.6), 1e-1: (0.15, 0.3)}
# The documented colour of each outcome (not read from the module, so a swap there fails).
OUTCOME_COLOR = {
    "completed": "#0072b2",
    "early_stopped": "#56b4e9",
    "diverged": "#d55e00",
    "failed": "#000000",
    "killed": "#999999",
    "no learning": "#e69f00",
}


def _history(lr: float, bs: int, epochs: int, seed: int) -> tuple[list[float], str]:
    """Per-epoch loss of one synthetic run and its outcome."""
    if lr == DIVERGED_LR:
        return [2.0, np.inf], "diverged"
    if lr == STUCK_LR:
        return [0.69 + 0.001 * e for e in range(epochs)], "completed"  # never below epoch 1
    floor, rate = SHAPE[lr]
    values = [floor + (1 - floor) * rate**e + 0.01 * seed + 0.02 * (bs == 64)
              for e in range(1, epochs + 1)]  # fmt: skip
    if (lr, bs, epochs, seed) == ODD_RUN:
        return [*values[:2], np.inf], "diverged"
    return values, "completed"


@pytest.fixture(scope="module")
def frames() -> dict:
    """``runs`` and ``hist`` like ``load_runs`` / ``load_histories``, and the report tables."""
    runs, hist = [], []
    for lr in LRS:
        for bs in BATCH_SIZES:
            for ep in EPOCHS:
                for seed in SEEDS:
                    rid = f"lr{lr:g}-bs{bs}-e{ep}-s{seed}"
                    values, outcome = _history(lr, bs, ep, seed)
                    key = {"run_id": rid, "lr": lr, "batch_size": bs, "epochs": ep, "seed": seed,
                           "outcome": outcome}  # fmt: skip
                    final = values[-1] if outcome == "completed" else np.nan
                    runs.append({**key, "run_name": rid, f"final_{METRIC}": final})
                    hist += [{**key, "epoch": e, "metric": METRIC, "value": v}
                             for e, v in enumerate(values, 1)]  # fmt: skip
    runs, hist = pd.DataFrame(runs), pd.DataFrame(hist)
    curves, target = rt.per_run_curves(runs, hist, METRIC)
    stuck = rt.not_learning(runs, hist, METRIC)
    budget = rt.final_by_budget(runs, METRIC, stuck)
    return {
        "runs": runs,
        "hist": hist,
        "target": target,
        "stuck": stuck,
        "lr_batch": rt.per_lr_batch(curves),
        "budget": budget,
        "best": rt.best_lr_per_budget(runs, METRIC, stuck),
        "shift": rt.budget_shift(runs, METRIC, stuck),
        "counts": rt.outcome_counts(runs, stuck),
    }


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _median_final(runs: pd.DataFrame) -> pd.Series:
    """Median over seeds of the final loss per (batch_size, epochs, lr); unusable runs = inf."""
    final = runs[f"final_{METRIC}"].where(runs["outcome"] == "completed", np.inf)
    return runs.assign(final=final).groupby(["batch_size", "epochs", "lr"])["final"].median()


def _luminance(color) -> float:
    r, g, b = mcolors.to_rgb(color)
    return 0.299 * r + 0.587 * g + 0.114 * b


def _panel_bs(ax) -> int:
    return int(ax.get_title().removeprefix("batch size "))


# ------------------------------------------------------------------------------ 1 curves


def test_learning_curves_draw_the_median_of_each_lr_and_mark_what_they_leave_out(frames):
    runs, hist = frames["runs"], frames["hist"]
    fig = fg.learning_curves(runs, hist, METRIC, frames["target"], frames["stuck"])
    data = fig.nnlab_data
    longest = runs[runs["epochs"] == max(EPOCHS)]
    # One line per (batch size, lr) except the lr that never learned: none dropped, none extra.
    drawn_lrs = [lr for lr in LRS if lr != STUCK_LR]
    assert set(data["lines"]) == {(bs, lr) for bs in BATCH_SIZES for lr in drawn_lrs}
    top = data["ylim"][1] / 1.05
    for (bs, lr), line in data["lines"].items():
        ids = longest.loc[(longest["lr"] == lr) & (longest["batch_size"] == bs), "run_id"]
        h = hist[hist["run_id"].isin(ids)]
        shown = h["value"].where(np.isfinite(h["value"]), top).clip(upper=top)
        expected = shown.groupby(h["epoch"]).median()
        np.testing.assert_array_equal(line["epoch"], expected.index)
        np.testing.assert_allclose(line["median"], expected.to_numpy())
        for i, ep in enumerate(line["epoch"][:2]):  # the band: the median's 95% interval
            at = h[h["epoch"] == ep].assign(shown=shown[h["epoch"] == ep])
            want = median_interval(at, "shown", sorted(SEEDS))
            assert (line["lo"][i], line["hi"][i]) == pytest.approx(want[1:]), (bs, lr, ep)
        assert (line["lo"] <= line["median"]).all() and (line["median"] <= line["hi"]).all()
    # The median of a good lr is not pulled up by its one diverged seed (inf is at the top).
    assert (data["lines"][(64, 0.1)]["median"] < top).all()
    # Colours: one per lr, ordered dark (small lr) to light (large lr), the same in every panel.
    lum = [_luminance(data["colors"][lr]) for lr in sorted(data["colors"])]
    assert lum == sorted(lum) and len(set(lum)) == len(LRS)
    for (_bs, lr), line in data["lines"].items():
        assert line["color"] == data["colors"][lr]
    # A cross at the last logged epoch of every diverged longest-budget run, and only those.
    bad = longest[longest["outcome"] == "diverged"]
    last = hist[hist["run_id"].isin(bad["run_id"])].groupby("run_id")["epoch"].max()
    assert {(c["run_id"], c["epoch"]) for c in data["crosses"]} == set(last.items())
    # The runs that never learned are counted on their panel, not drawn.
    assert data["left_out"] == {(bs, STUCK_LR): len(SEEDS) for bs in BATCH_SIZES}
    for bs in BATCH_SIZES:
        assert any(f"lr=3: {len(SEEDS)} runs did not learn" in n for n in data["notes"][bs])
    assert data["target"] == frames["target"]
    # What is exposed is what is on the axes: each line's data and colour.
    for ax in fig.axes:
        if not ax.get_title().startswith("batch size"):
            continue
        bs = _panel_bs(ax)
        drawn = [(tuple(ln.get_xdata()), tuple(ln.get_ydata()), ln.get_color())
                 for ln in ax.get_lines() if ln.get_linestyle() == "-"]  # fmt: skip
        exposed = [(tuple(v["epoch"]), tuple(v["median"]), v["color"])
                   for (b, _lr), v in data["lines"].items() if b == bs]  # fmt: skip
        assert drawn == exposed


# ----------------------------------------------------------------------------- 2 heatmap


def test_heatmap_boxes_the_lowest_median_of_each_budget_never_a_grey_cell(frames):
    budget, runs = frames["budget"], frames["runs"]
    fig = fg.budget_heatmap(budget, METRIC)
    data = fig.nnlab_data
    med = _median_final(runs)
    expected = {}
    for (bs, ep), grp in med.groupby(level=["batch_size", "epochs"]):
        ok = grp[np.isfinite(grp)].droplevel(["batch_size", "epochs"]).drop(STUCK_LR)
        expected[(bs, ep)] = ok.idxmin()
        worst = ok.idxmax()
        assert worst != expected[(bs, ep)]  # the frames can tell a best-vs-worst swap apart
    boxed = {(b["batch_size"], b["epochs"]): b["lr"] for b in data["boxed"]}
    assert boxed == expected
    assert boxed[(16, 2)] == 0.1 and boxed[(16, 5)] == 0.01  # the best lr moves with the budget
    # The boxes agree with the best-lr table where no "no learning" cell is lower.
    best = frames["best"].set_index(["batch_size", "epochs"])["best_lr"].to_dict()
    assert boxed == best
    # Cells: the table's medians; diverged cells and no-learning cells are grey and say so.
    cells = {(c["batch_size"], c["lr"], c["epochs"]): c for c in data["cells"]}
    assert len(cells) == len(budget)
    for row in budget.itertuples():
        c = cells[(row.batch_size, row.lr, row.epochs)]
        assert c["value"] == row.median_final or not np.isfinite(row.median_final)
        if row.lr == DIVERGED_LR:
            assert c["grey"] and c["text"] == f"diverged\n{len(SEEDS)}/{len(SEEDS)}"
        elif row.lr == STUCK_LR:
            assert c["grey"] and c["text"].startswith("no learning")
        else:
            assert not c["grey"] and c["text"].startswith(f"{row.median_final:.3f}")
    assert cells[(64, 0.1, 5)]["text"].endswith(f"1/{len(SEEDS)} ✕")  # the diverged seed counted
    coloured = [c["value"] for c in data["cells"] if not c["grey"]]
    assert data["norm"] == (min(coloured), max(coloured))
    # What is exposed is what is drawn: each box's row and column read back from the axes.
    drawn = set()
    rows = [float(t.get_text()) for t in fig.axes[0].get_yticklabels()]  # shared by the panels
    for ax in fig.axes:
        if not ax.get_title().startswith("batch size"):
            continue
        cols = [int(t.get_text()) for t in ax.get_xticklabels()]
        for p in ax.patches:
            if isinstance(p, Rectangle) and not p.get_fill():
                x, y = p.get_xy()
                drawn.add(((_panel_bs(ax), cols[round(x - 0.04)]), rows[round(y - 0.04)]))
    assert drawn == set(boxed.items())


# ---------------------------------------------------------------------- 3 speed vs quality


def test_speed_quality_places_each_setting_at_its_table_values(frames):
    lr_batch = frames["lr_batch"]
    fig = fg.speed_quality(lr_batch, METRIC, frames["target"])
    data = fig.nnlab_data
    pts = data["points"].set_index(["lr", "batch_size"])
    assert len(pts) == len(lr_batch) == len(LRS) * len(BATCH_SIZES)
    for row in lr_batch.itertuples():
        p = pts.loc[(row.lr, row.batch_size)]
        unusable = not np.isfinite(row.median_best) or row.not_learning * 2 > row.runs
        assert p["usable"] == (not unusable)
        assert p["y"] == (data["top_row_y"] if unusable else row.median_best)
        reached = np.isfinite(row.median_epochs_to_target)
        assert p["reached"] == reached
        if reached:
            assert p["x"] == row.median_epochs_to_target
        else:  # in the "not reached" column, right of the budget
            assert p["x"] == pytest.approx(data["not_reached_x"], rel=0.1)
            assert p["x"] > data["budget"]
        assert p["color"] == data["colors"][row.lr]
    assert not pts.loc[(STUCK_LR, 16), "usable"] and not pts.loc[(DIVERGED_LR, 16), "usable"]
    assert pts.loc[(0.1, 16), "reached"] and not pts.loc[(1e-3, 16), "reached"]
    # Drawn markers: same positions in the same order; hollow exactly where never reached.
    ax = fig.axes[0]
    markers = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(markers) == len(pts)
    for c, p in zip(markers, data["points"].itertuples(), strict=True):
        np.testing.assert_allclose(c.get_offsets()[0], (p.x, p.y))
        hollow = tuple(c.get_facecolor()[0]) == (1.0, 1.0, 1.0, 1.0)
        assert hollow == (p.usable and not p.reached)


# ------------------------------------------------------------------- 4 best lr per budget


def test_best_lr_lines_follow_the_best_lr_table(frames):
    best, budget = frames["best"], frames["budget"]
    lrs = budget.loc[np.isfinite(budget["median_final"]), "lr"].unique()
    fig = fg.best_lr(best, lrs, frames["shift"])
    data = fig.nnlab_data
    assert set(data["lines"]) == set(BATCH_SIZES)
    med = _median_final(frames["runs"])
    for bs, line in data["lines"].items():
        np.testing.assert_array_equal(line["epochs"], sorted(EPOCHS))
        for ep, lr in zip(line["epochs"], line["best_lr"], strict=True):
            assert lr == med.loc[(bs, ep)].idxmin()
    # 0.1 at 2 epochs, 0.01 at 5, on every seed: beyond the intervals
    assert data["trend"] == "short budgets favour larger lrs, beyond the intervals"
    for bs, line in data["lines"].items():  # the bar spans the lrs not separated from the best
        tied = best[best["batch_size"] == bs].sort_values("epochs")["tied_lrs"]
        spans = [(min(map(float, t.split())), max(map(float, t.split()))) for t in tied]
        np.testing.assert_array_equal(line["tied"], spans)
    drawn = {int(ln.get_label()): tuple(ln.get_ydata()) for ln in fig.axes[0].get_lines()}
    assert drawn == {bs: tuple(v["best_lr"]) for bs, v in data["lines"].items()}


# -------------------------------------------------------------------- 5 batch-size effect


def test_batch_size_effect_lines_are_usable_finals_and_the_rest_are_crosses(frames):
    runs, stuck = frames["runs"], frames["stuck"]
    fig = fg.batch_size_effect(runs, METRIC, stuck)
    data = fig.nnlab_data
    assert data["epochs"] == max(EPOCHS)
    top = runs[runs["epochs"] == max(EPOCHS)]
    good = top[(top["outcome"] == "completed") & ~stuck[top.index]]
    for bs in BATCH_SIZES:
        g = good[good["batch_size"] == bs].groupby("lr")[f"final_{METRIC}"]
        line = data["lines"][bs]
        np.testing.assert_array_equal(line["lr"], g.median().index)
        np.testing.assert_allclose(line["median"], g.median().to_numpy())
        for lr, lo, hi in zip(line["lr"], line["lo"], line["hi"], strict=True):
            want = median_interval(good[(good["batch_size"] == bs) & (good["lr"] == lr)],
                                   f"final_{METRIC}", sorted(SEEDS))  # fmt: skip
            assert (lo, hi) == pytest.approx(want[1:]), (bs, lr)
    assert STUCK_LR not in data["lines"][16]["lr"] and DIVERGED_LR not in data["lines"][16]["lr"]
    bad = top.loc[~top.index.isin(good.index), "run_id"]
    assert sorted(c["run_id"] for c in data["crosses"]) == sorted(bad)
    assert all(c["y"] == data["top"] for c in data["crosses"])
    drawn = {ln.get_label(): tuple(ln.get_ydata()) for ln in fig.axes[0].get_lines()}
    assert drawn == {str(bs): tuple(v["median"]) for bs, v in data["lines"].items()}


# --------------------------------------------------------------------------- 6 outcomes


def test_outcome_bars_stack_to_the_totals_with_each_outcome_in_its_colour(frames):
    counts, runs, stuck = frames["counts"], frames["runs"], frames["stuck"]
    fig = fg.outcomes(counts)
    data = fig.nnlab_data
    bars = data["bars"]
    for (lr, bs), grp in runs.groupby(["lr", "batch_size"]):
        seg = bars[(bars["lr"] == lr) & (bars["batch_size"] == bs)].set_index("outcome")
        assert seg["count"].sum() == len(grp)  # nothing counted twice, nothing lost
        n_stuck = int(stuck[grp.index].sum())
        n_done = int((grp["outcome"] == "completed").sum())
        assert seg.loc["no learning", "count"] == n_stuck
        assert seg.loc["completed", "count"] == n_done - n_stuck
        assert seg.loc["diverged", "count"] == int((grp["outcome"] == "diverged").sum())
        # Stacked: each segment starts where the one below ends.
        np.testing.assert_allclose(seg["bottom"].iloc[1:], seg["count"].cumsum().iloc[:-1])
    for o, color in data["colors"].items():
        assert color == OUTCOME_COLOR[o], o
        assert (bars.loc[bars["outcome"] == o, "color"] == OUTCOME_COLOR[o]).all()
    assert list(data["colors"]) == ["completed", "no learning", "diverged"]  # stacking order
    labelled = bars[bars["label"].notna()]
    assert set(labelled["outcome"]) == {"no learning", "diverged"}
    assert (labelled["label"] == labelled["count"].astype(str)).all()
    n_bad = int((runs["outcome"] == "diverged").sum() + stuck.sum())
    assert data["title"].startswith(f"Run outcomes: {n_bad} of {len(runs)} runs")
    # Drawn bars: height and colour of each segment, panel by panel, in stacking order.
    for ax in fig.axes:
        bs = _panel_bs(ax)
        drawn = [(p.get_height(), mcolors.to_hex(p.get_facecolor())) for p in ax.patches]
        exposed = bars[bars["batch_size"] == bs]
        assert drawn == list(zip(exposed["count"], exposed["color"], strict=True))


# ------------------------------------------------------------------ 7 decision boundaries


class _Logistic:
    """P(class 1) = sigmoid(4 x0), as two softmax columns (class 0, class 1)."""

    def predict(self, x: np.ndarray) -> np.ndarray:
        p1 = 1 / (1 + np.exp(-4 * x[:, 0]))
        return np.c_[1 - p1, p1]


class _Broken:
    """A model whose weights are not finite: every prediction is NaN."""

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.full((len(x), 1), np.nan)


def test_decision_boundaries_draw_class_1_probability_and_the_points_by_class():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 2)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int)
    panels = [{"title": "good", "model": _Logistic(), "x": x, "y": y},
              {"title": "broken", "model": _Broken(), "x": x, "y": y}]  # fmt: skip
    fig = fg.decision_boundaries(panels)
    good, broken = fig.nnlab_data["panels"]
    x0, x1, y0, y1 = good["extent"]
    assert (x0, x1) == pytest.approx((x[:, 0].min() - 0.5, x[:, 0].max() + 0.5))
    gx = np.linspace(x0, x1, good["prob"].shape[1]).astype(np.float32)
    expected = 1 / (1 + np.exp(-4 * gx))  # class 1 is right of x0 = 0, on every grid row
    np.testing.assert_allclose(good["prob"], np.broadcast_to(expected, good["prob"].shape),
                               rtol=1e-5)  # fmt: skip
    assert not good["no_prediction"]
    np.testing.assert_array_equal(good["points"][1], x[y == 1])
    np.testing.assert_array_equal(good["points"][0], x[y == 0])
    assert broken["no_prediction"] and (broken["prob"] == 0.5).all()
    texts = [t.get_text() for t in fig.axes[1].texts]
    assert any(t.startswith("no prediction") for t in texts)
    assert not any(t.startswith("no prediction") for t in fig.axes[0].texts)
