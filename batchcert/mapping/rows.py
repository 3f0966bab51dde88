"""The rows: a record below the header becomes a `Row` (`read_rows`), and every reason it cannot be sent is one of
the mapping's row problems, named by row number and column as the file spells it.

Cells of the known columns are stripped; the mapping's other columns pass through untouched (`Row.extra`). A blank
record is not a row (its number is still skipped, as a spreadsheet shows it). A hidden workbook row is an invalid row
unless `--include-hidden-rows`. An invisible or look-alike character in an id or a domain is named by code point and
position, as it cannot be seen.

Current → new (compare-and-swap, `header.Layout`): the expected current state (`Row.expected`) comes from
CertificateId or CurrentCertificateId (required in every row) and PolyClientCertificateIds /
CurrentPolyClientCertificateIds or ClientCertificateId (optional: an empty cell is not compared; a current list may be
the single `default`, as a domain on its listener's client CA reads). Rows are duplicates when listener, domain
(case-insensitively), target and expected state are all the same; the same place with another target or another
expected state is a conflict (every such row invalid).
"""

from __future__ import annotations

import shlex
import unicodedata
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from batchcert.errors import MappingError
from batchcert.mapping.cells import (
    CERTIFICATE_ID_RE,
    DOMAIN_RE,
    LISTENER_ID_RE,
    MAX_LISTED_PROBLEMS,
    POLY_SEPARATORS,
    PROXY_ID_RE,
    SCOPES,
    show,
)
from batchcert.mapping.columns import CERTIFICATE_ID, DOMAIN, LISTENER_ID, PROFILE, PROXY_ID, SCOPE
from batchcert.mapping.header import ColumnMatch, Columns, Layout
from batchcert.mapping.table import Table
from batchcert.model import DEFAULT_CERTIFICATE, SCOPE_DOMAIN, SCOPE_LISTENER, Expected, Mapping, Row

_HIDDEN_ROW = "row {n} is hidden in the workbook — unhide it to send it, or pass --include-hidden-rows"
_NO_CLIENTS: tuple[str, tuple[str, ...]] = ("", ())


@dataclass(frozen=True)
class ReadRows:
    """A mapping's rows and what is known about them, as `Mapping` holds them: the rows, each row's cells by row
    number, the problems of invalid rows (joined with "; ") and the duplicates (row number → the row it repeats)."""

    rows: tuple[Row, ...]
    cells: dict[int, tuple[str, ...]]
    problems: dict[int, str]
    duplicate_of: dict[int, int]


