"""Reading a workbook mapping (.xlsx, .xlsm) with openpyxl — the only module of batchcert that imports it, and only
when a workbook is read (importing it costs a CSV validate ~0.2 s).

Workbooks arrive with several sheets, hidden sheets, hidden (filtered) rows and formulas saved without their values.
The only visible sheet is read (empty visible sheets aside), a hidden one only when `--sheet` names it. Cells are read
as the text a spreadsheet shows unformatted; formulas are never evaluated. Hidden rows and merged cell ranges are
workbook facts read-only worksheets do not load, so they come from the sheet's XML. `formulas_without_value` reads
the sheet a second time, formulas unevaluated, only when the sheet holds formulas and a known column has an empty
cell.
"""

from __future__ import annotations

import contextlib
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

from batchcert.errors import MappingError
from batchcert.mapping.cells import restore_cell
from batchcert.mapping.files import SAVE_AS, ZIP_SIGNATURE
from batchcert.mapping.table import Table

# Worksheet XML (ECMA-376 Part 1, §18.3.1.73 `row`, §18.3.1.40 `f`): a row's `r` attribute is its number (when absent,
# the previous row's plus one) and `hidden` is an xsd:boolean; any element prefix may be used.
_ROW_TAG = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?row\b([^>]*)>")
_ROW_NUMBER_ATTR = re.compile(rb"""(?<![\w:])r\s*=\s*["'](\d+)["']""")
_HIDDEN_ATTR = re.compile(rb"""(?<![\w:])hidden\s*=\s*["'](?:1|true)["']""")
_FORMULA_TAG = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?f[\s/>]")
_MERGE_CELL = re.compile(
    rb"""<(?:[A-Za-z_][\w.-]*:)?mergeCell\b[^>]*?\bref\s*=\s*["']([A-Za-z]{1,3}\d+(?::[A-Za-z]{1,3}\d+)?)["']"""
)


def read_workbook(path: Path, sheet: str | None, notes: list[str]) -> Table:
    """The chosen sheet's records (restored from report neutralization), with its hidden rows, merged ranges and
    whether it holds formulas. Raises MappingError when no sheet can be chosen or the file is no readable workbook."""
    try:
        # openpyxl warns about workbook features it drops (data validation extensions, …): irrelevant to the cells
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _parse_workbook(path, sheet, notes)
    except MappingError:
        raise
    except Exception as exc:  # openpyxl raises many types for damaged files: say so, never a traceback
        hint = ""
        with path.open("rb") as fh:
            is_zip = fh.read(len(ZIP_SIGNATURE)) == ZIP_SIGNATURE
        if not is_zip:
            hint = " (it is not a workbook at all: if it is a CSV, rename it .csv)"
        raise MappingError(
            f"mapping {path.name} is not a readable .xlsx file ({type(exc).__name__}: {str(exc)[:200]}){hint} — "
            "re-save it from Excel"
        ) from None


def _parse_workbook(path: Path, sheet: str | None, notes: list[str]) -> Table:
    import openpyxl  # only workbooks need it (importing it costs a CSV validate ~0.2 s)

    # read_only streams the sheet (half the time and memory of a full load); data_only reads each formula's saved
    # value and never evaluates it.
    # A file object, not the name: openpyxl refuses a workbook whose name does not end in .xlsx (one renamed .csv).
    with path.open("rb") as fh:
        book = openpyxl.load_workbook(fh, read_only=True, data_only=True, keep_links=False)
        try:
            ws = _choose_sheet(book, sheet, path.name, notes)
            ws.reset_dimensions()  # some writers record a wrong sheet size; read every cell there is (as pandas does)
            records = [[_cell_text(v) for v in row] for row in ws.iter_rows(values_only=True)]
            title = str(ws.title)
            # the sheet's part in the archive: read-only sheets have no row_dimensions, so hidden rows come from it
            sheet_path = str(ws._worksheet_path)
        finally:
            book.close()
        with zipfile.ZipFile(fh) as archive:
            xml = archive.read(sheet_path)
    return Table(
        label=f"mapping {path.name} (sheet {title!r})",
        records=records,
        notes=notes,
        sheet=title,
        hidden=_hidden_rows(xml),
        workbook=path,
        has_formulas=_FORMULA_TAG.search(xml) is not None,
        merged=_merged_ranges(xml),
    )


def _merged_ranges(xml: bytes) -> list[tuple[int, int, int, int]]:
    """The sheet's merged cell ranges (ECMA-376 Part 1, §18.3.1.55 `mergeCell`), as openpyxl's range_boundaries
    gives them. Read-only worksheets do not load them, so they come from the sheet's XML, like hidden rows."""
    if b"mergeCell" not in xml:
        return []
    from openpyxl.utils.cell import range_boundaries

    found: list[tuple[int, int, int, int]] = []
    for match in _MERGE_CELL.finditer(xml):
        with contextlib.suppress(ValueError, TypeError):
            min_col, min_row, max_col, max_row = range_boundaries(match.group(1).decode("ascii").upper())
            if None not in (min_col, min_row, max_col, max_row):
                found.append((int(min_col), int(min_row), int(max_col), int(max_row)))
    return found


