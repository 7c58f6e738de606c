"""Where a run's code came from, as MLflow's own source tags (the MLflow UI shows them).

nnlab creates its runs with ``MlflowClient.create_run``, which, unlike ``mlflow.start_run``,
sets no context tags; :func:`source_tags` computes the ones MLflow's default and git run
contexts would set for ``python -m nnlab.run``, plus ``nnlab.git_dirty``.

The commit is the one of the git checkout holding nnlab's code, as in MLflow (its git context
uses ``sys.argv[0]``, the path of ``nnlab/run.py`` under ``python -m``). An installed nnlab (a
wheel in site-packages, even in a virtualenv inside some repository) has no checkout: its runs
carry no commit tag, and ``nnlab.version`` (set by the tracking code) names the code instead.
Imports nothing beyond the standard library, so it is cheap to call from any process.
"""

from __future__ import annotations

import functools
import getpass
import os
import subprocess
from pathlib import Path

from nnlab.tracking.schema import Tag

GIT_COMMIT = Tag.GIT_COMMIT  # the UI's commit column
SOURCE_NAME = Tag.SOURCE_NAME
SOURCE_TYPE = Tag.SOURCE_TYPE
USER = Tag.USER
GIT_DIRTY = Tag.GIT_DIRTY  # "true" when tracked files differ from the commit


def source_tags(entry: str = "nnlab.run") -> dict[str, str]:
    """MLflow's source tags for a run started by ``python -m <entry>``.

    Parameters
    ----------
    entry : str
        The module the user ran; the UI's source column shows it.

    Returns
    -------
    dict[str, str]
        ``mlflow.source.name``, ``mlflow.source.type`` (``"LOCAL"``) and ``mlflow.user``
        always; ``mlflow.source.git.commit`` and ``nnlab.git_dirty`` only when nnlab's code is
        a file tracked in a git checkout. A fresh dict: the caller may add to it.
    """
    return {SOURCE_NAME: entry, SOURCE_TYPE: "LOCAL", USER: user(), **git_tags()}


def user() -> str:
    """The user MLflow would record: ``MLFLOW_TRACKING_USERNAME`` (the identity a tracking
    server with authentication sees), else the login name, else ``"unknown"``."""
    name = os.environ.get("MLFLOW_TRACKING_USERNAME")
    if name:
        return name
    try:
        return getpass.getuser()
    except Exception:  # no login name (a container's uid without a passwd entry): KeyError/OSError
        return "unknown"


def git_tags(code_dir: str | None = None) -> dict[str, str]:
    """Commit and dirty flag of the git checkout holding ``code_dir`` (default: the nnlab
    package); ``{}`` when it is not a tracked part of one (installed, git missing, no commit).

    ``git rev-parse`` alone would also answer inside a virtualenv that lives in some checkout
    (its site-packages are untracked or ignored there): ``ls-files --error-unmatch`` makes sure
    the directory holds files that commit tracks, as MLflow's ``repo.ignored`` check does.
    """
    return dict(_git_tags(code_dir or str(Path(__file__).resolve().parent)))


@functools.lru_cache(maxsize=8)
def _git_tags(where: str) -> tuple[tuple[str, str], ...]:
    """Cached per process (three git calls, ~10 ms): the answer does not change during a run."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", where, *args], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        git("ls-files", "--error-unmatch", "--", ".")
        commit = git("rev-parse", "--verify", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return ()
    return ((GIT_COMMIT, commit), (GIT_DIRTY, str(bool(dirty)).lower()))
