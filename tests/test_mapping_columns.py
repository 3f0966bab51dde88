"""Mapping columns (issue 21, points 1–4): no column of certificate ids is silently ignored, ids that spilled out of
their cell make the row invalid, current → new (compare-and-swap) columns, widened aliases and merged two-level
headers. Files are built as Excel, WPS and LibreOffice write them: `csv` for CSV exports, openpyxl for workbooks."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import openpyxl
import pytest

from batchcert.errors import MappingError
from batchcert.mapping import COLUMN_ALIASES, normalize_header, read_mapping
from batchcert.model import Expected, Mapping


def csv_text(rows: list[list[str]], delimiter: str = ",") -> str:
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue()


def write_csv(tmp_path: Path, rows: list[list[str]], name: str = "m.csv", encoding: str = "utf-8-sig") -> Path:
    path = tmp_path / name
    path.write_bytes(csv_text(rows).encode(encoding))
    return path


def write_text(tmp_path: Path, text: str, name: str = "m.csv") -> Path:
    """A CSV written by hand (an unquoted separator stays unquoted)."""
    path = tmp_path / name
    path.write_bytes(text.encode())
    return path


def write_book(tmp_path: Path, rows: list[list[object]], merges: tuple[str, ...] = (), name: str = "m.xlsx") -> Path:
    book = openpyxl.Workbook()
    ws = book.active
    ws.title = "Sheet1"
    for row in rows:
        ws.append(row)
    for ref in merges:
        ws.merge_cells(ref)
    path = tmp_path / name
    book.save(path)
    return path


def targets(mapping: Mapping) -> list[tuple[int, str, str, tuple[str, ...], Expected | None]]:
    return [
        (r.row_number, r.certificate_id, r.client_certificate_id, r.poly_client_certificate_ids, r.expected)
        for r in mapping.rows
    ]


# --- 1. no silent column ------------------------------------------------------------------------------------------


def test_unknown_chinese_header_holding_ids_refuses_the_file(tmp_path: Path) -> None:
    """A column of client CA ids under a header batchcert does not know is refused as a file, naming the column as
    written, its letter, and the names that would make it count."""
    rows = [
        ["监听器ID", "域名", "证书ID", "备注", "双向认证根证书"],
        ["listener-aaaa0001", "a.example.com", "cert-s1", "张三", "cert-ca1；cert-ca2"],
        ["listener-aaaa0001", "b.example.com", "cert-s1", "", ""],
        ["listener-aaaa0001", "c.example.com", "cert-s1", "李四", "cert-ca3"],
    ]
    with pytest.raises(MappingError) as e:
        read_mapping(write_csv(tmp_path, rows, encoding="gb18030"))
    message = str(e.value)
    assert (
        "'双向认证根证书' (column E) holds certificate ids ('cert-ca1；cert-ca2' in row 2 and 1 more row(s))" in message
    )
    for alias in ("ClientCertificateId", "PolyClientCertificateIds", "客户端证书ID", "NewCertificateId", "新证书ID"):
        assert alias in message
    assert "--ignore-column '双向认证根证书'" in message and "nothing is sent" in message


def test_unknown_english_header_in_a_workbook_refuses_the_file(tmp_path: Path) -> None:
    """In a workbook a column of ids is refused even right of CertificateId (a workbook cell does not spill)."""
    rows: list[list[object]] = [
        ["ListenerId", "Domain", "CertificateId", "Client Roots", "Owner"],
        ["listener-aaaa0001", "a.example.com", "cert-s1", "cert-ca1;cert-ca2", "ops"],
        ["listener-aaaa0001", "b.example.com", "cert-s1", "cert-ca1", "ops"],
    ]
    with pytest.raises(MappingError, match=r"'Client Roots' \(column D\) holds certificate ids") as e:
        read_mapping(write_book(tmp_path, rows))
    assert "in row 2 and 1 more row(s)" in str(e.value) and "--ignore-column 'Client Roots'" in str(e.value)


def test_unnamed_column_of_ids_refuses_the_file(tmp_path: Path) -> None:
    """A column with no header name (formerly kept as 'column F', its ids never sent) is refused, by its letter."""
    rows: list[list[object]] = [
        ["ListenerId", "Domain", "CertificateId", "Owner", None, None],
        ["listener-aaaa0001", "a.example.com", "cert-s1", "ops", None, "cert-ca1"],
        ["listener-aaaa0001", "b.example.com", "cert-s1", "ops", None, "cert-ca2"],
    ]
    with pytest.raises(MappingError) as e:
        read_mapping(write_book(tmp_path, rows))
    assert "the column with no header name (column F) holds certificate ids ('cert-ca1' in row 2" in str(e.value)
    assert "--ignore-column F" in str(e.value)


@pytest.mark.parametrize("name", ["client_roots", "CLIENT ROOTS", "Client Roots（备注）", "D", "column D", "d"])
def test_ignore_column_passes_it_through_with_a_note(tmp_path: Path, name: str) -> None:
    """`ignore_columns` names the column as headers are matched, or by letter: its cells pass through as an extra
    column and a note says it was ignored deliberately."""
    rows: list[list[object]] = [
        ["ListenerId", "Domain", "CertificateId", "Client Roots"],
        ["listener-aaaa0001", "a.example.com", "cert-s1", "cert-ca1;cert-ca2"],
    ]
    mapping = read_mapping(write_book(tmp_path, rows), ignore_columns=[name])
    assert mapping.problems == {}
    row = mapping.rows[0]
    assert row.extra == (("Client Roots", "cert-ca1;cert-ca2"),)
    assert row.client_certificate_id == "" and row.poly_client_certificate_ids == ()
    assert any(
        n.startswith("'Client Roots' (column D) is ignored deliberately (--ignore-column") for n in mapping.notes
    )


def test_ignore_column_cannot_name_a_column_batchcert_reads(tmp_path: Path) -> None:
    """Ignoring a column batchcert reads is refused; a name that matches nothing is only a note."""
    path = write_csv(tmp_path, [["ListenerId", "Domain", "CertificateId"], ["listener-a1", "a.example.com", "cert-1"]])
    with pytest.raises(MappingError, match=r"--ignore-column 'C' names 'CertificateId' \(column C\), which"):
        read_mapping(path, ignore_columns=["C"])
    mapping = read_mapping(path, ignore_columns=["Remarks"])
    assert "--ignore-column 'Remarks' matches no column — nothing is ignored by it" in mapping.notes


def test_notes_that_mention_an_id_are_not_ids(tmp_path: Path) -> None:
    """A free-text column that mentions a certificate id inside a sentence is neither a column of ids nor a spill,
    even right of an id column; `default` alone is no id either."""
    rows = [
        ["ListenerId", "Domain", "CertificateId", "PolyClientCertificateIds", "备注", "Other"],
        ["listener-a1", "a.example.com", "cert-s1", "cert-ca1", "replaces cert-old1", "cert-old1 expired"],
        ["listener-a1", "b.example.com", "cert-s1", "cert-ca1", "旧证书 cert-old2，已过期", "default"],
    ]
    mapping = read_mapping(write_csv(tmp_path, rows))
    assert mapping.problems == {}
    assert dict(mapping.rows[0].extra) == {"备注": "replaces cert-old1", "Other": "cert-old1 expired"}


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("客户端证书", "ClientCertificateId"),
        ("客户端CA证书", "ClientCertificateId"),
        ("客户端CA证书ID", "ClientCertificateId"),
        ("CA证书ID", "ClientCertificateId"),
        ("CA证书", "ClientCertificateId"),
        ("双向认证CA证书", "ClientCertificateId"),
        ("双向认证证书", "ClientCertificateId"),
        ("Client CA", "ClientCertificateId"),
        ("ClientCA", "ClientCertificateId"),
        ("ClientCaId", "ClientCertificateId"),
        ("CA Certificate Id", "ClientCertificateId"),
        ("Client CA Ids", "PolyClientCertificateIds"),
        ("ClientCaIds", "PolyClientCertificateIds"),
        ("客户端证书列表", "PolyClientCertificateIds"),
        ("NewCertificateId", "NewCertificateId"),
        ("TargetCertificateId", "NewCertificateId"),
        ("NewCertId", "NewCertificateId"),
        ("新证书ID", "NewCertificateId"),
        ("新证书", "NewCertificateId"),
        ("目标证书ID", "NewCertificateId"),
        ("目标证书", "NewCertificateId"),
        ("NewClientCertificateId", "NewClientCertificateId"),
        ("TargetClientCertificateId", "NewClientCertificateId"),
        ("新客户端证书ID", "NewClientCertificateId"),
        ("目标客户端证书ID", "NewClientCertificateId"),
        ("NewPolyClientCertificateIds", "NewPolyClientCertificateIds"),
        ("NewClientCertificateIds", "NewPolyClientCertificateIds"),
        ("TargetPolyClientCertificateIds", "NewPolyClientCertificateIds"),
        ("TargetClientCertificateIds", "NewPolyClientCertificateIds"),
        ("新客户端证书IDs", "NewPolyClientCertificateIds"),
        ("新多客户端证书ID", "NewPolyClientCertificateIds"),
        ("目标客户端证书IDs", "NewPolyClientCertificateIds"),
        ("CurrentCertificateId", "CurrentCertificateId"),
        ("OldCertificateId", "CurrentCertificateId"),
        ("当前证书ID", "CurrentCertificateId"),
        ("原证书ID", "CurrentCertificateId"),
        ("旧证书ID", "CurrentCertificateId"),
        ("CurrentPolyClientCertificateIds", "CurrentPolyClientCertificateIds"),
        ("CurrentClientCertificateIds", "CurrentPolyClientCertificateIds"),
        ("OldClientCertificateIds", "CurrentPolyClientCertificateIds"),
        ("当前客户端证书ID", "CurrentPolyClientCertificateIds"),
        ("原客户端证书ID", "CurrentPolyClientCertificateIds"),
        # the ones that were there keep their meaning
        ("客户端证书ID", "ClientCertificateId"),
        ("多客户端证书ID", "PolyClientCertificateIds"),
        ("证书", "CertificateId"),
    ],
)
def test_widened_aliases(spelling: str, canonical: str) -> None:
    assert COLUMN_ALIASES[normalize_header(spelling)] == canonical


def test_alias_keys_are_their_own_normal_form() -> None:
    """Every key is spelled as `normalize_header` leaves a header, so each can match (and none shadows another)."""
    assert [k for k in COLUMN_ALIASES if normalize_header(k) != k] == []


def test_client_ca_alias_in_a_file_is_read(tmp_path: Path) -> None:
    rows = [["监听器ID", "域名", "证书ID", "客户端CA证书"], ["listener-a1", "a.example.com", "cert-s1", "cert-ca1"]]
    mapping = read_mapping(write_csv(tmp_path, rows))
    assert mapping.rows[0].client_certificate_id == "cert-ca1" and mapping.rows[0].extra == ()


# --- 1. merged two-level headers -----------------------------------------------------------------------------------

TWO_LEVEL: list[list[object]] = [
    ["监听器ID", "域名", "证书", None],
    [None, None, "服务器证书ID", "客户端CA证书ID"],
    ["listener-aaaa0001", "a.example.com", "cert-s1", "cert-ca1"],
    ["listener-aaaa0001", "b.example.com", "cert-s2", ""],
]


def test_merged_two_level_header_in_a_workbook(tmp_path: Path) -> None:
    """Row 1 with A1:A2 and B1:B2 merged down and '证书' merged across C1:D1, row 2 naming C and D: each column is
    named by its lowest header cell, data start on row 3, and column D's client CAs are read (no longer
    'column D', silently ignored)."""
    mapping = read_mapping(write_book(tmp_path, TWO_LEVEL, merges=("A1:A2", "B1:B2", "C1:D1")))
    assert mapping.columns == ("监听器ID", "域名", "服务器证书ID", "客户端CA证书ID")
    assert "header on rows 1–2" in mapping.notes and mapping.header_row == 2
    assert targets(mapping) == [(3, "cert-s1", "cert-ca1", (), None), (4, "cert-s2", "", (), None)]
    assert mapping.problems == {}


def test_merged_header_parts_join_into_a_name(tmp_path: Path) -> None:
    """A sub-header cell that is no name alone is joined with the merged label above it ('证书' + 'ID', '证书' +
    '客户端'); a first row that lacks a required name alone is found with the row below it."""
    rows: list[list[object]] = [
        ["监听器", "域名", "证书", None],
        [None, None, "ID", "客户端"],
        ["listener-aaaa0001", "a.example.com", "cert-s1", "cert-ca1"],
    ]
    mapping = read_mapping(write_book(tmp_path, rows, merges=("A1:A2", "B1:B2", "C1:D1")))
    assert mapping.column_of["CertificateId"] == "证书 ID" and mapping.column_of["ClientCertificateId"] == "客户端 证书"
    assert targets(mapping) == [(3, "cert-s1", "cert-ca1", (), None)]
    only_below: list[list[object]] = [
        ["监听器", "域名", "证书信息", None],
        [None, None, "服务器证书ID", "客户端证书ID"],
        rows[2],
    ]
    mapping = read_mapping(write_book(tmp_path, only_below, merges=("A1:A2", "B1:B2", "C1:D1"), name="m2.xlsx"))
    assert mapping.columns == ("监听器", "域名", "服务器证书ID", "客户端证书ID")
    assert targets(mapping) == [(3, "cert-s1", "cert-ca1", (), None)]


def test_two_level_header_in_a_csv_export(tmp_path: Path) -> None:
    """The same sheet saved as CSV (merged cells become empty ones): the row below the header holds only header
    names, so it is part of the header; row numbers stay the spreadsheet's."""
    text = "监听器ID,域名,证书,\r\n,,服务器证书ID,客户端CA证书ID\r\nlistener-aaaa0001,a.example.com,cert-s1,bad\r\n"
    mapping = read_mapping(write_text(tmp_path, text))
    assert "header on rows 1–2" in mapping.notes
    assert mapping.problems[3] == "row 3: 客户端CA证书ID 'bad' is not a certificate id (cert-… or default) — fix it"


