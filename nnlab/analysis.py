"""MLflow -> tidy pandas frames: one row per trial, and long-format loss histories.

The schema read here is the one ``nnlab.tracking`` writes (docs/architecture.md, "MLflow
schema"): a sweep is a parent run tagged ``nnlab.role=sweep`` with one child run per trial;
trial params are the flattened config as strings; per-epoch metrics use ``step`` = 1-based epoch.

Two readers:

```python
runs = load_runs("lr_vs_epochs")          # one row per trial, params cast to real types
hist = load_histories("lr_vs_epochs")     # run_id, lr, batch_size, epochs, seed, outcome,
                                          # epoch, metric, value
```

Histories are read in bulk: on a sqlite store one SQL query over the ``metrics`` table (a
per-run ``MlflowClient.get_metric_history`` costs milliseconds per call, i.e. minutes for a large
sweep); other stores fall back to the client.
"""

from __future__ import annotations

import math
import os
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from nnlab.tracking.schema import RUN_OUTCOMES, STATUS_OUTCOME, Tag

__all__ = [
    "SWEEP_PARAMS",
    "OUTCOMES",
    "resolve_tracking_uri",
    "load_runs",
    "load_histories",
]

SWEEP_PARAMS = ("lr", "batch_size", "epochs", "seed")
OUTCOMES = RUN_OUTCOMES

# MLflow's sqlite store writes +-inf as +-max float64 (SQL has no infinities): map them back.
_SQL_INF = 1.7976931348623157e308
_INT_PARAMS = ("batch_size", "epochs", "seed")


def resolve_tracking_uri(tracking_uri: str | None = None) -> str:
    """The tracking URI to read: the argument, else ``MLFLOW_TRACKING_URI``, else
    ``sqlite:///mlflow.db`` in the current directory (where ``python -m nnlab.run`` writes)."""
    return tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"


def _sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///...`` URI, or None for any other kind of store."""
    if not uri.startswith("sqlite:"):
        return None
    from sqlalchemy.engine import make_url

    database = make_url(uri).database
    return Path(database) if database and database != ":memory:" else None


def _client(uri: str):
    """An MlflowClient on ``uri``; refuses to create a new sqlite store as a side effect."""
    path = _sqlite_path(uri)
    if path is not None and not path.exists():
        raise ValueError(
            f"no MLflow store at {uri} ({path.resolve()} does not exist); run a sweep here "
            "first or pass the store with --tracking-uri / MLFLOW_TRACKING_URI"
        )
    from mlflow.tracking import MlflowClient

    from nnlab.tracking.store import check_sqlite_file, schema_error

    if path is not None:  # a damaged file: one line now, not MLflow's ~100 s of retries
        check_sqlite_file(path, uri)
    try:
        return MlflowClient(tracking_uri=uri)  # a sqlite store is opened (and verified) here
    except Exception as exc:
        raise schema_error(exc, uri) or exc from None


def _experiment_id(client, experiment: str, uri: str) -> str:
    """The id of ``experiment``, or a one-line ValueError listing the experiments that exist."""
    found = client.get_experiment_by_name(experiment)
    if found is not None and found.lifecycle_stage == "active":
        return found.experiment_id
    names = sorted(e.name for e in client.search_experiments())
    listed = ", ".join(names) if names else "none"
    raise ValueError(
        f"unknown experiment {experiment!r} in {uri}; experiments that exist: {listed}"
    )


def _cast_column(values: pd.Series) -> pd.Series:
    """Cast a column of MLflow param strings to numbers when every present value is numeric."""
    present = values.dropna()
    if present.empty:
        return values
    numbers = pd.to_numeric(present, errors="coerce")
    if numbers.isna().any():
        return values  # a genuine string param (names, lists, booleans)
    numbers = pd.to_numeric(values, errors="coerce")
    if (numbers.dropna() % 1 == 0).all() and not present.str.contains(r"[.eE]").any():
        return numbers.astype("int64") if not numbers.isna().any() else numbers.astype("Int64")
    return numbers.astype("float64")


