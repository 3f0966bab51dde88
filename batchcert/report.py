"""Reports: views over the journal, regenerated whole at any time (also after a crash).

Files in the run directory: `report.csv` (one line per mapping row, mapping order), `report.xlsx` (Summary with a
chart, Rows filterable and colour-coded, Errors), `summary.md` (for a change ticket), `summary.json` (automation),
`failed.csv` (rows not done, in the mapping's own columns — a valid mapping to fix and feed back).

Spreadsheet safety (reference, "Report safety"; OWASP CSV injection): text cells starting with `=`, `+`, `-`, `@`,
tab or CR get a leading `'` in the CSV files; in the workbook they are written as plain strings with Excel's quote
prefix, and xlsxwriter's string-to-formula and string-to-URL conversions are off. `batchcert.plan` strips the `'`
again when a report is read back as a mapping.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import xlsxwriter

from batchcert.journal import Journal, iso_utc
from batchcert.model import Outcome, Row
from batchcert.plan import FORMULA_PREFIXES
from batchcert.reconcile import rollback_for

REPORT_COLUMNS = (
    "row",
    "listener_id",
    "domain",
    "certificate_id",
    "client_certificate_id",
    "poly_client_certificate_ids",
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
)
ROLLBACK_COLUMNS = (
    "ListenerId",
    "Domain",
    "CertificateId",
    "ClientCertificateId",
    "PolyClientCertificateIds",
    "rolls_back_row",
    "note",
)
OUTCOME_COLOURS = {
    Outcome.SUCCEEDED: "#C6EFCE",
    Outcome.UNCHANGED: "#DDEBF7",
    Outcome.RETRYABLE: "#FFEB9C",
    Outcome.TERMINAL: "#FFC7CE",
    Outcome.INVALID: "#F4B084",
    Outcome.NOT_ATTEMPTED: "#D9D9D9",
}
DONE_OUTCOMES = (Outcome.SUCCEEDED, Outcome.UNCHANGED)
EXCEL_CELL_CHARS = 32767


def neutralize(value: Any) -> Any:
    """Prefix a text cell that a spreadsheet would evaluate with `'`; other values pass unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


@dataclass(frozen=True)
class Reports:
    """Paths of the written reports and the counts they show."""

    run_dir: Path
    counts: dict[Outcome, int]
    files: tuple[Path, ...]
    #: rows that succeeded although the post-run read shows another state
    live_state_differs: tuple[int, ...] = ()


def _write_atomic(path: Path, write: Any) -> None:
    """Write to a temporary file beside `path`, then rename: a reader never sees half a report."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_safe_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Write a CSV atomically with every formula-like text cell neutralized."""
    _write_csv(path, header, rows)


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    def write(target: Path) -> None:
        with target.open("w", newline="", encoding="utf-8") as fh:
            out = csv.writer(fh)
            out.writerow([neutralize(h) for h in header])
            out.writerows([neutralize("" if v is None else v) for v in row] for row in rows)

    _write_atomic(path, write)


def build_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """The report table from `Journal.report_records()`: REPORT_COLUMNS, then the mapping's extra columns, one line
    per mapping row."""
    extra_names: list[str] = []
    for record in records:
        for name, _ in record["extra"]:
            if name not in extra_names:
                extra_names.append(name)
    table = []
    for record in records:
        line = {c: record[c] for c in REPORT_COLUMNS}
        extra = dict(record["extra"])
        line.update({name: extra.get(name, "") for name in extra_names})
        table.append(line)
    frame = pd.DataFrame(table, columns=[*REPORT_COLUMNS, *[n for n in extra_names if n not in REPORT_COLUMNS]])
    frame["duplicate_of"] = frame["duplicate_of"].astype("Int64")
    return frame


