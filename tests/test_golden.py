"""Golden outputs: every file batchcert writes for a fixed journal, byte for byte (issue 24, "Guards first").

A behaviour-preserving restructuring must leave these files exactly as they are. The test builds a fixed journal —
a mixed run over two sessions: succeeded domain rows, a listener row, client CAs, a compare-and-swap row, unchanged,
terminal, retryable (one reverted by the service), invalid rows, an identical duplicate, a change-ticket column,
Chinese text and cells a spreadsheet would evaluate — and fixed plan, inventory and rotation lines, writes every
output through batchcert's own writers and compares each with its file in `tests/golden/`:

- report.csv, failed.csv, rollback.csv, summary.md, summary.json (`write_reports`), byte for byte;
- reports.sha256.json, byte for byte once each digest is normalised (below);
- report.xlsx and inventory.xlsx as cell dumps (`*.xlsx.tsv`): a `[sheet]` line, then one line per row, the cells
  tab-separated up to the row's last non-blank one, each the JSON of the value openpyxl reads (so `7`, `"7"` and
  `true` differ; a blank cell is empty; a text cell with Excel's quote prefix — a neutralised formula — is preceded
  by `'`);
- plan.csv (`write_plan`), inventory.csv (`write_inventory`), mapping.csv (`write_rotation`), byte for byte.

Frozen, not normalised: the wall clock. `time.time` is replaced process-wide for the test by a clock that stands
still at a time the test sets before each journal call (`Clock.at`), so every timestamp, duration and expiry in the
outputs is fixed whatever the host clock, the machine's speed or the number of times the code reads the clock. (The
code must keep calling `time.time()` through the `time` module for this to hold; a copy bound at import would show
as a diff with today's date.) The batchcert version is the `batchcert_version` fact of the fixed journal, so it is
frozen too.

Normalised, because it cannot be frozen:
- the test's temporary directory, which is in the commands and paths of the summaries: `str(tmp_path)` → `<TMP>`
  (the outputs go to fixed-name directories below it);
- reports.sha256.json's digests: each is first checked against the file it names, then replaced by
  `<sha256 of NAME: checked>` — report.xlsx embeds its creation time (xlsxwriter's document properties) and the
  summaries embed the temporary directory, so the digests differ from run to run; the file names and the layout
  are compared.

On a difference the test fails with a unified diff per file (and the offset of the first differing byte, which
shows changes a diff cannot, such as line endings or the BOM). To regenerate after an intended change of output:

    BATCHCERT_GOLDEN_UPDATE=1 .venv/bin/pytest -q -n0 tests/test_golden.py   # writes tests/golden/, then fails
    git diff tests/golden/                                                   # review every change
    .venv/bin/pytest -q -n0 tests/test_golden.py                            # passes

With the variable set the test writes the golden files and fails on purpose, so a run with it set never passes.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from batchcert.api.vocabulary import (
    ACTION_DESCRIBE_CERTIFICATES,
    ACTION_DESCRIBE_LISTENERS,
    ACTION_DESCRIBE_RULES,
    ACTION_MODIFY,
    ACTION_MODIFY_LISTENER,
)
from batchcert.inventory import NotSearched
from batchcert.journal import Journal, create_journal
from batchcert.live.certificates import CertificateInfo
from batchcert.live.state import LiveDomain, PlanAction, PlanLine
from batchcert.model import (
    CHANGE_REVERTED,
    PRECONDITION_MISMATCH,
    PRECONDITION_WRONG_PROXY,
    CallResult,
    Expected,
    Mapping,
    MappingLine,
    Outcome,
    Place,
    ReadBack,
    Row,
    Served,
    ServedCheck,
    SessionKind,
    SessionStatus,
    Verified,
)
from batchcert.report import write_inventory, write_plan, write_reports, write_rotation

GOLDEN = Path(__file__).parent / "golden"
UPDATE_VARIABLE = "BATCHCERT_GOLDEN_UPDATE"
#: the golden files each test compares (the xlsx as cell dumps)
RUN_OUTPUTS = (
    "report.csv",
    "failed.csv",
    "rollback.csv",
    "summary.md",
    "summary.json",
    "reports.sha256.json",
    "report.xlsx.tsv",
)
TABLE_OUTPUTS = ("plan.csv", "inventory.csv", "inventory.xlsx.tsv", "mapping.csv")
#: files in tests/golden/ that are not outputs (keeps git from converting the CSVs' CRLF line endings)
GOLDEN_SUPPORT = (".gitattributes",)

#: the frozen clock's origin: 2026-03-02T09:00:00Z
T0 = 1_772_442_000.0
DAY = 86400.0
INTL = "https://gaap.intl.tencentcloudapi.com"
ALICE, BOB = "alice@ops-1", "bob@ops-2"
ALICE_ID, BOB_ID = "AKID********************1111", "AKID********************2222"
LA, LB = "listener-aaaa0001", "listener-bbbb0001"
TICKET, REMARK = "变更单", "备注"
COLUMNS = (
    "Scope",
    "ProxyId",
    "ListenerId",
    "Domain",
    "CertificateId",
    "ClientCertificateId",
    "PolyClientCertificateIds",
    TICKET,
    REMARK,
)
FORMULA_DOMAIN = "=cmd|' /C calc'!A0"


class Clock:
    """A wall clock that stands still at the time last set (`at`): every `time.time()` between two settings reads the
    same value, however many times the code under test asks."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now

    def at(self, seconds: float) -> None:
        """Stand at T0 + `seconds`."""
        self.now = T0 + seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    frozen = Clock()
    monkeypatch.setattr(time, "time", frozen)
    return frozen


