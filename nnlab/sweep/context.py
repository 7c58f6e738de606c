"""What the launching process tells every trial of a sweep: :class:`SweepContext`.

It is written once to ``<sweep dir>/.nnlab/sweep.json`` (jobs that Hydra's own launchers or
SLURM start read it there; ``nnlab.recover`` reads it to close the parent run) and handed to
nnlab's own workers directly. No MLflow here.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nnlab.checkpoint import atomic_write_text


@dataclass
class SweepContext:
    """A sweep's fixed facts, shared by its launcher, its trials and ``nnlab.recover``."""

    sweep_id: str
    backend: str  # "mlflow" or "none"
    uri: str | None
    experiment_id: str | None
    parent_run_id: str | None
    n_trials: int | None
    varying: list[str]
    parallel: bool  # trials share the cores: one BLAS thread each
    results_dir: str  # <sweep dir>/.nnlab/<sweep id>: trials' records, announcements
    git: dict[str, str] = field(default_factory=dict)
    sweep_hash: str = ""
    sweep_dir: str = ""
    launch_dir: str = ""  # relative paths of every trial (checkpoints) start here
    remote: bool = False  # trials run as jobs elsewhere (SLURM, submitit): they print to logs
    search: dict = field(default_factory=dict)  # a search's study (nnlab.search), or {}
    task: str = ""  # the sweep's command-line overrides (the parent run's name)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(asdict(self), indent=1), sync=False)

    @classmethod
    def load(cls, path: Path) -> SweepContext:
        """Read once per process and file version (a worker runs many trials of a sweep)."""
        stat = path.stat()
        return _load_context(cls, str(path), stat.st_mtime_ns, stat.st_size)

    @classmethod
    def from_dict(cls, data: dict) -> SweepContext:
        """From a ``sweep.json`` of any nnlab version: unknown keys dropped, missing ones empty."""
        empty = dict(sweep_id="", backend="mlflow", uri=None, experiment_id=None,
                     parent_run_id=None, n_trials=None, varying=[], parallel=False,
                     results_dir="")  # fmt: skip
        known = set(cls.__dataclass_fields__)
        return cls(**(empty | {k: v for k, v in data.items() if k in known}))


@functools.lru_cache(maxsize=4)
def _load_context(cls: type, path: str, _mtime_ns: int, _size: int) -> SweepContext:
    return cls.from_dict(json.loads(Path(path).read_text()))
