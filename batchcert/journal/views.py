"""The read side: what the runner, the rerun and the report read back from the journal — the run's facts, its rows
and their outcomes, its sessions and certificates, the Errors sheet's lines, and the tables the report joins into its
lines (`split_rows` into ranges of rows, then per range: the stored rows, their outcomes, the states read before and
after the change, the change requests — each table as the columns of its own typed record, `Columns`). Every
function reads one connection and changes nothing."""

from __future__ import annotations

import enum
import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from batchcert.api.vocabulary import CHANGE_ACTIONS
from batchcert.journal.db import CHANGES, expected_of
from batchcert.live.certificates import CertificateInfo
from batchcert.model import Expected, Outcome, Row, Served, SessionAccount


def iso_utc(timestamp: float | None, timespec: str = "milliseconds") -> str:
    """Seconds since the epoch as ISO 8601 UTC (with milliseconds unless `timespec` says "seconds"); "" for None
    and 0 (no time)."""
    if not timestamp:
        return ""
    return datetime.fromtimestamp(timestamp, tz=UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


#: a table of the report's join as columns: a record's field name → its values, one per line (`columns_of`)
Columns = dict[str, list[Any]]


@dataclass(frozen=True)
class RowRange:
    """The mapping rows numbered `first`..`last` (both included): the report reads the journal a range at a time."""

    first: int
    last: int


@dataclass(frozen=True)
class StoredRow:
    """A mapping row as the journal stored it: ids as the mapping gave them (`poly_client_certificate_ids` `;`-joined),
    the mapping's extra columns and original cells, and the row it is an identical copy of (None: a primary row)."""

    row_number: int
    listener_id: str
    domain: str
    certificate_id: str
    client_certificate_id: str
    poly_client_certificate_ids: str
    extra: tuple[tuple[str, str], ...]
    cells: tuple[str, ...]
    duplicate_of: int | None
    #: `domain`, or `listener` for a row that changes the listener's own certificates
    scope: str
    proxy_id: str
    #: a compare-and-swap row's expected current state (None: the mapping has no current → new columns)
    expected: Expected | None
    #: the credential profile (the account) it was sent with ("" the default credentials)
    profile: str


@dataclass(frozen=True)
class RowOutcome:
    """Where a row stands: its outcome (an `Outcome` value), the error that explains it, the request id of the
    answer that settled it ("" for none) and what the outcome rests on (a `Basis` value)."""

    row_number: int
    outcome: str
    error_code: str
    error_message: str
    request_id: str
    basis: str


@dataclass(frozen=True)
class PreviousState:
    """The state a row's place was read in before any change (only rows read have one); client ids `;`-joined."""

    row_number: int
    certificate_id: str
    client_certificate_ids: str


@dataclass(frozen=True)
class VerificationResult:
    """What the read-back after the change saw (only rows read back have one): `verified` a `Verified` value, and the
    certificate found."""

    row_number: int
    verified: str
    certificate_id: str
    #: what probing the edge found (a `Served` value) and the served leaf's SHA-256, subject and notAfter
    served: str
    served_sha256: str
    served_subject: str
    served_not_after: float | None


@dataclass(frozen=True)
class ChangeAttempt:
    """One change request of a row (an action of CHANGE_ACTIONS), in any session: when it was sent, when its answer
    came (None: none did), its request id ("" for none)."""

    row_number: int
    sent_at: float
    finished_at: float | None
    request_id: str


class FailureKind(enum.StrEnum):
    """What a line of the workbook's Errors sheet is (its `kind` column)."""

    #: why a row is not done
    FINAL = "final"
    #: the same, found before sending (the certificate check or the read before sending): nothing was sent
    FINAL_PREFLIGHT = "final (pre-flight)"
    #: what the read before sending found on a row it did not send: already at the target
    PREFLIGHT = "pre-flight"
    #: a failed request of a row that ended done, or a failed read
    TRANSIENT = "transient"
    #: a failed request of a row not done: its history
    ATTEMPT = "attempt"


@dataclass(frozen=True)
class FailedAttempt:
    """A line of the workbook's Errors sheet (`kind`: see FailureKind). Final lines come first."""

    kind: FailureKind
    row: int | None
    action: str
    sent_at: str
    code: str
    message: str
    request_id: str
    latency_ms: float | None


# -- the run and its rows (runner, rerun)
def read_facts(db: sqlite3.Connection) -> dict[str, str]:
    """The run's facts (key → value)."""
    return dict(db.execute("SELECT key, value FROM facts").fetchall())


def read_rows(db: sqlite3.Connection, outcomes: frozenset[Outcome] | None = None) -> list[Row]:
    """Primary rows (not duplicates), in mapping order, optionally only those with the given outcomes."""
    found = db.execute(
        "SELECT row_number, listener_id, domain, certificate_id, client_certificate_id, "
        "poly_client_certificate_ids, extra, outcome, scope, proxy_id, expected, profile FROM rows "
        "WHERE duplicate_of IS NULL ORDER BY row_number"
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
            expected_of(expected),
            profile,
        )
        for n, lid, dom, cert, client, poly, extra, outcome, scope, proxy, expected, profile in found
        if outcomes is None or Outcome(outcome) in outcomes
    ]


