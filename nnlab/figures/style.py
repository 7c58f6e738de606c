"""The look every report figure shares: colours, palettes, log axes, and ``fig.nnlab_data``.

Learning rate is ordered, so it gets an ordered colour-blind-safe map (viridis, without its pale
yellow end); batch sizes and outcomes get seaborn's "colorblind" palette; runs that diverged or
failed are drawn in vermilion crosses, never left out.
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import seaborn as sns
from matplotlib.lines import Line2D

from nnlab.report.tables import fmt_lr

BAD_COLOR = "#d55e00"  # colorblind palette's vermilion: diverged / failed marks
NO_LEARNING_COLOR = "#e69f00"  # colorblind orange: usable runs that never improved
UNKNOWN_OUTCOME_COLOR = "#bbbbbb"  # outcomes outside the vocabulary, e.g. "running"
OUTCOME_COLORS = {
    "completed": "#0072b2",
    "early_stopped": "#56b4e9",
    "diverged": "#d55e00",
    "pruned": "#cc79a7",  # a search's pruner stopped it (colorblind reddish purple)
    "failed": "#000000",
    "killed": "#999999",
}


def lr_palette(lrs) -> dict[float, tuple]:
    """Ordered colours for the sorted learning rates (dark = small, yellow-green = large).

    Parameters
    ----------
    lrs : iterable of float
        Learning rates, repeats allowed.

    Returns
    -------
    dict
        ``{lr: RGBA}`` in increasing lr order.
    """
    lrs = sorted(set(float(x) for x in lrs))
    cmap = plt.get_cmap("viridis")
    pos = np.linspace(0.0, 0.85, len(lrs)) if len(lrs) > 1 else [0.4]
    return {lr: cmap(p) for lr, p in zip(lrs, pos, strict=True)}


def bs_palette(batch_sizes) -> dict[int, tuple]:
    """One "colorblind" colour per batch size, ``{batch_size: RGB}`` in increasing order."""
    bss = sorted(set(int(b) for b in batch_sizes))
    return dict(zip(bss, sns.color_palette("colorblind", len(bss)), strict=True))


def attach(fig: plt.Figure, **data: Any) -> plt.Figure:
    """Store what ``fig`` places as ``fig.nnlab_data`` (a dict) and return ``fig``.

    Each figure function documents its keys; tests read them to check what a figure shows
    against the table it was drawn from, not just that a PNG exists.
    """
    fig.nnlab_data = data
    return fig


def set_style() -> None:
    """The seaborn theme of every report figure."""
    sns.set_theme(style="whitegrid", context="notebook", font_scale=0.95)


def use_log(values: np.ndarray) -> bool:
    """Whether finite ``values`` (any shape) are positive and span more than a factor of 5."""
    v = values[np.isfinite(values)]
    return bool(len(v)) and v.min() > 0 and v.max() / v.min() > 5


def log_ticks(axis) -> None:
    """Readable ticks on a log axis spanning less than a few decades: 0.1, 0.2, 0.3, 0.5, 1..."""
    axis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 3.0, 5.0)))
    axis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%.3g"))
    axis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def lr_legend(fig, palette, title="learning rate", loc="center right") -> None:
    """A figure legend with one coloured line per learning rate of ``palette``."""
    handles = [Line2D([], [], color=c, lw=3, label=fmt_lr(lr)) for lr, c in palette.items()]
    fig.legend(handles=handles, title=title, loc=loc, frameon=False)
