"""The run journal: one SQLite file per run directory, written as the run goes, read by reports and reruns.

Contract ("write the journal before you trust it"): an attempt is recorded before it is sent and
completed after; SQLite in WAL mode keeps every committed line across a kill -9, and an attempt without an end is
one that was in flight when the process died. The intents of changes are also appended to `intents.jsonl`, fsynced
with the same commit before the request leaves (one group commit for all requests released together), so a journal
that lost its tail gets them back. Every valid row starts as `not_attempted`, so a crash leaves every
unfinished row resendable. The secret key is never written here (only the masked SecretId).

A run directory is held by one process at a time: `open_journal` takes an exclusive lock on `RUN_DIR/.lock`.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import shlex
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from batchcert.classify import TRANSPORT_INTERRUPTED
from batchcert.errors import JournalError
from batchcert.model import CHANGE_ACTIONS, CallResult, Expected, Mapping, Outcome, Row
from batchcert.reconcile import CertificateInfo

JOURNAL_NAME = "journal.sqlite3"
WAL_NAME = "journal.sqlite3-wal"
#: a small file outside SQLite, written once the run is set up and after every session: the journal's own account
#: of what it holds, so a journal that lost its `-wal` is recognised as damaged, never as "nothing was sent"
MARKER_NAME = "run.json"
#: an append-only copy of every change's intent (attempt id, row, the state read before it), written and fsynced
#: with the journal's commit before the request leaves: a journal that lost its tail (a truncated `-wal`) gets those
#: attempts back from here, so no row this run changed can read as "already at the target before the run"
INTENTS_NAME = "intents.jsonl"
LOCK_NAME = ".lock"
#: the journal's schema: 1 as first released; 2 adds rows.expected and the sessions' operator and SecretId. An
#: older journal is brought up to date when a rerun opens it (`_bring_up_to_date`); a newer one is refused.
SCHEMA_VERSION = "2"
INTERRUPTED_CODE = TRANSPORT_INTERRUPTED
INTERRUPTED_MESSAGE = "no answer was read: the process stopped while this request was in flight"
RESTORED_MESSAGE = (
    f"the journal lost this request's record (restored from {INTENTS_NAME}): it was sent, its answer is unknown"
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS facts (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, started_at REAL NOT NULL, finished_at REAL,
    settings TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'running', note TEXT NOT NULL DEFAULT '',
    operator TEXT NOT NULL DEFAULT '', secret_id_masked TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS rows (
    row_number INTEGER PRIMARY KEY, listener_id TEXT NOT NULL, domain TEXT NOT NULL, certificate_id TEXT NOT NULL,
    client_certificate_id TEXT NOT NULL, poly_client_certificate_ids TEXT NOT NULL, extra TEXT NOT NULL,
    cells TEXT NOT NULL, problem TEXT NOT NULL DEFAULT '', duplicate_of INTEGER,
    outcome TEXT NOT NULL, error_code TEXT NOT NULL DEFAULT '', error_message TEXT NOT NULL DEFAULT '',
    request_id TEXT NOT NULL DEFAULT '', finished_at REAL,
    previous_read INTEGER NOT NULL DEFAULT 0, previous_certificate_id TEXT NOT NULL DEFAULT '',
    previous_client_ids TEXT NOT NULL DEFAULT '', verified TEXT NOT NULL DEFAULT '',
    verified_certificate_id TEXT NOT NULL DEFAULT '', verified_client_ids TEXT NOT NULL DEFAULT '',
    scope TEXT NOT NULL DEFAULT 'domain', proxy_id TEXT NOT NULL DEFAULT '', expected TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, row_number INTEGER, listener_id TEXT NOT NULL DEFAULT '',
    session_id INTEGER NOT NULL,
    action TEXT NOT NULL, sent_at REAL NOT NULL, finished_at REAL, request_id TEXT NOT NULL DEFAULT '',
    code TEXT, message TEXT NOT NULL DEFAULT '', http_status INTEGER, latency_ms REAL);
CREATE INDEX IF NOT EXISTS attempts_by_row ON attempts(row_number);
CREATE TABLE IF NOT EXISTS certificates (
    certificate_id TEXT PRIMARY KEY, type INTEGER NOT NULL, end_time REAL, subject_cn TEXT NOT NULL DEFAULT '',
    alias TEXT NOT NULL DEFAULT '');
"""
#: run directories made before the certificates table existed get it when written again
_CERTIFICATES_TABLE = _SCHEMA[_SCHEMA.index("CREATE TABLE IF NOT EXISTS certificates") :]


#: the writes of a row, as SQL: `action IN _CHANGES`
_CHANGES = "(" + ", ".join(f"'{action}'" for action in CHANGE_ACTIONS) + ")"


def _bring_up_to_date(db: sqlite3.Connection) -> None:
    """Give a journal written by an earlier batchcert what this one reads: the certificates table, the rows'
    scope and proxy_id (every earlier row was a domain row) and expected state (no earlier row had one)."""
    db.execute(_CERTIFICATES_TABLE)
    columns = {str(c[1]) for c in db.execute("PRAGMA table_info(rows)")}
    if "scope" not in columns:
        db.execute("ALTER TABLE rows ADD COLUMN scope TEXT NOT NULL DEFAULT 'domain'")
    if "proxy_id" not in columns:
        db.execute("ALTER TABLE rows ADD COLUMN proxy_id TEXT NOT NULL DEFAULT ''")
    if "expected" not in columns:
        db.execute("ALTER TABLE rows ADD COLUMN expected TEXT NOT NULL DEFAULT ''")
    session_columns = {str(c[1]) for c in db.execute("PRAGMA table_info(sessions)")}
    for name in ("operator", "secret_id_masked"):  # who ran each session (earlier journals: the run's facts say)
        if name not in session_columns:
            db.execute(f"ALTER TABLE sessions ADD COLUMN {name} TEXT NOT NULL DEFAULT ''")