def test_a_title_row_stays_a_title_row(tmp_path: Path) -> None:
    """A merged title above the header is still skipped ('header on row 2'), not read as a header row."""
    rows: list[list[object]] = [
        ["证书更换清单", None, None, None],
        ["ListenerId", "Domain", "CertificateId", "Owner"],
        ["listener-aaaa0001", "a.example.com", "cert-s1", "证书组"],
    ]
    mapping = read_mapping(write_book(tmp_path, rows, merges=("A1:D1",)))
    assert "header on row 2" in mapping.notes and mapping.columns == tuple(str(c) for c in rows[1])
    assert [r.row_number for r in mapping.rows] == [3]


# --- 2. no spilled values ------------------------------------------------------------------------------------------


def test_ids_spilled_into_a_named_note_column_make_the_row_invalid(tmp_path: Path) -> None:
    """`cert-ca1,cert-ca2` unquoted under PolyClientCertificateIds: cert-ca2 lands in 备注. The row is invalid (never
    sent as the shorter list), the message names the row, the column and its letter; other rows are fine."""
    text = (
        "ListenerId,Domain,CertificateId,PolyClientCertificateIds,备注\n"
        "listener-aaaa0001,a.example.com,cert-s1,cert-ca1,cert-ca2\n"
        "listener-aaaa0001,b.example.com,cert-s1,cert-ca1,张三\n"
    )
    mapping = read_mapping(write_text(tmp_path, text))
    assert set(mapping.problems) == {2}
    problem = mapping.problems[2]
    assert problem.startswith("row 2: '备注' (column E) holds 'cert-ca2'")
    assert "spilled out of the 'PolyClientCertificateIds' cell through an unquoted separator" in problem
    assert "quote that cell, or separate ids with ';'" in problem and "--ignore-column '备注'" in problem
    assert [r.row_number for r in mapping.valid_rows()] == [3]
    ignored = read_mapping(write_text(tmp_path, text, "again.csv"), ignore_columns=["备注"])
    assert ignored.problems == {} and ignored.rows[0].poly_client_certificate_ids == ("cert-ca1",)