# ------------------------------------------------------------------------------------------------ the fixed journal
def run_rows() -> list[Row]:
    """The mapping's rows 2..16 (what each ends as is set in `build_journal`)."""

    def domain(n: int, name: str, cert: str, ticket: str, remark: str = "", **more: Any) -> Row:
        return Row(n, LA, name, cert, extra=((TICKET, ticket), (REMARK, remark)), **more)

    return [
        domain(2, "a.example.com", "cert-new", "CHG-1001", "首批切换"),  # succeeded
        domain(3, "b.example.com", "cert-new", "CHG-1001", expected=Expected("cert-old")),  # CAS; succeeded on retry
        Row(  # a listener's own certificate and client CAs: succeeded
            4,
            LB,
            "",
            "cert-new",
            "",
            ("cert-ca2",),
            ((TICKET, "CHG-1001"), (REMARK, "监听器证书")),
            scope="listener",
            proxy_id="link-0001",
        ),
        domain(5, "c.example.com", "cert-new", "", "-"),  # unchanged
        domain(6, "t.example.com", "cert-narrow", "CHG-1001", "+86 10 1234 5678"),  # terminal
        domain(7, "r.example.com", "cert-new", "CHG-1001"),  # reverted by the service, twice: retryable
        domain(8, "p.example.com", "cert-new", "CHG-1001", expected=Expected("cert-old", ("cert-ca1",))),  # mismatch
        domain(9, "i.example.com", "", "CHG-1002"),  # invalid
        domain(10, "a.example.com", "cert-new", "CHG-1001", "首批切换"),  # identical duplicate of row 2
        domain(11, "x.example.com", "cert-new", "CHG-1002"),  # succeeded; its rollback target has expired
        domain(12, "n.example.com", "cert-new", "CHG-1002", poly_client_certificate_ids=("cert-ca2",)),  # CA added
        domain(13, "d.example.com", "cert-new", "CHG-1002", client_certificate_id="cert-ca2"),  # live state differs
        domain(14, "中文.example.com", "cert-new", "变更-2026-001", '=HYPERLINK("https://evil.example","点我")'),
        domain(15, "e.example.com", "cert-new", "CHG-1002", "@ops 值班"),  # rollback target does not name it
        domain(16, FORMULA_DOMAIN, "cert-new", "CHG-1002"),  # invalid, a formula for a domain
    ]


def cells_of(row: Row) -> tuple[str, ...]:
    extra = dict(row.extra)
    return (
        row.scope,
        row.proxy_id,
        row.listener_id,
        row.domain,
        row.certificate_id,
        row.client_certificate_id,
        ";".join(row.poly_client_certificate_ids),
        extra[TICKET],
        extra[REMARK],
    )


