"""The sweeper's config schema, registered as ``hydra/sweeper=nnlab`` (nnlab's default).

No ``from __future__ import annotations`` here: Hydra reads these dataclass annotations as types.
"""

from dataclasses import dataclass
from typing import Dict, Optional  # noqa: UP035 - OmegaConf needs typing's generics here

from hydra.core.config_store import ConfigStore


@dataclass
class NnlabSweeperConf:
    """Cartesian product of the sweep axes, like Hydra's basic sweeper.

    ``params``: axis -> comma-separated values (what ``hydra.sweeper.params`` holds in the
    experiment files); ``max_batch_size``: jobs handed to the launcher at once (None: all).
    """

    _target_: str = "hydra_plugins.nnlab_sweeper.sweeper.NnlabSweeper"
    max_batch_size: Optional[int] = None  # noqa: UP045
    params: Optional[Dict[str, str]] = None  # noqa: UP006, UP045


ConfigStore.instance().store(
    group="hydra/sweeper", name="nnlab", node=NnlabSweeperConf, provider="nnlab"
)