def test_ids_spilled_into_a_trailing_unnamed_column(tmp_path: Path) -> None:
    """A header ending in ',' (an unnamed column): the spilled id is caught the same way, by the column's letter."""
    text = (
        "ListenerId,Domain,CertificateId,PolyClientCertificateIds,\n"
        "listener-aaaa0001,a.example.com,cert-s1,cert-ca1,cert-ca2;cert-ca3\n"
    )
    mapping = read_mapping(write_text(tmp_path, text))
    problem = mapping.problems[2]
    assert problem.startswith("row 2: the column with no header name (column E) holds 'cert-ca2;cert-ca3'")
    assert "spilled out of the 'PolyClientCertificateIds' cell" in problem and "--ignore-column E" in problem
    assert mapping.valid_rows() == []


def test_spill_into_a_column_that_also_holds_notes_names_only_that_row(tmp_path: Path) -> None:
    """A note column right of ClientCertificateId with notes in other rows: only the row with an id there is
    invalid, in a workbook too."""
    rows: list[list[object]] = [
        ["ListenerId", "Domain", "CertificateId", "ClientCertificateId", "Note"],
        ["listener-aaaa0001", "a.example.com", "cert-s1", "cert-ca1", "cert-ca2"],
        ["listener-aaaa0001", "b.example.com", "cert-s1", "", "ops"],
    ]
    mapping = read_mapping(write_book(tmp_path, rows))
    assert set(mapping.problems) == {2}
    assert mapping.problems[2].startswith("row 2: 'Note' (column E) holds 'cert-ca2'")


