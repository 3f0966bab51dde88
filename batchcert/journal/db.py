"""The journal's SQLite database: the connection, the schema and its stored version (read, migrated, a newer one
refused), how a column stores a row's expected state, and `Store` — transactions, group commit and durability.

SQLite in WAL mode keeps every committed line across a kill -9; what must survive a power cut too — each change's
intent — is fsynced in the intents file (`intents.IntentLog`) with the same commit, before the request leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from batchcert.api.vocabulary import CHANGE_ACTIONS
from batchcert.errors import JournalError
from batchcert.journal.intents import IntentLog
from batchcert.model import Basis, Expected, Outcome

JOURNAL_NAME = "journal.sqlite3"
WAL_NAME = "journal.sqlite3-wal"
#: the journal's schema: 1 as first released; 2 adds rows.expected and the sessions' operator and SecretId; 3
#: rows.basis; 4 what the edge served; 5 rows.profile and the accounts each session signed for. An
#: older journal is brought up to date when a rerun opens it (`migrate`); a newer one is refused
#: (`refuse_newer_schema`).
SCHEMA_VERSION = "5"

SCHEMA = """
CREATE TABLE IF NOT EXISTS facts (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, started_at REAL NOT NULL, finished_at REAL,
    settings TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'running', note TEXT NOT NULL DEFAULT '',
    operator TEXT NOT NULL DEFAULT '', secret_id_masked TEXT NOT NULL DEFAULT '',
    credential_source TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS rows (
    row_number INTEGER PRIMARY KEY, listener_id TEXT NOT NULL, domain TEXT NOT NULL, certificate_id TEXT NOT NULL,
    client_certificate_id TEXT NOT NULL, poly_client_certificate_ids TEXT NOT NULL, extra TEXT NOT NULL,
    cells TEXT NOT NULL, problem TEXT NOT NULL DEFAULT '', duplicate_of INTEGER,
    outcome TEXT NOT NULL, error_code TEXT NOT NULL DEFAULT '', error_message TEXT NOT NULL DEFAULT '',
    request_id TEXT NOT NULL DEFAULT '', finished_at REAL,
    previous_read INTEGER NOT NULL DEFAULT 0, previous_certificate_id TEXT NOT NULL DEFAULT '',
    previous_client_ids TEXT NOT NULL DEFAULT '', verified TEXT NOT NULL DEFAULT '',
    verified_certificate_id TEXT NOT NULL DEFAULT '', verified_client_ids TEXT NOT NULL DEFAULT '',
    scope TEXT NOT NULL DEFAULT 'domain', proxy_id TEXT NOT NULL DEFAULT '', expected TEXT NOT NULL DEFAULT '',
    basis TEXT NOT NULL DEFAULT '', served TEXT NOT NULL DEFAULT '', served_sha256 TEXT NOT NULL DEFAULT '',
    served_subject TEXT NOT NULL DEFAULT '', served_not_after REAL, served_note TEXT NOT NULL DEFAULT '',
    profile TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, row_number INTEGER, listener_id TEXT NOT NULL DEFAULT '',
    session_id INTEGER NOT NULL,
    action TEXT NOT NULL, sent_at REAL NOT NULL, finished_at REAL, request_id TEXT NOT NULL DEFAULT '',
    code TEXT, message TEXT NOT NULL DEFAULT '', http_status INTEGER, latency_ms REAL);
CREATE INDEX IF NOT EXISTS attempts_by_row ON attempts(row_number);
CREATE TABLE IF NOT EXISTS certificates (
    certificate_id TEXT PRIMARY KEY, type INTEGER NOT NULL, end_time REAL, subject_cn TEXT NOT NULL DEFAULT '',
    alias TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS session_accounts (
    session_id INTEGER NOT NULL, profile TEXT NOT NULL, secret_id_masked TEXT NOT NULL,
    credential_source TEXT NOT NULL, PRIMARY KEY (session_id, profile));
"""
#: how a journal of schema 2 or older marked a row confirmed by read-back (`Basis.READ_BACK`): by this message alone
_READ_BACK_MESSAGE_BEFORE_3 = (
    "succeeded: confirmed by read-back (the state before the run differed); attempt record missing"
)
#: the rows' columns schema 4 added: what probing the edge found (`ServedCheck`)
_SERVED_COLUMNS = (
    ("served", "TEXT NOT NULL DEFAULT ''"),
    ("served_sha256", "TEXT NOT NULL DEFAULT ''"),
    ("served_subject", "TEXT NOT NULL DEFAULT ''"),
    ("served_not_after", "REAL"),
    ("served_note", "TEXT NOT NULL DEFAULT ''"),
)
#: run directories made before the certificates table (schema 5: the session_accounts table) existed get them when
#: written again
_LATER_TABLES = SCHEMA[SCHEMA.index("CREATE TABLE IF NOT EXISTS certificates") :]

#: the writes of a row, as SQL: `action IN CHANGES`
CHANGES = "(" + ", ".join(f"'{action}'" for action in CHANGE_ACTIONS) + ")"

#: what a disk that refuses a write raises (read-only, full, permissions): the user's to fix, exit 2 naming the path
_STORAGE_FAILURES = (sqlite3.OperationalError, OSError)


def connect(path: Path) -> sqlite3.Connection:
    """Open the journal at `path` for writing: WAL mode, synchronous NORMAL."""
    db = sqlite3.connect(path, isolation_level="DEFERRED")
    db.execute("PRAGMA journal_mode=WAL")
    # NORMAL: a commit survives a process crash (kill -9) but is fsynced only at checkpoints; what must survive a
    # power cut too — each change's intent — is fsynced in the intents file before the request leaves
    # (`Store.commit`), so one fsync per send instead of two
    # (https://www.sqlite.org/pragma.html#pragma_synchronous, WAL mode)
    db.execute("PRAGMA synchronous=NORMAL")
    return db


def bring_up_to_date(db: sqlite3.Connection) -> None:
    """Give a journal written by an earlier batchcert what this one reads: the certificates table, the rows'
    scope and proxy_id (every earlier row was a domain row), expected state (no earlier row had one) and basis
    (schema 3; the rows an earlier batchcert confirmed by read-back carry it from their message)."""
    for statement in _LATER_TABLES.split(";"):  # not executescript: it would commit the caller's transaction
        if statement.strip():
            db.execute(statement)
    columns = {str(c[1]) for c in db.execute("PRAGMA table_info(rows)")}
    if "scope" not in columns:
        db.execute("ALTER TABLE rows ADD COLUMN scope TEXT NOT NULL DEFAULT 'domain'")
    if "proxy_id" not in columns:
        db.execute("ALTER TABLE rows ADD COLUMN proxy_id TEXT NOT NULL DEFAULT ''")
    if "expected" not in columns:
        db.execute("ALTER TABLE rows ADD COLUMN expected TEXT NOT NULL DEFAULT ''")
    if "basis" not in columns:  # schema 3: before it, such a row was known only by its message
        db.execute("ALTER TABLE rows ADD COLUMN basis TEXT NOT NULL DEFAULT ''")
        db.execute(
            "UPDATE rows SET basis = ? WHERE outcome = ? AND error_message = ?",
            (Basis.READ_BACK.value, Outcome.SUCCEEDED.value, _READ_BACK_MESSAGE_BEFORE_3),
        )
    for name, kind in _SERVED_COLUMNS:  # schema 4: what the edge served (no earlier row was probed)
        if name not in columns:
            db.execute(f"ALTER TABLE rows ADD COLUMN {name} {kind}")
    if "profile" not in columns:  # schema 5: every earlier row was sent with the run's one credential
        db.execute("ALTER TABLE rows ADD COLUMN profile TEXT NOT NULL DEFAULT ''")
    session_columns = {str(c[1]) for c in db.execute("PRAGMA table_info(sessions)")}
    # who ran each session and which credential provider signed (earlier journals: the run's facts say)
    for name in ("operator", "secret_id_masked", "credential_source"):
        if name not in session_columns:
            db.execute(f"ALTER TABLE sessions ADD COLUMN {name} TEXT NOT NULL DEFAULT ''")


def migrate(db: sqlite3.Connection) -> None:
    """Bring a journal opened for writing up to date (`bring_up_to_date`) and record that it is now SCHEMA_VERSION."""
    bring_up_to_date(db)
    db.execute("INSERT OR REPLACE INTO facts(key, value) VALUES ('schema_version', ?)", (SCHEMA_VERSION,))


def refuse_newer_schema(run_dir: Path, db: sqlite3.Connection) -> None:
    """A journal written by a newer batchcert may hold what this one would misread: refuse it, naming both versions.
    A journal without a stored version is of schema 1."""
    found = db.execute("SELECT value FROM facts WHERE key = 'schema_version'").fetchone()
    stored = str(found[0]) if found else "1"
    if not stored.isdigit():
        raise JournalError(damaged(run_dir, f"its schema version {stored!r} is not a number"))
    if int(stored) > int(SCHEMA_VERSION):
        from batchcert import __version__

        raise JournalError(
            f"the journal of {run_dir} has schema version {stored}, written by a newer batchcert; this batchcert "
            f"({__version__}) reads schema version {SCHEMA_VERSION} and older — use the newer batchcert for this run "
            f"directory. Nothing in {run_dir} was changed."
        )


def damaged(run_dir: Path, what: str) -> str:
    """The message for a journal found damaged: what is wrong, and that nothing was changed."""
    return f"the journal of {run_dir} is damaged: {what}. Nothing in {run_dir} was changed."


def expected_text(expected: Expected | None) -> str:
    """A row's expected current state as the journal stores it: "" for none, else JSON (client ids null when the
    mapping does not say)."""
    if expected is None:
        return ""
    clients = None if expected.client_ids is None else list(expected.client_ids)
    return json.dumps({"certificate_id": expected.certificate_id, "client_ids": clients})


def expected_of(text: str) -> Expected | None:
    """A row's expected current state from its stored text (`expected_text`)."""
    if not text:
        return None
    stored = json.loads(text)
    clients = stored.get("client_ids")
    return Expected(str(stored["certificate_id"]), None if clients is None else tuple(str(c) for c in clients))


class _LaterWrites:
    """`Store.later`'s context: yields the connection, turns a refused write into JournalError, counts the line
    towards the group commit."""

    __slots__ = ("_store",)

    def __init__(self, store: Store) -> None:
        self._store = store

    def __enter__(self) -> sqlite3.Connection:
        return self._store.connection

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, _tb: object) -> None:
        if isinstance(exc, _STORAGE_FAILURES):
            raise self._store._storage_error(exc) from None
        if exc is None:
            self._store._wrote_later()


