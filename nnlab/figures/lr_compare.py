"""Figures 3-5, learning rates compared: speed vs quality, best lr per budget, batch-size effect."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from nnlab.figures.style import (
    BAD_COLOR,
    attach,
    bs_palette,
    log_ticks,
    lr_palette,
    set_style,
    use_log,
)
from nnlab.report.intervals import Resampled
from nnlab.report.tables import fmt_lr
from nnlab.tracking.schema import OK_OUTCOMES

# ---------------------------------------------------------------------- 3 speed vs quality


def _sq_points(lr_batch: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Where each (lr, batch size) goes on the speed/quality plane, in drawing order.

    Returns
    -------
    (points, layout)
        ``points``: one row per setting, ``lr, batch_size, x, y, reached, usable, marker``
        (``x`` is the "not reached" column when the target was never reached, ``y`` the top row
        when most runs diverged, failed or never learned: ``usable`` False);
        ``layout``: ``markers, nr_x, y_bad, budget, min_x, max_x, log_y, any_off``.
    """
    markers = dict(zip(sorted(lr_batch["batch_size"].unique()), "osD^vP*", strict=False))
    fin_x = lr_batch["median_epochs_to_target"].replace(np.inf, np.nan)
    max_x = float(np.nanmax(fin_x)) if fin_x.notna().any() else 1.0
    budget = float(lr_batch["epochs_budget"].max())
    nr_x = max(max_x, budget) * 1.35  # the "not reached" column
    # Settings whose runs mostly diverged, failed or never learned go to a row at the top.
    off = ~np.isfinite(lr_batch["median_best"])
    if "not_learning" in lr_batch:
        off |= lr_batch["not_learning"] * 2 > lr_batch["runs"]
    lr_batch = lr_batch.assign(median_best=lr_batch["median_best"].where(~off, np.inf))
    yv = lr_batch["median_best"].to_numpy(dtype=float)
    fy = yv[np.isfinite(yv)]
    y_bad = float(fy.max()) * 1.5 if len(fy) else 1.0
    rows = []
    for k, (bs, grp) in enumerate(lr_batch.groupby("batch_size")):
        grp = grp.sort_values("lr")
        shift = 1 + 0.07 * (k - (len(markers) - 1) / 2)  # side by side in the column
        x = grp["median_epochs_to_target"].replace(np.inf, nr_x * shift).to_numpy(dtype=float)
        y = grp["median_best"].replace(np.inf, y_bad).to_numpy(dtype=float)
        reached = np.isfinite(grp["median_epochs_to_target"]).to_numpy()
        usable = np.isfinite(grp["median_best"]).to_numpy()
        for xi, yi, lr, r, u in zip(x, y, grp["lr"], reached, usable, strict=True):
            rows.append({"lr": float(lr), "batch_size": int(bs), "x": xi, "y": yi,
                         "reached": bool(r), "usable": bool(u), "marker": markers[bs]})  # fmt: skip
    min_x = float(np.nanmin(fin_x)) if fin_x.notna().any() else 1.0
    layout = {
        "markers": markers, "nr_x": nr_x, "y_bad": y_bad, "budget": budget, "min_x": min_x,
        "max_x": max_x, "log_y": use_log(fy), "any_off": bool((~np.isfinite(yv)).any()),
    }  # fmt: skip
    return pd.DataFrame(rows), layout


def _sq_draw_points(ax, points: pd.DataFrame, pal: dict) -> None:
    """One marker per setting: a cross with a vermilion edge when unusable, hollow when the
    target was never reached."""
    for p in points.itertuples():
        if not p.usable:
            ax.scatter(
                p.x,
                p.y,
                marker="X",
                s=90,
                color=pal[p.lr],
                edgecolor=BAD_COLOR,
                linewidth=1.2,
                zorder=3,
            )
            continue
        ax.scatter(
            p.x,
            p.y,
            marker=p.marker,
            s=70,
            zorder=3,
            facecolor=pal[p.lr] if p.reached else "white",
            edgecolor=pal[p.lr],
            linewidth=2,
        )


