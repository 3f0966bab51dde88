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

Multi-row headers: a header row may have rows below it that belong to it (up to MAX_HEADER_ROWS in all) — a row in
which every filled cell is header-like (no id, no domain, no `default`) and which names a known column, or, in a
workbook, lies under a header cell merged down into it (A1:A2) or holds text under one merged across (C1:D1). Each
column is then named by its lowest filled header cell ("header on rows 1–2"); when that cell is below the first and,
joined with the label above it, names a known column ('证书' over 'ID'), the joined name is used. Merged ranges come
from the sheet's XML (read-only worksheets do not load them), parsed with openpyxl's `range_boundaries`. A header
row is found when it names every required column alone, or, naming one of them, together with its rows below.

Current → new (compare-and-swap): a header with NewCertificateId reads the target from the New* columns and the
expected current state (`Row.expected`) from CertificateId or CurrentCertificateId (required in every row) and
PolyClientCertificateIds / CurrentPolyClientCertificateIds or ClientCertificateId (optional: an empty cell is not
compared; a current list may be the single `default`, as a domain on its listener's client CA reads). A Current* or
New client column without NewCertificateId is refused — a current id is never read as the target — and so is
NewCertificateId without a current certificate column. Without New* columns nothing changes. Rows are duplicates
when listener, domain (case-insensitively), target and expected state are all the same; the same place with another
target or another expected state is a conflict (every such row invalid).

Ids outside the id columns. A cell *looks like certificate ids* when, stripped, every part of it split at
POLY_SEPARATORS is `cert-` and letters or digits (any case): `cert-ca1`, `cert-a;cert-b`. Every part, so that a note
that mentions an id in a sentence ("old: cert-abc") never counts; `default` never counts (it is a common word). A
column batchcert does not read — a header not in COLUMN_ALIASES, or no header name ("column F") — that is not named
by `ignore_columns` is checked, per column:
1. *A column of ids* is refused as a file (MappingError: nothing is sent), naming the column as the file spells it,
   its letter and the names that would make it count: a column rule 2 does not cover with any cell that looks like
   ids (a client-CA column under a name batchcert does not know, whose other cells say `default` or `无`, is still a
   column of ids), or a column rule 2 covers whose every filled cell does. Each cell costs one slice when it does not
   start with `cert-`.
2. *Spilled ids* — a column with no header name, or one right of an id column (CertificateId, ClientCertificateId,
   PolyClientCertificateIds, their Current*/New* forms): each row with an id-like cell there is an invalid row
   ("probably spilled out of the … cell through an unquoted separator"), as the id column's list was cut short.
Between them: rule 1 applies first; but in a CSV, a column that rule 2 covers and whose every id-like cell has a
filled cell on its left (the cell it would have spilled out of) is left to rule 2 — the CSV line
`listener-1,a.example.com,cert-s1,cert-ca1,cert-ca2` under `…,PolyClientCertificateIds,备注` is a row with a spilled
id, not a column of ids. A workbook cell does not spill, so there a column of ids is always refused as a file. An
ignored column passes into the report untouched, and a note says so; `ignore_columns` naming a column batchcert
reads is refused, one naming no column is a note.

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
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchcert.errors import MappingError
from batchcert.model import DEFAULT_CERTIFICATE, SCOPE_DOMAIN, SCOPE_LISTENER, Expected, Mapping, Row

LISTENER_ID, DOMAIN, CERTIFICATE_ID = "ListenerId", "Domain", "CertificateId"
CLIENT_CERTIFICATE_ID, POLY_CLIENT_CERTIFICATE_IDS = "ClientCertificateId", "PolyClientCertificateIds"
#: optional: what a row changes (`domain`, the default, or `listener`: the listener's own certificates, Domain empty)
#: and the listener's proxy (ModifyHTTPSListenerAttribute takes it)
SCOPE, PROXY_ID = "Scope", "ProxyId"
#: current → new (compare-and-swap): with NewCertificateId the New* columns are the target, and CertificateId (or
#: CurrentCertificateId) with the client columns (or CurrentPolyClientCertificateIds) what the place must have now
NEW_CERTIFICATE_ID, NEW_CLIENT_CERTIFICATE_ID = "NewCertificateId", "NewClientCertificateId"
NEW_POLY_CLIENT_CERTIFICATE_IDS = "NewPolyClientCertificateIds"
CURRENT_CERTIFICATE_ID, CURRENT_POLY_CLIENT_CERTIFICATE_IDS = "CurrentCertificateId", "CurrentPolyClientCertificateIds"
COLUMNS = (
    SCOPE,
    PROXY_ID,
    LISTENER_ID,
    DOMAIN,
    CERTIFICATE_ID,
    CLIENT_CERTIFICATE_ID,
    POLY_CLIENT_CERTIFICATE_IDS,
    CURRENT_CERTIFICATE_ID,
    CURRENT_POLY_CLIENT_CERTIFICATE_IDS,
    NEW_CERTIFICATE_ID,
    NEW_CLIENT_CERTIFICATE_ID,
    NEW_POLY_CLIENT_CERTIFICATE_IDS,
)
REQUIRED_COLUMNS = (LISTENER_ID, DOMAIN, CERTIFICATE_ID)
#: columns whose cells are certificate ids: an id-like cell right of one of them, in a column batchcert does not
#: read, may have spilled out of it
ID_COLUMNS = frozenset(
    {
        CERTIFICATE_ID,
        CLIENT_CERTIFICATE_ID,
        POLY_CLIENT_CERTIFICATE_IDS,
        CURRENT_CERTIFICATE_ID,
        CURRENT_POLY_CLIENT_CERTIFICATE_IDS,
        NEW_CERTIFICATE_ID,
        NEW_CLIENT_CERTIFICATE_ID,
        NEW_POLY_CLIENT_CERTIFICATE_IDS,
    }
)
#: a header with one of these (and no NewCertificateId) is refused: a current id is never read as the target
_CAS_ONLY_COLUMNS = (
    CURRENT_CERTIFICATE_ID,
    CURRENT_POLY_CLIENT_CERTIFICATE_IDS,
    NEW_CLIENT_CERTIFICATE_ID,
    NEW_POLY_CLIENT_CERTIFICATE_IDS,
)

#: Header spellings accepted for each column, as `normalize_header` leaves them (NFKC, lower case, no spaces,
#: underscores, hyphens, dots, colons, asterisks or parenthesized remarks). The Chinese names are the ones the GAAP
#: console and common hand-made sheets use. A test checks that every key is its own normal form.
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
    # one client CA
    "clientcertificateid": CLIENT_CERTIFICATE_ID,
    "clientcertid": CLIENT_CERTIFICATE_ID,
    "clientca": CLIENT_CERTIFICATE_ID,
    "clientcaid": CLIENT_CERTIFICATE_ID,
    "clientcacertificateid": CLIENT_CERTIFICATE_ID,
    "clientcacertid": CLIENT_CERTIFICATE_ID,
    "cacertificateid": CLIENT_CERTIFICATE_ID,
    "cacertificate": CLIENT_CERTIFICATE_ID,
    "cacertid": CLIENT_CERTIFICATE_ID,
    "客户端证书id": CLIENT_CERTIFICATE_ID,
    "客户端证书": CLIENT_CERTIFICATE_ID,
    "客户端ca证书id": CLIENT_CERTIFICATE_ID,
    "客户端ca证书": CLIENT_CERTIFICATE_ID,
    "客户端ca": CLIENT_CERTIFICATE_ID,
    "ca证书id": CLIENT_CERTIFICATE_ID,
    "ca证书": CLIENT_CERTIFICATE_ID,
    "双向认证ca证书id": CLIENT_CERTIFICATE_ID,
    "双向认证ca证书": CLIENT_CERTIFICATE_ID,
    "双向认证证书id": CLIENT_CERTIFICATE_ID,
    "双向认证证书": CLIENT_CERTIFICATE_ID,
    # several client CAs in one cell
    "polyclientcertificateids": POLY_CLIENT_CERTIFICATE_IDS,
    "clientcertificateids": POLY_CLIENT_CERTIFICATE_IDS,
    "clientcertids": POLY_CLIENT_CERTIFICATE_IDS,
    "clientcaids": POLY_CLIENT_CERTIFICATE_IDS,
    "clientcas": POLY_CLIENT_CERTIFICATE_IDS,
    "clientcacertificateids": POLY_CLIENT_CERTIFICATE_IDS,
    "cacertificateids": POLY_CLIENT_CERTIFICATE_IDS,
    "cacertids": POLY_CLIENT_CERTIFICATE_IDS,
    "多客户端证书id": POLY_CLIENT_CERTIFICATE_IDS,
    "多客户端证书ids": POLY_CLIENT_CERTIFICATE_IDS,
    "多客户端证书": POLY_CLIENT_CERTIFICATE_IDS,
    "客户端证书ids": POLY_CLIENT_CERTIFICATE_IDS,
    "客户端证书列表": POLY_CLIENT_CERTIFICATE_IDS,
    "客户端ca证书ids": POLY_CLIENT_CERTIFICATE_IDS,
    "客户端ca证书列表": POLY_CLIENT_CERTIFICATE_IDS,
    "ca证书ids": POLY_CLIENT_CERTIFICATE_IDS,
    "ca证书列表": POLY_CLIENT_CERTIFICATE_IDS,
    "双向认证ca证书ids": POLY_CLIENT_CERTIFICATE_IDS,
    "双向认证ca证书列表": POLY_CLIENT_CERTIFICATE_IDS,
    "scope": SCOPE,
    "范围": SCOPE,
    "作用域": SCOPE,
    "proxyid": PROXY_ID,
    "通道id": PROXY_ID,
    "通道": PROXY_ID,
    # current → new
    "currentcertificateid": CURRENT_CERTIFICATE_ID,
    "currentcertid": CURRENT_CERTIFICATE_ID,
    "oldcertificateid": CURRENT_CERTIFICATE_ID,
    "oldcertid": CURRENT_CERTIFICATE_ID,
    "当前证书id": CURRENT_CERTIFICATE_ID,
    "当前证书": CURRENT_CERTIFICATE_ID,
    "原证书id": CURRENT_CERTIFICATE_ID,
    "原证书": CURRENT_CERTIFICATE_ID,
    "旧证书id": CURRENT_CERTIFICATE_ID,
    "旧证书": CURRENT_CERTIFICATE_ID,
    "currentpolyclientcertificateids": CURRENT_POLY_CLIENT_CERTIFICATE_IDS,
    "currentclientcertificateids": CURRENT_POLY_CLIENT_CERTIFICATE_IDS,
    "currentclientcertificateid": CURRENT_POLY_CLIENT_CERTIFICATE_IDS,
    "oldpolyclientcertificateids": CURRENT_POLY_CLIENT_CERTIFICATE_IDS,
    "oldclientcertificateids": CURRENT_POLY_CLIENT_CERTIFICATE_IDS,
    "oldclientcertificateid": CURRENT_POLY_CLIENT_CERTIFICATE_IDS,
    "当前客户端证书id": CURRENT_POLY_CLIENT_CERTIFICATE_IDS,
    "当前客户端证书ids": CURRENT_POLY_CLIENT_CERTIFICATE_IDS,
    "当前客户端证书": CURRENT_POLY_CLIENT_CERTIFICATE_IDS,
    "原客户端证书id": CURRENT_POLY_CLIENT_CERTIFICATE_IDS,
    "原客户端证书ids": CURRENT_POLY_CLIENT_CERTIFICATE_IDS,
    "旧客户端证书id": CURRENT_POLY_CLIENT_CERTIFICATE_IDS,
    "newcertificateid": NEW_CERTIFICATE_ID,
    "newcertid": NEW_CERTIFICATE_ID,
    "newservercertificateid": NEW_CERTIFICATE_ID,
    "targetcertificateid": NEW_CERTIFICATE_ID,
    "targetcertid": NEW_CERTIFICATE_ID,
    "新证书id": NEW_CERTIFICATE_ID,
    "新证书": NEW_CERTIFICATE_ID,
    "新服务器证书id": NEW_CERTIFICATE_ID,
    "目标证书id": NEW_CERTIFICATE_ID,
    "目标证书": NEW_CERTIFICATE_ID,
    "newclientcertificateid": NEW_CLIENT_CERTIFICATE_ID,
    "newclientcertid": NEW_CLIENT_CERTIFICATE_ID,
    "targetclientcertificateid": NEW_CLIENT_CERTIFICATE_ID,
    "新客户端证书id": NEW_CLIENT_CERTIFICATE_ID,
    "新客户端证书": NEW_CLIENT_CERTIFICATE_ID,
    "新客户端ca证书id": NEW_CLIENT_CERTIFICATE_ID,
    "目标客户端证书id": NEW_CLIENT_CERTIFICATE_ID,
    "newpolyclientcertificateids": NEW_POLY_CLIENT_CERTIFICATE_IDS,
    "newclientcertificateids": NEW_POLY_CLIENT_CERTIFICATE_IDS,
    "newclientcertids": NEW_POLY_CLIENT_CERTIFICATE_IDS,
    "newclientcaids": NEW_POLY_CLIENT_CERTIFICATE_IDS,
    "targetpolyclientcertificateids": NEW_POLY_CLIENT_CERTIFICATE_IDS,
    "targetclientcertificateids": NEW_POLY_CLIENT_CERTIFICATE_IDS,
    "新客户端证书ids": NEW_POLY_CLIENT_CERTIFICATE_IDS,
    "新多客户端证书id": NEW_POLY_CLIENT_CERTIFICATE_IDS,
    "新多客户端证书ids": NEW_POLY_CLIENT_CERTIFICATE_IDS,
    "新客户端证书列表": NEW_POLY_CLIENT_CERTIFICATE_IDS,
    "目标客户端证书ids": NEW_POLY_CLIENT_CERTIFICATE_IDS,
    "目标多客户端证书id": NEW_POLY_CLIENT_CERTIFICATE_IDS,
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
#: a header spans at most this many rows (merged cells above sub-headers; README "The mapping")
MAX_HEADER_ROWS = 3
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
_MERGE_CELL = re.compile(
    rb"""<(?:[A-Za-z_][\w.-]*:)?mergeCell\b[^>]*?\bref\s*=\s*["']([A-Za-z]{1,3}\d+(?::[A-Za-z]{1,3}\d+)?)["']"""
)
#: a cell "looks like certificate ids" when each of its separated parts is one (checked only on cells starting so)
_ID_PART = re.compile(r"cert-[0-9a-z]+", re.IGNORECASE)
_ID_START = "cert-"
_SEPARATOR_CHARS = " \t;,|；，、｜"
#: an id of any kind inside a cell: a row holding one is no header row
_ANY_ID = re.compile(r"(?<![0-9a-z])(?:cert|listener|link|lbgroup)-[0-9a-z]", re.IGNORECASE)
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
    #: workbook: merged cell ranges as (min_col, min_row, max_col, max_row), 1-based (openpyxl's range_boundaries)
    merged: list[tuple[int, int, int, int]] = field(default_factory=list)


@dataclass(frozen=True)
class _Layout:
    """Which mapping columns a row's fields come from. Without NewCertificateId: the target is CertificateId,
    ClientCertificateId, PolyClientCertificateIds and there is no expected state. With it (compare-and-swap): the
    target is the New* columns, the expected state CertificateId or CurrentCertificateId, and the client columns."""

    server: str = CERTIFICATE_ID
    client: str = CLIENT_CERTIFICATE_ID
    poly: str = POLY_CLIENT_CERTIFICATE_IDS
    current_server: str | None = None
    current_client: str | None = None
    current_poly: str | None = None


def read_mapping(
    path: Path,
    sheet: str | None = None,
    *,
    encoding: str | None = None,
    include_hidden_rows: bool = False,
    ignore_columns: Iterable[str] = (),
) -> Mapping:
    """Read and validate a mapping. Raises MappingError only for file-level problems (unreadable, empty, malformed,
    missing required column, no data row); row-level problems are returned in `Mapping.problems`.

    `sheet` picks a workbook sheet (default: the only visible one); `encoding` overrides the CSV encoding detection;
    hidden workbook rows become invalid rows unless `include_hidden_rows`; `ignore_columns` (`--ignore-column`) names
    columns batchcert does not read whose certificate-id-like cells pass through deliberately — by header name
    (matched as headers are, `normalize_header`) or by letter (`F`, `column F`)."""
    with _gc_paused():
        return _read_mapping(path, sheet, encoding, include_hidden_rows, tuple(ignore_columns))


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


def _read_mapping(
    path: Path, sheet: str | None, encoding: str | None, include_hidden_rows: bool, ignore_columns: tuple[str, ...]
) -> Mapping:
    table = _read_table(path, sheet, encoding)
    try:
        header_index = _find_header(table)
    except MappingError:
        if table.parse_problems:
            _refuse_malformed_csv(table, None, 0)  # a broken quote can hide the header: say that first
        raise
    last_index, header = _header_rows(table, header_index)
    header_row = last_index + 1  # the data follow it
    if last_index != header_index:
        table.notes.append(f"header on rows {header_index + 1}–{header_row}")
    elif header_row != 1:
        table.notes.append(f"header on row {header_row}")
    data = table.records[last_index + 1 :]
    if table.delimiter:
        _refuse_malformed_csv(table, header_index, len(header), last_index)
    columns, keep, unnamed = _name_columns(header, data, table.notes)
    width = len(columns)
    positions = keep if keep is not None else list(range(width))  # each column's place in the sheet
    column_of, index = _match_columns(columns, table.label, positions)
    layout = _layout_of(column_of, index, positions, table)
    ignored = _ignored_columns(ignore_columns, columns, positions, unnamed, index, table)
    stray = _stray_ids(table, data, header_row, columns, positions, unnamed, index, ignored)
    formulas: dict[int, frozenset[str]] = {}
    if table.has_formulas:
        sheet_positions = {c: positions[i] for c, i in index.items()}  # in the sheet, not in `columns`
        formulas = _formulas_without_value(table, header_row, data, sheet_positions)
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
            extra=tuple((columns[i], record[i]) for i in extra_index),
            scope=cell(SCOPE).lower() or SCOPE_DOMAIN,
            proxy_id=cell(PROXY_ID),
            expected=expected,
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


def _refuse_malformed_csv(table: _Table, header_index: int | None, width: int, last_index: int | None = None) -> None:
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
    """Index of the header record: the first of the first HEADER_SEARCH_ROWS that names every required column — on
    its own, or (when it names one of them) together with the header rows below it (`_header_rows`)."""
    first: int | None = None
    for i, record in enumerate(table.records[:HEADER_SEARCH_ROWS]):
        if not any(c.strip() for c in record):
            continue
        missing = _missing_columns(record)
        if not missing:
            return i
        if len(missing) < len(REQUIRED_COLUMNS):
            last, names = _header_rows(table, i)
            if last > i and not _missing_columns(names):
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
        f"(optional: {CLIENT_CERTIFICATE_ID}, {POLY_CLIENT_CERTIFICATE_IDS}; current → new: {NEW_CERTIFICATE_ID} "
        f"beside {CERTIFICATE_ID}; Chinese names such as 监听器ID, 域名, 证书ID, 新证书ID work too)"
    )