def write_reports(journal: Journal) -> Reports:
    """(Re)write every report file of `journal`'s run directory. Side effect: files in the run directory only."""
    run_dir = journal.run_dir
    facts = journal.facts()
    records = journal.report_records()
    frame = build_frame(records)
    counts = {o: int((frame["outcome"] == o.value).sum()) for o in Outcome}
    codes = Counter(c for c in frame["error_code"] if c)
    attempts = journal.attempt_records()
    sessions = journal.sessions()
    summary = _summary(facts, counts, codes, attempts, sessions, len(frame), _verification(frame))

    _write_csv(
        run_dir / "report.csv",
        list(frame.columns),
        frame.astype(object).where(frame.notna(), "").itertuples(index=False),
    )
    _write_failed(records, json.loads(facts.get("columns", "[]")), run_dir / "failed.csv")
    _write_rollback(records, run_dir / "rollback.csv")
    _write_atomic(
        run_dir / "summary.json",
        lambda p: p.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8"),
    )
    _write_atomic(run_dir / "summary.md", lambda p: p.write_text(_markdown(summary), encoding="utf-8"))
    _write_atomic(run_dir / "report.xlsx", lambda p: _write_workbook(p, summary, frame, attempts))
    files = tuple(
        run_dir / n for n in ("report.csv", "report.xlsx", "summary.md", "summary.json", "failed.csv", "rollback.csv")
    )
    return Reports(run_dir, counts, files, tuple(summary["verification"]["succeeded_but_live_state_differs"]))


def _write_failed(records: list[dict[str, Any]], columns: list[str], path: Path) -> None:
    """The rows not done, in the mapping's own columns and cells."""
    done = {o.value for o in DONE_OUTCOMES}
    _write_csv(path, columns, [r["cells"] for r in records if r["outcome"] not in done])


def _write_rollback(records: list[dict[str, Any]], path: Path) -> None:
    """A mapping that restores, for every row this run changed, the ids read before the change (`default` too)."""
    lines = []
    for record in records:
        if record["outcome"] != Outcome.SUCCEEDED or record["duplicate_of"] is not None or not record["previous_read"]:
            continue
        row = Row(
            record["row"],
            record["listener_id"],
            record["domain"],
            record["certificate_id"],
            record["client_certificate_id"],
            tuple(p for p in record["poly_client_certificate_ids"].split(";") if p),
        )
        previous_clients = tuple(p for p in record["previous_client_certificate_ids"].split(";") if p)
        undo = rollback_for(row, record["previous_certificate_id"], previous_clients)
        lines.append(
            [
                row.listener_id,
                row.domain,
                undo.certificate_id,
                undo.client_certificate_id,
                undo.poly_client_certificate_ids,
                row.row_number,
                undo.note,
            ]
        )
    _write_csv(path, ROLLBACK_COLUMNS, lines)


def _summary(
    facts: dict[str, str],
    counts: dict[Outcome, int],
    codes: Counter[str],
    attempts: list[dict[str, Any]],
    sessions: list[dict[str, Any]],
    total_rows: int,
    verification: dict[str, Any],
) -> dict[str, Any]:
    by_action = Counter(a["action"] for a in attempts)
    answers = Counter(a["code"] or "in flight" for a in attempts)
    started = sessions[0]["started_at"] if sessions else None
    finished = sessions[-1]["finished_at"] if sessions else None
    return {
        "mapping": facts.get("mapping", ""),
        "mapping_sha256": facts.get("mapping_sha256", ""),
        "mapping_changed": facts.get("mapping_changed", ""),
        "endpoint": facts.get("endpoint", ""),
        "secret_id": facts.get("secret_id_masked", ""),
        "rehearsal": facts.get("rehearsal", "") == "true",
        "started_at": iso_utc(started),
        "finished_at": iso_utc(finished),
        "duration_s": round(finished - started, 3) if started and finished else None,
        "rows": total_rows,
        "counts": {o.value: counts[o] for o in Outcome},
        "error_codes": dict(codes.most_common()),
        "requests": dict(by_action),
        "answers": dict(answers.most_common()),
        "sessions": [
            {
                "kind": s["kind"],
                "started_at": iso_utc(s["started_at"]),
                "finished_at": iso_utc(s["finished_at"]),
                "status": s["status"],
                "note": s["note"],
            }
            for s in sessions
        ],
        "all_done": all(counts[o] == 0 for o in Outcome if o not in DONE_OUTCOMES),
        "verification": verification,
    }