def test_more_cells_than_the_header_is_still_refused_by_line(tmp_path: Path) -> None:
    """A spill that makes a line longer than the header still refuses the whole file, naming the lines."""
    text = (
        "ListenerId,Domain,CertificateId,PolyClientCertificateIds,备注\n"
        "listener-aaaa0001,a.example.com,cert-s1,cert-ca1,cert-ca2,ops\n"
        "listener-aaaa0001,b.example.com,cert-s1,cert-ca1,ops\n"
        "listener-aaaa0001,c.example.com,cert-s1,cert-ca1,cert-ca2,cert-ca3,ops\n"
    )
    with pytest.raises(MappingError) as e:
        read_mapping(write_text(tmp_path, text))
    assert "line 2: 6 cells, but the header (row 1) has 5" in str(e.value)
    assert "line 4: 7 cells, but the header (row 1) has 5" in str(e.value) and "line 3" not in str(e.value)


# --- 3. current → new -----------------------------------------------------------------------------------------------


def test_compare_and_swap_columns_in_chinese(tmp_path: Path) -> None:
    """证书ID is what the domain has now, 新证书ID what it gets; client lists likewise. An empty current or new
    certificate makes the row invalid; `default` is a legal current and new value."""
    rows = [
        ["监听器ID", "域名", "证书ID", "新证书ID", "客户端证书IDs", "新客户端证书IDs"],
        ["listener-a1", "a.example.com", "cert-old", "cert-new", "cert-ca1;cert-ca2", "cert-ca3"],
        ["listener-a1", "b.example.com", "default", "cert-new", "", ""],
        ["listener-a1", "c.example.com", "", "cert-new", "", ""],
        ["listener-a1", "d.example.com", "cert-old", "", "", ""],
        ["listener-a1", "e.example.com", "cert-old", "default", "", ""],
    ]
    mapping = read_mapping(write_csv(tmp_path, rows))
    assert targets(mapping) == [
        (2, "cert-new", "", ("cert-ca3",), Expected("cert-old", ("cert-ca1", "cert-ca2"))),
        (3, "cert-new", "", (), Expected("default", None)),
        (4, "cert-new", "", (), Expected("", None)),
        (5, "", "", (), Expected("cert-old", None)),
        (6, "default", "", (), Expected("cert-old", None)),
    ]
    assert mapping.problems[4].startswith("row 4: 证书ID (the certificate the domain has now) is empty — fill it")
    assert mapping.problems[5] == "row 5: 新证书ID is empty — fill it or delete the row"
    assert set(mapping.problems) == {4, 5}
    assert any(n.startswith("current → new:") for n in mapping.notes)


