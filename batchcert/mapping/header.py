"""The header: where it is, how many rows it spans, what each column is called and which mapping column it is, and
where a row's target and expected state come from (`Layout`).

Row numbers are what a spreadsheet shows for a record: the header is found within the first HEADER_SEARCH_ROWS rows
(not assumed to be row 1) and keeps its number; the first data record follows it. A header row is found when it names
every required column alone, or, naming one of them, together with its rows below.

Multi-row headers: a header row may have rows below it that belong to it (up to MAX_HEADER_ROWS in all) — a row in
which every filled cell is header-like (no id, no domain, no `default`) and which names a known column, or, in a
workbook, lies under a header cell merged down into it (A1:A2) or holds text under one merged across (C1:D1). Each
column is then named by its lowest filled header cell ("header on rows 1–2"); when that cell is below the first and,
joined with the label above it, names a known column ('证书' over 'ID'), the joined name is used. Merged ranges come
from the sheet's XML (`batchcert.mapping.workbook`).

Current → new (compare-and-swap): a header with NewCertificateId reads the target from the New* columns and the
expected current state (`Row.expected`) from CertificateId or CurrentCertificateId and PolyClientCertificateIds /
CurrentPolyClientCertificateIds or ClientCertificateId (`choose_layout`; what a row's cells must hold: `rows`). A
Current* or New client column without NewCertificateId is refused — a current id is never read as the target — and
so is NewCertificateId without a current certificate column. Without New* columns nothing changes.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

from batchcert.errors import MappingError
from batchcert.mapping.cells import DOMAIN_RE
from batchcert.mapping.columns import (
    CAS_ONLY_COLUMNS,
    CERTIFICATE_ID,
    CLIENT_CERTIFICATE_ID,
    CURRENT_CERTIFICATE_ID,
    CURRENT_POLY_CLIENT_CERTIFICATE_IDS,
    NEW_CERTIFICATE_ID,
    NEW_CLIENT_CERTIFICATE_ID,
    NEW_POLY_CLIENT_CERTIFICATE_IDS,
    POLY_CLIENT_CERTIFICATE_IDS,
    REQUIRED_COLUMNS,
    canonical_column,
    letter,
    missing_columns,
)
from batchcert.mapping.table import Table
from batchcert.model import DEFAULT_CERTIFICATE

#: the header is the first of this many rows that names every required column
HEADER_SEARCH_ROWS = 10
#: a header spans at most this many rows (merged cells above sub-headers; README "The mapping")
MAX_HEADER_ROWS = 3
#: an id of any kind inside a cell: a row holding one is no header row
_ANY_ID = re.compile(r"(?<![0-9a-z])(?:cert|listener|link|lbgroup)-[0-9a-z]", re.IGNORECASE)


@dataclass(frozen=True)
class HeaderRows:
    """The header: records `first`..`last` (0-based; the data follow `last`) and the name each gives a column."""

    first: int
    last: int
    names: tuple[str, ...]

    @property
    def row(self) -> int:
        """The spreadsheet number of the header's last row: the first data row is the next one."""
        return self.last + 1


@dataclass(frozen=True)
class Columns:
    """The mapping's columns as read: each one's name (its header's, or "column F" for one with no header name that
    holds something), its position in the sheet (`places`, for its letter), which have no header name (`unnamed`,
    indexes into `names`), and which record positions they take (`keep`; None: all of them, in order)."""

    names: tuple[str, ...]
    places: tuple[int, ...]
    unnamed: frozenset[int]
    keep: tuple[int, ...] | None

    def describe(self, i: int) -> str:
        """Column `i` as the file spells it, with its letter: "'备注' (column E)", "the column with no header name
        (column F)"."""
        if i in self.unnamed:
            return f"the column with no header name (column {letter(self.places[i])})"
        return f"{self.names[i]!r} (column {letter(self.places[i])})"


@dataclass(frozen=True)
class ColumnMatch:
    """The mapping columns a header names: canonical column → its header name (`column_of`), and → its index into
    `Columns.names` (`index`)."""

    column_of: dict[str, str]
    index: dict[str, int]