def account_certificates() -> list[CertificateInfo]:
    return [
        CertificateInfo("cert-old", 2, int(T0 + 200 * DAY), "*.example.com", "旧证书"),
        CertificateInfo("cert-new", 2, int(T0 + 365 * DAY), "*.example.com", "新证书 2026"),
        CertificateInfo("cert-lst", 2, int(T0 + 300 * DAY), "*.example.com"),
        CertificateInfo("cert-narrow", 2, int(T0 + 300 * DAY), "narrow.example.org"),
        CertificateInfo("cert-expired", 2, int(T0 - 3 * DAY), "*.example.com"),
        CertificateInfo("cert-ca1", 1, int(T0 + 700 * DAY), "Ops CA 1"),
        CertificateInfo("cert-ca2", 1, int(T0 + 700 * DAY), "Ops CA 2"),
        CertificateInfo("cert-ca3", 1, int(T0 + 700 * DAY), "Ops CA 3"),
    ]


def ok(request_id: str, latency_s: float = 0.12) -> CallResult:
    return CallResult(None, request_id=request_id, http_status=200, latency_s=latency_s)


def send(journal: Journal, clock: Clock, at: float, row: int, result: CallResult, action: str = ACTION_MODIFY) -> None:
    """One change of `row` sent at T0 + `at`, its answer read 0.25 s later."""
    clock.at(at)
    attempt = journal.begin_attempt(row, action)
    clock.at(at + 0.25)
    journal.finish_attempt(attempt, result)


def read(journal: Journal, clock: Clock, at: float, listener: str, result: CallResult, action: str) -> None:
    clock.at(at + 0.1)
    journal.record_read(listener, result, T0 + at, action=action)


