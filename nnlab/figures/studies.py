"""The study figures: the notes' claim per set-up, and schedules against the constant rate."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D

from nnlab.figures.style import BAD_COLOR, attach, log_ticks, set_style, use_log
from nnlab.report_studies import best_settings
from nnlab.report_tables import fmt_lr

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
            ax.plot(lr, np.where(ok, y, np.nan), "-", color=c, lw=1.8, alpha=0.85)  # gaps
            ax.scatter(lr[ok], y[ok], color=c, s=36, zorder=3)
            bad_face = "white" if r == 0 else c
            ax.scatter(lr[~ok], y[~ok], marker="o" if r == 0 else "X", s=55, zorder=3,
                       facecolor=bad_face, edgecolor=c if r == 0 else BAD_COLOR)  # fmt: skip
            data["lines"][(ds, variant, kind)] = {"lr": lr, "y": y, "finite": ok, "color": c}
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
        log = use_log(fin)
        if log:
            ax.set_yscale("log")
            log_ticks(ax.yaxis)
        top = data["tops"][ds][col]
        high = top * 1.25 if len(fin) < len(vals) else (fin.max() if len(fin) else 1.0) * 1.1
        low = fin.min() / 1.25 if len(fin) and log else min(0.0, fin.min()) if len(fin) else 0.0
        ax.set_ylim(low, high)
        if len(fin) < len(vals):  # something sits in the top row: rule it off and say what
            ax.axhline(top / 1.08, color="0.75", lw=0.8)
            ax.text(0.02, top / 1.06, "not reached" if r == 0 else "diverged/failed",
                    fontsize=7, color="0.35", transform=ax.get_yaxis_transform(),
                    va="bottom")  # fmt: skip
    verdicts = "; ".join(f"{v}: {k}" for (d, v), k in data["verdicts"].items() if d == ds)
    axes[0].set_title(f"{ds}\n{verdicts}", fontsize=9)
    axes[1].set_xlabel("learning rate")
    if first:
        axes[0].set_ylabel("epochs to target\n(lower = faster)")
        axes[1].set_ylabel(f"best {metric}\n(lower = more accurate)")


def claim_grid(per_lr: pd.DataFrame, claim: pd.DataFrame, metric: str) -> plt.Figure:
    """Speed (top row) and quality (bottom row) against lr, one column per dataset and one line
    per set-up within it, the fastest and the most accurate lr ringed, 0.001 dotted.

    Parameters
    ----------
    per_lr : DataFrame
        ``nnlab.report_studies.claim_per_lr``: one row per (set-up, lr).
    claim : DataFrame
        ``nnlab.report_studies.claim_table``: one row per set-up.
    metric : str

    Returns
    -------
    Figure
        With ``fig.nnlab_data``: ``lines`` ``{(dataset, variant, "fastest" | "most_accurate"):
        {"lr", "y" (as drawn: non-finite at the panel's top), "finite": arrays (n_lrs,),
        "color"}}`` (``fastest``: the epochs-to-target row; ``most_accurate``: the best-metric
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
                       label="fastest / most\naccurate lr")]  # fmt: skip
    fig.legend(handles=handles, loc="center right", frameon=False)
    fig.suptitle("The notes' claim per set-up: a larger lr should be faster (top) but less "
                 "accurate (bottom) than 0.001", fontsize=12)  # fmt: skip
    fig.tight_layout(rect=(0, 0, 1 - 1.7 / fig.get_figwidth(), 0.95))
    return attach(fig, **data)


# ------------------------------------------------------------- schedules vs the constant rate


def _schedule_points(best: pd.DataFrame, vs: pd.DataFrame) -> pd.DataFrame:
    """``best`` (one row per set-up and budget) with ``better`` (beat the constant rate by more
    than the seed spread; False for the constant rate itself)."""
    flags = vs.set_index(["dataset", "optimizer", "schedule", "epochs"])["result"] == "better"
    key = pd.MultiIndex.from_frame(best[["dataset", "optimizer", "schedule", "epochs"]])
    return best.assign(better=flags.reindex(key).eq(True).to_numpy(dtype=bool))  # NaN: no


