"""The search sweeper's config schema: ``hydra/sweeper=optuna`` and its groups
``hydra/sweeper/sampler={tpe,random,grid,qmc}`` and ``hydra/sweeper/pruner={none,median,sha,
hyperband,threshold}``.

Samplers and pruners are named (``name: tpe``), never ``_target_`` classes: Hydra would
instantiate those before the sweeper sees them, and nnlab maps names to fixed tables
(``hydra_plugins.nnlab_optuna_sweeper.study``). Importing this module does not import Optuna.

No ``from __future__ import annotations`` here: Hydra's plugin scanner reads these dataclass
annotations as types.
"""

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional  # noqa: UP035 - OmegaConf needs typing's generics

from hydra.core.config_store import ConfigStore

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


@dataclass
class NnlabOptunaSweeperConf:
    """A search: ``n_trials`` trials in total (a re-run resumes the study), ``n_jobs`` in flight.

    ``params``: key -> search space in Hydra's override grammar (``interval``, ``range``,
    ``choice``, ``tag(log, ...)``; a plain value stays fixed), as the experiment files set it;
    command-line overrides of the same key win. ``objective``: the metric each trial reports
    every epoch (``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``); ``study_dir``: where
    the study's journal file lives (relative paths start at the launch directory).
    """

    _target_: str = "hydra_plugins.nnlab_optuna_sweeper.sweeper.NnlabOptunaSweeper"
    defaults: List[Any] = field(  # noqa: UP006
        default_factory=lambda: ["_self_", {"sampler": "tpe"}, {"pruner": "none"}]
    )
    sampler: Any = None
    pruner: Any = None
    n_trials: int = 20
    n_jobs: int = 1
    objective: str = "val_loss"
    direction: str = "minimize"
    study_dir: str = ".nnlab/studies"
    params: Optional[Dict[str, str]] = None  # noqa: UP006, UP045


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

# Stored as plain dicts, not structured nodes: a study's experiment file can then set
# ``hydra.sweeper.pruner: {name: sha, min_resource: 4}`` over the default ``none`` (Hydra 1.3
# cannot override ``hydra/sweeper/pruner`` from a file that also switches ``hydra/sweeper``);
# ``nnlab.tracking.search`` checks every key against these dataclasses before anything runs.
_cs = ConfigStore.instance()
_cs.store(group="hydra/sweeper", name="optuna", node=NnlabOptunaSweeperConf, provider="nnlab")
for _group, _table in (("sampler", SAMPLERS), ("pruner", PRUNERS)):
    for _name, _conf in _table.items():
        _cs.store(
            group=f"hydra/sweeper/{_group}", name=_name, node=asdict(_conf()), provider="nnlab"
        )