def build_journal(run_dir: Path, mapping_path: Path, clock: Clock) -> Journal:
    """The fixed mixed run: a first session by alice, a rerun two hours later by bob (another SecretId)."""
    rows = run_rows()
    clock.at(0)
    journal = create_journal(
        run_dir,
        {
            "mapping": str(mapping_path),
            "mapping_sha256": hashlib.sha256(b"golden mapping").hexdigest(),
            "operator": ALICE,
            "batchcert_version": "0.0.0+golden",
            "ignore_columns": json.dumps([REMARK]),
            "profile": "ops",
            "sheet": "",
            "encoding": "GB18030",
            "header_row": "1",
            "endpoint": INTL,
            "secret_id_masked": ALICE_ID,
            "rehearsal": "false",
            "world": "",
            "certificate_warnings": json.dumps(["cert-ca9 expires on 2026-03-12 (in 10 days): 1 row(s) install it"]),
        },
    )
    journal.record_mapping(
        Mapping(
            path=mapping_path,
            sha256=hashlib.sha256(b"golden mapping").hexdigest(),
            columns=COLUMNS,
            column_of={c: c for c in COLUMNS[:7]},
            rows=tuple(rows),
            cells={r.row_number: cells_of(r) for r in rows},
            problems={
                9: "row 9: CertificateId is empty",
                16: f"row 16: Domain {FORMULA_DOMAIN!r} is not a domain name",
            },
            duplicate_of={10: 2},
            encoding="GB18030",
        )
    )

    # session 1: the run
    clock.at(1)
    journal.begin_session(
        SessionKind.RUN,
        {"rate_per_s": 20.0, "concurrency": 4, "min_validity_days": 14},
        ALICE,
        ALICE_ID,
        "environment",
    )
    read(journal, clock, 1.2, "", ok("req-certs", 0.2), ACTION_DESCRIBE_CERTIFICATES)
    journal.record_certificates(account_certificates())
    limited = CallResult("RequestLimitExceeded", "请求过于频繁 | rate limit", "req-read-1", 200, 0.05)
    read(journal, clock, 1.9, LA, limited, ACTION_DESCRIBE_RULES)
    read(journal, clock, 2.4, LA, ok("req-read-2"), ACTION_DESCRIBE_RULES)
    read(journal, clock, 2.5, LB, ok("req-read-3"), ACTION_DESCRIBE_LISTENERS)
    clock.at(3)
    journal.record_previous(
        [
            (2, "cert-old", ()),
            (3, "cert-old", ()),
            (4, "cert-lst", ("cert-ca1", "cert-ca3")),
            (5, "cert-new", ()),
            (6, "cert-old", ()),
            (7, "cert-old", ()),
            (8, "cert-other", ()),
            (11, "cert-expired", ()),
            (12, "cert-old", ()),
            (13, "cert-old", ("cert-ca1",)),
            (14, "cert-old", ()),
            (15, "cert-narrow", ()),
        ]
    )
    clock.at(3.2)
    journal.finish_row(5, Outcome.UNCHANGED)
    clock.at(3.3)
    journal.finish_row(
        8,
        Outcome.TERMINAL,
        PRECONDITION_MISMATCH,
        "the live certificate is cert-other with client CAs none, the file expects cert-old with client CAs cert-ca1 "
        "as the current one — not sent: the place changed since the file was made",
    )
    send(journal, clock, 4, 2, ok("req-2"))
    journal.finish_row(2, Outcome.SUCCEEDED, request_id="req-2")
    busy = CallResult("FailedOperation.ListenerHasTask", "监听器有任务正在执行 | listener busy", "req-3a", 200, 0.1)
    send(journal, clock, 5, 3, busy)
    send(journal, clock, 7, 3, ok("req-3b"))
    journal.finish_row(3, Outcome.SUCCEEDED, request_id="req-3b")
    send(journal, clock, 8, 4, ok("req-4", 0.31), ACTION_MODIFY_LISTENER)
    journal.finish_row(4, Outcome.SUCCEEDED, request_id="req-4")
    mismatch = "证书与域名不匹配 | cert-narrow does not cover t.example.com"
    send(journal, clock, 9, 6, CallResult("InvalidParameterValue.CertificateNotMatchDomain", mismatch, "req-6", 200))
    journal.finish_row(6, Outcome.TERMINAL, "InvalidParameterValue.CertificateNotMatchDomain", mismatch, "req-6")
    send(journal, clock, 10, 7, ok("req-7a"))
    journal.finish_row(7, Outcome.SUCCEEDED, request_id="req-7a")
    for n in (11, 12, 13, 15):
        send(journal, clock, n, n, ok(f"req-{n}"))
        journal.finish_row(n, Outcome.SUCCEEDED, request_id=f"req-{n}")
    send(journal, clock, 14, 14, CallResult("Transport.Timeout", "no answer within 5 s", "", None, 5.0))
    journal.finish_row(14, Outcome.RETRYABLE, "Transport.Timeout", "no answer within 5 s")
    clock.at(20)
    journal.finish_row(7, Outcome.RETRYABLE, CHANGE_REVERTED, "the read-back shows cert-old again (服务已回滚)")
    clock.at(30)
    journal.record_verification(
        [
            ReadBack(2, "cert-new", (), Verified.AT_TARGET),
            ReadBack(3, "cert-new", (), Verified.AT_TARGET),
            ReadBack(4, "cert-new", ("cert-ca2",), Verified.AT_TARGET),
            ReadBack(5, "cert-new", (), Verified.AT_TARGET),
            ReadBack(11, "cert-new", (), Verified.PENDING),
            ReadBack(12, "cert-new", ("cert-ca2",), Verified.AT_TARGET),
            ReadBack(13, "cert-new", ("cert-ca1",), Verified.NOT_AT_TARGET),
            ReadBack(15, "cert-new", (), Verified.AT_TARGET),
        ]
    )
    clock.at(35)
    journal.record_served(
        [
            ServedCheck(2, Served.TRUE, "ab" * 32, "CN=*.example.com", 1803977600),
            ServedCheck(3, Served.FALSE, "cd" * 32, "CN=old.example.com", 1790000000),
            ServedCheck(5, Served.UNREACHABLE, note="ConnectionRefusedError: refused"),
        ]
    )
    clock.at(40)
    journal.end_session(SessionStatus.FINISHED)

    # session 2: the rerun, two hours later, by bob
    clock.at(7200)
    journal.begin_session(
        SessionKind.RERUN,
        {"rate_per_s": 10.0, "concurrency": 2, "min_validity_days": 14},
        BOB,
        BOB_ID,
        "assumed role qcs::cam::uin/100000000001:roleName/batchcert (session batchcert, from profile ops)",
    )
    read(journal, clock, 7201, LA, ok("req-read-4"), ACTION_DESCRIBE_RULES)
    send(journal, clock, 7210, 7, ok("req-7b"))
    journal.finish_row(7, Outcome.SUCCEEDED, request_id="req-7b")
    send(journal, clock, 7220, 14, CallResult("InternalError", "内部错误，请稍后重试", "req-14b", 500, 0.4))
    journal.finish_row(14, Outcome.RETRYABLE, "InternalError", "内部错误，请稍后重试", "req-14b")
    clock.at(7230)
    journal.finish_row(7, Outcome.RETRYABLE, CHANGE_REVERTED, "the read-back shows cert-old again (服务已回滚)")
    clock.at(7260)
    journal.end_session(SessionStatus.FINISHED)
    return journal