def _schedule_panel(ax, sub: pd.DataFrame, pal: dict, data: dict, key: tuple) -> None:
    """One (dataset, optimizer): a line per schedule over the budgets, seed-std bars, marks."""
    for sched, g in sub.groupby("schedule", sort=True):
        g = g.sort_values("epochs")
        c = pal[sched]
        x, y, s = (g[k].to_numpy(dtype=float) for k in ("epochs", "median_final", "seed_std_final"))
        ls = "--" if sched == "constant" else "-"
        ax.errorbar(x, y, yerr=s, color=c, ls=ls, lw=1.8, capsize=3, zorder=2)
        better = g["better"].to_numpy(dtype=bool)
        ax.scatter(x, y, s=50, zorder=3, facecolor=[c if b else "white" for b in better],
                   edgecolor=c, linewidth=1.8)  # fmt: skip
        for xi, yi, lr in zip(x, y, g["lr"], strict=True):
            ax.annotate(fmt_lr(lr), (xi, yi), textcoords="offset points", xytext=(5, 3),
                        fontsize=7, color=c)  # fmt: skip
        data["lines"][(*key, sched)] = {
            "epochs": x,
            "median": y,
            "std": s,
            "lr": g["lr"].to_numpy(dtype=float),
            "color": c,
        }
        data["filled"][(*key, sched)] = better


def schedule_budgets(by_budget: pd.DataFrame, vs: pd.DataFrame, metric: str) -> plt.Figure:
    """The best median final ``metric`` of each schedule at each epoch budget, one panel per
    (dataset, optimizer), the constant rate dashed; filled marks beat it by more than the
    seed-to-seed spread.

    Parameters
    ----------
    by_budget : DataFrame
        ``nnlab.report_studies.schedule_by_budget``: one row per trial setting.
    vs : DataFrame
        ``nnlab.report_studies.schedule_vs_constant``.
    metric : str

    Returns
    -------
    Figure
        With ``fig.nnlab_data``: ``lines`` ``{(dataset, optimizer, schedule): {"epochs",
        "median", "std", "lr": arrays (n_budgets,), "color"}}`` (the best setting of each
        budget); ``filled`` ``{(dataset, optimizer, schedule): bool array (n_budgets,)}``;
        ``colors`` ``{schedule: RGB}``.
    """
    set_style()
    best = _schedule_points(best_settings(by_budget), vs)
    schedules = sorted(best["schedule"].unique(), key=lambda s: (s != "constant", s))
    others = sns.color_palette("colorblind", max(1, len(schedules) - 1))
    pal = {s: (CONSTANT_COLOR if s == "constant" else others[i - 1])
           for i, s in enumerate(schedules)}  # fmt: skip
    panels = list(best.groupby(["dataset", "optimizer"], sort=True))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels) + 1.8, 4.4), squeeze=False)
    data = {"lines": {}, "filled": {}, "colors": pal}
    for ax, (key, sub) in zip(axes[0], panels, strict=True):
        _schedule_panel(ax, sub, pal, data, key)
        budgets = sorted(sub["epochs"].unique())
        ax.set_xscale("log")
        ax.set_xticks(budgets, [str(b) for b in budgets])
        ax.minorticks_off()
        ax.set_xlim(budgets[0] / 1.4, budgets[-1] * 1.6)
        if use_log(sub["median_final"].to_numpy(dtype=float)):
            ax.set_yscale("log")
            log_ticks(ax.yaxis)
        ax.set_title(f"{key[0]}, {key[1]}")
        ax.set_xlabel("epoch budget (its own trials)")
    axes[0][0].set_ylabel(f"final {metric} of the best lr\n(median of seeds; bars: seed std)")
    handles = [Line2D([], [], color=c, marker="o", ls="--" if s == "constant" else "-", label=s)
               for s, c in pal.items()]  # fmt: skip
    handles.append(Line2D([], [], color="0.3", marker="o", ls="", ms=7,
                          label="filled: beats the\nbest constant rate"))  # fmt: skip
    fig.legend(handles=handles, title="schedule", loc="center right", frameon=False)
    fig.suptitle(f"Decaying schedules against the best constant rate: final {metric} by epoch "
                 "budget (lower is better)", fontsize=12)  # fmt: skip
    fig.tight_layout(rect=(0, 0, 1 - 1.9 / fig.get_figwidth(), 0.93))
    return attach(fig, **data)
