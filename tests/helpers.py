"""Read a launch directory's real MLflow store in tests (shared by the CLI test modules)."""

from __future__ import annotations

from pathlib import Path


def client(cwd: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(f"sqlite:///{cwd / 'mlflow.db'}")


def runs(cwd: Path, experiment: str, role: str | None = None) -> list:
    """Every run of ``experiment`` in ``cwd``'s store, optionally only one ``nnlab.role``."""
    c = client(cwd)
    exp = c.get_experiment_by_name(experiment)
    query = f"tags.`nnlab.role` = '{role}'" if role else ""
    return list(c.search_runs([exp.experiment_id], query, max_results=1000))
