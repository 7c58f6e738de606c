"""The best model of an experiment's sweeps (and searches) in MLflow's model registry.

At the end of a sweep with ``tracking.register_best=true`` its best run's ``model`` (the MLflow
Model each trial logs, :mod:`nnlab.tracking.pyfunc`) becomes a version of the registered model
named after the experiment, tagged with the sweep id and the objective. Two aliases:

- ``best``: the best model of all the experiment's sweeps. It moves to the new version only when
  that beats the one it points at on the same objective (lower ``val_loss``/``loss``, higher
  accuracy), so it never moves to a worse model.
- ``latest_sweep``: the best model of the latest sweep, better or not.

::

    mlflow.pyfunc.load_model("models:/<experiment>@best")

Registered model names cannot contain ``/`` or ``:`` (MLflow's rule); ``nnlab.config.validate``
refuses such an experiment name up front while ``register_best`` is on.
"""

from __future__ import annotations

import math
from typing import Any

from nnlab.tracking.runs_view import MAXIMIZED
from nnlab.tracking.schema import Artifact, Tag
from nnlab.tracking.store import client, one_line

ALIAS = "best"  # the experiment's best model so far
LATEST = "latest_sweep"  # the latest sweep's best model
OBJECTIVE = "nnlab.objective"  # version tags: the metric and value the version was chosen by
DIRECTION = "nnlab.direction"  # ... and whether larger (maximize) or smaller was better
OBJECTIVE_VALUE = "nnlab.objective_value"
BAD_NAME_CHARS = ("/", ":")


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a registered model's name, or None."""
    if not name.strip():
        return "it is empty"
    bad = [c for c in BAD_NAME_CHARS if c in name]
    if bad:
        return f"MLflow's model names cannot contain {' or '.join(map(repr, bad))}"
    return None


def has_model(client: Any, run_id: str) -> str | None:
    """The artifact URI of ``run_id``'s MLflow Model, or None when the run has none."""
    run = client.get_run(run_id)
    names = {f.path for f in client.list_artifacts(run_id, Artifact.MLFLOW_MODEL)}
    if f"{Artifact.MLFLOW_MODEL}/MLmodel" not in names:
        return None
    return f"{run.info.artifact_uri.rstrip('/')}/{Artifact.MLFLOW_MODEL}"


def _aliased(client: Any, name: str, alias: str) -> Any:
    """The version of ``name`` that ``alias`` points at, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:  # no such model or alias yet
        return None


def _finite(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def direction_of(metric: str, direction: str | None = None) -> str:
    """``maximize`` or ``minimize``: as a search says, else by the metric (accuracies up)."""
    if direction in ("maximize", "minimize"):
        return direction
    return "maximize" if metric in MAXIMIZED else "minimize"


def beats(metric: str, value: float | None, version: Any, direction: str | None = None) -> bool:
    """Whether a model scoring ``value`` on ``metric`` beats the registered ``version``.

    Better is the ``direction`` the version was chosen in (its tag; a search may maximise any
    metric), else :func:`direction_of` the metric. A version chosen by another metric, or in
    the other direction, cannot be compared: it is not beaten. One without a value (no finite
    objective) is beaten by any finite value.
    """
    value = _finite(value)
    if value is None:
        return False
    theirs = version.tags.get(OBJECTIVE)
    if theirs is not None and theirs != metric:
        return False
    mine = direction_of(metric, direction)
    if direction_of(metric, version.tags.get(DIRECTION)) != mine:
        return False
    old = _finite(version.tags.get(OBJECTIVE_VALUE))
    if old is None:
        return True
    return value > old if mine == "maximize" else value < old


def _version_of(client: Any, name: str, run_id: str) -> Any:
    """The existing version of ``name`` made from ``run_id``'s model, or None."""
    found = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    return min(found, key=lambda v: int(v.version)) if found else None


def register_best(
    client: Any,
    name: str,
    run_id: str,
    sweep_id: str,
    metric: str,
    value: float | None,
    direction: str | None = None,
) -> str:
    """Register ``run_id``'s model as a version of ``name``; move ``latest_sweep`` to it, and
    ``best`` when it beats the version ``best`` points at (:func:`beats`).

    Parameters
    ----------
    client : mlflow.MlflowClient
    name : str
        The registered model (the experiment's name); created when missing.
    run_id : str
        The sweep's best run. A run registered before (a re-run of a finished sweep) keeps its
        version: no second version of the same run.
    sweep_id : str
        Recorded as version tag ``nnlab.sweep_id``.
    metric, value : str, float
        The objective (``val_loss``) and the best run's value: tags ``nnlab.objective`` and
        ``nnlab.objective_value``.
    direction : str, optional
        ``maximize`` or ``minimize`` (a search's); default by the metric: tag ``nnlab.direction``.

    Returns
    -------
    str
        One line for the sweep summary (what was registered and where ``best`` points, or why
        nothing was registered).
    """
    from mlflow.exceptions import MlflowException

    mv = _version_of(client, name, run_id)
    if mv is None:
        source = has_model(client, run_id)
        if source is None:
            return (
                f"not registered: run {run_id} has no MLflow Model (tracking.log_model=false, or "
                "a run logged before nnlab wrote one)"
            )
        try:
            client.create_registered_model(name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        tags = {
            Tag.SWEEP_ID: sweep_id,
            OBJECTIVE: metric,
            DIRECTION: direction_of(metric, direction),
        }
        if _finite(value) is not None:
            tags[OBJECTIVE_VALUE] = repr(float(value))
        mv = client.create_model_version(name, source, run_id=run_id, tags=tags)
    best = _aliased(client, name, ALIAS)
    if (
        best is None
        or str(best.version) == str(mv.version)
        or beats(metric, value, best, direction)
    ):
        client.set_registered_model_alias(name, ALIAS, mv.version)  # first: the UI lists it first
        client.set_registered_model_alias(name, LATEST, mv.version)
        return f"registered: models:/{name}@{ALIAS} = version {mv.version} (run {run_id})"
    client.set_registered_model_alias(name, LATEST, mv.version)
    kept = best.tags.get(OBJECTIVE_VALUE, "no value")
    why = (
        f"its {metric} {kept} is not beaten"
        if best.tags.get(OBJECTIVE, metric) == metric
        else f"it was chosen by {best.tags.get(OBJECTIVE)}, not {metric}"
    )
    return (
        f"registered: models:/{name}@{LATEST} = version {mv.version} (run {run_id}); "
        f"models:/{name}@{ALIAS} stays version {best.version} ({why})"
    )


def register_sweep_best(
    uri: str, plain: dict, sweep_id: str, best: dict | None, study: dict | None = None
) -> list[str]:
    """The sweep summary's line about registering its best run (none when there is nothing to
    register or ``tracking.register_best=false``). A registry error is reported, not raised.

    ``best`` is the best trial's record (``run_id``, ``val_loss``/``loss``); a search passes its
    ``study`` summary, whose ``objective`` and best ``value`` are recorded instead.
    """
    if not plain["tracking"].get("register_best", True) or not best or not best.get("run_id"):
        return []
    direction = None
    if study is not None and study.get("best"):
        metric, value = str(study.get("objective")), study["best"].get("value")
        direction = study.get("direction")
    else:
        metric = "val_loss" if best.get("val_loss") is not None else "loss"
        value = best.get(metric)
    name = plain["experiment_name"]
    try:
        line = register_best(client(uri), name, best["run_id"], sweep_id, metric, value, direction)
    except Exception as exc:
        line = f"could not register the best model as {name!r}: {one_line(exc)}"
    return [f"  {line}"]