def test_compare_and_swap_columns_in_english_with_current_names(tmp_path: Path) -> None:
    """CurrentCertificateId / CurrentPolyClientCertificateIds with NewCertificateId / NewClientCertificateId, in a
    workbook; ids are validated in every one of them, naming the column."""
    rows: list[list[object]] = [
        [
            "ListenerId",
            "Domain",
            "CurrentCertificateId",
            "CurrentPolyClientCertificateIds",
            "NewCertificateId",
            "NewClientCertificateId",
        ],
        ["listener-a1", "a.example.com", "cert-old", "cert-ca1 cert-ca2", "cert-new", "cert-ca3"],
        ["listener-a1", "b.example.com", "cert-old", "", "cert-new", "default"],
        ["listener-a1", "c.example.com", "oops", "cert-ca1;x", "cert-new", ""],
    ]
    mapping = read_mapping(write_book(tmp_path, rows))
    assert targets(mapping)[:2] == [
        (2, "cert-new", "cert-ca3", (), Expected("cert-old", ("cert-ca1", "cert-ca2"))),
        (3, "cert-new", "default", (), Expected("cert-old", None)),
    ]
    assert "row 4: CurrentCertificateId 'oops' is not a certificate id" in mapping.problems[4]
    assert "row 4: CurrentPolyClientCertificateIds has 'x', not a certificate id" in mapping.problems[4]
    assert set(mapping.problems) == {4}


