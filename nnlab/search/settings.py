"""A search's sampler and pruner settings: one dataclass per option, with Optuna's defaults.

Samplers and pruners are named (``name: tpe``), never ``_target_`` classes: Hydra would
instantiate those before the sweeper sees them, and nnlab maps names to fixed tables
(:mod:`nnlab.search.study`). The Hydra plugin (``hydra_plugins/nnlab_optuna_sweeper``)
registers these as the groups ``hydra/sweeper/sampler`` and ``hydra/sweeper/pruner``;
:func:`nnlab.search.space.plan` checks every key against them. No Optuna import here.

No ``from __future__ import annotations``: OmegaConf reads these annotations as types.
"""

from dataclasses import dataclass
from typing import Any, Optional

# --- samplers: seed null = the run's top-level ``seed`` (plus the trials already in the study) --


@dataclass
class TPESamplerConf:
    """Optuna's TPESampler: ``n_startup_trials`` random trials, then the tree-structured Parzen
    estimator; ``constant_liar`` keeps parallel trials from sampling the same point."""

    name: str = "tpe"
    seed: Optional[int] = None  # noqa: UP045
    n_startup_trials: int = 10
    n_ei_candidates: int = 24
    multivariate: bool = False
    constant_liar: bool = True


@dataclass
class RandomSamplerConf:
    name: str = "random"
    seed: Optional[int] = None  # noqa: UP045


@dataclass
class GridSamplerConf:
    """Every combination of the ``choice``/``range`` values, in random order (no ``interval``)."""

    name: str = "grid"
    seed: Optional[int] = None  # noqa: UP045


@dataclass
class QMCSamplerConf:
    """Quasi-Monte Carlo (Sobol by default): evenly spread points, no model of the objective."""

    name: str = "qmc"
    seed: Optional[int] = None  # noqa: UP045
    qmc_type: str = "sobol"
    scramble: bool = True


# --- pruners: the resource is the epoch (a trial reports its objective every epoch) --------------


@dataclass
class NoPrunerConf:
    name: str = "none"


@dataclass
class MedianPrunerConf:
    """Stop a trial whose value is worse than the median of earlier trials at the same epoch."""

    name: str = "median"
    n_startup_trials: int = 5
    n_warmup_steps: int = 0
    interval_steps: int = 1


@dataclass
class SuccessiveHalvingPrunerConf:
    """Asynchronous successive halving: at epochs ``min_resource * reduction_factor**k`` only
    the best ``1/reduction_factor`` of the trials that reached that rung go on."""

    name: str = "sha"
    min_resource: Any = "auto"  # an epoch count, or auto: 1/100 of the first completed trial
    reduction_factor: int = 4
    min_early_stopping_rate: int = 0
    bootstrap_count: int = 0


@dataclass
class HyperbandPrunerConf:
    """Several successive-halving brackets at once; ``max_resource: auto`` = the ``epochs``."""

    name: str = "hyperband"
    min_resource: int = 1
    max_resource: Any = "auto"
    reduction_factor: int = 3
    bootstrap_count: int = 0


@dataclass
class ThresholdPrunerConf:
    """Stop a trial whose value leaves ``[lower, upper]`` (deterministic: for tests and guards)."""

    name: str = "threshold"
    lower: Optional[float] = None  # noqa: UP045
    upper: Optional[float] = None  # noqa: UP045
    n_warmup_steps: int = 0
    interval_steps: int = 1


SAMPLERS = {
    "tpe": TPESamplerConf,
    "random": RandomSamplerConf,
    "grid": GridSamplerConf,
    "qmc": QMCSamplerConf,
}
PRUNERS = {
    "none": NoPrunerConf,
    "median": MedianPrunerConf,
    "sha": SuccessiveHalvingPrunerConf,
    "hyperband": HyperbandPrunerConf,
    "threshold": ThresholdPrunerConf,
}