def _expected_text(expected: Expected | None) -> str:
    """A row's expected current state as the journal stores it: "" for none, else JSON (client ids null when the
    mapping does not say)."""
    if expected is None:
        return ""
    clients = None if expected.client_ids is None else list(expected.client_ids)
    return json.dumps({"certificate_id": expected.certificate_id, "client_ids": clients})


def _expected_of(text: str) -> Expected | None:
    if not text:
        return None
    stored = json.loads(text)
    clients = stored.get("client_ids")
    return Expected(str(stored["certificate_id"]), None if clients is None else tuple(str(c) for c in clients))


def iso_utc(timestamp: float | None, timespec: str = "milliseconds") -> str:
    """Seconds since the epoch as ISO 8601 UTC (with milliseconds unless `timespec` says "seconds"); "" for None
    and 0 (no time)."""
    if not timestamp:
        return ""
    return datetime.fromtimestamp(timestamp, tz=UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


@dataclass(frozen=True)
class ReportRecord:
    """One line of the report: a mapping row with its outcome, history, reads and verification. Ids as the mapping
    gave them; `poly_client_certificate_ids` and the `*_ids` text fields are `;`-joined as the CSV shows them."""

    row: int
    listener_id: str
    domain: str
    certificate_id: str
    client_certificate_id: str
    poly_client_certificate_ids: str
    outcome: str
    error_code: str
    error_message: str
    attempts: int
    request_id: str
    request_ids: str
    started_at: str
    finished_at: str
    duplicate_of: int | None
    previous_read: bool
    previous_certificate_id: str
    previous_client_certificate_ids: str
    verified_certificate_id: str
    verified: str
    extra: tuple[tuple[str, str], ...]
    cells: tuple[str, ...]
    #: ISO 8601 UTC end of the server certificate the row installs, as the certificate pre-flight read it
    target_certificate_end_time: str = ""
    #: `domain`, or `listener` for a row that changes the listener's own certificates
    scope: str = "domain"
    proxy_id: str = ""
    #: a compare-and-swap row's expected current state (None: the mapping has no current → new columns)
    expected: Expected | None = None


@dataclass(frozen=True)
class FailedAttempt:
    """A line of the workbook's Errors sheet. `kind`: "final" (why a row is not done), "final (pre-flight)" (the
    same, found by the read before sending: nothing was sent), "pre-flight" (what that read found on a row it did
    not send: already at the target), "transient" (a failed request of a row that ended done, or a failed read),
    "attempt" (a failed request of a row not done: its history). Final lines come first."""

    kind: str
    row: int | None
    action: str
    sent_at: str
    code: str
    message: str
    request_id: str
    latency_ms: float | None


@dataclass(frozen=True)
class Attempt:
    """The handle of a journaled attempt, to complete it with `finish_attempt`."""

    id: int
    row_number: int


#: what a disk that refuses a write raises (read-only, full, permissions): the user's to fix, exit 2 naming the path
_STORAGE_FAILURES = (sqlite3.OperationalError, OSError)


class _LaterWrites:
    """`Journal._later`'s context: yields the connection, turns a refused write into JournalError, counts the line
    towards the group commit."""

    __slots__ = ("_journal",)

    def __init__(self, journal: Journal) -> None:
        self._journal = journal

    def __enter__(self) -> sqlite3.Connection:
        return self._journal._db

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, _tb: object) -> None:
        if isinstance(exc, _STORAGE_FAILURES):
            raise self._journal._storage_error(exc) from None
        if exc is None:
            self._journal._wrote_later()


