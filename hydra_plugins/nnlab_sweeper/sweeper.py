"""``NnlabSweeper``: the grid sweep, on Hydra's public Sweeper API; the work is nnlab's
(:func:`nnlab.sweep.grid.run_grid`)."""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper


class LaunchingSweeper(Sweeper):
    """What nnlab's sweepers share: Hydra's context and the configured launcher."""

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
        from nnlab.sweep.grid import run_grid

        run_grid(self, list(arguments))
        return []
