"""The trainer workloads: one network shape, data set and batch size each, identical for every system.

W1 is overhead-bound (tiny layers, small batches: the Python per step decides), W2 is
compute-bound (the GEMMs decide), W3 is the flagship sweep's own trial, read from the Hydra
config at run time so it follows whatever ``conf/experiment/lr_vs_epochs.yaml`` says.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field

import numpy as np

from benchmarks.common import REPO

DATA_SEED = 1234
WEIGHT_SEED = 0


@dataclass(frozen=True)
class Workload:
    """One benchmark training problem.

    ``layers`` are the unit counts from input to output, e.g. ``(2, 64, 64, 1)``; hidden layers
    use ``hidden_activation``; the output is sigmoid + binary cross-entropy for one unit and
    softmax + categorical cross-entropy otherwise.
    """

    name: str
    layers: tuple[int, ...]
    batch_size: int
    n_samples: int
    hidden_activation: str = "relu"
    learning_rate: float = 1e-3
    epochs_per_repeat: int | None = None  # None: the runner's default (2, or 1 with --quick)
    source: str = "fixed"
    notes: str = ""
    data: dict = field(default_factory=dict)  # nnlab.data.load_dataset(**data) when non-empty

    @property
    def binary(self) -> bool:
        return self.layers[-1] == 1

    @property
    def output_activation(self) -> str:
        return "sigmoid" if self.binary else "softmax"

    @property
    def loss(self) -> str:
        return "binary_crossentropy" if self.binary else "categorical_crossentropy"

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(output_activation=self.output_activation, loss=self.loss)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Workload:
        keys = {f for f in cls.__dataclass_fields__}
        kw = {k: v for k, v in d.items() if k in keys}
        kw["layers"] = tuple(kw["layers"])
        return cls(**kw)


W1 = Workload(
    "W1",
    (2, 64, 64, 1),
    batch_size=32,
    n_samples=20_000,
    notes="overhead-bound: tiny layers, batch 32",
)
W2 = Workload(
    "W2",
    (784, 256, 128, 10),
    batch_size=128,
    n_samples=20_000,
    notes="compute-bound: MNIST-sized MLP, batch 128",
)

# Only used while conf/experiment/lr_vs_epochs.yaml does not exist yet: a moons-sized trial.
W3_PLACEHOLDER = {"layers": (2, 16, 16, 1), "batch_size": 32, "n_samples": 800}


def w3_from_config() -> Workload:
    """The flagship sweep's trial shape, composed with Hydra exactly as ``nnlab.run`` would."""
    exp = REPO / "conf" / "experiment" / "lr_vs_epochs.yaml"
    if not exp.exists():
        return Workload(
            "W3",
            source="placeholder (conf/experiment/lr_vs_epochs.yaml missing)",
            notes="flagship sweep trial (placeholder shape)",
            **W3_PLACEHOLDER,
        )
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with warnings.catch_warnings():  # Hydra's schema-matching notice for the joblib preset
        warnings.simplefilter("ignore", UserWarning)
        with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
            cfg = compose("config", overrides=["+experiment=lr_vs_epochs"])
    c = OmegaConf.to_container(cfg, resolve=False)
    model, data = c.get("model", {}), dict(c.get("data", {}))
    hidden = model.get("hidden", [16, 16])
    hidden = [hidden] if isinstance(hidden, int) else list(hidden)
    act = model.get("activation", "relu")
    # The sweep axes sit in hydra.sweeper.params, not in the composed job config. The trial
    # measured is the sweep's costliest kind: its smallest batch size and longest epoch budget,
    # one whole fit(epochs) per repeat as a trial runs it (lr: the config default).
    axes = OmegaConf.load(exp).get("hydra", {}).get("sweeper", {}).get("params", {}) or {}
    batch = min(_values(axes.get("batch_size", c.get("batch_size", 32))))
    epochs = max(_values(axes.get("epochs", c.get("epochs", 20))))
    lr = float(c.get("lr", 1e-3))

    from nnlab.data import load_dataset

    name = data.pop("name")
    ds = load_dataset(name, **{k: v for k, v in data.items() if not str(v).startswith("${")})
    n_out = 1 if ds.n_classes == 2 else ds.n_classes
    return Workload(
        "W3",
        (ds.n_features, *[int(h) for h in hidden], n_out),
        batch_size=int(batch),
        n_samples=len(ds.x_train),
        hidden_activation=str(act),
        learning_rate=lr,
        epochs_per_repeat=int(epochs),
        source="conf/experiment/lr_vs_epochs.yaml",
        notes=f"flagship sweep trial: data={name}, batch {batch:g}, fit(epochs={epochs:g}) per "
        "repeat (the sweep's smallest batch and longest budget)",
        data={"name": name, **data},
    )


def _values(v) -> list[float]:
    """A sweep axis as numbers: ``"16,64,256"``, ``[16, 64]`` or a single value."""
    items = v if isinstance(v, list | tuple) else str(v).split(",")
    return [float(x) for x in items]


def make_data(w: Workload) -> tuple[np.ndarray, np.ndarray]:
    """Fixed-seed data: ``x (N, F) float32`` and integer class labels ``y (N,) int64``.

    A real data set when the workload names one (W3), otherwise gaussian x with labels from a
    fixed random projection (learnable, balanced enough; the values do not change the speed).
    """
    if w.data:
        from nnlab.data import load_dataset

        params = {k: v for k, v in w.data.items() if k != "name"}
        ds = load_dataset(w.data["name"], **params)
        return np.ascontiguousarray(ds.x_train, np.float32), ds.y_train.astype(np.int64)
    rng = np.random.default_rng(DATA_SEED)
    x = rng.standard_normal((w.n_samples, w.layers[0])).astype(np.float32)
    if w.binary:
        y = (x[:, 0] * x[:, 1 % w.layers[0]] > 0).astype(np.int64)
    else:
        proj = rng.standard_normal((w.layers[0], w.layers[-1])).astype(np.float32)
        y = np.argmax(x @ proj, axis=1).astype(np.int64)
    return x, y


def targets(w: Workload, y: np.ndarray) -> np.ndarray:
    """Keras-style float32 targets: ``(N, 1)`` 0/1 for binary, one-hot ``(N, K)`` otherwise."""
    if w.binary:
        return y.astype(np.float32).reshape(-1, 1)
    out = np.zeros((len(y), w.layers[-1]), np.float32)
    out[np.arange(len(y)), y] = 1.0
    return out


def initial_weights(w: Workload, seed: int = WEIGHT_SEED) -> list[np.ndarray]:
    """Keras order ``[W0 (in, out), b0 (out,), ...]``: glorot_uniform from one seed, zero biases."""
    rng = np.random.default_rng(seed)
    ws: list[np.ndarray] = []
    for fan_in, fan_out in zip(w.layers[:-1], w.layers[1:], strict=True):
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        ws.append(rng.uniform(-limit, limit, (fan_in, fan_out)).astype(np.float32))
        ws.append(np.zeros(fan_out, np.float32))
    return ws


def trainer_workloads() -> dict[str, Workload]:
    return {"W1": W1, "W2": W2, "W3": w3_from_config()}
