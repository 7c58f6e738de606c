"""What a search's summary and parent run say (``hydra/sweeper=optuna``, :mod:`nnlab.search`).

- :func:`summary_lines`: the study's counts by outcome, epochs and best trial, for the summary;
- :func:`tag_parent`: the parent run is the study: sampler, pruner, n_trials, best params and
  value as ``optuna.*`` tags.

Nothing here imports Optuna (the sweeper and the trials do).
"""

from __future__ import annotations

import json
from typing import Any


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def summary_lines(lines: list[str], study: dict) -> list[str]:
    """The sweep summary's lines for a search: this launch's counts, then the whole study's
    counts, epochs and best trial (instead of the best of this launch's records)."""
    lines = [line for line in lines if not line.startswith("  best trial ")]
    counts = study["counts"]
    parts = ", ".join(f"{n} {outcome}" for outcome, n in counts.items() if n)
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
            f"  best trial: #{best['number'] + 1} (optuna trial {best['number']})  "
            f"{study['objective']}={_fmt(best['value'])}  "
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
        tags |= {f"optuna.n_{outcome}": str(n) for outcome, n in study["counts"].items()}
        tags["optuna.epochs"] = str(study["epochs"])
        best = study.get("best")
        if best:
            tags["optuna.best_trial"] = str(best["number"])
            tags["optuna.best_value"] = repr(best["value"])
            tags |= {f"optuna.best.{k}": str(v) for k, v in best["params"].items()}
    client(uri).log_batch(run_id, tags=[RunTag(k, v[:5000]) for k, v in tags.items()])
