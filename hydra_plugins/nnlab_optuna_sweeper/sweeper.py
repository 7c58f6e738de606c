"""``NnlabOptunaSweeper``: a search on Hydra's public Sweeper API, Optuna's ask-and-tell.

The launching process asks the study for a trial, launches it as one Hydra job whose number is
the study trial's number, and tells the study its result; ``n_jobs`` trials are in flight at
once. The trials report every epoch to the study themselves
(:class:`nnlab.search.study.PruningSink`). The work is in :mod:`nnlab.search.loop`, imported on
use, so Optuna is imported only by a search.
"""

from __future__ import annotations

from typing import Any

from hydra_plugins.nnlab_sweeper.sweeper import LaunchingSweeper


class NnlabOptunaSweeper(LaunchingSweeper):
    def __init__(
        self,
        sampler: Any = None,
        pruner: Any = None,
        n_trials: int = 20,
        n_jobs: int = 1,
        objective: str = "val_loss",
        direction: str = "minimize",
        study_dir: str = ".nnlab/studies",
        params: dict | None = None,
    ) -> None:
        super().__init__()
        # nnlab.search.space.plan reads and checks these from hydra.sweeper itself
        self.n_jobs = n_jobs
        self.params = dict(params or {})

    def sweep(self, arguments: list[str]) -> list:
        from nnlab.search.loop import Search

        Search(self, list(arguments)).run()
        return []