@dataclass(frozen=True)
class Layout:
    """Which mapping columns a row's fields come from. Without NewCertificateId: the target is CertificateId,
    ClientCertificateId, PolyClientCertificateIds and there is no expected state. With it (compare-and-swap): the
    target is the New* columns, the expected state CertificateId or CurrentCertificateId, and the client columns."""

    server: str = CERTIFICATE_ID
    client: str = CLIENT_CERTIFICATE_ID
    poly: str = POLY_CLIENT_CERTIFICATE_IDS
    current_server: str | None = None
    current_client: str | None = None
    current_poly: str | None = None


def locate_header(table: Table) -> HeaderRows:
    """The header's rows and names (`_find_header`, then the rows below it that belong to it); a note says where it is
    when that is not row 1 alone. Raises MappingError when no row among the first names the required columns."""
    first = _find_header(table)
    last, names = _header_rows(table, first)
    if last != first:
        table.notes.append(f"header on rows {first + 1}–{last + 1}")
    elif last != 0:
        table.notes.append(f"header on row {last + 1}")
    return HeaderRows(first, last, tuple(names))


def _find_header(table: Table) -> int:
    """Index of the header record: the first of the first HEADER_SEARCH_ROWS that names every required column — on
    its own, or (when it names one of them) together with the header rows below it (`_header_rows`)."""
    first: int | None = None
    for i, record in enumerate(table.records[:HEADER_SEARCH_ROWS]):
        if not any(c.strip() for c in record):
            continue
        missing = missing_columns(record)
        if not missing:
            return i
        if len(missing) < len(REQUIRED_COLUMNS):
            last, names = _header_rows(table, i)
            if last > i and not missing_columns(names):
                return i
        first = i if first is None else first
    if first is None:
        later = next((i for i, r in enumerate(table.records) if any(c.strip() for c in r)), None)
        if later is None:
            raise MappingError(
                f"{table.label} is empty — it has no header row and no data rows; the header must name "
                f"{', '.join(REQUIRED_COLUMNS)}"
            )
        raise MappingError(
            f"{table.label} has no header row: rows 1–{HEADER_SEARCH_ROWS} are empty, and the header must be within "
            f"them — delete the blank rows above row {later + 1}"
        )
    header = [h.strip() for h in table.records[first]]
    missing = missing_columns(header)
    # a row further down that names more of them is probably the header the user meant: say what it lacks
    searched = table.records[:HEADER_SEARCH_ROWS]
    closest = min(range(len(searched)), key=lambda i: len(missing_columns(searched[i])))
    also = ""
    if len(missing_columns(searched[closest])) < len(missing):
        also = f" (row {closest + 1} comes closest and lacks {', '.join(missing_columns(searched[closest]))})"
    raise MappingError(
        f"{table.label} lacks the column(s) {', '.join(missing)} — no row among the first {HEADER_SEARCH_ROWS} names "
        f"all of {', '.join(REQUIRED_COLUMNS)}; row {first + 1}, the first non-empty row, was looked at as the header "
        f"and holds {', '.join(repr(h) for h in header if h) or 'nothing'}{also}. Name the columns in one header row "
        f"(optional: {CLIENT_CERTIFICATE_ID}, {POLY_CLIENT_CERTIFICATE_IDS}; current → new: {NEW_CERTIFICATE_ID} "
        f"beside {CERTIFICATE_ID}; Chinese names such as 监听器ID, 域名, 证书ID, 新证书ID work too)"
    )


def _header_like(text: str) -> bool:
    """A cell that can be part of a header row: a known column name, or text holding no id, no domain, no `default`."""
    if canonical_column(text) is not None:
        return True
    return _ANY_ID.search(text) is None and text.lower() != DEFAULT_CERTIFICATE and DOMAIN_RE.fullmatch(text) is None


