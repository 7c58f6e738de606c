"""The MLflow store: URIs, fail-fast probes, opening it once, and what it already holds.

``import mlflow`` costs 2-3 s and the first store open ~1.4 s per process, so mlflow is imported
lazily (``tracking=none`` never imports it) and clients are cached per process (loky workers are
reused between trials). Processes that open a *new* sqlite store at once race on table creation,
so the sweep's launching process opens it once (:func:`prepare_store`) before any trial starts.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nnlab.config import ConfigError
from nnlab.tracking.schema import Tag
from nnlab.tracking.store_errors import describe_store_error, store_cause

log = logging.getLogger(__name__)

SQLITE = "sqlite:///"
PROBE_TIMEOUT = 3.0  # seconds to wait for a tracking server's TCP port

# MLflow retries an unreachable server for minutes by default (7 retries, backoff factor 2);
# a trial should notice a dead server in seconds (its metrics stay local, see nnlab.jobdir).
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
# with a server, MLflow prints "View run ... at: URL" on stdout each time a run ends: the sweep's
# own lines already name every run
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


def say(message: str) -> None:
    """One line for the user on stderr (progress and warnings; stdout has the results)."""
    import sys

    print(message, file=sys.stderr, flush=True)


def one_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (at most 300 characters); a store error whose cause
    is known (readonly, locked, disk full: :func:`describe_store_error`) reads as that cause."""
    cause = store_cause(exc)
    if cause is not None:
        return describe_store_error(exc)
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {text}"[:300]


def sqlite_path(uri: str) -> Path | None:
    """The file of a ``sqlite:///`` URI, else None."""
    return Path(uri[len(SQLITE) :]) if uri.startswith(SQLITE) else None


def resolve_uri(uri: str, base: Path) -> str:
    """A relative ``sqlite:///file.db`` made absolute against the launch dir ``base``."""
    if uri.startswith(SQLITE) and not uri.startswith(SQLITE + "/") and ":memory:" not in uri:
        return SQLITE + str((base / uri[len(SQLITE) :]).resolve())
    return uri


def ui_command(uri: str) -> str:
    """The command that opens the MLflow UI on ``uri`` (relative to the launch dir if possible)."""
    path = sqlite_path(uri)
    if path is None:
        return f"open {uri} in a browser"
    try:
        path = path.relative_to(Path.cwd())
    except ValueError:
        pass
    return f"mlflow ui --backend-store-uri {SQLITE}{path}"


EXPERIMENT_KIND = "mlflow.experimentKind"  # set to custom_model_development: not a GenAI one
UI_DEFAULT = "http://127.0.0.1:5000"  # where `mlflow ui` serves


def runs_url(uri: str, experiment_id: str, view: str | None = None) -> str:
    """The UI page with the experiment's runs table (a server's own URL, else `mlflow ui`'s).

    ``view``: the key of a saved view to open (a sweep's, :mod:`nnlab.tracking.runs_view`: its
    trials, best first, with their metrics and outcome). MLflow 3.18's UI takes its GenAI /
    Model training mode from the URL's ``workflowType``, else from the browser's localStorage
    (``mlflow.workflowType``, GenAI by default); the experiment tag ``mlflow.experimentKind``
    does not decide it (checked in a browser: tests/test_mlflow_ui.py).
    """
    base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else UI_DEFAULT
    query = "workflowType=machine_learning" + (f"&viewStateShareKey={view}" if view else "")
    return f"{base}/#/experiments/{experiment_id}/runs?{query}"


def _quiet_mlflow() -> None:
    # store creation logs alembic migrations at INFO; keep the terminal for nnlab's own lines.
    # mlflow sets its logger's level on import, so import first.
    import mlflow  # noqa: F401

    for name in ("mlflow", "alembic", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # a store error: MLflow logs its whole traceback (40-90 lines) at ERROR before raising; nnlab
    # says it in one line (describe_store_error)
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    # a server that went away: one nnlab line says so, not a "Retrying ..." line per attempt
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)


@functools.cache
def _sqlite_synchronous_normal() -> None:
    """Every sqlite connection this process opens runs ``PRAGMA synchronous=NORMAL``.

    In WAL mode (:func:`_use_wal`) NORMAL skips the fsync of each commit and syncs at
    checkpoints instead; a commit still survives the *process* dying (kill -9): only an OS crash
    or power loss can roll back the last commits, never corrupt the file. An SQLAlchemy
    ``connect`` listener on all engines, filtered to sqlite connections.
    """
    import sqlite3

    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        if isinstance(dbapi_connection, sqlite3.Connection):
            dbapi_connection.execute("PRAGMA synchronous=NORMAL")

    event.listen(Engine, "connect", on_connect)