def count_outcomes(db: sqlite3.Connection) -> dict[Outcome, int]:
    """Counts per outcome over every mapping row; a duplicate counts with its primary's outcome."""
    counts = dict.fromkeys(Outcome, 0)
    for outcome, n in db.execute(
        "SELECT COALESCE(p.outcome, r.outcome), COUNT(*) FROM rows r LEFT JOIN rows p ON p.row_number = r.duplicate_of "
        "GROUP BY 1"
    ):
        counts[Outcome(outcome)] = n
    return counts


def read_row_outcomes(db: sqlite3.Connection) -> dict[int, Outcome]:
    """Current outcome of every primary row."""
    cur = db.execute("SELECT row_number, outcome FROM rows WHERE duplicate_of IS NULL")
    return {n: Outcome(o) for n, o in cur.fetchall()}


def count_duplicates(db: sqlite3.Connection) -> dict[int, int]:
    """Primary row number → how many identical copies of it the mapping has."""
    cur = db.execute("SELECT duplicate_of, COUNT(*) FROM rows WHERE duplicate_of IS NOT NULL GROUP BY 1")
    return {int(n): int(c) for n, c in cur.fetchall()}


def read_previous_states(db: sqlite3.Connection) -> dict[int, tuple[str, tuple[str, ...]]]:
    """Row number → (certificate id, client ids) recorded before any change, for rows that have one."""
    cur = db.execute(
        "SELECT row_number, previous_certificate_id, previous_client_ids FROM rows WHERE previous_read = 1"
    )
    return {int(n): (str(c), tuple(x for x in str(clients).split(";") if x)) for n, c, clients in cur.fetchall()}


def find_changed_rows(db: sqlite3.Connection) -> frozenset[int]:
    """Rows with any change (an action of CHANGE_ACTIONS) attempted."""
    cur = db.execute(f"SELECT DISTINCT row_number FROM attempts WHERE action IN {CHANGES}")  # noqa: S608 - CHANGES is a constant (CHANGE_ACTIONS), never input
    return frozenset(int(n) for (n,) in cur.fetchall())


def find_unverified_listeners(db: sqlite3.Connection, profile: str = "") -> frozenset[str]:
    """Listeners of `profile`'s account with a succeeded row whose live state was never read after the change (a
    session stopped before its verification read) or was still changing when last read."""
    cur = db.execute(
        "SELECT DISTINCT listener_id FROM rows WHERE duplicate_of IS NULL AND outcome = ? "
        "AND verified IN ('', 'pending') AND profile = ?",
        (Outcome.SUCCEEDED.value, profile),
    )
    return frozenset(str(lid) for (lid,) in cur.fetchall())


#: row numbers per query of `find_unproven_rows`: SQLite's default limit of host parameters is 999 before 3.32
#: (https://www.sqlite.org/limits.html, "Maximum Number Of Host Parameters In A Single SQL Statement")
_SQL_VARIABLES = 900


