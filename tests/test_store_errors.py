"""Store errors name their cause (issue 25, defect 13).

(a) a write error says readonly / locked / disk full in one line with the fix, not SQLAlchemy's
"Query-invoked autoflush" and its traceback; (b) a healthy store in a read-only directory is
not called "not an SQLite database"; (c) a store lock held by another process is waited for
out loud, and given up with the holder's pid.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import QUIET, TINY, cli, env

from nnlab.config import ConfigError
from nnlab.tracking import store as mlstore

ROOT_ONLY = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("chattr") is None,
    reason="chattr +i (immutable files, which even root cannot write) needs root",
)


@contextlib.contextmanager
def immutable(path: Path) -> Iterator[None]:
    """``chattr +i path`` for the block (root cannot write it either); undone on the way out."""
    subprocess.run(["chattr", "+i", str(path)], check=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def single_line(text: str) -> None:
    assert "\n" not in text and "autoflush" not in text and "[SQL:" not in text, text
    assert "sqlalche.me" not in text and len(text) < 400, text


# --- (a) the cause of a write error --------------------------------------------------------------


@ROOT_ONLY
def test_a_readonly_store_says_readonly_with_the_fix(tmp_path: Path, empty_store: Path) -> None:
    db = tmp_path / "mlflow.db"
    shutil.copy(empty_store, db)
    uri = f"sqlite:///{db}"  # not opened before: no pooled connection from before chattr
    with immutable(db), pytest.raises(Exception) as err:
        mlstore.client(uri).create_run("0")  # the store's Default experiment
    assert "Query-invoked autoflush" in str(err.value)  # what MLflow says, the cause buried
    text = mlstore.describe_store_error(err.value, uri)
    single_line(text)
    assert text.startswith("store is readonly: attempt to write a readonly database"), text
    assert f"make {db} and its directory writable" in text
    assert mlstore.one_line(err.value) == mlstore.describe_store_error(err.value)


def test_a_locked_store_says_locked_with_the_fix(tmp_path: Path, empty_store: Path) -> None:
    db = tmp_path / "mlflow.db"
    shutil.copy(empty_store, db)
    uri = f"sqlite:///{db}"
    exp = mlstore.open_experiment(uri, "locked", "mlruns", tmp_path)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process's write transaction, never committed
    try:
        with pytest.raises(Exception) as err:
            mlstore.client(uri).create_run(exp)  # sqlite's busy timeout (5 s), then gives up
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    text = mlstore.describe_store_error(err.value, uri)
    single_line(text)
    assert text.startswith("store is locked: database is locked"), text
    assert f"fuser {db}" in text


def test_a_full_disk_says_disk_full(tmp_path: Path) -> None:
    """sqlite's own "database or disk is full" (a page limit stands in for the disk), through
    SQLAlchemy as MLflow meets it; and the OS's ENOSPC (/dev/full)."""
    from sqlalchemy import create_engine, event, text

    db = tmp_path / "small.db"
    engine = create_engine(f"sqlite:///{db}")
    event.listen(engine, "connect", lambda con, _: con.execute("PRAGMA max_page_count=3"))
    with pytest.raises(Exception) as err, engine.begin() as con:
        con.execute(text("CREATE TABLE t (x BLOB)"))
        con.execute(text("INSERT INTO t VALUES (zeroblob(100000))"))
    described = mlstore.describe_store_error(err.value, f"sqlite:///{db}")
    single_line(described)
    assert described.startswith("disk full: database or disk is full"), described
    assert f"free space on the disk of {tmp_path}" in described

    with pytest.raises(OSError) as full, open("/dev/full", "w") as fh:
        fh.write("x")
        fh.flush()
    assert mlstore.describe_store_error(full.value).startswith("disk full: No space left on device")


def test_other_errors_stay_as_they_were() -> None:
    exc = ValueError("something else\nsecond line")
    assert (
        mlstore.describe_store_error(exc) == mlstore.one_line(exc) == "ValueError: something else"
    )


@pytest.mark.slow
@ROOT_ONLY
def test_a_run_on_an_immutable_store_is_short_and_names_the_cause(
    tmp_path: Path, empty_store: Path
) -> None:
    """Was: MLflow's logged traceback (90 lines) and "MlflowException: (raised as a result of
    Query-invoked autoflush; ...)" twice."""
    shutil.copy(empty_store, tmp_path / "mlflow.db")
    first = cli(tmp_path, "epochs=1", *TINY, QUIET)  # the experiment exists: the run must write
    assert first.returncode == 0, first.stderr
    with immutable(tmp_path / "mlflow.db"):
        proc = cli(tmp_path, "epochs=1", *TINY, QUIET)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr and len(lines) <= 3, proc.stderr
    assert all("autoflush" not in line for line in lines), proc.stderr
    assert "store is readonly" in lines[-1] and "nnlab.recover" in lines[-1], lines


# --- (b) a healthy store in a read-only directory ----------------------------------------------


@ROOT_ONLY
def test_a_healthy_store_in_a_read_only_directory_is_not_called_damaged(
    tmp_path: Path, empty_store: Path
) -> None:
    where = tmp_path / "store"
    where.mkdir()
    shutil.copy(empty_store, where / "mlflow.db")
    with sqlite3.connect(where / "mlflow.db") as con:  # as nnlab leaves it: write-ahead log
        con.execute("PRAGMA journal_mode=WAL")
    uri = f"sqlite:///{where / 'mlflow.db'}"
    with immutable(where):
        with pytest.raises(ConfigError) as err:
            mlstore.check_sqlite_file(where / "mlflow.db", uri)
        proc = cli(tmp_path, f"tracking.uri={uri}", "epochs=1", *TINY, QUIET)
    line = str(err.value)
    assert f"{where} is read-only" in line and "the store itself is fine" in line, line
    assert "not an SQLite database" not in line and "move it aside" not in line
    assert proc.returncode == 2
    assert f"{where} is read-only" in proc.stderr and "move it aside" not in proc.stderr


# --- (c) a store lock held by another process --------------------------------------------------


HOLD = (
    "import fcntl, sys, time\n"
    "fh = open(sys.argv[1], 'a'); fcntl.flock(fh, fcntl.LOCK_EX)\n"
    "print('held', flush=True); time.sleep(600)\n"
)


def hold_lock(path: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_store_lock_says_what_it_waits_for_and_times_out_naming_the_holder(
    tmp_path: Path,
) -> None:
    holder = hold_lock(tmp_path / "mlflow.db.lock")
    try:
        t0 = time.monotonic()
        proc = cli(
            tmp_path, "epochs=1", *TINY, QUIET, environ=env(NNLAB_STORE_LOCK_TIMEOUT="4"),
            timeout=120,  # before: waited in silence for as long as the lock was held
        )  # fmt: skip
        seconds = time.monotonic() - t0
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"nnlab: waiting for {tmp_path / 'mlflow.db.lock'}"), lines
    assert f"pid {holder.pid}" in lines[0] and "giving up after 4 s" in lines[0], lines
    assert "still held after 4 s" in lines[1] and f"kill {holder.pid}" in lines[1], lines
    assert seconds < 120  # gave up: no endless wait