def test_header_search_accepts_compare_and_swap_headers(tmp_path: Path) -> None:
    """监听器ID, 域名, 当前证书ID, 新证书ID is a header (below a title row too); a single ClientCertificateId is the
    current client CA."""
    rows = [
        ["证书轮换"],
        ["监听器ID", "域名", "当前证书ID", "新证书ID", "客户端证书ID"],
        ["listener-a1", "a.example.com", "cert-old", "cert-new", "cert-ca1"],
    ]
    mapping = read_mapping(write_csv(tmp_path, rows))
    assert mapping.header_row == 2
    assert targets(mapping) == [(3, "cert-new", "", (), Expected("cert-old", ("cert-ca1",)))]


def test_no_new_columns_read_as_before(tmp_path: Path) -> None:
    rows = [["ListenerId", "Domain", "CertificateId", "PolyClientCertificateIds"]]
    rows.append(["listener-a1", "a.example.com", "cert-s1", "cert-ca1"])
    mapping = read_mapping(write_csv(tmp_path, rows))
    assert targets(mapping) == [(2, "cert-s1", "", ("cert-ca1",), None)]


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (
            ["ListenerId", "Domain", "CertificateId", "CurrentCertificateId"],
            r"'CurrentCertificateId' \(column D\) is a current → new column, .*add NewCertificateId",
        ),
        (
            ["监听器ID", "域名", "证书ID", "当前客户端证书ID"],
            r"'当前客户端证书ID' \(column D\) is a current → new column, .*add NewCertificateId",
        ),
        (
            ["ListenerId", "Domain", "CertificateId", "NewPolyClientCertificateIds"],
            r"'NewPolyClientCertificateIds' \(column D\) is a current → new column, .*add NewCertificateId",
        ),
        (
            ["ListenerId", "Domain", "NewCertificateId"],
            r"'NewCertificateId' \(column C\) names the certificate to install, but no column says which one",
        ),
        (
            ["ListenerId", "Domain", "CertificateId", "CurrentCertificateId", "NewCertificateId"],
            r"columns 'CertificateId' \(column C\), 'CurrentCertificateId' \(column D\) all mean CurrentCertificateId",
        ),
        (
            ["ListenerId", "Domain", "CertificateId", "NewCertificateId", "PolyClientCertificateIds", "原客户端证书ID"],
            r"columns 'PolyClientCertificateIds' \(column E\), '原客户端证书ID' \(column F\) all mean Current",
        ),
    ],
    ids=["current-server", "current-clients", "new-clients", "new-without-current", "two-currents", "two-lists"],
)
def test_current_columns_without_a_new_one_are_refused(tmp_path: Path, header: list[str], message: str) -> None:
    """A current (or new client) column without NewCertificateId is never read as the target: the file is refused;
    so are NewCertificateId without a current column and two columns for one current value."""
    row = ["listener-a1", "a.example.com", *(["cert-1"] * (len(header) - 2))]
    with pytest.raises(MappingError, match=message):
        read_mapping(write_csv(tmp_path, [header, row]))


