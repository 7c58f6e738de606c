"""The grid of a sweep: Hydra override strings -> one override list per job.

Pure functions on Hydra's public override parser, shared by the sweeper (which launches the
jobs) and ``nnlab.tracking.sweep`` (which validates every axis value before anything starts).
"""

from __future__ import annotations

import itertools
from typing import Any

SWEEPER_TARGET = "hydra_plugins.nnlab_sweeper.sweeper.NnlabSweeper"


def is_grid_sweeper(sweeper_cfg: Any) -> bool:
    """True when the configured ``hydra.sweeper`` is this grid sweeper."""
    return str(sweeper_cfg.get("_target_", "")) == SWEEPER_TARGET


def expand(config_loader: Any, arguments: list[str]) -> tuple[list[list[str]], list[str]]:
    """The jobs of a grid sweep (the Cartesian product, in Hydra's order) and the varying keys.

    Parameters
    ----------
    config_loader : hydra ConfigLoader
        Needed by Hydra's override parser (to tell config groups from values).
    arguments : list of str
        ``hydra.sweeper.params`` as ``key=values`` strings, then the command line's overrides
        (a later override of a key replaces an earlier one, as in Hydra's basic sweeper).

    Returns
    -------
    jobs : list of list of str
        One list of ``key=value`` overrides per job.
    varying : list of str
        The keys that take more than one value.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parsed = OverridesParser.create(config_loader=config_loader).parse_overrides(arguments)
    axes: dict[str, list[str]] = {}
    varying: list[str] = []
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
            varying.append(key)
        else:
            axes[key] = [f"{key}={override.get_value_element_as_str()}"]
    jobs = [list(job) for job in itertools.product(*axes.values())]
    return jobs, list(dict.fromkeys(varying))
