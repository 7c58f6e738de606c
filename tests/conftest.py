"""Fixtures every test module may use; the plain functions they share are in ``helpers.py``.

Creating an MLflow sqlite store runs its schema migrations (1.5-6 s on this machine), so the
session makes one empty store and each launch directory starts from a copy of it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("NNLAB_CHROMIUM", "/usr/bin/chromium")  # the browser tests' Chromium
WAIT_MS = 120_000  # a page of the MLflow UI on a busy 2-core machine


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


# --- the browser tests (tests/test_mlflow_ui.py, tests/test_docs_site.py) -----------------------


@pytest.fixture(scope="module")
def browser() -> Iterator:
    """Headless Debian Chromium driven by Playwright (the ui-test extra, no browser download)."""
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason='needs pip install -e ".[ui-test]" (Playwright)'
    )
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium (or set NNLAB_CHROMIUM)")
    with sync_api.sync_playwright() as p:
        args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=args)
        yield chromium
        chromium.close()


@pytest.fixture()
def page(browser) -> Iterator:
    """A fresh browser profile (no remembered UI preferences), 1400x860."""
    context = browser.new_context(viewport={"width": 1400, "height": 860})
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    yield page
    context.close()
