"""nnlab's Optuna sweeper plugin: ``hydra/sweeper=optuna`` (a search instead of a grid)."""