def _header_rows(table: Table, first: int) -> tuple[int, list[str]]:
    """(index of the header's last record, the header's names). The header row found may have rows below it that
    belong to the header (up to MAX_HEADER_ROWS in all): a row in which every filled cell is header-like (no id, no
    domain) and which names a known column, or — in a workbook — lies under a cell of the header row merged down
    into it, or holds text under a cell of the header row merged across. Each column is then named by its lowest
    filled header cell (`_combine_header`). A combination that loses a required column is not used."""
    records = table.records
    single = [h.strip() for h in records[first]]
    number = first + 1  # the header row, as the spreadsheet numbers it
    merges = [m for m in table.merged if m[1] <= number <= m[3]]
    merged_down = max((m[3] for m in merges if m[1] == number), default=number) - 1  # an index, like `first`
    across = [(m[0] - 1, m[2] - 1) for m in merges if m[2] > m[0]]
    last = first
    while last + 1 < len(records) and last + 1 - first < MAX_HEADER_ROWS:
        filled = [(i, c.strip()) for i, c in enumerate(records[last + 1]) if c.strip()]
        if not filled or not all(_header_like(c) for _, c in filled):
            break
        names = any(canonical_column(c) is not None for _, c in filled)
        refines = any(lo <= i <= hi for i, _ in filled for lo, hi in across)
        if not (names or refines or last + 1 <= merged_down):
            break
        last += 1
    if last == first:
        return first, single
    combined = _combine_header(table, first, last)
    if missing_columns(combined) and not missing_columns(single):
        return first, single
    return last, combined


def _combine_header(table: Table, first: int, last: int) -> list[str]:
    """Per column, the lowest filled cell of header rows `first`..`last`. When that cell is below the first header
    row and the label above it (a merged cell's value included) joined with it names a known column ('证书' over
    'ID', '证书' over '客户端'), the joined name is used."""
    rows = table.records[first : last + 1]
    width = max(len(r) for r in rows)

    def text(k: int, i: int) -> str:
        return rows[k][i].strip() if i < len(rows[k]) else ""

    names: list[str] = []
    for i in range(width):
        filled = [k for k in range(len(rows)) if text(k, i)]
        if not filled:
            names.append("")
            continue
        low = filled[-1]
        name = text(low, i)
        parent = next((v for k in reversed(range(low)) if (v := text(k, i) or _merged_value(table, first + k, i))), "")
        if parent:
            name = next(
                (
                    c
                    for c in (f"{parent} {name}", f"{name} {parent}")
                    if canonical_column(c) is not None and parent != name
                ),
                name,
            )
        names.append(name)
    return names


def _merged_value(table: Table, index: int, column: int) -> str:
    """The value of the merged range that covers record `index`, position `column` (its top-left cell), or ""."""
    for min_col, min_row, max_col, max_row in table.merged:
        if min_col - 1 <= column <= max_col - 1 and min_row - 1 <= index <= max_row - 1:
            top = table.records[min_row - 1] if min_row - 1 < len(table.records) else []
            return top[min_col - 1].strip() if min_col - 1 < len(top) else ""
    return ""


def name_columns(header: HeaderRows, data: list[list[str]], notes: list[str]) -> Columns:
    """The columns the header and the data make (`Columns`).

    A column without a header name is dropped when it holds nothing (Excel and CSV exports often end in one) and is
    kept as "column F" (its spreadsheet letter) when it holds something, so no cell is lost."""
    width = max(len(header.names), max((len(r) for r in data), default=0))
    names = [*header.names, *[""] * (width - len(header.names))]
    unnamed = [i for i, h in enumerate(names) if not h]
    if not unnamed:
        return Columns(tuple(names), tuple(range(width)), frozenset(), None)
    used = {i for i in unnamed if any(i < len(r) and r[i].strip() for r in data)}
    keep = [i for i in range(width) if names[i] or i in used]
    for i in sorted(used):
        names[i] = f"column {letter(i)}"
        notes.append(f"{names[i]} has no header name — its cells are kept as {names[i]!r}")
    return Columns(
        names=tuple(names[i] for i in keep),
        places=tuple(keep),
        unnamed=frozenset(k for k, i in enumerate(keep) if i in used),
        keep=None if keep == list(range(width)) else tuple(keep),
    )