def _sq_axes(ax, lay: dict, metric: str, target: float) -> None:
    """The top row's rule, the budget line, the log x axis with its "not reached" tick, labels."""
    nr_x, y_bad, budget = lay["nr_x"], lay["y_bad"], lay["budget"]
    if lay["any_off"]:
        ax.axhline(y_bad / 1.2, color="0.6", lw=0.8)
        ax.text(
            nr_x * 1.2,
            y_bad * 1.02,
            "diverged / failed / no learning ",
            ha="right",
            va="bottom",
            fontsize=8,
            color="0.35",
        )
    ax.axvline(budget, color="0.5", ls=":", lw=1)
    ax.text(
        budget,
        0.01,
        f"budget {budget:g} ",
        transform=ax.get_xaxis_transform(),
        va="bottom",
        ha="right",
        fontsize=8,
        color="0.4",
    )
    ax.set_xscale("log")
    min_x = lay["min_x"]
    ax.set_xlim(max(0.7, min_x / 1.6), nr_x * 1.25)
    ticks = [
        t
        for t in [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]
        if min_x / 1.6 <= t <= max(lay["max_x"], budget)
    ]
    ax.set_xticks([*ticks, nr_x], [*map(str, ticks), "not\nreached"])
    ax.minorticks_off()
    if lay["log_y"]:
        ax.set_yscale("log")
        log_ticks(ax.yaxis)
    ax.set_xlabel(f"epochs to reach {metric} ≤ {target:.3f} (median of seeds; fewer = faster)")
    ax.set_ylabel(f"lowest {metric} reached (median of seeds; lower = more accurate)")


def _sq_legends(ax, pal: dict, markers: dict) -> None:
    """Learning-rate colours (upper) and batch-size markers with the special marks (lower)."""
    handles = [
        Line2D([], [], color=c, marker="o", ls="", ms=8, label=fmt_lr(lr)) for lr, c in pal.items()
    ]
    leg1 = ax.legend(
        handles=handles,
        title="learning rate",
        loc="upper left",
        bbox_to_anchor=(1.01, 1),
        frameon=False,
    )
    ax.add_artist(leg1)
    bs_h = [
        Line2D([], [], color="0.3", marker=m, ls="", ms=8, label=str(b)) for b, m in markers.items()
    ]
    bs_h += [
        Line2D([], [], color="0.3", marker="o", mfc="white", ls="", ms=8, label="never reached"),
        Line2D(
            [],
            [],
            color="0.6",
            mec=BAD_COLOR,
            marker="X",
            ls="",
            ms=8,
            label="diverged/failed/\nno learning (top)",
        ),
    ]
    ax.legend(
        handles=bs_h, title="batch size", loc="lower left", bbox_to_anchor=(1.01, 0), frameon=False
    )


def speed_quality(lr_batch: pd.DataFrame, metric: str, target: float) -> plt.Figure:
    """Epochs to reach the target (x) against best ``metric`` (y): one point per (lr, batch size),
    coloured by lr, marker by batch size. Settings that never reached the target sit in a "not
    reached" column on the right; those whose runs mostly diverged, failed or never learned in a
    row at the top.

    Parameters
    ----------
    lr_batch : DataFrame
        ``nnlab.report.tables.per_lr_batch``: one row per (lr, batch_size).
    metric : str
        Metric name for the labels.
    target : float
        The target the x axis counts epochs to.

    Returns
    -------
    Figure
        With ``fig.nnlab_data``: ``points`` (DataFrame, one row per marker: ``lr, batch_size,
        x, y, reached, usable, marker, color``); ``not_reached_x`` (x of the "not reached"
        column); ``top_row_y`` (y of the unusable row); ``budget``; ``colors`` ``{lr: RGBA}``.
    """
    set_style()
    fig, ax = plt.subplots(figsize=(8.2, 5.2))
    pal = lr_palette(lr_batch["lr"])
    points, lay = _sq_points(lr_batch)
    _sq_draw_points(ax, points, pal)
    _sq_axes(ax, lay, metric, target)
    _sq_legends(ax, pal, lay["markers"])
    ax.set_title("Speed vs quality per learning rate: lower left is fast and accurate")
    fig.tight_layout()
    points["color"] = [pal[lr] for lr in points["lr"]] if len(points) else []
    return attach(
        fig,
        points=points,
        not_reached_x=lay["nr_x"],
        top_row_y=lay["y_bad"],
        budget=lay["budget"],
        colors=pal,
    )


# ------------------------------------------------------------------- 4 best lr per budget