def _verification(frame: pd.DataFrame) -> dict[str, Any]:
    """Counts of the post-run check, and the rows that succeeded although the live state shows something else."""
    done = frame["outcome"].isin([o.value for o in DONE_OUTCOMES])
    mismatched = frame.loc[done & (frame["verified"] == "false"), "row"]
    return {
        "checked": int((frame["verified"] != "").sum()),
        "verified": int((done & (frame["verified"] == "true")).sum()),
        "not_checked": int((done & (frame["verified"] == "")).sum()),
        "succeeded_but_live_state_differs": [int(r) for r in mismatched],
    }


def _markdown(summary: dict[str, Any]) -> str:
    lines = ["# batchcert run summary", ""]
    if summary["rehearsal"]:
        lines += ["**REHEARSAL against the embedded emulator — nothing changed on Tencent Cloud.**", ""]
    lines += [
        f"- Mapping: `{summary['mapping']}` (sha256 `{summary['mapping_sha256']}`)",
        f"- Endpoint: {summary['endpoint']}  ·  SecretId: `{summary['secret_id']}`",
        f"- Started {summary['started_at']}, finished {summary['finished_at']}",
        f"- Rows: {summary['rows']}  ·  requests: "
        + (", ".join(f"{k} {v}" for k, v in summary["requests"].items()) or "none"),
    ]
    if summary["mapping_changed"]:
        lines.append(f"- **Note:** {summary['mapping_changed']}")
    check = summary["verification"]
    if check["succeeded_but_live_state_differs"]:
        rows = ", ".join(str(r) for r in check["succeeded_but_live_state_differs"])
        lines += [
            "",
            f"**WARNING: rows {rows} succeeded but the live state read after the run shows something else "
            "— check them in the console before signing off.**",
        ]
    lines.append(
        f"- Verified against the live state after the run: {check['verified']} row(s) at their target"
        + (f", {check['not_checked']} done row(s) not checked" if check["not_checked"] else "")
    )
    lines += ["", "| outcome | rows |", "|---|---:|"]
    lines += [f"| {k} | {v} |" for k, v in summary["counts"].items()]
    if summary["error_codes"]:
        lines += ["", "| error code | rows |", "|---|---:|"]
        lines += [f"| {k} | {v} |" for k, v in summary["error_codes"].items()]
    verdict = (
        "Every row succeeded or was unchanged."
        if summary["all_done"]
        else ("Some rows are not done: see failed.csv (fix, then `batchcert rerun RUN_DIR`).")
    )
    lines += ["", verdict, ""]
    return "\n".join(lines)


