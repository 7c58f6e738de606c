"""The study figures: the notes' claim per set-up, and schedules against the constant rate."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D

from nnlab.figures.style import BAD_COLOR, attach, log_ticks, set_style, use_log
from nnlab.report.schedules import best_settings
from nnlab.report.tables import fmt_lr

REFERENCE_LR = 1e-3  # the notes' "small" learning rate
CONSTANT_COLOR = "#000000"

# ------------------------------------------------------------------------ the claim per set-up


def _variants(per_lr: pd.DataFrame) -> pd.Series:
    """Line label of each row within its dataset: the optimizer, plus the schedule when the
    table holds more than one."""
    if per_lr["schedule"].nunique() > 1 and per_lr["optimizer"].nunique() > 1:
        return per_lr["optimizer"] + ", " + per_lr["schedule"]
    if per_lr["schedule"].nunique() > 1:
        return per_lr["schedule"]
    return per_lr["optimizer"]


def _claim_row_values(sub: pd.DataFrame, col: str, top: float) -> tuple[np.ndarray, np.ndarray]:
    """(y as drawn, finite mask) of one line: non-finite values at ``top`` (the caller nudges
    each line's top marks apart)."""
    v = sub[col].to_numpy(dtype=float)
    ok = np.isfinite(v)
    return np.where(ok, v, top), ok


BANDS = {"median_epochs_to_target": "epochs_to_target", "median_best": "best"}


def _band(sub: pd.DataFrame, col: str, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 95% interval of ``col`` per lr (``<name>_lo``, ``<name>_hi`` of ``claim_per_lr``),
    NaN where the median is not finite or the table has no interval, shape (n_lrs,) each."""
    name = BANDS[col]
    if f"{name}_lo" not in sub:
        nan = np.full(len(sub), np.nan)
        return nan, nan
    lo = sub[f"{name}_lo"].to_numpy(dtype=float)
    hi = sub[f"{name}_hi"].to_numpy(dtype=float)
    hi = np.where(np.isfinite(hi), hi, np.nan)  # an open upper end: no band above the line
    return np.where(ok, lo, np.nan), np.where(ok, hi, np.nan)


def _claim_panel(axes, ds: str, rows: pd.DataFrame, claim: pd.DataFrame, pal: dict, data: dict):
    """Draw one dataset's column (speed on top, quality below) and record what it places."""
    budget = float(rows["epochs_budget"].max())
    best_fin = rows.loc[np.isfinite(rows["median_best"]), "median_best"].to_numpy(dtype=float)
    tops = {"median_epochs_to_target": budget * 1.5,
            "median_best": float(best_fin.max()) * 1.6 if len(best_fin) else 1.0}  # fmt: skip
    data["tops"][ds] = tops
    for k, (variant, sub) in enumerate(rows.groupby("variant", sort=True)):
        sub = sub.sort_values("lr")
        verdict = claim[(claim["dataset"] == ds) & (claim["variant"] == variant)].iloc[0]
        data["verdicts"][(ds, variant)] = verdict["verdict"]
        for r, (col, mark_lr, kind) in enumerate(
            [("median_epochs_to_target", verdict["fastest_lr"], "fastest"),
             ("median_best", verdict["most_accurate_lr"], "most_accurate")]
        ):  # fmt: skip
            ax = axes[r]
            y, ok = _claim_row_values(sub, col, tops[col] * (1 + 0.06 * k))
            lr = sub["lr"].to_numpy(dtype=float)
            c = pal[variant]
            lo, hi = _band(sub, col, ok)
            ax.fill_between(lr, lo, hi, color=c, alpha=0.15, lw=0)
            ax.plot(lr, np.where(ok, y, np.nan), "-", color=c, lw=1.8, alpha=0.85)  # gaps
            ax.scatter(lr[ok], y[ok], color=c, s=36, zorder=3)
            bad_face = "white" if r == 0 else c
            ax.scatter(lr[~ok], y[~ok], marker="o" if r == 0 else "X", s=55, zorder=3,
                       facecolor=bad_face, edgecolor=c if r == 0 else BAD_COLOR)  # fmt: skip
            data["lines"][(ds, variant, kind)] = {"lr": lr, "y": y, "finite": ok, "color": c,
                                                  "lo": lo, "hi": hi}  # fmt: skip
            if pd.notna(mark_lr):
                my = float(y[np.isclose(lr, mark_lr)][0])
                ax.scatter([mark_lr], [my], s=230, facecolor="none", edgecolor=c, lw=2, zorder=4)
                data["marks"].append({"dataset": ds, "variant": variant, "kind": kind,
                                      "lr": float(mark_lr), "y": my})  # fmt: skip


def _claim_axes(axes, ds: str, rows: pd.DataFrame, data: dict, metric: str, first: bool):
    """Log axes, the 0.001 line, the "not reached"/"diverged" rows, titles and labels."""
    lrs = sorted(rows["lr"].unique())
    for r, ax in enumerate(axes):
        ax.set_xscale("log")
        ax.set_xticks(lrs, [fmt_lr(x) for x in lrs], rotation=45)
        ax.minorticks_off()
        ax.set_xlim(lrs[0] / 2.5, lrs[-1] * 2.5)
        ax.axvline(REFERENCE_LR, color="0.4", ls=":", lw=1.2)
        col = ("median_epochs_to_target", "median_best")[r]
        vals = rows[col].to_numpy(dtype=float)
        fin = vals[np.isfinite(vals)]
        log = use_log(fin) or (r == 0 and len(fin) > 0)  # epochs: log whenever any reached
        if log:
            ax.set_yscale("log")
            log_ticks(ax.yaxis)
        top = data["tops"][ds][col]
        high = top * 1.25 if len(fin) < len(vals) else (fin.max() if len(fin) else 1.0) * 1.1
        low = fin.min() / 1.25 if len(fin) and log else min(0.0, fin.min()) if len(fin) else 0.0
        ax.set_ylim(low, high)
        if len(fin) < len(vals):  # something sits in the top row: rule it off and say what
            ax.axhline(top / 1.08, color="0.75", lw=0.8)
            ax.text(0.02, top / 1.1, "not reached" if r == 0 else "diverged/failed",
                    fontsize=7, color="0.35", transform=ax.get_yaxis_transform(),
                    va="top")  # fmt: skip
    verdicts = "; ".join(f"{v}: {k}" for (d, v), k in data["verdicts"].items() if d == ds)
    axes[0].set_title(f"{ds}\n{verdicts}", fontsize=9)
    axes[1].set_xlabel("learning rate")
    if first:
        axes[0].set_ylabel("epochs to target\n(lower = faster)")
        axes[1].set_ylabel(f"lowest {metric} reached\n(lower = more accurate)")


def claim_grid(per_lr: pd.DataFrame, claim: pd.DataFrame, metric: str) -> plt.Figure:
    """Speed (top row) and quality (bottom row) against lr, one column per dataset and one line
    per set-up within it (band: the 95% interval of the median), the fastest and the best lr
    ringed, 0.001 dotted.

    Parameters
    ----------
    per_lr : DataFrame
        ``nnlab.report.claim.claim_per_lr``: one row per (set-up, lr).
    claim : DataFrame
        ``nnlab.report.claim.claim_table``: one row per set-up.
    metric : str

    Returns
    -------
    Figure
        With ``fig.nnlab_data``: ``lines`` ``{(dataset, variant, "fastest" | "most_accurate"):
        {"lr", "y" (as drawn: non-finite at the panel's top), "finite", "lo", "hi" (the band:
        the 95% interval of the median, NaN where not drawn): arrays (n_lrs,), "color"}}`` (``fastest``: the epochs-to-target row; ``most_accurate``: the best-metric
        row); ``marks`` list of ``{"dataset", "variant", "kind", "lr", "y"}`` (the rings);
        ``verdicts`` ``{(dataset, variant): verdict}``; ``tops`` ``{dataset: {column: y}}``;
        ``colors`` ``{variant: RGB}``. ``variant``: the optimizer (and/or schedule) of a line.
    """
    set_style()
    per_lr = per_lr.assign(variant=_variants(per_lr))
    claim = claim.assign(variant=_variants(claim))
    variants = sorted(per_lr["variant"].unique())
    pal = dict(zip(variants, sns.color_palette("colorblind", len(variants)), strict=True))
    datasets = sorted(per_lr["dataset"].unique())
    fig, axes = plt.subplots(2, len(datasets), figsize=(3.6 * len(datasets) + 1.6, 6.8),
                             squeeze=False)  # fmt: skip
    data = {"lines": {}, "marks": [], "verdicts": {}, "tops": {}, "colors": pal}
    for j, ds in enumerate(datasets):
        rows = per_lr[per_lr["dataset"] == ds]
        _claim_panel(axes[:, j], ds, rows, claim[claim["dataset"] == ds], pal, data)
        _claim_axes(axes[:, j], ds, rows, data, metric, j == 0)
    handles = [Line2D([], [], color=c, marker="o", lw=2, label=v) for v, c in pal.items()]
    handles += [Line2D([], [], color="0.4", ls=":", label="lr 0.001"),
                Line2D([], [], color="0.3", marker="o", mfc="none", ms=12, ls="",
                       label="fastest lr / best lr\n(median over seeds)")]  # fmt: skip
    fig.legend(handles=handles, loc="center right", frameon=False)
    fig.suptitle("The notes' claim per set-up: a larger lr should be faster (top) but less "
                 "accurate (bottom) than 0.001", fontsize=12)  # fmt: skip
    fig.tight_layout(rect=(0, 0, 1 - 1.7 / fig.get_figwidth(), 0.95))
    return attach(fig, **data)


# ------------------------------------------------------------- schedules vs the constant rate


def _schedule_points(best: pd.DataFrame, vs: pd.DataFrame) -> pd.DataFrame:
    """``best`` (one row per set-up and budget) with ``result`` against the constant rate
    (``constant`` for the constant rate itself)."""
    res = vs.set_index(["dataset", "optimizer", "schedule", "epochs"])["result"]
    key = pd.MultiIndex.from_frame(best[["dataset", "optimizer", "schedule", "epochs"]])
    result = res.reindex(key).to_numpy(dtype=object)
    return best.assign(result=np.where(best["schedule"] == "constant", "constant", result))


def _schedule_panel(ax, sub: pd.DataFrame, order: list, pal: dict, data: dict, key: tuple):
    """One (dataset, optimizer, budget): each schedule's best lr as a point with its 95%
    interval, the constant rate's median as a dashed line in a band of its interval."""
    sub = sub.set_index("schedule")
    if "constant" in sub.index:
        c, lo, hi = sub.loc["constant", ["median_final", "lo", "hi"]].astype(float)
        ax.axhspan(lo, hi, color="0.88", zorder=0)
        ax.axhline(c, color=CONSTANT_COLOR, ls="--", lw=1.2, zorder=1)
        data["bands"][key] = (c, lo, hi)
    labels = []
    for x, sched in enumerate(order):
        if sched not in sub.index:
            labels.append(f"{sched}\n(none usable)")
            continue
        r = sub.loc[sched]
        better = r["result"] == "better"
        m = float(r["median_final"])
        err = [[m - float(r["lo"])], [float(r["hi"]) - m]]
        ax.errorbar(x, m, yerr=err, color=pal[sched], capsize=4, lw=1.6, zorder=2)
        ax.scatter(x, r["median_final"], s=70, zorder=3, linewidth=1.8, edgecolor=pal[sched],
                   facecolor=pal[sched] if better else "white")  # fmt: skip
        says = "the reference" if sched == "constant" else r["result"]
        labels.append(f"{sched}\nlr {fmt_lr(r['lr'])}\n{says}")
        data["points"][(*key, sched)] = {
            "median": m, "lo": float(r["lo"]), "hi": float(r["hi"]),
            "lr": float(r["lr"]), "result": r["result"], "filled": bool(better),
        }  # fmt: skip
    ax.set_xticks(range(len(order)), labels, fontsize=8)
    ax.set_xlim(-0.6, len(order) - 0.4)


def schedule_budgets(by_budget: pd.DataFrame, vs: pd.DataFrame, metric: str) -> plt.Figure:
    """Each schedule's best lr against the best constant rate, one panel per (dataset,
    optimizer) and epoch budget: a point with its 95% interval per schedule (the interval of
    that setting's median), the constant rate as a dashed line in a grey band of its interval.
    Filled points beat it beyond the paired interval of the gap.

    Parameters
    ----------
    by_budget : DataFrame
        ``nnlab.report.schedules.schedule_by_budget``: one row per trial setting.
    vs : DataFrame
        ``nnlab.report.schedules.schedule_vs_constant``.
    metric : str

    Returns
    -------
    Figure
        With ``fig.nnlab_data``: ``points`` ``{(dataset, optimizer, epochs, schedule):
        {"median", "lo", "hi", "lr", "result", "filled"}}`` (the schedule's best setting at that
        budget; the constant rate's own point has result ``constant``); ``bands``
        ``{(dataset, optimizer, epochs): (median, lo, hi)}`` of the constant rate; ``colors``
        ``{schedule: RGB}``.
    """
    set_style()
    best = _schedule_points(best_settings(by_budget), vs)
    order = sorted(best["schedule"].unique(), key=lambda s: (s != "constant", s))
    others = sns.color_palette("colorblind", max(1, len(order) - 1))
    pal = {s: (CONSTANT_COLOR if s == "constant" else others[i - 1]) for i, s in enumerate(order)}
    rows = list(best.groupby(["dataset", "optimizer"], sort=True))
    budgets = sorted(best["epochs"].unique())
    fig, axes = plt.subplots(
        len(rows),
        len(budgets),
        squeeze=False,
        figsize=(1.3 * len(order) * len(budgets) + 1.5, 3.6 * len(rows)),
    )
    data = {"points": {}, "bands": {}, "colors": pal}  # fmt: skip
    for i, ((ds, opt), sub) in enumerate(rows):
        for j, ep in enumerate(budgets):
            ax = axes[i][j]
            _schedule_panel(ax, sub[sub["epochs"] == ep], order, pal, data, (ds, opt, int(ep)))
            ax.set_title(f"{ds}, {opt}: {ep} epochs", fontsize=10)
            if j == 0:
                ax.set_ylabel(f"final {metric}\n(median of seeds; bars: 95% interval)")
    fig.suptitle(f"Decaying schedules against the best constant rate (dashed, grey: its 95% "
                 f"interval), final {metric} of each one's best lr; filled = better",
                 fontsize=11)  # fmt: skip
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return attach(fig, **data)
