"""The read side: what the runner, the rerun and the report read back from the journal — the run's facts, its rows
and their outcomes, its sessions and certificates, each row's report record and the Errors sheet's lines. Every
function reads one connection and changes nothing."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from batchcert.api.vocabulary import CHANGE_ACTIONS
from batchcert.journal.db import CHANGES, expected_of
from batchcert.live.certificates import CertificateInfo
from batchcert.model import Expected, Outcome, Row


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


# -- the run and its rows (runner, rerun)
def read_facts(db: sqlite3.Connection) -> dict[str, str]:
    """The run's facts (key → value)."""
    return dict(db.execute("SELECT key, value FROM facts").fetchall())


def read_rows(db: sqlite3.Connection, outcomes: frozenset[Outcome] | None = None) -> list[Row]:
    """Primary rows (not duplicates), in mapping order, optionally only those with the given outcomes."""
    found = db.execute(
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
            expected_of(expected),
        )
        for n, lid, dom, cert, client, poly, extra, outcome, scope, proxy, expected in found
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


def find_unverified_listeners(db: sqlite3.Connection) -> frozenset[str]:
    """Listeners with a succeeded row whose live state was never read after the change (a session stopped
    before its verification read) or was still changing when last read."""
    cur = db.execute(
        "SELECT DISTINCT listener_id FROM rows WHERE duplicate_of IS NULL AND outcome = ? "
        "AND verified IN ('', 'pending')",
        (Outcome.SUCCEEDED.value,),
    )
    return frozenset(str(lid) for (lid,) in cur.fetchall())


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


# -- views for reports
def stream_report_records(db: sqlite3.Connection) -> Iterator[ReportRecord]:
    """One record per mapping row in mapping order, streamed from SQLite (a 100,000-row run is never held in
    memory whole): its outcome, reads and verification (a duplicate takes its primary's) and the history of its
    change attempts across all sessions."""
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
            FROM attempts WHERE action IN {CHANGES} GROUP BY row_number
        ) h ON h.row_number = COALESCE(r.duplicate_of, r.row_number)
        ORDER BY r.row_number
    """  # noqa: S608 - CHANGES is a constant (CHANGE_ACTIONS), never input
    for values in db.execute(query):
        (n, lid, dom, cert, client, poly, extra, cells, dup, outcome, code, message, rid) = values[:13]
        (prev_read, prev_cert, prev_clients, verified, verified_cert, tries, first, last, rids, ends) = values[13:23]
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
            expected=expected_of(expected),
        )


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
            kind = "pre-flight"
        else:
            kind = "final" if n in changed or outcome != Outcome.TERMINAL.value else "final (pre-flight)"
        yield FailedAttempt(kind, n, "", iso_utc(finished), code or outcome, message, rid, None)
    done = (Outcome.SUCCEEDED.value, Outcome.UNCHANGED.value)
    for values in db.execute(
        "SELECT a.row_number, a.action, a.sent_at, a.code, a.message, a.request_id, a.latency_ms, r.outcome "
        "FROM attempts a LEFT JOIN rows r ON r.row_number = a.row_number "
        "WHERE a.code IS NULL OR a.code != 'OK' ORDER BY a.id"
    ):
        n, action, sent_at, code, message, rid, latency, outcome = values
        kind = "transient" if outcome is None or outcome in done or action not in CHANGE_ACTIONS else "attempt"
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
