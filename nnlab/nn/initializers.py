"""Weight initialisers: name -> function ``(shape, rng, dtype) -> array``.

Formulas follow Keras 3 (``fan_in, fan_out = shape`` for a Dense kernel). The random stream is
the model's own ``np.random.Generator``, so a model seed fixes every initial weight.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# stddev of a unit normal truncated to [-2, 2] (Keras's correction for truncated_normal)
_TRUNCATED_STD = 0.87962566103423978


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    return (shape[0], shape[1]) if len(shape) == 2 else (shape[0], shape[0])


def _uniform(limit: float, shape, rng: np.random.Generator, dtype) -> np.ndarray:
    return rng.uniform(-limit, limit, size=shape).astype(dtype)


def _truncated_normal(std: float, shape, rng: np.random.Generator, dtype) -> np.ndarray:
    """Normal(0, std) with draws outside two standard deviations redrawn."""
    out = rng.standard_normal(size=shape)
    bad = np.abs(out) > 2.0
    while bad.any():
        out[bad] = rng.standard_normal(size=int(bad.sum()))
        bad = np.abs(out) > 2.0
    return (out * std).astype(dtype)


def glorot_uniform(shape, rng, dtype) -> np.ndarray:
    """U(-l, l) with l = sqrt(6 / (fan_in + fan_out)) (Keras's default kernel initialiser)."""
    fan_in, fan_out = _fans(shape)
    return _uniform(np.sqrt(6.0 / (fan_in + fan_out)), shape, rng, dtype)


def glorot_normal(shape, rng, dtype) -> np.ndarray:
    """Truncated normal with std sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = _fans(shape)
    return _truncated_normal(np.sqrt(2.0 / (fan_in + fan_out)) / _TRUNCATED_STD, shape, rng, dtype)


def he_uniform(shape, rng, dtype) -> np.ndarray:
    """U(-l, l) with l = sqrt(6 / fan_in) (good with relu)."""
    return _uniform(np.sqrt(6.0 / _fans(shape)[0]), shape, rng, dtype)


def he_normal(shape, rng, dtype) -> np.ndarray:
    """Truncated normal with std sqrt(2 / fan_in)."""
    return _truncated_normal(np.sqrt(2.0 / _fans(shape)[0]) / _TRUNCATED_STD, shape, rng, dtype)


def lecun_uniform(shape, rng, dtype) -> np.ndarray:
    """U(-l, l) with l = sqrt(3 / fan_in)."""
    return _uniform(np.sqrt(3.0 / _fans(shape)[0]), shape, rng, dtype)


def zeros(shape, rng, dtype) -> np.ndarray:
    """All zeros (Keras's default bias initialiser). Draws nothing."""
    return np.zeros(shape, dtype=dtype)


def ones(shape, rng, dtype) -> np.ndarray:
    """All ones. Draws nothing."""
    return np.ones(shape, dtype=dtype)


Initializer = Callable[[tuple, np.random.Generator, np.dtype], np.ndarray]

INITIALIZERS: dict[str, Initializer] = {
    "glorot_uniform": glorot_uniform,
    "glorot_normal": glorot_normal,
    "he_uniform": he_uniform,
    "he_normal": he_normal,
    "lecun_uniform": lecun_uniform,
    "zeros": zeros,
    "ones": ones,
}


def resolve(name: str) -> str:
    """Check an initialiser name and return it."""
    if not isinstance(name, str) or name.lower() not in INITIALIZERS:
        raise ValueError(f"unknown initializer {name!r}; valid: {', '.join(INITIALIZERS)}")
    return name.lower()
