"""The LR range test's curve: smoothed loss against learning rate, the suggestions marked."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np

from nnlab.figures.style import attach, set_style

# suggestion rule -> marker colour (seaborn "colorblind": vermilion, bluish green, reddish purple)
RULE_COLORS = {"valley": "#d55e00", "minimum": "#009e73", "steep": "#cc79a7"}


def range_test(
    lrs: np.ndarray,
    losses: np.ndarray,
    smoothed: np.ndarray,
    suggestions: dict,
    kept: tuple[int, int],
    title: str = "",
) -> plt.Figure:
    """One panel: batch losses (faint) and the smoothed loss against the rate (log x).

    Parameters
    ----------
    lrs, losses, smoothed : ndarray, shape (n,)
        The recorded curve: each step's rate, batch loss and smoothed loss.
    suggestions : dict
        Rule name -> ``nnlab.lr_range.Suggestion``: a dot where it was read on the curve and a
        dashed line at the suggested rate (a tenth of the dot's rate for ``minimum``).
    kept : (int, int)
        ``[start, stop)`` of the points the suggestions read (the rest is drawn thinner).
    title : str

    Returns
    -------
    matplotlib.figure.Figure
        ``fig.nnlab_data``: ``{"suggested": {rule: lr}, "points": n, "kept": kept}``.
    """
    set_style()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    # fixed margins: constrained layout measured every log tick and tripled the time to save
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.13, top=0.92)
    ax.plot(lrs, losses, color="0.75", lw=0.8, label="batch loss")
    ax.plot(lrs, smoothed, color="0.55", lw=1.2)
    start, stop = kept
    ax.plot(lrs[start:stop], smoothed[start:stop], color="#0072b2", lw=2, label="smoothed loss")
    for name, s in suggestions.items():
        if math.isnan(s.lr):
            continue
        color = RULE_COLORS.get(name, "0.2")
        ax.plot([s.at_lr], [s.at_loss], "o", color=color, ms=8, zorder=3)
        ax.axvline(s.lr, color=color, ls="--", lw=1.2, label=f"{name}: {s.lr:.3g}")
    ax.set_xscale("log")
    # plain tick labels: the default 10^x ones are mathtext, parsed anew for every figure
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    finite = smoothed[np.isfinite(smoothed)]
    if finite.size:  # the rise past the stop would squash the interesting part
        low, high = float(finite.min()), float(finite[: stop or None].max())
        ax.set_ylim(low - 0.05 * (high - low + 1e-12), high + 0.15 * (high - low + 1e-12))
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title(title or "LR range test")
    ax.legend(frameon=False, fontsize="small")
    suggested = {name: s.lr for name, s in suggestions.items()}
    return attach(fig, suggested=suggested, points=len(lrs), kept=kept)


DATASET_MARKERS = "osD^vP*X"


def suggestion_vs_best(table) -> plt.Figure:
    """The LR finder against the grid: one panel per (budget, rule), log-log, one point per
    (dataset, optimizer, batch size): the grid's best lr (x) against the rule's suggestion (y),
    medians over seeds with 95% bootstrap intervals as bars; the grey band is within one grid
    step of the diagonal. A suggestion more than a decade beyond the grid's best lrs is an arrow
    at the panel's edge.

    Parameters
    ----------
    table : DataFrame
        ``nnlab.report.finder_study.compare`` rows.

    Returns
    -------
    matplotlib.figure.Figure
        ``fig.nnlab_data``: ``{(budget, rule): [(dataset, optimizer, batch_size, best_lr,
        suggested_lr), ...]}`` (points with a best lr).
    """
    import seaborn as sns

    set_style()
    budgets = sorted(table["budget"].unique())
    rules = list(dict.fromkeys(table["rule"]))
    fig, axes = plt.subplots(len(budgets), len(rules), figsize=(3.6 * len(rules), 3.3 * len(budgets)),
                             squeeze=False, sharex=True, sharey=True)  # fmt: skip
    fig.subplots_adjust(left=0.08, right=0.8, bottom=0.08, top=0.93, wspace=0.08, hspace=0.18)
    colors = dict(zip(("sgd", "adam", "rmsprop"), sns.color_palette("colorblind", 3), strict=True))
    markers = dict(zip(sorted(table["dataset"].unique()), DATASET_MARKERS, strict=False))
    finite = table[np.isfinite(table["best_lr"])]
    # the grid's best lrs, a decade either side: a suggestion beyond is drawn at the edge
    lo, hi = (
        (finite["best_lr"].min() / 10, finite["best_lr"].max() * 10) if len(finite) else (1e-4, 10)
    )
    step = 10 ** float(np.nanmedian(table["grid_step"])) if len(table) else 10**0.5
    bss = sorted(table["batch_size"].unique())
    placed = {}
    for i, budget in enumerate(budgets):
        for j, rule in enumerate(rules):
            ax = axes[i][j]
            diag = np.geomspace(lo, hi, 10)
            ax.fill_between(diag, diag / step, diag * step, color="0.9", lw=0, zorder=0)
            ax.plot(diag, diag, color="0.6", lw=0.8, zorder=1)
            rows = finite[(finite["budget"] == budget) & (finite["rule"] == rule)]
            for r in rows.itertuples(index=False):
                x, y = r.best_lr, float(np.clip(r.suggested_lr, lo, hi))
                if y != r.suggested_lr:  # off the panel: an arrow at its edge
                    ax.plot(x, y, "v" if y == lo else "^", color=colors.get(r.optimizer, "0.3"),
                            ms=8, clip_on=False)  # fmt: skip
                    continue
                ax.errorbar(
                    x, y,
                    xerr=[[max(x - r.best_lr_lo, 0)], [max(r.best_lr_hi - x, 0)]],
                    yerr=[[max(y - r.suggested_lr_lo, 0)], [max(r.suggested_lr_hi - y, 0)]],
                    fmt=markers[r.dataset], color=colors.get(r.optimizer, "0.3"),
                    mfc="none" if len(bss) > 1 and r.batch_size == bss[-1] else None,
                    ms=6, elinewidth=0.7, alpha=0.85,
                )  # fmt: skip
            placed[(int(budget), rule)] = [
                (r.dataset, r.optimizer, int(r.batch_size), float(r.best_lr), float(r.suggested_lr))
                for r in rows.itertuples(index=False)
            ]
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlim(lo, hi)
            ax.set_ylim(lo, hi)
            if i == 0:
                ax.set_title(rule)
            if j == 0:
                ax.set_ylabel(f"{budget} epochs\nsuggested lr")
            if i == len(budgets) - 1:
                ax.set_xlabel("grid's best lr")
    handles = [plt.Line2D([], [], color=c, marker="o", ls="", label=o) for o, c in colors.items()
               if o in set(table["optimizer"])]  # fmt: skip
    handles += [
        plt.Line2D([], [], color="0.3", marker=m, ls="", label=d) for d, m in markers.items()
    ]
    if len(bss) > 1:
        handles.append(plt.Line2D([], [], color="0.3", marker="o", mfc="none", ls="",
                                  label=f"batch {bss[-1]} (hollow)"))  # fmt: skip
    fig.legend(handles=handles, loc="center right", frameon=False)
    return attach(fig, placed=placed)
