"""The search figures (``nnlab.report.search``): best so far, objective against lr, every trial's
learning curve, parameter importances. Each Figure carries ``fig.nnlab_data``.
"""

from __future__ import annotations

import matplotlib.colors
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from nnlab.figures.style import attach, bs_palette, log_ticks, set_style, use_log
from nnlab.tracking.schema import OK_OUTCOMES

ONE_COLOR = "#0072b2"  # every point, when the batch size was not searched
# mark -> (legend label, marker, marker face): the outcome of a trial as drawn
MARKS = {
    "filled": ("completed", "o", None),
    "hollow": ("pruned (value where it stopped)", "o", "none"),
    "cross": ("diverged, failed, killed or no finite value (top)", "x", None),
}


def best_so_far(progress: pd.DataFrame, metric: str) -> plt.Figure:
    """Best ``metric`` of the completed trials so far, against trials ended and against
    cumulative epochs trained.

    Parameters
    ----------
    progress : DataFrame
        ``nnlab.report.search.progress_table``: ``trials_ended``, ``cumulative_epochs``,
        ``best_so_far``, ``state``, ``value``, in the order trials ended.

    ``fig.nnlab_data``: ``trials`` and ``epochs`` (the x of each step, shape (n,)), ``best``
    (shape (n,), NaN before the first completed trial).
    """
    set_style()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    best = progress["best_so_far"].to_numpy(dtype=float)
    done = progress["state"] == "COMPLETE"
    for ax, col, label in (
        (axes[0], "trials_ended", "trials ended"),
        (axes[1], "cumulative_epochs", "epochs trained (all trials, cumulative)"),
    ):
        x = progress[col].to_numpy(dtype=float)
        ax.step(x, best, where="post", color="#0072b2", lw=2, label="best so far")
        ax.scatter(x[done], progress.loc[done, "value"], s=14, color="#999999", zorder=3,
                   label="completed trial")  # fmt: skip
        ax.set_xlabel(label)
    axes[0].set_ylabel(metric)
    values = np.concatenate([best, progress.loc[done, "value"].to_numpy(dtype=float)])
    if use_log(values):
        axes[0].set_yscale("log")
        log_ticks(axes[0].yaxis)
    axes[0].legend(frameon=False)
    fig.suptitle(f"Best {metric} so far")
    fig.tight_layout()
    return attach(
        fig,
        trials=progress["trials_ended"].to_numpy(),
        epochs=progress["cumulative_epochs"].to_numpy(),
        best=best,
    )


def _last_values(hist: pd.DataFrame) -> pd.Series:
    """run_id -> the last finite value of its curve (NaN when it has none)."""
    finite = hist[np.isfinite(hist["value"])].sort_values("epoch")
    return finite.groupby("run_id")["value"].last()


def _marks(trials: pd.DataFrame, hist: pd.DataFrame) -> pd.DataFrame:
    """One row per trial: ``run_id, trial, lr, batch_size, outcome, value`` (its last finite
    value) and ``mark``: ``filled`` (completed or stopped early), ``hollow`` (pruned, at the
    value it stopped at) or ``cross`` (diverged, failed, killed, or no finite value)."""
    pts = trials[["run_id", "trial", "lr", "batch_size", "outcome"]].copy()
    pts["value"] = pts["run_id"].map(_last_values(hist)).astype(float)
    finite = np.isfinite(pts["value"])
    pts["mark"] = np.where(
        ~finite, "cross",
        np.where(pts["outcome"].isin(OK_OUTCOMES), "filled",
                 np.where(pts["outcome"] == "pruned", "hollow", "cross")),
    )  # fmt: skip
    return pts


def _colors(pts: pd.DataFrame, by_batch_size: bool) -> tuple[list, dict]:
    """(one colour per point, legend entries {label: colour}) for the batch sizes, or one colour
    when the batch size was not searched."""
    if not by_batch_size:
        return [ONE_COLOR] * len(pts), {}
    palette = bs_palette(pts["batch_size"].dropna())
    return [palette.get(int(b), ONE_COLOR) if pd.notna(b) else ONE_COLOR
            for b in pts["batch_size"]], {f"batch size {b}": c for b, c in palette.items()}  # fmt: skip


