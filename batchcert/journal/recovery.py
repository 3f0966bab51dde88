"""What a reopened journal proves, and settling what a dead process left open.

Before anything opens a run directory's journal, `inspect_journal` checks on a private copy that it is whole: the
run's setup is there, run.json (`marker`) agrees with what it holds, its `-wal` is not lost, its schema is not newer
than this batchcert's. A journal that cannot prove it holds every change sent (run.json and the `-wal` both
missing) is refused — or, with `rerun --reread`, accepted as unproven. `recover` then settles what a killed or
interrupted process left open, restoring from intents.jsonl the attempts a journal that lost its tail lacks.
"""

from __future__ import annotations

import contextlib
import shlex
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from batchcert.classify import TRANSPORT_INTERRUPTED
from batchcert.errors import JournalError
from batchcert.journal.db import CHANGES, JOURNAL_NAME, WAL_NAME, Store, damaged, refuse_newer_schema
from batchcert.journal.intents import INTENTS_NAME, count_intents, read_intents
from batchcert.journal.marker import MARKER_NAME, read_marker
from batchcert.model import Outcome

INTERRUPTED_CODE = TRANSPORT_INTERRUPTED
INTERRUPTED_MESSAGE = "no answer was read: the process stopped while this request was in flight"
RESTORED_MESSAGE = (
    f"the journal lost this request's record (restored from {INTENTS_NAME}): it was sent, its answer is unknown"
)
#: what a rerun --reread says of its journal (README, "A journal that proves what it holds")
REREAD_WARNING = (
    f"rebuilt from the live state (--reread): the journal could not prove it holds every change the run sent "
    f"({MARKER_NAME} and {WAL_NAME} were missing) — rows found at their target were read back, whether this run or "
    "someone else put them there is unknown, and rollback.csv lacks rows whose earlier state was lost"
)


@dataclass(frozen=True)
class Inspection:
    """What a look at a run directory's journal found, without changing anything there."""

    #: warnings to show and report (the journal holds fewer records than run.json says it had)
    warnings: tuple[str, ...] = ()
    #: the journal cannot prove it holds every change the run sent (accepted by `rerun --reread` only)
    unproven: bool = False


def inspect_journal(run_dir: Path, reread: bool = False) -> Inspection:
    """Check that a run directory's journal is whole before anything opens it for writing — SQLite, opening a
    journal whose `-wal` is missing or damaged, would quietly start from the main file alone and may delete the
    `-wal`. The check runs on a copy in a temporary directory, so nothing in `run_dir` is modified or deleted.
    Raises JournalError (exit 2) saying what is missing or damaged and what to bring back. With `reread` (`rerun
    --reread`), a journal that cannot prove it is whole is accepted, with a warning: the rerun rebuilds what was
    sent from the live state."""
    with copy_of(run_dir) as copy:
        db = sqlite3.connect(copy)
        try:
            return _inspect(run_dir, db, reread)
        except sqlite3.DatabaseError as exc:
            raise JournalError(damaged(run_dir, f"it cannot be read ({exc})")) from None
        finally:
            db.close()