def read_rows(
    table: Table,
    data: list[list[str]],
    header_row: int,
    columns: Columns,
    match: ColumnMatch,
    layout: Layout,
    stray: dict[int, list[str]],
    formulas: dict[int, frozenset[str]],
    include_hidden_rows: bool,
) -> ReadRows:
    """The rows of `data` (the records below the header, whose last row is `header_row`), validated: `stray` are the
    problems of rows with spilled ids (`unread_columns.stray_ids`), by data offset; `formulas` the known columns
    whose cell is a formula saved without a value (`workbook.formulas_without_value`), by row number. Hidden rows
    get a note. Raises MappingError when there is no data row."""
    names, keep, index, column_of = columns.names, columns.keep, match.index, match.column_of
    width = len(names)
    extra_index = [i for i in range(width) if i not in index.values()]
    rows: list[Row] = []
    cells: dict[int, tuple[str, ...]] = {}
    problems: dict[int, list[str]] = defaultdict(list)
    hidden_rows: list[int] = []
    current_server, current_client, current_poly = layout.current_server, layout.current_client, layout.current_poly
    id_lists: dict[str, tuple[str, ...]] = {"": ()}  # a list cell's ids, by its text: lists repeat, rows share them

    def ids_in(text: str) -> tuple[str, ...]:
        found = id_lists.get(text)
        if found is None:
            found = id_lists[text] = tuple(p for p in POLY_SEPARATORS.split(text) if p)
        return found

    for offset, record in enumerate(data):
        row_number = header_row + offset + 1
        if keep is not None:
            record = [record[i] if i < len(record) else "" for i in keep]
        elif len(record) < width:
            record = record + [""] * (width - len(record))
        if not any(cell.strip() for cell in record):
            continue  # blank line: not a row (its number is still skipped, as a spreadsheet shows it)
        cells[row_number] = tuple(record)

        def cell(canonical: str | None, record: list[str] = record) -> str:
            # ids and domains are stripped; the mapping's other columns pass through untouched
            return record[index[canonical]].strip() if canonical in index else ""

        expected, clients_now = None, _NO_CLIENTS
        if current_server is not None:
            client_now, listed_now = cell(current_client), ids_in(cell(current_poly))
            clients_now = (client_now, listed_now)
            expected = Expected(cell(current_server), listed_now or ((client_now,) if client_now else None))
        row = Row(
            row_number=row_number,
            listener_id=cell(LISTENER_ID),
            domain=cell(DOMAIN),
            certificate_id=cell(layout.server),
            client_certificate_id=cell(layout.client),
            poly_client_certificate_ids=ids_in(cell(layout.poly)),
            extra=tuple((names[i], record[i]) for i in extra_index),
            scope=cell(SCOPE).lower() or SCOPE_DOMAIN,
            proxy_id=cell(PROXY_ID),
            expected=expected,
            profile=cell(PROFILE),
        )
        rows.append(row)
        if row_number in table.hidden:
            hidden_rows.append(row_number)
            if not include_hidden_rows:
                problems[row_number].append(_HIDDEN_ROW.format(n=row_number))
        problems[row_number].extend(
            _row_problems(row, column_of, formulas.get(row_number, frozenset()), layout, clients_now)
        )
        if offset in stray:
            problems[row_number].extend(stray[offset])
    if not rows:
        raise MappingError(
            f"{table.label} has no data rows — the header is row {header_row}; add one row per change below it"
        )
    if hidden_rows:
        listed = _list_numbers(hidden_rows)
        if include_hidden_rows:
            table.notes.append(f"{len(hidden_rows)} hidden row(s) included (--include-hidden-rows): {listed}")
        else:
            table.notes.append(
                f"{len(hidden_rows)} hidden row(s) not sent: {listed} — unhide them, or pass --include-hidden-rows"
            )
    _mark_conflicts(rows, problems)
    duplicate_of = _find_duplicates(rows, problems)
    return ReadRows(
        rows=tuple(rows),
        cells=cells,
        problems={n: "; ".join(p) for n, p in problems.items() if p},
        duplicate_of=duplicate_of,
    )


def require_rows_to_send(mapping: Mapping) -> None:
    """Refuse a run that would send nothing because every data row is invalid (exit 2, before a run directory)."""
    if mapping.valid_rows():
        return
    n = len(mapping.rows)
    if not n:
        raise MappingError(f"mapping {mapping.path.name} has no data rows — add one row per change below the header")
    hidden = sum(1 for p in mapping.problems.values() if "is hidden in the workbook" in p)
    because = f" ({hidden} of them hidden in the workbook: unhide them or pass --include-hidden-rows)" if hidden else ""
    command = f"batchcert validate {shlex.quote(str(mapping.path))}"
    if mapping.sheet:
        command += f" --sheet {shlex.quote(mapping.sheet)}"
    raise MappingError(
        f"mapping {mapping.path.name}: all {n} row(s) are invalid{because}, so there is nothing to send — "
        f"run `{command}` to see every problem, fix them and run again"
    )


