"""Save and load models as .npz files without pickle.

Layout: ``config`` is a 0-d string array holding the JSON architecture and compile settings;
the other entries are ``Sequential.get_state()`` (weights, optimizer slots and step, the
shuffling RNG state). ``np.load(path, allow_pickle=False)`` reads every entry.
"""

from __future__ import annotations

import json
import os

import numpy as np

from .layers import Dense
from .model import Sequential

FORMAT = "nnlab.nn/1"


def save_model(model: Sequential, path: str | os.PathLike) -> None:
    """Write ``model`` to ``path`` (``.npz`` is appended by NumPy if missing)."""
    if not model.built:
        model._maybe_build()
    if not model.built:
        raise ValueError(
            "cannot save an unbuilt model: give the first layer input_dim, or fit/predict first"
        )
    config = {"format": FORMAT, **model.get_config()}
    arrays = {"config": np.array(json.dumps(config))}
    arrays.update(model.get_state())
    np.savez(path, **arrays)


def load_model(path: str | os.PathLike) -> Sequential:
    """Rebuild, recompile and restore a model written by ``save_model`` / ``model.save``."""
    with np.load(path, allow_pickle=False) as data:
        if "config" not in data.files:
            raise ValueError(f"{os.fspath(path)!r} is not an nnlab model file (no 'config' entry)")
        config = json.loads(str(data["config"]))
        if config.get("format") != FORMAT:
            raise ValueError(
                f"{os.fspath(path)!r} has format {config.get('format')!r}; expected {FORMAT!r}"
            )
        state = {k: data[k] for k in data.files if k != "config"}
    model = Sequential(
        [Dense.from_config(c) for c in config["layers"]],
        seed=config["seed"],
        dtype=config["dtype"],
        name=config["name"],
    )
    model.build(config["input_dim"])
    if config["compile"] is not None:
        c = config["compile"]
        model.compile(optimizer=c["optimizer"], loss=c["loss"], metrics=c["metrics"])
    model.set_state(state)
    return model
