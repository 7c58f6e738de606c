"""Searches (``hydra/sweeper=optuna``): the search space, the Optuna study, the ask-and-tell loop.

- :mod:`nnlab.search.settings` - the sampler and pruner options (no Optuna import)
- :mod:`nnlab.search.space` - a search space from Hydra's override grammar, and its plan
- :mod:`nnlab.search.study` - the study's journal storage, sampler/pruner tables, the trials'
  :class:`~nnlab.search.study.PruningSink` (imports Optuna)
- :mod:`nnlab.search.loop` - the launching process's loop: ask, launch, tell (imports Optuna)

The Hydra plugin ``hydra_plugins/nnlab_optuna_sweeper`` is a thin adapter over these modules.
"""