def objective_vs_lr(
    trials: pd.DataFrame, hist: pd.DataFrame, metric: str, by_batch_size: bool = False
) -> plt.Figure:
    """Each trial's final (or, if stopped, last finite) ``metric`` against lr, log x; coloured
    by batch size when it was searched (``by_batch_size``), one colour otherwise. Completed
    trials are filled, pruned ones hollow, and trials that diverged, failed or have no finite
    value are crosses at the top.

    Parameters
    ----------
    trials : DataFrame
        ``nnlab.report.search.search_trials``: one row per trial, with ``trial, lr,
        batch_size, outcome``.
    hist : DataFrame
        ``load_histories`` long frame of ``metric``.

    ``fig.nnlab_data``: ``points`` (DataFrame: run_id, trial, lr, batch_size, outcome, value,
    mark, y (as drawn), color), ``legend`` (the labels of the legend, in order) and ``top``
    (the crosses' y).
    """
    set_style()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    pts = _marks(trials, hist)
    pts["color"], bs_entries = _colors(pts, by_batch_size)
    ok = pts[pts["mark"] != "cross"]
    top = float(ok["value"].max()) * 1.15 if len(ok) else 1.0
    pts["y"] = np.where(pts["mark"] == "cross", top, pts["value"])
    for mark in MARKS:
        sel = pts[pts["mark"] == mark]
        if not len(sel):
            continue
        face = sel["color"].tolist() if mark == "filled" else "none"
        kind = {"marker": "x", "color": sel["color"].tolist()} if mark == "cross" else {
            "facecolors": face, "edgecolors": sel["color"].tolist()}  # fmt: skip
        ax.scatter(sel["lr"], sel["y"], s=40, linewidths=1.5, zorder=3, **kind)
    handles = [
        Line2D([], [], ls="", label=label, color="0.3", mfc=mfc, marker=m, ms=7)
        for mark, (label, m, mfc) in MARKS.items()
        if (pts["mark"] == mark).any()
    ]
    handles += [Line2D([], [], ls="", marker="o", color=c, ms=7, label=label)
                for label, c in bs_entries.items()]  # fmt: skip
    ax.set_xscale("log")
    if use_log(ok["value"].to_numpy(dtype=float)):
        ax.set_yscale("log")
        log_ticks(ax.yaxis)
    ax.set_xlabel("learning rate")
    ax.set_ylabel(metric)
    ax.legend(handles=handles, frameon=False, fontsize=8, loc="center left",
              bbox_to_anchor=(1.01, 0.5))  # fmt: skip
    ax.set_title(f"{metric} against learning rate, every trial")
    fig.tight_layout()
    return attach(fig, points=pts, legend=[h.get_label() for h in handles], top=top)


def trial_curves(trials: pd.DataFrame, hist: pd.DataFrame, metric: str) -> plt.Figure:
    """Every trial's ``metric`` per epoch, coloured by lr (log colour scale); trials that did
    not complete end where they stopped, marked with a dot.

    ``fig.nnlab_data``: ``ends`` (DataFrame: run_id, outcome, last_epoch), one row per curve.
    """
    set_style()
    fig, ax = plt.subplots(figsize=(9, 5))
    lrs = trials["lr"].to_numpy(dtype=float)
    norm = matplotlib.colors.LogNorm(
        vmin=np.nanmin(lrs), vmax=max(np.nanmax(lrs), np.nanmin(lrs) * 1.01)
    )
    cmap = plt.get_cmap("viridis")
    ends = []
    curves = hist.sort_values("epoch")
    finite = curves["value"].to_numpy(dtype=float)
    for _, trial in trials.iterrows():
        c = curves[curves["run_id"] == trial["run_id"]]
        if c.empty:
            continue
        color = cmap(norm(trial["lr"]))
        done = trial["outcome"] in OK_OUTCOMES
        ax.plot(c["epoch"], c["value"], color=color, lw=1.3 if done else 0.9,
                alpha=0.95 if done else 0.6)  # fmt: skip
        last = c[np.isfinite(c["value"])].tail(1)
        if not done and len(last):
            ax.scatter(last["epoch"], last["value"], s=12, color=color, zorder=3)
        ends.append((trial["run_id"], trial["outcome"], int(c["epoch"].max())))
    if use_log(finite):
        ax.set_yscale("log")
        log_ticks(ax.yaxis)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    mappable = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(mappable, ax=ax, label="learning rate")
    ax.set_title(f"{metric} per epoch, every trial (dots: stopped early)")
    fig.tight_layout()
    return attach(fig, ends=pd.DataFrame(ends, columns=["run_id", "outcome", "last_epoch"]))


def importance_bars(weights: dict[str, float], metric: str) -> plt.Figure:
    """Horizontal bars of each searched param's importance.

    ``fig.nnlab_data``: ``importances`` (the dict drawn, largest first).
    """
    if not weights:
        raise ValueError("fewer than two completed trials, or no param varied")
    set_style()
    fig, ax = plt.subplots(figsize=(7, 0.6 + 0.5 * len(weights)))
    names = list(weights)[::-1]
    ax.barh(names, [weights[n] for n in names], color="#0072b2")
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"importance for {metric} (PED-ANOVA, sums to 1)")
    fig.tight_layout()
    return attach(fig, importances=dict(weights))
