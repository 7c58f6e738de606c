"""Datasets: synthetic 2-D problems, bundled real data (breast cancer, digits), user CSV files.

Everything goes through one call:

```python
ds = load_dataset("moons", n_samples=1000, noise=0.2, seed=0, val_fraction=0.2)
ds.x_train, ds.y_train, ds.x_val, ds.y_val      # float32, (N, F) / (N,)
```

The keyword parameters of each dataset are exactly the keys of ``conf/data/<name>.yaml`` other
than ``name``, so the trainer can call ``load_dataset(**cfg.data)``. Unknown names, unknown or
invalid parameters and bad CSV files (read by :mod:`nnlab.csv_table`) raise :class:`DataError`
with a one-line message naming the file, line and column where relevant, and the fix.

Binary losses: pass ``require_binary=True`` (the trainer does so for ``binary_crossentropy``)
and a CSV target with more than two classes is refused, naming the file and column. Without it a
CSV target with K integer labels is mapped to class ids 0..K-1 (sorted order).

Pipeline, the same for every dataset: build ``(x, y)`` -> stratified train/validation split
(:func:`stratified_split`, seeded) -> optional standardisation fitted on the training part only
(:func:`standardize_split`) -> a frozen :class:`Dataset` holding read-only float32 arrays.
"""

from __future__ import annotations

import hashlib
import inspect
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

__all__ = [
    "DATASETS",
    "DataError",
    "Dataset",
    "dataset_params",
    "load_dataset",
    "make_blobs",
    "make_circles",
    "make_moons",
    "make_spirals",
    "make_xor",
    "source_digest",
    "standardize_split",
    "stratified_split",
]


class DataError(ValueError):
    """A bad dataset name, parameter or file; the message says what, where, and the fix."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """A train/validation split ready for ``model.fit``.

    Attributes
    ----------
    name : str
        Registry name (``"moons"``, ``"csv"``, ...).
    description : str
        One line, e.g. ``"two moons, 1000 samples, noise 0.2; 800 train / 200 val, standardized"``.
    x_train : ndarray of shape (n_train, n_features), float32
    y_train : ndarray of shape (n_train,), float32
        0/1 for binary problems, class ids 0..n_classes-1 otherwise.
    x_val : ndarray of shape (n_val, n_features), float32
    y_val : ndarray of shape (n_val,), float32
    n_features : int
    n_classes : int
        2 for binary problems.
    labels : tuple of int, length n_classes
        The dataset's own label of each class id (a CSV target -1/1 gives ``(-1, 1)``).
    feature_names : tuple of str, length n_features
        Column names of a CSV with a header, else ``x0, x1, ...`` (``x<j>``: column j).
    mean, std : ndarray of shape (n_features,), float64, or None
        The training part's statistics that standardised both parts (None: not standardised):
        a raw row ``r`` becomes ``((r - mean) / std).astype(float32)``.

    The arrays are read-only: copy them before changing them in place.
    """

    name: str
    description: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    n_features: int
    n_classes: int
    labels: tuple[int, ...] = ()
    feature_names: tuple[str, ...] = ()
    mean: np.ndarray | None = None
    std: np.ndarray | None = None


# --------------------------------------------------------------------------------------------
# Synthetic generators: pure functions (n_samples, noise, rng, shape params) -> x (N, F), y (N,).
# Classes are balanced (sizes differ by at most one); y is int 0/1; rows are in class order and
# the split shuffles them.


def _class_sizes(n_samples: int) -> tuple[int, int]:
    return n_samples // 2, n_samples - n_samples // 2


def _stack(
    x0: np.ndarray, x1: np.ndarray, noise: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    x = np.concatenate([x0, x1])
    x = x + rng.normal(0.0, noise, size=x.shape)
    y = np.concatenate([np.zeros(len(x0), dtype=np.int64), np.ones(len(x1), dtype=np.int64)])
    return x, y


def make_moons(
    n_samples: int, noise: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half circles: class 0 on top, class 1 below and shifted right.

    Returns x of shape (n_samples, 2) and y of shape (n_samples,).
    """
    n0, n1 = _class_sizes(n_samples)
    t0, t1 = np.linspace(0.0, np.pi, n0), np.linspace(0.0, np.pi, n1)
    upper = np.column_stack([np.cos(t0), np.sin(t0)])
    lower = np.column_stack([1.0 - np.cos(t1), 0.5 - np.sin(t1)])
    return _stack(upper, lower, noise, rng)