def find_unproven_listeners(db: sqlite3.Connection, profile: str = "") -> frozenset[str]:
    """Listeners of `profile`'s account with a succeeded row the edge was not seen serving (`served` other than
    true): a rerun reads them back and probes those rows again."""
    cur = db.execute(
        "SELECT DISTINCT listener_id FROM rows WHERE duplicate_of IS NULL AND outcome = ? AND served != ? "
        "AND profile = ?",
        (Outcome.SUCCEEDED.value, Served.TRUE.value, profile),
    )
    return frozenset(str(lid) for (lid,) in cur.fetchall())


def find_unproven_rows(db: sqlite3.Connection, row_numbers: list[int]) -> frozenset[int]:
    """Those of `row_numbers` that succeeded and that the edge was not seen serving yet."""
    found: set[int] = set()
    for first in range(0, len(row_numbers), _SQL_VARIABLES):
        chunk = row_numbers[first : first + _SQL_VARIABLES]
        marks = ", ".join("?" * len(chunk))
        found.update(
            int(n)
            for (n,) in db.execute(
                f"SELECT row_number FROM rows WHERE outcome = ? AND served != ? AND row_number IN ({marks})",  # noqa: S608 - placeholders only
                (Outcome.SUCCEEDED.value, Served.TRUE.value, *chunk),
            )
        )
    return frozenset(found)


def describe_canary_failures(db: sqlite3.Connection, row_numbers: list[int]) -> list[str]:
    """Why each of `row_numbers` (a canary) is not a success: not done, or done but not served by the edge."""
    marks = ", ".join("?" * len(row_numbers))
    found = []
    for n, outcome, code, served in db.execute(
        f"SELECT row_number, outcome, error_code, served FROM rows WHERE row_number IN ({marks}) ORDER BY row_number",  # noqa: S608 - placeholders only
        row_numbers,
    ):
        if outcome not in (Outcome.SUCCEEDED.value, Outcome.UNCHANGED.value):
            found.append(f"row {n} ended {outcome}" + (f" ({code})" if code else ""))
        elif served == Served.FALSE.value:
            found.append(f"row {n}: the edge still served another certificate")
    return found


def read_last_change_codes(db: sqlite3.Connection) -> dict[int, str]:
    """Row number → code of its latest change attempt (rows with any)."""
    cur = db.execute(
        "SELECT a.row_number, a.code FROM attempts a JOIN (SELECT row_number, MAX(id) AS id FROM attempts "  # noqa: S608 - CHANGES is a constant (CHANGE_ACTIONS), never input
        f"WHERE action IN {CHANGES} GROUP BY row_number) m ON a.id = m.id"
    )
    return {int(n): str(c or "") for n, c in cur.fetchall()}


def read_certificates(db: sqlite3.Connection) -> list[CertificateInfo]:
    """The account's certificates as the run read them (the certificate pre-flight); [] when it never did."""
    return [
        CertificateInfo(str(cid), int(kind), int(end or 0), str(cn or ""), str(alias or ""))
        for cid, kind, end, cn, alias in db.execute(
            "SELECT certificate_id, type, end_time, subject_cn, alias FROM certificates ORDER BY certificate_id"
        )
    ]


def read_sessions(db: sqlite3.Connection) -> list[dict[str, Any]]:
    """Every session (a run, then each rerun), oldest first, its settings decoded."""
    cur = db.execute(
        "SELECT id, kind, started_at, finished_at, settings, status, note, operator, secret_id_masked, "
        "credential_source FROM sessions ORDER BY id"
    )
    accounts = _read_session_accounts(db)
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
            "credential_source": source,
            "accounts": accounts.get(i, []),
        }
        for i, k, s, f, st, stat, note, operator, masked, source in cur.fetchall()
    ]


def _read_session_accounts(db: sqlite3.Connection) -> dict[int, list[SessionAccount]]:
    """Each session's accounts (schema 5; a journal read as it is, unmigrated, may not have the table)."""
    if not db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'session_accounts'").fetchone():
        return {}
    found: dict[int, list[SessionAccount]] = {}
    for session_id, profile, masked, source in db.execute(
        "SELECT session_id, profile, secret_id_masked, credential_source FROM session_accounts "
        "ORDER BY session_id, rowid"
    ):
        found.setdefault(session_id, []).append(SessionAccount(profile, masked, source))
    return found


