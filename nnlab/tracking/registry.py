"""The best model of a sweep (or search) in MLflow's model registry.

At the end of a sweep with ``tracking.register_best=true`` its best run's ``model`` (the MLflow
Model each trial logs, :mod:`nnlab.tracking.pyfunc`) becomes a new version of the registered
model named after the experiment, tagged with the sweep id and the objective, and the alias
``best`` moves to it::

    mlflow.pyfunc.load_model("models:/<experiment>@best")

Registered model names cannot contain ``/`` or ``:`` (MLflow's rule); ``nnlab.config.validate``
refuses such an experiment name up front while ``register_best`` is on.
"""

from __future__ import annotations

import math
from typing import Any

from nnlab.tracking.schema import Artifact, Tag
from nnlab.tracking.store import client, one_line

ALIAS = "best"
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


def _aliased(client: Any, name: str) -> Any:
    """The version of ``name`` the alias ``best`` points at, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, ALIAS)
    except MlflowException:  # no such model or alias yet
        return None


def register_best(
    client: Any,
    name: str,
    run_id: str,
    sweep_id: str,
    metric: str,
    value: float | None,
) -> str:
    """Register ``run_id``'s model as a new version of ``name`` and move the alias ``best`` to it.

    Parameters
    ----------
    client : mlflow.MlflowClient
    name : str
        The registered model (the experiment's name); created when missing.
    run_id : str
        The sweep's best run.
    sweep_id : str
        Recorded as version tag ``nnlab.sweep_id``.
    metric, value : str, float
        The objective (``val_loss``) and the best run's value: tags ``nnlab.objective`` and
        ``nnlab.objective_value``.

    Returns
    -------
    str
        One line for the sweep summary (what was registered, or why not).
    """
    from mlflow.exceptions import MlflowException

    current = _aliased(client, name)
    if current is not None and current.run_id == run_id:  # a re-run of a finished sweep
        return f"registered: models:/{name}@{ALIAS} = version {current.version} (run {run_id})"
    source = has_model(client, run_id)
    if source is None:
        return (
            f"not registered: run {run_id} has no MLflow Model (tracking.log_model=false, or a "
            "run logged before nnlab wrote one)"
        )
    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    tags = {Tag.SWEEP_ID: sweep_id, "nnlab.objective": metric}
    if value is not None and math.isfinite(value):
        tags["nnlab.objective_value"] = repr(float(value))
    mv = client.create_model_version(name, source, run_id=run_id, tags=tags)
    client.set_registered_model_alias(name, ALIAS, mv.version)
    return f"registered: models:/{name}@{ALIAS} = version {mv.version} (run {run_id})"


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
    if study is not None and study.get("best"):
        metric, value = str(study.get("objective")), study["best"].get("value")
    else:
        metric = "val_loss" if best.get("val_loss") is not None else "loss"
        value = best.get(metric)
    name = plain["experiment_name"]
    try:
        line = register_best(client(uri), name, best["run_id"], sweep_id, metric, value)
    except Exception as exc:
        line = f"could not register the best model as {name!r}: {one_line(exc)}"
    return [f"  {line}"]
