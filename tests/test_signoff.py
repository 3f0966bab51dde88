"""The change record signs alone (issue 21): summary.md / summary.json / the workbook's Summary carry the certificate
moves, every row not done, the exact rollback command, the rows the service would refuse to roll back, the change
ticket and every session's operator and SecretId; report.csv, rollback.csv (compare-and-swap) and the rotation
mapping have their columns; and a report file the user changed is never overwritten."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shlex
import time
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from batchcert.journal import Journal, create_journal
from batchcert.live.certificates import CertificateInfo
from batchcert.model import (
    CHANGE_REVERTED,
    PRECONDITION_MISMATCH,
    PREFLIGHT_EXPIRED,
    PREFLIGHT_NOT_FOUND,
    Expected,
    Mapping,
    MappingLine,
    Outcome,
    ReadBack,
    Row,
    SessionKind,
    SessionStatus,
    Verified,
)
from batchcert.report import (
    MANIFEST_NAME,
    REHEARSAL_WORLD_NAME,
    REPORT_FILES,
    ROLLBACK_COLUMNS,
    ROTATION_COLUMNS,
    Reports,
    failed_run_command,
    rollback_run_command,
    write_reports,
    write_rotation,
)

INTL = "https://gaap.intl.tencentcloudapi.com"
COLUMNS = (
    "Scope",
    "ProxyId",
    "ListenerId",
    "Domain",
    "CertificateId",
    "ClientCertificateId",
    "PolyClientCertificateIds",
    "Change Ticket (变更)",
)
TICKET = "Change Ticket (变更)"
DAY = 86400.0
ALICE, BOB = "alice@ops-1", "bob@ops-2"
ALICE_ID, BOB_ID = "AKID********************1111", "AKID********************2222"


def mixed_rows() -> list[Row]:
    """A mixed run, rows 2..13 (what each ends as is set in `mixed_journal`)."""
    la, lb = "listener-aaaa0001", "listener-bbbb0001"

    def domain(n: int, name: str, cert: str, ticket: str, **more: Any) -> Row:
        return Row(n, la, name, cert, extra=((TICKET, ticket),), **more)

    return [
        domain(2, "a.example.com", "cert-new", "CHG-1001"),  # succeeded: cert-old → cert-new
        domain(3, "b.example.com", "cert-new", "CHG-1001", expected=Expected("cert-gone")),  # succeeded, verified false
        Row(  # succeeded: a listener's own certificate and client CAs
            4,
            lb,
            "",
            "cert-new",
            "",
            ("cert-ca2",),
            ((TICKET, "CHG-1001"),),
            scope="listener",
            proxy_id="link-0001",
        ),
        domain(5, "c.example.com", "cert-new", ""),  # unchanged
        domain(6, "t.example.com", "cert-narrow", "CHG-1001"),  # terminal
        domain(7, "r.example.com", "cert-new", "CHG-1001"),  # reverted by the service: retryable
        domain(8, "p.example.com", "cert-new", "CHG-1001", expected=Expected("cert-old", ("cert-ca1",))),  # mismatch
        domain(9, "i.example.com", "", "CHG-1002"),  # invalid
        domain(10, "a.example.com", "cert-new", "CHG-1001"),  # duplicate of row 2
        domain(11, "x.example.com", "cert-new", "CHG-1002"),  # succeeded; its rollback target has expired
        domain(12, "n.example.com", "cert-new", "CHG-1002", poly_client_certificate_ids=("cert-ca2",)),  # CA added
        domain(13, "d.example.com", "cert-new", "CHG-1002", client_certificate_id="cert-ca2"),  # CA replaced
    ]


def cells_of(row: Row) -> tuple[str, ...]:
    return (
        row.scope,
        row.proxy_id,
        row.listener_id,
        row.domain,
        row.certificate_id,
        row.client_certificate_id,
        ";".join(row.poly_client_certificate_ids),
        dict(row.extra)[TICKET],
    )


def certificates(now: float) -> list[CertificateInfo]:
    future = int(now + 300 * DAY)
    return [
        CertificateInfo("cert-old", 2, future, "*.example.com"),
        CertificateInfo("cert-new", 2, future, "*.example.com"),
        CertificateInfo("cert-lst", 2, future, "*.example.com"),
        CertificateInfo("cert-narrow", 2, future, "narrow.example.org"),
        CertificateInfo("cert-expired", 2, int(now - 3 * DAY), "*.example.com"),
        CertificateInfo("cert-ca1", 1, future),
        CertificateInfo("cert-ca2", 1, future),
        CertificateInfo("cert-ca3", 1, future),
    ]


def new_journal(run_dir: Path, rows: list[Row], facts: dict[str, str], **mapping: Any) -> Journal:
    journal = create_journal(
        run_dir,
        {"mapping": str(run_dir.parent / "m.csv"), "mapping_sha256": "a" * 64, "operator": ALICE, **facts},
    )
    journal.record_mapping(
        Mapping(
            path=run_dir.parent / "m.csv",
            sha256="a" * 64,
            columns=COLUMNS,
            column_of={c: c for c in COLUMNS[:-1]},
            rows=tuple(rows),
            cells={r.row_number: cells_of(r) for r in rows},
            **mapping,
        )
    )
    return journal


def mixed_journal(run_dir: Path, *, read_certificates: bool = True, rehearsal: bool = False) -> Journal:
    """The mixed run: a first session by alice, a rerun by bob (another SecretId)."""
    now = time.time()
    facts = {"endpoint": INTL, "secret_id_masked": ALICE_ID, "rehearsal": "true" if rehearsal else "false"}
    journal = new_journal(
        run_dir,
        mixed_rows(),
        facts,
        problems={9: "row 9: CertificateId is empty"},
        duplicate_of={10: 2},
    )
    journal.begin_session(SessionKind.RUN, {"rate_per_s": 20.0}, ALICE, ALICE_ID)
    if read_certificates:
        journal.record_certificates(certificates(now))
    journal.record_previous(
        [
            (2, "cert-old", ()),
            (3, "cert-gone", ()),
            (4, "cert-lst", ("cert-ca1", "cert-ca3")),
            (5, "cert-new", ()),
            (6, "cert-old", ()),
            (7, "cert-old", ()),
            (8, "cert-other", ()),
            (11, "cert-expired", ()),
            (12, "cert-old", ()),
            (13, "cert-old", ("cert-ca1",)),
        ]
    )
    for n in (2, 3, 4, 11, 12, 13):
        journal.finish_row(n, Outcome.SUCCEEDED, request_id=f"req-{n}")
    journal.finish_row(5, Outcome.UNCHANGED)
    journal.finish_row(
        6,
        Outcome.TERMINAL,
        "InvalidParameterValue.CertificateNotMatchDomain",
        "The certificate | does not match the domain",
    )
    journal.finish_row(7, Outcome.TERMINAL, "ResourceUnavailable", "first session")
    journal.finish_row(8, Outcome.TERMINAL, PRECONDITION_MISMATCH, "p.example.com uses cert-other, not cert-old")
    journal.end_session(SessionStatus.FINISHED)
    journal.begin_session(SessionKind.RERUN, {"rate_per_s": 10.0}, BOB, BOB_ID)
    journal.finish_row(7, Outcome.RETRYABLE, CHANGE_REVERTED, "the read-back shows cert-old again")
    journal.record_verification(
        [
            ReadBack(2, "cert-new", (), Verified.AT_TARGET),
            ReadBack(3, "cert-old", (), Verified.NOT_AT_TARGET),
            ReadBack(4, "cert-new", ("cert-ca2",), Verified.AT_TARGET),
            ReadBack(5, "cert-new", (), Verified.AT_TARGET),
            ReadBack(11, "cert-new", (), Verified.AT_TARGET),
            ReadBack(12, "cert-new", ("cert-ca2",), Verified.AT_TARGET),
            ReadBack(13, "cert-new", ("cert-ca2",), Verified.AT_TARGET),
        ]
    )
    journal.end_session(SessionStatus.FINISHED)
    return journal


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
    return list(reader.fieldnames or []), rows


def md_section(md: str, heading: str) -> list[str]:
    """The lines of a `## heading` section of summary.md (up to the next `## `)."""
    lines = md.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"## {heading}"))
    body = []
    for line in lines[start + 1 :]:
        if line.startswith("## "):
            break
        body.append(line)
    return body


def md_rows(section: list[str], first: int = 0) -> list[list[str]]:
    """The body cells of the `first`-th markdown table in `section` (header and rule skipped)."""
    tables: list[list[list[str]]] = []
    current: list[list[str]] | None = None
    for line in section:
        if line.startswith("|"):
            if current is None:
                current = []
                tables.append(current)
            current.append([c.strip() for c in line.strip().strip("|").split(" | ")])
        else:
            current = None
    return tables[first][2:]


@pytest.fixture
def mixed(tmp_path: Path) -> tuple[Journal, Reports, Path]:
    run_dir = tmp_path / "the run's dir"
    journal = mixed_journal(run_dir)
    return journal, write_reports(journal), run_dir


def summary_of(run_dir: Path, md: str = "summary.md", js: str = "summary.json") -> tuple[str, dict[str, Any]]:
    return (run_dir / md).read_text(encoding="utf-8"), json.loads((run_dir / js).read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------------------------------ B. summary
def test_summary_lists_the_certificate_moves(mixed: tuple[Journal, Reports, Path]) -> None:
    """From → to, places, scope, over the rows this run changed (not the duplicate, not unchanged or failed rows);
    client CA lists as their own kind."""
    _, _, run_dir = mixed
    md, summary = summary_of(run_dir)
    expected = [
        ["server certificate", "cert-old", "cert-new", "domain", "3"],  # rows 2, 12, 13 (not duplicate 10)
        ["client CAs", "(none)", "cert-ca2", "domain", "1"],  # row 12
        ["client CAs", "cert-ca1", "cert-ca2", "domain", "1"],  # row 13
        ["client CAs", "cert-ca1;cert-ca3", "cert-ca2", "listener", "1"],  # row 4
        ["server certificate", "cert-expired", "cert-new", "domain", "1"],  # row 11
        ["server certificate", "cert-gone", "cert-new", "domain", "1"],  # row 3
        ["server certificate", "cert-lst", "cert-new", "listener", "1"],  # row 4
    ]
    assert md_rows(md_section(md, "Certificate moves")) == expected
    assert [[m["kind"], m["from"], m["to"], m["scope"], str(m["places"])] for m in summary["certificate_moves"]] == (
        expected
    )
    assert "| kind | from | to | scope | places |" in md


def test_summary_lists_every_row_not_done_with_its_reason(mixed: tuple[Journal, Reports, Path]) -> None:
    """Listener, domain, outcome, code and message of each row not done — the reverted change and the precondition
    mismatch among them, and named prominently; a succeeded row whose live state differs is a warning."""
    _, _, run_dir = mixed
    md, summary = summary_of(run_dir)
    section = md_section(md, "Rows not done")
    assert section[0] == "" and md.count("## Rows not done (4)") == 1
    rows = {r[0]: r for r in md_rows(section)}
    assert sorted(rows) == ["6", "7", "8", "9"]
    assert rows["6"][1:4] == ["listener-aaaa0001", "t.example.com", "terminal"]
    assert (
        rows["6"][4] == "InvalidParameterValue.CertificateNotMatchDomain: The certificate \\| does not match the domain"
    )
    assert rows["7"][3:] == ["retryable", f"{CHANGE_REVERTED}: the read-back shows cert-old again"]
    assert rows["8"][3:] == ["terminal", f"{PRECONDITION_MISMATCH}: p.example.com uses cert-other, not cert-old"]
    assert rows["9"][3:] == ["invalid", "row 9: CertificateId is empty"]
    assert "more: see" not in md
    assert summary["not_done"]["total"] == 4 and summary["not_done"]["more"] == 0
    assert [r["row"] for r in summary["not_done"]["rows"]] == [6, 7, 8, 9]
    assert summary["reverted"] == [7] and summary["precondition_mismatch"] == [8]
    warnings = [line for line in md.splitlines() if line.startswith("**WARNING")]
    assert any("reverted" in w and "7" in w and CHANGE_REVERTED in w for w in warnings), warnings
    assert any("row(s) 8 were not sent" in w and PRECONDITION_MISMATCH in w for w in warnings), warnings
    assert any("rows 3 succeeded but the live state" in w for w in warnings), warnings
    assert summary["verification"]["succeeded_but_live_state_differs"] == [3]


def test_summary_gives_the_exact_rollback_command_and_what_would_be_refused(
    mixed: tuple[Journal, Reports, Path],
) -> None:
    _, reports, run_dir = mixed
    md, summary = summary_of(run_dir)
    command = f"batchcert run {shlex.quote(str(run_dir / 'rollback.csv'))} --endpoint {INTL}"
    assert "'" in command  # the run directory needs quoting
    assert summary["rollback"]["command"] == command == reports.rollback_command
    section = md_section(md, "Rollback")
    assert f"    {command}" in section
    assert summary["rollback"]["rows"] == 6
    refused = {r[0]: r for r in md_rows(section)}
    assert sorted(refused) == ["11", "3"]  # an expired certificate; one no longer among the account's
    assert refused["11"][3] == "cert-expired" and refused["11"][4].startswith(f"{PREFLIGHT_EXPIRED}: ")
    assert "expired on" in refused["11"][4]
    assert refused["3"][3] == "cert-gone" and refused["3"][4].startswith(f"{PREFLIGHT_NOT_FOUND}: ")
    assert {r["row"]: r["code"] for r in summary["rollback"]["refused"]} == {
        3: PREFLIGHT_NOT_FOUND,
        11: PREFLIGHT_EXPIRED,
    }
    assert "**The service would refuse to roll back 2 row(s)" in md
    noted = md_rows(section, 1)
    assert [r[0] for r in noted] == ["12"] and "cannot remove" in noted[0][3]
    assert [r["row"] for r in summary["rollback"]["notes"]] == [12]
    assert summary["rollback"]["targets_checked"] is True


def test_without_the_certificates_the_rollback_check_says_it_was_not_possible(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    write_reports(mixed_journal(run_dir, read_certificates=False))
    md, summary = summary_of(run_dir)
    assert "The restore targets could not be checked" in "\n".join(md_section(md, "Rollback"))
    assert summary["rollback"]["targets_checked"] is False and summary["rollback"]["refused"] == []
    assert "would refuse" not in md


def test_a_rehearsals_rollback_runs_in_the_world_it_left(tmp_path: Path) -> None:
    run_dir = tmp_path / "rehearsal run"
    run_dir.mkdir()
    (run_dir / REHEARSAL_WORLD_NAME).write_text("{}", encoding="utf-8")
    reports = write_reports(mixed_journal(run_dir, rehearsal=True))
    world = shlex.quote(str(run_dir / REHEARSAL_WORLD_NAME))
    command = f"batchcert run {shlex.quote(str(run_dir / 'rollback.csv'))} --world {world}"
    assert reports.rollback_command == command
    assert json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))["rollback"]["command"] == command
    assert "--endpoint" not in command


def test_commands_are_built_one_way(tmp_path: Path) -> None:
    """failed.csv and rollback.csv commands go where the run went, on the file given."""
    run_dir = tmp_path / "a run"
    intl = {"rehearsal": "false", "endpoint": INTL}
    default = {"rehearsal": "false", "endpoint": "https://gaap.tencentcloudapi.com"}
    assert rollback_run_command(run_dir, default) == f"batchcert run {shlex.quote(str(run_dir / 'rollback.csv'))}"
    other = run_dir / "failed-2.csv"
    assert failed_run_command(run_dir, intl, other) == f"batchcert run {shlex.quote(str(other))} --endpoint {INTL}"
    # a rehearsal without the world it left (an older run): its world file, else the emulator
    assert rollback_run_command(run_dir, {"rehearsal": "true", "world": "/w/x.json"}).endswith(" --world /w/x.json")
    assert rollback_run_command(run_dir, {"rehearsal": "true"}).endswith(" --emulator")


def test_summary_carries_the_change_ticket_and_every_sessions_operator(mixed: tuple[Journal, Reports, Path]) -> None:
    _, _, run_dir = mixed
    md, summary = summary_of(run_dir)
    assert f"- Change ticket (column `{TICKET}`): `CHG-1001`, `CHG-1002`" in md.splitlines()
    assert summary["change_tickets"] == [{"column": TICKET, "values": ["CHG-1001", "CHG-1002"], "more": 0}]
    sessions = md_rows(md_section(md, "Sessions"))
    assert [(s[1], s[4], s[5], s[6]) for s in sessions] == [
        ("run", "finished", ALICE, f"`{ALICE_ID}`"),
        ("rerun", "finished", BOB, f"`{BOB_ID}`"),
    ]
    assert [(s["kind"], s["operator"], s["secret_id"]) for s in summary["sessions"]] == [
        ("run", ALICE, ALICE_ID),
        ("rerun", BOB, BOB_ID),
    ]


def test_sessions_of_an_older_journal_fall_back_to_the_runs_facts(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    row = Row(2, "listener-aaaa0001", "a.example.com", "cert-new", extra=((TICKET, ""),))
    journal = new_journal(run_dir, [row], {"secret_id_masked": ALICE_ID})
    journal.begin_session(SessionKind.RUN, {})  # no operator or SecretId recorded with the session
    journal.end_session(SessionStatus.FINISHED)
    write_reports(journal)
    _, summary = summary_of(run_dir)
    assert [(s["operator"], s["secret_id"]) for s in summary["sessions"]] == [(ALICE, ALICE_ID)]
    assert summary["change_tickets"] == [{"column": TICKET, "values": [], "more": 0}]


def test_only_the_first_fifty_rows_not_done_are_listed(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    rows = [Row(n, "listener-aaaa0001", f"d{n}.example.com", "", extra=((TICKET, ""),)) for n in range(2, 62)]
    journal = new_journal(run_dir, rows, {}, problems={r.row_number: "CertificateId is empty" for r in rows})
    write_reports(journal)
    md, summary = summary_of(run_dir)
    section = md_section(md, "Rows not done")
    assert len(md_rows(section)) == 50 and md_rows(section)[-1][0] == "51"
    assert "… and 10 more: see failed.csv" in section
    assert summary["not_done"]["more"] == 10 and len(summary["not_done"]["rows"]) == 50


def test_the_workbook_summary_says_the_same(mixed: tuple[Journal, Reports, Path]) -> None:
    _, reports, run_dir = mixed
    ws = openpyxl.load_workbook(run_dir / "report.xlsx")["Summary"]
    lines = [tuple(c for c in row) for row in ws.iter_rows(values_only=True)]
    facts = {str(line[0]): line[1] for line in lines if line[0] is not None}
    assert facts["Rollback command"] == reports.rollback_command
    assert facts["Change ticket"] == f"CHG-1001, CHG-1002 (column {TICKET})"
    assert (1, "run", ALICE, ALICE_ID) in [(line[0], line[1], line[5], line[6]) for line in lines]
    assert (2, "rerun", BOB, BOB_ID) in [(line[0], line[1], line[5], line[6]) for line in lines]
    assert ("server certificate", "cert-old", "cert-new", "domain", 3) in [line[:5] for line in lines]
    not_done = {line[0]: line for line in lines if line[0] in (6, 7, 8, 9)}
    assert str(not_done[7][4]).startswith(CHANGE_REVERTED) and not_done[8][3] == "terminal"
    assert any(line[0] == 11 and str(line[4]).startswith(PREFLIGHT_EXPIRED) for line in lines)
    warnings = [str(line[1]) for line in lines if line[0] == "WARNING"]
    assert any("reverted" in w for w in warnings) and any("not sent" in w for w in warnings)


# --------------------------------------------------------------------------------------------------- C. report.csv
def test_report_csv_columns_and_integer_duplicate_of(mixed: tuple[Journal, Reports, Path]) -> None:
    _, _, run_dir = mixed
    header, rows = read_csv(run_dir / "report.csv")
    assert header[header.index("scope") + 1] == "proxy_id"
    at = header.index("poly_client_certificate_ids")
    assert header[at + 1 : at + 3] == ["expected_certificate_id", "expected_client_certificate_ids"]
    assert header[-1] == TICKET
    by_row = {r["row"]: r for r in rows}
    assert by_row["10"]["duplicate_of"] == "2"  # an integer, never 2.0
    assert all(r["duplicate_of"] == "" for n, r in by_row.items() if n != "10")
    assert (by_row["4"]["scope"], by_row["4"]["proxy_id"]) == ("listener", "link-0001")
    assert (by_row["8"]["expected_certificate_id"], by_row["8"]["expected_client_certificate_ids"]) == (
        "cert-old",
        "cert-ca1",
    )
    assert (by_row["3"]["expected_certificate_id"], by_row["3"]["expected_client_certificate_ids"]) == ("cert-gone", "")
    assert (by_row["2"]["expected_certificate_id"], by_row["2"]["expected_client_certificate_ids"]) == ("", "")
    raw = (run_dir / "report.csv").read_text(encoding="utf-8-sig")
    assert ",2.0," not in raw


# ------------------------------------------------------------------------------------------------- D. rollback.csv
def test_rollback_csv_is_compare_and_swap(mixed: tuple[Journal, Reports, Path]) -> None:
    """CertificateId is what the run set, PolyClientCertificateIds the client CAs it set (only when the rollback
    changes client CAs), the New* columns what restores the state read before."""
    _, _, run_dir = mixed
    header, rows = read_csv(run_dir / "rollback.csv")
    assert (
        tuple(header)
        == ROLLBACK_COLUMNS
        == (
            "Scope",
            "ProxyId",
            "ListenerId",
            "Domain",
            "CertificateId",
            "PolyClientCertificateIds",
            "NewCertificateId",
            "NewClientCertificateId",
            "NewPolyClientCertificateIds",
            "rolls_back_row",
            "note",
        )
    )
    by_row = {r["rolls_back_row"]: r for r in rows}
    assert sorted(by_row, key=int) == ["2", "3", "4", "11", "12", "13"]  # changed rows only: no duplicate
    cas = {n: tuple(r[c] for c in ROLLBACK_COLUMNS[:9]) for n, r in by_row.items()}
    la = "listener-aaaa0001"
    assert cas["2"] == ("domain", "", la, "a.example.com", "cert-new", "", "cert-old", "", "")
    assert cas["4"] == (
        "listener",
        "link-0001",
        "listener-bbbb0001",
        "",
        "cert-new",
        "cert-ca2",
        "cert-lst",
        "",
        "cert-ca1;cert-ca3",
    )
    assert cas["13"] == ("domain", "", la, "d.example.com", "cert-new", "cert-ca2", "cert-old", "cert-ca1", "")
    # a CA added to a domain that had none cannot be removed: the rollback restores the server certificate only
    assert cas["12"] == ("domain", "", la, "n.example.com", "cert-new", "", "cert-old", "", "")
    assert "cannot remove" in by_row["12"]["note"]
    assert all(r["note"] == "" for n, r in by_row.items() if n != "12")


# ------------------------------------------------------------------------------------------ E. the rotation mapping
def test_rotation_mapping_is_compare_and_swap(tmp_path: Path) -> None:
    lines = [
        MappingLine("domain", "", "listener-aaaa0001", "a.example.com", "cert-new", (), "cert-old", ()),
        MappingLine(
            "listener",
            "link-0001",
            "listener-bbbb0001",
            "",
            "cert-new",
            ("cert-canew", "cert-caother"),
            "cert-old",
            ("cert-caold", "cert-caother"),
        ),
    ]
    header, rows = read_csv(write_rotation(tmp_path, lines))
    assert (
        tuple(header)
        == ROTATION_COLUMNS
        == (
            "Scope",
            "ProxyId",
            "ListenerId",
            "Domain",
            "CertificateId",
            "PolyClientCertificateIds",
            "NewCertificateId",
            "NewPolyClientCertificateIds",
        )
    )
    assert [tuple(r.values()) for r in rows] == [
        ("domain", "", "listener-aaaa0001", "a.example.com", "cert-old", "", "cert-new", ""),
        (
            "listener",
            "link-0001",
            "listener-bbbb0001",
            "",
            "cert-old",
            "cert-caold;cert-caother",
            "cert-new",
            "cert-canew;cert-caother",
        ),
    ]


# ----------------------------------------------------------------------------------------- A. the user's files
def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_report_file_the_user_edited_is_never_overwritten(mixed: tuple[Journal, Reports, Path]) -> None:
    journal, first, run_dir = mixed
    assert first.kept == () and first.files == tuple(run_dir / n for n in REPORT_FILES)
    manifest = json.loads((run_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
    assert manifest["files"] == {n: sha256(run_dir / n) for n in REPORT_FILES}
    failed = run_dir / "failed.csv"
    edited = failed.read_bytes().replace(b"i.example.com,,", b"i.example.com,cert-new,") + b"# my notes\r\n"
    failed.write_bytes(edited)
    report_before = (run_dir / "report.csv").read_bytes()
    journal.begin_session(SessionKind.RERUN, {}, BOB, BOB_ID)
    journal.finish_row(6, Outcome.SUCCEEDED, request_id="req-6")  # the report changes
    journal.end_session(SessionStatus.FINISHED)

    second = write_reports(journal)
    assert failed.read_bytes() == edited  # byte for byte
    new = run_dir / "failed-2.csv"
    assert second.kept == ((failed, new),)
    assert second.path_of("failed.csv") == new and new in second.files
    assert "t.example.com" not in new.read_text(encoding="utf-8-sig")  # the new report: row 6 is done now
    # an untouched file is replaced in place
    assert (run_dir / "report.csv").read_bytes() != report_before
    assert not (run_dir / "report-2.csv").exists() and second.path_of("report.csv") == run_dir / "report.csv"
    # and the summary refers to the file actually written
    md, summary = summary_of(run_dir)
    assert summary["files"]["failed.csv"] == "failed-2.csv"
    assert summary["kept_files"] == [{"kept": "failed.csv", "written": "failed-2.csv"}]
    assert "`failed.csv` was changed since batchcert wrote it" in md and "`failed-2.csv`" in md
    invalid_step = next(s for s in summary["next_steps"] if "invalid" in s)
    assert "fix them in failed-2.csv" in invalid_step
    assert f"`batchcert run {shlex.quote(str(new))} --endpoint {INTL}`" in invalid_step
    assert second.failed_command == f"batchcert run {shlex.quote(str(new))} --endpoint {INTL}"
    manifest = json.loads((run_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
    assert manifest["files"]["failed-2.csv"] == sha256(new) and "replacing" not in manifest

    # written again: failed-2.csv is batchcert's and untouched, so it is replaced; failed.csv still kept
    third = write_reports(journal)
    assert failed.read_bytes() == edited and third.path_of("failed.csv") == new
    assert not (run_dir / "failed-3.csv").exists()
    assert third.kept == ((failed, new),)


def test_reports_of_an_older_run_directory_are_kept(mixed: tuple[Journal, Reports, Path]) -> None:
    """No record of what batchcert wrote (a run directory of an older batchcert): nothing is replaced."""
    journal, _, run_dir = mixed
    (run_dir / MANIFEST_NAME).unlink()
    before = {n: (run_dir / n).read_bytes() for n in REPORT_FILES}
    again = write_reports(journal)
    assert {n: (run_dir / n).read_bytes() for n in REPORT_FILES} == before
    renamed = {n: again.path_of(n).name for n in REPORT_FILES}
    assert renamed == {
        "report.csv": "report-2.csv",
        "report.xlsx": "report-2.xlsx",
        "summary.md": "summary-2.md",
        "summary.json": "summary-2.json",
        "failed.csv": "failed-2.csv",
        "rollback.csv": "rollback-2.csv",
    }
    assert len(again.kept) == len(REPORT_FILES)
    md, summary = summary_of(run_dir, "summary-2.md", "summary-2.json")
    assert summary["rollback"]["file"] == "rollback-2.csv"
    assert shlex.quote(str(run_dir / "rollback-2.csv")) in again.rollback_command
    assert again.rollback_command in md


def test_a_write_interrupted_before_the_renames_leaves_every_file_batchcerts(
    mixed: tuple[Journal, Reports, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The manifest names the new digests before the files are renamed: a process that died between the two leaves
    files that are still recognised as batchcert's — the next write replaces them in place."""
    journal, _, run_dir = mixed
    journal.begin_session(SessionKind.RERUN, {}, BOB, BOB_ID)
    journal.finish_row(6, Outcome.SUCCEEDED)
    journal.end_session(SessionStatus.FINISHED)
    real_replace = os.replace
    renamed: list[str] = []

    def die_after_two(src: Any, dst: Any) -> None:
        if Path(dst).name in REPORT_FILES:
            if len(renamed) == 2:
                raise KeyboardInterrupt
            renamed.append(Path(dst).name)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", die_after_two)
    with pytest.raises(KeyboardInterrupt):
        write_reports(journal)
    monkeypatch.setattr(os, "replace", real_replace)
    assert len(renamed) == 2
    again = write_reports(journal)
    assert again.kept == () and again.files == tuple(run_dir / n for n in REPORT_FILES)


def test_a_rollback_target_not_naming_its_domain_may_be_refused(tmp_path: Path) -> None:
    """A restore target whose SubjectCN does not name the domain is listed as one the service may refuse
    (CertificateNotMatchDomain) — never under "every restore target … names its domain"."""
    run_dir = tmp_path / "run"
    row = Row(2, "listener-aaaa0001", "w.example.com", "cert-new", extra=((TICKET, "CHG-7"),))
    journal = new_journal(run_dir, [row], {"endpoint": INTL})
    journal.begin_session(SessionKind.RUN, {}, ALICE, ALICE_ID)
    journal.record_certificates(certificates(time.time()))
    journal.record_previous([(2, "cert-narrow", ())])
    journal.finish_row(2, Outcome.SUCCEEDED, request_id="req-2")
    journal.end_session(SessionStatus.FINISHED)
    write_reports(journal)
    journal.close()
    md, summary = summary_of(run_dir)
    section = "\n".join(md_section(md, "Rollback"))
    assert "may refuse to roll back 1 row(s)" in section and "narrow.example.org" in section
    assert "names its domain" not in section
    assert [r["row"] for r in summary["rollback"]["doubtful"]] == [2]