class Journal:
    """A run directory's journal. Not thread-safe; one writer process (held by the lock)."""

    #: group commit: lines that need not be durable before the next send are committed with the next one that does,
    #: or after this many statements / seconds (SQLite commits cost more CPU than the writes they carry)
    GROUP_COMMIT_LINES = 256
    GROUP_COMMIT_S = 0.5
    #: the least time between two flushes (`durable`) while changes go out faster than that: the changes of one window
    #: share one fsync and one commit (each fsync costs ~0.1 ms of CPU here, more of wall clock), and none waits longer
    #: than this for its intent to be on disk — far under `schedule.LAG_TOLERANCE_S`, so pacing is not disturbed. At
    #: the API's own 20/s flushes are 50 ms apart and every one is immediate. 2 ms measured best on the bench's 10,000-
    #: and 30,000-row runs (1 ms groups too little; 5 ms delays the changes of a busy listener's chain).
    FLUSH_WINDOW_S = 0.002

    def __init__(self, run_dir: Path, connection: sqlite3.Connection, lock_fd: int | None) -> None:
        self.run_dir = run_dir
        self._db = connection
        self._lock_fd = lock_fd
        self._uncommitted = 0
        self._last_commit_s = time.monotonic()
        #: the senders waiting for this window's flush (`durable`), its timer, and when the last flush ran (loop s)
        self._flush_waiters: list[asyncio.Future[None]] = []
        self._flush_timer: asyncio.TimerHandle | None = None
        self._flushed_at = float("-inf")
        self._later_writes = _LaterWrites(self)
        #: INTENTS_NAME, opened for appending at the first intent; True while a line written is not yet fsynced
        self._intents_fd: int | None = None
        self._intents_unsynced = False
        #: each row's state before any change (this session's pre-flight, or an earlier session's), for the intents
        self._previous: dict[int, tuple[str, tuple[str, ...]]] = {}
        #: what `inspect_journal` found when the journal was opened (shown in the reports)
        self.warnings: tuple[str, ...] = ()
        #: opened by `rerun --reread` although it cannot prove it holds every change sent: every row may have been
        #: sent, and is read before it is sent again
        self.unproven = False
        self.session_id: int | None = None

    # -- lifecycle
    def close(self) -> None:
        if self._uncommitted or self._intents_unsynced:
            self.commit()
        if self._intents_fd is not None:
            os.close(self._intents_fd)
            self._intents_fd = None
        self._db.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """A transaction committed at the end of the block — with every line written `_later` before it."""
        with self._storage_errors(), self._db:
            yield self._db
        self._uncommitted = 0
        self._last_commit_s = time.monotonic()

    def _later(self) -> _LaterWrites:
        """Lines whose loss in a crash is safe, committed with the next `_tx` or in a group: an answer's record
        (without it, recovery treats the attempt as in flight, and the row is read back before anything is resent),
        reads, the state read before a change (committed at the latest with the first change's intent), outcomes
        and verification results (recovery and `rerun` settle them again). `with self._later() as db:` — an object,
        not a generator context manager: it runs several times per row."""
        return self._later_writes

    def _wrote_later(self) -> None:
        self._uncommitted += 1
        if (
            self._uncommitted >= self.GROUP_COMMIT_LINES
            or time.monotonic() - self._last_commit_s >= self.GROUP_COMMIT_S
        ):
            self.commit()

    @contextlib.contextmanager
    def _storage_errors(self) -> Iterator[None]:
        """A disk that refuses a write (read-only, full, permissions) is the user's to fix: exit 2 naming the path."""
        try:
            yield
        except _STORAGE_FAILURES as exc:
            raise self._storage_error(exc) from None

    def _storage_error(self, exc: BaseException) -> JournalError:
        return JournalError(f"cannot write the journal in {self.run_dir}: {exc}")

    async def durable(self) -> None:
        """Return once every line written so far is committed, the intents file fsynced first: no request leaves
        before its intent is on disk. Group commit: after a quiet FLUSH_WINDOW_S the caller commits at once, without
        waiting for the event loop; within the window of the last flush, callers wait for the next one and share it.
        Raises JournalError like `commit`."""
        loop = asyncio.get_running_loop()
        flush_at = self._flushed_at + self.FLUSH_WINDOW_S
        if self._flush_timer is None and flush_at <= loop.time():
            self._flushed_at = loop.time()
            self.commit()
            return
        waiter: asyncio.Future[None] = loop.create_future()
        self._flush_waiters.append(waiter)
        if self._flush_timer is None:
            self._flush_timer = loop.call_at(flush_at, self._flush_now)
        await waiter  # a cancelled caller gives up only its own wait; the flush goes on for the others

    def _flush_now(self) -> None:
        self._flushed_at = asyncio.get_running_loop().time()
        waiters, self._flush_waiters, self._flush_timer = self._flush_waiters, [], None
        refused: JournalError | None = None
        try:
            self.commit()
        except JournalError as exc:
            refused = exc
        for waiter in waiters:
            if waiter.done():
                continue  # cancelled: its sender gave up the wait
            if refused is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(refused)

    def commit(self) -> None:
        """Make every line written so far durable (the intents file first: it is what survives a lost `-wal`)."""
        with self._storage_errors():
            if self._intents_unsynced and self._intents_fd is not None:
                os.fsync(self._intents_fd)
                self._intents_unsynced = False
            self._db.commit()
        self._uncommitted = 0
        self._last_commit_s = time.monotonic()

    # -- facts and rows
    def facts(self) -> dict[str, str]:
        return dict(self._db.execute("SELECT key, value FROM facts").fetchall())

    def set_facts(self, **facts: str) -> None:
        with self._tx() as db:
            db.executemany("INSERT OR REPLACE INTO facts(key, value) VALUES (?, ?)", list(facts.items()))

    def record_mapping(self, mapping: Mapping) -> None:
        """Store every row of the mapping: invalid rows end `invalid`, the rest start `not_attempted`.

        One transaction, ending with the `ready` fact: a journal without it was cut off while being set up
        (nothing can have been sent), and `open_journal` refuses it."""
        with self._tx() as db:
            db.executemany(
                "INSERT INTO rows(row_number, listener_id, domain, certificate_id, client_certificate_id, "
                "poly_client_certificate_ids, extra, cells, problem, duplicate_of, outcome, error_message, scope, "
                "proxy_id, expected) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        r.row_number,
                        r.listener_id,
                        r.domain,
                        r.certificate_id,
                        r.client_certificate_id,
                        ";".join(r.poly_client_certificate_ids),
                        json.dumps(r.extra),
                        json.dumps(mapping.cells[r.row_number]),
                        mapping.problems.get(r.row_number, ""),
                        mapping.duplicate_of.get(r.row_number),
                        Outcome.INVALID if r.row_number in mapping.problems else Outcome.NOT_ATTEMPTED,
                        mapping.problems.get(r.row_number, ""),
                        r.scope,
                        r.proxy_id,
                        _expected_text(r.expected),
                    )
                    for r in mapping.rows
                ],
            )
            db.execute(
                "INSERT OR REPLACE INTO facts(key, value) VALUES ('columns', ?)",
                (json.dumps(mapping.columns),),
            )
            db.execute("INSERT OR REPLACE INTO facts(key, value) VALUES ('ready', 'true')")
        self._write_marker()

    def rows(self, outcomes: frozenset[Outcome] | None = None) -> list[Row]:
        """Primary rows (not duplicates), in mapping order, optionally only those with the given outcomes."""
        found = self._db.execute(
            "SELECT row_number, listener_id, domain, certificate_id, client_certificate_id, "
            "poly_client_certificate_ids, extra, outcome, scope, proxy_id, expected FROM rows WHERE duplicate_of IS NULL "
            "ORDER BY row_number"
        ).fetchall()
        return [
            Row(
                n,
                lid,
                dom,
                cert,
                client,
                tuple(p for p in poly.split(";") if p),
                tuple(tuple(x) for x in json.loads(extra)),
                scope,
                proxy,
                _expected_of(expected),
            )
            for n, lid, dom, cert, client, poly, extra, outcome, scope, proxy, expected in found
            if outcomes is None or Outcome(outcome) in outcomes
        ]

    def outcome_counts(self) -> dict[Outcome, int]:
        """Counts per outcome over every mapping row; a duplicate counts with its primary's outcome."""
        counts = dict.fromkeys(Outcome, 0)
        for outcome, n in self._db.execute(
            "SELECT COALESCE(p.outcome, r.outcome), COUNT(*) FROM rows r LEFT JOIN rows p ON p.row_number = r.duplicate_of "
            "GROUP BY 1"
        ):
            counts[Outcome(outcome)] = n
        return counts

    def row_outcomes(self) -> dict[int, Outcome]:
        """Current outcome of every primary row."""
        cur = self._db.execute("SELECT row_number, outcome FROM rows WHERE duplicate_of IS NULL")
        return {n: Outcome(o) for n, o in cur.fetchall()}

    def duplicate_counts(self) -> dict[int, int]:
        """Primary row number → how many identical copies of it the mapping has."""
        cur = self._db.execute("SELECT duplicate_of, COUNT(*) FROM rows WHERE duplicate_of IS NOT NULL GROUP BY 1")
        return {int(n): int(c) for n, c in cur.fetchall()}

    def recover(self) -> int:
        """Settle what a killed or interrupted process left open; returns how many rows it settled.

        - a row whose latest attempt answered OK but whose outcome was never written after that answer is `succeeded`
          (an outcome written later stands: a change the read-back found reverted);
        - an attempt that never got an answer (in flight at the kill, or abandoned at a second Ctrl-C) is closed as
          `Transport.Interrupted`, and its row becomes `retryable` (the change may or may not have applied).
        Idempotent; rows already settled are left alone.
        """
        now = time.time()
        settled = 0
        with self._tx() as db:
            self._restore_intents(db)
            latest = db.execute(
                "SELECT a.id, a.row_number, a.finished_at, a.code, a.request_id FROM attempts a "  # noqa: S608 - _CHANGES is a constant (CHANGE_ACTIONS), never input
                f"JOIN (SELECT row_number, MAX(id) AS id FROM attempts WHERE action IN {_CHANGES} "
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
                (now, self.session_id or 0),
            )
        return settled

    def _restore_intents(self, db: sqlite3.Connection) -> int:
        """Put back the attempts INTENTS_NAME holds and the journal lost (a truncated `-wal`), open — so recovery
        closes them as interrupted and the rerun reads the live state before resending — with the state read
        before them. A torn last line (the process died writing it: never sent) is skipped. Returns how many."""
        path = self.run_dir / INTENTS_NAME
        if not path.is_file():
            return 0
        known = {int(i) for (i,) in db.execute("SELECT id FROM attempts")}
        restored = 0
        with path.open(encoding="utf-8") as fh:
            for text in fh:
                try:
                    intent = json.loads(text)
                    attempt_id, row_number = int(intent["id"]), int(intent["row"])
                except (ValueError, KeyError, TypeError):
                    continue
                if attempt_id in known:
                    continue
                db.execute(
                    "INSERT INTO attempts(id, row_number, session_id, action, sent_at, message) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        attempt_id,
                        row_number,
                        int(intent.get("session") or 0),
                        str(intent.get("action", "")),
                        float(intent.get("sent_at") or 0),
                        RESTORED_MESSAGE,
                    ),
                )
                previous = intent.get("previous")
                if previous:
                    db.execute(
                        "UPDATE rows SET previous_read = 1, previous_certificate_id = ?, previous_client_ids = ? "
                        "WHERE row_number = ? AND previous_read = 0",
                        (str(previous[0]), ";".join(str(c) for c in previous[1]), row_number),
                    )
                known.add(attempt_id)
                restored += 1
        if restored:
            db.execute(
                "INSERT OR REPLACE INTO facts(key, value) VALUES ('intents_restored', ?)",
                (f"{restored} requests whose journal records were lost were restored from {INTENTS_NAME}",),
            )
        return restored

    # -- sessions (a run, then each rerun)
    def begin_session(self, kind: str, settings: dict[str, Any], operator: str = "", secret_id_masked: str = "") -> int:
        """Open a session (a run, then each rerun): its settings, who ran it and with which (masked) SecretId."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO sessions(kind, started_at, settings, operator, secret_id_masked) VALUES (?, ?, ?, ?, ?)",
                (kind, time.time(), json.dumps(settings), operator, secret_id_masked),
            )
        self.session_id = int(cur.lastrowid or 0)
        return self.session_id

    def end_session(self, status: str, note: str = "") -> None:
        """Close the session, fold the `-wal` into journal.sqlite3 (so the file is complete on its own, e.g. when the
        directory is copied) and record in run.json what the journal holds."""
        with self._tx() as db:
            db.execute(
                "UPDATE sessions SET finished_at = ?, status = ?, note = ? WHERE id = ?",
                (time.time(), status, note, self.session_id),
            )
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._write_marker()

    def _write_marker(self) -> None:
        """Write run.json durably (temporary file, fsync, rename)."""
        rows, attempts, sessions = self._db.execute(
            "SELECT (SELECT COUNT(*) FROM rows), (SELECT COUNT(*) FROM attempts), (SELECT COUNT(*) FROM sessions)"
        ).fetchone()
        marker = {
            "format": 1,
            "journal": JOURNAL_NAME,
            "mapping_sha256": self.facts().get("mapping_sha256", ""),
            "rows": rows,
            "attempts": attempts,
            "sessions": sessions,
            "written_at": iso_utc(time.time()),
        }
        target = self.run_dir / MARKER_NAME
        fd, tmp = tempfile.mkstemp(dir=self.run_dir, prefix=f".{MARKER_NAME}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(marker, fh, indent=2)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            raise JournalError(f"cannot write {target}: {exc}") from None

    def sessions(self) -> list[dict[str, Any]]:
        cur = self._db.execute(
            "SELECT id, kind, started_at, finished_at, settings, status, note, operator, secret_id_masked "
            "FROM sessions ORDER BY id"
        )
        return [
            {
                "id": i,
                "kind": k,
                "started_at": s,
                "finished_at": f,
                "settings": json.loads(st),
                "status": stat,
                "note": note,
                "operator": operator,
                "secret_id_masked": masked,
            }
            for i, k, s, f, st, stat, note, operator, masked in cur.fetchall()
        ]

    # -- attempts
    def begin_attempt(self, row_number: int, action: str) -> Attempt:
        """Record that an attempt is about to be sent. Not yet durable: the sender awaits `durable()` before the
        request leaves (or calls `commit()`)."""
        sent_at = time.time()
        with self._later() as db:
            cur = db.execute(
                "INSERT INTO attempts(row_number, session_id, action, sent_at) VALUES (?, ?, ?, ?)",
                (row_number, self.session_id or 0, action, sent_at),
            )
            attempt = Attempt(int(cur.lastrowid or 0), row_number)
            before = self._previous.get(row_number)
            line = {
                "id": attempt.id,
                "row": row_number,
                "session": self.session_id or 0,
                "action": action,
                "sent_at": sent_at,
                "previous": [before[0], list(before[1])] if before else None,
            }
            if self._intents_fd is None:
                self._intents_fd = os.open(self.run_dir / INTENTS_NAME, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            os.write(self._intents_fd, (json.dumps(line) + "\n").encode())
            self._intents_unsynced = True
        return attempt

    def finish_attempt(self, attempt: Attempt, result: CallResult) -> None:
        with self._later() as db:
            db.execute(
                "UPDATE attempts SET finished_at = ?, request_id = ?, code = ?, message = ?, http_status = ?, "
                "latency_ms = ? WHERE id = ?",
                (*_answer_fields(result), attempt.id),
            )

    def finish_row(
        self, row_number: int, outcome: Outcome, code: str = "", message: str = "", request_id: str = ""
    ) -> None:
        """Record a row's (current) outcome; a rerun may overwrite it later."""
        with self._later() as db:
            db.execute(
                "UPDATE rows SET outcome = ?, error_code = ?, error_message = ?, request_id = ?, finished_at = ? "
                "WHERE row_number = ?",
                (outcome.value, code, message, request_id, time.time(), row_number),
            )

    def finish_rows(self, row_numbers: list[int], outcome: Outcome, message: str) -> None:
        """Record the same outcome for many rows in one transaction (rows a stopped run never started)."""
        now = time.time()
        with self._tx() as db:
            db.executemany(
                "UPDATE rows SET outcome = ?, error_code = '', error_message = ?, request_id = '', finished_at = ? "
                "WHERE row_number = ?",
                [(outcome.value, message, now, n) for n in row_numbers],
            )

    def record_read(
        self,
        listener_id: str,
        result: CallResult,
        sent_at: float,
        row_number: int | None = None,
        action: str = "DescribeRules",
    ) -> None:
        """Record a read (DescribeRules, DescribeCertificates) after the fact: reads change nothing, so nothing is
        at stake before."""
        with self._later() as db:
            db.execute(
                "INSERT INTO attempts(row_number, listener_id, session_id, action, sent_at, finished_at, request_id, "
                "code, message, http_status, latency_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (row_number, listener_id, self.session_id or 0, action, sent_at, *_answer_fields(result)),
            )

    def previous_states(self) -> dict[int, tuple[str, tuple[str, ...]]]:
        """Row number → (certificate id, client ids) recorded before any change, for rows that have one."""
        cur = self._db.execute(
            "SELECT row_number, previous_certificate_id, previous_client_ids FROM rows WHERE previous_read = 1"
        )
        found = {int(n): (str(c), tuple(x for x in str(clients).split(";") if x)) for n, c, clients in cur.fetchall()}
        self._previous.update(found)
        return found

    def previous_state(self, row_number: int) -> tuple[str, tuple[str, ...]] | None:
        """A row's (certificate id, client ids) before any change, as recorded in this process or loaded by
        `previous_states` (no query: the verification of every listener asks)."""
        return self._previous.get(row_number)

    def modified_rows(self) -> frozenset[int]:
        """Rows with any ModifyCertificate attempt recorded."""
        cur = self._db.execute(f"SELECT DISTINCT row_number FROM attempts WHERE action IN {_CHANGES}")  # noqa: S608 - _CHANGES is a constant (CHANGE_ACTIONS), never input
        return frozenset(int(n) for (n,) in cur.fetchall())

    def record_previous(self, states: list[tuple[int, str, tuple[str, ...]]]) -> None:
        """Record rows' state before any change, as (row number, certificate id, client ids) — only the first time
        per row (a rerun keeps the original state)."""
        for n, cert, clients in states:
            self._previous.setdefault(n, (cert, clients))
        with self._later() as db:
            db.executemany(
                "UPDATE rows SET previous_read = 1, previous_certificate_id = ?, previous_client_ids = ? "
                "WHERE row_number = ? AND previous_read = 0",
                [(cert, ";".join(clients), n) for n, cert, clients in states],
            )

    def record_certificates(self, certificates: Iterable[CertificateInfo]) -> None:
        """Record the account's certificates as the certificate pre-flight read them (for the report's
        `target_certificate_end_time`)."""
        with self._tx() as db:
            db.executemany(
                "INSERT OR REPLACE INTO certificates(certificate_id, type, end_time, subject_cn, alias) "
                "VALUES (?, ?, ?, ?, ?)",
                [(c.certificate_id, c.type, c.end_time_s or None, c.subject_cn, c.alias) for c in certificates],
            )

    def record_verification(self, checks: list[tuple[int, str, tuple[str, ...], bool | str]]) -> None:
        """Record what the verification read saw, as (row number, certificate id, client ids, equals the target —
        or "pending" while the domain is still changing)."""
        with self._later() as db:
            db.executemany(
                "UPDATE rows SET verified = ?, verified_certificate_id = ?, verified_client_ids = ? WHERE row_number = ?",
                [
                    (ok if isinstance(ok, str) else ("true" if ok else "false"), cert, ";".join(clients), n)
                    for n, cert, clients, ok in checks
                ],
            )

    def certificates(self) -> list[CertificateInfo]:
        """The account's certificates as the run read them (the certificate pre-flight); [] when it never did."""
        return [
            CertificateInfo(str(cid), int(kind), int(end or 0), str(cn or ""), str(alias or ""))
            for cid, kind, end, cn, alias in self._db.execute(
                "SELECT certificate_id, type, end_time, subject_cn, alias FROM certificates ORDER BY certificate_id"
            )
        ]

    def unverified_listeners(self) -> frozenset[str]:
        """Listeners with a succeeded row whose live state was never read after the change (a session stopped
        before its verification read) or was still changing when last read."""
        cur = self._db.execute(
            "SELECT DISTINCT listener_id FROM rows WHERE duplicate_of IS NULL AND outcome = ? "
            "AND verified IN ('', 'pending')",
            (Outcome.SUCCEEDED.value,),
        )
        return frozenset(str(lid) for (lid,) in cur.fetchall())

    def last_modify_codes(self) -> dict[int, str]:
        """Row number → code of its latest ModifyCertificate attempt (rows with any)."""
        cur = self._db.execute(
            "SELECT a.row_number, a.code FROM attempts a JOIN (SELECT row_number, MAX(id) AS id FROM attempts "  # noqa: S608 - _CHANGES is a constant (CHANGE_ACTIONS), never input
            f"WHERE action IN {_CHANGES} GROUP BY row_number) m ON a.id = m.id"
        )
        return {int(n): str(c or "") for n, c in cur.fetchall()}

    # -- views for reports
    def report_records(self) -> Iterator[ReportRecord]:
        """One record per mapping row in mapping order, streamed from SQLite (a 100,000-row run is never held in
        memory whole): its outcome, reads and verification (a duplicate takes its primary's) and the history of its
        ModifyCertificate attempts across all sessions."""
        query = f"""
            SELECT r.row_number, r.listener_id, r.domain, r.certificate_id, r.client_certificate_id,
                   r.poly_client_certificate_ids, r.extra, r.cells, r.duplicate_of,
                   COALESCE(p.outcome, r.outcome), COALESCE(p.error_code, r.error_code),
                   COALESCE(p.error_message, r.error_message), COALESCE(p.request_id, r.request_id),
                   COALESCE(p.previous_read, r.previous_read),
                   COALESCE(p.previous_certificate_id, r.previous_certificate_id),
                   COALESCE(p.previous_client_ids, r.previous_client_ids), COALESCE(p.verified, r.verified),
                   COALESCE(p.verified_certificate_id, r.verified_certificate_id),
                   h.n, h.first_sent, h.last_done, h.request_ids, c.end_time, r.scope, r.proxy_id, r.expected
            FROM rows r
            LEFT JOIN rows p ON p.row_number = r.duplicate_of
            LEFT JOIN certificates c ON c.certificate_id = r.certificate_id
            LEFT JOIN (
                -- group_concat follows the attempts_by_row index: ascending id within a row, i.e. sending order
                SELECT row_number, COUNT(*) AS n, MIN(sent_at) AS first_sent,
                       MAX(COALESCE(finished_at, sent_at)) AS last_done,
                       GROUP_CONCAT(NULLIF(request_id, ''), ';') AS request_ids
                FROM attempts WHERE action IN {_CHANGES} GROUP BY row_number
            ) h ON h.row_number = COALESCE(r.duplicate_of, r.row_number)
            ORDER BY r.row_number
        """  # noqa: S608 - _CHANGES is a constant (CHANGE_ACTIONS), never input
        for values in self._db.execute(query):
            (n, lid, dom, cert, client, poly, extra, cells, dup, outcome, code, message, rid) = values[:13]
            (prev_read, prev_cert, prev_clients, verified, verified_cert, tries, first, last, rids, ends) = values[
                13:23
            ]
            scope, proxy_id, expected = values[23:]
            yield ReportRecord(
                row=n,
                listener_id=lid,
                domain=dom,
                certificate_id=cert,
                client_certificate_id=client,
                poly_client_certificate_ids=poly,
                outcome=outcome,
                error_code=code,
                error_message=message,
                attempts=tries or 0,
                request_id=rid,
                request_ids=rids or "",
                started_at=iso_utc(first),
                finished_at=iso_utc(last),
                duplicate_of=dup,
                previous_read=bool(prev_read),
                previous_certificate_id=prev_cert if prev_read else "",
                previous_client_certificate_ids=prev_clients if prev_read else "",
                verified_certificate_id=verified_cert,
                verified=verified,
                extra=tuple((str(k), str(v)) for k, v in json.loads(extra)),
                cells=tuple(str(c) for c in json.loads(cells)),
                target_certificate_end_time=iso_utc(ends, "seconds"),
                scope=scope,
                proxy_id=proxy_id,
                expected=_expected_of(expected),
            )

    def extra_column_names(self) -> list[str]:
        """The mapping's extra column names, in the order first seen."""
        names: dict[str, None] = {}
        for (extra,) in self._db.execute("SELECT DISTINCT extra FROM rows WHERE extra != '[]'"):
            names.update((str(name), None) for name, _ in json.loads(extra))
        return list(names)

    def request_counts(self) -> tuple[dict[str, int], dict[str, int]]:
        """Requests per action, and answers per code ("in flight" for none yet), most frequent first."""
        by_action = dict(self._db.execute("SELECT action, COUNT(*) FROM attempts GROUP BY 1 ORDER BY 2 DESC"))
        by_code = dict(
            self._db.execute("SELECT COALESCE(code, 'in flight'), COUNT(*) FROM attempts GROUP BY 1 ORDER BY 2 DESC")
        )
        return by_action, by_code

    def failed_attempts(self) -> Iterator[FailedAttempt]:
        """The Errors sheet, streamed: each row not done with its final error (mapping order), the pre-flight's
        findings, then every request that did not succeed (sending order) marked transient or not."""
        modified = self.modified_rows()
        for n, outcome, code, message, rid, finished in self._db.execute(
            "SELECT row_number, outcome, error_code, error_message, request_id, finished_at FROM rows "
            "WHERE outcome IN ('terminal', 'retryable', 'not_attempted', 'invalid', 'unchanged') "
            "AND duplicate_of IS NULL ORDER BY outcome = 'unchanged', row_number"
        ):
            if outcome == Outcome.UNCHANGED.value:
                kind = "pre-flight"
            else:
                kind = "final" if n in modified or outcome != Outcome.TERMINAL.value else "final (pre-flight)"
            yield FailedAttempt(kind, n, "", iso_utc(finished), code or outcome, message, rid, None)
        done = (Outcome.SUCCEEDED.value, Outcome.UNCHANGED.value)
        for values in self._db.execute(
            "SELECT a.row_number, a.action, a.sent_at, a.code, a.message, a.request_id, a.latency_ms, r.outcome "
            "FROM attempts a LEFT JOIN rows r ON r.row_number = a.row_number "
            "WHERE a.code IS NULL OR a.code != 'OK' ORDER BY a.id"
        ):
            n, action, sent_at, code, message, rid, latency, outcome = values
            kind = "transient" if outcome is None or outcome in done or action not in CHANGE_ACTIONS else "attempt"
            yield FailedAttempt(kind, n, action, iso_utc(sent_at), code or "in flight", message, rid, latency)

    def transient_error_counts(self) -> dict[str, int]:
        """Failed requests the run got past (their row ended done), by code, most frequent first."""
        return dict(
            self._db.execute(
                "SELECT a.code, COUNT(*) FROM attempts a JOIN rows r ON r.row_number = a.row_number "  # noqa: S608 - _CHANGES is a constant (CHANGE_ACTIONS), never input
                f"WHERE a.action IN {_CHANGES} AND a.code != 'OK' AND r.outcome IN ('succeeded', 'unchanged') "
                "GROUP BY a.code ORDER BY COUNT(*) DESC, a.code"
            ).fetchall()
        )

    def attempt_records(self) -> list[dict[str, Any]]:
        cur = self._db.execute(
            "SELECT id, row_number, listener_id, session_id, action, sent_at, finished_at, request_id, code, message, "
            "http_status, latency_ms FROM attempts ORDER BY id"
        )
        names = [c[0] for c in cur.description]
        return [dict(zip(names, values, strict=True)) for values in cur.fetchall()]


