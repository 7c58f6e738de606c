"""nnlab.data: generators, bundled breast cancer, splitting, scaling, parameters, conf/data."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from nnlab.data import (
    DATASETS,
    DataError,
    Dataset,
    dataset_params,
    load_dataset,
    make_moons,
    standardize_split,
    stratified_split,
)

CONF_DATA = Path(__file__).resolve().parents[1] / "conf" / "data"
SYNTHETIC = ["moons", "circles", "xor", "spirals", "blobs"]


def raw(name, **params):
    """Unscaled dataset, train and validation stacked back together."""
    ds = load_dataset(name, standardize=False, **params)
    return np.concatenate([ds.x_train, ds.x_val]), np.concatenate([ds.y_train, ds.y_val])


# ---------------------------------------------------------------- synthetic generators


@pytest.mark.parametrize("name", SYNTHETIC)
@pytest.mark.parametrize("n_samples", [100, 101])
def test_generator_shapes_dtypes_and_balance(name, n_samples):
    ds = load_dataset(name, n_samples=n_samples)
    assert isinstance(ds, Dataset) and ds.name == name
    assert ds.n_features == 2 and ds.n_classes == 2
    assert len(ds.x_train) + len(ds.x_val) == n_samples
    assert ds.x_train.shape == (len(ds.y_train), 2) and ds.x_val.shape == (len(ds.y_val), 2)
    for a in (ds.x_train, ds.y_train, ds.x_val, ds.y_val):
        assert a.dtype == np.float32
        assert np.isfinite(a).all()
    y = np.concatenate([ds.y_train, ds.y_val])
    assert set(np.unique(y)) == {0.0, 1.0}
    counts = np.bincount(y.astype(int))
    assert abs(counts[0] - counts[1]) == n_samples % 2  # balanced: differ by at most one
    assert np.bincount(ds.y_val.astype(int)).tolist() == [10, 10]  # 20% of each class
    assert f"{n_samples} samples" in ds.description


@pytest.mark.parametrize("name", SYNTHETIC)
def test_generator_deterministic_per_seed(name):
    a, b, c = (load_dataset(name, seed=s) for s in (3, 3, 4))
    for field in ("x_train", "y_train", "x_val", "y_val"):
        assert np.array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.x_train, c.x_train)
    assert a.description == b.description


@pytest.mark.parametrize("name", SYNTHETIC)
def test_noise_spreads_the_points(name):
    quiet, _ = raw(name, noise=0.0)
    loud, _ = raw(name, noise=0.5)
    # same underlying shape plus noise: points move, and the spread grows
    assert not np.array_equal(quiet, loud)
    assert loud.std() > quiet.std()


def test_moons_shape_without_noise():
    x, y = raw("moons", noise=0.0)
    upper, lower = x[y == 0], x[y == 1]
    np.testing.assert_allclose(np.hypot(*upper.T), 1.0, atol=1e-6)
    np.testing.assert_allclose(np.hypot(lower[:, 0] - 1.0, lower[:, 1] - 0.5), 1.0, atol=1e-6)
    assert (upper[:, 1] >= -1e-6).all() and (lower[:, 1] <= 0.5 + 1e-6).all()


def test_circles_radii_follow_factor():
    x, y = raw("circles", noise=0.0, factor=0.3)
    r = np.hypot(x[:, 0], x[:, 1])
    np.testing.assert_allclose(r[y == 0], 1.0, atol=1e-6)
    np.testing.assert_allclose(r[y == 1], 0.3, atol=1e-6)


def test_xor_labels_follow_quadrant_signs():
    x, y = raw("xor", noise=0.0)
    assert (np.abs(x) <= 1.0).all()
    np.testing.assert_array_equal(y, (np.sign(x[:, 0]) == np.sign(x[:, 1])).astype(np.float32))
    # each class fills both of its quadrants
    assert len({tuple(s) for s in np.sign(x[y == 1])}) == 2


def test_spirals_radius_and_turns():
    x, y = raw("spirals", noise=0.0, turns=2.0)
    r = np.hypot(x[:, 0], x[:, 1])
    assert r.min() == pytest.approx(0.1, abs=1e-6) and r.max() == pytest.approx(1.0, abs=1e-6)
    # walking out along one arm, the unwrapped angle covers `turns` full turns
    arm = x[y == 0][np.argsort(r[y == 0])]
    angle = np.unwrap(np.arctan2(arm[:, 1], arm[:, 0]))
    assert abs(angle[-1] - angle[0]) == pytest.approx(2 * np.pi * 2.0, rel=1e-3)
    # class 1 is class 0 rotated by half a turn
    np.testing.assert_allclose(np.sort(-x[y == 1], axis=0), np.sort(x[y == 0], axis=0), atol=1e-6)


def test_blobs_centres_separation_and_dimension():
    x, y = raw("blobs", noise=0.0, separation=5.0, n_features=4)
    assert x.shape[1] == 4
    c0, c1 = np.unique(x[y == 0], axis=0), np.unique(x[y == 1], axis=0)
    assert len(c0) == len(c1) == 1
    assert np.linalg.norm(c1 - c0) == pytest.approx(5.0, rel=1e-6)
    ds = load_dataset("blobs", n_features=4)
    assert ds.n_features == 4 and ds.x_train.shape[1] == 4


def test_blobs_noise_is_the_blob_std():
    x, y = raw("blobs", n_samples=20000, noise=0.7)
    assert x[y == 0].std(axis=0) == pytest.approx([0.7, 0.7], rel=0.05)


def test_generator_functions_are_pure_given_rng():
    a = make_moons(11, 0.1, np.random.default_rng(0))
    b = make_moons(11, 0.1, np.random.default_rng(0))
    assert a[0].shape == (11, 2) and a[1].tolist() == [0] * 5 + [1] * 6
    np.testing.assert_array_equal(a[0], b[0])


def test_dataset_is_frozen_and_read_only():
    ds = load_dataset("moons", n_samples=40)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ds.name = "other"
    with pytest.raises(ValueError, match="read-only"):
        ds.x_train[0, 0] = 1.0


# ---------------------------------------------------------------- bundled breast cancer


def test_breast_cancer_shape_and_class_counts():
    ds = load_dataset("breast_cancer")
    assert ds.n_features == 30 and ds.n_classes == 2
    assert len(ds.x_train) + len(ds.x_val) == 569
    y = np.concatenate([ds.y_train, ds.y_val]).astype(int)
    assert np.bincount(y).tolist() == [357, 212]  # 0 = benign, 1 = malignant
    assert np.bincount(ds.y_val.astype(int)).tolist() == [71, 42]  # stratified 20%
    assert ds.x_train.dtype == np.float32 and "1 = malignant" in ds.description


def test_breast_cancer_values_and_labels_match_the_source():
    x, y = raw("breast_cancer")
    # first row of the UCI file: mean radius 17.99, a malignant tumour
    first = np.flatnonzero(np.isclose(x[:, 0], 17.99) & np.isclose(x[:, 1], 10.38))
    assert len(first) == 1 and y[first[0]] == 1.0
    assert x[first[0], 3] == pytest.approx(1001.0)
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    ref = sklearn_datasets.load_breast_cancer()
    order, ref_order = np.lexsort(x.T[::-1]), np.lexsort(ref.data.T[::-1])
    np.testing.assert_allclose(x[order], ref.data[ref_order].astype(np.float32))
    np.testing.assert_array_equal(y[order], 1 - ref.target[ref_order])  # sklearn: 0 = malignant


# ---------------------------------------------------------------- splitting and scaling


def test_stratified_split_keeps_class_shares_and_covers_all_rows():
    y = np.array([0] * 30 + [1] * 70 + [2] * 7)
    tr, va = stratified_split(y, 0.2, np.random.default_rng(0))
    assert sorted(np.concatenate([tr, va]).tolist()) == list(range(len(y)))
    assert np.bincount(y[va]).tolist() == [6, 14, 1]  # round(0.2 * n) per class
    assert np.bincount(y[tr]).tolist() == [24, 56, 6]
    # shuffled: classes interleave instead of arriving in blocks
    assert not np.array_equal(np.sort(y[tr]), y[tr])


def test_stratified_split_keeps_one_row_each_side_for_tiny_classes():
    y = np.array([0, 0, 1, 1, 1, 1, 1, 1, 1, 1])
    for f in (0.01, 0.99):
        tr, va = stratified_split(y, f, np.random.default_rng(1))
        assert set(y[tr]) == {0, 1} and set(y[va]) == {0, 1}


def test_split_is_reproducible_and_seeded():
    y = np.repeat([0, 1], 50)
    a = stratified_split(y, 0.25, np.random.default_rng(7))
    b = stratified_split(y, 0.25, np.random.default_rng(7))
    c = stratified_split(y, 0.25, np.random.default_rng(8))
    assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))
    assert not np.array_equal(np.sort(a[1]), np.sort(c[1]))


@pytest.mark.parametrize("f", [0.1, 0.35, 0.5])
def test_val_fraction_sets_validation_size(f):
    ds = load_dataset("circles", n_samples=400, val_fraction=f)
    assert len(ds.x_val) == 2 * round(200 * f)
    assert str(len(ds.x_val)) + " val" in ds.description


def test_standardize_uses_training_statistics_only():
    plain = load_dataset("moons", n_samples=300, noise=0.3, seed=5, standardize=False)
    scaled = load_dataset("moons", n_samples=300, noise=0.3, seed=5, standardize=True)
    # same split either way
    np.testing.assert_array_equal(plain.y_val, scaled.y_val)
    mean = plain.x_train.astype(np.float64).mean(axis=0)
    std = plain.x_train.astype(np.float64).std(axis=0)
    np.testing.assert_allclose(scaled.x_train, (plain.x_train - mean) / std, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scaled.x_val, (plain.x_val - mean) / std, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scaled.x_train.mean(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(scaled.x_train.std(axis=0), 1.0, atol=1e-5)
    # the validation part was not centred on its own statistics
    assert np.abs(scaled.x_val.mean(axis=0)).max() > 1e-3
    assert scaled.description.endswith("standardized")
    assert not plain.description.endswith("standardized")


def test_standardize_guards_constant_columns():
    # float64 as the generators produce: the std of three 0.1s comes out as 1.4e-17, not 0
    x_train = np.array([[0.1, 1.0], [0.1, 2.0], [0.1, 3.0]])
    x_val = np.array([[0.1, 4.0], [0.5, 0.0]])
    with np.errstate(all="raise"):
        tr, va, mean, std = standardize_split(x_train, x_val)
    assert std[0] == 1.0 and np.all(tr[:, 0] == 0.0)
    assert va[1, 0] == pytest.approx(0.4)
    assert tr.dtype == va.dtype == np.float32 and np.isfinite(va).all()


# ---------------------------------------------------------------- parameters and registry


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(DataError, match=r"unknown dataset 'mnist'; choose one of: moons, circ"):
        load_dataset("mnist")


def test_unknown_parameter_lists_valid_ones():
    with pytest.raises(DataError) as e:
        load_dataset("moons", noize=0.1)
    msg = str(e.value)
    assert "'noize'" in msg and "valid parameters: n_samples, noise, seed" in msg
    with pytest.raises(DataError, match="no parameter 'noise'"):
        load_dataset("breast_cancer", noise=0.1)


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"n_samples": 3}, "n_samples must be an integer >= 4, got 3; e.g. n_samples=1000"),
        ({"n_samples": 10.5}, "n_samples must be an integer"),
        ({"n_samples": True}, "n_samples must be an integer"),
        ({"noise": -0.1}, "noise must be a number >= 0"),
        ({"noise": float("nan")}, "noise must be a number >= 0"),
        ({"noise": "0.2"}, "noise must be a number >= 0"),
        ({"seed": -1}, "seed must be an integer >= 0"),
        ({"val_fraction": 0}, "val_fraction must be a number strictly between 0 and 1"),
        ({"val_fraction": 1.0}, "val_fraction must be a number strictly between 0 and 1"),
        ({"val_fraction": 1.5}, "val_fraction must be"),
        ({"standardize": "yes"}, "standardize must be true or false"),
    ],
)
def test_invalid_parameter_values(params, needle):
    with pytest.raises(DataError) as e:
        load_dataset("moons", **params)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_shape_parameter_ranges():
    with pytest.raises(DataError, match="factor must be a number strictly between 0 and 1"):
        load_dataset("circles", factor=1.0)
    with pytest.raises(DataError, match="turns must be a number > 0"):
        load_dataset("spirals", turns=0)
    with pytest.raises(DataError, match="n_features must be an integer >= 1"):
        load_dataset("blobs", n_features=0)


def test_integer_noise_is_accepted_and_require_binary_passes_for_binary_sets():
    ds = load_dataset("blobs", noise=1, n_samples=20, require_binary=True)
    assert ds.n_classes == 2
    assert load_dataset("breast_cancer", require_binary=True).n_classes == 2


# ---------------------------------------------------------------- conf/data/*.yaml


def test_every_dataset_has_a_yaml_and_back():
    assert sorted(p.stem for p in CONF_DATA.glob("*.yaml")) == sorted(DATASETS)


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_yaml_keys_and_defaults_match_the_loader(name, tmp_path):
    cfg = OmegaConf.load(CONF_DATA / f"{name}.yaml")
    assert cfg.name == name
    keys = [k for k in cfg if k != "name"]
    assert keys == list(dataset_params(name))  # same keys, same order
    for key, default in dataset_params(name).items():
        if OmegaConf.is_missing(cfg, key):
            assert default == "???"
        else:
            assert cfg[key] == default, key
    assert cfg.seed == 0  # data fixed across the trials of a sweep
    if name == "csv":
        file = tmp_path / "d.csv"
        file.write_text("a,b,label\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(20)))
        cfg.path, cfg.target = str(file), "label"
    ds = load_dataset(**cfg)  # exactly how the trainer calls it (DictConfig as **kwargs)
    assert ds.name == name and len(ds.x_val) > 0


def test_hydra_override_of_a_data_key():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(CONF_DATA.parent / "data"), version_base="1.3"):
        cfg = compose(config_name="spirals", overrides=["noise=0.3", "turns=2"])
    ds = load_dataset(**cfg)
    assert "noise 0.3, 2 turns" in ds.description
    with initialize_config_dir(str(CONF_DATA.parent), version_base="1.3"):
        cfg = compose(overrides=["+data=spirals", "data.noise=0.3"])
    assert cfg.data.name == "spirals" and cfg.data.noise == 0.3