# --------------------------------------------------------------------------------------------- the other tables
def plan_lines() -> list[PlanLine]:
    """One line per plan action."""

    def row(n: int, domain: str, cert: str = "cert-new", **more: Any) -> Row:
        return Row(n, LA, domain, cert, **more)

    listener = Row(8, LB, "", "cert-new", "", ("cert-ca2",), scope="listener", proxy_id="link-0001")
    return [
        PlanLine(row(2, "a.example.com"), PlanAction.CHANGE, LiveDomain("a.example.com", "cert-old", (), 0)),
        PlanLine(row(3, "中文.example.com"), PlanAction.UNCHANGED, LiveDomain("中文.example.com", "cert-new", (), 0)),
        PlanLine(row(4, "gone.example.com"), PlanAction.NOT_FOUND, None, f"{LA} has no domain gone.example.com"),
        PlanLine(
            row(5, "busy.example.com", client_certificate_id="cert-ca2"),
            PlanAction.CHANGING,
            LiveDomain("busy.example.com", "cert-old", ("cert-ca1",), 1),
            "the domain is being changed (DomainStatus 1): run waits for it",
        ),
        PlanLine(
            row(
                6, "p.example.com", poly_client_certificate_ids=("cert-ca2", "cert-ca3"), expected=Expected("cert-old")
            ),
            PlanAction.MISMATCH,
            LiveDomain("p.example.com", "cert-other", ("cert-ca1", "cert-ca3"), 0),
            f"{PRECONDITION_MISMATCH}: the live certificate is cert-other, the file expects cert-old",
        ),
        PlanLine(
            listener,
            PlanAction.WRONG_PROXY,
            LiveDomain("", "cert-lst", ("cert-ca1",), 0, proxy_id="link-0002"),
            f"{PRECONDITION_WRONG_PROXY}: {LB} is on link-0002, not link-0001",
        ),
        PlanLine(
            row(9, "x.example.com", "cert-expired"),
            PlanAction.REFUSED,
            LiveDomain("x.example.com", "cert-old", (), 0),
            "Preflight.CertificateExpired: CertificateId cert-expired expired on 2026-02-27",
        ),
        PlanLine(
            row(10, FORMULA_DOMAIN), PlanAction.INVALID, None, f"row 10: Domain {FORMULA_DOMAIN!r} is not a domain name"
        ),
        PlanLine(row(11, "u.example.com"), PlanAction.UNKNOWN, None),
    ]


def place(scope: str, listener: str, domain: str, certificate: str, *clients: str, **more: Any) -> Place:
    """A place on proxy link-0001's listener 生产 HTTPS unless `more` says otherwise."""
    fields: dict[str, Any] = {
        "proxy_id": "link-0001",
        "group_id": "",
        "effective_certificate_id": certificate,
        "listener_name": "生产 HTTPS",
        "port": 443,
        "status": 0,
        "proxy_name": "上海-通道",
        "proxy_status": "RUNNING",
    }
    fields.update(more)
    return Place(
        scope, listener_id=listener, domain=domain, certificate_id=certificate, client_certificate_ids=clients, **fields
    )


def inventory_places() -> tuple[list[Place], list[NotSearched]]:
    """Places on a proxy and on a group (a listener name a spreadsheet would evaluate, a port unknown); one listener
    whose domains could not be read, a proxy that could not be listed."""
    group: dict[str, Any] = {
        "proxy_id": "",
        "group_id": "lg-0001",
        "listener_name": "=SUM(1,2)",
        "proxy_name": "",
        "proxy_status": "",
    }
    return (
        [
            place("listener", LB, "", "cert-lst", "cert-ca1", "cert-ca3"),
            place("domain", LB, "a.example.com", "default", effective_certificate_id="cert-lst"),
            place("domain", LB, "中文.example.com", "cert-old", "cert-ca1", status=1),
            place("listener", LA, "", "cert-expired", **group, port=8443),
            place("domain", LA, "old.example.com", "cert-gone", **group, port=None),
        ],
        [
            NotSearched(
                scope="proxy",
                proxy_id="link-0009",
                group_id="",
                name="北京-通道",
                status="RUNNING",
                action="DescribeHTTPSListeners",
                code="AuthFailure.UnauthorizedOperation",
                message="没有权限 | not allowed",
            ),
            NotSearched(
                scope="group",
                proxy_id="",
                group_id="lg-0001",
                name="",
                status="RUNNING",
                action="DescribeRules",
                code="ResourceNotFound",
                message="-the listener is gone",
                listener_id="listener-cccc0001",
            ),
        ],
    )