def _row_problems(
    row: Row,
    column_of: dict[str, str],
    formulas: frozenset[str] = frozenset(),
    layout: Layout | None = None,
    clients_now: tuple[str, tuple[str, ...]] = ("", ()),
) -> list[str]:
    """Why `row` cannot be sent ([] when it can). `layout` says which columns the row's values came from (their names
    are in the messages); `clients_now` are a compare-and-swap row's current client cell and client-list ids."""
    n = row.row_number
    out: list[str] = []
    layout = layout or Layout()
    server, client, poly = layout.server, layout.client, layout.poly

    def col(canonical: str) -> str:
        return column_of.get(canonical, canonical)

    def formula(canonical: str) -> str:
        return (
            f"row {n}: {col(canonical)} is a formula with no saved value — open and save the file in Excel "
            "(or WPS, LibreOffice), or type the value"
        )

    def empty(canonical: str) -> str:
        if canonical in formulas:
            return formula(canonical)
        return f"row {n}: {col(canonical)} is empty — fill it or delete the row"

    if not row.listener_id:
        out.append(empty(LISTENER_ID))
    elif not LISTENER_ID_RE.fullmatch(row.listener_id):
        out.append(_not_a(n, col(LISTENER_ID), row.listener_id, "a listener id (listener-…)"))
    if row.scope not in SCOPES:
        out.append(
            _not_a(
                n,
                col(SCOPE),
                row.scope,
                "a scope — `domain` (a domain's certificates) or `listener` (the listener's own)",
            )
        )
    elif row.scope == SCOPE_LISTENER and row.domain:
        out.append(
            f"row {n}: {col(SCOPE)} is listener but {col(DOMAIN)} is {show(row.domain)} — a listener row changes the "
            "listener's own certificates: empty the domain, or make the scope domain"
        )
    elif row.scope == SCOPE_LISTENER and row.certificate_id == DEFAULT_CERTIFICATE:
        out.append(f"row {n}: a listener row cannot set {col(server)} to default — name a certificate")
    if row.proxy_id and not PROXY_ID_RE.fullmatch(row.proxy_id):
        out.append(_not_a(n, col(PROXY_ID), row.proxy_id, "a proxy id (link-…)"))
    if row.profile and (odd := _invisible_character(row.profile)):
        out.append(f"row {n}: {col(PROFILE)} {show(row.profile)} contains {odd} — retype the profile name without it")
    if row.scope == SCOPE_LISTENER:
        pass  # no domain: checked above
    elif not row.domain:
        out.append(empty(DOMAIN))
    elif len(row.domain) > 253 or not DOMAIN_RE.fullmatch(row.domain):
        out.append(_not_a(n, col(DOMAIN), row.domain, "a host name (e.g. www.example.com or *.example.com)"))
    if not row.certificate_id:
        out.append(empty(server))
    elif not _is_certificate_ref(row.certificate_id):
        out.append(_not_a(n, col(server), row.certificate_id, "a certificate id (cert-… or default)"))
    for optional in (client, poly):
        if optional in formulas:
            out.append(empty(optional))  # sending the row without it would silently drop the client certificate
    if row.client_certificate_id and not _is_certificate_ref(row.client_certificate_id):
        out.append(_not_a(n, col(client), row.client_certificate_id, "a certificate id (cert-… or default)"))
    bad_poly = [p for p in row.poly_client_certificate_ids if not CERTIFICATE_ID_RE.fullmatch(p)]
    if bad_poly:
        out.append(_bad_list_item(n, col(poly), bad_poly[0]))
    if row.client_certificate_id and row.poly_client_certificate_ids:
        out.append(f"row {n}: {col(client)} and {col(poly)} are both set — keep one of them")
    if row.expected is not None and layout.current_server is not None:
        out.extend(_expected_problems(row, row.expected, layout, clients_now, col, formulas, formula))
    return out


def _expected_problems(
    row: Row,
    expected: Expected,
    layout: Layout,
    clients_now: tuple[str, tuple[str, ...]],
    col: Callable[[str], str],
    formulas: frozenset[str],
    formula: Callable[[str], str],
) -> list[str]:
    """A compare-and-swap row's current columns (`clients_now`: the current client cell, the client-list ids). The
    current server certificate is required — a row that does not say what it expects would overwrite whatever is
    there; the current client CAs are optional (not compared when empty). A current client list may also be the
    single `default`: a domain on its listener's client CA reads so."""
    n, out = row.row_number, []
    current = layout.current_server or CERTIFICATE_ID
    place = "listener" if row.scope == SCOPE_LISTENER else "domain"
    if not expected.certificate_id:
        out.append(
            formula(current)
            if current in formulas
            else f"row {n}: {col(current)} (the certificate the {place} has now) is empty — fill it, or delete the "
            f"row (a current → new row is changed only while the {place} still has that certificate)"
        )
    elif not _is_certificate_ref(expected.certificate_id):
        out.append(_not_a(n, col(current), expected.certificate_id, "a certificate id (cert-… or default)"))
    for optional in (layout.current_client, layout.current_poly):
        if optional is not None and optional in formulas:
            out.append(formula(optional))  # comparing without it would silently skip the client CAs
    client_now, listed = clients_now
    if listed and listed != (DEFAULT_CERTIFICATE,) and layout.current_poly is not None:
        bad = [c for c in listed if not CERTIFICATE_ID_RE.fullmatch(c)]
        if bad:
            out.append(_bad_list_item(n, col(layout.current_poly), bad[0]))
    if client_now and layout.current_client is not None and not _is_certificate_ref(client_now):
        out.append(_not_a(n, col(layout.current_client), client_now, "a certificate id (cert-… or default)"))
    if client_now and listed and layout.current_client is not None and layout.current_poly is not None:
        out.append(
            f"row {n}: {col(layout.current_client)} and {col(layout.current_poly)} are both set — keep one of them"
        )
    return out


