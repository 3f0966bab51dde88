"""Hostile mappings: random and malformed CSV/XLSX never crash `validate` or `run --emulator`, always give a
documented exit code, and every bad row is named by its row number. Formulas in cells are never evaluated."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from pathlib import Path

import openpyxl
import pytest
import xlsxwriter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from batchcert.cli import app

ROOT = Path(__file__).resolve().parent.parent
HEADER = ["ListenerId", "Domain", "CertificateId", "Note"]
DOCUMENTED_EXIT_CODES = {0, 1, 2}

# cells that make a row bad in a required column, whatever else the row holds
bad_cells = st.sampled_from(
    [
        "",
        "   ",
        "=1+1",
        "@SUM(A1)",
        "12345",
        "1.5e10",
        "listener",
        "cert_1",
        "-3",
        "nan",
        "None",
        "\u0000x",
        "x" * 5000,
        "multi\nline",
        "ünïcödé",
        "cert-UPPER",
    ]
)
good_tail = st.text(alphabet="abcdefghij0123456789", min_size=4, max_size=8)
notes = st.one_of(
    st.just(""), st.text(max_size=40), st.sampled_from(['=HYPERLINK("http://x")', "+1", "\t", "x" * 40000])
)


@st.composite
def tables(draw: st.DrawFn) -> tuple[list[list[str]], set[int]]:
    """A header and rows; returns the table and the row numbers (spreadsheet numbering) that must be invalid."""
    rows: list[list[str]] = []
    bad: set[int] = set()
    for i in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["good", "bad", "blank"]))
        row_number = len(rows) + 2
        tail = draw(good_tail)
        row = [f"listener-{tail}{i}", f"h{i}-{tail}.example.com", f"cert-{tail}", draw(notes)]
        if kind == "bad":
            row[draw(st.integers(0, 2))] = draw(bad_cells)
            bad.add(row_number)
        elif kind == "blank":
            row = ["", "", "", ""]
        rows.append(row)
    return [HEADER, *rows], bad


def write_csv(path: Path, table: list[list[str]], encoding: str, delimiter: str) -> None:
    import csv
    import io

    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter).writerows(table)
    path.write_bytes(buffer.getvalue().encode(encoding, errors="replace"))


def write_xlsx(path: Path, table: list[list[str]], formulas: bool) -> None:
    book = xlsxwriter.Workbook(str(path), {"strings_to_formulas": formulas, "strings_to_numbers": True})
    sheet = book.add_worksheet()
    for r, row in enumerate(table):
        for c, value in enumerate(row):
            if value:
                sheet.write(r, c, value[:32000])
    book.close()


def rows_named(output: str) -> set[int]:
    return {int(n) for n in re.findall(r"\brow (\d+):", output)}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(table=tables(), form=st.sampled_from(["utf-8", "utf-8-sig", "semicolon", "xlsx", "xlsx-formulas"]))
def test_validate_never_crashes_and_names_every_bad_row(
    tmp_path: Path, table: tuple[list[list[str]], set[int]], form: str
) -> None:
    """validate exits 0 or 2 without a traceback and lists exactly the bad rows by number."""
    rows, bad = table
    if form.startswith("xlsx"):
        path = tmp_path / "m.xlsx"
        write_xlsx(path, rows, formulas=form == "xlsx-formulas")
    else:
        path = tmp_path / "m.csv"
        write_csv(path, rows, "utf-8-sig" if form == "utf-8-sig" else "utf-8", ";" if form == "semicolon" else ",")
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code in DOCUMENTED_EXIT_CODES
    named = rows_named(result.output)
    if form == "xlsx-formulas":
        # a formula cell is never evaluated: it reads as its cached value (none here), so the row may be bad too
        assert bad <= named
    else:
        assert named == bad, result.output
    has_rows = any(any(cell.strip() for cell in row) for row in rows[1:])
    if not has_rows:  # a header and blank lines is no work at all: refused as a file-level problem
        assert "no data rows" in result.output
    assert result.exit_code == (2 if named or not has_rows else 0)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(table=tables())
def test_rehearsal_never_crashes_and_reports_every_row(tmp_path: Path, table: tuple[list[list[str]], set[int]]) -> None:
    """run --emulator exits 0/1/2 without a traceback; the report has one line per non-blank row, bad rows invalid;
    a mapping with nothing to send exits 2 before a run directory exists."""
    rows, bad = table
    path = tmp_path / "m.csv"
    write_csv(path, rows, "utf-8", ",")
    out = tmp_path / f"run-{len(os.listdir(tmp_path))}"
    result = CliRunner().invoke(app, ["run", str(path), "--emulator", "--yes", "--out", str(out)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code in DOCUMENTED_EXIT_CODES
    data_rows = {n for n, cells in enumerate(rows[1:], start=2) if any(c.strip() for c in cells)}
    if data_rows and data_rows <= bad:
        assert result.exit_code == 2 and "nothing to send" in result.output and not out.exists()
        return
    assert rows_named(result.output) == bad
    if (out / "report.csv").exists():
        import csv

        with (out / "report.csv").open(encoding="utf-8-sig", newline="") as fh:  # cells may hold \f, \v, \x1c…
            report = list(csv.DictReader(fh))
        assert {int(r["row"]) for r in report if r["outcome"] == "invalid"} == bad
        assert all(r["outcome"] in ("succeeded", "invalid") for r in report)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("nul.csv", b"ListenerId,Domain,CertificateId\nlistener-a\x00b,www.example.com,cert-1\n"),
        ("latin1.csv", "ListenerId,Domain,CertificateId\nlistener-a,wéb.example.com,cert-1\n".encode("latin-1")),
        # seeded: every pytest-xdist worker must collect the same parameters
        ("garbage.xlsx", random.Random(1).randbytes(2048)),
        ("truncated.xlsx", b"PK\x03\x04" + random.Random(2).randbytes(100)),
        ("empty.csv", b""),
        ("only-blank-lines.csv", b"\n\n\n"),
        ("quote.csv", b'ListenerId,Domain,CertificateId\n"listener-a,www.example.com,cert-1\n'),
    ],
    ids=lambda value: value if isinstance(value, str) else "content",
)
def test_broken_files_exit_2_without_traceback(tmp_path: Path, name: str, content: bytes) -> None:
    """Files that are not mappings at all exit 2 with one line saying what is wrong (checked as a real process)."""
    path = tmp_path / name
    path.write_bytes(content)
    result = subprocess.run(
        [sys.executable, "-m", "batchcert", "validate", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert "Traceback" not in result.stderr + result.stdout
    assert result.returncode in DOCUMENTED_EXIT_CODES
    assert result.returncode == 2 or "row 2:" in result.stdout, result.stdout + result.stderr


def test_empty_sheet_and_formula_cells_are_never_evaluated(tmp_path: Path) -> None:
    """An empty visible sheet beside the data sheet is no choice to make; named, it is a clear error; a formula in an
    id cell reads as its cached value, never evaluated (here it has none, and the message says so)."""
    path = tmp_path / "m.xlsx"
    book = openpyxl.Workbook()
    book.active.title = "empty"
    ws = book.create_sheet("data")
    ws.append(["ListenerId", "Domain", "CertificateId"])
    ws.append(["listener-abcd0001", "www.example.com", '=CONCATENATE("cert-","x1")'])
    book.save(path)
    first = CliRunner().invoke(app, ["validate", str(path)])
    assert first.exit_code == 2 and "note: sheet 'data'" in first.output
    empty = CliRunner().invoke(app, ["validate", str(path), "--sheet", "empty"])
    assert empty.exit_code == 2 and "is empty" in empty.output
    second = CliRunner().invoke(app, ["validate", str(path), "--sheet", "data"])
    assert second.exit_code == 2 and "row 2: CertificateId is a formula with no saved value" in second.output