def inventory_certificates() -> dict[str, CertificateInfo]:
    found = [
        CertificateInfo("cert-lst", 2, int(T0 + 300 * DAY), "*.example.com", "主证书"),
        CertificateInfo("cert-old", 2, int(T0 + 10 * DAY + 3600), "*.example.com", "=旧证书"),
        CertificateInfo("cert-expired", 2, int(T0 - 3 * DAY), "*.example.com"),
        CertificateInfo("cert-ca1", 1, int(T0 + 700 * DAY), "Ops CA 1"),
        CertificateInfo("cert-ca3", 1, 0, "Ops CA 3"),
        CertificateInfo("cert-unused", 4, int(T0 + 30 * DAY), "proxy.example.com", "unused"),
    ]
    return {c.certificate_id: c for c in found}


def rotation_lines() -> list[MappingLine]:
    return [
        MappingLine("listener", "link-0001", LB, "", "cert-new", ("cert-ca2", "cert-ca3"), "cert-lst", ("cert-ca1",)),
        MappingLine("domain", "link-0001", LB, "a.example.com", "cert-new", (), "default"),
        MappingLine(
            "domain", "link-0001", LB, "中文.example.com", "cert-new", ("cert-ca2",), "cert-old", ("cert-ca1",)
        ),
        MappingLine("domain", "", LA, "+plus.example.com", "cert-new", (), "cert-old"),
    ]


# ------------------------------------------------------------------------------------------- dumps and comparison
def cell_text(cell: Any) -> str:
    """A cell as the dump shows it: empty when blank, else the JSON of its value; `'` before a quote-prefixed one."""
    value = cell.value
    if value is None:
        return ""
    text = json.dumps(value, ensure_ascii=False) if isinstance(value, str | int | float | bool) else repr(value)
    return "'" + text if cell.quotePrefix else text


def workbook_dump(path: Path) -> bytes:
    """Every sheet of a workbook, in order: `[name]`, then one tab-separated line per row (see the module doc)."""
    book = openpyxl.load_workbook(path)  # not read-only: the quote prefix is a style
    lines: list[str] = []
    for sheet in book.worksheets:
        lines.append(f"[{sheet.title}]")
        for row in sheet.iter_rows():
            cells = list(row)
            while cells and cells[-1].value is None:  # no trailing blanks: a golden line never ends in whitespace
                cells.pop()
            lines.append("\t".join(cell_text(cell) for cell in cells))
    book.close()
    return ("\n".join(lines) + "\n").encode("utf-8")


def without_tmp(data: bytes, tmp_path: Path) -> bytes:
    return data.replace(str(tmp_path).encode("utf-8"), b"<TMP>")


def manifest_checked(run_dir: Path) -> bytes:
    """reports.sha256.json with each digest checked against its file and replaced (see the module doc)."""
    data = json.loads((run_dir / "reports.sha256.json").read_text(encoding="utf-8"))
    for name, digest in data["files"].items():
        actual = hashlib.sha256((run_dir / name).read_bytes()).hexdigest()
        assert digest == actual, f"reports.sha256.json records {digest} for {name}, the file's sha256 is {actual}"
        data["files"][name] = f"<sha256 of {name}: checked>"
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8")


def first_difference(expected: bytes, actual: bytes) -> int:
    """The offset of the first byte that differs (the shorter length when one is a prefix of the other)."""
    pairs = enumerate(zip(expected, actual, strict=False))
    return next((i for i, (a, b) in pairs if a != b), min(len(expected), len(actual)))