def match_columns(columns: Columns, label: str) -> ColumnMatch:
    """The mapping columns the header names (`ColumnMatch`). Raises MappingError on a doubled column."""
    found: dict[str, list[int]] = defaultdict(list)
    for i, name in enumerate(columns.names):
        canonical = canonical_column(name)
        if canonical:
            found[canonical].append(i)
    for canonical, positions in found.items():
        if len(positions) > 1:
            named = ", ".join(columns.describe(i) for i in positions)
            raise MappingError(f"{label}: columns {named} all mean {canonical} — keep one of them")
    return ColumnMatch({c: columns.names[p[0]] for c, p in found.items()}, {c: p[0] for c, p in found.items()})


def choose_layout(match: ColumnMatch, columns: Columns, table: Table) -> Layout:
    """Where a row's target and expected state come from (`Layout`). Raises MappingError for a current → new
    header that cannot be read safely: a current or new client column without NewCertificateId (a current id is
    never read as the target), NewCertificateId without a current certificate column, or two columns for one
    current value."""

    column_of, index = match.column_of, match.index

    def where(canonical: str) -> str:
        return columns.describe(index[canonical])

    label = table.label
    if NEW_CERTIFICATE_ID not in index:
        lone = [c for c in CAS_ONLY_COLUMNS if c in index]
        if lone:
            what = "are current → new columns" if len(lone) > 1 else "is a current → new column"
            raise MappingError(
                f"{label}: {', '.join(where(c) for c in lone)} {what}, "
                f"and a current → new mapping needs a {NEW_CERTIFICATE_ID} column (新证书ID) with the certificate "
                f"each row installs — add {NEW_CERTIFICATE_ID} (a current certificate is never read as the one to "
                f"install), or remove {'those columns' if len(lone) > 1 else 'that column'}"
            )
        return Layout()
    current = [c for c in (CERTIFICATE_ID, CURRENT_CERTIFICATE_ID) if c in index]
    if not current:
        raise MappingError(
            f"{label}: {where(NEW_CERTIFICATE_ID)} names the certificate to install, but no column says which one "
            f"each place has now — add {CERTIFICATE_ID} (or {CURRENT_CERTIFICATE_ID}, 当前证书ID) with it, or rename "
            f"{column_of[NEW_CERTIFICATE_ID]!r} to {CERTIFICATE_ID} to change without comparing"
        )
    if len(current) > 1:
        raise MappingError(
            f"{label}: columns {', '.join(where(c) for c in current)} all mean {CURRENT_CERTIFICATE_ID} (the "
            f"certificate each place has now, beside {NEW_CERTIFICATE_ID}) — keep one of them"
        )
    clients_now = [c for c in (CLIENT_CERTIFICATE_ID, POLY_CLIENT_CERTIFICATE_IDS) if c in index]
    if CURRENT_POLY_CLIENT_CERTIFICATE_IDS in index and clients_now:
        named = ", ".join(where(c) for c in (*clients_now, CURRENT_POLY_CLIENT_CERTIFICATE_IDS))
        raise MappingError(
            f"{label}: columns {named} all mean {CURRENT_POLY_CLIENT_CERTIFICATE_IDS} (the client CAs each place has "
            f"now, beside {NEW_CERTIFICATE_ID}) — keep one of them"
        )
    layout = Layout(
        server=NEW_CERTIFICATE_ID,
        client=NEW_CLIENT_CERTIFICATE_ID,
        poly=NEW_POLY_CLIENT_CERTIFICATE_IDS,
        current_server=current[0],
        current_client=CLIENT_CERTIFICATE_ID if CLIENT_CERTIFICATE_ID in index else None,
        current_poly=next(
            (c for c in (CURRENT_POLY_CLIENT_CERTIFICATE_IDS, POLY_CLIENT_CERTIFICATE_IDS) if c in index), None
        ),
    )
    now = [repr(column_of[c]) for c in (layout.current_server, layout.current_client, layout.current_poly) if c]
    new = [repr(column_of[c]) for c in (layout.server, layout.client, layout.poly) if c in column_of]
    table.notes.append(
        f"current → new: each row installs {', '.join(new)} only where {', '.join(now)} still "
        f"{'says' if len(now) == 1 else 'say'} what the place has (a place found otherwise is not changed)"
    )
    return layout
