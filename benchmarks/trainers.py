"""One trainer per system, each written the way a user of that system would write it.

``TRAINERS[name](workload, x, y, weights)`` builds the model with the given initial weights and
returns ``fit(epochs) -> loss of the last epoch``. Every system shuffles each epoch, uses Adam
(lr from the workload, beta 0.9/0.999, epsilon 1e-7 as Keras), float32, no L2 penalty, and
computes its epoch loss (as Keras' fit does), so the work per epoch is the same.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from benchmarks.workloads import Workload, targets

Fit = Callable[[int], float]


def keras_style_fit(model, w: Workload, x: np.ndarray, t: np.ndarray) -> Fit:
    """``fit(epochs) -> last epoch loss`` for a model with Keras's ``fit`` (nnlab and Keras)."""

    def fit(epochs: int) -> float:
        h = model.fit(x, t, batch_size=w.batch_size, epochs=epochs, shuffle=True, verbose=0)
        return float(h.history["loss"][-1])

    return fit


def nnlab_trainer(w: Workload, x: np.ndarray, y: np.ndarray, ws: list[np.ndarray]) -> Fit:
    from nnlab import nn

    layers = [nn.Dense(w.layers[1], activation=w.hidden_activation, input_dim=w.layers[0])]
    layers += [nn.Dense(u, activation=w.hidden_activation) for u in w.layers[2:-1]]
    layers.append(nn.Dense(w.layers[-1], activation=w.output_activation))
    model = nn.Sequential(layers, seed=0, dtype="float32")
    model.compile(optimizer=nn.Adam(learning_rate=w.learning_rate), loss=w.loss)
    model.set_weights(ws)
    return keras_style_fit(model, w, x, targets(w, y))


def keras_trainer(w: Workload, x: np.ndarray, y: np.ndarray, ws: list[np.ndarray]) -> Fit:
    import keras  # KERAS_BACKEND=jax is set by the parent (the backend is fixed per process)

    keras.utils.set_random_seed(0)
    layers = [keras.Input((w.layers[0],))]
    layers += [keras.layers.Dense(u, activation=w.hidden_activation) for u in w.layers[1:-1]]
    layers.append(keras.layers.Dense(w.layers[-1], activation=w.output_activation))
    model = keras.Sequential(layers)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=w.learning_rate, epsilon=1e-7),
        loss=w.loss,
        jit_compile=True,
    )
    model.set_weights(ws)
    return keras_style_fit(model, w, x, targets(w, y))


def torch_trainer(w: Workload, x: np.ndarray, y: np.ndarray, ws: list[np.ndarray]) -> Fit:
    """Eager PyTorch, the idiomatic loop: a randperm per epoch and index slicing (no DataLoader,
    which would only add per-batch collation cost); the loss on logits (BCEWithLogits /
    CrossEntropy), as PyTorch recommends."""
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    mods: list[torch.nn.Module] = []
    act = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid}
    for i, (fi, fo) in enumerate(zip(w.layers[:-1], w.layers[1:], strict=True)):
        mods.append(torch.nn.Linear(fi, fo))
        if i < len(w.layers) - 2:
            mods.append(act[w.hidden_activation]())
    model = torch.nn.Sequential(*mods)
    with torch.no_grad():
        linears = [m for m in mods if isinstance(m, torch.nn.Linear)]
        for lin, W, b in zip(linears, ws[::2], ws[1::2], strict=True):
            lin.weight.copy_(torch.from_numpy(W.T.copy()))
            lin.bias.copy_(torch.from_numpy(b))
    opt = torch.optim.Adam(model.parameters(), lr=w.learning_rate, eps=1e-7)
    if w.binary:
        loss_fn = torch.nn.BCEWithLogitsLoss()
        yt = torch.from_numpy(y.astype(np.float32).reshape(-1, 1))
    else:
        loss_fn = torch.nn.CrossEntropyLoss()
        yt = torch.from_numpy(y)
    xt = torch.from_numpy(x)
    n, bs = len(x), w.batch_size

    def fit(epochs: int) -> float:
        model.train()
        for _ in range(epochs):
            perm = torch.randperm(n)
            total = 0.0
            for i in range(0, n, bs):
                idx = perm[i : i + bs]
                opt.zero_grad()
                loss = loss_fn(model(xt[idx]), yt[idx])
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
        return total / n

    return fit


def sklearn_trainer(w: Workload, x: np.ndarray, y: np.ndarray, ws: list[np.ndarray]) -> Fit:
    """MLPClassifier with solver="adam", one ``partial_fit`` per epoch (``fit`` with warm_start
    would create a fresh Adam state each call). alpha=0: its default L2 penalty 1e-4 is off, as
    in the others; epsilon 1e-7 as Keras; float32 input keeps float32 weights."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(
        hidden_layer_sizes=tuple(w.layers[1:-1]),
        activation=w.hidden_activation,
        solver="adam",
        alpha=0.0,
        batch_size=w.batch_size,
        learning_rate_init=w.learning_rate,
        epsilon=1e-7,
        shuffle=True,
        tol=0.0,
        n_iter_no_change=10**9,
        early_stopping=False,
        random_state=0,
    )
    classes = np.arange(max(2, w.layers[-1]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.partial_fit(x[: w.batch_size], y[: w.batch_size], classes=classes)  # allocates coefs_
    for dst, src in zip(clf.coefs_ + clf.intercepts_, ws[::2] + ws[1::2], strict=True):
        if dst.shape != src.shape or dst.dtype != src.dtype:
            raise RuntimeError(f"sklearn layer {dst.shape}/{dst.dtype} vs {src.shape}/{src.dtype}")
        dst[...] = src  # in place: the optimizer's params list holds these same arrays
    del clf._optimizer  # start Adam afresh from the shared initial weights

    def fit(epochs: int) -> float:
        for _ in range(epochs):
            clf.partial_fit(x, y)
        return float(clf.loss_)

    return fit


TRAINERS: dict[str, Callable[..., Fit]] = {
    "nnlab": nnlab_trainer,
    "keras_jax": keras_trainer,
    "torch": torch_trainer,
    "sklearn": sklearn_trainer,
}
PEERS = ("keras_jax", "torch", "sklearn")
