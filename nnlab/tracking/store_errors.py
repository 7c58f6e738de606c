"""What a store error means: its root cause (readonly, locked, disk full) and the fix, in one line.

MLflow's sqlite store wraps sqlite's own error in SQLAlchemy's ("raised as a result of
Query-invoked autoflush ...") and an ``MlflowException``, and logs a 40-90 line traceback; the
cause at the root of that chain is what tells the user what to do. :func:`describe_store_error`
finds it; ``nnlab.tracking.store.one_line`` uses it for every store error it meets.
"""

from __future__ import annotations

import errno
from pathlib import Path

__all__ = ["OS_CAUSES", "SQLITE_CAUSES", "describe_store_error", "store_cause"]

# sqlite's message (lower case, a part of it) -> (what the user reads, the fix; {db} and {dir}
# are the store file and its directory). SQLAlchemy and MLflow wrap these in "Query-invoked
# autoflush" and a traceback: the root cause is what says what to do.
SQLITE_CAUSES: dict[str, tuple[str, str]] = {
    "readonly database": (
        "store is readonly",
        "make {db} and its directory writable (permissions, `lsattr`/`chattr -i`, a read-only "
        "mount), or point tracking.uri at a writable store",
    ),
    "database is locked": (
        "store is locked",
        "another process held its write lock too long: find it with `fuser {db}` (or lsof), let "
        "it finish or stop it, then run the same command again",
    ),
    "database or disk is full": (
        "disk full",
        "free space on the disk of {dir} (df -h {dir}), then run the same command again",
    ),
    "disk i/o error": (
        "disk I/O error",
        "{db} or its -wal/-shm files went away or the disk failed (deleted or moved mid-run?); "
        "check the file and the disk, then run the same command again",
    ),
    "unable to open database file": (
        "cannot open the store",
        "check that {dir} exists and is readable and writable",
    ),
}
# the OS's own errors (an artifact copy, a -wal file) -> what the user reads
OS_CAUSES = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "not permitted",
}


def store_cause(exc: BaseException) -> BaseException | None:
    """The sqlite or OS error at the root of ``exc`` (following ``__cause__``/``__context__``
    and SQLAlchemy's ``orig``), when it is one :data:`SQLITE_CAUSES`/:data:`OS_CAUSES` know."""
    import sqlite3

    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, sqlite3.Error) and _sqlite_entry(str(e)) is not None:
            return e
        if isinstance(e, OSError) and e.errno in OS_CAUSES:
            return e
        orig = getattr(e, "orig", None)
        todo += [orig if isinstance(orig, BaseException) else None, e.__cause__, e.__context__]
    return None


def _sqlite_entry(message: str) -> tuple[str, str] | None:
    low = message.lower()
    return next((v for k, v in SQLITE_CAUSES.items() if k in low), None)


def describe_store_error(exc: BaseException, uri: str | None = None) -> str:
    """One line for a store error: its root cause (readonly, locked, disk full, ...) and the fix.

    ``store is readonly: attempt to write a readonly database (sqlite3.OperationalError); make
    <file> and its directory writable ...``. Errors without a known cause give
    ``Type: first line`` as :func:`one_line` does. ``uri`` (a ``sqlite:///`` one) lets the fix
    name the file; :func:`one_line` calls this for every store error it meets.
    """
    import sqlite3

    cause = store_cause(exc)
    if cause is None:
        text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
        return f"{type(exc).__name__}: {text}"[:300]
    from nnlab.tracking.store import sqlite_path  # it imports this module

    db = sqlite_path(uri) if uri else None
    where = {
        "db": str(db) if db else "the store file",
        "dir": str(db.parent) if db else "its directory",
    }
    if isinstance(cause, sqlite3.Error):
        what, fix = _sqlite_entry(str(cause)) or ("", "")
        return f"{what}: {cause} ({type(cause).__module__}.{type(cause).__name__}); " + fix.format(
            **where
        )
    path = getattr(cause, "filename", None)
    folder = str(Path(path).parent) if path else where["dir"]
    fixes = {
        errno.ENOSPC: f"free space on the disk of {folder} (df -h {folder})",
        errno.EDQUOT: f"free space in your quota on {folder}",
    }
    fix = fixes.get(cause.errno, f"make {folder} writable")
    return (
        f"{OS_CAUSES[cause.errno]}: {cause.strerror}" + (f": {path}" if path else "") + f"; {fix}"
    )