def _answer_fields(result: CallResult) -> tuple[Any, ...]:
    """An answer as the attempts table stores it: finished_at, request_id, code ("OK" on success), message,
    http_status, latency_ms."""
    return (
        time.time(),
        result.request_id,
        result.code or "OK",
        result.message,
        result.http_status,
        round(result.latency_s * 1000, 1),
    )


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level="DEFERRED")
    db.execute("PRAGMA journal_mode=WAL")
    # NORMAL: a commit survives a process crash (kill -9) but is fsynced only at checkpoints; what must survive a
    # power cut too — each change's intent — is fsynced in INTENTS_NAME before the request leaves (`commit`), so one
    # fsync per send instead of two (https://www.sqlite.org/pragma.html#pragma_synchronous, WAL mode)
    db.execute("PRAGMA synchronous=NORMAL")
    return db


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


def create_journal(run_dir: Path, facts: dict[str, str]) -> Journal:
    """Create a new run directory and its journal, locked. Raises JournalError when it already holds a journal."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise JournalError(f"cannot create the run directory {run_dir}: {exc} — choose another --out") from None
    path = run_dir / JOURNAL_NAME
    if path.exists() or (run_dir / MARKER_NAME).exists():
        raise JournalError(
            f"{run_dir} already holds a run — use `batchcert rerun {shlex.quote(str(run_dir))}` or choose another --out"
        )
    fd = _lock(run_dir)
    try:
        db = _connect(path)
        db.executescript(_SCHEMA)
        journal = Journal(run_dir, db, fd)
        journal.set_facts(schema_version=SCHEMA_VERSION, created_at=iso_utc(time.time()), **facts)
    except sqlite3.Error as exc:
        os.close(fd)
        raise JournalError(f"cannot write the journal in {run_dir}: {exc} — choose another --out") from None
    return journal


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
    with _copy_of(run_dir) as copy:
        db = sqlite3.connect(copy)
        try:
            return _inspect(run_dir, db, reread)
        except sqlite3.DatabaseError as exc:
            raise JournalError(_damaged(run_dir, f"it cannot be read ({exc})")) from None
        finally:
            db.close()


def _inspect(run_dir: Path, db: sqlite3.Connection, reread: bool = False) -> Inspection:
    marker = _read_marker(run_dir)
    wal = run_dir / WAL_NAME
    tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    ready = "facts" in tables and db.execute("SELECT value FROM facts WHERE key = 'ready'").fetchone() == ("true",)
    # Without run.json and without the -wal nothing shows how much of the run the main file holds: it was copied
    # alone, or made by a batchcert that wrote no run.json — never "nothing was sent" (README, "A journal that
    # proves what it holds")
    unproven = marker is None and not wal.is_file()
    intents = _intent_count(run_dir)
    if unproven and not ready and (intents or "facts" not in tables):
        # not even the setup reached the main file (only a -wal it was copied without holds it), or changes were
        # sent: a journal cleanly closed during its setup would hold its facts, and nothing in intents.jsonl
        raise JournalError(
            _damaged(
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
            _damaged(
                run_dir,
                f"it lacks the run's setup although {MARKER_NAME} says the run was set up; {WAL_NAME} {missing}, "
                f"and it holds the run's records — bring back {WAL_NAME} from where the run ran, beside "
                f"{JOURNAL_NAME}, and try again",
            )
        )
    _refuse_newer_schema(run_dir, db)
    check = db.execute("PRAGMA quick_check").fetchone()
    if check != ("ok",):
        raise JournalError(_damaged(run_dir, f"SQLite's integrity check says: {check[0] if check else 'nothing'}"))
    if unproven and not reread:
        raise JournalError(
            _damaged(
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
        raise JournalError(_damaged(run_dir, f"it holds {rows} mapping rows, {MARKER_NAME} says {marker['rows']}"))
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


def _refuse_newer_schema(run_dir: Path, db: sqlite3.Connection) -> None:
    """A journal written by a newer batchcert may hold what this one would misread: refuse it, naming both versions."""
    found = db.execute("SELECT value FROM facts WHERE key = 'schema_version'").fetchone()
    stored = str(found[0]) if found else "1"
    if not stored.isdigit():
        raise JournalError(_damaged(run_dir, f"its schema version {stored!r} is not a number"))
    if int(stored) > int(SCHEMA_VERSION):
        from batchcert import __version__

        raise JournalError(
            f"the journal of {run_dir} has schema version {stored}, written by a newer batchcert; this batchcert "
            f"({__version__}) reads schema version {SCHEMA_VERSION} and older — use the newer batchcert for this run "
            f"directory. Nothing in {run_dir} was changed."
        )


#: what a rerun --reread says of its journal (README, "A journal that proves what it holds")
REREAD_WARNING = (
    f"rebuilt from the live state (--reread): the journal could not prove it holds every change the run sent "
    f"({MARKER_NAME} and {WAL_NAME} were missing) — rows found at their target were read back, whether this run or "
    "someone else put them there is unknown, and rollback.csv lacks rows whose earlier state was lost"
)


def _intent_count(run_dir: Path) -> int:
    """Changes `intents.jsonl` records as sent (0 when it is absent or unreadable)."""
    try:
        with (run_dir / INTENTS_NAME).open("rb") as fh:
            return sum(1 for line in fh if line.strip())
    except OSError:
        return 0


def _damaged(run_dir: Path, what: str) -> str:
    return f"the journal of {run_dir} is damaged: {what}. Nothing in {run_dir} was changed."


@contextlib.contextmanager
def _copy_of(run_dir: Path) -> Iterator[Path]:
    """A private copy of the journal and its `-wal` (SQLite may write to what it opens; the original stays as it is)."""
    path = run_dir / JOURNAL_NAME
    if not path.is_file():
        raise JournalError(f"{run_dir} holds no {JOURNAL_NAME} — give the run directory a `batchcert run` created")
    if path.stat().st_size == 0:
        raise JournalError(
            _damaged(run_dir, f"{JOURNAL_NAME} is empty — bring back the journal from where the run ran")
        )
    with tempfile.TemporaryDirectory(prefix="batchcert-journal-") as tmp:
        copy = Path(tmp) / JOURNAL_NAME
        try:
            shutil.copyfile(path, copy)
            if (run_dir / WAL_NAME).is_file():
                shutil.copyfile(run_dir / WAL_NAME, Path(tmp) / WAL_NAME)
        except OSError as exc:
            raise JournalError(f"cannot read the journal of {run_dir}: {exc}") from None
        yield copy


def open_journal(run_dir: Path, reread: bool = False) -> Journal:
    """Open an existing run's journal for writing (rerun), locked, after `inspect_journal` found it whole (or, with
    `reread`, accepted it as unproven)."""
    inspection = inspect_journal(run_dir, reread)
    path = run_dir / JOURNAL_NAME
    fd = _lock(run_dir)
    # The -shm file is only an index of the -wal, rebuilt from it by the first connection; one left by a killed
    # process (or a power cut that truncated the -wal) may point past the -wal's end. We hold the directory, so no
    # other process has the journal open: let SQLite rebuild it.
    (run_dir / f"{JOURNAL_NAME}-shm").unlink(missing_ok=True)
    try:
        db = _connect(path)
        db.executescript(_SCHEMA)
    except sqlite3.Error as exc:
        os.close(fd)
        raise JournalError(f"cannot open the journal of {run_dir} for writing: {exc}") from None
    journal = Journal(run_dir, db, fd)
    journal.warnings = inspection.warnings
    journal.unproven = inspection.unproven
    with journal._tx() as tx:
        _bring_up_to_date(tx)
        tx.execute("INSERT OR REPLACE INTO facts(key, value) VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
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
    with _copy_of(run_dir) as copy:
        db = sqlite3.connect(copy, isolation_level="DEFERRED")
        _bring_up_to_date(db)  # in the private copy
        journal = Journal(run_dir, db, None)
        try:
            if not live:
                journal.recover()
            yield journal, inspection, live
        finally:
            journal.close()


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


def _read_marker(run_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((run_dir / MARKER_NAME).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise JournalError(_damaged(run_dir, f"{MARKER_NAME} cannot be read ({exc})")) from None
    return data if isinstance(data, dict) else None