def test_domains_differing_only_in_case_are_duplicates(tmp_path: Path) -> None:
    """Rows that differ only by the case of the domain are duplicates of the first (sent once); with the same
    target but another expected state they conflict."""
    plain = [
        ["ListenerId", "Domain", "CertificateId"],
        ["listener-a1", "www.example.com", "cert-s1"],
        ["listener-a1", "WWW.Example.COM", "cert-s1"],
        ["listener-a1", "Www.example.com", "cert-s1"],
    ]
    mapping = read_mapping(write_csv(tmp_path, plain))
    assert mapping.problems == {} and mapping.duplicate_of == {3: 2, 4: 2}
    swap = [
        ["ListenerId", "Domain", "CertificateId", "NewCertificateId"],
        ["listener-a1", "www.example.com", "cert-old", "cert-new"],
        ["listener-a1", "WWW.example.com", "cert-old", "cert-new"],
        ["listener-a1", "api.example.com", "cert-old", "cert-new"],
        ["listener-a1", "API.example.com", "cert-other", "cert-new"],
    ]
    mapping = read_mapping(write_csv(tmp_path, swap, "swap.csv"))
    assert mapping.duplicate_of == {3: 2}
    assert set(mapping.problems) == {4, 5}
    assert (
        "row 4: listener-a1 / api.example.com is said to have different current certificates in row(s) 5"
        in (mapping.problems[4])
    )


def test_rollback_csv_reads_back_as_a_compare_and_swap_mapping(tmp_path: Path) -> None:
    """rollback.csv: CertificateId/PolyClientCertificateIds are what the run installed (the current state), New* what
    was there before; listener rows have Scope listener and no domain; rolls_back_row and note are extras."""
    rows = [
        [
            "Scope",
            "ProxyId",
            "ListenerId",
            "Domain",
            "CertificateId",
            "PolyClientCertificateIds",
            "NewCertificateId",
            "NewClientCertificateId",
            "NewPolyClientCertificateIds",
            "rolls_back_row",
            "note",
        ],
        ["domain", "", "listener-a1", "a.example.com", "cert-new", "", "cert-old", "", "", "2", ""],
        ["domain", "", "listener-a1", "b.example.com", "cert-new", "cert-ca9", "default", "default", "", "3", ""],
        ["listener", "link-p1", "listener-a1", "", "cert-l2", "cert-ca3;cert-ca4", "cert-l1", "", "cert-ca1", "4", ""],
        ["domain", "", "listener-a1", "c.example.com", "cert-new", "cert-ca9", "cert-old", "", "", "5", "had none"],
    ]
    mapping = read_mapping(write_csv(tmp_path, rows, "rollback.csv"))
    assert mapping.problems == {}
    assert targets(mapping) == [
        (2, "cert-old", "", (), Expected("cert-new", None)),
        (3, "default", "default", (), Expected("cert-new", ("cert-ca9",))),
        (4, "cert-l1", "", ("cert-ca1",), Expected("cert-l2", ("cert-ca3", "cert-ca4"))),
        (5, "cert-old", "", (), Expected("cert-new", ("cert-ca9",))),
    ]
    listener = mapping.rows[2]
    assert (listener.scope, listener.domain, listener.proxy_id) == ("listener", "", "link-p1")
    assert mapping.extra_columns == ("rolls_back_row", "note")


