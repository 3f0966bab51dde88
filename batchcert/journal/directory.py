"""Opening a run directory's journal: `create_journal` for a new run, `open_journal` for a rerun, `read_journal`
for a report. A run directory is held by one process at a time: creating and opening take an exclusive lock on
`RUN_DIR/.lock`; reading works on a private copy and only asks whether another process holds it."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from batchcert.errors import JournalError
from batchcert.journal import db
from batchcert.journal.facade import Journal
from batchcert.journal.marker import MARKER_NAME
from batchcert.journal.recovery import REREAD_WARNING, Inspection, copy_of, inspect_journal
from batchcert.journal.views import iso_utc
from batchcert.model import command_to_rerun

LOCK_NAME = ".lock"


def _lock(run_dir: Path) -> int:
    fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise JournalError(
            f"another batchcert process is working on {run_dir} — wait for it to finish (or stop it) and try again"
        ) from None
    return fd


def _is_held(run_dir: Path) -> bool:
    """True when another process holds the run directory's lock (a live run)."""
    try:
        fd = os.open(run_dir / LOCK_NAME, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def create_journal(run_dir: Path, facts: dict[str, str]) -> Journal:
    """Create a new run directory and its journal, locked. Raises JournalError when it already holds a journal."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise JournalError(f"cannot create the run directory {run_dir}: {exc} — choose another --out") from None
    path = run_dir / db.JOURNAL_NAME
    if path.exists() or (run_dir / MARKER_NAME).exists():
        raise JournalError(f"{run_dir} already holds a run — use `{command_to_rerun(run_dir)}` or choose another --out")
    fd = _lock(run_dir)
    try:
        connection = db.connect(path)
        connection.executescript(db.SCHEMA)
        journal = Journal(run_dir, connection, fd)
        journal.set_facts(schema_version=db.SCHEMA_VERSION, created_at=iso_utc(time.time()), **facts)
    except sqlite3.Error as exc:
        os.close(fd)
        raise JournalError(f"cannot write the journal in {run_dir}: {exc} — choose another --out") from None
    return journal


def open_journal(run_dir: Path, reread: bool = False) -> Journal:
    """Open an existing run's journal for writing (rerun), locked, after `inspect_journal` found it whole (or, with
    `reread`, accepted it as unproven), brought up to this batchcert's schema."""
    inspection = inspect_journal(run_dir, reread)
    path = run_dir / db.JOURNAL_NAME
    fd = _lock(run_dir)
    # The -shm file is only an index of the -wal, rebuilt from it by the first connection; one left by a killed
    # process (or a power cut that truncated the -wal) may point past the -wal's end. We hold the directory, so no
    # other process has the journal open: let SQLite rebuild it.
    (run_dir / f"{db.JOURNAL_NAME}-shm").unlink(missing_ok=True)
    try:
        connection = db.connect(path)
        connection.executescript(db.SCHEMA)
    except sqlite3.Error as exc:
        os.close(fd)
        raise JournalError(f"cannot open the journal of {run_dir} for writing: {exc}") from None
    journal = Journal(run_dir, connection, fd)
    journal.warnings = inspection.warnings
    journal.unproven = inspection.unproven
    with journal.store.tx() as tx:
        db.migrate(tx)
        if inspection.unproven:  # every later report says so too
            tx.execute("INSERT OR REPLACE INTO facts(key, value) VALUES ('journal_unproven', ?)", (REREAD_WARNING,))
    return journal


@contextlib.contextmanager
def read_journal(run_dir: Path) -> Iterator[tuple[Journal, Inspection, bool]]:
    """A read-only view of a run's journal: a private copy (so it may run beside a live run, on a read-only run
    directory, and never changes the original). Yields (journal, inspection, live): `live` is True when another
    process holds the run directory now. When no process does, what a dead process left open is settled in the
    copy (attempts in flight become `Transport.Interrupted`), as `rerun` would settle it."""
    inspection = inspect_journal(run_dir)
    live = _is_held(run_dir)
    with copy_of(run_dir) as copy:
        connection = sqlite3.connect(copy, isolation_level="DEFERRED")
        db.bring_up_to_date(connection)  # in the private copy
        journal = Journal(run_dir, connection, None)
        try:
            if not live:
                journal.recover()
            yield journal, inspection, live
        finally:
            journal.close()
