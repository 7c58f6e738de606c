"""The search figures (``nnlab.report.search``): best so far, objective against lr, every trial's
learning curve, parameter importances. Each Figure carries ``fig.nnlab_data``.
"""

from __future__ import annotations

import matplotlib.colors
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from nnlab.figures.style import BAD_COLOR, attach, bs_palette, log_ticks, set_style, use_log

FILLED_STATES = ("COMPLETE",)


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


def objective_vs_lr(trials: pd.DataFrame, hist: pd.DataFrame, metric: str) -> plt.Figure:
    """Each trial's final (or, if stopped, last finite) ``metric`` against lr, log x, coloured
    by batch size; hollow markers for trials that did not complete.

    ``fig.nnlab_data``: ``points`` (DataFrame: run_id, lr, batch_size, value, filled) and
    ``crosses`` (run ids of trials without a finite value).
    """
    set_style()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    last = _last_values(hist)
    pts = trials[["run_id", "lr", "state"]].copy()
    pts["batch_size"] = trials["batch_size"] if "batch_size" in trials else 0
    pts["value"] = pts["run_id"].map(last)
    pts["filled"] = pts["state"].isin(FILLED_STATES)
    palette = bs_palette(pts["batch_size"])
    ok = pts[np.isfinite(pts["value"])]
    for bs, color in palette.items():
        for filled in (True, False):
            sel = ok[(ok["batch_size"] == bs) & (ok["filled"] == filled)]
            ax.scatter(sel["lr"], sel["value"], s=34, facecolors=color if filled else "none",
                       edgecolors=color, linewidths=1.4,
                       label=f"batch {bs}" + ("" if filled else " (stopped)"))  # fmt: skip
    crosses = pts[~np.isfinite(pts["value"])]
    if len(crosses):
        top = ok["value"].max() if len(ok) else 1.0
        ax.scatter(crosses["lr"], [top] * len(crosses), marker="x", color=BAD_COLOR, s=40,
                   label="no finite value")  # fmt: skip
    ax.set_xscale("log")
    if use_log(ok["value"].to_numpy(dtype=float)):
        ax.set_yscale("log")
        log_ticks(ax.yaxis)
    ax.set_xlabel("learning rate")
    ax.set_ylabel(metric)
    ax.legend(frameon=False, fontsize=8, ncol=2)
    ax.set_title(f"{metric} against learning rate, every trial")
    fig.tight_layout()
    return attach(fig, points=pts, crosses=list(crosses["run_id"]))


def trial_curves(trials: pd.DataFrame, hist: pd.DataFrame, metric: str) -> plt.Figure:
    """Every trial's ``metric`` per epoch, coloured by lr (log colour scale); trials that did
    not complete end where they stopped, marked with a dot.

    ``fig.nnlab_data``: ``ends`` (DataFrame: run_id, state, last_epoch), one row per curve.
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
        done = trial["state"] == "COMPLETE"
        ax.plot(c["epoch"], c["value"], color=color, lw=1.3 if done else 0.9,
                alpha=0.95 if done else 0.6)  # fmt: skip
        last = c[np.isfinite(c["value"])].tail(1)
        if not done and len(last):
            ax.scatter(last["epoch"], last["value"], s=12, color=color, zorder=3)
        ends.append((trial["run_id"], trial["state"], int(c["epoch"].max())))
    if use_log(finite):
        ax.set_yscale("log")
        log_ticks(ax.yaxis)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    mappable = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(mappable, ax=ax, label="learning rate")
    ax.set_title(f"{metric} per epoch, every trial (dots: stopped early)")
    fig.tight_layout()
    return attach(fig, ends=pd.DataFrame(ends, columns=["run_id", "state", "last_epoch"]))


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