def _choose_sheet(book: Any, sheet: str | None, name: str, notes: list[str]) -> Any:
    """The named sheet (hidden ones only by name), else the only visible one (empty visible sheets aside)."""
    sheets = list(book.worksheets)
    if not sheets:
        raise MappingError(f"mapping {name} has no sheets — {SAVE_AS}")
    listing = ", ".join(f"{ws.title}{'' if ws.sheet_state == 'visible' else ' (hidden)'}" for ws in sheets)
    if sheet is not None:
        chosen = next((ws for ws in sheets if ws.title == sheet), None)
        # Excel treats sheet names case-insensitively (no two may differ in case only)
        chosen = chosen or next((ws for ws in sheets if str(ws.title).casefold() == sheet.casefold()), None)
        if chosen is None:
            raise MappingError(f"mapping {name} has no sheet {sheet!r} — sheets: {listing}")
    else:
        visible = [ws for ws in sheets if ws.sheet_state == "visible"]
        if len(visible) > 1:
            # the empty Sheet2 and Sheet3 a new workbook comes with are not a choice the user has to make
            visible = [ws for ws in visible if _has_cells(ws)] or visible
        if len(visible) > 1:
            raise MappingError(
                f"mapping {name} has {len(visible)} visible sheets ({', '.join(str(ws.title) for ws in visible)}) "
                "— pass --sheet NAME to say which one holds the mapping"
            )
        if not visible:
            raise MappingError(f"mapping {name} has no visible sheet — pass --sheet NAME (sheets: {listing})")
        chosen = visible[0]
    notes.append(f"sheet {chosen.title!r}")
    if chosen.sheet_state != "visible":
        state = "very hidden" if chosen.sheet_state == "veryHidden" else "hidden"
        notes.append(f"sheet {chosen.title!r} is {state} in the workbook; read because --sheet named it")
    return chosen


def _has_cells(ws: Any) -> bool:
    """True when the sheet holds any non-empty cell (stops at the first one)."""
    return any(v not in (None, "") for row in ws.iter_rows(values_only=True) for v in row)


def _cell_text(value: object) -> str:
    """A cell value as text, as a spreadsheet shows it unformatted: an integral number without '.0', never NaN."""
    if value is None:
        return ""
    if isinstance(value, str):
        return restore_cell(value) if value[:1] == "'" else value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _hidden_rows(xml: bytes) -> frozenset[int]:
    """Spreadsheet numbers of the rows hidden in a sheet (by hand, by an autofilter or by a collapsed outline)."""
    if _HIDDEN_ATTR.search(xml) is None:
        return frozenset()
    hidden: set[int] = set()
    number = 0
    for tag in _ROW_TAG.finditer(xml):
        attributes = tag.group(1)
        explicit = _ROW_NUMBER_ATTR.search(attributes)
        number = int(explicit.group(1)) if explicit else number + 1
        if _HIDDEN_ATTR.search(attributes):
            hidden.add(number)
    return frozenset(hidden)


def formulas_without_value(
    table: Table, header_row: int, data: list[list[str]], index: dict[str, int]
) -> dict[int, frozenset[str]]:
    """row number → the known columns whose empty cell is a formula saved without its value (written by a program,
    never opened in Excel). Only read when the sheet has formulas and a known cell is empty."""
    wanted: dict[int, dict[int, str]] = {}
    for offset, record in enumerate(data):
        if not any(c.strip() for c in record):
            continue
        empty = {i: canonical for canonical, i in index.items() if i >= len(record) or not record[i].strip()}
        if empty:
            wanted[header_row + offset + 1] = empty
    if not wanted or table.workbook is None:
        return {}
    import openpyxl

    found: dict[int, frozenset[str]] = {}
    with table.workbook.open("rb") as fh, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        book = openpyxl.load_workbook(fh, read_only=True, data_only=False, keep_links=False)
        try:
            ws = book[table.sheet]
            ws.reset_dimensions()
            for number, row in enumerate(ws.iter_rows(max_row=max(wanted), values_only=True), start=1):
                columns = wanted.get(number)
                if columns:
                    hits = frozenset(c for i, c in columns.items() if i < len(row) and _is_formula(row[i]))
                    if hits:
                        found[number] = hits
        finally:
            book.close()
    return found


def _is_formula(value: object) -> bool:
    # openpyxl gives a formula as its text ("=A1"), an array formula or a data table as an object
    return (isinstance(value, str) and value.startswith("=")) or type(value).__name__.endswith("Formula")
