"""The launch path of ``python -m nnlab.run -m``: from a sweep's overrides to its trials.

- :mod:`nnlab.sweep.grid` - the grid: Hydra override strings -> one override list per trial
"""
