"""nnlab.nn: a small NumPy neural-network library with Keras 3's semantics and numbers.

One concept per module: ``activations``, ``losses``, ``optimizers``, ``initializers``,
``layers`` (Dense), ``model`` (Sequential), ``callbacks``, ``metrics``, ``io`` (save/load),
``schedules`` (learning-rate schedules: any optimizer takes one as ``learning_rate``),
``passes`` (forward and backward passes on preallocated buffers), ``stacked`` (``Stack``: many
models of one architecture trained in lockstep), ``noise_scale`` (the gradient noise scale,
measured during ``fit`` by a callback).
Imports numpy only.

Examples
--------
>>> from nnlab import nn
>>> model = nn.Sequential([nn.Dense(16, activation="relu", input_dim=2),
...                        nn.Dense(1, activation="sigmoid")], seed=0)
>>> model.compile(optimizer=nn.Adam(learning_rate=1e-3), loss="binary_crossentropy",
...               metrics=["accuracy"])
"""

from . import (
    activations,
    callbacks,
    initializers,
    losses,
    metrics,
    noise_scale,
    optimizers,
    passes,
    schedules,
    stacked,
)
from .callbacks import (
    Callback,
    DivergenceGuard,
    EarlyStopping,
    History,
    LearningRateScheduler,
    ReduceLROnPlateau,
)
from .io import load_model, save_model
from .layers import Dense
from .losses import (
    BinaryCrossentropy,
    CategoricalCrossentropy,
    Loss,
    MeanSquaredError,
    SparseCategoricalCrossentropy,
)
from .model import DTYPES, Sequential
from .noise_scale import GradientNoiseScale
from .optimizers import OPTIMIZERS, SGD, Adam, Optimizer, RMSprop
from .stacked import Stack, compatibility_key, stack_size, stacking_pays

__all__ = [
    "DTYPES",
    "OPTIMIZERS",
    "SGD",
    "Adam",
    "BinaryCrossentropy",
    "Callback",
    "CategoricalCrossentropy",
    "Dense",
    "DivergenceGuard",
    "EarlyStopping",
    "GradientNoiseScale",
    "History",
    "LearningRateScheduler",
    "Loss",
    "MeanSquaredError",
    "Optimizer",
    "RMSprop",
    "ReduceLROnPlateau",
    "Sequential",
    "SparseCategoricalCrossentropy",
    "Stack",
    "activations",
    "callbacks",
    "compatibility_key",
    "initializers",
    "load_model",
    "losses",
    "metrics",
    "noise_scale",
    "optimizers",
    "passes",
    "save_model",
    "schedules",
    "stack_size",
    "stacked",
    "stacking_pays",
]