def _tied_ranges(best: pd.DataFrame) -> np.ndarray:
    """(smallest, largest) lr of each row's ``tied_lrs`` (the best lr alone when absent),
    shape (n_rows, 2)."""
    if "tied_lrs" not in best:
        return np.column_stack([best["best_lr"], best["best_lr"]]).astype(float)
    sets = [[float(x) for x in str(t).split()] for t in best["tied_lrs"]]
    return np.array([[min(s), max(s)] for s in sets], dtype=float).reshape(-1, 2)


def best_lr(best: pd.DataFrame, lrs, shift: pd.DataFrame | None = None) -> plt.Figure:
    """The lr with the lowest median final metric for each epoch budget (its own trials), one
    line per batch size; a pale bar spans the lrs the 95% intervals do not separate from it.

    Parameters
    ----------
    best : DataFrame
        ``nnlab.report.tables.best_lr_per_budget``: ``batch_size, epochs, best_lr, ...``.
    lrs : iterable of float
        Learning rates with a usable result (the y ticks).
    shift : DataFrame, optional
        ``nnlab.report.tables.budget_shift``: the title says what it resolves.

    Returns
    -------
    Figure
        With ``fig.nnlab_data``: ``lines`` ``{batch_size: {"epochs", "best_lr": arrays
        (n_budgets,), "tied": array (n_budgets, 2), "color": RGB}}`` (``epochs`` before the
        small nudge that keeps batch sizes apart; ``tied``: the smallest and largest lr the
        intervals do not separate from the best, drawn as a bar); ``trend`` (the title's
        sentence); ``yticks`` (sorted lrs).
    """
    set_style()
    fig, ax = plt.subplots(figsize=(7.6, 4.6))
    pal = bs_palette(best["batch_size"].unique())
    n = len(pal)
    lines = {}
    for k, (bs, c) in enumerate(pal.items()):
        b = best[best["batch_size"] == bs].sort_values("epochs")
        nudge = 1 + 0.04 * (k - (n - 1) / 2)  # keep coinciding points of batch sizes apart
        ax.plot(
            b["epochs"] * nudge, b["best_lr"], "o-", color=c, ms=9, lw=2, label=f"{bs}", alpha=0.9
        )
        tied = _tied_ranges(b)
        ax.vlines(b["epochs"] * nudge, tied[:, 0], tied[:, 1], color=c, lw=5, alpha=0.3)
        lines[int(bs)] = {
            "epochs": b["epochs"].to_numpy(), "best_lr": b["best_lr"].to_numpy(), "color": c,
            "tied": tied,
        }  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    lrs = sorted(lrs)  # only lrs with a usable result: a diverged-only lr cannot be best
    ax.set_yticks(lrs, [fmt_lr(x) for x in lrs])
    ax.minorticks_off()
    ax.set_ylim(lrs[0] / 2, lrs[-1] * 2)
    budgets = sorted(best["epochs"].unique())
    ax.set_xticks(budgets, [str(b) for b in budgets])
    ax.set_xlim(budgets[0] / 1.5, budgets[-1] * 1.5)
    ax.set_xlabel("epoch budget (its own trials)")
    ax.set_ylabel("best learning rate (lowest median final loss)")
    ax.legend(title="batch size", frameon=False, loc="center left", bbox_to_anchor=(1.01, 0.5))
    shifts = [] if shift is None else shift["shift"].tolist()
    if shifts and all(x == "larger" for x in shifts):
        say = "short budgets favour larger lrs, beyond the intervals"
    elif shifts and all(x == "smaller" for x in shifts):
        say = "short budgets favour smaller lrs, beyond the intervals"
    elif shifts:
        n = sum(x != "unresolved" for x in shifts)
        say = f"a shift beyond the intervals for {n} of {len(shifts)} batch sizes"
    else:
        say = "no shift tested"
    ax.set_title(f"Best learning rate for each epoch budget: {say}")
    fig.tight_layout()
    return attach(fig, lines=lines, trend=say, yticks=lrs)


# -------------------------------------------------------------------- 5 batch-size effect