def _cast_params(frame: pd.DataFrame, param_cols: Iterable[str]) -> pd.DataFrame:
    for col in param_cols:
        frame[col] = _cast_column(frame[col])
    # The sweep axes always get their contract types, even if a value looks unusual ("1e-3").
    if "lr" in frame:
        frame["lr"] = pd.to_numeric(frame["lr"], errors="coerce").astype("float64")
    for col in _INT_PARAMS:
        if col in frame:
            numbers = pd.to_numeric(frame[col], errors="coerce")
            frame[col] = (
                numbers.astype("int64") if not numbers.isna().any() else numbers.astype("Int64")
            )
    return frame


def _outcome(status: str, tags: dict[str, str]) -> str:
    """The run's outcome tag; a run that never wrote one (e.g. still RUNNING) falls back to its
    MLflow status, so no run is dropped for lack of a tag."""
    tagged = tags.get(Tag.OUTCOME)
    if tagged:
        return tagged
    return STATUS_OUTCOME.get(status, status.lower())


def load_runs(
    experiment: str, tracking_uri: str | None = None, role: str = "trial"
) -> pd.DataFrame:
    """One row per trial of ``experiment``, params cast to their real types.

    Parameters
    ----------
    experiment : str
        MLflow experiment name (the sweep's ``experiment_name``).
    tracking_uri : str, optional
        Store to read; see :func:`resolve_tracking_uri`.
    role : str
        The runs to read by their ``nnlab.role`` tag: ``trial`` (the default; also runs without
        the tag), or e.g. ``lr_find`` (``python -m nnlab.lr_find``'s LR range tests).

    Returns
    -------
    pandas.DataFrame, shape (n_trials, n_columns)
        Columns ``run_id``, ``run_name``, ``status``, ``outcome``, ``stopped_epoch`` (Int64, 1-based,
        missing unless the run stopped early), ``start_time`` (UTC), ``sweep_id``,
        ``search_trial`` (Int64: the Optuna study's trial number of a search's trial, 0-based;
        missing for a grid's), ``config_hash``, ``lr`` (float64),
        ``batch_size``, ``epochs``, ``seed`` (int64), every other param under its dotted key
        (numeric ones cast), and ``final_<metric>`` (float64) for every logged metric. Runs of
        another role (sweep parents, LR range tests) are excluded. Sorted by lr, batch_size,
        epochs, seed.

    Raises
    ------
    ValueError
        The experiment does not exist or holds no trial runs (the message lists the experiments
        that exist).
    """
    uri = resolve_tracking_uri(tracking_uri)
    client = _client(uri)
    exp_id = _experiment_id(client, experiment, uri)

    rows, param_keys, metric_keys = [], set(), set()
    token = None
    while True:
        page = client.search_runs([exp_id], max_results=5000, page_token=token)
        for run in page:
            tags = run.data.tags
            if tags.get(Tag.ROLE, "trial") != role:
                continue
            row = {
                "run_id": run.info.run_id,
                "run_name": run.info.run_name,
                "status": run.info.status,
                "outcome": _outcome(run.info.status, tags),
                "stopped_epoch": tags.get(Tag.STOPPED_EPOCH),
                "start_time": run.info.start_time,
                "sweep_id": tags.get(Tag.SWEEP_ID, tags.get(Tag.PARENT)),
                "search_trial": tags.get(Tag.OPTUNA_TRIAL),
                "config_hash": tags.get(Tag.CONFIG_HASH),
            }
            row.update(run.data.params)
            param_keys.update(run.data.params)
            for key, value in run.data.metrics.items():
                row[f"final_{key}"] = value
                metric_keys.add(key)
            rows.append(row)
        token = page.token
        if not token:
            break
    if not rows:
        others = sorted(e.name for e in client.search_experiments() if e.name != experiment)
        raise ValueError(
            f"experiment {experiment!r} in {uri} holds no {role} runs yet; "
            f"other experiments: {', '.join(others) if others else 'none'}"
        )

    frame = pd.DataFrame(rows)
    missing = [p for p in SWEEP_PARAMS if p not in frame]
    for p in missing:  # a plain run logged without a sweep axis still gets the column
        frame[p] = np.nan
    frame = _cast_params(frame, sorted(param_keys))
    for col in ("stopped_epoch", "search_trial"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("Int64")
    frame["start_time"] = pd.to_datetime(frame["start_time"], unit="ms", utc=True)
    for key in metric_keys:
        col = frame[f"final_{key}"].astype("float64")
        frame[f"final_{key}"] = col.where(col.abs() < _SQL_INF, np.sign(col) * np.inf)
    frame["outcome"] = frame["outcome"].astype("string")

    first = ["run_id", "run_name", "status", "outcome", "stopped_epoch", *SWEEP_PARAMS]
    metrics = sorted(c for c in frame if c.startswith("final_"))
    rest = sorted(c for c in frame if c not in first and c not in metrics)
    frame = frame[first + rest + metrics]
    return frame.sort_values(list(SWEEP_PARAMS), kind="stable").reset_index(drop=True)


def _histories_sql(path: Path, run_ids: Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
    """Every (run, metric, step) value of ``run_ids`` in one query on the sqlite file."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as con:
        # A temp table of ids keeps the query one statement whatever the number of runs.
        con.execute("CREATE TEMP TABLE wanted (run_uuid TEXT PRIMARY KEY)")
        con.executemany("INSERT INTO wanted VALUES (?)", [(r,) for r in run_ids])
        marks = ",".join("?" * len(metrics))
        query = (
            "SELECT m.run_uuid AS run_id, m.key AS metric, m.step AS epoch, m.value AS value, "
            "m.is_nan AS is_nan, m.timestamp AS timestamp FROM metrics m "
            f"JOIN wanted w ON w.run_uuid = m.run_uuid WHERE m.key IN ({marks})"
        )
        return pd.read_sql_query(query, con, params=list(metrics))


def _histories_client(client, run_ids: Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
    """The slow path for non-sqlite stores: one history call per run and metric."""
    rows = [
        (run_id, metric, m.step, m.value, math.isnan(m.value), m.timestamp)
        for run_id in run_ids
        for metric in metrics
        for m in client.get_metric_history(run_id, metric)
    ]
    return pd.DataFrame(rows, columns=["run_id", "metric", "epoch", "value", "is_nan", "timestamp"])


def load_histories(
    experiment: str,
    metrics: Sequence[str] = ("loss", "val_loss"),
    tracking_uri: str | None = None,
    runs: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per-epoch metric values of every trial of ``experiment``, in long format.

    Parameters
    ----------
    experiment : str
        MLflow experiment name.
    metrics : sequence of str
        Metric keys to read (``loss``, ``val_loss``, ``accuracy``, ``val_accuracy``, ``epoch_time``).
    tracking_uri : str, optional
        Store to read; see :func:`resolve_tracking_uri`.
    runs : DataFrame, optional
        The :func:`load_runs` frame if the caller already has it (saves a second read).

    Returns
    -------
    pandas.DataFrame, shape (n_values, 9)
        Columns ``run_id``, ``lr`` (float64), ``batch_size``, ``epochs``, ``seed`` (int64),
        ``outcome``, ``epoch`` (int64, 1-based), ``metric`` (category), ``value`` (float64;
        NaN and +-inf kept as logged, so diverged runs stay visible). One row per run, metric
        and epoch; if a step was logged twice (a resumed run) the latest value wins.

    Raises
    ------
    ValueError
        Unknown or empty experiment, or ``metrics`` empty.
    """
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    if not metrics:
        raise ValueError("metrics is empty; pass metric names such as ('loss', 'val_loss')")
    uri = resolve_tracking_uri(tracking_uri)
    if runs is None:
        runs = load_runs(experiment, uri)
    run_ids = runs["run_id"].tolist()

    path = _sqlite_path(uri)
    if path is not None:
        long = _histories_sql(path, run_ids, metrics)
    else:
        long = _histories_client(_client(uri), run_ids, metrics)

    value = long["value"].astype("float64")
    value = value.where(value.abs() < _SQL_INF, np.sign(value) * np.inf)
    long["value"] = value.where(~long["is_nan"].astype(bool), np.nan)
    long = long.sort_values("timestamp", kind="stable").drop_duplicates(
        ["run_id", "metric", "epoch"], keep="last"
    )
    keys = ["run_id", *SWEEP_PARAMS, "outcome"]
    long = long.drop(columns=["is_nan", "timestamp"]).merge(runs[keys], on="run_id", how="left")
    long["epoch"] = long["epoch"].astype("int64")
    long["metric"] = pd.Categorical(long["metric"], categories=metrics)
    long = long.sort_values([*SWEEP_PARAMS, "run_id", "metric", "epoch"], kind="stable")
    return long[[*keys, "epoch", "metric", "value"]].reset_index(drop=True)
