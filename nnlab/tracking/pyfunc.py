"""A trial's model as an MLflow Model (``python_function`` flavor) without pickle.

Each trial with ``tracking.log_model=true`` writes ``artifacts/model/`` next to ``model.npz``; the
run's single artifact upload carries it, so ``runs:/<run_id>/model`` is a complete MLflow Model::

    model/
      MLmodel                      flavor python_function, loader_module nnlab.tracking.pyfunc,
                                   signature, input example, the run id
      model.npz                    the weights (nnlab.nn.save_model: NumPy arrays + JSON, no pickle)
      nnlab.json                   feature names, the training split's mean/std, the class labels
      input_example.json           a few raw training rows (pandas "split" orient)
      serving_input_example.json   the same as an /invocations request body
      requirements.txt, python_env.yaml, conda.yaml

The directory is written by hand instead of ``mlflow.pyfunc.log_model``, which infers the
requirements in a subprocess and validates the example (3.4 s per call here); writing it takes a
few milliseconds and needs no MLflow import (``tracking=none`` writes it too).

``mlflow.pyfunc.load_model(uri).predict(df)`` takes raw feature columns and returns one row per
sample: ``label`` (the dataset's own class label) and ``p_<label>`` per class. The same
standardisation as training is applied first: ``((x - mean) / std).astype(float32)``.
"""

from __future__ import annotations

import datetime
import functools
import json
import os
import platform
import shutil
import sys
import time
import uuid
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from nnlab.tracking.schema import Artifact

FORMAT = "nnlab.pyfunc/1"
META = "nnlab.json"
WEIGHTS = Artifact.MODEL
LOADER = __name__  # the loader_module MLflow imports: this module's _load_pyfunc
N_EXAMPLE_ROWS = 5


# --- writing ------------------------------------------------------------------------------------


def model_meta(data: Any) -> dict:
    """What predicting from raw features needs, from an ``nnlab.data.Dataset``: JSON-able."""
    return {
        "format": FORMAT,
        "features": list(data.feature_names),
        "labels": [int(label) for label in data.labels],
        "mean": None if data.mean is None else [float(v) for v in data.mean],
        "std": None if data.std is None else [float(v) for v in data.std],
    }


def raw_rows(data: Any, n: int = N_EXAMPLE_ROWS) -> np.ndarray:
    """The first ``n`` training rows in raw units, (n, n_features) float64 (6 significant digits)."""
    x = np.asarray(data.x_train[:n], dtype=np.float64)
    if data.mean is not None:
        x = x * data.std + data.mean
    return np.array([[float(f"{v:.6g}") for v in row] for row in x])


def signature(meta: dict) -> dict[str, str]:
    """MLflow's column-based signature: a double per feature in; ``label`` + ``p_<label>`` out."""
    inputs = [{"type": "double", "name": name, "required": True} for name in meta["features"]]
    outputs = [{"type": "long", "name": "label", "required": True}]
    outputs += [{"type": "double", "name": f"p_{c}", "required": True} for c in meta["labels"]]
    return {"inputs": json.dumps(inputs), "outputs": json.dumps(outputs), "params": None}


@functools.cache
def _pinned(*packages: str) -> list[str]:
    """``name==version`` of each installed package (the metadata lookups cost ~2 ms each)."""
    pins = []
    for name in packages:
        try:
            pins.append(f"{name}=={version(name)}")
        except PackageNotFoundError:  # e.g. nnlab run from a source tree without install
            pins.append(name)
    return pins


def _dump(tree: dict) -> str:
    import yaml

    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml's: 10x faster
    return yaml.dump(tree, Dumper=dumper, default_flow_style=False, sort_keys=False)