def _missing_columns(record: Sequence[str]) -> list[str]:
    found = {_canonical(c) for c in record}
    if NEW_CERTIFICATE_ID in found or CURRENT_CERTIFICATE_ID in found:
        found.add(CERTIFICATE_ID)  # a current → new header names the server certificate so (`_layout_of` checks it)
    return [c for c in REQUIRED_COLUMNS if c not in found]


def _header_like(text: str) -> bool:
    """A cell that can be part of a header row: a known column name, or text holding no id, no domain, no `default`."""
    if _canonical(text) is not None:
        return True
    return _ANY_ID.search(text) is None and text.lower() != DEFAULT_CERTIFICATE and DOMAIN_RE.fullmatch(text) is None


def _header_rows(table: _Table, first: int) -> tuple[int, list[str]]:
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
        names = any(_canonical(c) is not None for _, c in filled)
        refines = any(lo <= i <= hi for i, _ in filled for lo, hi in across)
        if not (names or refines or last + 1 <= merged_down):
            break
        last += 1
    if last == first:
        return first, single
    combined = _combine_header(table, first, last)
    if _missing_columns(combined) and not _missing_columns(single):
        return first, single
    return last, combined


def _combine_header(table: _Table, first: int, last: int) -> list[str]:
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
                (c for c in (f"{parent} {name}", f"{name} {parent}") if _canonical(c) is not None and parent != name),
                name,
            )
        names.append(name)
    return names


