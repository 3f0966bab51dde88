"""Reading a CSV mapping: its delimiter (`,`, `;` or TAB, sniffed from the header row), its records, and the refusal
of a malformed file.

CSV problems that refuse the whole file name *lines*, as a text editor shows them (a record with an embedded newline
is still one row). A spreadsheet never writes a malformed CSV, so a stray or missing quote is a hand edit that may
have shifted or swallowed rows: the strict parse's errors, a record with more cells than the header and a quoted cell
holding lines that look like whole rows each refuse the file, and nothing is sent.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
from pathlib import Path

from batchcert.errors import MappingError
from batchcert.mapping.cells import LISTENER_ID_RE, MAX_LISTED_PROBLEMS, restore_cell, show
from batchcert.mapping.columns import REQUIRED_COLUMNS, has_required_columns
from batchcert.mapping.files import decode
from batchcert.mapping.header import HEADER_SEARCH_ROWS
from batchcert.mapping.table import Table

#: cell separators a CSV may use, sniffed from the header row (TAB: Excel's "Unicode Text")
DELIMITERS = (",", ";", "\t")
_DELIMITER_NAMES = {",": "','", ";": "';'", "\t": "TAB"}
_NEWLINE = re.compile(r"\r\n|\r|\n")


def read_csv(path: Path, encoding: str | None, notes: list[str]) -> Table:
    """The CSV's records (restored from report neutralization), decoded and split at the sniffed delimiter; strict
    parsing problems are kept in `parse_problems` for `refuse_malformed_csv`. Raises MappingError for an unreadable,
    undecodable or empty file."""
    label = f"mapping {path.name}"
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise MappingError(f"{label} cannot be read ({exc.strerror}) — check its permissions") from None
    decoded = decode(raw, encoding, label)
    text, codec = decoded.text, decoded.codec
    notes.append(decoded.note)
    if not text.strip():
        raise MappingError(
            f"{label} is empty — it has no header row and no data rows; the header must name "
            f"{', '.join(REQUIRED_COLUMNS)}"
        )
    delimiter = _sniff_delimiter(text)
    if delimiter != ",":
        notes.append(f"delimiter {_DELIMITER_NAMES[delimiter]}")
    table = Table(label=label, records=[], notes=notes, encoding=codec, delimiter=delimiter)
    _parse_csv(text, table)
    return table


def _sniff_delimiter(text: str) -> str:
    """The delimiter with which a header row (within the first rows) names every required column; else the one the
    first non-empty line holds most of (the error then names that line's missing columns)."""
    head = text[: 1 << 20]
    best: tuple[int, int, int] | None = None
    for rank, delimiter in enumerate(DELIMITERS):
        records = csv.reader(io.StringIO(head, newline=""), delimiter=delimiter)
        try:
            for i, record in enumerate(itertools.islice(records, HEADER_SEARCH_ROWS)):
                if has_required_columns(record):
                    if best is None or (i, -len(record), rank) < best:
                        best = (i, -len(record), rank)
                    break
        except csv.Error:
            continue
    if best is not None:
        return DELIMITERS[best[2]]
    first = next((line for line in io.StringIO(head, newline="") if line.strip()), "")
    return max(DELIMITERS, key=first.count)


def _parse_csv(text: str, table: Table) -> None:
    """Fill `table.records` and `starts`/`ends` (file lines); strict parsing errors go to `parse_problems`. A
    spreadsheet never writes a malformed CSV, so each one is a hand edit that may have shifted or swallowed rows."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=table.delimiter, strict=True)
    records, starts = table.records, table.starts
    while True:
        start = reader.line_num + 1
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            table.parse_problems.append((start, _csv_error(str(exc), start, reader.line_num, text, table.delimiter)))
            continue
        if reader.line_num != start:
            table.ends[len(records)] = reader.line_num
        records.append([restore_cell(c) if c[:1] == "'" else c for c in record])
        starts.append(start)


def _csv_error(error: str, start: int, line: int, text: str, delimiter: str) -> str:
    """What a `csv` strict-mode error means for the person editing the file. The texts matched are CPython's
    (https://github.com/python/cpython/blob/3.11/Modules/_csv.c)."""
    if "end of data" in error:
        opened = _unclosed_quote_line(text, start, delimiter)
        return (
            f"line {opened}: a quoted cell opened here is never closed (it runs to the end of the file, line {line}) "
            '— add the closing quote, or write a quote inside a cell as ""'
        )
    if "expected after" in error:
        if line > start:
            return (
                f"line {start}: a quoted cell opened here runs on to line {line}, where its closing quote is followed "
                'by other text — a quote is probably missing its pair; write a quote inside a cell as ""'
            )
        return f'line {start}: a quote ends a cell but more text follows it — write a quote inside a cell as ""'
    if "field limit" in error:
        return (
            f"line {start}: a cell here runs on for more than {csv.field_size_limit():,} characters — a quote "
            "probably never closes"
        )
    return f"line {start}: {error}"


def _unclosed_quote_line(text: str, start: int, delimiter: str) -> int:
    """The line of the quote left open at the end of the file, in the record that starts on line `start`."""
    lines = io.StringIO(text, newline="").readlines()
    field_start, in_quotes, after_quote, opened = True, False, False, start
    for number in range(start, len(lines) + 1):
        line = lines[number - 1]
        if in_quotes and '"' not in line:
            continue  # still inside the same quoted cell
        for ch in line:
            if in_quotes:
                if ch == '"':
                    in_quotes, after_quote = False, True
            elif ch == '"' and (field_start or after_quote):
                in_quotes, after_quote = True, False  # a cell opens, or "" inside a quoted cell
                if field_start:
                    opened = number
                field_start = False
            else:
                field_start, after_quote = ch in (delimiter, "\n", "\r"), False
    return opened


def refuse_malformed_csv(table: Table, header_index: int | None, width: int, last_index: int | None = None) -> None:
    """Refuse the whole file when a record has more cells than the header or a quoted cell swallowed lines that look
    like rows, or the strict parse failed: each means a row was shifted or lost, and nothing may be sent. A header
    may span rows `header_index`..`last_index` (the data follow the last)."""
    problems = list(table.parse_problems)
    delimiter = table.delimiter
    header_row = 0 if header_index is None else header_index + 1
    last = header_index if last_index is None else last_index
    header_rows = f"row {header_row}" if last in (None, header_index) else f"rows {header_row}–{last + 1}"
    for i in range(len(table.records) if last is None else last + 1, len(table.records)):
        record, start = table.records[i], table.starts[i]
        if len(record) > width:
            problems.append(
                (
                    start,
                    f"line {start}: {len(record)} cells, but the header ({header_rows}) has {width} — quote "
                    f"a cell that holds {_DELIMITER_NAMES[delimiter]}, or delete the extra {_DELIMITER_NAMES[delimiter]}",
                )
            )
        elif i in table.ends:
            swallowed = _swallowed_rows(record, start, table.ends[i], delimiter)
            if swallowed:
                problems.append((start, swallowed))
    if not problems:
        return
    problems.sort()
    listed = [text for _, text in problems[:MAX_LISTED_PROBLEMS]]
    if len(problems) > MAX_LISTED_PROBLEMS:
        listed.append(f"… and {len(problems) - MAX_LISTED_PROBLEMS} more")
    raise MappingError(
        f"{table.label} is not a well-formed CSV ({len(problems)} problem(s)), so nothing is sent — fix these lines "
        "in a text editor, or save the file again from Excel as 'CSV UTF-8':\n  " + "\n  ".join(listed)
    )


def _swallowed_rows(record: list[str], start: int, end: int, delimiter: str) -> str:
    """A problem when a multi-line quoted cell holds a line that looks like a whole mapping row (a missing closing
    quote that a later quote happened to balance); "" otherwise."""
    line = start
    for cell in record:
        pieces = _NEWLINE.split(cell)
        for piece in pieces[1:]:
            parts = [p.strip().strip('"') for p in piece.split(delimiter)]
            if len(parts) >= len(REQUIRED_COLUMNS) and any(LISTENER_ID_RE.fullmatch(p) for p in parts):
                return (
                    f"line {line}: a quoted cell opened here runs on to line {end} and holds what looks like whole "
                    f"rows ({show(piece)}) — a quote is probably missing its closing pair"
                )
        line += len(pieces) - 1
    return ""
