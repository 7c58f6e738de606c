"""Dense: ``out = activation(x @ kernel + bias)``, kernel of shape (in, units).

A layer describes its weights; the model owns the storage. When a ``Sequential`` model builds,
it allocates one flat parameter vector and gives each layer views into it (``kernel``,
``bias``), so optimizers update every weight in one pass.
"""

from __future__ import annotations

import numpy as np

from . import activations, initializers


def _check_units(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")
    return int(value)


class Dense:
    """A fully connected layer.

    Parameters
    ----------
    units : int
        Output width.
    activation : str or None
        One of ``activations.ACTIVATIONS`` (``None`` = ``"linear"``).
    input_dim : int, optional
        Input width; only needed on the first layer (else inferred when the model first sees
        data). ``input_shape=(d,)`` is accepted too, as in Keras.
    kernel_initializer : str
        A name from ``initializers.INITIALIZERS`` (default ``glorot_uniform``).
    bias_initializer : str
        A name from ``initializers.INITIALIZERS`` (default ``zeros``).
    name : str, optional
        Defaults to ``dense``, ``dense_1``, ... within its model.
    """

    def __init__(
        self,
        units: int,
        activation: str | None = None,
        input_dim: int | None = None,
        *,
        input_shape: tuple[int] | None = None,
        kernel_initializer: str = "glorot_uniform",
        bias_initializer: str = "zeros",
        name: str | None = None,
    ) -> None:
        self.units = _check_units(units, "units")
        self.activation = activations.resolve(activation)
        if input_shape is not None:
            if input_dim is not None or len(tuple(input_shape)) != 1:
                raise ValueError(
                    f"give either input_dim=d or input_shape=(d,); got input_dim={input_dim!r}, "
                    f"input_shape={input_shape!r}"
                )
            input_dim = tuple(input_shape)[0]
        self.input_dim = None if input_dim is None else _check_units(input_dim, "input_dim")
        self.kernel_initializer = initializers.resolve(kernel_initializer)
        self.bias_initializer = initializers.resolve(bias_initializer)
        self.name = name
        self.kernel: np.ndarray | None = None  # (in, units) view into the model's parameters
        self.bias: np.ndarray | None = None  # (units,) view

    def __repr__(self) -> str:
        return f"Dense({self.units}, activation={self.activation!r})"

    def param_shapes(self, input_dim: int) -> list[tuple[int, ...]]:
        return [(input_dim, self.units), (self.units,)]

    def initial_weights(self, input_dim: int, rng: np.random.Generator, dtype) -> list[np.ndarray]:
        """Fresh [kernel, bias] drawn from ``rng`` (kernel first, as Keras builds them)."""
        kernel_shape, bias_shape = self.param_shapes(input_dim)
        kernel = initializers.INITIALIZERS[self.kernel_initializer](kernel_shape, rng, dtype)
        bias = initializers.INITIALIZERS[self.bias_initializer](bias_shape, rng, dtype)
        return [kernel, bias]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Forward pass on its own (needs the layer to be built): (n, in) -> (n, units)."""
        if self.kernel is None:
            raise ValueError(f"layer {self.name or 'dense'} is not built; add it to a model")
        z = np.asarray(x, dtype=self.kernel.dtype) @ self.kernel + self.bias
        return activations.ACTIVATIONS[self.activation](z, None)

    def get_config(self) -> dict:
        return {
            "class": "Dense",
            "units": self.units,
            "activation": self.activation,
            "input_dim": self.input_dim,
            "kernel_initializer": self.kernel_initializer,
            "bias_initializer": self.bias_initializer,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config: dict) -> Dense:
        config = dict(config)
        if config.pop("class", "Dense") != "Dense":
            raise ValueError(f"unknown layer class in config: {config!r}")
        return cls(**config)