def _merged_value(table: _Table, index: int, column: int) -> str:
    """The value of the merged range that covers record `index`, position `column` (its top-left cell), or ""."""
    for min_col, min_row, max_col, max_row in table.merged:
        if min_col - 1 <= column <= max_col - 1 and min_row - 1 <= index <= max_row - 1:
            top = table.records[min_row - 1] if min_row - 1 < len(table.records) else []
            return top[min_col - 1].strip() if min_col - 1 < len(top) else ""
    return ""


def _letter(position: int) -> str:
    """A 0-based column position as its spreadsheet letter (0 → A, 26 → AA)."""
    n, out = position + 1, ""
    while n:
        n, r = divmod(n - 1, 26)
        out = chr(ord("A") + r) + out
    return out


def _position_of_letter(letters: str) -> int:
    """A spreadsheet letter as a 0-based column position (A → 0)."""
    n = 0
    for ch in letters.upper():
        n = n * 26 + ord(ch) - ord("A") + 1
    return n - 1


def _name_columns(
    header: list[str], data: list[list[str]], notes: list[str]
) -> tuple[list[str], list[int] | None, set[int]]:
    """The column names, which record positions they take (None: all of them, in order), and which of them have no
    header name.

    A column without a header name is dropped when it holds nothing (Excel and CSV exports often end in one) and is
    kept as "column F" (its spreadsheet letter) when it holds something, so no cell is lost."""
    width = max(len(header), max((len(r) for r in data), default=0))
    names = header + [""] * (width - len(header))
    unnamed = [i for i, h in enumerate(names) if not h]
    if not unnamed:
        return names, None, set()
    used = {i for i in unnamed if any(i < len(r) and r[i].strip() for r in data)}
    keep = [i for i in range(width) if names[i] or i in used]
    for i in sorted(used):
        names[i] = f"column {_letter(i)}"
        notes.append(f"{names[i]} has no header name — its cells are kept as {names[i]!r}")
    return (
        [names[i] for i in keep],
        (None if keep == list(range(width)) else keep),
        {k for k, i in enumerate(keep) if i in used},
    )


