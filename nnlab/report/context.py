"""What every report section reads: the experiment's runs and histories, loaded once.

A section is a function ``section(ctx: Context) -> Section | None`` (None: nothing to say about
this experiment, e.g. the search section of a grid). :func:`load_context` reads the store once;
sections that need more (a search reads its parent run's tags) use ``ctx.uri``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import pandas as pd

from nnlab.analysis import load_histories, load_runs

__all__ = ["Context", "load_context", "say"]


def say(progress: Callable[[str], None] | None, msg: str) -> None:
    """Send one progress line to ``progress`` (None: silent)."""
    if progress is not None:
        progress(msg)


@dataclass
class Context:
    """One experiment as the sections see it.

    Attributes
    ----------
    experiment : str
    uri : str
        The store read.
    metric : str
        Lower-is-better per-epoch metric of the report.
    target : float or None
        The requested absolute target (None: each section's default).
    runs : DataFrame
        ``load_runs`` frame of the runs with lr, batch size and epochs, one row per run.
    hist : DataFrame
        ``load_histories`` long frame of ``metric`` (and ``loss``) of those runs.
    progress : callable or None
        Receives progress lines.
    """

    experiment: str
    uri: str
    metric: str
    target: float | None
    runs: pd.DataFrame
    hist: pd.DataFrame
    progress: Callable[[str], None] | None = None
    started: float = field(default_factory=time.perf_counter)

    @cached_property
    def grid_runs(self) -> pd.DataFrame:
        """The runs that are not trials of a search (``search_trial`` missing): a grid's."""
        if "search_trial" not in self.runs:
            return self.runs
        return self.runs[self.runs["search_trial"].isna()]

    @cached_property
    def grid_hist(self) -> pd.DataFrame:
        """``hist`` of :attr:`grid_runs`."""
        return self.hist[self.hist["run_id"].isin(self.grid_runs["run_id"])]

    @cached_property
    def stuck(self) -> pd.Series:
        """``tables.not_learning`` of :attr:`grid_runs` (indexed like them)."""
        from nnlab.report.tables import not_learning

        return not_learning(self.grid_runs, self.grid_hist, self.metric)


def load_context(
    experiment: str,
    uri: str,
    metric: str,
    target: float | None,
    progress: Callable[[str], None] | None,
) -> Context:
    """The experiment's runs that have lr, batch size and epochs, and their ``metric`` (and
    ``loss``) histories; ValueError if ``metric`` was never logged."""
    t0 = time.perf_counter()
    say(progress, f"loading runs of {experiment!r} from {uri} …")
    runs = load_runs(experiment, uri)
    if f"final_{metric}" not in runs:
        logged = sorted(c[6:] for c in runs if c.startswith("final_"))
        raise ValueError(
            f"metric {metric!r} was never logged in {experiment!r}; logged: {', '.join(logged)}"
        )
    runs = runs[runs["lr"].notna() & runs["batch_size"].notna() & runs["epochs"].notna()]
    metrics = [metric] if metric == "loss" else [metric, "loss"]
    say(progress, f"loading histories of {len(runs)} runs ({', '.join(metrics)}) …")
    hist = load_histories(experiment, metrics, uri, runs=runs)
    say(progress, f"loaded {len(hist)} values in {time.perf_counter() - t0:.1f} s …")
    return Context(experiment, uri, metric, target, runs, hist, progress, t0)
