"""The LR range tests of a grid sweep's set-ups, run when the sweep starts
(``+experiment=lr_find_vs_grid``).

A study that asks whether the LR finder agrees with the grid needs both from one command. An
experiment adds this Hydra callback to ``hydra.callbacks``::

    hydra:
      callbacks:
        lr_find:
          _target_: nnlab.lr_find_sweep.GridFinders

Before the grid's trials start, it runs one LR range test (``nnlab.lr_find``,
``conf/lr_find.yaml``'s settings) per set-up of the grid: the grid's axes without ``lr`` and
``epochs`` (the finder's ramp replaces both), so a grid of datasets x optimizers x batch sizes x
lrs x seeds gets one test per dataset, optimizer, batch size and seed. Each test is filed as one
run (``nnlab.role=lr_find``) in the grid's experiment, its job directory under
``<sweep dir>/lr_find/<n>``; the sweep's report, built after the grid, finds them there. A test
whose config already has a finished run in the store is skipped, so running the same command
again adds nothing. A set-up whose config is refused is one line on stderr and exit 2, before
anything runs.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from nnlab.config import ConfigError, validate_lr_find
from nnlab.run import CONF_DIR, one_line

SKIPPED_KEYS = ("lr", "epochs")  # axes the finder does not use (its ramp replaces them)


def finder_setups(config: Any) -> list[list[str]]:
    """The override lists of the grid's set-ups: its axes (``hydra.sweeper.params``, then the
    command line's overrides, as the grid sweeper reads them) without :data:`SKIPPED_KEYS`, in
    the grid's order."""
    from hydra.core.global_hydra import GlobalHydra

    from nnlab.sweep.grid import Grid, parse_grid

    params = [f"{k}={v}" for k, v in (config.hydra.sweeper.get("params") or {}).items()]
    loader = GlobalHydra.instance().config_loader()
    grid = parse_grid(loader, params + list(config.hydra.overrides.task))
    kept = {k: v for k, v in grid.axes.items() if k.lstrip("+~") not in SKIPPED_KEYS}
    return [job for _, job in Grid(kept).jobs()]


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


WORKERS = 2  # processes the tests run in (forked: no imports to repeat); filed one by one


def run_grid_finders(config: Any, out=print) -> list[Path]:
    """Run and file the LR range tests of the sweep ``config`` (module docstring); returns the
    job directories written. The tests run in :data:`WORKERS` forked processes, each writing
    its job directory; this process files them in order. A set-up that fails is reported in
    one line; the rest go on."""
    import multiprocessing

    from nnlab.lr_find import run_name
    from nnlab.tracking.schema import config_hash

    base = Path(str(config.hydra.runtime.cwd))  # the launch directory
    finder = finder_defaults()
    plains = []
    for overrides in finder_setups(config):
        try:
            plains.append((overrides, finder_config(config, overrides, finder)))
        except ConfigError as exc:
            fail_config(f"lr_find `{' '.join(overrides)}`: {exc}")
    done = finished_hashes(plains[0][1], base) if plains else set()
    todo = [(o, p) for o, p in plains if config_hash(p) not in done]
    out(f"nnlab: lr_find: {len(plains)} LR range tests, {len(plains) - len(todo)} already tracked")
    sweep_dir = base / str(config.hydra.sweep.dir)
    jobs = [(sweep_dir / "lr_find" / str(i), o, p) for i, (o, p) in enumerate(todo)]
    written = []
    with multiprocessing.get_context("fork").Pool(min(WORKERS, max(len(jobs), 1))) as pool:
        for i, ((job_dir, _, plain), (line, seconds)) in enumerate(
            zip(jobs, pool.imap(_run_one, jobs), strict=True), 1
        ):
            head = f"[lr_find {i}/{len(todo)}] {run_name(plain)}:"
            try:
                if line is None:
                    raise RuntimeError(seconds)  # the worker's one-line error
                where = str(job_dir)
                if plain["tracking"]["backend"] == "mlflow":
                    from nnlab.tracking import file_job_dir

                    where = f"run {file_job_dir(job_dir, plain, base)}"
            except Exception as exc:  # one set-up must not stop the others or the grid
                out(f"{head} failed: {one_line(exc)}")
                continue
            written.append(job_dir)
            out(f"{head} {line} -> {where} ({seconds:.1f}s)")
    return written


_DATA: dict = {}  # each worker's data, loaded once per distinct data config


def _run_one(job: tuple[Path, list[str], dict]) -> tuple[str | None, Any]:
    """In a worker: one range test and its job directory; (summary line, seconds), or (None,
    the error in one line)."""
    from nnlab.lr_find import run_range_test, summary, write_job_dir

    job_dir, overrides, plain = job
    t0 = time.perf_counter()
    try:
        result = run_range_test(plain, _data(plain, _DATA))
        write_job_dir(job_dir, plain, overrides, result)
    except Exception as exc:
        return None, f"{type(exc).__name__}: {one_line(exc)}"
    return summary(result).removeprefix("lr_find: "), time.perf_counter() - t0


def fail_config(message: str) -> None:
    """One line on stderr and exit 2, before any run (as a sweep refuses a bad config)."""
    print(f"nnlab: invalid config: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def _data(plain: dict, cache: dict) -> Any:
    """The data of ``plain``, loaded once per distinct data config."""
    import json

    from nnlab.build import load_data

    key = json.dumps([plain["data"], plain["model"]["loss"]], sort_keys=True, default=str)
    if key not in cache:
        cache[key] = load_data(plain["data"], plain["model"]["loss"])
    return cache[key]


class GridFinders(Callback):
    """Hydra callback: the grid's LR range tests before its trials (module docstring)."""

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        run_grid_finders(config, lambda line: print(line, flush=True))
