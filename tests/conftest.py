"""Fixtures every test module may use; the plain functions they share are in ``helpers.py``.

Creating an MLflow sqlite store runs its schema migrations (1.5-6 s on this machine), so the
session makes one empty store and each launch directory starts from a copy of it.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory) -> Path:
    """An initialised, empty MLflow sqlite store (a template: copy it, never write to it)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    SqlAlchemyStore(f"sqlite:///{path}", str(path.parent / "mlruns"))
    return path


@pytest.fixture(scope="session")
def make_launch_dir(tmp_path_factory, empty_store: Path) -> Callable[[str], Path]:
    """``make(name)``: a new launch directory whose ``mlflow.db`` is a copy of the empty store.

    Session-scoped so module-scoped fixtures (one sweep shared by a module's tests) can use it.
    """

    def make(name: str = "launch") -> Path:
        directory = tmp_path_factory.mktemp(name)
        shutil.copy(empty_store, directory / "mlflow.db")
        return directory

    return make


@pytest.fixture()
def launch_dir(make_launch_dir) -> Path:
    """A fresh launch directory with an empty store (``python -m nnlab.run`` starts here)."""
    return make_launch_dir("launch")


@pytest.fixture(scope="session")
def tracking_store(make_launch_dir) -> tuple[Path, str, str]:
    """One store for the in-process tracking tests: (launch dir, uri, experiment ``unit``'s id).

    nnlab opens it as a launch would (``open_experiment``: WAL, the experiment); each test makes
    its own runs, and its own experiment where it needs a clean one.
    """
    from nnlab.tracking import store

    base = make_launch_dir("tracking")
    uri = store.resolve_uri("sqlite:///mlflow.db", base)
    return base, uri, store.open_experiment(uri, "unit", "mlruns", base)
