"""The LR range test's curve: smoothed loss against learning rate, the suggestions marked."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
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
    fig, ax = plt.subplots(figsize=(6.4, 4.2), layout="constrained")
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
