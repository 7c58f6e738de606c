"""Figure 1, learning curves: the metric per epoch by learning rate, one panel per batch size."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from nnlab.figures.style import (
    BAD_COLOR,
    attach,
    log_ticks,
    lr_legend,
    lr_palette,
    set_style,
    use_log,
)
from nnlab.report.intervals import Resampled
from nnlab.report.tables import fmt_lr, longest_budget_runs
from nnlab.tracking.schema import OK_OUTCOMES


def _curve_values(
    runs: pd.DataFrame, hist: pd.DataFrame, metric: str, stuck: pd.Series | None
) -> tuple[pd.DataFrame, pd.DataFrame, float, bool, float | None]:
    """The longest-budget histories of ``metric`` split into drawn and left-out runs.

    Returns
    -------
    (h, h_stuck, top, log, bottom)
        ``h``: rows of runs drawn, with ``shown`` = value clipped to ``top`` (non-finite values
        at ``top``); ``h_stuck``: rows of runs that never learned (counted in a note);
        ``top``: y-axis top from the usable runs' finite values; ``log``: log y-axis;
        ``bottom``: y-axis bottom on a log axis, else None.
    """
    longest = longest_budget_runs(runs)
    stuck_ids = set(runs.loc[stuck.to_numpy(), "run_id"]) if stuck is not None else set()
    h = hist[(hist["metric"] == metric) & hist["run_id"].isin(longest["run_id"])].copy()
    h_stuck = h[h["run_id"].isin(stuck_ids)]
    h = h[~h["run_id"].isin(stuck_ids)]
    ok = h["outcome"].isin(OK_OUTCOMES)
    finite = h.loc[ok & np.isfinite(h["value"]), "value"].to_numpy()
    if len(finite) == 0:
        finite = h.loc[np.isfinite(h["value"]), "value"].to_numpy()
    top = float(np.quantile(finite, 0.995)) * 1.6 if len(finite) else 1.0
    log = use_log(finite)
    bottom = float(finite[finite > 0].min()) * 0.8 if log else None
    h["shown"] = h["value"].where(np.isfinite(h["value"]), top).clip(upper=top)
    return h, h_stuck, top, log, bottom


def _bands(sub: pd.DataFrame) -> pd.DataFrame:
    """Per (lr, epoch) of one panel: the median of ``shown`` over the runs at that epoch and its
    95% bootstrap interval over seeds (``nnlab.report.intervals``)."""
    r = Resampled(sub, ["lr", "epoch"], "shown")
    lo, hi = r.intervals()
    return r.keys.assign(median=r.point, lo=lo, hi=hi)


def _curve_panel(ax, sub: pd.DataFrame, bs: int, pal: dict, data: dict) -> None:
    """Draw one batch size's median lines, interval bands and end-of-run crosses on ``ax``;
    record them in ``data["lines"]`` and ``data["crosses"]``."""
    bands = _bands(sub) if len(sub) else pd.DataFrame(columns=["lr", "epoch"])
    for lr, grp in sub.groupby("lr"):
        stats = bands[bands["lr"] == lr].set_index("epoch").sort_index()
        ax.plot(stats.index, stats["median"], color=pal[lr], lw=2)
        ax.fill_between(stats.index, stats["lo"], stats["hi"], color=pal[lr], alpha=0.15)
        data["lines"][(int(bs), float(lr))] = {
            "epoch": stats.index.to_numpy(),
            **{k: stats[k].to_numpy() for k in ("median", "lo", "hi")},
            "color": pal[lr],
        }
        bad = grp[~grp["outcome"].isin(OK_OUTCOMES)]
        ends = bad.loc[bad.groupby("run_id")["epoch"].idxmax()] if len(bad) else bad
        ax.scatter(
            ends["epoch"],
            ends["shown"],
            marker="X",
            s=70,
            color=BAD_COLOR,
            edgecolor="white",
            linewidth=0.6,
            zorder=5,
        )
        data["crosses"] += [
            {"batch_size": int(bs), "lr": float(lr), "run_id": r, "epoch": int(e), "y": float(y)}
            for r, e, y in zip(ends["run_id"], ends["epoch"], ends["shown"], strict=True)
        ]


def _panel_notes(sub: pd.DataFrame, st: pd.DataFrame, metric: str, bs: int, data: dict) -> list:
    """The note lines of one panel: runs that diverged/failed, and per lr the runs left out
    because they never learned (recorded in ``data["left_out"]``)."""
    notes = []
    n_bad = int(sub.loc[~sub["outcome"].isin(OK_OUTCOMES), "run_id"].nunique())
    if n_bad:
        notes.append(f"✕ {n_bad} runs diverged/failed")
    for lr, grp in st.groupby("lr"):
        last = grp.sort_values("epoch").groupby("run_id")["value"].last().median()
        data["left_out"][(int(bs), float(lr))] = int(grp["run_id"].nunique())
        notes.append(
            f"lr={fmt_lr(lr)}: {grp['run_id'].nunique()} runs did not learn "
            f"({metric} ≈ {last:.3g}, off scale)"
        )
    return notes


def learning_curves(
    runs: pd.DataFrame,
    hist: pd.DataFrame,
    metric: str,
    target: float | None = None,
    stuck: pd.Series | None = None,
) -> plt.Figure:
    """Median ``metric`` per epoch by lr (line) with its 95% bootstrap interval over seeds
    (band), one panel per batch size, from the longest-budget runs. Diverged/failed runs end in a cross at their last
    logged epoch; runs that never learned (``stuck``, aligned with ``runs``) are left out of the
    lines and counted in a note on their panel, so they do not flatten the scale.

    Parameters
    ----------
    runs : DataFrame
        ``nnlab.analysis.load_runs`` frame, one row per run.
    hist : DataFrame
        ``nnlab.analysis.load_histories`` long frame holding ``metric``.
    metric : str
        Metric to draw (lower is better).
    target : float, optional
        Drawn as a dashed line.
    stuck : Series of bool, optional
        ``nnlab.report.tables.not_learning`` flags, indexed like ``runs``.

    Returns
    -------
    Figure
        With ``fig.nnlab_data``: ``lines`` ``{(batch_size, lr): {"epoch", "median", "lo",
        "hi": arrays (n_epochs,), "color": RGBA}}`` (values as drawn: clipped to the top;
        ``lo``, ``hi``: the interval of the median);
        ``crosses`` list of ``{"batch_size", "lr", "run_id", "epoch", "y"}``; ``left_out``
        ``{(batch_size, lr): n runs that never learned}``; ``notes`` ``{batch_size: [str]}``;
        ``target``; ``ylim`` ``(bottom, top)``; ``log`` (bool); ``colors`` ``{lr: RGBA}``.
    """
    set_style()
    h, h_stuck, top, log, bottom = _curve_values(runs, hist, metric, stuck)
    longest = longest_budget_runs(runs)
    bss = sorted(longest["batch_size"].unique())
    pal = lr_palette(longest["lr"].unique())
    data = {"lines": {}, "crosses": [], "left_out": {}, "notes": {}}
    fig, axes = plt.subplots(
        1, len(bss), figsize=(4.6 * len(bss) + 1.6, 4.3), sharey=True, squeeze=False
    )
    for ax, bs in zip(axes[0], bss, strict=True):
        sub = h[h["batch_size"] == bs]
        _curve_panel(ax, sub, bs, pal, data)
        if target is not None and np.isfinite(target):
            ax.axhline(target, color="0.3", ls="--", lw=1)
        notes = _panel_notes(sub, h_stuck[h_stuck["batch_size"] == bs], metric, bs, data)
        data["notes"][int(bs)] = notes
        if notes:
            ax.text(
                0.98,
                0.97,
                "\n".join(notes),
                transform=ax.transAxes,
                ha="right",
                va="top",
                fontsize=8,
                color="0.2",
                bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "0.8"},
            )
        ax.set_title(f"batch size {bs}")
        ax.set_xlabel("epoch")
        if log:
            ax.set_yscale("log")
            log_ticks(ax.yaxis)
        ax.set_ylim(bottom, top * 1.05)
    axes[0][0].set_ylabel(f"{metric} (median; band: 95% interval)")
    lr_legend(fig, pal)
    extra = [Line2D([], [], color="0.3", ls="--", label="target")] if target is not None else []
    extra.append(Line2D([], [], marker="X", color=BAD_COLOR, ls="", ms=8, label="diverged/failed"))
    fig.legend(handles=extra, loc="lower right", frameon=False)
    fig.suptitle(
        f"Learning curves: how fast each learning rate brings {metric} down, and where it "
        "levels off",
        fontsize=12,
    )
    fig.tight_layout(rect=(0, 0, 1 - 1.5 / fig.get_figwidth(), 0.95))
    return attach(fig, **data, target=target, ylim=(bottom, top * 1.05), log=log, colors=pal)