def make_circles(
    n_samples: int, noise: float, rng: np.random.Generator, factor: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """A unit circle (class 0) around a smaller one of radius ``factor`` (class 1).

    Returns x of shape (n_samples, 2) and y of shape (n_samples,).
    """
    n0, n1 = _class_sizes(n_samples)
    t0 = np.linspace(0.0, 2.0 * np.pi, n0, endpoint=False)
    t1 = np.linspace(0.0, 2.0 * np.pi, n1, endpoint=False)
    outer = np.column_stack([np.cos(t0), np.sin(t0)])
    inner = factor * np.column_stack([np.cos(t1), np.sin(t1)])
    return _stack(outer, inner, noise, rng)


def make_xor(
    n_samples: int, noise: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Uniform points in [-1, 1]^2; class 1 where both coordinates have the same sign.

    Returns x of shape (n_samples, 2) and y of shape (n_samples,).
    """
    n0, n1 = _class_sizes(n_samples)

    def quadrant_points(n: int, same_sign: bool) -> np.ndarray:
        u = rng.uniform(0.0, 1.0, size=(n, 2))
        s = rng.choice([-1.0, 1.0], size=n)  # which of the two quadrants
        return u * np.column_stack([s, s if same_sign else -s])

    return _stack(quadrant_points(n0, False), quadrant_points(n1, True), noise, rng)


def make_spirals(
    n_samples: int, noise: float, rng: np.random.Generator, turns: float = 1.5
) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved spiral arms, each making ``turns`` turns out to radius 1.

    Class 1 is class 0 rotated by half a turn. Returns x of shape (n_samples, 2) and y of shape
    (n_samples,).
    """
    n0, n1 = _class_sizes(n_samples)

    def arm(n: int) -> np.ndarray:
        t = np.linspace(0.0, 1.0, n)
        r, angle = 0.1 + 0.9 * t, 2.0 * np.pi * turns * t  # start off-centre: arms stay apart
        return np.column_stack([r * np.cos(angle), r * np.sin(angle)])

    return _stack(arm(n0), -arm(n1), noise, rng)


def make_blobs(
    n_samples: int,
    noise: float,
    rng: np.random.Generator,
    separation: float = 3.0,
    n_features: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """Two gaussian blobs with standard deviation ``noise``, centres ``separation`` apart.

    The centres sit at +/- separation/2 along the diagonal of the ``n_features``-dimensional
    space. Returns x of shape (n_samples, n_features) and y of shape (n_samples,).
    """
    n0, n1 = _class_sizes(n_samples)
    centre = np.full(n_features, separation / 2.0 / math.sqrt(n_features))
    return _stack(np.tile(-centre, (n0, 1)), np.tile(centre, (n1, 1)), noise, rng)


# --------------------------------------------------------------------------------------------
# Splitting and scaling


def stratified_split(
    y: np.ndarray, val_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a stratified train/validation split.

    Each class keeps round(val_fraction * its size) rows for validation, clipped so that it has
    at least one row on each side (every class needs >= 2 rows). Both index arrays are shuffled
    so that classes interleave.

    Parameters
    ----------
    y : ndarray of shape (N,)
        Class labels.
    val_fraction : float
        In (0, 1).
    rng : numpy Generator

    Returns
    -------
    train_idx : ndarray of shape (N - M,), int
    val_idx : ndarray of shape (M,), int
    """
    train, val = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_val = min(max(int(math.floor(val_fraction * len(idx) + 0.5)), 1), len(idx) - 1)
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(val))


def standardize_split(
    x_train: np.ndarray, x_val: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Scale both parts with the training part's mean and std (validation stats never leak).

    Constant training columns become exactly 0 (std taken as 1) instead of dividing by zero.

    Returns
    -------
    x_train, x_val : ndarrays with the input shapes, float32
    mean, std : ndarrays of shape (F,), float64
    """
    mean = x_train.mean(axis=0, dtype=np.float64)
    std = x_train.std(axis=0, dtype=np.float64)
    constant = np.ptp(x_train, axis=0) == 0  # exact test: the float std of 0.1s is 1.4e-17
    mean[constant], std[constant] = x_train[0, constant], 1.0
    scale = lambda x: ((x - mean) / std).astype(np.float32)  # noqa: E731
    return scale(x_train), scale(x_val), mean, std


FLOAT32_MAX = float(np.finfo(np.float32).max)  # every array nnlab trains on is float32


def _check_float32(name: str, x: np.ndarray) -> None:
    """Refuse features float32 cannot hold (inf after the cast, or a swamped standardisation).

    CSV cells are checked one by one where they are read (with their line and column); this
    catches generated ones (``noise=1e300``)."""
    with np.errstate(invalid="ignore"):
        bad = ~(np.abs(x) <= FLOAT32_MAX)
    if bad.any():
        scale = [k for k in ("noise", "separation") if k in dataset_params(name)]
        largest = np.nanmax(np.abs(np.where(np.isnan(x), 0.0, x)))
        raise DataError(
            f"dataset {name!r}: features overflow float32, the type nnlab trains in (largest "
            f"|x| {largest:.3g}, limit {FLOAT32_MAX:.4g}); lower {' or '.join(scale) or 'them'}"
        )


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=np.float32)
    a.setflags(write=False)
    return a


def _build(
    name: str,
    what: str,
    x: np.ndarray,
    y: np.ndarray,
    rng: np.random.Generator,
    val_fraction: float,
    standardize: bool,
    labels: tuple[int, ...] | None = None,
    feature_names: tuple[str, ...] | None = None,
) -> Dataset:
    """Split, scale and freeze; ``y`` holds class ids 0..K-1, every class with >= 2 rows."""
    _check_float32(name, x)
    train_idx, val_idx = stratified_split(y, val_fraction, rng)
    x_train, x_val = x[train_idx], x[val_idx]
    mean = std = None
    if standardize:
        x_train, x_val, mean, std = standardize_split(x_train, x_val)
        mean.setflags(write=False)
        std.setflags(write=False)
    scaling = ", standardized" if standardize else ""
    return Dataset(
        name=name,
        description=f"{what}; {len(train_idx)} train / {len(val_idx)} val{scaling}",
        x_train=_frozen(x_train),
        y_train=_frozen(y[train_idx]),
        x_val=_frozen(x_val),
        y_val=_frozen(y[val_idx]),
        n_features=int(x.shape[1]),
        n_classes=int(y.max()) + 1,
        labels=labels or tuple(range(int(y.max()) + 1)),
        feature_names=feature_names or tuple(f"x{j}" for j in range(x.shape[1])),
        mean=mean,
        std=std,
    )


# --------------------------------------------------------------------------------------------
# Loaders: one per dataset; their keyword parameters (and defaults) mirror conf/data/<name>.yaml.


def _moons(
    n_samples: int = 1000,
    noise: float = 0.2,
    seed: int = 0,
    val_fraction: float = 0.2,
    standardize: bool = True,
) -> Dataset:
    rng = np.random.default_rng(seed)
    x, y = make_moons(n_samples, noise, rng)
    what = f"two moons, {n_samples} samples, noise {noise:g}"
    return _build("moons", what, x, y, rng, val_fraction, standardize)


def _circles(
    n_samples: int = 1000,
    noise: float = 0.1,
    factor: float = 0.5,
    seed: int = 0,
    val_fraction: float = 0.2,
    standardize: bool = True,
) -> Dataset:
    rng = np.random.default_rng(seed)
    x, y = make_circles(n_samples, noise, rng, factor=factor)
    what = f"two circles, {n_samples} samples, noise {noise:g}, factor {factor:g}"
    return _build("circles", what, x, y, rng, val_fraction, standardize)


def _xor(
    n_samples: int = 1000,
    noise: float = 0.1,
    seed: int = 0,
    val_fraction: float = 0.2,
    standardize: bool = True,
) -> Dataset:
    rng = np.random.default_rng(seed)
    x, y = make_xor(n_samples, noise, rng)
    what = f"xor quadrants, {n_samples} samples, noise {noise:g}"
    return _build("xor", what, x, y, rng, val_fraction, standardize)


def _spirals(
    n_samples: int = 1000,
    noise: float = 0.05,
    turns: float = 1.5,
    seed: int = 0,
    val_fraction: float = 0.2,
    standardize: bool = True,
) -> Dataset:
    rng = np.random.default_rng(seed)
    x, y = make_spirals(n_samples, noise, rng, turns=turns)
    what = f"two spirals, {n_samples} samples, noise {noise:g}, {turns:g} turns"
    return _build("spirals", what, x, y, rng, val_fraction, standardize)


def _blobs(
    n_samples: int = 1000,
    noise: float = 1.0,
    separation: float = 3.0,
    n_features: int = 2,
    seed: int = 0,
    val_fraction: float = 0.2,
    standardize: bool = True,
) -> Dataset:
    rng = np.random.default_rng(seed)
    x, y = make_blobs(n_samples, noise, rng, separation=separation, n_features=n_features)
    what = (
        f"two gaussian blobs, {n_samples} samples, {n_features} features, "
        f"std {noise:g}, separation {separation:g}"
    )
    return _build("blobs", what, x, y, rng, val_fraction, standardize)


def _bundled(
    name: str, what: str, binary: bool, seed: int, val_fraction: float, standardize: bool
) -> Dataset:
    """A dataset shipped in ``nnlab/datasets/<name>.csv`` (header row, a ``target`` column)."""
    from nnlab.csv_table import CsvTable  # it imports DataError from here

    text = resources.files("nnlab").joinpath(f"datasets/{name}.csv").read_text("utf-8")
    table = CsvTable.parse(text, f"nnlab/datasets/{name}.csv", ",", True)
    x, y, _ = table.arrays("target", None, require_binary=binary)
    rng = np.random.default_rng(seed)
    return _build(name, what, x, y, rng, val_fraction, standardize, *table.meta)


def _breast_cancer(seed: int = 0, val_fraction: float = 0.2, standardize: bool = True) -> Dataset:
    what = "Wisconsin diagnostic breast cancer, 569 samples, 30 features, 1 = malignant"
    return _bundled("breast_cancer", what, True, seed, val_fraction, standardize)


def _digits(seed: int = 0, val_fraction: float = 0.2, standardize: bool = True) -> Dataset:
    what = "UCI handwritten digits (8x8 pixel counts 0..16), 1797 samples, 64 features, 10 classes"
    return _bundled("digits", what, False, seed, val_fraction, standardize)


def _csv(
    path: str | os.PathLike = "???",
    target: str | int = "???",
    features: list[str | int] | None = None,
    header: str | bool = "auto",
    delimiter: str = ",",
    seed: int = 0,
    val_fraction: float = 0.2,
    standardize: bool = True,
    require_binary: bool = False,
) -> Dataset:
    from nnlab.csv_table import CsvTable, check_path  # it imports DataError from here

    source = check_path(path)
    if isinstance(target, str) and target in ("???", ""):
        raise DataError(
            f"{source}: target column is not set; pass target=<column name or index> (data.target=...)"
        )
    table = CsvTable.read(source, delimiter, header)
    x, y, target_note = table.arrays(target, features, require_binary)
    what = f"CSV {source}, {len(y)} rows, {x.shape[1]} features, {target_note}"
    rng = np.random.default_rng(seed)
    return _build("csv", what, x, y, rng, val_fraction, standardize, *table.meta)


DATASETS: dict[str, Callable[..., Dataset]] = {
    "moons": _moons,
    "circles": _circles,
    "xor": _xor,
    "spirals": _spirals,
    "blobs": _blobs,
    "breast_cancer": _breast_cancer,
    "digits": _digits,
    "csv": _csv,
}
"""Dataset name -> loader; each loader's keyword parameters are the keys of its yaml."""


_DIGESTS: dict[tuple, str] = {}  # (file, size, mtime, ctime, inode) -> digest, per process


def source_digest(params: Mapping) -> str | None:
    """A digest of the file a dataset config reads (16 hex digits of its sha256), or None.

    A CSV's path says nothing about its content: the digest joins the trial's identity (the
    config hash), as MLflow's dataset digest does, so an edited file trains again. Read once per
    process per file version (keyed by its size, times and inode), not once per trial. None for
    datasets made from their params (generators) and for the bundled ones (their bytes are
    pinned by a test), and for a CSV that cannot be read (loading it then says why).
    """
    if params.get("name") != "csv":
        return None
    try:
        path = Path(os.fspath(params.get("path"))).expanduser()  # type: ignore[arg-type]
        st = path.stat()
        key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
        if key not in _DIGESTS:
            digest = hashlib.sha256()
            with open(path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
            _DIGESTS[key] = digest.hexdigest()[:16]
    except (TypeError, OSError):
        return None
    return _DIGESTS[key]


def dataset_params(name: str) -> dict[str, object]:
    """The parameters ``load_dataset(name, ...)`` accepts, with their defaults."""
    params = inspect.signature(DATASETS[name]).parameters
    return {k: p.default for k, p in params.items() if k != "require_binary"}


def load_dataset(name: str, *, require_binary: bool = False, **params: object) -> Dataset:
    """Build a dataset by registry name.

    Parameters
    ----------
    name : str
        One of ``DATASETS``: moons, circles, xor, spirals, blobs, breast_cancer, digits, csv.
    require_binary : bool, default False
        Refuse targets with more than two classes (needed by ``binary_crossentropy``, whose
        labels must be 0/1). CSV targets and digits (10 classes) can have more.
        A two-valued CSV target is always mapped to 0/1 in sorted order (e.g. -1/1 -> 0/1).
    **params
        The dataset's parameters: exactly the keys of ``conf/data/<name>.yaml`` other than
        ``name`` (see :func:`dataset_params`); omitted ones take the yaml's defaults.

    Returns
    -------
    Dataset

    Raises
    ------
    DataError
        Unknown name or parameter, an invalid value, or a bad CSV file.
    """
    if not isinstance(name, str) or name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    defaults = dataset_params(name)
    unknown = [k for k in params if k not in defaults]
    if unknown:
        raise DataError(
            f"dataset {name!r} has no parameter {', '.join(map(repr, unknown))}; "
            f"valid parameters: {', '.join(defaults)}"
        )
    kwargs = {k: _checked(name, k, v, defaults[k]) for k, v in params.items()}
    if "require_binary" in inspect.signature(DATASETS[name]).parameters:
        kwargs["require_binary"] = require_binary
    dataset = DATASETS[name](**kwargs)
    if require_binary and dataset.n_classes != 2:  # digits (CSV files are refused earlier)
        raise DataError(f"dataset {name!r} has {dataset.n_classes} classes; a binary loss needs 2")
    return dataset


# --------------------------------------------------------------------------------------------
# Parameter checks (CSV-specific ones live with the CSV reader)


def is_int(v: object) -> bool:
    """True for a Python or NumPy integer that is not a bool (config and data checks share it)."""
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


def _is_real(v: object) -> bool:
    return (is_int(v) or isinstance(v, float | np.floating)) and math.isfinite(float(v))


_RULES: dict[str, tuple[Callable[[object], bool], str, type]] = {
    "n_samples": (lambda v: is_int(v) and v >= 4, "an integer >= 4", int),
    "noise": (lambda v: _is_real(v) and v >= 0, "a number >= 0", float),
    "seed": (lambda v: is_int(v) and v >= 0, "an integer >= 0", int),
    "val_fraction": (
        lambda v: _is_real(v) and 0 < v < 1,
        "a number strictly between 0 and 1",
        float,
    ),
    "standardize": (lambda v: isinstance(v, bool | np.bool_), "true or false", bool),
    "factor": (lambda v: _is_real(v) and 0 < v < 1, "a number strictly between 0 and 1", float),
    "turns": (lambda v: _is_real(v) and v > 0, "a number > 0", float),
    "separation": (lambda v: _is_real(v) and v >= 0, "a number >= 0", float),
    "n_features": (lambda v: is_int(v) and v >= 1, "an integer >= 1", int),
}


def _checked(name: str, key: str, value: object, default: object) -> object:
    if key not in _RULES:
        return value
    ok, requirement, cast = _RULES[key]
    if not ok(value):
        raise DataError(
            f"dataset {name!r}: {key} must be {requirement}, got {value!r}; e.g. {key}={default}"
        )
    return cast(value)