def batch_size_effect(
    runs: pd.DataFrame, metric: str, stuck: pd.Series | None = None
) -> plt.Figure:
    """Final ``metric`` against lr at the largest epoch budget, one line per batch size (median
    over seeds, band: its 95% bootstrap interval); runs that diverged, failed or never learned
    (``stuck``, aligned with ``runs``) as crosses at the top instead of stretching the scale.

    Parameters
    ----------
    runs : DataFrame
        ``nnlab.analysis.load_runs`` frame with ``final_<metric>``.
    metric : str
        Metric to draw (lower is better).
    stuck : Series of bool, optional
        ``nnlab.report.tables.not_learning`` flags, indexed like ``runs``.

    Returns
    -------
    Figure
        With ``fig.nnlab_data``: ``lines`` ``{batch_size: {"lr", "median", "lo", "hi": arrays
        (n_lrs,), "color": RGB}}`` (``lo``, ``hi``: the interval of the median); ``crosses`` list of ``{"batch_size", "lr", "run_id", "y"}``
        (``lr`` before the jitter); ``epochs`` (the budget drawn); ``top`` (the crosses' y).
    """
    set_style()
    stuck = pd.Series(False, index=runs.index) if stuck is None else stuck
    longest = runs[(runs["epochs"] == runs["epochs"].max()).to_numpy()].copy()
    stuck = stuck[(runs["epochs"] == runs["epochs"].max()).to_numpy()].to_numpy()
    col = f"final_{metric}"
    ok = longest["outcome"].isin(OK_OUTCOMES) & np.isfinite(longest[col]) & ~stuck
    fin = longest.loc[ok, col].to_numpy(dtype=float)
    top = float(fin.max()) * 1.4 if len(fin) else 1.0
    fig, ax = plt.subplots(figsize=(7.6, 4.6))
    pal = bs_palette(longest["batch_size"])
    lines, crosses = {}, []
    for bs, c in pal.items():
        stats = _median_band(longest[(longest["batch_size"] == bs) & ok], col)
        ax.plot(stats.index, stats["median"], "o-", color=c, lw=2, label=str(bs))
        ax.fill_between(stats.index, stats["lo"], stats["hi"], color=c, alpha=0.18)
        lines[int(bs)] = {"lr": stats.index.to_numpy(), "color": c,
                          **{k: stats[k].to_numpy() for k in ("median", "lo", "hi")}}  # fmt: skip
        bad = longest[(longest["batch_size"] == bs) & ~ok]
        if len(bad):
            jitter = 1 + 0.08 * (list(pal).index(bs) - (len(pal) - 1) / 2)
            ax.scatter(
                bad["lr"] * jitter,
                np.full(len(bad), top),
                marker="X",
                s=70,
                color=c,
                edgecolor=BAD_COLOR,
                linewidth=1.2,
                zorder=4,
            )
            crosses += [{"batch_size": int(bs), "lr": float(lr), "run_id": r, "y": top}
                        for lr, r in zip(bad["lr"], bad["run_id"], strict=True)]  # fmt: skip
    _bs_effect_axes(ax, longest, metric, use_log(fin))
    fig.tight_layout()
    return attach(fig, lines=lines, crosses=crosses, epochs=int(longest["epochs"].max()), top=top)


def _median_band(runs: pd.DataFrame, col: str) -> pd.DataFrame:
    """Per lr (index): the median of ``col`` over the runs and its 95% bootstrap interval over
    seeds (``nnlab.report.intervals``); columns ``median, lo, hi``."""
    if not len(runs):
        return pd.DataFrame(columns=["median", "lo", "hi"], dtype=float)
    r = Resampled(runs, ["lr"], col)
    lo, hi = r.intervals()
    return pd.DataFrame({"median": r.point, "lo": lo, "hi": hi}, index=r.keys["lr"].to_numpy())


def _bs_effect_axes(ax, longest: pd.DataFrame, metric: str, log: bool) -> None:
    """Log lr axis with one tick per swept lr, optional log y axis, legend and title."""
    ax.set_xscale("log")
    if log:
        ax.set_yscale("log")
        log_ticks(ax.yaxis)
    lrs = sorted(longest["lr"].unique())
    ax.set_xticks(lrs, [fmt_lr(x) for x in lrs], rotation=45)
    ax.minorticks_off()
    ax.set_xlabel("learning rate")
    ax.set_ylabel(f"final {metric} after {int(longest['epochs'].max())} epochs")
    handles, labels = ax.get_legend_handles_labels()
    handles.append(Line2D([], [], marker="X", color="0.4", mec=BAD_COLOR, ls="", ms=8))
    labels.append("diverged/failed/\nno learning (top)")
    ax.legend(
        handles,
        labels,
        title="batch size",
        frameon=False,
        loc="center left",
        bbox_to_anchor=(1.01, 0.5),
    )
    ax.set_title(
        f"Batch-size effect: final {metric} against lr for each batch size (lower is better)",
        fontsize=11,
    )
