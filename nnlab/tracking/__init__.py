"""MLflow tracking for nnlab runs and sweeps.

- :mod:`nnlab.tracking.schema` - outcomes, statuses, tag keys, artifact names, the config hash
- :mod:`nnlab.tracking.store` - tracking URIs, fail-fast probes, opening the store
- :mod:`nnlab.tracking.trial` - :func:`run_trial`, :func:`run_spec`: one trial, written to its
  job directory (no MLflow)
- :mod:`nnlab.tracking.writer` - :class:`RunWriter`: job directories -> MLflow runs, the one path
  for every launcher; :func:`file_job_dir` files one now
- :mod:`nnlab.tracking.single` - a single run: the trial here, its writer in a thread
- :mod:`nnlab.tracking.sweep` - :class:`SweepTracking`: a sweep's store, parent run and writer
- :mod:`nnlab.tracking.parent` - the sweep's parent run; ending runs nobody owns
- :mod:`nnlab.tracking.upload` - MLflow calls the writer and ``nnlab.recover`` share
- :mod:`nnlab.tracking.pyfunc` - a trial's model as an MLflow Model (``artifacts/model/``, no pickle)
- :mod:`nnlab.tracking.datasets` - a trial's data splits as MLflow dataset inputs
- :mod:`nnlab.tracking.registry` - a sweep's best model registered, alias ``best``

Importing this package is cheap: the names below load their module on first use, and MLflow
itself is imported only when a store is opened (``tracking=none`` never imports it).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SweepTracking": "sweep",
    "run_trial": "trial",
    "RunWriter": "writer",
    "file_job_dir": "writer",
    "client": "store",
    "prepare_store": "store",
    "resolve_uri": "store",
    "config_hash": "schema",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'nnlab.tracking' has no attribute {name!r}")
    return getattr(importlib.import_module(f"nnlab.tracking.{_EXPORTS[name]}"), name)