def _write_workbook(path: Path, summary: dict[str, Any], frame: pd.DataFrame, attempts: list[dict[str, Any]]) -> None:
    book = xlsxwriter.Workbook(
        str(path), {"strings_to_formulas": False, "strings_to_urls": False, "strings_to_numbers": False}
    )
    bold = book.add_format({"bold": True})
    quoted = book.add_format({"quote_prefix": True})

    def put(sheet: Any, r: int, c: int, value: Any, fmt: Any = None) -> None:
        if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NA:
            sheet.write_blank(r, c, None, fmt)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            sheet.write_number(r, c, value, fmt)
        else:
            text = str(value)
            if len(text) > EXCEL_CELL_CHARS:  # Excel's limit; the CSV report keeps the whole value
                text = text[: EXCEL_CELL_CHARS - 20] + " …[truncated]"
            sheet.write_string(r, c, text, quoted if text.startswith(FORMULA_PREFIXES) else fmt)

    # Summary
    ws = book.add_worksheet("Summary")
    ws.set_column(0, 0, 24)
    ws.set_column(1, 1, 70)
    top = [
        ("Mapping", summary["mapping"]),
        ("Mapping sha256", summary["mapping_sha256"]),
        ("Endpoint", summary["endpoint"]),
        ("SecretId", summary["secret_id"]),
        ("Started", summary["started_at"]),
        ("Finished", summary["finished_at"]),
        ("Rows", summary["rows"]),
        ("Verified after the run", summary["verification"]["verified"]),
    ]
    if summary["verification"]["succeeded_but_live_state_differs"]:
        differs = ", ".join(str(r) for r in summary["verification"]["succeeded_but_live_state_differs"])
        top.insert(0, ("WARNING", f"rows {differs} succeeded but the live state shows something else"))
    if summary["rehearsal"]:
        top.insert(0, ("REHEARSAL", "embedded emulator — nothing changed on Tencent Cloud"))
    for r, (k, v) in enumerate(top):
        ws.write_string(r, 0, k, bold)
        put(ws, r, 1, v)
    base = len(top) + 1
    ws.write_string(base, 0, "Outcome", bold)
    ws.write_string(base, 1, "Rows", bold)
    for i, (k, v) in enumerate(summary["counts"].items(), start=1):
        ws.write_string(base + i, 0, k)
        ws.write_number(base + i, 1, v)
    chart = book.add_chart({"type": "column"})
    chart.add_series(
        {
            "name": "Rows per outcome",
            "categories": ["Summary", base + 1, 0, base + len(summary["counts"]), 0],
            "values": ["Summary", base + 1, 1, base + len(summary["counts"]), 1],
        }
    )
    chart.set_legend({"none": True})
    ws.insert_chart(1, 3, chart)
    codes_at = base + len(summary["counts"]) + 2
    ws.write_string(codes_at, 0, "Error code", bold)
    ws.write_string(codes_at, 1, "Rows", bold)
    for i, (k, v) in enumerate(summary["error_codes"].items(), start=1):
        put(ws, codes_at + i, 0, k)
        ws.write_number(codes_at + i, 1, v)

    # Rows
    rows_ws = book.add_worksheet("Rows")
    columns = list(frame.columns)
    for c, name in enumerate(columns):
        put(rows_ws, 0, c, name, bold)
    # hot loop (one call per cell): plain strings go straight to write_string; the rest through `put`
    table = frame.astype(object).where(frame.notna(), None).to_numpy().tolist()
    write_string = rows_ws.write_string
    for r, values in enumerate(table, start=1):
        for c, value in enumerate(values):
            if type(value) is str and not value.startswith(FORMULA_PREFIXES) and len(value) <= EXCEL_CELL_CHARS:
                write_string(r, c, value)
            else:
                put(rows_ws, r, c, value)
    last = max(len(frame), 1)
    rows_ws.freeze_panes(1, 0)
    rows_ws.autofilter(0, 0, last, len(columns) - 1)
    col = columns.index("outcome")
    for outcome, colour in OUTCOME_COLOURS.items():
        rows_ws.conditional_format(
            1,
            col,
            last,
            col,
            {
                "type": "cell",
                "criteria": "==",
                "value": f'"{outcome.value}"',
                "format": book.add_format({"bg_color": colour}),
            },
        )

    # Errors: every attempt that did not succeed
    err_ws = book.add_worksheet("Errors")
    headers = ["row", "action", "sent_at", "code", "message", "request_id", "latency_ms"]
    for c, name in enumerate(headers):
        err_ws.write_string(0, c, name, bold)
    failed = [a for a in attempts if a["code"] != "OK"]
    for r, a in enumerate(failed, start=1):
        cells = [
            a["row_number"],
            a["action"],
            iso_utc(a["sent_at"]),
            a["code"] or "in flight",
            a["message"],
            a["request_id"],
            a["latency_ms"],
        ]
        for c, value in enumerate(cells):
            put(err_ws, r, c, value)
    err_ws.freeze_panes(1, 0)
    err_ws.autofilter(0, 0, max(len(failed), 1), len(headers) - 1)
    book.close()
