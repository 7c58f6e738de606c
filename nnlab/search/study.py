"""The Optuna side of a search, shared by the sweeper and its trials (imports Optuna).

- :func:`storage`: the study's journal file (``JournalFileBackend``: every process appends to
  one file under a lock, ~0.3 ms per report from two processes; no database server).
- :func:`make_sampler`, :func:`make_pruner`: config names -> Optuna objects (fixed tables).
- :class:`PruningSink`: in each trial, reports the objective every epoch to the study and asks
  the pruner whether to stop; ``nnlab.train`` ends training there as outcome ``pruned``.
"""

from __future__ import annotations

import functools
import logging
import math
import sys
from typing import Any

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from nnlab.search.space import SearchSpace
from nnlab.train import Sink

# Optuna logs every tell at INFO; nnlab prints its own line per trial
optuna.logging.set_verbosity(logging.WARNING)

# user attrs of a study trial that nnlab sets
OUTCOME_ATTR = "nnlab.outcome"  # set when the trial is told: it counts towards n_trials
LAUNCHER_ATTR = "nnlab.launcher"  # host:pid of the launching process that asked it
RUN_ATTR = "mlflow_run_id"
EPOCHS_ATTR = "nnlab.epochs_run"
REQUEUED_ATTR = "nnlab.requeued_from"  # re-asked in place of a trial whose launcher died


@functools.cache
def storage(journal: str) -> JournalStorage:
    """The journal storage of ``journal`` (one per process: it replays the file once)."""
    return JournalStorage(JournalFileBackend(journal))


def make_pruner(spec: dict[str, Any]) -> optuna.pruners.BasePruner:
    """``{"name": "sha", ...}`` -> the Optuna pruner with those keyword arguments."""
    table = {
        "none": optuna.pruners.NopPruner,
        "median": optuna.pruners.MedianPruner,
        "sha": optuna.pruners.SuccessiveHalvingPruner,
        "hyperband": optuna.pruners.HyperbandPruner,
        "threshold": optuna.pruners.ThresholdPruner,
    }
    kwargs = {k: v for k, v in spec.items() if k != "name"}
    return table[spec["name"]](**kwargs)


def make_sampler(spec: dict[str, Any], space: SearchSpace, seed: int) -> Any:
    """``{"name": "tpe", ...}`` -> the Optuna sampler, seeded with ``seed``."""
    kwargs = {k: v for k, v in spec.items() if k not in ("name", "seed")}
    name = spec["name"]
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, **kwargs)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False, **kwargs)
    grid = {n: d.grid_values() for n, d in space.dims.items()}
    return AskTellGridSampler(grid, seed=seed)


class AskTellGridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler without its ``study.stop()`` once the grid is done (allowed only
    inside ``optimize``); the search asks no more once ``is_exhausted``."""

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        return None


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class PruningSink(Sink):
    """One trial of the study: its objective every epoch, the pruner's verdict after each.

    Parameters
    ----------
    search : dict
        The sweep context's ``search`` entry (journal, study, objective, pruner).
    number : int
        The study trial's number (the Hydra job number of the trial).
    epochs : int
        The trial's epoch budget: the pruner is not asked after the last epoch.

    A storage error (e.g. the study trial was failed by a later launch that found this one's
    launcher gone) is printed once; training goes on without reporting.
    """

    def __init__(self, search: dict[str, Any], number: int, epochs: int) -> None:
        self.objective = search["objective"]
        self.epochs = epochs
        self.storage = storage(search["journal"])
        self.pruner = make_pruner(search["pruner"])
        self.study = optuna.load_study(
            study_name=search["study"],
            storage=self.storage,
            sampler=optuna.samplers.RandomSampler(),  # never samples here; TPE would build more
            pruner=self.pruner,
        )
        study_id = self.storage.get_study_id_from_name(search["study"])
        self.trial_id = self.storage.get_trial_id_from_study_id_trial_number(study_id, number)
        self.number = number
        self.prune = False
        self.error: str | None = None

    def backfill(self, history: dict[str, list[float]]) -> None:
        """Report the epochs a resumed trial trained before its interruption."""
        for epoch, value in enumerate(history.get(self.objective, []), start=1):
            self._report(epoch, value)

    def set_run(self, run_id: str | None) -> None:
        if run_id is not None:
            self._call(self.storage.set_trial_user_attr, self.trial_id, RUN_ATTR, run_id)

    def _call(self, fn: Any, *args: Any) -> Any:
        if self.error is not None:
            return None
        try:
            return fn(*args)
        except Exception as exc:  # keep training; the sweeper tells the study what happened
            self.error = f"{type(exc).__name__}: {exc}"
            say(f"nnlab: study trial {self.number}: {self.error}; training goes on unreported")
            return None

    def _report(self, epoch: int, value: Any) -> bool:
        if value is None or not math.isfinite(float(value)):
            return False  # a diverged trial keeps its last finite value
        self._call(self.storage.set_trial_intermediate_value, self.trial_id, epoch, float(value))
        return self.error is None

    def log_epoch(self, epoch: int, logs: dict[str, float]) -> None:
        if not self._report(epoch, logs.get(self.objective)) or epoch >= self.epochs:
            return
        trial = self._call(self.storage.get_trial, self.trial_id)
        if trial is not None and self._call(self.pruner.prune, self.study, trial):
            self.prune = True

    def stop_reason(self) -> str | None:
        return "pruned" if self.prune else None
