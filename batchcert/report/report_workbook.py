"""report.xlsx, written as the rows stream past (`Book(streamed=True)`): Summary (the change record with a chart),
Rows (the report table, filterable, colour-coded by outcome, header frozen) and Errors (why rows are not done, then
every failed request).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from batchcert.journal import FailedAttempt
from batchcert.model import Outcome, Verified
from batchcert.report.summary import reason_text, row_list
from batchcert.report.tally import MOVE_KEYS
from batchcert.report.workbook import COLUMN_WIDTHS, Book, Sheet

OUTCOME_COLOURS = {
    Outcome.SUCCEEDED: "#C6EFCE",
    Outcome.UNCHANGED: "#DDEBF7",
    Outcome.RETRYABLE: "#FFEB9C",
    Outcome.TERMINAL: "#FFC7CE",
    Outcome.INVALID: "#F4B084",
    Outcome.NOT_ATTEMPTED: "#D9D9D9",
}
ERRORS_COLUMNS = ("kind", "row", "action", "at", "code", "message", "request_id", "latency_ms")
ERRORS_COLUMN_WIDTHS = {"kind": 18, "row": 7, "action": 24, "at": 25, "code": 40, "message": 70, "request_id": 38}
#: the width of a column with no width of its own (Rows, Errors)
DEFAULT_WIDTH = 14


class ReportWorkbook:
    """report.xlsx: `add_row` for each report line in order, then `close` with the summary and the failed requests."""

    def __init__(self, path: Path, header: Sequence[str]) -> None:
        self._book = Book(path, streamed=True)
        self._summary = SummarySheet(self._book, self._book.add_sheet("Summary"))
        self._rows = self._book.add_sheet("Rows")
        self._errors = self._book.add_sheet("Errors")
        self._header = list(header)
        self._rows.put_header(header, COLUMN_WIDTHS, DEFAULT_WIDTH)
        #: `verified` is written as a real boolean (TRUE/FALSE) where it is one
        self._verified_col = self._header.index("verified")
        self._lines = 0

    def add_row(self, line: Sequence[Any]) -> None:
        """One report line (REPORT_COLUMNS, then the mapping's extra columns) on the Rows sheet."""
        self._lines += 1
        verified = line[self._verified_col]
        if verified in (Verified.AT_TARGET, Verified.NOT_AT_TARGET):
            line = [*line]
            line[self._verified_col] = verified == Verified.AT_TARGET
        self._rows.put_line(self._lines, line)

    def close(self, summary: dict[str, Any], failed: Iterable[FailedAttempt]) -> None:
        self._finish_rows()
        self._summary.write(summary)
        self._write_errors(failed)
        self._book.close()

    def _finish_rows(self) -> None:
        sheet, last = self._rows, max(self._lines, 1)
        sheet.finish_table(self._lines, len(self._header))
        col = self._header.index("outcome")
        for outcome, colour in OUTCOME_COLOURS.items():
            sheet.ws.conditional_format(
                1,
                col,
                last,
                col,
                {
                    "type": "cell",
                    "criteria": "==",
                    "value": f'"{outcome.value}"',
                    "format": self._book.add_format({"bg_color": colour}),
                },
            )

    def _write_errors(self, failed: Iterable[FailedAttempt]) -> None:
        """Why rows are not done (final errors first), the pre-flight's findings, then every failed request with
        `kind` saying whether the run got past it (transient)."""
        sheet = self._errors
        sheet.put_header(ERRORS_COLUMNS, ERRORS_COLUMN_WIDTHS, DEFAULT_WIDTH)
        r = 0
        for r, a in enumerate(failed, start=1):
            line = (a.kind, a.row, a.action, a.sent_at, a.code, a.message, a.request_id, a.latency_ms)
            for c, value in enumerate(line):
                sheet.put(r, c, value)
        sheet.finish_table(r, len(ERRORS_COLUMNS))


def summary_facts(summary: dict[str, Any]) -> list[tuple[str, Any]]:
    """The Summary sheet's first lines (label, value): warnings first, then who ran what, where and when."""
    settings = ", ".join(f"{k} {v}" for k, v in summary["settings"].items() if k != "endpoint")
    top: list[tuple[str, Any]] = [
        ("Run by", f"{summary['operator']} with batchcert {summary['batchcert_version']}"),
        ("Mapping", summary["mapping"]),
        ("Mapping sha256", summary["mapping_sha256"]),
        ("Sheet", summary["sheet"] or "(CSV)"),
        ("Encoding", summary["encoding"]),
        ("Settings", settings or "none recorded"),
        ("Endpoint", summary["endpoint"]),
        ("SecretId", summary["secret_id"]),
        ("Started", summary["started_at"]),
        ("Finished", summary["finished_at"]),
        ("Rows", summary["rows"]),
        ("Verified after the run", summary["verification"]["verified"]),
        ("Transient errors got past", sum(summary["transient_errors"].values())),
        (
            "Rollback command",
            summary["rollback"]["command"] if summary["rollback"]["rows"] else "nothing to roll back",
        ),
        *(("Next step", step) for step in summary["next_steps"]),
    ]
    for ticket in reversed(summary["change_tickets"]):
        more = f" and {ticket['more']} more" if ticket["more"] else ""
        values = ", ".join(ticket["values"]) or "(empty)"
        top.insert(2, ("Change ticket", f"{values}{more} (column {ticket['column']})"))
    for kept in summary["kept_files"]:
        top.append(
            ("Kept file", f"{kept['kept']} was changed since batchcert wrote it: this report's is {kept['written']}")
        )
    if summary["precondition_mismatch"]:
        rows = row_list(summary["precondition_mismatch"])
        top.insert(0, ("WARNING", f"rows {rows} were not sent: the place no longer held the expected certificate"))
    if summary["reverted"]:
        rows = row_list(summary["reverted"])
        top.insert(0, ("WARNING", f"the service reverted the change of rows {rows}: retryable, rerun sends them"))
    if summary["interrupted"]:
        top.insert(0, ("INTERRUPTED", "the last session was interrupted: rows not attempted are listed below"))
    if summary["verification"]["succeeded_but_live_state_differs"]:
        differs = ", ".join(str(r) for r in summary["verification"]["succeeded_but_live_state_differs"])
        top.insert(0, ("WARNING", f"rows {differs} succeeded but the live state shows something else"))
    if summary["rehearsal"]:
        top.insert(0, ("REHEARSAL", "embedded emulator — nothing changed on Tencent Cloud"))
    return top


class SummarySheet:
    """The Summary sheet: `summary_facts`, the rows per outcome with a chart, the error codes, then titled tables
    (accounts when the rows name them, sessions, certificate moves, rows not done, rollback findings), top to
    bottom."""

    def __init__(self, book: Book, sheet: Sheet) -> None:
        self._book, self._sheet = book, sheet

    def write(self, summary: dict[str, Any]) -> None:
        sheet, bold = self._sheet, self._sheet.bold
        sheet.ws.set_column(0, 0, 24)
        sheet.ws.set_column(1, 1, 70)
        top = summary_facts(summary)
        for r, (k, v) in enumerate(top):
            sheet.put(r, 0, k, bold)
            sheet.put(r, 1, v)
        counts = summary["counts"]
        base = len(top) + 1
        self._pairs(base, ("Outcome", "Rows"), counts)
        chart = self._book.add_chart({"type": "column"})
        chart.add_series(
            {
                "name": "Rows per outcome",
                "categories": ["Summary", base + 1, 0, base + len(counts), 0],
                "values": ["Summary", base + 1, 1, base + len(counts), 1],
            }
        )
        chart.set_legend({"none": True})
        sheet.ws.insert_chart(1, 3, chart)
        codes_at = base + len(counts) + 2
        self._pairs(codes_at, ("Error code", "Rows"), summary["error_codes"])
        at = codes_at + len(summary["error_codes"]) + 2
        if "accounts" in summary:  # rows that name their accounts (README, "Many accounts in one run")
            outcomes = list(counts)
            at = self._table(
                at,
                "Accounts",
                ["profile", "rows", *outcomes, "all done", "SecretId", "credentials"],
                [
                    [
                        a["profile"] or "(default)",
                        a["rows"],
                        *(a["counts"][o] for o in outcomes),
                        a["all_done"],
                        a["secret_id"],
                        a["credentials"],
                    ]
                    for a in summary["accounts"]
                ],
            )
        at = self._table(
            at,
            "Sessions",
            ["#", "kind", "started", "finished", "status", "operator", "SecretId", "credentials"],
            [
                [
                    n,
                    s["kind"],
                    s["started_at"],
                    s["finished_at"],
                    s["status"],
                    s["operator"],
                    s["secret_id"],
                    s["credentials"],
                ]
                for n, s in enumerate(summary["sessions"], start=1)
            ],
        )
        at = self._table(
            at,
            "Certificate moves",
            [*MOVE_KEYS, "places"],
            [[m["kind"], m["from"], m["to"], m["scope"], m["places"]] for m in summary["certificate_moves"]],
            "this run changed no certificate",
        )
        not_done = summary["not_done"]
        if not_done["total"]:
            at = self._table(
                at,
                f"Rows not done ({not_done['total']})",
                ["row", "listener_id", "domain", "outcome", "reason"],
                [[r["row"], r["listener_id"], r["domain"], r["outcome"], reason_text(r)] for r in not_done["rows"]],
                more=f"… and {not_done['more']} more: see {not_done['file']}" if not_done["more"] else "",
            )
        self._rollback(at, summary["rollback"])

    def _pairs(self, at: int, header: tuple[str, str], counts: dict[str, int]) -> None:
        """A two-column table of counts from row `at`: a bold header, then name and number."""
        for c, name in enumerate(header):
            self._sheet.put(at, c, name, self._sheet.bold)
        for i, (k, v) in enumerate(counts.items(), start=1):
            self._sheet.put(at + i, 0, k)
            self._sheet.put(at + i, 1, v)

    def _rollback(self, at: int, rollback: dict[str, Any]) -> None:
        """What the rollback would be refused, may be refused, and cannot restore exactly."""
        sheet, places = self._sheet, ["row", "listener_id", "domain", "restores", "reason"]
        if rollback["rows"] and not rollback["targets_checked"]:
            sheet.put(at, 0, "Rollback refused", sheet.bold)
            sheet.put(at, 1, "not checked: the run did not read the account's certificates")
            at += 2
        elif rollback["rows"]:
            at = self._table(
                at,
                f"Rollback refused ({rollback['refused_total']})",
                places,
                [
                    [r["row"], r["listener_id"], r["domain"], r["restores"], f"{r['code']}: {r['reason']}"]
                    for r in rollback["refused"]
                ],
                "every restore target exists, has the right type and has not expired",
            )
            if rollback["doubtful_total"]:
                at = self._table(
                    at,
                    f"Rollback may be refused ({rollback['doubtful_total']})",
                    places,
                    [
                        [r["row"], r["listener_id"], r["domain"], r["restores"], r["reason"]]
                        for r in rollback["doubtful"]
                    ],
                    "",
                )
        if rollback["notes_total"]:
            self._table(
                at,
                f"Rollback notes ({rollback['notes_total']})",
                ["row", "listener_id", "domain", "note"],
                [[r["row"], r["listener_id"], r["domain"], r["note"]] for r in rollback["notes"]],
            )

    def _table(
        self, at: int, title: str, header: Sequence[str], rows: list[list[Any]], empty: str = "", more: str = ""
    ) -> int:
        """A titled table from row `at`; returns the row after it and a blank line."""
        sheet = self._sheet
        sheet.put(at, 0, title, sheet.bold)
        if not rows:
            if empty:
                sheet.put(at, 1, empty)
            return at + 2
        for c, name in enumerate(header):
            sheet.put(at + 1, c, name, sheet.bold)
        for r, line in enumerate(rows, start=at + 2):
            for c, value in enumerate(line):
                sheet.put(r, c, value)
        at += len(rows) + 2
        if more:
            sheet.put(at, 0, more)
            at += 1
        return at + 1
