"""The names that tracking, recovery and the report must agree on: one copy of each.

Nothing here imports MLflow, so ``tracking=none`` and the analysis side can use it freely.

Run outcomes
------------
Every trial ends with one outcome (tag ``nnlab.outcome``) that maps to an MLflow run status:
``completed``, ``early_stopped``, ``diverged`` and ``pruned`` (a search's pruner stopped it) are
FINISHED, ``failed`` is FAILED, ``killed`` (Ctrl-C, SIGTERM, a dead launcher) is KILLED. ``skipped``
never reaches the store: it is the sweep's word for a trial whose config already has a FINISHED
run (a pruned run is not one: it did not train its whole budget).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

STATUS = {  # outcome -> MLflow run status
    "completed": "FINISHED",
    "early_stopped": "FINISHED",
    "diverged": "FINISHED",
    "pruned": "FINISHED",
    "failed": "FAILED",
    "killed": "KILLED",
}
RUN_OUTCOMES = tuple(STATUS)
OUTCOMES = (*RUN_OUTCOMES, "skipped")  # what a sweep summary counts
OK_OUTCOMES = ("completed", "early_stopped")  # trained to a usable result
STATUS_OUTCOME = {"FINISHED": "completed", "FAILED": "failed", "KILLED": "killed"}  # untagged runs


def run_display_name(name: str, outcome: str | None) -> str:
    """The run name the MLflow runs table shows: ``name`` plus `` [outcome]`` unless the trial
    trained to a usable result (``lr=1 [diverged]``, ``lr=0.1 [pruned]``, ``lr=0.1``).

    A diverged or pruned run is FINISHED (a green "Finished" in the table): the name is what
    tells it apart at a glance. A mark ``name`` already carries is replaced, so a killed run that
    a later launch completes loses its `` [killed]``. The writer (the code path that ends runs)
    names each run with this when it ends.
    """
    base = name
    for o in RUN_OUTCOMES:
        if base.endswith(f" [{o}]"):
            base = base[: -len(o) - 3]
    return base if outcome is None or outcome in OK_OUTCOMES else f"{base} [{outcome}]"


# Config keys that do not change what is trained: left out of the config hash, so a re-run that
# only changes them skips (or resumes) the same trial.
HASH_EXCLUDE = (
    "tracking",
    "report",
    "trainer.verbose",
    "trainer.noise_scale",  # measures the gradients, changes no weight
    "trainer.checkpoint",
    "debug.epoch_delay",
)
# For the report, the experiment's name does not vary a result either (it is in the hash because a
# run belongs to its experiment).
NO_EFFECT = (*HASH_EXCLUDE, "experiment_name")


class Tag:
    """Run tag keys (``nnlab.*`` are nnlab's own; the others are MLflow's)."""

    ROLE = "nnlab.role"  # "trial" or "sweep"
    OUTCOME = "nnlab.outcome"
    CONFIG_HASH = "nnlab.config_hash"
    SWEEP_ID = "nnlab.sweep_id"
    SWEEP_HASH = "nnlab.sweep_hash"
    JOB = "nnlab.job"
    VERSION = "nnlab.version"
    LAUNCHER = "nnlab.launcher"  # host:pid:start of the process that owns a running run
    RESUMES = "nnlab.resumes"
    RESUMED_FROM_EPOCH = "nnlab.resumed_from_epoch"
    STOPPED_EPOCH = "nnlab.stopped_epoch"
    BEST_RUN_ID = "nnlab.best_run_id"
    RECOVERED = "nnlab.recovered"
    RECHECKED = "nnlab.rechecked"  # a finished sweep's parent, run again: when it was checked
    ORIGINAL_PARENT = "nnlab.original_parent"
    GIT_COMMIT = "mlflow.source.git.commit"  # MLflow's own: the UI's commit column
    GIT_DIRTY = "nnlab.git_dirty"  # "true" when tracked files differ from the commit
    OPTUNA_TRIAL = "optuna.trial"  # a search's trial: its number in the Optuna study
    OPTUNA_STATE = "optuna.state"  # COMPLETE, PRUNED, FAIL (RUNNING while it trains)
    PARENT = "mlflow.parentRunId"
    SOURCE_NAME = "mlflow.source.name"
    SOURCE_TYPE = "mlflow.source.type"
    USER = "mlflow.user"

    @staticmethod
    def count(outcome: str) -> str:
        """The sweep parent's tag counting trials with ``outcome`` (``nnlab.n_completed``...)."""
        return f"nnlab.n_{outcome}"


class Artifact:
    """File names in a run's artifacts (and in the job directory's ``artifacts/``)."""

    HISTORY = "history.csv"
    BATCH_LOSS = "batch_loss.csv"
    MODEL = "model.npz"
    MLFLOW_MODEL = "model"  # the MLflow Model directory (nnlab.tracking.pyfunc)
    CONFIG = "config.yaml"
    OVERRIDES = "overrides.yaml"
    TRACEBACK = "traceback.txt"
    SUMMARY = "summary.txt"  # the sweep parent's summary
    REPORT = "report"  # the sweep parent's copy of its report (index.html, figures, tables)


RUN_FILE = "run.json"  # in each job dir: what `python -m nnlab.recover` needs
RUN_FORMAT = "nnlab.run/1"
SWEEP_FILE = ".nnlab/sweep.json"  # in each sweep dir: what every trial of the sweep needs

# MLflow's limits
MAX_PARAM_LEN = 6000  # characters of a param value
MAX_PARAMS_PER_BATCH = 100  # params per log_batch
MAX_ENTITIES_PER_BATCH = 1000  # metrics (+ params + tags) per log_batch

T = TypeVar("T")


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """``items`` in consecutive slices of at most ``size`` (MLflow's per-call limits)."""
    for i in range(0, len(items), size):
        yield items[i : i + size]


def param_value(value: Any) -> str:
    """A param value as MLflow stores it: a string of at most ``MAX_PARAM_LEN`` characters."""
    return str(value)[:MAX_PARAM_LEN]


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}, "c": [1, 2]}`` -> ``{"a.b": 1, "c": [1, 2]}`` (lists stay leaves)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def excluded(key: str, prefixes: Sequence[str] = HASH_EXCLUDE) -> bool:
    """True when dotted ``key`` is one of ``prefixes`` or lies below one."""
    return any(key == x or key.startswith(f"{x}.") for x in prefixes)


def config_hash(plain: dict) -> str:
    """Hash of the resolved config minus the ``HASH_EXCLUDE`` keys (16 hex digits): a trial's
    identity across re-runs (tag ``nnlab.config_hash``, checkpoint file name).

    A config that reads a file (``data=csv``) also hashes the file's content
    (:func:`nnlab.data.source_digest`): an edited CSV is another trial. Other configs hash as
    they always did, so their FINISHED runs in existing stores still count."""
    import hashlib
    import json

    from nnlab.data import source_digest

    flat = {k: v for k, v in flatten(plain).items() if not excluded(k)}
    digest = source_digest(plain.get("data") or {})
    if digest is not None:
        flat["data.digest"] = digest
    blob = json.dumps(flat, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