class Store:
    """The journal's connection and when what is written there becomes durable: transactions, group commit, and the
    flushes (`durable`) that put every change's intent on disk before it is sent. Not thread-safe; one writer
    process (held by the run directory's lock)."""

    #: group commit: lines that need not be durable before the next send are committed with the next one that does,
    #: or after this many statements / seconds (SQLite commits cost more CPU than the writes they carry)
    GROUP_COMMIT_LINES = 256
    GROUP_COMMIT_S = 0.5
    #: the least time between two flushes (`durable`) while changes go out faster than that: the changes of one window
    #: share one fsync and one commit (each fsync costs ~0.1 ms of CPU here, more of wall clock), and none waits longer
    #: than this for its intent to be on disk (the rate gate counts a request from when it leaves, so such a wait
    #: only moves that request; docs/scheduling.md, "The rate gate"). At the API's own 20/s a window's changes leave
    #: together and share a flush. 2 ms measured best on the bench's 10,000- and 30,000-row runs (1 ms groups too
    #: little; 5 ms delays the changes of a busy listener's chain).
    FLUSH_WINDOW_S = 0.002

    def __init__(self, run_dir: Path, connection: sqlite3.Connection, intents: IntentLog) -> None:
        self.run_dir = run_dir
        self.connection = connection
        #: fsynced before every commit: it is what survives a lost `-wal`
        self._intents = intents
        self._uncommitted = 0
        self._last_commit_s = time.monotonic()
        #: the senders waiting for this window's flush (`durable`), its timer, and when the last flush ran (loop s)
        self._flush_waiters: list[asyncio.Future[None]] = []
        self._flush_timer: asyncio.Handle | None = None
        self._flushed_at = float("-inf")
        self._later_writes = _LaterWrites(self)

    def close(self) -> None:
        """Commit what is pending, then close the intents file and the connection."""
        if self._uncommitted or self._intents.unsynced:
            self.commit()
        self._intents.close()
        self.connection.close()

    @contextlib.contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """A transaction committed at the end of the block — with every line written `later` before it."""
        with self._storage_errors(), self.connection:
            yield self.connection
        self._uncommitted = 0
        self._last_commit_s = time.monotonic()

    def later(self) -> _LaterWrites:
        """Lines whose loss in a crash is safe, committed with the next `tx` or in a group: an answer's record
        (without it, recovery treats the attempt as in flight, and the row is read back before anything is resent),
        reads, the state read before a change (committed at the latest with the first change's intent), outcomes
        and verification results (recovery and `rerun` settle them again). `with store.later() as db:` — an object,
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
        before its intent is on disk. Group commit: after a quiet FLUSH_WINDOW_S the commit comes at the end of this
        turn of the event loop (the callers of the same turn share it); within the window of the last flush, callers
        wait for the next one and share it. Raises JournalError like `commit`."""
        loop = asyncio.get_running_loop()
        flush_at = self._flushed_at + self.FLUSH_WINDOW_S
        waiter: asyncio.Future[None] = loop.create_future()
        self._flush_waiters.append(waiter)
        if self._flush_timer is None:
            # after a quiet window: at the end of this turn of the loop, so the other sends granted in the same turn
            # (a gate admits a timer tick's worth at once) share the fsync instead of waiting for the next window
            self._flush_timer = (
                loop.call_soon(self._flush_now) if flush_at <= loop.time() else loop.call_at(flush_at, self._flush_now)
            )
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
            self._intents.sync()
            self.connection.commit()
        self._uncommitted = 0
        self._last_commit_s = time.monotonic()
