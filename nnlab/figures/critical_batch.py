"""The batch-size study's figures: steps to target against batch size, with the fitted critical
batch size and the measured noise scale; the best learning rate against batch size."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from nnlab.figures.style import attach, set_style

OPT_COLORS = dict(zip(("sgd", "adam", "rmsprop"), sns.color_palette("colorblind", 3), strict=True))


def _panels(results) -> tuple[plt.Figure, dict]:
    datasets = sorted({r.dataset for r in results})
    fig, axes = plt.subplots(
        1, len(datasets), figsize=(5.2 * len(datasets), 4.2), squeeze=False, layout="constrained"
    )
    return fig, dict(zip(datasets, axes[0], strict=True))


def steps_vs_batch(results) -> plt.Figure:
    """One panel per dataset, log-log: steps to the target at each batch size's best lr (median
    over seeds, band: 95% bootstrap interval) per optimizer; dashed: the fit
    ``S_min (1 + B_crit / B)``; vertical lines: B_crit (solid) and the measured B_simple
    (dotted), shaded spans their intervals; grey: perfect scaling (steps halve as B doubles).

    ``fig.nnlab_data``: ``{(dataset, optimizer): {"steps": [...], "b_crit": v,
    "b_simple": v}}``.
    """
    set_style()
    fig, axes = _panels(results)
    placed = {}
    for r in results:
        ax, color = axes[r.dataset], OPT_COLORS.get(r.optimizer, "0.3")
        b = r.batch_sizes
        ok = np.isfinite(r.fewest)
        ax.plot(b[ok], r.fewest[ok], "o-", color=color, label=r.optimizer)
        lo, hi = np.asarray(r.fewest_lo, float), np.asarray(r.fewest_hi, float)
        band = ok & np.isfinite(lo) & np.isfinite(hi)
        ax.fill_between(b[band], lo[band], hi[band], color=color, alpha=0.18, lw=0)
        if math.isfinite(r.b_crit.value):
            fine = np.geomspace(b.min(), b.max(), 60)
            ax.plot(fine, r.s_min.value * (1 + r.b_crit.value / fine), "--", color=color, lw=1)
        for x, style in ((r.b_crit, "-"), (r.b_simple, ":")):
            if math.isfinite(x.value):
                ax.axvline(x.value, color=color, ls=style, lw=1.3)
                if math.isfinite(x.lo) and math.isfinite(x.hi):
                    ax.axvspan(x.lo, x.hi, color=color, alpha=0.07, lw=0)
        if ok.any():  # perfect scaling from the smallest batch
            first = np.flatnonzero(ok)[0]
            ax.plot(b, r.fewest[first] * b[first] / b, color="0.7", lw=0.8, zorder=0)
        placed[(r.dataset, r.optimizer)] = {
            "steps": [float(v) for v in r.fewest],
            "b_crit": r.b_crit.value,
            "b_simple": r.b_simple.value,
        }
    for name, ax in axes.items():
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(name)
        ax.set_xlabel("batch size")
        ax.set_ylabel("steps to the target loss (best lr)")
        ax.legend(frameon=False, title="solid: B_crit, dotted: B_simple", title_fontsize="small")
    return attach(fig, placed=placed)


def best_lr_vs_batch(results) -> plt.Figure:
    """One panel per dataset, log-log: each batch size's best lr (median over seeds; bars: 95%
    bootstrap interval; hollow: at the grid's edge, left out of the fit) per optimizer, with
    the fitted power law ``lr ~ B**k``; grey: slopes 1 (linear rule) and 1/2 (square root).

    ``fig.nnlab_data``: ``{(dataset, optimizer): {"best_lr": [...], "k": v}}``.
    """
    set_style()
    fig, axes = _panels(results)
    placed = {}
    for r in results:
        ax, color = axes[r.dataset], OPT_COLORS.get(r.optimizer, "0.3")
        b, lr = r.batch_sizes, np.asarray(r.best_lr, float)
        ok = np.isfinite(lr)
        lo, hi = np.asarray(r.lr_lo, float), np.asarray(r.lr_hi, float)
        err = np.vstack([np.clip(lr - lo, 0, None), np.clip(hi - lr, 0, None)])
        err = np.where(np.isfinite(err), err, 0)
        fit = ok & ~r.censored
        ax.errorbar(b[ok], lr[ok], yerr=err[:, ok], fmt="none", ecolor=color, alpha=0.6)
        ax.plot(
            b[fit], lr[fit], "o", color=color, label=f"{r.optimizer}: k = {r.exponent.value:.2f}"
        )
        ax.plot(b[ok & r.censored], lr[ok & r.censored], "o", mfc="none", color=color)
        k = r.exponent.value
        if math.isfinite(k) and fit.any():
            x0 = np.exp(np.mean(np.log(b[fit])))
            y0 = np.exp(np.mean(np.log(lr[fit])))
            ax.plot(b, y0 * (b / x0) ** k, "--", color=color, lw=1)
            for slope in (1.0, 0.5):
                ax.plot(b, y0 * (b / x0) ** slope, color="0.75", lw=0.8, zorder=0)
        placed[(r.dataset, r.optimizer)] = {"best_lr": [float(v) for v in lr], "k": k}
    for name, ax in axes.items():
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(name)
        ax.set_xlabel("batch size")
        ax.set_ylabel("best learning rate (fewest steps)")
        ax.legend(frameon=False, title="grey: slopes 1 and 1/2", title_fontsize="small")
    return attach(fig, placed=placed)