def _inspect(run_dir: Path, db: sqlite3.Connection, reread: bool = False) -> Inspection:
    marker = read_marker(run_dir)
    wal = run_dir / WAL_NAME
    tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    ready = "facts" in tables and db.execute("SELECT value FROM facts WHERE key = 'ready'").fetchone() == ("true",)
    # Without run.json and without the -wal nothing shows how much of the run the main file holds: it was copied
    # alone, or made by a batchcert that wrote no run.json — never "nothing was sent" (README, "A journal that
    # proves what it holds")
    unproven = marker is None and not wal.is_file()
    intents = count_intents(run_dir)
    if unproven and not ready and (intents or "facts" not in tables):
        # not even the setup reached the main file (only a -wal it was copied without holds it), or changes were
        # sent: a journal cleanly closed during its setup would hold its facts, and nothing in intents.jsonl
        raise JournalError(
            damaged(
                run_dir,
                f"{JOURNAL_NAME} holds no record of the run's rows"
                + (f" although {INTENTS_NAME} records {intents} change(s) sent" if intents else "")
                + f", and {MARKER_NAME} and {WAL_NAME} are missing, which hold what it lacks — bring back "
                f"{WAL_NAME} (and {MARKER_NAME}) from where the run ran. If they are lost, start the run again "
                "with a new --out: rows this run changed will then read as unchanged and be missing from "
                "rollback.csv",
            )
        )
    if not ready:
        if marker is None:
            raise JournalError(
                f"{run_dir} holds a journal cut off while the run was being set up — nothing was sent; delete the "
                f"directory and start the run again (if this directory was copied, bring back {WAL_NAME} too)"
            )
        missing = "is missing" if not wal.exists() else "cannot be read (damaged)"
        raise JournalError(
            damaged(
                run_dir,
                f"it lacks the run's setup although {MARKER_NAME} says the run was set up; {WAL_NAME} {missing}, "
                f"and it holds the run's records — bring back {WAL_NAME} from where the run ran, beside "
                f"{JOURNAL_NAME}, and try again",
            )
        )
    refuse_newer_schema(run_dir, db)
    check = db.execute("PRAGMA quick_check").fetchone()
    if check != ("ok",):
        raise JournalError(damaged(run_dir, f"SQLite's integrity check says: {check[0] if check else 'nothing'}"))
    if unproven and not reread:
        raise JournalError(
            damaged(
                run_dir,
                f"{MARKER_NAME} and {WAL_NAME} are both missing (a run directory of an earlier batchcert, or "
                f"{JOURNAL_NAME} copied alone), so nothing shows that {JOURNAL_NAME} holds every change the run "
                f"sent — bring back {WAL_NAME} (and {MARKER_NAME}) from where the run ran, or run `batchcert "
                f"rerun {shlex.quote(str(run_dir))} --reread` to rebuild what was sent from the live state",
            )
        )
    if unproven:
        return Inspection((REREAD_WARNING,), unproven=True)
    if marker is None:
        return Inspection()
    rows = db.execute("SELECT COUNT(*) FROM rows").fetchone()[0]
    if rows != marker.get("rows", rows):
        raise JournalError(damaged(run_dir, f"it holds {rows} mapping rows, {MARKER_NAME} says {marker['rows']}"))
    attempts = db.execute("SELECT COUNT(*) FROM attempts").fetchone()[0]
    if attempts < int(marker.get("attempts", 0)):
        return Inspection(
            (
                f"the journal lost records: it holds {attempts} requests, {MARKER_NAME} recorded "
                f"{marker['attempts']} at the end of a session — rows whose records are gone are settled by reading "
                "the live state (rerun), and the report says so",
            )
        )
    return Inspection()


@contextlib.contextmanager
def copy_of(run_dir: Path) -> Iterator[Path]:
    """A private copy of the journal and its `-wal` (SQLite may write to what it opens; the original stays as it is)."""
    path = run_dir / JOURNAL_NAME
    if not path.is_file():
        raise JournalError(f"{run_dir} holds no {JOURNAL_NAME} — give the run directory a `batchcert run` created")
    if path.stat().st_size == 0:
        raise JournalError(damaged(run_dir, f"{JOURNAL_NAME} is empty — bring back the journal from where the run ran"))
    with tempfile.TemporaryDirectory(prefix="batchcert-journal-") as tmp:
        copy = Path(tmp) / JOURNAL_NAME
        try:
            shutil.copyfile(path, copy)
            if (run_dir / WAL_NAME).is_file():
                shutil.copyfile(run_dir / WAL_NAME, Path(tmp) / WAL_NAME)
        except OSError as exc:
            raise JournalError(f"cannot read the journal of {run_dir}: {exc}") from None
        yield copy


