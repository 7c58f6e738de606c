"""``NnlabSweeper``: the grid sweep, on Hydra's public Sweeper API.

It launches the Cartesian product of the sweep axes like Hydra's basic sweeper, but does not
compose every trial's config once more in the launching process before launching: nnlab's sweep
callback has already validated every value of every axis (``nnlab.tracking.sweep``), which is
what that serial check catches (~0.1 s per trial with the workers idle: ~25 s of a 252-trial
study). Every job still composes its own config, as Hydra always does.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from hydra.plugins.sweeper import Sweeper

log = logging.getLogger(__name__)


class LaunchingSweeper(Sweeper):
    """What nnlab's sweepers share: keep Hydra's context and instantiate the configured launcher."""

    def __init__(self) -> None:
        super().__init__()
        self.config: Any = None
        self.launcher: Any = None
        self.hydra_context: Any = None

    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )


class NnlabSweeper(LaunchingSweeper):
    def __init__(self, max_batch_size: int | None = None, params: dict | None = None) -> None:
        super().__init__()
        self.max_batch_size = max_batch_size
        self.params = dict(params or {})

    def sweep(self, arguments: list[str]) -> list:
        from omegaconf import OmegaConf

        from nnlab.sweep.grid import expand

        params = [f"{k}={v}" for k, v in self.params.items()]
        jobs, _ = expand(self.hydra_context.config_loader, params + list(arguments))
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")

        size = self.max_batch_size if self.max_batch_size not in (None, -1) else len(jobs)
        returns = []
        for start in range(0, len(jobs), max(size, 1)):
            batch = jobs[start : start + size]
            tic = time.perf_counter()
            results = self.launcher.launch(batch, initial_job_idx=start)
            log.debug("launched %d jobs in %.2fs", len(batch), time.perf_counter() - tic)
            for r in results:
                _ = r.return_value  # re-raises a job's exception, as Hydra's sweepers do
            returns.append(results)
        return returns
