"""The grid of a sweep: Hydra override strings -> one override list per trial, and its launch.

:func:`parse_grid` reads the sweep axes with Hydra's own override parser (``lr=0.1,0.01``,
``range(1,4)``, ``choice(...)``); :class:`Grid` yields the Cartesian product lazily, in Hydra's
order (the last axis varies fastest), so a grid of a million trials costs no memory until its
trials run. :func:`run_grid` is what ``hydra/sweeper=nnlab`` does.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

SWEEPER_TARGET = "hydra_plugins.nnlab_sweeper.sweeper.NnlabSweeper"


def is_grid_sweeper(sweeper_cfg: Any) -> bool:
    """True when the configured ``hydra.sweeper`` is this grid sweeper."""
    return str(sweeper_cfg.get("_target_", "")) == SWEEPER_TARGET


@dataclass
class Grid:
    """The axes of a grid sweep: key -> its ``key=value`` overrides, in command-line order."""

    axes: dict[str, list[str]]

    @property
    def varying(self) -> list[str]:
        """The keys that take more than one value."""
        return [k for k, values in self.axes.items() if len(values) > 1]

    @property
    def shared(self) -> list[str]:
        """The overrides every trial carries (one-value axes)."""
        return [values[0] for values in self.axes.values() if len(values) == 1]

    def __len__(self) -> int:
        return math.prod(len(v) for v in self.axes.values())

    def jobs(self) -> Iterator[tuple[int, list[str]]]:
        """(job number, overrides) of every trial, lazily."""
        for job, combo in enumerate(itertools.product(*self.axes.values())):
            yield job, list(combo)

    def probes(self) -> list[list[str]]:
        """Trials that together hold every value of every axis: the first trial, then one per
        other value of each axis (1 + sum(values - 1) instead of every trial)."""
        first = [values[0] for values in self.axes.values()]
        probes = [list(first)]
        for i, values in enumerate(self.axes.values()):
            for other in values[1:]:
                probes.append([*first[:i], other, *first[i + 1 :]])
        return probes


def parse_grid(config_loader: Any, arguments: list[str]) -> Grid:
    """The grid of ``arguments``: ``hydra.sweeper.params`` as ``key=values`` strings, then the
    command line's overrides (a later override of a key replaces an earlier one, as in Hydra's
    basic sweeper). HydraException for a sweep the grid cannot list (``interval``)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parsed = OverridesParser.create(config_loader=config_loader).parse_overrides(arguments)
    axes: dict[str, list[str]] = {}
    for override in parsed:
        key = override.get_key_element()
        if override.is_sweep_override():
            if not override.is_discrete_sweep():
                raise HydraException(
                    f"{key}: the grid sweeper takes lists and ranges, not "
                    f"{override.value_type.name if override.value_type else 'this sweep'}; "
                    "use values like lr=0.1,0.01 or range(1,4)"
                )
            axes[key] = [f"{key}={v}" for v in override.sweep_string_iterator()]
        else:  # a later setting of a key replaces it where it first stood, as in Hydra
            axes[key] = [f"{key}={override.get_value_element_as_str()}"]
    return Grid(axes)


def expand(config_loader: Any, arguments: list[str]) -> tuple[list[list[str]], list[str]]:
    """Every trial's overrides (a list) and the varying keys: for tests and small grids."""
    grid = parse_grid(config_loader, arguments)
    return [job for _, job in grid.jobs()], grid.varying


def run_grid(sweeper: Any, arguments: list[str]) -> None:
    """``hydra/sweeper=nnlab``: check, open, run every trial of the grid, summarise."""
    from nnlab.sweep.session import Session

    params = [f"{k}={v}" for k, v in (sweeper.params or {}).items()]
    grid = parse_grid(sweeper.hydra_context.config_loader, params + list(arguments))
    session = Session(sweeper)
    session.open(grid.probes(), grid.shared, grid.varying, len(grid), grid.axes)
    session.sweep(grid.jobs())
