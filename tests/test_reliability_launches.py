"""Nothing lost, part 2: launches at the same moment, damaged stores, models too big for memory.

Real ``python -m nnlab.run`` / ``nnlab.report`` / ``nnlab.recover`` processes on real sqlite files.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
from helpers import TINY, runs, start, steps, timed_cli

# MLflow alone retries an unusable store for ~100 s; nnlab refuses in ~1-3 s on an idle machine.
# The bound leaves room for a loaded CI machine and still tells the two apart.
SECONDS = 30


def _run(cwd: Path, module: str, *args: str) -> tuple[subprocess.CompletedProcess, float]:
    return timed_cli(cwd, *args, module=module, timeout=300)


def _one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """The single stderr line of a refused command (no traceback, no MLflow retry warnings)."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("[report] loading")]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def real_store(tmp_path_factory) -> Path:
    """A store holding one finished run (``nnlab`` experiment), made by the real CLI."""
    cwd = tmp_path_factory.mktemp("real")
    proc, _ = _run(cwd, "nnlab.run", "epochs=2", *TINY)
    assert proc.returncode == 0, proc.stderr
    return cwd


# --- 1. launches at the same moment ------------------------------------------------------------


def _concurrent_sweeps(cwd: Path, n: int, joblib: bool) -> None:
    """``n`` sweeps started together (experiments c0..c{n-1}, 2 trials of 3 epochs each)."""
    extra = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"] if joblib else []
    procs = [
        start(
            cwd,
            "-m",
            f"lr={0.1 + i},0.01",
            "epochs=3",
            f"experiment_name=c{i}",
            *TINY,
            *extra,
        )  # fmt: skip
        for i in range(n)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, out + err
    sweep_dirs = list((cwd / "multirun").glob("*/*"))
    assert len(sweep_dirs) == n  # one directory per launch, even within the same second
    for i in range(n):
        parents = runs(cwd, f"c{i}", "sweep")
        trials = runs(cwd, f"c{i}", "trial")
        assert len(parents) == 1 and len(trials) == 2
        assert {t.data.tags["mlflow.parentRunId"] for t in trials} == {parents[0].info.run_id}
        assert {t.info.status for t in [*parents, *trials]} == {"FINISHED"}
        for t in trials:  # every metric step exactly once
            assert steps(cwd, t.info.run_id, "loss") == [1, 2, 3]


@pytest.mark.slow
@pytest.mark.parametrize("n", [3, 4])
def test_concurrent_launches_on_a_fresh_directory(tmp_path: Path, n: int) -> None:
    _concurrent_sweeps(tmp_path, n, joblib=False)


@pytest.mark.slow
def test_concurrent_launches_on_an_existing_store_with_joblib(real_store: Path, tmp_path) -> None:
    shutil.copy(real_store / "mlflow.db", tmp_path / "mlflow.db")
    _concurrent_sweeps(tmp_path, 4, joblib=True)


def test_sweep_dirs_are_unique_per_launch_within_one_second(tmp_path: Path) -> None:
    procs = [start(tmp_path, "-m", "lr=0.1", "epochs=1", "tracking=none", *TINY) for _ in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, out + err
    dirs = sorted(d.name for d in (tmp_path / "multirun").glob("*/*"))
    assert len(dirs) == 2 and dirs[0] != dirs[1]
    ids = set()
    for d in (tmp_path / "multirun").glob("*/*"):  # each job landed in its own sweep's dir
        ctx = json.loads((d / ".nnlab" / "sweep.json").read_text())
        assert ctx["sweep_dir"] == str(d.resolve())
        assert json.loads((d / "0" / "run.json").read_text())["outcome"] == "completed"
        assert (d / ".nnlab" / ctx["sweep_id"]).is_dir()  # its own results dir
        ids.add(ctx["sweep_id"])
    assert len(ids) == 2  # two sweeps, not one sweep seen twice


# --- 2. a damaged store file ------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["random bytes", "truncated copy", "another sqlite file"])
def test_damaged_store_is_refused_at_once_by_run_report_and_recover(
    real_store: Path, tmp_path: Path, damage: str
) -> None:
    db = tmp_path / "mlflow.db"
    if damage == "random bytes":
        db.write_bytes(os.urandom(5000))
    elif damage == "truncated copy":
        db.write_bytes((real_store / "mlflow.db").read_bytes()[:200_000])
    else:
        with sqlite3.connect(db) as con:
            con.execute("CREATE TABLE notes (x)")
    before = db.read_bytes()
    proc, seconds = _run(tmp_path, "nnlab.run", "epochs=1", *TINY)
    assert proc.returncode == 2 and seconds < SECONDS, (seconds, proc.stderr)
    _one_line_error(proc, "mlflow.db", "mv ")
    assert "retried" not in proc.stderr.lower()
    proc, seconds = _run(tmp_path, "nnlab.report", "--experiment", "nnlab")
    assert proc.returncode == 2 and seconds < SECONDS, (seconds, proc.stderr)
    _one_line_error(proc, "mlflow.db")
    job = next((real_store / "outputs").rglob("run.json")).parent
    proc, seconds = _run(tmp_path, "nnlab.recover", str(job), "--tracking-uri",
                         f"sqlite:///{db}")  # fmt: skip
    assert proc.returncode == 2 and seconds < SECONDS, (seconds, proc.stderr)
    _one_line_error(proc, "mlflow.db")
    assert db.read_bytes() == before  # nothing written to it


def test_store_of_another_mlflow_schema_is_refused_never_migrated(
    real_store: Path, tmp_path: Path
) -> None:
    db = tmp_path / "mlflow.db"
    shutil.copy(real_store / "mlflow.db", db)
    with sqlite3.connect(db) as con:
        con.execute("UPDATE alembic_version SET version_num = 'bf29a5ff90ea'")
    for module, args in (
        ("nnlab.run", ["epochs=1", *TINY]),
        ("nnlab.report", ["--experiment", "nnlab"]),
    ):
        proc, _ = _run(tmp_path, module, *args)
        assert proc.returncode == 2, proc.stderr
        _one_line_error(proc, "bf29a5ff90ea", "mlflow db upgrade")
    with sqlite3.connect(db) as con:  # nnlab did not migrate it
        assert con.execute("SELECT version_num FROM alembic_version").fetchone() == (
            "bf29a5ff90ea",
        )


# --- a model that cannot fit in memory ---------------------------------------------------------


@pytest.mark.parametrize("sweep", [False, True])
def test_model_too_big_for_memory_is_refused_before_any_run(
    real_store: Path, tmp_path: Path, sweep: bool
) -> None:
    shutil.copy(real_store / "mlflow.db", tmp_path / "mlflow.db")
    n_before = len(runs(tmp_path, "nnlab"))
    hidden = "model.hidden=[8],[200000,200000]" if sweep else "model.hidden=[200000,200000]"
    args = ["-m", hidden] if sweep else [hidden]
    proc, seconds = _run(tmp_path, "nnlab.run", *args, "epochs=1", "data.n_samples=200")
    assert proc.returncode == 2 and seconds < 30, proc.stderr
    line = _one_line_error(proc, "40,001,000,001 parameters", "GiB", "model.hidden")
    assert "MemoryError" not in line
    assert len(runs(tmp_path, "nnlab")) == n_before  # no run, no parent