# -- views for reports
# -- the report's tables, a range of rows at a time (batchcert.report.records joins them)
#: the rows of a RowRange and the rows its duplicates copy (their primaries, which may lie outside it)
_RANGE_AND_PRIMARIES = (
    "(row_number BETWEEN :first AND :last "
    "OR row_number IN (SELECT duplicate_of FROM rows WHERE row_number BETWEEN :first AND :last))"
)


def split_rows(db: sqlite3.Connection, rows_per_range: int) -> Iterator[RowRange]:
    """Every mapping row in consecutive ranges of at most `rows_per_range` rows, in mapping order (each range read
    when it is asked for: a 100,000-row run is never held whole)."""
    after = -(2**63)
    while True:
        first, last = db.execute(
            "SELECT MIN(row_number), MAX(row_number) FROM "
            "(SELECT row_number FROM rows WHERE row_number > ? ORDER BY row_number LIMIT ?)",
            (after, rows_per_range),
        ).fetchone()
        if first is None:
            return
        yield RowRange(int(first), int(last))
        after = int(last)


def read_stored_rows(db: sqlite3.Connection, rows: RowRange) -> Columns:
    """The mapping rows of `rows`, in mapping order, as StoredRow's columns."""
    found = db.execute(
        "SELECT row_number, listener_id, domain, certificate_id, client_certificate_id, poly_client_certificate_ids, "
        "extra, cells, duplicate_of, scope, proxy_id, expected, profile FROM rows WHERE row_number BETWEEN ? AND ? "
        "ORDER BY row_number",
        (rows.first, rows.last),
    )
    columns = columns_of(StoredRow, found)
    columns["extra"] = [tuple((str(k), str(v)) for k, v in json.loads(extra)) for extra in columns["extra"]]
    columns["cells"] = [tuple(str(c) for c in json.loads(cells)) for cells in columns["cells"]]
    columns["expected"] = [expected_of(expected) for expected in columns["expected"]]
    return columns


def columns_of(table: type[Any], found: Iterable[Sequence[Any]]) -> Columns:
    """The lines `found` (values in the order of `table`'s fields) as `table`'s columns: field name → values. A
    report range is read as columns, not as a record per line: the report builds its frames from them (building
    thousands of records only to take them apart again was most of its join's cost)."""
    names = [f.name for f in fields(table)]
    values = list(zip(*found, strict=True)) or [()] * len(names)
    return {name: list(column) for name, column in zip(names, values, strict=True)}


def _select_in_range(
    db: sqlite3.Connection, select: str, rows: RowRange, where: str = "1", order: str = ""
) -> sqlite3.Cursor:
    """Run `select` (`SELECT … FROM table`, a constant) on the rows of `rows` and the rows its duplicates copy,
    those where `where` holds (a constant), in `order` ("" for any)."""
    query = f"{select} WHERE ({where}) AND {_RANGE_AND_PRIMARIES} {order}"
    return db.execute(query, {"first": rows.first, "last": rows.last})


def read_outcome_records(db: sqlite3.Connection, rows: RowRange) -> Columns:
    """The outcome of every row of `rows` and of every row its duplicates copy, as RowOutcome's columns."""
    select = "SELECT row_number, outcome, error_code, error_message, request_id, basis FROM rows"
    return columns_of(RowOutcome, _select_in_range(db, select, rows))


def read_previous_records(db: sqlite3.Connection, rows: RowRange) -> Columns:
    """The state read before any change, of the rows of `rows` and the rows its duplicates copy that have one, as
    PreviousState's columns."""
    select = "SELECT row_number, previous_certificate_id, previous_client_ids FROM rows"
    return columns_of(PreviousState, _select_in_range(db, select, rows, "previous_read"))


def read_verification_records(db: sqlite3.Connection, rows: RowRange) -> Columns:
    """What the read-back saw, of the rows of `rows` and the rows its duplicates copy that were read back, as
    VerificationResult's columns."""
    select = (
        "SELECT row_number, verified, verified_certificate_id, served, served_sha256, served_subject, "
        "served_not_after FROM rows"
    )
    read_back = "verified != '' OR verified_certificate_id != '' OR served != ''"
    return columns_of(VerificationResult, _select_in_range(db, select, rows, read_back))