def difference(name: str, expected: bytes, actual: bytes) -> str:
    at = first_difference(expected, actual)
    lines = list(
        difflib.unified_diff(
            expected.decode("utf-8", "replace").splitlines(),
            actual.decode("utf-8", "replace").splitlines(),
            f"tests/golden/{name}",
            f"{name} as written now",
            lineterm="",
        )
    )
    if len(lines) > 400:
        lines = [*lines[:400], f"… {len(lines) - 400} more diff lines"]
    where = (
        f"{name}: differs from tests/golden/{name} from byte {at} "
        f"(golden {expected[at : at + 24]!r}, now {actual[at : at + 24]!r}; "
        f"{len(expected)} bytes golden, {len(actual)} now)"
    )
    if not lines:
        where += " — only in line endings, the BOM or the final newline"
    return "\n".join([where, *lines])


def check_golden(outputs: dict[str, bytes], names: Iterable[str]) -> None:
    """Compare `outputs` with tests/golden/ byte for byte — or, with BATCHCERT_GOLDEN_UPDATE=1, write them there and
    fail saying so."""
    assert sorted(outputs) == sorted(names)
    if os.environ.get(UPDATE_VARIABLE) == "1":
        GOLDEN.mkdir(exist_ok=True)
        for name, data in outputs.items():
            (GOLDEN / name).write_bytes(data)
        pytest.fail(
            f"{UPDATE_VARIABLE}=1: wrote {len(outputs)} golden files to {GOLDEN} ({', '.join(sorted(outputs))}) "
            f"instead of comparing — review them (git diff tests/golden/), then run without {UPDATE_VARIABLE}",
            pytrace=False,
        )
    problems = []
    for name in sorted(outputs):
        path = GOLDEN / name
        if not path.is_file():
            problems.append(f"{name}: tests/golden/{name} is missing — generate it with {UPDATE_VARIABLE}=1")
        elif (expected := path.read_bytes()) != outputs[name]:
            problems.append(difference(name, expected, outputs[name]))
    if problems:
        pytest.fail(
            "the output differs from the golden files (an intended change? regenerate them with "
            f"{UPDATE_VARIABLE}=1 and review the diff):\n\n" + "\n\n".join(problems),
            pytrace=False,
        )


def read_outputs(directory: Path, tmp_path: Path, files: dict[str, Callable[[Path], bytes]]) -> dict[str, bytes]:
    return {name: without_tmp(dump(directory / name.removesuffix(".tsv")), tmp_path) for name, dump in files.items()}


# ---------------------------------------------------------------------------------------------------------- tests
def test_the_reports_of_a_fixed_journal_match_the_golden_files(tmp_path: Path, clock: Clock) -> None:
    run_dir = tmp_path / "golden-run"
    journal = build_journal(run_dir, tmp_path / "inputs" / "证书变更.csv", clock)
    with journal:
        clock.at(7300)
        reports = write_reports(journal)
    assert reports.kept == ()  # every report went to its own name, read below
    outputs = read_outputs(
        run_dir,
        tmp_path,
        {
            **{name: Path.read_bytes for name in RUN_OUTPUTS if name.endswith((".csv", ".md", "summary.json"))},
            "report.xlsx.tsv": workbook_dump,
        },
    )
    outputs["reports.sha256.json"] = without_tmp(manifest_checked(run_dir), tmp_path)
    check_golden(outputs, RUN_OUTPUTS)


def test_the_plan_inventory_and_rotation_tables_match_the_golden_files(tmp_path: Path, clock: Clock) -> None:
    out_dir = tmp_path / "golden-tables"
    clock.at(0)
    write_plan(out_dir, plan_lines())
    places, not_searched = inventory_places()
    write_inventory(out_dir, places, inventory_certificates(), T0, not_searched)
    write_rotation(out_dir, rotation_lines())
    outputs = read_outputs(
        out_dir,
        tmp_path,
        {
            "plan.csv": Path.read_bytes,
            "inventory.csv": Path.read_bytes,
            "inventory.xlsx.tsv": workbook_dump,
            "mapping.csv": Path.read_bytes,
        },
    )
    check_golden(outputs, TABLE_OUTPUTS)


def test_the_golden_folder_holds_only_what_the_tests_compare() -> None:
    """A golden file no test writes any more would go on looking like a guard."""
    found = sorted(p.name for p in GOLDEN.iterdir())
    assert found == sorted((*RUN_OUTPUTS, *TABLE_OUTPUTS, *GOLDEN_SUPPORT))