def _match_columns(
    header: list[str], label: str, places: Sequence[int] | None = None
) -> tuple[dict[str, str], dict[str, int]]:
    """(canonical column → header name, canonical column → position). Raises MappingError on a doubled column.
    `places` are the columns' positions in the sheet (for their letters; default: in order)."""
    found: dict[str, list[int]] = defaultdict(list)
    for i, name in enumerate(header):
        canonical = _canonical(name)
        if canonical:
            found[canonical].append(i)
    for canonical, positions in found.items():
        if len(positions) > 1:
            named = ", ".join(f"{header[i]!r} (column {_letter(places[i] if places else i)})" for i in positions)
            raise MappingError(f"{label}: columns {named} all mean {canonical} — keep one of them")
    return {c: header[p[0]] for c, p in found.items()}, {c: p[0] for c, p in found.items()}


def _layout_of(column_of: dict[str, str], index: dict[str, int], places: Sequence[int], table: _Table) -> _Layout:
    """Where a row's target and expected state come from (`_Layout`). Raises MappingError for a current → new
    header that cannot be read safely: a current or new client column without NewCertificateId (a current id is
    never read as the target), NewCertificateId without a current certificate column, or two columns for one
    current value."""

    def where(canonical: str) -> str:
        return f"{column_of[canonical]!r} (column {_letter(places[index[canonical]])})"

    label = table.label
    if NEW_CERTIFICATE_ID not in index:
        lone = [c for c in _CAS_ONLY_COLUMNS if c in index]
        if lone:
            what = "are current → new columns" if len(lone) > 1 else "is a current → new column"
            raise MappingError(
                f"{label}: {', '.join(where(c) for c in lone)} {what}, "
                f"and a current → new mapping needs a {NEW_CERTIFICATE_ID} column (新证书ID) with the certificate "
                f"each row installs — add {NEW_CERTIFICATE_ID} (a current certificate is never read as the one to "
                f"install), or remove {'those columns' if len(lone) > 1 else 'that column'}"
            )
        return _Layout()
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
    layout = _Layout(
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


#: what a column of certificate ids is called to be read (the messages about unread ids say it)
_ALIASES_FOR_IDS = (
    f"client CAs: {POLY_CLIENT_CERTIFICATE_IDS}, {CLIENT_CERTIFICATE_ID}, 客户端证书ID, 多客户端证书ID, 客户端CA证书ID; "
    f"the new ids of a current → new mapping: {NEW_CERTIFICATE_ID}, {NEW_POLY_CLIENT_CERTIFICATE_IDS}, "
    f"{NEW_CLIENT_CERTIFICATE_ID}, 新证书ID, 新客户端证书IDs"
)
_SHORT_ALIASES_FOR_IDS = (
    f"{POLY_CLIENT_CERTIFICATE_IDS}, 客户端证书ID, {NEW_CERTIFICATE_ID}, {NEW_POLY_CLIENT_CERTIFICATE_IDS}, …"
)
_NO_CLIENTS: tuple[str, tuple[str, ...]] = ("", ())
_IGNORE_BY_LETTER = re.compile(r"(?:column)?([a-z]{1,3})")


def _describe(columns: list[str], places: Sequence[int], unnamed: set[int], i: int) -> str:
    """A column as the file spells it, with its letter: "'备注' (column E)", "the column with no header name
    (column F)"."""
    if i in unnamed:
        return f"the column with no header name (column {_letter(places[i])})"
    return f"{columns[i]!r} (column {_letter(places[i])})"


def _ignore_option(columns: list[str], places: Sequence[int], unnamed: set[int], i: int) -> str:
    return f"--ignore-column {_letter(places[i]) if i in unnamed else shlex.quote(columns[i])}"


def _ignored_columns(
    names: tuple[str, ...],
    columns: list[str],
    places: Sequence[int],
    unnamed: set[int],
    index: dict[str, int],
    table: _Table,
) -> set[int]:
    """The columns `--ignore-column` names: by header name (normalized as headers are), else by letter (`F`,
    `column F`). Naming a column batchcert reads is refused; a name that matches nothing is a note."""
    known = {i: c for c, i in index.items()}
    ignored: set[int] = set()
    for name in names:
        wanted = normalize_header(name)
        hits = [i for i, c in enumerate(columns) if wanted and i not in unnamed and normalize_header(c) == wanted]
        by_letter = _IGNORE_BY_LETTER.fullmatch(wanted)
        if not hits and by_letter:
            place = _position_of_letter(by_letter.group(1))
            hits = [i for i, p in enumerate(places) if p == place]
        if not hits:
            table.notes.append(f"--ignore-column {name!r} matches no column — nothing is ignored by it")
            continue
        for i in hits:
            if i in known:
                raise MappingError(
                    f"{table.label}: --ignore-column {name!r} names {_describe(columns, places, unnamed, i)}, which "
                    f"batchcert reads as {known[i]} — only a column batchcert does not read can be ignored"
                )
            if i not in ignored:
                ignored.add(i)
                table.notes.append(
                    f"{_describe(columns, places, unnamed, i)} is ignored deliberately (--ignore-column {name!r}): "
                    "its cells pass into the report as they are and are never sent"
                )
    return ignored


def _id_like(value: str) -> bool:
    """A cell that looks like certificate ids: `cert-…`, or several of them joined by POLY_SEPARATORS — every part
    an id, so a sentence that mentions one ("old: cert-abc") is not. The first check is a slice, so a column of
    notes costs one comparison per cell."""
    text = value.strip().strip(_SEPARATOR_CHARS)
    if text[:5].lower() != _ID_START:
        return False
    return all(_ID_PART.fullmatch(part) for part in POLY_SEPARATORS.split(text) if part)


def _stray_ids(
    table: _Table,
    data: list[list[str]],
    header_row: int,
    columns: list[str],
    places: Sequence[int],
    unnamed: set[int],
    index: dict[str, int],
    ignored: set[int],
) -> dict[int, list[str]]:
    """Certificate ids in columns batchcert does not read (module docstring, "Ids outside the id columns"). Raises
    MappingError for a column of them (rule 1); returns, by data offset, the problems of rows with ids that
    probably spilled out of the cell to their left (rule 2)."""
    known = {i: c for c, i in index.items()}
    at_place = {p: i for i, p in enumerate(places)}
    refused: list[str] = []
    options: list[str] = []
    stray: dict[int, list[str]] = defaultdict(list)
    for i in range(len(columns)):
        if i in known or i in ignored:
            continue
        place = places[i]
        left = at_place.get(place - 1)
        prone = i in unnamed or (left is not None and known.get(left) in ID_COLUMNS)
        found: list[int] = []  # offsets of the id-like cells
        every = True  # every filled cell is id-like
        spilled = True  # every id-like cell has a filled cell on its left (a CSV's unquoted separator)
        for offset, record in enumerate(data):
            value = record[place] if place < len(record) else ""
            if not value or value.isspace():
                continue
            if _id_like(value):
                found.append(offset)
                spilled = spilled and place > 0 and bool(record[place - 1].strip())
            else:
                every = False
        if not found:
            continue
        if (every or not prone) and not (table.delimiter and prone and spilled):
            first = data[found[0]][place].strip()
            more = f" and {len(found) - 1} more row(s)" if len(found) > 1 else ""
            refused.append(
                f"{_describe(columns, places, unnamed, i)} holds certificate ids ({_show(first)} in row "
                f"{header_row + found[0] + 1}{more})"
            )
            options.append(_ignore_option(columns, places, unnamed, i))
            continue
        if not prone:
            continue
        where = _describe(columns, places, unnamed, i)
        beside = columns[left] if left is not None else ""
        for offset in found:
            record = data[offset]
            n = header_row + offset + 1
            value = _show(record[place].strip())
            if place > 0 and record[place - 1].strip():
                stray[offset].append(
                    f"row {n}: {where} holds {value}, certificate id(s) in a column batchcert does not read — they "
                    f"probably spilled out of the {beside!r} cell through an unquoted separator (quote that cell, or "
                    "separate ids with ';'); not sent, as its ids would be cut short. If the column is one of its "
                    f"own, name it ({_SHORT_ALIASES_FOR_IDS}) or pass {_ignore_option(columns, places, unnamed, i)}"
                )
            else:
                stray[offset].append(
                    f"row {n}: {where} holds {value}, certificate id(s) in a column batchcert does not read — move "
                    f"them into the id column they belong to ({_SHORT_ALIASES_FOR_IDS}), or pass "
                    f"{_ignore_option(columns, places, unnamed, i)} if the column is a note"
                )
    if refused:
        them = "that column" if len(refused) == 1 else "those columns"
        raise MappingError(
            f"{table.label}: {'; '.join(refused)} — batchcert does not read {them}, so the ids would be silently "
            f"left out, and nothing is sent. Name the column for what it holds ({_ALIASES_FOR_IDS}), or pass "
            f"{' '.join(options)} to keep it as a note"
        )
    return stray


# --- the rows ----------------------------------------------------------------------------------------------------------


def _row_problems(
    row: Row,
    column_of: dict[str, str],
    formulas: frozenset[str] = frozenset(),
    layout: _Layout | None = None,
    clients_now: tuple[str, tuple[str, ...]] = ("", ()),
) -> list[str]:
    """Why `row` cannot be sent ([] when it can). `layout` says which columns the row's values came from (their names
    are in the messages); `clients_now` are a compare-and-swap row's current client cell and client-list ids."""
    n = row.row_number
    out: list[str] = []
    layout = layout or _Layout()
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
            f"row {n}: {col(SCOPE)} is listener but {col(DOMAIN)} is {_show(row.domain)} — a listener row changes the "
            "listener's own certificates: empty the domain, or make the scope domain"
        )
    elif row.scope == SCOPE_LISTENER and row.certificate_id == DEFAULT_CERTIFICATE:
        out.append(f"row {n}: a listener row cannot set {col(server)} to default — name a certificate")
    if row.proxy_id and not PROXY_ID_RE.fullmatch(row.proxy_id):
        out.append(_not_a(n, col(PROXY_ID), row.proxy_id, "a proxy id (link-…)"))
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
    layout: _Layout,
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
    return f"row {n}: {column} has {_show(value)}, not a certificate id (cert-…)" + (
        f": it contains {odd} — retype it without that character" if odd else " — separate ids with ';'"
    )


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
