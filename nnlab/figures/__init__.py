"""The report's figures: one function per figure, frames in, matplotlib Figure out.

Every function takes the tidy frames of ``nnlab.analysis`` / ``nnlab.report.tables`` and returns
a Figure; ``nnlab.report`` saves them. Each Figure carries ``fig.nnlab_data``, a dict of what it
places (boxed cells, plotted lines, crosses, bar segments...; keys in each function's docstring),
so a test can check what a figure shows against the table it was drawn from.

Modules, one per family of figures:

- ``style``         colours, palettes, log axes, ``attach`` (shared by all)
- ``curves``        1 learning curves (metric per epoch)
- ``heatmap``       2 final metric per lr x epoch budget, best lr boxed
- ``lr_compare``    3 speed vs quality, 4 best lr per budget, 5 batch-size effect
- ``outcome_bars``  6 run outcomes (stacked bars)
- ``boundaries``    7 decision boundaries of trained models
- ``studies``       the claim per set-up, schedules against the constant rate (study reports)
- ``critical_batch`` steps to target and the best lr against batch size (the batch-size study)
- ``lr_find``       an LR range test's curve; the finder's suggestions against the grid
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display. Runs before any submodule.

from nnlab.figures.boundaries import decision_boundaries  # noqa: E402
from nnlab.figures.curves import learning_curves  # noqa: E402
from nnlab.figures.heatmap import budget_heatmap  # noqa: E402
from nnlab.figures.lr_compare import batch_size_effect, best_lr, speed_quality  # noqa: E402
from nnlab.figures.outcome_bars import outcomes  # noqa: E402
from nnlab.figures.studies import claim_grid, schedule_budgets  # noqa: E402
from nnlab.figures.style import BAD_COLOR, OUTCOME_COLORS, bs_palette, lr_palette, plt  # noqa: E402

__all__ = [
    "BAD_COLOR",
    "OUTCOME_COLORS",
    "batch_size_effect",
    "best_lr",
    "bs_palette",
    "budget_heatmap",
    "claim_grid",
    "decision_boundaries",
    "learning_curves",
    "lr_palette",
    "outcomes",
    "plt",
    "schedule_budgets",
    "speed_quality",
]
