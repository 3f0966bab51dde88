"""`Table`: a mapping file's records as the CSV or workbook reader hands them on, before the header is known, with what
the reader learned about the file (encoding, delimiter, sheet, hidden rows, merged cells, strict-parse problems)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Table:
    """A file's records before the header is known. `records[i]` is spreadsheet row i + 1. Frozen: its lists are
    filled while the file is parsed (and `notes` while the mapping is read), never replaced."""

    label: str  # "mapping m.csv", "mapping m.xlsx (sheet 'New')": the start of every message
    records: list[list[str]]
    notes: list[str] = field(default_factory=list)
    sheet: str = ""
    encoding: str = ""
    delimiter: str = ""  # a CSV's; "" for a workbook
    #: CSV: the file line on which records[i] starts; the last line of each record spanning several lines
    starts: list[int] = field(default_factory=list)
    ends: dict[int, int] = field(default_factory=dict)
    #: CSV: (line, problem) from the strict parse
    parse_problems: list[tuple[int, str]] = field(default_factory=list)
    #: workbook: the spreadsheet numbers of hidden rows; where to look for formulas saved without a value
    hidden: frozenset[int] = frozenset()
    workbook: Path | None = None
    has_formulas: bool = False
    #: workbook: merged cell ranges as (min_col, min_row, max_col, max_row), 1-based (openpyxl's range_boundaries)
    merged: list[tuple[int, int, int, int]] = field(default_factory=list)
