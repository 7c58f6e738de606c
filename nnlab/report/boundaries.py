"""The flagship's decision-boundary figure: a few representative runs' models, read back from
MLflow, over the input plane of their (regenerated) 2-D dataset."""

from __future__ import annotations

import math
import os
import tempfile

import numpy as np
import pandas as pd

from nnlab.report.content import NotDrawn
from nnlab.report.tables import fmt_lr
from nnlab.tracking.schema import OK_OUTCOMES, Artifact

__all__ = ["representative_runs", "dataset_params", "boundary_panels", "draw"]


def representative_runs(runs: pd.DataFrame, metric: str, k: int = 4) -> pd.DataFrame:
    """A few runs worth looking at: at the largest budget, the middle batch size and lowest seed,
    the smallest lr, the best lr, the largest usable lr, and a diverged one if any."""
    top = runs[runs["epochs"] == runs["epochs"].max()]
    bss = sorted(top["batch_size"].unique())
    top = top[top["batch_size"] == bss[len(bss) // 2]]
    top = top[top["seed"] == top["seed"].min()]
    ok = top[top["outcome"].isin(OK_OUTCOMES) & np.isfinite(top[f"final_{metric}"])]
    picks = []
    if len(ok):
        picks += [ok["lr"].idxmin(), ok[f"final_{metric}"].idxmin(), ok["lr"].idxmax()]
        rest = ok.drop(index=picks, errors="ignore")
        if len(rest):  # one more usable lr between the others
            picks.append(rest.index[len(rest) // 2])
    bad = top[top["outcome"] == "diverged"]
    if len(bad):
        picks.append(bad.index[0])
    order = list(dict.fromkeys(picks))
    return top.loc[order].sort_values("lr").head(k + 1)


def dataset_params(run: pd.Series) -> tuple[str, dict]:
    """The run's ``data.*`` params, typed, restricted to what ``load_dataset`` accepts."""
    import yaml

    from nnlab.data import dataset_params

    name = str(run["data.name"])
    params = {}
    for key in dataset_params(name):
        value = run.get(f"data.{key}")
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue  # not logged: the loader's default applies
        if isinstance(value, str):  # MLflow params are strings: "0.2", "True", "None", "[1, 2]"
            value = None if value == "None" else yaml.safe_load(value)
        elif hasattr(value, "item"):  # numpy scalar from the typed frame
            value = value.item()
        params[key] = value
    return name, params


def _state(run: pd.Series, metric: str, stuck_ids: set[str]) -> str:
    final = run[f"final_{metric}"]
    if run["outcome"] not in OK_OUTCOMES:
        return str(run["outcome"])
    if run["run_id"] in stuck_ids:
        return f"did not learn, {metric} {final:.3f}"
    return f"{metric} {final:.3f}"


def boundary_panels(
    runs: pd.DataFrame, metric: str, tracking_uri: str, stuck_ids: set[str] = frozenset()
) -> list[dict]:
    """Panels for :func:`nnlab.figures.decision_boundaries`; :class:`NotDrawn` with the reason
    when there are none. ``stuck_ids``: runs flagged as not learning, so their titles say so."""
    if "data.name" not in runs:
        raise NotDrawn("the runs log no data.name param")
    from mlflow.tracking import MlflowClient

    from nnlab import nn
    from nnlab.data import load_dataset

    # the report prints its own progress; MLflow's per-download bars would interleave with it
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    client = MlflowClient(tracking_uri=tracking_uri)
    panels, problems = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _, run in representative_runs(runs, metric).iterrows():
            try:
                name, params = dataset_params(run)
                data = load_dataset(name, **params)
                if data.n_features != 2:
                    raise NotDrawn(f"dataset {name!r} has {data.n_features} features, not 2")
                path = client.download_artifacts(run["run_id"], Artifact.MODEL, tmp)
                model = nn.load_model(path)
            except NotDrawn:
                raise
            except Exception as exc:  # one bad artifact must not sink the report
                problems.append(f"{run['run_name']}: {type(exc).__name__}: {exc}")
                continue
            panels.append(
                {
                    "title": f"lr={fmt_lr(run['lr'])}, bs={run['batch_size']}, "
                    f"{run['epochs']} ep\n{_state(run, metric, stuck_ids)}",
                    "model": model,
                    "x": data.x_val,
                    "y": data.y_val,
                }
            )
    if panels:
        return panels
    if problems:
        more = f" (and {len(problems) - 1} more runs)" if len(problems) > 1 else ""
        raise NotDrawn(f"could not load {problems[0]}{more}")
    raise NotDrawn("no representative run")


def draw(runs: pd.DataFrame, metric: str, tracking_uri: str, stuck: pd.Series):
    """The decision-boundary Figure of ``runs`` (``stuck``: not-learning flags like ``runs``)."""
    from nnlab import figures as fg

    stuck_ids = set(runs.loc[stuck.to_numpy(), "run_id"])
    return fg.decision_boundaries(boundary_panels(runs, metric, tracking_uri, stuck_ids))