def recover(store: Store, session_id: int | None) -> int:
    """Settle what a killed or interrupted process left open; returns how many rows it settled.

    - a row whose latest attempt answered OK but whose outcome was never written after that answer is `succeeded`
      (an outcome written later stands: a change the read-back found reverted);
    - an attempt that never got an answer (in flight at the kill, or abandoned at a second Ctrl-C) is closed as
      `Transport.Interrupted`, and its row becomes `retryable` (the change may or may not have applied);
    - every session but `session_id` (the one open now) that never ended is marked 'died'.
    Idempotent; rows already settled are left alone.
    """
    now = time.time()
    settled = 0
    with store.tx() as db:
        _restore_intents(store.run_dir, db)
        latest = db.execute(
            "SELECT a.id, a.row_number, a.finished_at, a.code, a.request_id FROM attempts a "  # noqa: S608 - CHANGES is a constant (CHANGE_ACTIONS), never input
            f"JOIN (SELECT row_number, MAX(id) AS id FROM attempts WHERE action IN {CHANGES} "
            "GROUP BY row_number) m ON a.id = m.id "
            "JOIN rows r ON r.row_number = a.row_number "
            # an OK answer the row's outcome never followed — not one a later judgment followed (a change the
            # read-back found reverted is written after its answer)
            "WHERE a.finished_at IS NULL OR (a.code = 'OK' AND r.outcome != 'succeeded' "
            "AND (r.finished_at IS NULL OR r.finished_at < a.finished_at))"
        ).fetchall()
        messages = dict(db.execute("SELECT id, message FROM attempts WHERE finished_at IS NULL").fetchall())
        for attempt_id, row_number, finished_at, _code, request_id in latest:
            if finished_at is None:
                message = messages.get(attempt_id) or INTERRUPTED_MESSAGE
                db.execute(
                    "UPDATE rows SET outcome = ?, error_code = ?, error_message = ?, finished_at = ? "
                    "WHERE row_number = ?",
                    (Outcome.RETRYABLE.value, INTERRUPTED_CODE, message, now, row_number),
                )
            else:
                db.execute(
                    "UPDATE rows SET outcome = ?, error_code = '', error_message = '', request_id = ?, "
                    "finished_at = ? WHERE row_number = ?",
                    (Outcome.SUCCEEDED.value, request_id, finished_at, row_number),
                )
            settled += 1
        # every request left without an answer (also one a later attempt of its row followed) is closed
        db.execute(
            "UPDATE attempts SET finished_at = ?, code = ?, message = CASE WHEN message = '' THEN ? ELSE message "
            "END WHERE finished_at IS NULL",
            (now, INTERRUPTED_CODE, INTERRUPTED_MESSAGE),
        )
        db.execute(
            "UPDATE sessions SET finished_at = ?, status = 'died' WHERE finished_at IS NULL AND id != ?",
            (now, session_id or 0),
        )
    return settled


def _restore_intents(run_dir: Path, db: sqlite3.Connection) -> int:
    """Put back the attempts INTENTS_NAME holds and the journal lost (a truncated `-wal`), open — so recovery
    closes them as interrupted and the rerun reads the live state before resending — with the state read
    before them. A torn last line (the process died writing it: never sent) is skipped. Returns how many."""
    known = frozenset(int(i) for (i,) in db.execute("SELECT id FROM attempts"))
    restored = 0
    for intent in read_intents(run_dir, known):
        db.execute(
            "INSERT INTO attempts(id, row_number, session_id, action, sent_at, message) VALUES (?, ?, ?, ?, ?, ?)",
            (intent.id, intent.row, intent.session, intent.action, intent.sent_at, RESTORED_MESSAGE),
        )
        if intent.previous:
            certificate_id, client_ids = intent.previous
            db.execute(
                "UPDATE rows SET previous_read = 1, previous_certificate_id = ?, previous_client_ids = ? "
                "WHERE row_number = ? AND previous_read = 0",
                (certificate_id, ";".join(client_ids), intent.row),
            )
        restored += 1
    if restored:
        db.execute(
            "INSERT OR REPLACE INTO facts(key, value) VALUES ('intents_restored', ?)",
            (f"{restored} requests whose journal records were lost were restored from {INTENTS_NAME}",),
        )
    return restored
