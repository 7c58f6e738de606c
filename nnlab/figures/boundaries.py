"""Figure 7, decision boundaries: a few trained models' P(class 1) over the input plane."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from nnlab.figures.style import BAD_COLOR, attach, set_style

GRID = 200  # grid points per axis
PAD = 0.5  # margin around the points, in input units


def class1_probability(model, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """P(class 1) of ``model`` on a ``GRID`` x ``GRID`` grid around the points ``x`` (M, 2).

    Two-column (or single-column) outputs give their last column; more classes give the argmax
    scaled to [0, 1]. Non-finite predictions become 0.5.

    Returns
    -------
    (gx, gy, prob, no_prediction)
        Grid coordinates and probabilities, each (GRID, GRID); ``no_prediction`` is True when
        every prediction was NaN (weights not finite).
    """
    gx, gy = np.meshgrid(
        np.linspace(x[:, 0].min() - PAD, x[:, 0].max() + PAD, GRID),
        np.linspace(x[:, 1].min() - PAD, x[:, 1].max() + PAD, GRID),
    )
    grid = np.c_[gx.ravel(), gy.ravel()].astype(np.float32)
    out = np.asarray(model.predict(grid), dtype=float)
    prob = out[:, -1] if out.ndim == 2 and out.shape[1] <= 2 else out.reshape(-1)
    if out.ndim == 2 and out.shape[1] > 2:
        prob = out.argmax(axis=1) / (out.shape[1] - 1)
    no_prediction = bool(np.isnan(prob).all())
    return gx, gy, np.nan_to_num(prob, nan=0.5).reshape(gx.shape), no_prediction


def decision_boundaries(panels: list[dict]) -> plt.Figure:
    """Predicted probability of class 1 over the input plane for a few runs, with the validation
    points.

    Parameters
    ----------
    panels : list of dict
        One per panel: ``title`` (str), ``model`` (anything with ``predict(x (N, 2)) -> (N,
        k)``), ``x`` (M, 2) validation inputs, ``y`` (M,) their labels 0/1.

    Returns
    -------
    Figure
        With ``fig.nnlab_data``: ``panels`` list of ``{"title", "prob": (GRID, GRID) array as
        drawn, "extent": (x0, x1, y0, y1), "no_prediction": bool, "points": {0: (M0, 2),
        1: (M1, 2)}}``.
    """
    set_style()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.7 * len(panels), 3.9), squeeze=False)
    shown = []
    for ax, p in zip(axes[0], panels, strict=True):
        x, y = p["x"], p["y"]
        gx, gy, prob, no_prediction = class1_probability(p["model"], x)
        if no_prediction:
            ax.text(
                0.5,
                0.5,
                "no prediction\n(weights are not finite)",
                ha="center",
                va="center",
                transform=ax.transAxes,
                color=BAD_COLOR,
                fontsize=10,
            )
        filled = ax.contourf(
            gx, gy, prob, levels=np.linspace(0, 1, 11), cmap="PuOr", alpha=0.6, vmin=0, vmax=1
        )
        ax.contour(gx, gy, prob, levels=[0.5], colors="k", linewidths=1.4)
        # White circles and black triangles stay visible on either background colour.
        for cls, marker, face in ((0, "o", "white"), (1, "^", "black")):
            m = y == cls
            ax.scatter(
                x[m, 0],
                x[m, 1],
                s=16,
                marker=marker,
                facecolor=face,
                edgecolor="black",
                linewidth=0.6,
                label=f"class {cls}",
            )
        ax.set_title(p["title"], fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        shown.append(
            {"title": p["title"], "prob": prob, "no_prediction": no_prediction,
             "extent": (gx.min(), gx.max(), gy.min(), gy.max()),
             "points": {c: x[y == c] for c in (0, 1)}}
        )  # fmt: skip
    axes[0][0].legend(loc="lower left", fontsize=8, frameon=True)
    fig.suptitle(
        "Decision boundaries (validation points): how well each lr separates the classes",
        fontsize=12,
    )
    fig.tight_layout(rect=(0, 0, 0.93, 0.95))
    cax = fig.add_axes((0.94, 0.12, 0.01, 0.7))
    fig.colorbar(filled, cax=cax, label="P(class 1)")
    return attach(fig, panels=shown)
