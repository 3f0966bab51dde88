"""The one way batchcert writes an xlsx workbook (xlsxwriter, imported here and nowhere else).

Spreadsheet safety (docs/gaap-api.md, "Spreadsheet safety"; OWASP CSV injection): xlsxwriter's string-to-formula,
string-to-URL and string-to-number conversions are off, so text is always written as text; a text cell starting with
`=`, `+`, `-`, `@`, tab or CR also gets Excel's quote prefix, so editing it in Excel does not turn it into a formula.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from batchcert.mapping import FORMULA_PREFIXES

#: Excel's limit on the characters of a cell: a longer text is cut (the CSV files keep the whole value)
EXCEL_CELL_CHARS = 32767
#: column widths (characters) by column name, so that ids and timestamps show whole (report.xlsx, inventory.xlsx)
COLUMN_WIDTHS = {
    "row": 7,
    "listener_id": 22,
    "domain": 30,
    "certificate_id": 16,
    "client_certificate_id": 18,
    "poly_client_certificate_ids": 28,
    "expected_certificate_id": 22,
    "expected_client_certificate_ids": 28,
    "target_certificate_end_time": 22,
    "outcome": 14,
    "error_code": 34,
    "error_message": 60,
    "attempts": 9,
    "request_id": 38,
    "request_ids": 40,
    "started_at": 25,
    "finished_at": 25,
    "duplicate_of": 12,
    "previous_certificate_id": 22,
    "previous_client_certificate_ids": 28,
    "verified_certificate_id": 22,
    "verified": 10,
    "scope": 9,
    "proxy_id": 16,
    "effective_certificate_id": 22,
    "client_certificate_ids": 28,
    "certificate_end_time": 22,
    "subject_cn": 24,
    "end_time": 22,
}


class Sheet:
    """A worksheet that writes cells the safe way: numbers as numbers, booleans as booleans, None blank, text as
    text (quote-prefixed when formula-like, cut at EXCEL_CELL_CHARS)."""

    def __init__(self, worksheet: Any, bold: Any, quoted: Any) -> None:
        #: the xlsxwriter worksheet, for what is not a cell (charts, conditional formats)
        self.ws = worksheet
        self.bold = bold
        self._quoted = quoted

    def put(self, r: int, c: int, value: Any, fmt: Any = None) -> None:
        """One cell; "" is written as an empty text cell (`put_line` leaves it blank)."""
        if value is None:
            self.ws.write_blank(r, c, None, fmt)
        elif isinstance(value, bool):
            self.ws.write_boolean(r, c, value, fmt)
        elif isinstance(value, (int, float)):
            self.ws.write_number(r, c, value, fmt)
        else:
            text = str(value)
            if len(text) > EXCEL_CELL_CHARS:  # Excel's limit; the CSV files keep the whole value
                text = text[: EXCEL_CELL_CHARS - 20] + " …[truncated]"
            self.ws.write_string(r, c, text, self._quoted if text.startswith(FORMULA_PREFIXES) else fmt)

    def put_line(self, r: int, line: Sequence[Any]) -> None:
        """One line of a table from column 0, "" left blank (hot loop: plain text goes straight to write_string)."""
        write_string = self.ws.write_string
        for c, value in enumerate(line):
            if (
                type(value) is str
                and value
                and not value.startswith(FORMULA_PREFIXES)
                and len(value) <= EXCEL_CELL_CHARS
            ):
                write_string(r, c, value)
            elif value != "":
                self.put(r, c, value)

    def put_header(self, names: Sequence[str], widths: Mapping[str, int], default_width: int) -> None:
        """The header line in bold, each column `widths[name]` (else `default_width`) characters wide."""
        for c, name in enumerate(names):
            self.put(0, c, name, self.bold)
            self.ws.set_column(c, c, widths.get(name, default_width))

    def finish_table(self, lines: int, columns: int) -> None:
        """The header frozen and a filter over the table (`lines` below the header, at least one)."""
        self.ws.freeze_panes(1, 0)
        self.ws.autofilter(0, 0, max(lines, 1), columns - 1)


class Book:
    """An xlsx workbook with xlsxwriter's conversions off. `streamed`: xlsxwriter's constant_memory mode — each row
    goes to disk when the next begins, so each sheet must be written top to bottom."""

    def __init__(self, path: Path, streamed: bool = False) -> None:
        import xlsxwriter

        options = {"strings_to_formulas": False, "strings_to_urls": False, "strings_to_numbers": False}
        self._book = xlsxwriter.Workbook(str(path), {"constant_memory": streamed, **options})
        self.bold = self._book.add_format({"bold": True})
        self._quoted = self._book.add_format({"quote_prefix": True})

    def add_sheet(self, name: str) -> Sheet:
        return Sheet(self._book.add_worksheet(name), self.bold, self._quoted)

    def add_format(self, properties: dict[str, Any]) -> Any:
        return self._book.add_format(properties)

    def add_chart(self, options: dict[str, Any]) -> Any:
        return self._book.add_chart(options)

    def close(self) -> None:
        self._book.close()


def write_tables(path: Path, sheets: Mapping[str, tuple[Sequence[str], Sequence[Sequence[Any]]]]) -> None:
    """A workbook of plain tables (sheet name → header, lines): a bold frozen header, filters, sized columns."""
    book = Book(path)
    for name, (header, table) in sheets.items():
        sheet = book.add_sheet(name)
        sheet.put_header(header, COLUMN_WIDTHS, 16)
        for r, line in enumerate(table, start=1):
            sheet.put_line(r, line)
        sheet.finish_table(len(table), len(header))
    book.close()
