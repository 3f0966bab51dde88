"""The mapping in: read a CSV or XLSX file as people really have it, match its columns, validate every row before
anything is sent.

Files arrive as Excel, WPS and LibreOffice write them: CSV in UTF-8 (with or without BOM), UTF-16 ("Unicode Text",
tab-separated) or GB18030/GBK; `,`, `;` or TAB between cells; a title row or two above the header; Chinese header
names; several sheets, hidden sheets, hidden (filtered) rows; formulas saved without their values. Each of these is
either read correctly or refused with a message that names the row (or line) and says what to do.

Row numbers are what a spreadsheet shows for a record: the header is found within the first rows (not assumed to be
row 1) and keeps its number; the first data record follows it (a CSV record with an embedded newline is still one
row). CSV problems that refuse the whole file name *lines*, as a text editor shows them. Everything is read as text —
no float ids, no NaN — and cells of the known columns are stripped (other columns pass through untouched); the
neutralizing quote that reports put before formula-like cells is removed again here, so `failed.csv` and
`rollback.csv` read back as the mappings they were.

Why the `csv` module and openpyxl rather than pandas (the layering names pandas for the mapping): a refused CSV must
name the *line* where a stray quote opened, which pandas' parser does not say; the bytes are decoded once (BOM,
strict UTF-8, then GB18030) and parsed once, so a 100,000-row GB18030 file reads as fast as UTF-8 (pandas needs the
encoding up front and re-parses on a guess); and hidden sheets and hidden rows are workbook facts pandas drops.
pandas builds the report's tables (`batchcert.report`).
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import gc
import hashlib
import io
import itertools
import re
import shlex
import unicodedata
import warnings
import zipfile
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchcert.errors import MappingError
from batchcert.model import DEFAULT_CERTIFICATE, SCOPE_DOMAIN, SCOPE_LISTENER, Mapping, Row

LISTENER_ID, DOMAIN, CERTIFICATE_ID = "ListenerId", "Domain", "CertificateId"
CLIENT_CERTIFICATE_ID, POLY_CLIENT_CERTIFICATE_IDS = "ClientCertificateId", "PolyClientCertificateIds"
#: optional: what a row changes (`domain`, the default, or `listener`: the listener's own certificates, Domain empty)
#: and the listener's proxy (ModifyHTTPSListenerAttribute takes it)
SCOPE, PROXY_ID = "Scope", "ProxyId"
COLUMNS = (SCOPE, PROXY_ID, LISTENER_ID, DOMAIN, CERTIFICATE_ID, CLIENT_CERTIFICATE_ID, POLY_CLIENT_CERTIFICATE_IDS)
REQUIRED_COLUMNS = (LISTENER_ID, DOMAIN, CERTIFICATE_ID)

#: Header spellings accepted for each column, as `normalize_header` leaves them (NFKC, lower case, no spaces,
#: underscores, hyphens, dots, colons, asterisks or parenthesized remarks). The Chinese names are the ones the GAAP
#: console and common hand-made sheets use.
COLUMN_ALIASES: dict[str, str] = {
    "listenerid": LISTENER_ID,
    "listener": LISTENER_ID,
    "监听器id": LISTENER_ID,
    "监听器": LISTENER_ID,
    "监听器编号": LISTENER_ID,
    "监听id": LISTENER_ID,
    "domain": DOMAIN,
    "domainname": DOMAIN,
    "域名": DOMAIN,
    "certificateid": CERTIFICATE_ID,
    "certid": CERTIFICATE_ID,
    "servercertificateid": CERTIFICATE_ID,
    "证书id": CERTIFICATE_ID,
    "证书": CERTIFICATE_ID,
    "证书编号": CERTIFICATE_ID,
    "服务器证书id": CERTIFICATE_ID,
    "服务器证书": CERTIFICATE_ID,
    "服务端证书id": CERTIFICATE_ID,
    "服务端证书": CERTIFICATE_ID,
    "clientcertificateid": CLIENT_CERTIFICATE_ID,
    "clientcertid": CLIENT_CERTIFICATE_ID,
    "客户端证书id": CLIENT_CERTIFICATE_ID,
    "客户端证书": CLIENT_CERTIFICATE_ID,
    "客户端ca证书id": CLIENT_CERTIFICATE_ID,
    "polyclientcertificateids": POLY_CLIENT_CERTIFICATE_IDS,
    "clientcertificateids": POLY_CLIENT_CERTIFICATE_IDS,
    "多客户端证书id": POLY_CLIENT_CERTIFICATE_IDS,
    "多客户端证书ids": POLY_CLIENT_CERTIFICATE_IDS,
    "多客户端证书": POLY_CLIENT_CERTIFICATE_IDS,
    "客户端证书ids": POLY_CLIENT_CERTIFICATE_IDS,
    "scope": SCOPE,
    "范围": SCOPE,
    "作用域": SCOPE,
    "proxyid": PROXY_ID,
    "通道id": PROXY_ID,
    "通道": PROXY_ID,
}
SCOPES = (SCOPE_DOMAIN, SCOPE_LISTENER)
#: a connection's id: a proxy (link-…); a listener on a proxy group has none
PROXY_ID_RE = re.compile(r"link-[0-9a-z]{1,32}")

LISTENER_ID_RE = re.compile(r"listener-[0-9a-z]{1,32}")
CERTIFICATE_ID_RE = re.compile(r"cert-[0-9a-z]{1,32}")
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
# the top-level label starts with a letter (no all-numeric TLDs, RFC 3696 §2): "1.5e10" read from a number cell fails
DOMAIN_RE = re.compile(rf"(\*\.)?({_LABEL}\.)+(?=[a-z]){_LABEL}", re.IGNORECASE)
#: between several ids in one cell; the full-width forms are what a Chinese input method types
POLY_SEPARATORS = re.compile(r"[;,|\s；，、｜]+")
#: characters that make a spreadsheet evaluate a cell (OWASP CSV injection); reports prefix such cells with "'"
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

#: the header is the first of this many rows that names every required column
HEADER_SEARCH_ROWS = 10
#: cell separators a CSV may use, sniffed from the header row (TAB: Excel's "Unicode Text")
DELIMITERS = (",", ";", "\t")
_DELIMITER_NAMES = {",": "','", ";": "';'", "\t": "TAB"}
#: a malformed CSV lists this many problem lines, then a count
MAX_LISTED_PROBLEMS = 20
CSV_SUFFIXES = (".csv", ".txt", ".tsv")
XLSX_SUFFIXES = (".xlsx", ".xlsm")
#: spreadsheet formats no reader here understands, and what they are (the message says what to save them as)
OTHER_SPREADSHEETS = {
    ".xls": "an Excel 97-2003 workbook (.xls)",
    ".ods": "an OpenDocument spreadsheet (.ods)",
    ".et": "a WPS spreadsheet (.et)",
    ".numbers": "a Numbers spreadsheet",
}
_SAVE_AS = "open it in Excel, WPS or LibreOffice and save it as .xlsx (Excel Workbook) or as 'CSV UTF-8'"
_ZIP_SIGNATURE = b"PK\x03\x04"
_OLE2_SIGNATURE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # .xls, and password-protected .xlsx
#: byte-order marks, longest first (a UTF-32LE mark starts with the UTF-16LE one)
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_ENCODING_NAMES = {
    "utf-8": "UTF-8",
    "utf-8-sig": "UTF-8 with BOM",
    "utf-16": "UTF-16",
    "utf-16-le": "UTF-16LE",
    "utf-16-be": "UTF-16BE",
    "utf-32": "UTF-32",
    "gb18030": "GB18030",
}
_HIDDEN_ROW = "row {n} is hidden in the workbook — unhide it to send it, or pass --include-hidden-rows"
# Worksheet XML (ECMA-376 Part 1, §18.3.1.73 `row`, §18.3.1.40 `f`): a row's `r` attribute is its number (when absent,
# the previous row's plus one) and `hidden` is an xsd:boolean; any element prefix may be used.
_ROW_TAG = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?row\b([^>]*)>")
_ROW_NUMBER_ATTR = re.compile(rb"""(?<![\w:])r\s*=\s*["'](\d+)["']""")
_HIDDEN_ATTR = re.compile(rb"""(?<![\w:])hidden\s*=\s*["'](?:1|true)["']""")
_FORMULA_TAG = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?f[\s/>]")
_HEADER_NOISE = re.compile(r"\(.*?\)|[\s_\-.:*\u200b\u200c\u200d\u2060\ufeff]+")
_NEWLINE = re.compile(r"\r\n|\r|\n")


def normalize_header(name: str) -> str:
    """A header as `COLUMN_ALIASES` spells it: NFKC (full-width letters and spaces become ASCII), lower case, without
    spaces, underscores, hyphens, dots, colons, asterisks, invisible characters and parenthesized remarks."""
    return _HEADER_NOISE.sub("", unicodedata.normalize("NFKC", name)).lower()


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


@dataclass
class _Table:
    """A file's records before the header is known. `records[i]` is spreadsheet row i + 1."""

    label: str  # "mapping m.csv", "mapping m.xlsx (sheet 'New')": the start of every message
    records: list[list[str]]
    notes: list[str] = field(default_factory=list)
    sheet: str = ""
    encoding: str = ""
    delimiter: str = ""  # a CSV's; "" for a workbook
    #: CSV: the file line on which records[i] starts; the last line of each record spanning several lines
    starts: list[int] = field(default_factory=list)
    ends: dict[int, int] = field(default_factory=dict)
    #: CSV: (line, problem) from the strict parse, and the text (to locate an unclosed quote)
    parse_problems: list[tuple[int, str]] = field(default_factory=list)
    #: workbook: the spreadsheet numbers of hidden rows; where to look for formulas saved without a value
    hidden: frozenset[int] = frozenset()
    workbook: Path | None = None
    has_formulas: bool = False


def read_mapping(
    path: Path, sheet: str | None = None, *, encoding: str | None = None, include_hidden_rows: bool = False
) -> Mapping:
    """Read and validate a mapping. Raises MappingError only for file-level problems (unreadable, empty, malformed,
    missing required column, no data row); row-level problems are returned in `Mapping.problems`.

    `sheet` picks a workbook sheet (default: the only visible one); `encoding` overrides the CSV encoding detection;
    hidden workbook rows become invalid rows unless `include_hidden_rows`."""
    with _gc_paused():
        return _read_mapping(path, sheet, encoding, include_hidden_rows)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a mapping is built. Its ~10 objects per row hold no reference cycles,
    yet every collection walks them all: a 100,000-row file reads ~30% faster without, and its time no longer grows
    with whatever else the process holds. Reference counting still frees everything as usual."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _read_mapping(path: Path, sheet: str | None, encoding: str | None, include_hidden_rows: bool) -> Mapping:
    table = _read_table(path, sheet, encoding)
    try:
        header_index = _find_header(table)
    except MappingError:
        if table.parse_problems:
            _refuse_malformed_csv(table, None, 0)  # a broken quote can hide the header: say that first
        raise
    header_row = header_index + 1
    if header_row != 1:
        table.notes.append(f"header on row {header_row}")
    header = [h.strip() for h in table.records[header_index]]
    data = table.records[header_index + 1 :]
    if table.delimiter:
        _refuse_malformed_csv(table, header_index, len(header))
    columns, keep = _name_columns(header, data, table.notes)
    column_of, index = _match_columns(columns, table.label)
    width = len(columns)
    formulas: dict[int, frozenset[str]] = {}
    if table.has_formulas:
        positions = {c: (i if keep is None else keep[i]) for c, i in index.items()}  # in the sheet, not in `columns`
        formulas = _formulas_without_value(table, header_row, data, positions)
    extra_index = [i for i in range(width) if i not in index.values()]
    rows: list[Row] = []
    cells: dict[int, tuple[str, ...]] = {}
    problems: dict[int, list[str]] = defaultdict(list)
    hidden_rows: list[int] = []
    for offset, record in enumerate(data):
        row_number = header_row + offset + 1
        if keep is not None:
            record = [record[i] if i < len(record) else "" for i in keep]
        elif len(record) < width:
            record = record + [""] * (width - len(record))
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
            extra=tuple((columns[i], record[i]) for i in extra_index),
            scope=cell(SCOPE).lower() or SCOPE_DOMAIN,
            proxy_id=cell(PROXY_ID),
        )
        rows.append(row)
        if row_number in table.hidden:
            hidden_rows.append(row_number)
            if not include_hidden_rows:
                problems[row_number].append(_HIDDEN_ROW.format(n=row_number))
        problems[row_number].extend(_row_problems(row, column_of, formulas.get(row_number, frozenset())))
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
    return Mapping(
        path=path,
        sha256=file_sha256(path),
        columns=tuple(columns),
        column_of=column_of,
        rows=tuple(rows),
        cells=cells,
        problems={n: "; ".join(p) for n, p in problems.items() if p},
        duplicate_of=duplicate_of,
        sheet=table.sheet,
        encoding=table.encoding,
        header_row=header_row,
        notes=tuple(table.notes),
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


# --- the file: which kind it is, its bytes, its text, its records ---------------------------------------------------


def _read_table(path: Path, sheet: str | None, encoding: str | None) -> _Table:
    """The file's records as lists of strings (restored from report neutralization). Raises MappingError when the
    file cannot be read as a mapping at all."""
    notes: list[str] = []
    if _file_kind(path, notes) == "xlsx":
        if encoding is not None:
            raise MappingError(f"--encoding applies to CSV mappings only, and {path.name} is a workbook — drop it")
        return _read_workbook(path, sheet, notes)
    if sheet is not None:
        raise MappingError(f"--sheet applies to .xlsx mappings only, and {path.name} is a CSV — drop --sheet")
    return _read_csv(path, encoding, notes)


def _file_kind(path: Path, notes: list[str]) -> str:
    """Which reader the file needs, "csv" or "xlsx": its first bytes decide, then its suffix. Raises MappingError for
    anything else, saying what to save it as."""
    name, suffix = path.name, path.suffix.lower()
    if path.is_dir():
        raise MappingError(f"mapping {path} is a directory — pass the mapping file itself")
    if not path.exists():
        raise MappingError(f"mapping {path} does not exist — check the path")
    if not path.is_file():
        raise MappingError(f"mapping {path} is not a regular file — pass the mapping file itself")
    try:
        with path.open("rb") as fh:
            head = fh.read(len(_OLE2_SIGNATURE))
    except OSError as exc:
        raise MappingError(f"mapping {name} cannot be read ({exc.strerror}) — check its permissions") from None
    if suffix in OTHER_SPREADSHEETS:
        raise MappingError(f"mapping {name} is {OTHER_SPREADSHEETS[suffix]} — {_SAVE_AS}, and pass that file")
    if head.startswith(_OLE2_SIGNATURE):
        raise MappingError(
            f"mapping {name} is an Excel 97-2003 workbook (.xls) or a password-protected workbook — {_SAVE_AS} "
            "(without a password), and pass that file"
        )
    if head.startswith(_ZIP_SIGNATURE):
        inside = _zip_kind(path)
        if inside == "ods":
            raise MappingError(f"mapping {name} is {OTHER_SPREADSHEETS['.ods']} — {_SAVE_AS}, and pass that file")
        if inside == "xlsx" and suffix not in XLSX_SUFFIXES:
            notes.append(f"{name} is an Excel workbook, not a CSV: read as .xlsx — rename it {path.stem}.xlsx")
            return "xlsx"
        if suffix not in XLSX_SUFFIXES:
            raise MappingError(f"mapping {name} is a ZIP archive, not a CSV or .xlsx file — pass the mapping itself")
    if suffix in XLSX_SUFFIXES:
        return "xlsx"  # openpyxl says what is wrong with a file that is no workbook
    if suffix in CSV_SUFFIXES:
        return "csv"
    raise MappingError(f"mapping {name}: unsupported file type {suffix!r} — use .csv (or .tsv, .txt) or .xlsx")


def _zip_kind(path: Path) -> str:
    """What a file that starts like a ZIP archive holds: "xlsx", "ods" or "other"."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if "mimetype" in names and archive.read("mimetype").startswith(b"application/vnd.oasis.opendocument"):
                return "ods"
    except (zipfile.BadZipFile, OSError, KeyError, ValueError):
        return "other"
    return "xlsx" if any(n.startswith("xl/") for n in names) else "other"


def _read_csv(path: Path, encoding: str | None, notes: list[str]) -> _Table:
    label = f"mapping {path.name}"
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise MappingError(f"{label} cannot be read ({exc.strerror}) — check its permissions") from None
    text, codec, how = _decode(raw, encoding, label)
    notes.append(f"encoding {_ENCODING_NAMES.get(codec, codec.upper())}{how}")
    if not text.strip():
        raise MappingError(
            f"{label} is empty — it has no header row and no data rows; the header must name "
            f"{', '.join(REQUIRED_COLUMNS)}"
        )
    delimiter = _sniff_delimiter(text)
    if delimiter != ",":
        notes.append(f"delimiter {_DELIMITER_NAMES[delimiter]}")
    table = _Table(label=label, records=[], notes=notes, encoding=codec, delimiter=delimiter)
    _parse_csv(text, table)
    return table


def _decode(raw: bytes, encoding: str | None, label: str) -> tuple[str, str, str]:
    """(text, codec, how the codec was chosen). The bytes are decoded once: a byte-order mark decides; else strict
    UTF-8; else GB18030 (which includes GBK and GB2312, what Excel and WPS write for "CSV" on a Chinese Windows)."""
    if encoding is not None:
        try:
            codec = codecs.lookup(encoding).name
        except LookupError:
            raise MappingError(
                f"unknown encoding {encoding!r} — name one such as utf-8, gb18030, utf-16, big5, shift_jis or cp1252"
            ) from None
        return _decode_as(raw, codec, label, "--encoding").removeprefix("\ufeff"), codec, " (--encoding)"
    for bom, codec in _BOMS:
        if raw.startswith(bom):
            return _decode_as(raw, codec, label, "its byte-order mark"), codec, ""
    guess = _utf16_without_bom(raw)
    if guess is not None:
        return _decode_as(raw, guess, label, "its zero bytes"), guess, " (no byte-order mark)"
    try:
        return raw.decode("utf-8"), "utf-8", ""
    except UnicodeDecodeError:
        pass
    try:
        return raw.decode("gb18030"), "gb18030", ""
    except UnicodeDecodeError as exc:
        raise MappingError(
            f"{label} is not UTF-8, nor GB18030/GBK: {_where_bytes(raw, exc)} — save it as 'CSV UTF-8', or pass "
            "--encoding NAME (big5, shift_jis, cp1252, …)"
        ) from None


def _decode_as(raw: bytes, codec: str, label: str, why: str) -> str:
    try:
        return raw.decode(codec)
    except UnicodeDecodeError as exc:
        raise MappingError(
            f"{label} is not valid {_ENCODING_NAMES.get(codec, codec)} (chosen by {why}): {_where_bytes(raw, exc)} — "
            "save it again as 'CSV UTF-8', or pass --encoding NAME"
        ) from None


def _where_bytes(raw: bytes, exc: UnicodeDecodeError) -> str:
    line = raw.count(b"\n", 0, exc.start) + 1
    return f"byte 0x{raw[exc.start]:02x} at offset {exc.start} (line {line}) cannot be read"


def _utf16_without_bom(raw: bytes) -> str | None:
    """UTF-16 written without a byte-order mark shows as a zero byte in every other position of ASCII text."""
    sample = raw[:4096]
    half = len(sample) // 2
    if half < 4:
        return None
    even, odd = sample[0::2].count(0), sample[1::2].count(0)
    if odd > 0.3 * half and even < 0.05 * half:
        return "utf-16-le"
    if even > 0.3 * half and odd < 0.05 * half:
        return "utf-16-be"
    return None


def _sniff_delimiter(text: str) -> str:
    """The delimiter with which a header row (within the first rows) names every required column; else the one the
    first non-empty line holds most of (the error then names that line's missing columns)."""
    head = text[: 1 << 20]
    best: tuple[int, int, int] | None = None
    for rank, delimiter in enumerate(DELIMITERS):
        records = csv.reader(io.StringIO(head, newline=""), delimiter=delimiter)
        try:
            for i, record in enumerate(itertools.islice(records, HEADER_SEARCH_ROWS)):
                if _has_required_columns(record):
                    if best is None or (i, -len(record), rank) < best:
                        best = (i, -len(record), rank)
                    break
        except csv.Error:
            continue
    if best is not None:
        return DELIMITERS[best[2]]
    first = next((line for line in io.StringIO(head, newline="") if line.strip()), "")
    return max(DELIMITERS, key=first.count)


def _parse_csv(text: str, table: _Table) -> None:
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


def _refuse_malformed_csv(table: _Table, header_index: int | None, width: int) -> None:
    """Refuse the whole file when a record has more cells than the header or a quoted cell swallowed lines that look
    like rows, or the strict parse failed: each means a row was shifted or lost, and nothing may be sent."""
    problems = list(table.parse_problems)
    delimiter = table.delimiter
    header_row = 0 if header_index is None else header_index + 1
    for i in range(len(table.records) if header_index is None else header_index + 1, len(table.records)):
        record, start = table.records[i], table.starts[i]
        if len(record) > width:
            problems.append(
                (
                    start,
                    f"line {start}: {len(record)} cells, but the header (row {header_row}) has {width} — quote "
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
                    f"rows ({_show(piece)}) — a quote is probably missing its closing pair"
                )
        line += len(pieces) - 1
    return ""


def _read_workbook(path: Path, sheet: str | None, notes: list[str]) -> _Table:
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
            is_zip = fh.read(len(_ZIP_SIGNATURE)) == _ZIP_SIGNATURE
        if not is_zip:
            hint = " (it is not a workbook at all: if it is a CSV, rename it .csv)"
        raise MappingError(
            f"mapping {path.name} is not a readable .xlsx file ({type(exc).__name__}: {str(exc)[:200]}){hint} — "
            "re-save it from Excel"
        ) from None


def _parse_workbook(path: Path, sheet: str | None, notes: list[str]) -> _Table:
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
    return _Table(
        label=f"mapping {path.name} (sheet {title!r})",
        records=records,
        notes=notes,
        sheet=title,
        hidden=_hidden_rows(xml),
        workbook=path,
        has_formulas=_FORMULA_TAG.search(xml) is not None,
    )


def _choose_sheet(book: Any, sheet: str | None, name: str, notes: list[str]) -> Any:
    """The named sheet (hidden ones only by name), else the only visible one (empty visible sheets aside)."""
    sheets = list(book.worksheets)
    if not sheets:
        raise MappingError(f"mapping {name} has no sheets — {_SAVE_AS}")
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


def _formulas_without_value(
    table: _Table, header_row: int, data: list[list[str]], index: dict[str, int]
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


# --- the header --------------------------------------------------------------------------------------------------------


def _canonical(name: str) -> str | None:
    return COLUMN_ALIASES.get(normalize_header(name))


def _has_required_columns(record: Sequence[str]) -> bool:
    return not _missing_columns(record)


def _find_header(table: _Table) -> int:
    """Index of the header record: the first of the first HEADER_SEARCH_ROWS that names every required column."""
    first: int | None = None
    for i, record in enumerate(table.records[:HEADER_SEARCH_ROWS]):
        if not any(c.strip() for c in record):
            continue
        if _has_required_columns(record):
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
    missing = _missing_columns(header)
    # a row further down that names more of them is probably the header the user meant: say what it lacks
    searched = table.records[:HEADER_SEARCH_ROWS]
    closest = min(range(len(searched)), key=lambda i: len(_missing_columns(searched[i])))
    also = ""
    if len(_missing_columns(searched[closest])) < len(missing):
        also = f" (row {closest + 1} comes closest and lacks {', '.join(_missing_columns(searched[closest]))})"
    raise MappingError(
        f"{table.label} lacks the column(s) {', '.join(missing)} — no row among the first {HEADER_SEARCH_ROWS} names "
        f"all of {', '.join(REQUIRED_COLUMNS)}; row {first + 1}, the first non-empty row, was looked at as the header "
        f"and holds {', '.join(repr(h) for h in header if h) or 'nothing'}{also}. Name the columns in one header row "
        f"(optional: {CLIENT_CERTIFICATE_ID}, {POLY_CLIENT_CERTIFICATE_IDS}; Chinese names such as 监听器ID, 域名, "
        "证书ID work too)"
    )


def _missing_columns(record: Sequence[str]) -> list[str]:
    found = {_canonical(c) for c in record}
    return [c for c in REQUIRED_COLUMNS if c not in found]


def _name_columns(header: list[str], data: list[list[str]], notes: list[str]) -> tuple[list[str], list[int] | None]:
    """The column names, and which record positions they take (None: all of them, in order).

    A column without a header name is dropped when it holds nothing (Excel and CSV exports often end in one) and is
    kept as "column F" (its spreadsheet letter) when it holds something, so no cell is lost."""
    width = max(len(header), max((len(r) for r in data), default=0))
    names = header + [""] * (width - len(header))
    unnamed = [i for i, h in enumerate(names) if not h]
    if not unnamed:
        return names, None
    from openpyxl.utils import get_column_letter

    used = {i for i in unnamed if any(i < len(r) and r[i].strip() for r in data)}
    keep = [i for i in range(width) if names[i] or i in used]
    for i in sorted(used):
        names[i] = f"column {get_column_letter(i + 1)}"
        notes.append(f"{names[i]} has no header name — its cells are kept as {names[i]!r}")
    return [names[i] for i in keep], (None if keep == list(range(width)) else keep)


def _match_columns(header: list[str], label: str) -> tuple[dict[str, str], dict[str, int]]:
    """(canonical column → header name, canonical column → position). Raises MappingError on a doubled column."""
    found: dict[str, list[int]] = defaultdict(list)
    for i, name in enumerate(header):
        canonical = _canonical(name)
        if canonical:
            found[canonical].append(i)
    for canonical, positions in found.items():
        if len(positions) > 1:
            from openpyxl.utils import get_column_letter

            named = ", ".join(f"{header[i]!r} (column {get_column_letter(i + 1)})" for i in positions)
            raise MappingError(f"{label}: columns {named} all mean {canonical} — keep one of them")
    return {c: header[p[0]] for c, p in found.items()}, {c: p[0] for c, p in found.items()}


# --- the rows ----------------------------------------------------------------------------------------------------------


def _row_problems(row: Row, column_of: dict[str, str], formulas: frozenset[str] = frozenset()) -> list[str]:
    n = row.row_number
    out: list[str] = []

    def col(canonical: str) -> str:
        return column_of.get(canonical, canonical)

    def empty(canonical: str) -> str:
        if canonical in formulas:
            return (
                f"row {n}: {col(canonical)} is a formula with no saved value — open and save the file in Excel "
                "(or WPS, LibreOffice), or type the value"
            )
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
            f"row {n}: {col(SCOPE)} is listener but {col(DOMAIN)} is {_show(row.domain)} — a listener row changes the "
            "listener's own certificates: empty the domain, or make the scope domain"
        )
    elif row.scope == SCOPE_LISTENER and row.certificate_id == DEFAULT_CERTIFICATE:
        out.append(f"row {n}: a listener row cannot set {col(CERTIFICATE_ID)} to default — name a certificate")
    if row.proxy_id and not PROXY_ID_RE.fullmatch(row.proxy_id):
        out.append(_not_a(n, col(PROXY_ID), row.proxy_id, "a proxy id (link-…)"))
    if row.scope == SCOPE_LISTENER:
        pass  # no domain: checked above
    elif not row.domain:
        out.append(empty(DOMAIN))
    elif len(row.domain) > 253 or not DOMAIN_RE.fullmatch(row.domain):
        out.append(_not_a(n, col(DOMAIN), row.domain, "a host name (e.g. www.example.com or *.example.com)"))
    if not row.certificate_id:
        out.append(empty(CERTIFICATE_ID))
    elif not _is_certificate_ref(row.certificate_id):
        out.append(_not_a(n, col(CERTIFICATE_ID), row.certificate_id, "a certificate id (cert-… or default)"))
    for optional in (CLIENT_CERTIFICATE_ID, POLY_CLIENT_CERTIFICATE_IDS):
        if optional in formulas:
            out.append(empty(optional))  # sending the row without it would silently drop the client certificate
    if row.client_certificate_id and not _is_certificate_ref(row.client_certificate_id):
        out.append(
            _not_a(n, col(CLIENT_CERTIFICATE_ID), row.client_certificate_id, "a certificate id (cert-… or default)")
        )
    bad_poly = [p for p in row.poly_client_certificate_ids if not CERTIFICATE_ID_RE.fullmatch(p)]
    if bad_poly:
        odd = _odd_character(bad_poly[0])
        out.append(
            f"row {n}: {col(POLY_CLIENT_CERTIFICATE_IDS)} has {_show(bad_poly[0])}, not a certificate id (cert-…)"
            + (f": it contains {odd} — retype it without that character" if odd else " — separate ids with ';'")
        )
    if row.client_certificate_id and row.poly_client_certificate_ids:
        out.append(
            f"row {n}: {col(CLIENT_CERTIFICATE_ID)} and {col(POLY_CLIENT_CERTIFICATE_IDS)} are both set — keep one of them"
        )
    return out


def _not_a(n: int, column: str, value: str, what: str) -> str:
    """`value` in `column` is not `what`; an invisible or look-alike character is named, as it cannot be seen."""
    odd = _odd_character(value)
    if not odd:
        return f"row {n}: {column} {_show(value)} is not {what} — fix it"
    return f"row {n}: {column} {_show(value)} is not {what}: it contains {odd} — retype it without that character"


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


def _is_certificate_ref(value: str) -> bool:
    return value == DEFAULT_CERTIFICATE or CERTIFICATE_ID_RE.fullmatch(value) is not None


def _show(value: str) -> str:
    return repr(value if len(value) <= 60 else value[:57] + "...")


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