@functools.cache
def _env_files() -> dict[str, str]:
    """requirements.txt, python_env.yaml and conda.yaml: the same for every model of a process."""
    requirements = _pinned("mlflow", "numpy", "pandas", "nnlab")
    py = platform.python_version()
    python_env = {
        "python": py,
        "build_dependencies": ["pip", "setuptools", "wheel"],
        "dependencies": ["-r requirements.txt"],
    }
    conda = {
        "name": "mlflow-env",
        "channels": ["conda-forge"],
        "dependencies": [f"python={py}", "pip", {"pip": requirements}],
    }
    return {
        "requirements.txt": "\n".join(requirements) + "\n",
        "python_env.yaml": _dump(python_env),
        "conda.yaml": _dump(conda),
    }


def mlmodel(meta: dict, run_id: str | None, size: int) -> dict:
    """The ``MLmodel`` file's content, as ``mlflow.pyfunc.save_model`` would write it."""
    return {
        "artifact_path": "model",
        "flavors": {
            "python_function": {
                "loader_module": LOADER,
                "python_version": platform.python_version(),
                "env": {"conda": "conda.yaml", "virtualenv": "python_env.yaml"},
                "streamable": False,
            }
        },
        "mlflow_version": _pinned("mlflow")[0].partition("==")[2] or None,
        "model_size_bytes": size,
        "model_uuid": uuid.uuid4().hex,
        "run_id": run_id,
        "saved_input_example_info": {
            "artifact_path": "input_example.json",
            "type": "dataframe",
            "pandas_orient": "split",
            "serving_input_path": "serving_input_example.json",
        },
        "signature": signature(meta),
        "utc_time_created": str(datetime.datetime.now(datetime.UTC).replace(tzinfo=None)),
    }


