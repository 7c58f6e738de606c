"""The LR range tests a grid sweep runs after its trials (``+experiment=lr_find_vs_grid``).

A study that asks whether the LR finder agrees with the grid needs both from one command. An
experiment adds this Hydra callback to ``hydra.callbacks``::

    hydra:
      callbacks:
        lr_find:
          _target_: nnlab.lr_find_sweep.GridFinders

When the grid's trials are done, and before the sweep's summary and report (Hydra ends
callbacks in reverse order, and this one is listed after nnlab's own), it runs one LR range test
(``nnlab.lr_find``, ``conf/lr_find.yaml``'s settings) per set-up of the grid: every distinct
trial config once its ``lr`` and ``epochs`` are left out (the finder replaces both), so a grid of
datasets x optimizers x batch sizes x lrs x seeds gets one test per dataset, optimizer, batch
size and seed. Each test is filed as one run (``nnlab.role=lr_find``) in the grid's experiment,
its job directory under ``<sweep dir>/lr_find/<n>``. A test whose config already has a finished
run in the store is skipped, so running the same command again adds nothing.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from nnlab.config import ConfigError, validate_lr_find
from nnlab.run import CONF_DIR, one_line

SKIPPED_KEYS = ("lr", "epochs")  # overrides the finder does not use (its ramp replaces them)


def finder_overrides(jobs: list[list[str]]) -> list[list[str]]:
    """The grid's job override lists without ``lr=`` / ``epochs=``, each distinct one once, in
    job order."""
    seen: dict[tuple[str, ...], None] = {}
    for job in jobs:
        kept = tuple(o for o in job if o.split("=", 1)[0].lstrip("+~") not in SKIPPED_KEYS)
        seen.setdefault(kept, None)
    return [list(k) for k in seen]


def finder_defaults() -> dict:
    """The ``lr_find`` node of ``conf/lr_find.yaml`` (what ``python -m nnlab.lr_find`` uses)."""
    from omegaconf import OmegaConf

    node = OmegaConf.load(Path(CONF_DIR) / "lr_find.yaml")["lr_find"]
    return OmegaConf.to_container(node, resolve=True)


def finder_config(config: Any, overrides: list[str], finder: dict) -> dict:
    """The validated finder config of one set-up: the job config Hydra composes for
    ``overrides`` in this sweep, plus ``finder`` as its ``lr_find`` keys."""
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf, open_dict, read_write

    job = GlobalHydra.instance().config_loader().load_sweep_config(config, list(overrides))
    with read_write(job), open_dict(job):
        del job["hydra"]
        job["lr_find"] = OmegaConf.create(finder)
    return validate_lr_find(job)


def finished_hashes(plain: dict, base: Path) -> set[str]:
    """Config hashes of the experiment's finished LR range tests (empty without MLflow)."""
    if plain["tracking"]["backend"] != "mlflow":
        return set()
    from nnlab.analysis import load_runs
    from nnlab.tracking.store import resolve_uri

    uri = resolve_uri(plain["tracking"]["uri"], base)
    try:
        done = load_runs(plain["experiment_name"], uri, role="lr_find")
    except ValueError:  # no experiment, or no LR range test in it yet
        return set()
    return set(done.loc[done["status"] == "FINISHED", "config_hash"].dropna())


def run_grid_finders(config: Any, out=print) -> list[Path]:
    """Run and file the LR range tests of the sweep ``config`` (module docstring); returns the
    job directories written. A set-up that fails is reported in one line; the rest go on."""
    from nnlab.lr_find import run_name, run_range_test, summary, write_job_dir
    from nnlab.tracking.schema import config_hash
    from nnlab.tracking.sweep import grid_jobs

    grid = grid_jobs(config)
    if grid is None:
        out("nnlab: lr_find: not a grid sweep; no LR range tests run")
        return []
    base = Path.cwd()  # the launch directory (hydra.job.chdir is false)
    finder = finder_defaults()
    setups = finder_overrides(grid[0])
    plains = []
    for overrides in setups:
        try:
            plains.append((overrides, finder_config(config, overrides, finder)))
        except ConfigError as exc:
            out(f"nnlab: lr_find: `{' '.join(overrides)}`: invalid config: {exc}")
    done = finished_hashes(plains[0][1], base) if plains else set()
    todo = [(o, p) for o, p in plains if config_hash(p) not in done]
    out(f"nnlab: lr_find: {len(plains)} LR range tests, {len(plains) - len(todo)} already tracked")
    sweep_dir = Path(str(config.hydra.sweep.dir))
    written, data_cache = [], {}
    for i, (overrides, plain) in enumerate(todo, 1):
        t0 = time.perf_counter()
        job_dir = sweep_dir / "lr_find" / str(i - 1)
        try:
            data = _data(plain, data_cache)
            result = run_range_test(plain, data)
            write_job_dir(job_dir, plain, overrides, result)
            where = str(job_dir)
            if plain["tracking"]["backend"] == "mlflow":
                from nnlab.tracking import file_job_dir

                where = f"run {file_job_dir(job_dir, plain, base)}"
        except Exception as exc:  # one set-up must not stop the others or the report
            out(f"[lr_find {i}/{len(todo)}] {run_name(plain)}: failed: {one_line(exc)}")
            continue
        written.append(job_dir)
        line = summary(result).removeprefix("lr_find: ")
        out(f"[lr_find {i}/{len(todo)}] {run_name(plain)}: {line} -> {where} "
            f"({time.perf_counter() - t0:.1f}s)")  # fmt: skip
    return written


def _data(plain: dict, cache: dict) -> Any:
    """The data of ``plain``, loaded once per distinct data config."""
    import json

    from nnlab.build import load_data

    key = json.dumps([plain["data"], plain["model"]["loss"]], sort_keys=True, default=str)
    if key not in cache:
        cache[key] = load_data(plain["data"], plain["model"]["loss"])
    return cache[key]


class GridFinders(Callback):
    """Hydra callback: the grid's LR range tests once its trials are done (module docstring)."""

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        try:
            run_grid_finders(config, lambda line: print(line, flush=True))
        except Exception as exc:  # Hydra would turn it into a warning with a traceback
            print(f"nnlab: lr_find: {one_line(exc)}", file=sys.stderr, flush=True)