def test_inventory_replace_mapping_reads_back(tmp_path: Path) -> None:
    """inventory --replace writes mapping.csv with the current ids and the new ones: each row is a compare-and-swap
    row; a row that changes no client CA list leaves them alone and compares none."""
    rows = [
        [
            "Scope",
            "ProxyId",
            "ListenerId",
            "Domain",
            "CertificateId",
            "PolyClientCertificateIds",
            "NewCertificateId",
            "NewPolyClientCertificateIds",
        ],
        ["domain", "link-p1", "listener-a1", "shop.example.com", "cert-wild2025", "", "cert-wild2026", ""],
        ["listener", "link-p1", "listener-a1", "", "cert-wild2025", "", "cert-wild2026", ""],
        [
            "domain",
            "link-p1",
            "listener-a2",
            "api.example.com",
            "cert-api",
            "cert-partnerca25;cert-other",
            "cert-api",
            "cert-partnerca26;cert-other",
        ],
    ]
    mapping = read_mapping(write_csv(tmp_path, rows, "mapping.csv"))
    assert mapping.problems == {} and mapping.duplicate_of == {}
    assert targets(mapping) == [
        (2, "cert-wild2026", "", (), Expected("cert-wild2025", None)),
        (3, "cert-wild2026", "", (), Expected("cert-wild2025", None)),
        (
            4,
            "cert-api",
            "",
            ("cert-partnerca26", "cert-other"),
            Expected("cert-api", ("cert-partnerca25", "cert-other")),
        ),
    ]
    assert [r.scope for r in mapping.rows] == ["domain", "listener", "domain"] and mapping.rows[1].domain == ""


def test_compare_and_swap_formulas_without_value_are_named(tmp_path: Path) -> None:
    """A current or new id that is a formula saved without its value names the column, like any known column."""
    rows: list[list[object]] = [
        ["ListenerId", "Domain", "CertificateId", "NewCertificateId", "NewPolyClientCertificateIds"],
        ["listener-a1", "a.example.com", '=CONCATENATE("cert-","old")', "cert-new", ""],
        ["listener-a1", "b.example.com", "cert-old", '=CONCATENATE("cert-","new")', ""],
        ["listener-a1", "c.example.com", "cert-old", "cert-new", "=A1"],
    ]
    mapping = read_mapping(write_book(tmp_path, rows))
    assert mapping.problems[2] == (
        "row 2: CertificateId is a formula with no saved value — open and save the file in Excel (or WPS, "
        "LibreOffice), or type the value"
    )
    assert mapping.problems[3].startswith("row 3: NewCertificateId is a formula with no saved value")
    assert mapping.problems[4].startswith("row 4: NewPolyClientCertificateIds is a formula with no saved value")


def test_ids_spilled_out_of_a_new_client_list(tmp_path: Path) -> None:
    """In a current → new CSV, an unquoted NewPolyClientCertificateIds list that spills into the next column makes
    the row invalid too."""
    text = (
        "ListenerId,Domain,CertificateId,NewCertificateId,NewPolyClientCertificateIds,Owner\n"
        "listener-a1,a.example.com,cert-old,cert-new,cert-ca1,cert-ca2\n"
    )
    mapping = read_mapping(write_text(tmp_path, text))
    assert mapping.problems[2].startswith("row 2: 'Owner' (column F) holds 'cert-ca2'")
    assert "spilled out of the 'NewPolyClientCertificateIds' cell" in mapping.problems[2]


@pytest.mark.parametrize("other", ["default", "无", ""])
def test_an_unknown_id_column_is_refused_even_where_some_cells_are_words(tmp_path: Path, other: str) -> None:
    """A client-CA column under a name batchcert does not know, away from the id columns, whose other cells say
    `default` or `无` (or are empty): still a column of ids — refused, never read as if it were not there."""
    path = write_csv(
        tmp_path,
        [
            ["ListenerId", "Domain", "CertificateId", "Notes", "mTLS CA"],
            ["listener-aaaa0001", "a.example.com", "cert-s1", "first", "cert-ca1;cert-ca2"],
            ["listener-aaaa0001", "b.example.com", "cert-s1", "second", other],
        ],
    )
    with pytest.raises(MappingError, match=r"'mTLS CA' \(column E\)"):
        read_mapping(path)
    assert read_mapping(path, ignore_columns=["mTLS CA"]).problems == {}