@functools.cache
def client(uri: str):
    """A cached ``MlflowClient`` for ``uri`` (the store opens once per process)."""
    _quiet_mlflow()
    if uri.startswith("sqlite:"):
        _sqlite_synchronous_normal()
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _use_wal(path: Path) -> None:
    """Switch a sqlite store to write-ahead logging (persists in the file).

    Every MLflow call is a commit; with the default rollback journal each one creates, syncs and
    deletes a journal file. WAL measured 144 -> 78 ms per 40-epoch run here (median of 20, busy
    machine), and lets `mlflow ui` read while trials write. Not for network file systems.
    """
    import sqlite3

    try:
        with sqlite3.connect(path, timeout=30) as con:
            con.execute("PRAGMA journal_mode=WAL")
    except sqlite3.Error as exc:  # e.g. a read-only or network file system: keep the default
        log.warning("could not switch %s to WAL mode: %s", path, exc)


def check_sqlite_file(db: Path, uri: str) -> None:
    """Refuse, in milliseconds, a file that cannot be an MLflow sqlite store.

    MLflow retries a store it cannot open for ~100 s, printing a warning per retry. A missing
    or empty file is a new store; otherwise its header and table list must read, and its size
    must hold every page it declares (a truncated copy does not).
    """
    import sqlite3

    if not db.is_file() or db.stat().st_size == 0:
        return
    fix = f"move it aside (mv {db} {db}.damaged) to start a new store, or point tracking.uri elsewhere"
    try:
        with open(db, "rb") as fh:
            header = fh.read(16)
        if header != b"SQLite format 3\x00":
            raise sqlite3.DatabaseError("file is not a database")
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
            pages = con.execute("PRAGMA page_count").fetchone()[0]
            page_size = con.execute("PRAGMA page_size").fetchone()[0]
            revision = None
            if "alembic_version" in tables:
                rows = con.execute("SELECT version_num FROM alembic_version").fetchall()
                revision = rows[0][0] if len(rows) == 1 else None
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        readonly = unwritable(db.parent)
        if readonly is not None:  # sqlite writes -shm/-wal beside a WAL store, even to read it
            raise ConfigError(
                f"tracking.uri={uri!r}: {db.parent} is read-only ({readonly}), and sqlite writes "
                f"beside the store even to read it ({db.name}-wal, -shm); the store itself is "
                f"fine: make {db.parent} writable, or copy the store to a writable directory "
                f"(cp {db} DIR/) and point tracking.uri there"
            ) from None
        if isinstance(exc, sqlite3.OperationalError):  # a file that cannot be opened
            raise ConfigError(
                f"tracking.uri={uri!r}: cannot open {db} ({exc}); check its permissions"
            ) from None
        raise ConfigError(
            f"tracking.uri={uri!r}: {db} is not an SQLite database ({exc}); {fix}"
        ) from None
    wal = db.with_name(db.name + "-wal")
    no_wal = not wal.exists() or wal.stat().st_size == 0  # pages may still sit in the WAL
    if no_wal and db.stat().st_size < pages * page_size:
        raise ConfigError(
            f"tracking.uri={uri!r}: {db} is truncated ({db.stat().st_size} of "
            f"{pages * page_size} bytes); {fix}"
        )
    if tables and not {"alembic_version", "experiments", "runs"} <= tables:
        raise ConfigError(
            f"tracking.uri={uri!r}: {db} is an SQLite file but not an MLflow store; {fix}"
        )
    from nnlab.tracking.store_index import head_revision

    head = head_revision()
    if revision is not None and head is not None and revision != head:
        raise schema_mismatch(uri, revision, head)


def schema_mismatch(uri: str, found: str, expected: str) -> ConfigError:
    """A store of another MLflow schema: one line with the command to run. nnlab never
    migrates a store: the user decides (and backs it up) first."""
    from importlib.metadata import version

    return ConfigError(
        f"tracking.uri={uri!r}: the store was written by another MLflow version (schema "
        f"{found}; MLflow {version('mlflow')} expects {expected}); nnlab never migrates a "
        f"store: back it up, then run `mlflow db upgrade {uri}` (or use the MLflow that wrote it)"
    )


def unwritable(directory: Path) -> str | None:
    """Why no file can be created in ``directory`` (tried for real: root ignores mode bits but
    not ``chattr +i`` or a read-only mount), or None when one can."""
    import tempfile

    try:
        with tempfile.TemporaryFile(dir=directory):
            return None
    except OSError as exc:
        return exc.strerror or type(exc).__name__


def schema_error(exc: Exception, uri: str) -> ConfigError | None:
    """MLflow's "out-of-date database schema" as one line with the command to run, else None.

    nnlab never migrates a store: the user decides (and backs it up) first.
    """
    import re

    m = re.search(r"found version (\w+), but expected (\w+)", str(exc))
    return None if m is None else schema_mismatch(uri, m.group(1), m.group(2))


