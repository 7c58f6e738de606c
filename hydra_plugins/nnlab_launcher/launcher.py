"""nnlab's launchers. Only nnlab's sweepers use them: they hand the trials, composed, to
``nnlab.sweep`` (nnlab.sweep.launch), which runs them; Hydra's own launch path is not used."""

from __future__ import annotations

from typing import Any

from hydra.plugins.launcher import Launcher


class _NnlabLauncher(Launcher):
    def __init__(self, **params: Any) -> None:
        self.params = params

    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        self.config = config

    def launch(self, job_overrides: Any, initial_job_idx: int) -> Any:
        from hydra.errors import HydraException

        raise HydraException(
            f"hydra/launcher={type(self).__name__} runs the trials of nnlab's sweepers only "
            "(hydra/sweeper=nnlab or optuna); pick hydra/launcher=joblib for another sweeper"
        )


class NnlabParallelLauncher(_NnlabLauncher):
    """``hydra/launcher=parallel``: :mod:`nnlab.sweep.pool`."""


class NnlabSlurmLauncher(_NnlabLauncher):
    """``hydra/launcher=slurm``: :mod:`nnlab.sweep.slurm`."""
