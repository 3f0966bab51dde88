"""The lines of the CSV tables: their columns, and one line from one record (report.csv, failed.csv, rollback.csv,
plan.csv). Pure functions: `batchcert.report.artifacts` writes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from batchcert.journal import iso_utc
from batchcert.live.state import PlanLine, Rollback, rollback_for
from batchcert.model import DONE_OUTCOMES, Outcome, ProbeTarget, Row, ServedCheck
from batchcert.report.records import ReportRecord

REPORT_COLUMNS = (
    "row",
    "scope",
    "proxy_id",
    "listener_id",
    "domain",
    "certificate_id",
    "client_certificate_id",
    "poly_client_certificate_ids",
    "expected_certificate_id",
    "expected_client_certificate_ids",
    "target_certificate_end_time",
    "outcome",
    "error_code",
    "error_message",
    "attempts",
    "request_id",
    "request_ids",
    "started_at",
    "finished_at",
    "duplicate_of",
    "previous_certificate_id",
    "previous_client_certificate_ids",
    "verified_certificate_id",
    "verified",
    "served",
    "served_certificate_sha256",
    "served_subject",
    "served_not_after",
)
#: report.csv's column after `row` when the run's rows name their accounts (the journal's fact `profiles`), and
#: rollback.csv's first column then (a mapping column: the rollback is sent with each row's profile)
PROFILE_COLUMN, ROLLBACK_PROFILE_COLUMN = "profile", "Profile"
#: failed.csv adds these after the mapping's own columns; read back as a mapping they are extra columns
FAILED_EXTRA_COLUMNS = ("source_row", "outcome", "reason")
#: the first columns of a compare-and-swap mapping batchcert writes (rollback.csv, the rotation's mapping.csv): the
#: place, then the state it must be in for the row to be sent (`CertificateId`, `PolyClientCertificateIds`)
SWAP_PLACE_COLUMNS = ("Scope", "ProxyId", "ListenerId", "Domain", "CertificateId", "PolyClientCertificateIds")
#: rollback.csv, a compare-and-swap mapping: `CertificateId` / `PolyClientCertificateIds` are what the run set (the
#: state the place must still be in), the New* columns what restores the state read before the change
ROLLBACK_COLUMNS = (
    *SWAP_PLACE_COLUMNS,
    "NewCertificateId",
    "NewClientCertificateId",
    "NewPolyClientCertificateIds",
    "rolls_back_row",
    "note",
)
PLAN_COLUMNS = (
    "row",
    "listener_id",
    "domain",
    "action",
    "current_certificate_id",
    "current_client_certificate_ids",
    "domain_status",
    "certificate_id",
    "client_certificate_id",
    "poly_client_certificate_ids",
    "reason",
)
#: probe.csv (`batchcert probe`): the place, what it should serve, and what its edge served
PROBE_COLUMNS = (
    "row",
    "listener_id",
    "domain",
    "certificate_id",
    "served",
    "served_certificate_sha256",
    "served_subject",
    "served_not_after",
    "note",
)
#: the outcomes of rows that are done, as the journal's records spell them
DONE_VALUES = frozenset(o.value for o in DONE_OUTCOMES)


def id_list(text: str) -> tuple[str, ...]:
    """The ids of a `;`-joined list as the journal and the CSV files spell it ("" is none)."""
    return tuple(p for p in text.split(";") if p)


def report_columns(with_profile: bool) -> list[str]:
    """report.csv's own columns: REPORT_COLUMNS, with PROFILE_COLUMN after `row` when the rows name accounts."""
    return [REPORT_COLUMNS[0], PROFILE_COLUMN, *REPORT_COLUMNS[1:]] if with_profile else list(REPORT_COLUMNS)


def plan_columns(with_profile: bool) -> list[str]:
    """plan.csv's columns: PLAN_COLUMNS, with PROFILE_COLUMN after `row` when the rows name accounts."""
    return [PLAN_COLUMNS[0], PROFILE_COLUMN, *PLAN_COLUMNS[1:]] if with_profile else list(PLAN_COLUMNS)


def rollback_columns(with_profile: bool) -> list[str]:
    """rollback.csv's columns: ROLLBACK_COLUMNS, after ROLLBACK_PROFILE_COLUMN when the rows name accounts."""
    return [ROLLBACK_PROFILE_COLUMN, *ROLLBACK_COLUMNS] if with_profile else list(ROLLBACK_COLUMNS)


