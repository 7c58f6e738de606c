"""What a sqlite store already holds for a sweep, read in milliseconds without importing MLflow.

A parallel sweep on an existing store needs, before its first trial starts, only what it skips
(the experiment's FINISHED trials), whether it continues an interrupted parent, and that the
store is one this MLflow can use. ``import mlflow`` and opening the store cost ~3 s of a
launch; this reads the same answers with ``sqlite3`` (read-only) so the sweep's writer
(:mod:`nnlab.tracking.writer`) can open the store while the first trials train.

:func:`read_index` returns None whenever it is not sure - the schema revision is not the one
this MLflow's migrations end at, a table or column is not where it expects - and the caller then
asks MLflow itself. tests/test_tracking_store_index.py checks its answers against MLflow's.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from nnlab.tracking.schema import Tag


@functools.cache
def head_revision() -> str | None:
    """The schema revision the installed MLflow's migrations end at (None if unclear).

    Read from the migration scripts' ``revision`` / ``down_revision`` lines: the one revision
    that no other script names as its predecessor.
    """
    spec = importlib.util.find_spec("mlflow")
    if spec is None or not spec.submodule_search_locations:
        return None
    versions = Path(next(iter(spec.submodule_search_locations))) / "store/db_migrations/versions"
    revisions, parents = set(), set()
    pattern = re.compile(r"""^(down_revision|revision)\s*=\s*(.+)$""", re.M)
    for script in versions.glob("*.py"):
        for name, value in pattern.findall(script.read_text()):
            ids = set(re.findall(r"""["'](\w+)["']""", value))
            (revisions if name == "revision" else parents).update(ids)
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


@dataclass
class StoreIndex:
    """The experiment (None: not created yet) and what a sweep needs to know of it."""

    experiment_id: str | None = None
    artifact_location: str | None = None
    finished: dict[str, dict] = field(default_factory=dict)  # as store.finished_trials
    parent: tuple[str, str, dict[str, str]] | None = None  # latest (run id, status, tags)


def _tags(con: sqlite3.Connection, run_id: str) -> dict[str, str]:
    return dict(con.execute("SELECT key, value FROM tags WHERE run_uuid = ?", (run_id,)))


def read_index(db: Path, experiment: str, sweep_hash: str) -> StoreIndex | None:
    """The store ``db``'s experiment ``experiment``: its FINISHED trials and the latest parent
    with ``nnlab.sweep_hash`` = ``sweep_hash``; None when MLflow must be asked instead."""
    head = head_revision()
    if head is None:
        return None
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error:
        return None
    try:
        return _read(con, head, experiment, sweep_hash)
    except sqlite3.Error:  # not the tables and columns this reads: MLflow decides
        return None
    finally:
        con.close()


def _read(
    con: sqlite3.Connection, head: str, experiment: str, sweep_hash: str
) -> StoreIndex | None:
    if con.execute("SELECT version_num FROM alembic_version").fetchall() != [(head,)]:
        return None
    exp = con.execute(
        "SELECT experiment_id, lifecycle_stage, artifact_location FROM experiments WHERE name = ?",
        (experiment,),
    ).fetchone()
    if exp is None:
        return StoreIndex()
    if exp[1] != "active":
        return None  # deleted: MLflow's path says how to restore it
    index = StoreIndex(str(exp[0]), exp[2])
    index.finished = finished_runs(con, exp[0])
    role = "SELECT run_uuid FROM tags WHERE key = ? AND value = ?"
    parent = con.execute(
        "SELECT run_uuid, status FROM runs WHERE experiment_id = ? AND lifecycle_stage = 'active' "
        f"AND run_uuid IN ({role}) AND run_uuid IN ({role}) "
        "ORDER BY start_time DESC, run_uuid LIMIT 1",
        (exp[0], Tag.ROLE, "sweep", Tag.SWEEP_HASH, sweep_hash),
    ).fetchone()
    if parent is not None:
        index.parent = (parent[0], parent[1], _tags(con, parent[0]))
    return index


_FINISHED = """
SELECT r.run_uuid, r.name, h.value, o.value, p.value, l.value, l.is_nan, v.value, v.is_nan
FROM runs r
JOIN tags t ON t.run_uuid = r.run_uuid AND t.key = ? AND t.value = 'trial'
JOIN tags h ON h.run_uuid = r.run_uuid AND h.key = ?
LEFT JOIN tags o ON o.run_uuid = r.run_uuid AND o.key = ?
LEFT JOIN tags p ON p.run_uuid = r.run_uuid AND p.key = ?
LEFT JOIN latest_metrics l ON l.run_uuid = r.run_uuid AND l.key = 'loss'
LEFT JOIN latest_metrics v ON v.run_uuid = r.run_uuid AND v.key = 'val_loss'
WHERE r.experiment_id = ? AND r.status = 'FINISHED' AND r.lifecycle_stage = 'active'
ORDER BY r.start_time DESC, r.run_uuid
"""


def _value(value: float | None, is_nan: int | None) -> float | None:
    if value is None:
        return None
    return math.nan if is_nan else float(value)


def finished_runs(con: sqlite3.Connection, experiment_id: int) -> dict[str, dict]:
    """config hash -> the newest FINISHED trial of that config (not pruned), in one query."""
    found: dict[str, dict] = {}
    rows = con.execute(
        _FINISHED, (Tag.ROLE, Tag.CONFIG_HASH, Tag.OUTCOME, Tag.PARENT, experiment_id)
    )
    for run_id, name, digest, outcome, parent, loss, loss_nan, val, val_nan in rows:
        if outcome == "pruned" or not digest or digest in found:
            continue
        found[digest] = {
            "run_id": run_id,
            "run_name": name,
            "outcome": outcome or "completed",
            "loss": _value(loss, loss_nan),
            "val_loss": _value(val, val_nan),
            "parent": parent,
        }
    return found
