"""The bundled handwritten digits (nnlab/datasets/digits.csv): content, split, a real fit."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from nnlab import nn
from nnlab.data import DataError, load_dataset
from nnlab.train import train

CONF = str(Path(__file__).resolve().parents[1] / "conf")
COUNTS = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


def bundled() -> tuple[list[str], np.ndarray]:
    """Header and the (1797, 65) integer table of the bundled file, in file order."""
    text = resources.files("nnlab").joinpath("datasets/digits.csv").read_text("utf-8")
    lines = text.splitlines()
    table = np.array([[int(c) for c in line.split(",")] for line in lines[1:]])
    return lines[0].split(","), table


def test_shape_classes_and_stratified_split():
    ds = load_dataset("digits")
    assert (ds.n_features, ds.n_classes) == (64, 10)
    assert len(ds.x_train) + len(ds.x_val) == 1797
    y = np.concatenate([ds.y_train, ds.y_val]).astype(int)
    assert np.bincount(y).tolist() == COUNTS
    # round(0.2 * n) validation rows per class
    assert np.bincount(ds.y_val.astype(int)).tolist() == [int(0.2 * n + 0.5) for n in COUNTS]
    assert ds.x_train.dtype == np.float32 and "10 classes" in ds.description
    # standardized on the training part; constant (always blank) pixels become exactly 0
    np.testing.assert_allclose(ds.x_train.mean(axis=0), 0, atol=1e-5)
    blank = np.ptp(load_dataset("digits", standardize=False).x_train, axis=0) == 0
    assert blank.any() and not ds.x_train[:, blank].any()


def test_file_is_integers_0_to_16_with_sklearn_names():
    header, table = bundled()
    assert header == [f"pixel_{r}_{c}" for r in range(8) for c in range(8)] + ["target"]
    assert table.shape == (1797, 65)
    assert table[:, :64].min() == 0 and table[:, :64].max() == 16
    assert sorted(set(table[:, 64].tolist())) == list(range(10))


def test_rows_equal_sklearn_row_by_row():
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    ref = sklearn_datasets.load_digits()
    header, table = bundled()
    assert header[:64] == list(ref.feature_names)
    np.testing.assert_array_equal(table[:, :64], ref.data)  # same rows, same order
    np.testing.assert_array_equal(table[:, 64], ref.target)
    # and the loaded (shuffled, split) data are exactly those rows
    ds = load_dataset("digits", standardize=False)
    x = np.concatenate([ds.x_train, ds.x_val])
    y = np.concatenate([ds.y_train, ds.y_val])
    order, ref_order = np.lexsort(x.T[::-1]), np.lexsort(ref.data.T[::-1])
    np.testing.assert_array_equal(x[order], ref.data[ref_order])
    np.testing.assert_array_equal(y[order], ref.target[ref_order])


def test_a_short_fit_reaches_90_percent_validation_accuracy():
    ds = load_dataset("digits")
    model = nn.Sequential(
        [nn.Dense(32, activation="relu", input_dim=64), nn.Dense(10, activation="softmax")], seed=0
    )
    model.compile(
        optimizer=nn.Adam(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    history = model.fit(ds.x_train, ds.y_train, epochs=5, validation_data=(ds.x_val, ds.y_val))
    assert history.history["val_accuracy"][-1] > 0.9


def test_trainer_runs_digits_from_the_config_group():
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose(
            "config",
            overrides=["data=digits", "epochs=5", "trainer.verbose=0", "tracking=none"],
        )
    result = train(cfg)
    assert result.info["n_classes"] == 10 and result.model.layers[-1].units == 10
    assert result.final("val_accuracy") > 0.9


def test_binary_loss_is_refused_with_the_class_count():
    with pytest.raises(DataError, match="'digits' has 10 classes; a binary loss needs 2"):
        load_dataset("digits", require_binary=True)