LOCK_NOTICE = 1.5  # seconds of waiting for the store lock before saying so


def lock_timeout() -> float:
    """Seconds to wait for the store lock: ``NNLAB_STORE_LOCK_TIMEOUT``, default 60."""
    return float(os.environ.get("NNLAB_STORE_LOCK_TIMEOUT", "60"))


def lock_holder(path: Path) -> str | None:
    """``pid N (command line)`` of a process holding an flock on ``path`` (Linux's
    ``/proc/locks``), or None when that cannot be known."""
    try:
        st = path.stat()
        rows = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    device = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for row in rows:
        fields = row.split()
        if "->" in fields or len(fields) < 6 or fields[1] != "FLOCK":  # waiters, other locks
            continue
        if fields[5] == device and fields[4] != str(os.getpid()):
            try:
                command = Path(f"/proc/{fields[4]}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                command = b""
            name = " ".join(command.decode(errors="replace").split())  # one line
            return f"pid {fields[4]}" + (f" ({name[:80]})" if name else "")
    return None


@contextlib.contextmanager
def store_lock(db: Path | None) -> Iterator[None]:
    """Serialise store creation and migration across processes (a ``<file>.lock`` beside it).

    Two launches on a fresh directory would otherwise race on MLflow's table creation ("table
    ... already exists"); an flock also serialises processes that do not share a parent. A lock
    held by another process is waited for out loud (one line after ``LOCK_NOTICE`` s naming the
    holder) and given up after :func:`lock_timeout` seconds with a ConfigError.
    """
    if db is None:
        yield
        return
    import fcntl
    import time

    lock = db.with_name(db.name + ".lock")
    with open(lock, "a") as fh:
        start, said, timeout = time.monotonic(), False, lock_timeout()
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - start
                holder = lock_holder(lock)
                if waited >= timeout:
                    raise ConfigError(_lock_timeout_message(lock, holder, timeout)) from None
                if not said and waited >= LOCK_NOTICE:
                    who = holder or "another process"
                    say(
                        f"nnlab: waiting for {lock}: {who} holds it (creating or opening this "
                        f"store); giving up after {timeout:g} s (NNLAB_STORE_LOCK_TIMEOUT)"
                    )
                    said = True
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _lock_timeout_message(lock: Path, holder: str | None, timeout: float) -> str:
    if holder is not None:
        pid = holder.split()[1]
        how = f"by {holder}; let it finish, or stop it (kill {pid}) if it hangs"
    else:
        how = f"by another process; find it with `fuser {lock}` (or lsof) and let it finish or stop it"
    return (
        f"{lock} is still held after {timeout:g} s {how}, then run the same command again "
        "(deleting the lock file does not release it)"
    )


def open_experiment(uri: str, name: str, artifacts: str | None, base: Path) -> str:
    """Create the store (sqlite: tables once, here) and the experiment if needed; return its id."""
    _quiet_mlflow()
    db = sqlite_path(uri)
    with store_lock(db):
        if db is not None:
            from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

            _sqlite_synchronous_normal()
            root = (base / (artifacts or "mlruns")).resolve()
            try:
                store = SqlAlchemyStore(uri, root.as_uri())
            except Exception as exc:
                raise schema_error(exc, uri) or exc from None
            _use_wal(db)
        else:
            store = client(uri)
        exp = store.get_experiment_by_name(name)
        exp_id = exp.experiment_id if exp else store.create_experiment(name)
    if exp is not None and exp.lifecycle_stage == "deleted":
        raise ConfigError(
            f"experiment_name={name!r}: that MLflow experiment is deleted; restore it "
            f"(mlflow experiments restore --experiment-id {exp.experiment_id}) or pick another name"
        )
    return exp_id


def probe_server(uri: str, timeout: float = PROBE_TIMEOUT) -> None:
    """Refuse an http(s) tracking URI whose host:port does not accept a TCP connection.

    One socket connect with a short timeout, before ``import mlflow`` and its long HTTP retries.
    """
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https"):
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise ConfigError(
            f"tracking.uri={uri!r}: no MLflow server answers at {parts.hostname}:{port} "
            f"({reason}); start one (mlflow server --host 127.0.0.1 --port {port}) or use the "
            "local store (tracking=sqlite)"
        ) from None


def probe_directory(path: Path, key: str) -> None:
    """Create ``path`` if needed and write + delete a file there; ConfigError naming ``key``."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".nnlab-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"{key}: cannot write to {path} ({exc.strerror or exc}); pick a writable directory"
        ) from None


def is_new_sqlite(uri: str) -> bool:
    """True for a ``sqlite:///`` store whose file does not exist yet (or is empty)."""
    db = sqlite_path(uri)
    return db is not None and (not db.exists() or (db.is_file() and db.stat().st_size == 0))


def store_lost(uri: str, run_id: str | None, since: tuple[int, int] | None = None) -> str | None:
    """Why the sqlite file of ``uri`` does not hold run ``run_id`` any more, or None.

    An open connection writes on into a file that was deleted, replaced or overwritten (or
    into a write-ahead log that was deleted): MLflow reports success while the file users open
    lacks the run. A fresh read-only connection reads what is on disk; ``since`` is the file's
    (device, inode) when it was opened.
    """
    import sqlite3

    db = sqlite_path(uri or "")
    if db is None or not run_id:
        return None
    if not db.exists():
        return f"{db} was deleted while it was written"
    st = db.stat()
    if since is not None and (st.st_dev, st.st_ino) != since:
        return f"{db} was replaced by another file while it was written"
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as con:
            row = con.execute("SELECT 1 FROM runs WHERE run_uuid = ?", (run_id,)).fetchone()
    except sqlite3.Error as exc:
        return f"{db} cannot be read any more ({exc})"
    return None if row is not None else f"{db} no longer holds run {run_id}"


def file_id(uri: str) -> tuple[int, int] | None:
    """(device, inode) of a sqlite store's file, None for other stores or a missing file."""
    db = sqlite_path(uri or "")
    if db is None or not db.exists():
        return None
    st = db.stat()
    return st.st_dev, st.st_ino


def check_store(uri: str, artifacts: str | None, base: Path) -> None:
    """The checks that need no MLflow: the server's port (http), the sqlite file and its
    directory, the artifact root, and that no other process holds the store's lock for long
    (it waits out loud, then gives up). ConfigError naming the problem and the fix."""
    probe_server(uri)
    db = sqlite_path(uri)
    if db is not None:
        if not db.parent.is_dir() or db.is_dir():
            raise ConfigError(
                f"tracking.uri={uri!r}: {db} cannot be a sqlite file (its directory is missing "
                "or it is a directory); point it at a file in an existing directory"
            )
        if os.access(db.parent, os.W_OK):
            with store_lock(db):  # another launch creating the store: wait for it here
                pass
        check_sqlite_file(db, uri)
        probe_directory(
            (base / (artifacts or "mlruns")).resolve(), f"tracking.artifacts={artifacts!r}"
        )


def prepare_store(uri: str, name: str, artifacts: str | None, base: Path) -> str:
    """Check the store is usable, then ``open_experiment``; every problem is one ConfigError.

    Order: server port (http), sqlite file's directory, artifact root, store + experiment, the
    experiment's own (file) artifact location. Nothing is created in the store for a bad input
    except, at most, the experiment.
    """
    check_store(uri, artifacts, base)
    try:
        exp_id = open_experiment(uri, name, artifacts, base)
        exp = client(uri).get_experiment(exp_id)
        location = exp.artifact_location
        if EXPERIMENT_KIND not in exp.tags:
            client(uri).set_experiment_tag(exp_id, EXPERIMENT_KIND, "custom_model_development")
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"tracking.uri={uri!r}: cannot open the MLflow store ({describe_store_error(exc, uri)}); check the "
            "URI, or move a damaged sqlite file aside"
        ) from None
    probe_location(location, name)
    return exp_id


