"""nnlab's Hydra sweeper plugin (the grid sweep of ``python -m nnlab.run -m``)."""
