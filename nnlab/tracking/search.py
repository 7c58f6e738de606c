"""The sweep-level side of a search (``hydra/sweeper=optuna``): what :mod:`nnlab.tracking.sweep`
does differently when the trials are asked from an Optuna study instead of listed in a grid.

- :func:`search_plan`: the search space and study settings, checked before anything is tracked
  (the sweep then validates every fixed value and both bounds of every search space);
- :func:`study_summary`, :func:`summary_lines`: the study's counts and best trial, written by
  the sweeper when it ends (``<results dir>/study.json``), for the sweep summary;
- :func:`tag_parent`: the parent run is the study: sampler, pruner, n_trials, best params and
  value as ``optuna.*`` tags.

Nothing here imports Optuna (the sweeper and the trials do).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nnlab.config import ConfigError

STUDY_FILE = "study.json"  # in the sweep's results dir: the sweeper's end-of-search summary


def search_plan(config: Any) -> Any:
    """The :class:`~nnlab.search.space.SearchPlan` of a search, None for
    other sweepers; a bad setting or search space exits 2 (one line) before anything is tracked
    (Hydra would turn a callback's exception into a warning and go on)."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException

    from nnlab.search.space import is_search_sweeper, plan
    from nnlab.tracking.sweep import fail_config

    if not is_search_sweeper(config.hydra.sweeper):
        return None
    loader = GlobalHydra.instance().config_loader()
    try:
        return plan(loader, config.hydra.sweeper, list(config.hydra.overrides.task))
    except (ConfigError, HydraException) as exc:
        fail_config(str(exc))


def study_summary(results_dir: str) -> dict | None:
    """What the sweeper wrote when the search ended (None: not a search, or it did not end)."""
    path = Path(results_dir) / STUDY_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def summary_lines(lines: list[str], study: dict) -> list[str]:
    """The sweep summary's lines for a search: this launch's counts, then the whole study's
    counts, epochs and best trial (instead of the best of this launch's records)."""
    lines = [line for line in lines if not line.startswith("  best by ")]
    counts = study["counts"]
    parts = ", ".join(f"{n} {state.lower()}" for state, n in counts.items() if n)
    lines.append(
        f"  study {study['study']} ({study['sampler']} sampler, {study['pruner']} pruner): "
        f"{sum(counts.values())} of {study['n_trials']} trials ({parts or 'none'}), "
        f"{study['epochs']} epochs trained"
    )
    best = study.get("best")
    if best:
        params = " ".join(f"{k}={_fmt(v)}" for k, v in best["params"].items())
        run = f"  run {best['run_id']}" if best.get("run_id") else ""
        lines.append(
            f"  best: trial {best['number']}  {study['objective']}={_fmt(best['value'])}  "
            f"{params}{run}"
        )
    return lines


def tag_parent(uri: str, run_id: str, search: dict, study: dict | None) -> None:
    """``optuna.*`` tags on the parent run: the study's settings, and once it ended its best."""
    from mlflow.entities import RunTag

    from nnlab.tracking.store import client

    tags = {
        "optuna.study": search["study"],
        "optuna.sampler": search["sampler"]["name"],
        "optuna.pruner": search["pruner"]["name"],
        "optuna.n_trials": str(search["n_trials"]),
        "optuna.objective": search["objective"],
        "optuna.direction": search["direction"],
        "optuna.space": json.dumps({k: v["source"] for k, v in search["space"].items()}),
    }
    if study is not None:
        tags |= {f"optuna.n_{state.lower()}": str(n) for state, n in study["counts"].items()}
        tags["optuna.epochs"] = str(study["epochs"])
        best = study.get("best")
        if best:
            tags["optuna.best_trial"] = str(best["number"])
            tags["optuna.best_value"] = repr(best["value"])
            tags |= {f"optuna.best.{k}": str(v) for k, v in best["params"].items()}
    client(uri).log_batch(run_id, tags=[RunTag(k, v[:5000]) for k, v in tags.items()])
