"""The runs table's saved view of a sweep: its trials, best first, with their numbers.

MLflow 3.18's UI keeps the saved views of an experiment's runs table (its "Views" menu) in
experiment tags ``mlflow.sharedViewState.<key>``, and opens one from the URL
``#/experiments/<id>/runs?viewStateShareKey=<key>`` (:func:`nnlab.tracking.store.runs_url`).
The tag's value is a JSON envelope ``{"name", "createdAt", "updatedAt", "state"}`` (times in
ms); ``state`` is the JSON of the table's search facets (``searchFilter``, ``orderByKey``,
``orderByAsc``) and of its layout (``selectedColumns``, ``columnOrder``).

Each sweep gets one view, keyed by its parent run: its trials only (shown flat, so no parent to
expand), sorted by the objective with the best first, the objective's column first, then the
other metrics, the outcome and the model. The UI refuses to save views by hand past 40 per
experiment, so nnlab keeps only its :data:`KEEP` newest sweep views (older links then open the
plain runs table with a "share key does not exist" notice).
"""

from __future__ import annotations

import json
import time

from nnlab.tracking.schema import Tag
from nnlab.tracking.store import client

TAG_PREFIX = "mlflow.sharedViewState."  # MLflow's own prefix for saved views
KEY_PREFIX = "nnlab-"  # nnlab's views among the user's own
KEEP = 20  # nnlab's sweep views kept per experiment (the UI allows 40 views in all)
METRICS = ("val_loss", "loss", "val_accuracy")  # the columns shown, the objective's first
MAXIMIZED = ("accuracy", "val_accuracy")  # objectives whose best is the largest


def view_key(parent_run_id: str) -> str:
    """The view's key (the URL's ``viewStateShareKey``) for the sweep with this parent run."""
    return f"{KEY_PREFIX}{parent_run_id}"


def column(kind: str, name: str) -> str:
    """The runs table's column id (``metrics.`val_loss```), as the UI writes it."""
    return f"{kind}.`{name}`"


def view_state(parent_run_id: str, objective: str = "val_loss") -> dict:
    """The table state of a sweep's view: its trials, sorted by ``objective`` (best first)."""
    metrics = [objective, *(m for m in METRICS if m != objective)]
    columns = [
        *(column("metrics", m) for m in metrics),
        column("tags", Tag.OUTCOME),
        column("attributes", "Models"),
    ]
    return {
        "searchFilter": f"tags.`{Tag.PARENT}` = '{parent_run_id}'",
        "orderByKey": column("metrics", objective),
        "orderByAsc": objective not in MAXIMIZED,
        "selectedColumns": columns,
        "columnOrder": [column("attributes", "Run Name"), *columns],
    }


def save_sweep_view(
    uri: str, experiment_id: str, parent_run_id: str, name: str, objective: str = "val_loss"
) -> str:
    """Save (or replace) the sweep's view in its experiment; return its key.

    ``name`` is what the "Views" menu lists. nnlab's older sweep views beyond :data:`KEEP` are
    deleted, newest kept.
    """
    c, key = client(uri), view_key(parent_run_id)
    now = int(time.time() * 1000)
    envelope = {
        "name": name[:200],
        "createdAt": now,
        "updatedAt": now,
        "state": json.dumps(view_state(parent_run_id, objective)),
    }
    c.set_experiment_tag(experiment_id, TAG_PREFIX + key, json.dumps(envelope))
    _prune(c, experiment_id)
    return key


def _prune(c, experiment_id: str) -> None:
    """Delete nnlab's sweep views of the experiment beyond the :data:`KEEP` newest."""
    ours = []
    for tag, value in c.get_experiment(experiment_id).tags.items():
        if tag.startswith(TAG_PREFIX + KEY_PREFIX):
            try:
                created = float(json.loads(value).get("createdAt", 0))
            except (ValueError, AttributeError):
                created = 0.0
            ours.append((created, tag))
    for _, tag in sorted(ours, reverse=True)[KEEP:]:
        c.delete_experiment_tag(experiment_id, tag)
