"""A trial's data as MLflow dataset inputs: the runs table's Dataset column, filterable.

Each run logs its two splits once, in one ``log_inputs`` call, under the same name and with
contexts ``training`` and ``validation``; a split's digest covers its arrays (and the training
statistics that scaled them), so two runs share a dataset entry exactly when they saw the same
numbers. In the UI: filter with ``dataset.name = 'moons'`` or ``dataset.digest = '...'``.

Sources say where the data came from:

- generated (moons, circles, xor, spirals, blobs): source type ``code``, ``{"tags":
  {"generator": "nnlab.data.make_moons", <the data config>}}``;
- a file (a CSV, or a dataset bundled with nnlab): source type ``local``, ``{"uri": file URI,
  "sha256": the file's hash, "config": <the data config>}``.

Nothing here imports MLflow at module level (``tracking=none`` never loads this module's callers'
MLflow side).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

CONTEXT_TAG = "mlflow.data.context"  # mlflow.utils.mlflow_tags.MLFLOW_DATASET_CONTEXT
CONTEXTS = ("training", "validation")


def digest(*arrays: np.ndarray | None) -> str:
    """8 hex digits of SHA-256 over the arrays' dtypes, shapes and bytes (MLflow's digest width)."""
    h = hashlib.sha256()
    for a in arrays:
        if a is None:
            h.update(b"none")
            continue
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:8]


@functools.lru_cache(maxsize=16)
def _file_sha256(path: str, _size: int, _mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, hashed once per process and file version."""
    st = path.stat()
    return _file_sha256(str(path), st.st_size, st.st_mtime_ns)


def source_of(data_cfg: dict) -> tuple[str, str, str]:
    """(dataset name, MLflow source type, source JSON) for the ``data`` config of a trial.

    Parameters
    ----------
    data_cfg : dict
        The trial's resolved ``data`` group (``name`` and the loader's parameters).
    """
    name = str(data_cfg["name"])
    config = {k: v for k, v in data_cfg.items() if k != "name"}
    if name == "csv":
        path = Path(os.path.expanduser(str(data_cfg["path"]))).resolve()
        file_name = path.name
    else:
        bundled = resources.files("nnlab").joinpath(f"datasets/{name}.csv")
        path = Path(str(bundled)) if bundled.is_file() else None
        file_name = name
    if path is None:
        tags = {"generator": f"nnlab.data.make_{name}", **config}
        return name, "code", json.dumps({"tags": tags}, default=str)
    source = {"uri": path.as_uri(), "sha256": file_sha256(path), "config": config}
    return file_name, "local", json.dumps(source, default=str)


def _schema(data: Any) -> str:
    cols = [{"type": "double", "name": n, "required": True} for n in data.feature_names]
    cols.append({"type": "long", "name": "target", "required": True})
    return json.dumps({"mlflow_colspec": cols})


def dataset_records(data: Any, data_cfg: dict) -> list[dict]:
    """The trial's training and validation splits as plain dicts (JSON-able, no MLflow import):
    what a worker of a parallel sweep leaves in ``run.json`` for the sweep's writer.

    Parameters
    ----------
    data : nnlab.data.Dataset
        The loaded data (x_train (N, F), y_train (N,), x_val (M, F), y_val (M,), mean/std).
    data_cfg : dict
        The trial's ``data`` config: name and source.
    """
    name, source_type, source = source_of(data_cfg)
    schema = _schema(data)
    records = []
    for context, x, y in (
        ("training", data.x_train, data.y_train),
        ("validation", data.x_val, data.y_val),
    ):
        if len(x) == 0:
            continue
        profile = json.dumps(
            {
                "num_rows": int(len(x)),
                "num_features": data.n_features,
                "num_classes": data.n_classes,
            }
        )
        records.append(
            {
                "name": name,
                "digest": digest(x, y, data.mean, data.std),
                "source_type": source_type,
                "source": source,
                "schema": schema,
                "profile": profile,
                "context": context,
            }
        )
    return records


def inputs_of(records: list[dict]) -> list:
    """``dataset_records`` as ``mlflow.entities.DatasetInput`` s."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    return [
        DatasetInput(
            Dataset(**{k: v for k, v in r.items() if k != "context"}),
            [InputTag(CONTEXT_TAG, r["context"])],
        )
        for r in records
    ]


def dataset_inputs(data: Any, data_cfg: dict) -> list:
    """The trial's training and validation splits as ``mlflow.entities.DatasetInput`` s
    (see :func:`dataset_records` for the parameters)."""
    return inputs_of(dataset_records(data, data_cfg))


def log_datasets(client: Any, run_id: str, data: Any, data_cfg: dict) -> None:
    """Log both splits of ``data`` as inputs of ``run_id``: one store call."""
    client.log_inputs(run_id, datasets=dataset_inputs(data, data_cfg))