def probe_location(location: str, name: str) -> None:
    """An experiment's ``file:`` artifact location must be writable (ConfigError if not)."""
    if location.startswith("file:"):
        from urllib.parse import unquote, urlsplit

        probe_directory(
            Path(unquote(urlsplit(location).path)),
            f"experiment {name!r} artifact location {location}",
        )


def finished_trials(uri: str, experiment_id: str) -> dict[str, dict]:
    """config_hash -> {run_id, run_name, outcome, loss, val_loss, parent} of the experiment's FINISHED
    trials (the newest run of each config wins; a pruned run does not count)."""
    from mlflow.entities import ViewType

    c, found, token = client(uri), {}, None
    query = f"tags.`{Tag.ROLE}` = 'trial' and attributes.status = 'FINISHED'"
    while True:
        page = c.search_runs(
            [experiment_id], query, ViewType.ACTIVE_ONLY, max_results=5000, page_token=token
        )
        for run in page:
            h = run.data.tags.get(Tag.CONFIG_HASH)
            if run.data.tags.get(Tag.OUTCOME) == "pruned":  # stopped short of its budget
                continue
            if h and h not in found:
                found[h] = {
                    "run_id": run.info.run_id,
                    "run_name": run.info.run_name,
                    "outcome": run.data.tags.get(Tag.OUTCOME, "completed"),
                    "loss": run.data.metrics.get("loss"),
                    "val_loss": run.data.metrics.get("val_loss"),
                    "parent": run.data.tags.get(Tag.PARENT),
                }
        token = page.token
        if not token:
            return found