def report_line(record: ReportRecord, extra_names: Sequence[str], with_profile: bool = False) -> list[Any]:
    """The report's cells for one record: `report_columns(with_profile)`, then the mapping's extra columns."""
    expected = record.expected
    cells = [
        record.row,
        record.scope,
        record.proxy_id,
        record.listener_id,
        record.domain,
        record.certificate_id,
        record.client_certificate_id,
        record.poly_client_certificate_ids,
        "" if expected is None else expected.certificate_id,
        "" if expected is None else expected.client_text,
        record.target_certificate_end_time,
        record.outcome,
        record.error_code,
        record.error_message,
        record.attempts,
        record.request_id,
        record.request_ids,
        record.started_at,
        record.finished_at,
        record.duplicate_of,
        record.previous_certificate_id,
        record.previous_client_certificate_ids,
        record.verified_certificate_id,
        record.verified,
        record.served,
        record.served_certificate_sha256,
        record.served_subject,
        record.served_not_after,
    ]
    if with_profile:
        cells.insert(1, record.profile)
    if extra_names:
        extra = dict(record.extra)
        cells += [extra.get(n, "") for n in extra_names]
    return cells


def probe_line(target: ProbeTarget, check: ServedCheck) -> list[Any]:
    """probe.csv's cells for one probed place (PROBE_COLUMNS)."""
    not_after = iso_utc(check.not_after_s, "seconds") if check.not_after_s is not None else ""
    return [
        target.row_number,
        target.listener_id,
        target.domain,
        target.certificate_id,
        check.served.value,
        check.sha256,
        check.subject,
        not_after,
        check.note,
    ]


def failed_line(record: ReportRecord) -> list[Any] | None:
    """failed.csv's line for a row not done: the mapping's own cells, then FAILED_EXTRA_COLUMNS; None for a row done."""
    if record.outcome in DONE_VALUES:
        return None
    return [*record.cells, record.row, record.outcome, record.error_message]


def rollback_of(record: ReportRecord) -> tuple[Row, Rollback] | None:
    """For a row this run changed (succeeded, primary, its state before read): the row as the run sent it and what
    restores the ids read before the change (`default` too)."""
    if record.outcome != Outcome.SUCCEEDED or record.duplicate_of is not None or not record.previous_read:
        return None
    row = Row(
        record.row,
        record.listener_id,
        record.domain,
        record.certificate_id,
        record.client_certificate_id,
        id_list(record.poly_client_certificate_ids),
        scope=record.scope,
        proxy_id=record.proxy_id,
        profile=record.profile,
    )
    return row, rollback_for(row, record.previous_certificate_id, id_list(record.previous_client_certificate_ids))


def rollback_line(row: Row, undo: Rollback, with_profile: bool = False) -> list[Any]:
    """rollback.csv's line (`rollback_columns(with_profile)`) for `row`: compare-and-swap — the place must still hold
    what the run set (`CertificateId`, and the client CAs it set when the rollback changes client CAs) — to the ids
    read before; with the row's profile first when the rows name accounts."""
    changes_clients = bool(undo.client_certificate_id or undo.poly_client_certificate_ids)
    run_set_clients = ";".join(row.poly_client_certificate_ids) or row.client_certificate_id
    return [
        *([row.profile] if with_profile else []),
        row.scope,
        row.proxy_id,
        row.listener_id,
        row.domain,
        row.certificate_id,
        run_set_clients if changes_clients else "",
        undo.certificate_id,
        undo.client_certificate_id,
        undo.poly_client_certificate_ids,
        row.row_number,
        undo.note,
    ]


def plan_line(line: PlanLine, with_profile: bool = False) -> list[Any]:
    """plan.csv's line (`plan_columns(with_profile)`) for one mapping row."""
    row, live = line.row, line.live
    return [
        row.row_number,
        *([row.profile] if with_profile else []),
        row.listener_id,
        row.domain,
        line.action,
        live.certificate_id if live else "",
        live.client_text if live else "",
        live.status if live else "",
        row.certificate_id,
        row.client_certificate_id,
        ";".join(row.poly_client_certificate_ids),
        line.reason,
    ]