def read_change_attempts(db: sqlite3.Connection, rows: RowRange) -> Columns:
    """Every change request of the rows of `rows` and of the rows its duplicates copy, in sending order, as
    ChangeAttempt's columns."""
    select = "SELECT row_number, sent_at, finished_at, COALESCE(request_id, '') FROM attempts"
    return columns_of(ChangeAttempt, _select_in_range(db, select, rows, f"action IN {CHANGES}", "ORDER BY id"))


def read_extra_column_names(db: sqlite3.Connection) -> list[str]:
    """The mapping's extra column names, in the order first seen."""
    names: dict[str, None] = {}
    for (extra,) in db.execute("SELECT DISTINCT extra FROM rows WHERE extra != '[]'"):
        names.update((str(name), None) for name, _ in json.loads(extra))
    return list(names)


def count_requests(db: sqlite3.Connection) -> tuple[dict[str, int], dict[str, int]]:
    """Requests per action, and answers per code ("in flight" for none yet), most frequent first."""
    by_action = dict(db.execute("SELECT action, COUNT(*) FROM attempts GROUP BY 1 ORDER BY 2 DESC"))
    by_code = dict(db.execute("SELECT COALESCE(code, 'in flight'), COUNT(*) FROM attempts GROUP BY 1 ORDER BY 2 DESC"))
    return by_action, by_code


def stream_failed_attempts(db: sqlite3.Connection) -> Iterator[FailedAttempt]:
    """The Errors sheet, streamed: each row not done with its final error (mapping order), the pre-flight's
    findings, then every request that did not succeed (sending order) marked transient or not."""
    changed = find_changed_rows(db)
    for n, outcome, code, message, rid, finished in db.execute(
        "SELECT row_number, outcome, error_code, error_message, request_id, finished_at FROM rows "
        "WHERE outcome IN ('terminal', 'retryable', 'not_attempted', 'invalid', 'unchanged') "
        "AND duplicate_of IS NULL ORDER BY outcome = 'unchanged', row_number"
    ):
        if outcome == Outcome.UNCHANGED.value:
            kind = FailureKind.PREFLIGHT
        elif n in changed or outcome != Outcome.TERMINAL.value:
            kind = FailureKind.FINAL
        else:
            kind = FailureKind.FINAL_PREFLIGHT
        yield FailedAttempt(kind, n, "", iso_utc(finished), code or outcome, message, rid, None)
    done = (Outcome.SUCCEEDED.value, Outcome.UNCHANGED.value)
    for values in db.execute(
        "SELECT a.row_number, a.action, a.sent_at, a.code, a.message, a.request_id, a.latency_ms, r.outcome "
        "FROM attempts a LEFT JOIN rows r ON r.row_number = a.row_number "
        "WHERE a.code IS NULL OR a.code != 'OK' ORDER BY a.id"
    ):
        n, action, sent_at, code, message, rid, latency, outcome = values
        got_past = outcome is None or outcome in done or action not in CHANGE_ACTIONS
        kind = FailureKind.TRANSIENT if got_past else FailureKind.ATTEMPT
        yield FailedAttempt(kind, n, action, iso_utc(sent_at), code or "in flight", message, rid, latency)


def count_transient_errors(db: sqlite3.Connection) -> dict[str, int]:
    """Failed requests the run got past (their row ended done), by code, most frequent first."""
    return dict(
        db.execute(
            "SELECT a.code, COUNT(*) FROM attempts a JOIN rows r ON r.row_number = a.row_number "  # noqa: S608 - CHANGES is a constant (CHANGE_ACTIONS), never input
            f"WHERE a.action IN {CHANGES} AND a.code != 'OK' AND r.outcome IN ('succeeded', 'unchanged') "
            "GROUP BY a.code ORDER BY COUNT(*) DESC, a.code"
        ).fetchall()
    )


def read_attempt_records(db: sqlite3.Connection) -> list[dict[str, Any]]:
    """Every request recorded (changes and reads), in sending order, as column → value."""
    cur = db.execute(
        "SELECT id, row_number, listener_id, session_id, action, sent_at, finished_at, request_id, code, message, "
        "http_status, latency_ms FROM attempts ORDER BY id"
    )
    names = [c[0] for c in cur.description]
    return [dict(zip(names, values, strict=True)) for values in cur.fetchall()]
