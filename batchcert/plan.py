"""The mapping in: read a CSV or XLSX file as text, match its columns, validate every row before anything is sent.

Row numbers are what a spreadsheet shows for a record: the header is row 1, the first data record row 2 (a CSV
record with an embedded newline is still one row). Everything is read as text — no float ids, no NaN — and cells
of the known columns are stripped (other columns pass through untouched); the neutralizing quote that reports put before formula-like cells is removed again here, so
`failed.csv` and `rollback.csv` read back as the mappings they were.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections import defaultdict
from pathlib import Path

import pandas as pd

from batchcert.errors import MappingError
from batchcert.model import DEFAULT_CERTIFICATE, Mapping, Row

LISTENER_ID, DOMAIN, CERTIFICATE_ID = "ListenerId", "Domain", "CertificateId"
CLIENT_CERTIFICATE_ID, POLY_CLIENT_CERTIFICATE_IDS = "ClientCertificateId", "PolyClientCertificateIds"
COLUMNS = (LISTENER_ID, DOMAIN, CERTIFICATE_ID, CLIENT_CERTIFICATE_ID, POLY_CLIENT_CERTIFICATE_IDS)
REQUIRED_COLUMNS = (LISTENER_ID, DOMAIN, CERTIFICATE_ID)

#: Header spellings accepted for each column, after lower-casing and removing spaces, underscores and hyphens.
COLUMN_ALIASES: dict[str, str] = {
    "listenerid": LISTENER_ID,
    "listener": LISTENER_ID,
    "domain": DOMAIN,
    "domainname": DOMAIN,
    "certificateid": CERTIFICATE_ID,
    "certid": CERTIFICATE_ID,
    "servercertificateid": CERTIFICATE_ID,
    "clientcertificateid": CLIENT_CERTIFICATE_ID,
    "clientcertid": CLIENT_CERTIFICATE_ID,
    "polyclientcertificateids": POLY_CLIENT_CERTIFICATE_IDS,
    "clientcertificateids": POLY_CLIENT_CERTIFICATE_IDS,
}

LISTENER_ID_RE = re.compile(r"listener-[0-9a-z]{1,32}")
CERTIFICATE_ID_RE = re.compile(r"cert-[0-9a-z]{1,32}")
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
# the top-level label starts with a letter (no all-numeric TLDs, RFC 3696 §2): "1.5e10" read from a number cell fails
DOMAIN_RE = re.compile(rf"(\*\.)?({_LABEL}\.)+(?=[a-z]){_LABEL}", re.IGNORECASE)
POLY_SEPARATORS = re.compile(r"[;,|\s]+")
#: characters that make a spreadsheet evaluate a cell (OWASP CSV injection); reports prefix such cells with "'"
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def normalize_header(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name).lower()


def restore_cell(value: str) -> str:
    """Undo the report's neutralization (`'=x` → `=x`); everything else is kept as it is."""
    if value.startswith("'") and value[1:2] in FORMULA_PREFIXES and value[1:2] != "":
        return value[1:]
    return value


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read_table(path: Path, sheet: str | None) -> list[list[str]]:
    """The file's records as lists of strings, header first. Raises MappingError when unreadable."""
    if not path.is_file():
        raise MappingError(f"mapping {path} does not exist — check the path")
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        frame = _read_excel(path, sheet)
    elif suffix in (".csv", ".txt", ".tsv"):
        if sheet is not None:
            raise MappingError(f"--sheet applies to .xlsx mappings only, and {path.name} is a CSV — drop --sheet")
        frame = _read_csv(path)
    else:
        raise MappingError(f"mapping {path.name}: unsupported file type {suffix!r} — use .csv or .xlsx")
    return [[restore_cell(str(v)) for v in record] for record in frame.itertuples(index=False, name=None)]


def _read_csv(path: Path) -> pd.DataFrame:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MappingError(
            f"mapping {path.name} is not UTF-8 (byte {exc.start}) — save it as 'CSV UTF-8' or as .xlsx"
        ) from None
    if not text.strip():
        raise MappingError(f"mapping {path.name} is empty — add a header row and data rows")
    first_line = text.splitlines()[0]
    delimiter = ";" if first_line.count(";") > first_line.count(",") else ","
    try:
        return pd.read_csv(
            io.StringIO(text),
            sep=delimiter,
            header=None,
            dtype=str,
            keep_default_na=False,
            skip_blank_lines=False,
        )
    except Exception as exc:  # any parser failure is the file's problem: say so, never a traceback
        raise MappingError(
            f"mapping {path.name} is not a readable CSV ({type(exc).__name__}: {str(exc)[:200]}) — check quoting, "
            "or save it again as 'CSV UTF-8'"
        ) from None


def _read_excel(path: Path, sheet: str | None) -> pd.DataFrame:
    try:
        return _parse_excel(path, sheet)
    except MappingError:
        raise
    except Exception as exc:  # openpyxl raises many types for damaged files: say so, never a traceback
        raise MappingError(
            f"mapping {path.name} is not a readable .xlsx file ({type(exc).__name__}: {str(exc)[:200]}) — "
            "re-save it from Excel"
        ) from None


def _parse_excel(path: Path, sheet: str | None) -> pd.DataFrame:
    book = pd.ExcelFile(path, engine="openpyxl")
    with book:
        names = [str(n) for n in book.sheet_names]
        if sheet is not None and sheet not in names:
            raise MappingError(f"mapping {path.name} has no sheet {sheet!r} — sheets: {', '.join(names)}")
        if not names:
            raise MappingError(f"mapping {path.name} has no sheets")
        # dtype=str reads every cell as text; formulas are not evaluated (openpyxl reads cached values only).
        frame = pd.read_excel(
            book, sheet_name=sheet if sheet is not None else names[0], header=None, dtype=str, keep_default_na=False
        )
    return frame.fillna("")


def _match_columns(header: list[str], path: Path) -> dict[str, str]:
    """canonical column → original header name. Raises MappingError on a missing required or doubled column."""
    found: dict[str, list[str]] = defaultdict(list)
    for name in header:
        canonical = COLUMN_ALIASES.get(normalize_header(name))
        if canonical:
            found[canonical].append(name)
    for canonical, names in found.items():
        if len(names) > 1:
            raise MappingError(
                f"mapping {path.name}: columns {', '.join(repr(n) for n in names)} all mean {canonical} — keep one"
            )
    missing = [c for c in REQUIRED_COLUMNS if c not in found]
    if missing:
        raise MappingError(
            f"mapping {path.name} lacks the column(s) {', '.join(missing)} — the header row must name "
            f"{', '.join(REQUIRED_COLUMNS)} (optional: {CLIENT_CERTIFICATE_ID}, {POLY_CLIENT_CERTIFICATE_IDS}); "
            f"found: {', '.join(repr(h) for h in header if h) or 'nothing'}"
        )
    return {canonical: names[0] for canonical, names in found.items()}


def read_mapping(path: Path, sheet: str | None = None) -> Mapping:
    """Read and validate a mapping. Raises MappingError only for file-level problems (unreadable, empty, missing
    required column); row-level problems are returned in `Mapping.problems`."""
    table = _read_table(path, sheet)
    if not table or not any(h.strip() for h in table[0]):
        raise MappingError(f"mapping {path.name} has no header row — the first row must name the columns")
    header = [h.strip() for h in table[0]]
    column_of = _match_columns(header, path)
    index = {canonical: header.index(name) for canonical, name in column_of.items()}
    rows: list[Row] = []
    cells: dict[int, tuple[str, ...]] = {}
    problems: dict[int, list[str]] = defaultdict(list)
    for offset, record in enumerate(table[1:]):
        row_number = offset + 2
        record = record + [""] * (len(header) - len(record))
        if not any(cell.strip() for cell in record):
            continue  # blank line: not a row (its number is still skipped, as a spreadsheet shows it)
        cells[row_number] = tuple(record)

        def cell(canonical: str, record: list[str] = record) -> str:
            # ids and domains are stripped; the mapping's other columns pass through untouched
            return record[index[canonical]].strip() if canonical in index else ""

        poly_text = cell(POLY_CLIENT_CERTIFICATE_IDS)
        row = Row(
            row_number=row_number,
            listener_id=cell(LISTENER_ID),
            domain=cell(DOMAIN),
            certificate_id=cell(CERTIFICATE_ID),
            client_certificate_id=cell(CLIENT_CERTIFICATE_ID),
            poly_client_certificate_ids=tuple(p for p in POLY_SEPARATORS.split(poly_text) if p),
            extra=tuple(
                (h, v) for i, (h, v) in enumerate(zip(header, record, strict=False)) if i not in index.values()
            ),
        )
        rows.append(row)
        problems[row_number].extend(_row_problems(row, column_of))
    _mark_conflicts(rows, problems)
    duplicate_of = _find_duplicates(rows, problems)
    return Mapping(
        path=path,
        sha256=file_sha256(path),
        columns=tuple(header),
        column_of=column_of,
        rows=tuple(rows),
        cells=cells,
        problems={n: "; ".join(p) for n, p in problems.items() if p},
        duplicate_of=duplicate_of,
    )


def _row_problems(row: Row, column_of: dict[str, str]) -> list[str]:
    n = row.row_number
    out: list[str] = []

    def col(canonical: str) -> str:
        return column_of.get(canonical, canonical)

    if not row.listener_id:
        out.append(f"row {n}: {col(LISTENER_ID)} is empty — fill it or delete the row")
    elif not LISTENER_ID_RE.fullmatch(row.listener_id):
        out.append(f"row {n}: {col(LISTENER_ID)} {_show(row.listener_id)} is not a listener id (listener-…) — fix it")
    if not row.domain:
        out.append(f"row {n}: {col(DOMAIN)} is empty — fill it or delete the row")
    elif len(row.domain) > 253 or not DOMAIN_RE.fullmatch(row.domain):
        out.append(
            f"row {n}: {col(DOMAIN)} {_show(row.domain)} is not a host name (e.g. www.example.com or *.example.com) — fix it"
        )
    if not row.certificate_id:
        out.append(f"row {n}: {col(CERTIFICATE_ID)} is empty — fill it or delete the row")
    elif not _is_certificate_ref(row.certificate_id):
        out.append(
            f"row {n}: {col(CERTIFICATE_ID)} {_show(row.certificate_id)} is not a certificate id (cert-… or default) — fix it"
        )
    if row.client_certificate_id and not _is_certificate_ref(row.client_certificate_id):
        out.append(
            f"row {n}: {col(CLIENT_CERTIFICATE_ID)} {_show(row.client_certificate_id)} is not a certificate id "
            "(cert-… or default) — fix it"
        )
    bad_poly = [p for p in row.poly_client_certificate_ids if not CERTIFICATE_ID_RE.fullmatch(p)]
    if bad_poly:
        out.append(
            f"row {n}: {col(POLY_CLIENT_CERTIFICATE_IDS)} has {_show(bad_poly[0])}, not a certificate id (cert-…) — "
            "separate ids with ';'"
        )
    if row.client_certificate_id and row.poly_client_certificate_ids:
        out.append(
            f"row {n}: {col(CLIENT_CERTIFICATE_ID)} and {col(POLY_CLIENT_CERTIFICATE_IDS)} are both set — keep one of them"
        )
    return out


def _is_certificate_ref(value: str) -> bool:
    return value == DEFAULT_CERTIFICATE or CERTIFICATE_ID_RE.fullmatch(value) is not None


def _show(value: str) -> str:
    return repr(value if len(value) <= 60 else value[:57] + "...")


def _target_group(rows: list[Row], problems: dict[int, list[str]]) -> dict[tuple[str, str], list[Row]]:
    groups: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for row in rows:
        if not problems.get(row.row_number):
            groups[(row.listener_id, row.domain.lower())].append(row)
    return groups


def _mark_conflicts(rows: list[Row], problems: dict[int, list[str]]) -> None:
    """One (listener, domain) asked for two different targets: every such row is invalid."""
    for (listener_id, domain), group in _target_group(rows, problems).items():
        if len({r.target_key for r in group}) > 1:
            numbers = [r.row_number for r in group]
            for row in group:
                others = ", ".join(str(x) for x in numbers if x != row.row_number)
                problems[row.row_number].append(
                    f"row {row.row_number}: {listener_id} / {domain} is asked for different certificates in row(s) "
                    f"{others} — keep one of them"
                )


def _find_duplicates(rows: list[Row], problems: dict[int, list[str]]) -> dict[int, int]:
    """Identical requests: the first is sent, the later ones point at it."""
    duplicate_of: dict[int, int] = {}
    for group in _target_group(rows, problems).values():
        first = group[0].row_number
        for row in group[1:]:
            duplicate_of[row.row_number] = first
    return duplicate_of
