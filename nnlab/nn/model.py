"""Sequential: a stack of Dense layers with Keras's compile / fit / evaluate / predict.

How a training step stays cheap:

- every weight lives in one flat vector ``_params`` (per-layer kernels and biases are views),
  gradients in a matching flat ``_grads``: the optimizer makes one in-place pass per step;
- per batch size, activation / delta / scratch buffers are allocated once and written with
  ``out=``; activations are applied in place and derivatives are taken from the stored outputs;
- the data are gathered in shuffled order once per epoch, batches are contiguous slices;
- the first layer's input gradient is never computed.

The model's seed feeds one ``np.random.Generator``: initial weights are drawn first, then one
permutation per epoch. Same seed, same data -> bit-identical weights and history.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence

import numpy as np

from . import activations, losses, optimizers, passes
from . import callbacks as callbacks_module
from . import metrics as metrics_module
from .layers import Dense
from .printing import epoch_line

# the float types a model computes in (also the values ``model.dtype`` accepts in nnlab configs)
DTYPES = ("float32", "float64")


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an integer; got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}")
    return int(value)


def _resolve_dtype(dtype) -> np.dtype:
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        resolved = None
    if resolved is None or resolved.name not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; valid: {', '.join(DTYPES)}")
    return resolved


class Sequential:
    """A linear stack of layers.

    Parameters
    ----------
    layers : list of Dense, optional
    seed : int, optional
        Fixes the initial weights and the shuffling. ``None`` draws a fresh seed (stored in
        ``model.seed``, so the run can still be repeated).
    dtype : {"float32", "float64"}
        Dtype of every weight and every computation. Inputs are cast to it.
    name : str
    """

    def __init__(
        self,
        layers: Sequence[Dense] | None = None,
        seed: int | None = None,
        dtype: str = "float32",
        name: str = "sequential",
    ) -> None:
        self.dtype = _resolve_dtype(dtype)
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0])
        self.seed = _check_int("seed", seed, 0)
        self.name = name
        self._rng = np.random.default_rng(self.seed)
        self.layers: list[Dense] = []
        self.input_dim: int | None = None
        self.built = False
        self.optimizer: optimizers.Optimizer | None = None
        self.loss: losses.Loss | None = None
        self._metrics: list[tuple[str, Callable]] = []
        self.stop_training = False
        self.history: callbacks_module.History | None = None
        self._gathered: tuple[np.ndarray, np.ndarray] | None = None
        # callbacks of the latest fit (their state joins get_state) and callback state from
        # set_state, handed back at the next fit
        self._fit_callbacks: list[callbacks_module.Callback] = []
        self._pending_callback_state: dict[str, np.ndarray] = {}
        # called with (x, activations, deltas, flat gradient) after each training batch's
        # backward pass while a GradientNoiseScale callback is fitting; None costs nothing
        self._grad_probe: Callable | None = None
        for layer in layers or []:
            self.add(layer)

    def __repr__(self) -> str:
        return f"Sequential({self.layers!r}, seed={self.seed}, dtype={self.dtype.name!r})"

    # --- structure ----------------------------------------------------------------------

    def add(self, layer: Dense) -> None:
        """Append a layer (before the model is built)."""
        if not isinstance(layer, Dense):
            raise TypeError(f"Sequential takes Dense layers; got {type(layer).__name__}")
        if self.built:
            raise ValueError("cannot add layers to a built model; create a new Sequential")
        if layer.kernel is not None:
            raise ValueError(f"layer {layer.name!r} already belongs to a built model")
        if self.layers and layer.input_dim is not None:
            raise ValueError("only the first layer takes input_dim; later widths are inferred")
        if layer.name is None:
            layer.name = "dense" if not self.layers else f"dense_{len(self.layers)}"
        self.layers.append(layer)

    def _require_layers(self) -> None:
        if not self.layers:
            raise ValueError("the model has no layers; pass Dense layers to Sequential first")

    def _maybe_build(self) -> None:
        if not self.built and self.layers and self.layers[0].input_dim is not None:
            self.build(self.layers[0].input_dim)

    def build(self, input_dim: int) -> None:
        """Allocate the flat parameter vector and draw the initial weights (kernel by kernel)."""
        self._require_layers()
        if self.built:
            return
        input_dim = _check_int("input_dim", input_dim, 1)
        dims = [input_dim] + [layer.units for layer in self.layers]
        self._layout = passes.layout(dims)
        total = passes.size(dims)
        self._grads = np.zeros(total, self.dtype)
        self._grad_views = passes.Views(self._grads, self._layout)
        params = np.empty(total, self.dtype)
        views = passes.Views(params, self._layout)
        for i, layer in enumerate(self.layers):
            kernel, bias = layer.initial_weights(dims[i], self._rng, self.dtype)
            views.kernels[i][...] = kernel
            views.biases[i][...] = bias
        self._bind_params(params)
        self._forward_fns = [activations.ACTIVATIONS[layer.activation] for layer in self.layers]
        self._derivs = [activations.DERIVATIVES[layer.activation] for layer in self.layers]
        self._buffers: dict[int, passes.Buffers] = {}
        self.input_dim = input_dim
        self.built = True
        if self.optimizer is not None:
            self.optimizer.build(total, self.dtype)

    def _bind_params(self, flat: np.ndarray) -> None:
        """Keep the weights in ``flat`` (P,), values already in place: each layer's kernel and
        bias become views into it. A stack (``nnlab.nn.stacked``) binds its members to the rows
        of one (M, P) array while it trains them, and back to their own vectors after."""
        self._params = flat
        self._views = passes.Views(flat, self._layout)
        for layer, kernel, bias in zip(
            self.layers, self._views.kernels, self._views.biases, strict=True
        ):
            layer.kernel, layer.bias = kernel, bias

    def count_params(self) -> int:
        self._maybe_build()
        return int(self._params.size) if self.built else 0

    # --- weights and state --------------------------------------------------------------

    def _weight_arrays(self) -> list[np.ndarray]:
        """The live kernel and bias views in Keras order."""
        views = self._views
        return [w for pair in zip(views.kernels, views.biases, strict=True) for w in pair]

    def get_weights(self) -> list[np.ndarray]:
        """Copies ``[W0 (in, out), b0 (out,), W1, b1, ...]`` (Keras order and shapes)."""
        self._maybe_build()
        if not self.built:
            return []
        return [w.copy() for w in self._weight_arrays()]

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        """Set all weights from a list like ``get_weights()`` returns (values are cast)."""
        weights = list(weights)
        self._maybe_build()
        if not self.built and weights:
            self.build(int(np.shape(weights[0])[0]))
        targets = self._weight_arrays()
        if len(weights) != len(targets):
            raise ValueError(
                f"set_weights needs {len(targets)} arrays (kernel and bias per layer); "
                f"got {len(weights)}"
            )
        for i, (target, value) in enumerate(zip(targets, weights, strict=True)):
            if np.shape(value) != target.shape:
                raise ValueError(f"weight {i} has shape {np.shape(value)}; expected {target.shape}")
        for target, value in zip(targets, weights, strict=True):
            target[...] = value

    def get_state(self) -> dict[str, np.ndarray]:
        """Everything an exact resume needs, as plain arrays (``np.savez``-able, no pickle).

        Keys: ``weights/<i>``, ``optimizer/name``, ``optimizer/iterations``,
        ``optimizer/learning_rate`` (the rate, or the schedule as JSON), ``optimizer/<slot>``
        (flat, the parameter-vector layout), ``rng`` (the shuffling generator's state as a JSON
        string) and ``callbacks/<Class>/<key>`` for the latest fit's stateful callbacks
        (e.g. ReduceLROnPlateau's ``wait``; a second one of a class is ``<Class>_1``).
        """
        state = {f"weights/{i}": w for i, w in enumerate(self.get_weights())}
        if self.optimizer is not None and self.optimizer.built:
            state["optimizer/name"] = np.array(self.optimizer.name)
            for key, value in self.optimizer.get_state().items():
                state[f"optimizer/{key}"] = value
        state["rng"] = np.array(json.dumps(self._rng.bit_generator.state))
        state.update(callbacks_module.callback_state(self._fit_callbacks))
        return state

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore ``get_state()`` output (on a model of the same architecture)."""
        weights = [
            state[f"weights/{i}"] for i in range(sum(k.startswith("weights/") for k in state))
        ]
        self.set_weights(weights)
        if "optimizer/name" in state:
            name = str(state["optimizer/name"])
            if self.optimizer is None:
                raise ValueError("the state holds optimizer slots: compile the model first")
            if name != self.optimizer.name:
                raise ValueError(
                    f"the state holds {name!r} optimizer slots but the model is compiled with "
                    f"{self.optimizer.name!r}"
                )
            self.optimizer.build(self._params.size, self.dtype)
            prefix = "optimizer/"
            self.optimizer.set_state(
                {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            )
        if "rng" in state:
            self._rng.bit_generator.state = json.loads(str(state["rng"]))
        self._pending_callback_state = {
            k: v for k, v in state.items() if k.startswith("callbacks/")
        }

    # --- compile ------------------------------------------------------------------------

    def compile(self, optimizer="rmsprop", loss=None, metrics: Sequence[str] | None = None):
        """Choose the optimizer (name or instance), the loss (name or Loss) and metric names."""
        self._require_layers()
        self._maybe_build()
        opt = optimizers.get(optimizer)
        loss_obj = losses.get(loss)
        units = self.layers[-1].units
        loss_obj.check_activation(self.layers[-1].activation)
        if isinstance(metrics, str):
            metrics = [metrics]
        resolved = [(name, metrics_module.get(name, units)) for name in (metrics or [])]
        if self.built:
            opt.build(self._params.size, self.dtype)
        self.optimizer, self.loss, self._metrics = opt, loss_obj, resolved

    @property
    def metrics_names(self) -> list[str]:
        return ["loss", *(name for name, _ in self._metrics)]

    def _require_compiled(self, what: str) -> None:
        if self.loss is None:
            raise ValueError(
                f"{what}() needs a compiled model: call model.compile(optimizer=..., loss=...) first"
            )

    # --- input checks -------------------------------------------------------------------

    def _as_array(self, a, what: str) -> np.ndarray:
        arr = np.asarray(a)
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"{what} must be numeric; got an array of dtype {arr.dtype}")
        arr = np.ascontiguousarray(arr, dtype=self.dtype)
        # a finite sum proves every element finite (NaN and inf propagate) without isfinite's
        # full-size bool array: 2.7 instead of 7 ms per fit on 20,000 x 784 float32
        with np.errstate(over="ignore", invalid="ignore"):
            if np.isfinite(np.add.reduce(arr, axis=None)):
                return arr
        finite = np.isfinite(arr)  # overflowed, or really not finite: look element-wise
        if not finite.all():
            where = tuple(int(i) for i in np.argwhere(~finite)[0])
            raise ValueError(
                f"{what} contains NaN or inf (first at index {where}); clean or impute it first"
            )
        return arr

    def _check_x(self, x, what: str = "x") -> np.ndarray:
        self._require_layers()
        x = self._as_array(x, what)
        if x.ndim != 2:
            raise ValueError(
                f"{what} must be 2-D (samples, features); got shape {x.shape}"
                + ("; use x.reshape(-1, 1) for one feature" if x.ndim == 1 else "")
            )
        if x.shape[0] == 0:
            raise ValueError(f"{what} has no samples")
        self._maybe_build()
        if not self.built:
            self.build(x.shape[1])
        if x.shape[1] != self.input_dim:
            raise ValueError(
                f"{what} has {x.shape[1]} features but the model expects input_dim={self.input_dim}"
            )
        return x

    def _check_xy(self, x, y, what_x: str = "x", what_y: str = "y"):
        x = self._check_x(x, what_x)
        y = self._as_array(y, what_y)
        if y.ndim == 0 or y.shape[0] != x.shape[0]:
            raise ValueError(
                f"{what_x} has {x.shape[0]} samples but {what_y} has "
                f"{y.shape[0] if y.ndim else 'none (a scalar)'}; they must match"
            )
        y = self.loss.prepare_targets(y, self.layers[-1].units, self.dtype, what_y)
        return x, np.ascontiguousarray(y)

    # --- the numerical core -------------------------------------------------------------

    def _get_buffers(self, n: int) -> passes.Buffers:
        bufs = self._buffers.get(n)
        if bufs is None:
            bufs = passes.Buffers((), n, [layer.units for layer in self.layers], self.dtype)
            self._buffers[n] = bufs
        return bufs

    def _forward(self, x: np.ndarray, bufs: passes.Buffers) -> np.ndarray:
        """Output of the network for x (n, in), left in bufs.a[-1]."""
        return passes.forward(x, self._views, self._forward_fns, bufs)

    def _forward_backward(self, x: np.ndarray, y: np.ndarray, bufs: passes.Buffers) -> float:
        """Batch-mean loss of (x, y); leaves its gradient in ``_grads`` and outputs in bufs."""
        out = passes.forward(x, self._views, self._forward_fns, bufs)
        loss = self.loss.value_and_delta(y, out, self.layers[-1].activation, bufs.d[-1], bufs.t[-1])
        passes.backward(x.T, self._views, self._grad_views, self._derivs, bufs)
        return loss

    def _loss_and_grads(self, x, y) -> tuple[float, np.ndarray]:
        """Batch-mean loss on (x, y) as one batch and a copy of its flat gradient (for checks)."""
        self._require_compiled("_loss_and_grads")
        x, y = self._check_xy(x, y)
        loss = self._forward_backward(x, y, self._get_buffers(x.shape[0]))
        return loss, self._grads.copy()

    def _gather_buffers(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Shuffled-order copies of (x, y), kept between fit calls of the same data shape
        (fresh buffers cost page faults: ~10 ms per 60 MB on every fit)."""
        cached = self._gathered
        if cached is None or cached[0].shape != x.shape or cached[1].shape != y.shape:
            cached = (np.empty_like(x), np.empty_like(y))
            self._gathered = cached
        return cached

    def _metric_sums(self, y: np.ndarray, out: np.ndarray) -> list[float]:
        return [metrics_module.batch_total(fn, y, out) for _, fn in self._metrics]

    def _evaluate_arrays(self, x: np.ndarray, y: np.ndarray, batch_size: int) -> dict[str, float]:
        """Sample-weighted means of the batch losses and metrics (as Keras's evaluate)."""
        n = x.shape[0]
        loss_sum, sums = 0.0, [0.0] * len(self._metrics)
        for start in range(0, n, batch_size):
            xb, yb = x[start : start + batch_size], y[start : start + batch_size]
            out = self._forward(xb, self._get_buffers(xb.shape[0]))
            loss_sum += self.loss.batch_mean(yb, out) * xb.shape[0]
            for j, s in enumerate(self._metric_sums(yb, out)):
                sums[j] += s
        logs = {"loss": loss_sum / n}
        logs.update({name: s / n for (name, _), s in zip(self._metrics, sums, strict=True)})
        return logs

    # --- public training API ------------------------------------------------------------

    def _fit_arrays(self, x, y, validation_data, validation_split):
        """(x, y, x_val, y_val) checked; validation from ``validation_data`` or the last
        ``validation_split`` fraction of the samples (x_val, y_val None without either)."""
        x, y = self._check_xy(x, y)
        if validation_data is not None:
            if not isinstance(validation_data, tuple | list) or len(validation_data) != 2:
                raise ValueError("validation_data must be a pair (x_val, y_val)")
            xv, yv = self._check_xy(*validation_data, what_x="x_val", what_y="y_val")
            return x, y, xv, yv
        if not validation_split:
            return x, y, None, None
        if not 0.0 < validation_split < 1.0:
            raise ValueError(f"validation_split must be in [0, 1); got {validation_split!r}")
        split_at = math.ceil(x.shape[0] * (1.0 - validation_split))
        if split_at in (0, x.shape[0]):
            raise ValueError(
                f"validation_split={validation_split} leaves no training or no validation "
                f"samples out of {x.shape[0]}"
            )
        return x[:split_at], y[:split_at], x[split_at:], y[split_at:]

    def _train_epoch(self, xs, ys, batch_size: int, cbs) -> dict[str, float]:
        """One pass over (xs, ys) (N, ...) in order, one update per batch; the epoch's logs:
        sample-weighted means of the batch losses and metrics, each before its own update.
        ``cbs`` (or None) hears ``on_train_batch_end`` after every update."""
        n = xs.shape[0]
        loss_sum, sums = 0.0, [0.0] * len(self._metrics)
        probe = self._grad_probe
        for start in range(0, n, batch_size):
            xb, yb = xs[start : start + batch_size], ys[start : start + batch_size]
            bufs = self._get_buffers(xb.shape[0])
            batch_loss = self._forward_backward(xb, yb, bufs)
            if probe is not None:
                probe(xb, bufs.a, bufs.d, self._grads)
            loss_sum += batch_loss * xb.shape[0]
            if self._metrics:
                for j, s in enumerate(self._metric_sums(yb, bufs.a[-1])):
                    sums[j] += s
            self.optimizer.update(self._params, self._grads)
            if cbs is not None:
                cbs.on_train_batch_end(self.optimizer.iterations, {"loss": batch_loss})
        logs = {"loss": loss_sum / n}
        logs.update({k: s / n for (k, _), s in zip(self._metrics, sums, strict=True)})
        return logs

    def fit(
        self,
        x,
        y,
        batch_size: int | None = 32,
        epochs: int = 1,
        verbose: int = 0,
        callbacks: Sequence[callbacks_module.Callback] | None = None,
        validation_split: float = 0.0,
        validation_data: tuple | None = None,
        shuffle: bool = True,
        initial_epoch: int = 0,
    ) -> callbacks_module.History:
        """Train for epochs ``initial_epoch .. epochs-1``; return a History.

        x : (N, input_dim). y : (N, units), or (N,) for a 1-unit output or class ids with
        sparse_categorical_crossentropy. Batches: ceil(N / batch_size), the last one partial.
        ``shuffle=True`` draws a fresh permutation per epoch. ``validation_split`` holds out
        the last fraction of the samples (before shuffling); ``validation_data=(xv, yv)``
        takes precedence. History "loss" is the sample-weighted mean of the batch losses, each
        measured before its own update; ``val_*`` are measured after the epoch's last update.
        """
        self._require_compiled("fit")
        batch_size = 32 if batch_size is None else _check_int("batch_size", batch_size, 1)
        epochs = _check_int("epochs", epochs, 0)
        initial_epoch = _check_int("initial_epoch", initial_epoch, 0)
        x, y, xv, yv = self._fit_arrays(x, y, validation_data, validation_split)
        self.optimizer.build(self._params.size, self.dtype)

        n = x.shape[0]
        keys = self.metrics_names + (
            [f"val_{k}" for k in self.metrics_names] if xv is not None else []
        )
        history = callbacks_module.History()
        history.history = {k: [] for k in keys}
        params = {"epochs": epochs, "steps": math.ceil(n / batch_size), "verbose": verbose}
        user_callbacks = list(callbacks or [])
        # History last, as Keras: it records what the others add to the logs (learning_rate)
        cbs = callbacks_module.CallbackList([*user_callbacks, history], self, params)
        per_batch = bool(cbs.batch_callbacks)
        xs, ys = self._gather_buffers(x, y) if shuffle else (x, y)
        self.stop_training = False
        self.history = history
        logs: dict[str, float] = {}
        self._fit_callbacks = user_callbacks
        cbs.on_train_begin()
        pending, self._pending_callback_state = self._pending_callback_state, {}
        callbacks_module.restore_callback_state(user_callbacks, pending)  # after their resets
        # a diverging run may overflow: its non-finite loss is reported (History,
        # DivergenceGuard), not raised as NumPy warnings
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for epoch in range(initial_epoch, epochs):
                cbs.on_epoch_begin(epoch)
                started = time.perf_counter()
                if shuffle:
                    order = self._rng.permutation(n)
                    # mode="clip" (never triggered by a permutation) avoids the
                    # temporary NumPy makes for out= under the default mode="raise"
                    np.take(x, order, axis=0, out=xs, mode="clip")
                    np.take(y, order, axis=0, out=ys, mode="clip")
                logs = self._train_epoch(xs, ys, batch_size, cbs if per_batch else None)
                if xv is not None:
                    val = self._evaluate_arrays(xv, yv, batch_size)
                    logs.update({f"val_{k}": v for k, v in val.items()})
                seconds = time.perf_counter() - started
                if verbose:
                    print(epoch_line(epoch, epochs, seconds, logs), flush=True)
                cbs.on_epoch_end(epoch, logs)
                if self.stop_training:
                    break
        cbs.on_train_end(logs)
        return history

    def evaluate(self, x, y, batch_size: int | None = None, verbose: int = 0) -> dict[str, float]:
        """``{"loss": ..., <metric>: ...}`` over (x, y), computed in batches (default 32)."""
        self._require_compiled("evaluate")
        batch_size = 32 if batch_size is None else _check_int("batch_size", batch_size, 1)
        x, y = self._check_xy(x, y)
        logs = self._evaluate_arrays(x, y, batch_size)
        if verbose:
            print(" - ".join(f"{k}: {v:.4f}" for k, v in logs.items()), flush=True)
        return logs

    def predict(self, x, batch_size: int | None = None, verbose: int = 0) -> np.ndarray:
        """Network outputs (N, units) for x (N, input_dim), computed in batches (default 32)."""
        batch_size = 32 if batch_size is None else _check_int("batch_size", batch_size, 1)
        x = self._check_x(x)
        result = np.empty((x.shape[0], self.layers[-1].units), self.dtype)
        for start in range(0, x.shape[0], batch_size):
            xb = x[start : start + batch_size]
            result[start : start + xb.shape[0]] = self._forward(xb, self._get_buffers(xb.shape[0]))
        return result

    # --- persistence and display --------------------------------------------------------

    def get_config(self) -> dict:
        """Architecture and compile settings as JSON-able values."""
        config = {
            "class": "Sequential",
            "name": self.name,
            "seed": self.seed,
            "dtype": self.dtype.name,
            "input_dim": self.input_dim,
            "layers": [layer.get_config() for layer in self.layers],
            "compile": None,
        }
        if self.loss is not None:
            config["compile"] = {
                "optimizer": self.optimizer.get_config(),
                "loss": self.loss.get_config(),
                "metrics": [name for name, _ in self._metrics],
            }
        return config

    def save(self, path) -> None:
        """Write architecture, weights, optimizer and RNG state to an .npz file (no pickle)."""
        from .io import save_model

        save_model(self, path)

    def summary(self, print_fn: Callable[[str], None] | None = None) -> None:
        """Print a Keras-style table of layers, output shapes and parameter counts."""
        from .printing import summary_text

        self._maybe_build()
        (print_fn or print)(summary_text(self))