def _bad_list_item(n: int, column: str, value: str) -> str:
    odd = _odd_character(value)
    return f"row {n}: {column} has {show(value)}, not a certificate id (cert-…)" + (
        f": it contains {odd} — retype it without that character" if odd else " — separate ids with ';'"
    )


def _not_a(n: int, column: str, value: str, what: str) -> str:
    """`value` in `column` is not `what`; an invisible or look-alike character is named, as it cannot be seen."""
    odd = _odd_character(value)
    if not odd:
        return f"row {n}: {column} {show(value)} is not {what} — fix it"
    return f"row {n}: {column} {show(value)} is not {what}: it contains {odd} — retype it without that character"


def _odd_character(value: str) -> str:
    """The first character that cannot be part of an id or an ASCII host name, by code point, name and 1-based
    position ("U+200B ZERO WIDTH SPACE at position 18"); "" when every character is visible ASCII."""
    for position, ch in enumerate(value, start=1):
        if not "!" <= ch <= "~":
            name = unicodedata.name(ch, "")
            if not name:
                name = "(a control character)" if unicodedata.category(ch) == "Cc" else "(an unassigned code point)"
            hint = " — an internationalized domain is written in its xn-- form" if ch.isalpha() else ""
            return f"U+{ord(ch):04X} {name} at position {position}{hint}"
    return ""


def _invisible_character(value: str) -> str:
    """The first character of a name (a profile: any script, spaces allowed) that cannot be seen or typed as it
    looks — a control, format (zero-width) or non-ASCII space character — by code point, name and position."""
    for position, ch in enumerate(value, start=1):
        if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") or (unicodedata.category(ch) == "Zs" and ch != " "):
            return f"U+{ord(ch):04X} {unicodedata.name(ch, '(a control character)')} at position {position}"
    return ""


def _is_certificate_ref(value: str) -> bool:
    return value == DEFAULT_CERTIFICATE or CERTIFICATE_ID_RE.fullmatch(value) is not None


def _list_numbers(numbers: list[int], limit: int = MAX_LISTED_PROBLEMS) -> str:
    shown = ", ".join(str(n) for n in numbers[:limit])
    return shown + (f" and {len(numbers) - limit} more" if len(numbers) > limit else "")


def _target_group(rows: list[Row], problems: dict[int, list[str]]) -> dict[tuple[str, str], list[Row]]:
    groups: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for row in rows:
        if not problems.get(row.row_number):
            groups[(row.listener_id, row.domain.lower())].append(row)
    return groups


def _mark_conflicts(rows: list[Row], problems: dict[int, list[str]]) -> None:
    """One (listener, domain) — the domain compared case-insensitively — asked for two different targets, or for
    the same target from two different expected current states: every such row is invalid."""
    for (listener_id, domain), group in _target_group(rows, problems).items():
        if len({(r.target_key, r.expected) for r in group}) > 1:
            differ = (
                "is asked for different certificates"
                if len({r.target_key for r in group}) > 1
                else "is said to have different current certificates"
            )
            numbers = [r.row_number for r in group]
            for row in group:
                others = ", ".join(str(x) for x in numbers if x != row.row_number)
                problems[row.row_number].append(
                    f"row {row.row_number}: {listener_id} / {domain or '(the listener)'} {differ} in row(s) {others} "
                    "— keep one of them"
                )


def _find_duplicates(rows: list[Row], problems: dict[int, list[str]]) -> dict[int, int]:
    """Identical requests — the same target and the same expected state, the domain compared case-insensitively:
    the first is sent, the later ones point at it."""
    duplicate_of: dict[int, int] = {}
    for group in _target_group(rows, problems).values():
        first = group[0].row_number
        for row in group[1:]:
            duplicate_of[row.row_number] = first
    return duplicate_of
