"""Certificate ids in the columns batchcert does not read, and `--ignore-column` (`read_mapping`'s `ignore_columns`).

A cell *looks like certificate ids* when, stripped, every part of it split at POLY_SEPARATORS is `cert-` and letters
or digits (any case): `cert-ca1`, `cert-a;cert-b`. Every part, so that a note that mentions an id in a sentence
("old: cert-abc") never counts; `default` never counts (it is a common word). A column batchcert does not read — a
header not in COLUMN_ALIASES, or no header name ("column F") — that is not named by `ignore_columns` is checked, per
column:
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
"""

from __future__ import annotations

import re
import shlex
from collections import defaultdict

from batchcert.errors import MappingError
from batchcert.mapping.cells import POLY_SEPARATORS, show
from batchcert.mapping.columns import (
    CLIENT_CERTIFICATE_ID,
    ID_COLUMNS,
    NEW_CERTIFICATE_ID,
    NEW_CLIENT_CERTIFICATE_ID,
    NEW_POLY_CLIENT_CERTIFICATE_IDS,
    POLY_CLIENT_CERTIFICATE_IDS,
    letter,
    normalize_header,
    position_of_letter,
)
from batchcert.mapping.header import ColumnMatch, Columns
from batchcert.mapping.table import Table

#: a cell "looks like certificate ids" when each of its separated parts is one (checked only on cells starting so)
_ID_PART = re.compile(r"cert-[0-9a-z]+", re.IGNORECASE)
_ID_START = "cert-"
_SEPARATOR_CHARS = " \t;,|；，、｜"
#: what a column of certificate ids is called to be read (the messages about unread ids say it)
_ALIASES_FOR_IDS = (
    f"client CAs: {POLY_CLIENT_CERTIFICATE_IDS}, {CLIENT_CERTIFICATE_ID}, 客户端证书ID, 多客户端证书ID, 客户端CA证书ID; "
    f"the new ids of a current → new mapping: {NEW_CERTIFICATE_ID}, {NEW_POLY_CLIENT_CERTIFICATE_IDS}, "
    f"{NEW_CLIENT_CERTIFICATE_ID}, 新证书ID, 新客户端证书IDs"
)
_SHORT_ALIASES_FOR_IDS = (
    f"{POLY_CLIENT_CERTIFICATE_IDS}, 客户端证书ID, {NEW_CERTIFICATE_ID}, {NEW_POLY_CLIENT_CERTIFICATE_IDS}, …"
)
_IGNORE_BY_LETTER = re.compile(r"(?:column)?([a-z]{1,3})")


def _ignore_option(columns: Columns, i: int) -> str:
    """The `--ignore-column` option that names column `i`: its letter when it has no header name, else its name."""
    return f"--ignore-column {letter(columns.places[i]) if i in columns.unnamed else shlex.quote(columns.names[i])}"


def ignored_columns(names: tuple[str, ...], columns: Columns, match: ColumnMatch, table: Table) -> set[int]:
    """The columns `--ignore-column` names: by header name (normalized as headers are), else by letter (`F`,
    `column F`). Naming a column batchcert reads is refused; a name that matches nothing is a note."""
    known = {i: c for c, i in match.index.items()}
    unnamed = columns.unnamed
    ignored: set[int] = set()
    for name in names:
        wanted = normalize_header(name)
        hits = [i for i, c in enumerate(columns.names) if wanted and i not in unnamed and normalize_header(c) == wanted]
        by_letter = _IGNORE_BY_LETTER.fullmatch(wanted)
        if not hits and by_letter:
            place = position_of_letter(by_letter.group(1))
            hits = [i for i, p in enumerate(columns.places) if p == place]
        if not hits:
            table.notes.append(f"--ignore-column {name!r} matches no column — nothing is ignored by it")
            continue
        for i in hits:
            if i in known:
                raise MappingError(
                    f"{table.label}: --ignore-column {name!r} names {columns.describe(i)}, which "
                    f"batchcert reads as {known[i]} — only a column batchcert does not read can be ignored"
                )
            if i not in ignored:
                ignored.add(i)
                table.notes.append(
                    f"{columns.describe(i)} is ignored deliberately (--ignore-column {name!r}): "
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


def stray_ids(
    table: Table,
    data: list[list[str]],
    header_row: int,
    columns: Columns,
    match: ColumnMatch,
    ignored: set[int],
) -> dict[int, list[str]]:
    """Certificate ids in columns batchcert does not read (the module docstring's rules). `data` are the records
    below the header, whose last row is `header_row`. Raises MappingError for a column of them (rule 1); returns, by
    data offset, the problems of rows with ids that probably spilled out of the cell to their left (rule 2)."""
    known = {i: c for c, i in match.index.items()}
    places = columns.places
    at_place = {p: i for i, p in enumerate(places)}
    refused: list[str] = []
    options: list[str] = []
    stray: dict[int, list[str]] = defaultdict(list)
    for i in range(len(columns.names)):
        if i in known or i in ignored:
            continue
        place = places[i]
        left = at_place.get(place - 1)
        prone = i in columns.unnamed or (left is not None and known.get(left) in ID_COLUMNS)
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
                f"{columns.describe(i)} holds certificate ids ({show(first)} in row {header_row + found[0] + 1}{more})"
            )
            options.append(_ignore_option(columns, i))
            continue
        if not prone:
            continue
        where = columns.describe(i)
        beside = columns.names[left] if left is not None else ""
        for offset in found:
            record = data[offset]
            n = header_row + offset + 1
            value = show(record[place].strip())
            if place > 0 and record[place - 1].strip():
                stray[offset].append(
                    f"row {n}: {where} holds {value}, certificate id(s) in a column batchcert does not read — they "
                    f"probably spilled out of the {beside!r} cell through an unquoted separator (quote that cell, or "
                    "separate ids with ';'); not sent, as its ids would be cut short. If the column is one of its "
                    f"own, name it ({_SHORT_ALIASES_FOR_IDS}) or pass {_ignore_option(columns, i)}"
                )
            else:
                stray[offset].append(
                    f"row {n}: {where} holds {value}, certificate id(s) in a column batchcert does not read — move "
                    f"them into the id column they belong to ({_SHORT_ALIASES_FOR_IDS}), or pass "
                    f"{_ignore_option(columns, i)} if the column is a note"
                )
    if refused:
        them = "that column" if len(refused) == 1 else "those columns"
        raise MappingError(
            f"{table.label}: {'; '.join(refused)} — batchcert does not read {them}, so the ids would be silently "
            f"left out, and nothing is sent. Name the column for what it holds ({_ALIASES_FOR_IDS}), or pass "
            f"{' '.join(options)} to keep it as a note"
        )
    return stray
