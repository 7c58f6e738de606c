"""The search sweeper's config schema: ``hydra/sweeper=optuna`` and its groups
``hydra/sweeper/sampler={tpe,random,grid,qmc}`` and ``hydra/sweeper/pruner={none,median,sha,
hyperband,threshold}``.

Samplers and pruners are named (``name: tpe``), never ``_target_`` classes: Hydra would
instantiate those before the sweeper sees them, and nnlab maps names to fixed tables
(:mod:`nnlab.search.study`). Importing this module does not import Optuna.

No ``from __future__ import annotations`` here: Hydra's plugin scanner reads these dataclass
annotations as types.
"""

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional  # noqa: UP035 - OmegaConf needs typing's generics

from hydra.core.config_store import ConfigStore

from nnlab.search.settings import PRUNERS, SAMPLERS


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
