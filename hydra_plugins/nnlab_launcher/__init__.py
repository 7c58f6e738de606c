"""nnlab's Hydra launcher plugin: ``hydra/launcher=parallel`` and ``hydra/launcher=slurm``."""