def write_model_dir(out: Path, weights: Path, data: Any, run_id: str | None = None) -> None:
    """Write the MLflow Model directory ``out`` from ``weights`` (a ``model.npz``) and ``data``.

    Atomic: built beside ``out`` under a temporary name, then renamed over it, so a crash leaves
    the old directory or none, never half of one.

    Parameters
    ----------
    out : Path
        The model directory to write (``artifacts/model``).
    weights : Path
        The trained model's ``.npz`` (``nnlab.nn.save_model``); copied into ``out``.
    data : nnlab.data.Dataset
        The trial's data: feature names, class labels, the training mean/std and example rows.
    run_id : str, optional
        The MLflow run the model belongs to (recorded in ``MLmodel``).
    """
    meta = model_meta(data)
    example = {"columns": meta["features"], "data": raw_rows(data).tolist()}
    texts = {
        META: json.dumps(meta, indent=1),
        "input_example.json": json.dumps(example),
        "serving_input_example.json": json.dumps({"dataframe_split": example}, indent=1),
        **_env_files(),
    }
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        shutil.copyfile(weights, tmp / WEIGHTS)
        for name, text in texts.items():
            (tmp / name).write_text(text)
        size = sum(p.stat().st_size for p in tmp.iterdir())
        # JSON is YAML too (MLflow reads MLmodel with yaml.safe_load): 0.1 ms instead of 5
        (tmp / "MLmodel").write_text(json.dumps(mlmodel(meta, run_id, size), indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_trial_model(artifact_dir: Path, data: Any, run_id: str | None, sink: Any = None) -> None:
    """``artifact_dir/model`` from the trial's ``artifact_dir/model.npz`` (if it was written).

    The time counts in ``sink.overhead`` (the trial's tracking cost). An error is reported on
    stderr, not raised: the run still ends with its outcome, and ``model.npz`` is kept.
    """
    t0 = time.perf_counter()
    weights = artifact_dir / WEIGHTS
    try:
        if weights.is_file():
            write_model_dir(artifact_dir / Artifact.MLFLOW_MODEL, weights, data, run_id)
    except Exception as exc:
        print(
            f"nnlab: could not write the MLflow Model in {artifact_dir}: {exc}",
            file=sys.stderr,
            flush=True,
        )
    if sink is not None:
        sink.overhead += time.perf_counter() - t0


LOG_MODEL_HISTORY = "mlflow.log-model.history"  # what MLflow's log_model tags a run with


def logged_model_tag(artifact_dir: Path) -> dict[str, str]:
    """``{"mlflow.log-model.history": ...}`` for a run whose ``artifact_dir`` holds the MLflow
    Model, else ``{}``: the UI lists the model in the runs table and on the run's page, and
    links its registered versions. Sent with the run's last tags, so it costs no store call."""
    path = artifact_dir / Artifact.MLFLOW_MODEL / "MLmodel"
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):  # no model (log_model=false, a failed trial), or not ours
        return {}
    keep = (
        "run_id",
        "artifact_path",
        "utc_time_created",
        "flavors",
        "model_uuid",
        "mlflow_version",
    )
    return {LOG_MODEL_HISTORY: json.dumps([{k: info.get(k) for k in keep}])}


# --- loading and predicting (what MLflow calls) -------------------------------------------------


class NnlabPyfuncModel:
    """An nnlab model with its preprocessing: raw features in, labels and probabilities out.

    Parameters
    ----------
    model : nnlab.nn.Sequential
        The trained network (1 sigmoid unit for two classes, else one softmax unit per class).
    meta : dict
        ``nnlab.json``: ``features`` (F names), ``labels`` (K), ``mean`` / ``std`` (F or None).
    """

    def __init__(self, model: Any, meta: dict):
        if meta.get("format") != FORMAT:
            raise ValueError(f"{META} has format {meta.get('format')!r}; expected {FORMAT!r}")
        self.model, self.meta = model, meta
        self.features: list[str] = list(meta["features"])
        self.labels = np.asarray(meta["labels"], dtype=np.int64)
        self.mean = None if meta["mean"] is None else np.asarray(meta["mean"], dtype=np.float64)
        self.std = None if meta["std"] is None else np.asarray(meta["std"], dtype=np.float64)

    def features_of(self, model_input: Any) -> np.ndarray:
        """Raw features (N, F) float64 from a DataFrame (columns by name) or an array."""
        import pandas as pd

        if isinstance(model_input, pd.DataFrame):
            missing = [c for c in self.features if c not in model_input.columns]
            if missing:
                raise ValueError(
                    f"input lacks feature columns {missing}; the model takes {self.features}"
                )
            model_input = model_input[self.features]
        x = np.asarray(model_input, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.features):
            raise ValueError(
                f"input has shape {x.shape}; expected (n, {len(self.features)}) for {self.features}"
            )
        return x

    def outputs(self, x: np.ndarray) -> np.ndarray:
        """The network's outputs (N, 1) sigmoid or (N, K) softmax, float64, for raw ``x`` (N, F)."""
        if self.mean is not None:
            x = (x - self.mean) / self.std
        return np.asarray(self.model.predict(x.astype(np.float32), batch_size=1024), np.float64)

    def predict(self, model_input: Any, params: dict | None = None) -> Any:
        """``label`` (the dataset's own label) and ``p_<label>`` per class, one row per sample.

        The label follows the training metric (Keras's accuracy): P(class 1) > 0.5 for a sigmoid
        output, else the most probable class.
        """
        import pandas as pd

        out = self.outputs(self.features_of(model_input))
        if out.shape[1] == 1:  # a sigmoid unit: P(class 1)
            ids = (out[:, 0] > 0.5).astype(np.int64)
            p = np.column_stack([1.0 - out[:, 0], out[:, 0]])
        else:
            ids, p = out.argmax(axis=1), out
        frame = {"label": self.labels[ids]}
        frame.update({f"p_{c}": p[:, k] for k, c in enumerate(self.labels)})
        return pd.DataFrame(frame)


def load(path: str | os.PathLike) -> NnlabPyfuncModel:
    """The model in an MLflow Model directory written by :func:`write_model_dir`."""
    from nnlab.nn import load_model

    path = Path(path)
    meta = json.loads((path / META).read_text())
    return NnlabPyfuncModel(load_model(path / WEIGHTS), meta)


def _load_pyfunc(path: str) -> NnlabPyfuncModel:
    """MLflow's entry point (``loader_module``): ``path`` is the model directory."""
    return load(path)
