"""Mapping files as people really have them (issue 12): encodings, delimiters, title rows above the header, Chinese
headers, sheets, hidden rows, malformed CSV, formulas without saved values, invisible characters. Every file is built
the way Excel, WPS or LibreOffice writes it: `str.encode` for CSV exports, openpyxl for workbooks."""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Sequence
from pathlib import Path

import openpyxl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchcert.errors import MappingError
from batchcert.mapping import read_mapping, require_rows_to_send
from batchcert.model import Mapping

HEADER = ["ListenerId", "Domain", "CertificateId", "Owner"]
ROWS = [
    ["listener-aaaa0001", "www.example.com", "cert-00001", "运维团队 张三"],
    ["listener-aaaa0002", "api.example.com", "default", "网络组，李四"],
]


def csv_text(rows: list[list[str]], delimiter: str = ",") -> str:
    """What a spreadsheet's CSV export holds: CRLF line ends, quotes only where needed."""
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue()


def write_bytes(tmp_path: Path, data: bytes, name: str = "m.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def write_book(tmp_path: Path, sheets: dict[str, Sequence[Sequence[object]]], name: str = "m.xlsx") -> Path:
    """A workbook with the given sheets in order (openpyxl writes formulas without a saved value)."""
    book = openpyxl.Workbook()
    book.remove(book.active)
    for title, rows in sheets.items():
        ws = book.create_sheet(title)
        for row in rows:
            ws.append(row)
    path = tmp_path / name
    book.save(path)
    return path


def ids(mapping: Mapping) -> list[tuple[int, str, str, str]]:
    return [(r.row_number, r.listener_id, r.domain, r.certificate_id) for r in mapping.rows]


EXPECTED = [(2, *ROWS[0][:3]), (3, *ROWS[1][:3])]


# --- encodings ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "delimiter", "codec", "note"),
    [
        ("utf-8", ",", "utf-8", "encoding UTF-8"),
        ("utf-8-sig", ",", "utf-8-sig", "encoding UTF-8 with BOM"),  # Excel "CSV UTF-8"
        ("gb18030", ",", "gb18030", "encoding GB18030"),  # Excel / WPS "CSV" on a Chinese Windows
        ("gbk", ";", "gb18030", "encoding GB18030"),  # GBK is a subset of GB18030
        ("utf-16", "\t", "utf-16", "encoding UTF-16"),  # Excel "Unicode Text": BOM + tabs
        ("utf-16-be", "\t", "utf-16", "encoding UTF-16"),
    ],
)
def test_encodings_are_detected_and_recorded(
    tmp_path: Path, encoding: str, delimiter: str, codec: str, note: str
) -> None:
    """UTF-8 with or without BOM, GB18030/GBK and UTF-16 with a BOM all read the same rows; the encoding is recorded."""
    text = csv_text([HEADER, *ROWS], delimiter)
    data = text.encode(encoding)
    if encoding == "utf-16-be":
        data = "\ufeff".encode("utf-16-be") + data
    mapping = read_mapping(write_bytes(tmp_path, data))
    assert ids(mapping) == EXPECTED
    assert dict(mapping.rows[1].extra) == {"Owner": "网络组，李四"}
    assert mapping.encoding == codec and note in mapping.notes
    assert mapping.sheet == "" and mapping.header_row == 1
    assert mapping.problems == {}


def test_utf16_without_bom_and_encoding_override(tmp_path: Path) -> None:
    """UTF-16 without a BOM is recognised by its zero bytes; `encoding=` reads a Big5 or cp1252 export."""
    mapping = read_mapping(write_bytes(tmp_path, csv_text([HEADER, *ROWS], "\t").encode("utf-16-le")))
    assert ids(mapping) == EXPECTED and mapping.encoding == "utf-16-le"
    big5 = write_bytes(tmp_path, csv_text([HEADER, [*ROWS[0][:3], "維運團隊"]]).encode("big5"), "big5.csv")
    mapping = read_mapping(big5, encoding="big5")
    assert dict(mapping.rows[0].extra)["Owner"] == "維運團隊"
    assert mapping.encoding == "big5" and "encoding BIG5 (--encoding)" in mapping.notes
    latin = write_bytes(tmp_path, csv_text([HEADER, [*ROWS[0][:3], "Café"]]).encode("cp1252"), "latin.csv")
    assert dict(read_mapping(latin, encoding="cp1252").rows[0].extra)["Owner"] == "Café"


def test_undecodable_bytes_and_unknown_codec_say_what_to_do(tmp_path: Path) -> None:
    """Bytes that are neither UTF-8 nor GB18030 name the line; an unknown codec name is named."""
    path = write_bytes(tmp_path, csv_text([HEADER, [*ROWS[0][:3], "Café"]]).encode("latin-1"))
    with pytest.raises(MappingError, match=r"not UTF-8, nor GB18030/GBK: byte 0xe9 .*\(line 2\).*--encoding"):
        read_mapping(path)
    with pytest.raises(MappingError, match="unknown encoding 'klingon'"):
        read_mapping(path, encoding="klingon")
    with pytest.raises(MappingError, match="not valid UTF-8 \\(chosen by --encoding\\)"):
        read_mapping(path, encoding="utf-8")


# --- delimiters and the header row ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "delimiter"), [("m.csv", ";"), ("m.tsv", "\t"), ("m.txt", "\t"), ("m.txt", ",")])
def test_delimiter_is_sniffed_from_the_header_for_any_extension(tmp_path: Path, name: str, delimiter: str) -> None:
    """`,`, `;` and TAB are found from the header row whatever the extension; cells may hold the other two."""
    rows = [HEADER, [*ROWS[0][:3], "a,b;c"], ROWS[1]]
    mapping = read_mapping(write_bytes(tmp_path, csv_text(rows, delimiter).encode(), name))
    assert ids(mapping) == EXPECTED
    assert dict(mapping.rows[0].extra)["Owner"] == "a,b;c"


def test_header_below_title_rows_keeps_spreadsheet_row_numbers(tmp_path: Path) -> None:
    """Title and blank rows above the header are skipped; rows keep the numbers a spreadsheet shows."""
    text = "证书更换清单 2024;;;\r\n;;;\r\n" + csv_text(
        [HEADER, ROWS[0], ["lsn-bad", "x.example.com", "cert-1", ""]], ";"
    )
    mapping = read_mapping(write_bytes(tmp_path, text.encode("gb18030")))
    assert mapping.header_row == 3 and "header on row 3" in mapping.notes
    assert [r.row_number for r in mapping.rows] == [4, 5]
    assert mapping.problems[5].startswith("row 5: ListenerId 'lsn-bad' is not a listener id")
    assert mapping.cells[4] == tuple(ROWS[0])


def test_xlsx_header_below_a_merged_title_row(tmp_path: Path) -> None:
    """A merged title row above the header (as people format a sheet) is skipped; numbering follows the sheet."""
    book = openpyxl.Workbook()
    ws = book.active
    ws.title = "清单"
    ws.append(["GAAP 证书更换"])
    ws.merge_cells("A1:D1")
    ws.append([])
    for row in [HEADER, *ROWS]:
        ws.append(row)
    path = tmp_path / "m.xlsx"
    book.save(path)
    mapping = read_mapping(path)
    assert [r.row_number for r in mapping.rows] == [4, 5] and mapping.header_row == 3
    assert mapping.sheet == "清单" and "sheet '清单'" in mapping.notes and "header on row 3" in mapping.notes
    assert mapping.encoding == ""


def test_no_header_in_the_first_rows_names_the_row_looked_at(tmp_path: Path) -> None:
    """Without a header in the first 10 rows, the error names the first non-empty row, what it lacks, and the row that
    comes closest."""
    text = "\r\nChanges for March\r\nListenerId,Domain,Cert\r\nlistener-aaaa0001,www.example.com,cert-1\r\n"
    with pytest.raises(MappingError) as e:
        read_mapping(write_bytes(tmp_path, text.encode()))
    assert "lacks the column(s) ListenerId, Domain, CertificateId" in str(e.value)
    assert "row 2, the first non-empty row, was looked at as the header and holds 'Changes for March'" in str(e.value)
    assert "(row 3 comes closest and lacks CertificateId)" in str(e.value)
    late = "\r\n" * 11 + csv_text([HEADER, ROWS[0]])
    with pytest.raises(MappingError, match=r"rows 1–10 are empty.*above row 12"):
        read_mapping(write_bytes(tmp_path, late.encode(), "late.csv"))


@pytest.mark.parametrize(
    "header",
    [
        ["监听器ID", "域名", "证书ID", "客户端证书ID", "备注"],
        ["监听器 ID", "域名", "服务器证书ID", "多客户端证书ID", "备注"],
        ["监听器", "域名：", "证书（必填）", "客户端证书", "备注"],
        ["ＬｉｓｔｅｎｅｒＩＤ", "Ｄｏｍａｉｎ\u3000", "Certificate\u3000Id", "client_certificate_id", "备注"],
        ["\ufeff*Listener Id", "DOMAIN NAME", "cert-id", "Client Cert ID", "备注"],
    ],
)
def test_header_aliases_include_chinese_and_full_width_names(tmp_path: Path, header: list[str]) -> None:
    """Chinese names, full-width letters and spaces (NFKC) and the usual case/space/underscore variants match."""
    client = "cert-cli01"
    rows = [header, ["listener-aaaa0001", "www.example.com", "cert-00001", client, "张三"]]
    mapping = read_mapping(write_bytes(tmp_path, csv_text(rows).encode("utf-8-sig")))
    row = mapping.rows[0]
    assert (row.listener_id, row.domain, row.certificate_id) == ("listener-aaaa0001", "www.example.com", "cert-00001")
    if "多客户端" in header[3]:
        assert row.poly_client_certificate_ids == (client,)
    else:
        assert row.client_certificate_id == client
    assert mapping.columns[0] == header[0].strip() and row.extra == (("备注", "张三"),)


def test_chinese_poly_separators(tmp_path: Path) -> None:
    """Several client ids in one cell may be separated by full-width '；' or '，' or '、' as typed in Chinese."""
    rows = [
        ["监听器ID", "域名", "证书ID", "多客户端证书ID"],
        ["listener-a1", "a.example.com", "cert-1", "cert-a；cert-b、cert-c"],
    ]
    mapping = read_mapping(write_bytes(tmp_path, csv_text(rows).encode("gb18030")))
    assert mapping.rows[0].poly_client_certificate_ids == ("cert-a", "cert-b", "cert-c")
    assert mapping.problems == {}


# --- sheets and hidden rows -----------------------------------------------------------------------------------------


def test_the_only_visible_sheet_is_read_even_when_not_first(tmp_path: Path) -> None:
    """A hidden 'Old' sheet before the visible 'New' one: 'New' is read, and a note says so."""
    book = openpyxl.Workbook()
    old = book.active
    old.title = "Old"
    old.append(HEADER)
    old.append(["listener-old00001", "old.example.com", "cert-old", ""])
    old.sheet_state = "hidden"
    new = book.create_sheet("New")
    for row in [HEADER, *ROWS]:
        new.append(row)
    secret = book.create_sheet("Secret")
    secret.append(HEADER)
    secret.append(["listener-sec00001", "sec.example.com", "cert-sec", ""])
    secret.sheet_state = "veryHidden"
    path = tmp_path / "m.xlsx"
    book.save(path)
    mapping = read_mapping(path)
    assert mapping.sheet == "New" and "sheet 'New'" in mapping.notes and ids(mapping) == EXPECTED
    hidden = read_mapping(path, sheet="Old")
    assert hidden.rows[0].listener_id == "listener-old00001" and hidden.sheet == "Old"
    assert "sheet 'Old' is hidden in the workbook; read because --sheet named it" in hidden.notes
    very = read_mapping(path, sheet="Secret")
    assert very.rows[0].listener_id == "listener-sec00001" and any("very hidden" in n for n in very.notes)
    with pytest.raises(MappingError, match=r"no sheet 'Gone' — sheets: Old \(hidden\), New, Secret \(hidden\)"):
        read_mapping(path, sheet="Gone")


def test_several_visible_sheets_need_a_name(tmp_path: Path) -> None:
    """Two visible sheets: the error lists them and says to pass --sheet NAME; a named one is read."""
    path = write_book(tmp_path, {"2023": [HEADER, ROWS[0]], "2024": [HEADER, ROWS[1]]})
    with pytest.raises(MappingError, match=r"2 visible sheets \(2023, 2024\) — pass --sheet NAME"):
        read_mapping(path)
    assert read_mapping(path, sheet="2024").rows[0].domain == "api.example.com"


def test_empty_visible_sheets_are_no_choice(tmp_path: Path) -> None:
    """A new workbook's empty Sheet2 and Sheet3 beside the data sheet do not make the user pass --sheet."""
    path = write_book(tmp_path, {"Data": [HEADER, ROWS[0]], "Sheet2": [], "Sheet3": []})
    mapping = read_mapping(path)
    assert mapping.sheet == "Data" and mapping.rows[0].domain == ROWS[0][1]


def test_hidden_rows_are_never_sent_unless_asked(tmp_path: Path) -> None:
    """Rows hidden by hand or by an autofilter are reported invalid with what to do; include_hidden_rows sends them."""
    book = openpyxl.Workbook()
    ws = book.active
    ws.append(HEADER)
    for i in range(4):
        ws.append([f"listener-aaaa000{i}", f"h{i}.example.com", "cert-00001", "团队"])
    ws.row_dimensions[3].hidden = True  # by hand
    ws.auto_filter.ref = "A1:D5"  # filtered out: Excel writes hidden="1" on each such row
    ws.auto_filter.add_filter_column(1, ["h0.example.com", "h2.example.com"])
    ws.row_dimensions[5].hidden = True
    path = tmp_path / "m.xlsx"
    book.save(path)
    mapping = read_mapping(path)
    assert [r.row_number for r in mapping.rows] == [2, 3, 4, 5]
    assert set(mapping.problems) == {3, 5}
    assert mapping.problems[3] == (
        "row 3 is hidden in the workbook — unhide it to send it, or pass --include-hidden-rows"
    )
    assert [r.row_number for r in mapping.valid_rows()] == [2, 4]
    assert any(n.startswith("2 hidden row(s) not sent: 3, 5") for n in mapping.notes)
    included = read_mapping(path, include_hidden_rows=True)
    assert included.problems == {} and len(included.valid_rows()) == 4


def test_formula_without_saved_value_is_named(tmp_path: Path) -> None:
    """A formula that was never calculated (written by a program, not saved by Excel) reads as no value, and the
    message says why, in required and optional columns alike; a formula in another column is harmless."""
    header = ["ListenerId", "Domain", "CertificateId", "ClientCertificateId", "Owner"]
    path = write_book(
        tmp_path,
        {
            "Sheet1": [
                header,
                ["listener-aaaa0001", "www.example.com", '=CONCATENATE("cert-","x1")', "", "=A1"],
                ["listener-aaaa0001", "api.example.com", "cert-00001", "=B9", ""],
                ["listener-aaaa0001", "b.example.com", "cert-00001", "", "=A1"],
            ]
        },
    )
    mapping = read_mapping(path)
    assert mapping.problems[2] == (
        "row 2: CertificateId is a formula with no saved value — open and save the file in Excel (or WPS, "
        "LibreOffice), or type the value"
    )
    assert "row 3: ClientCertificateId is a formula with no saved value" in mapping.problems[3]
    assert 4 not in mapping.problems


# --- malformed CSV --------------------------------------------------------------------------------------------------


def test_eof_inside_a_quote_names_the_line_where_it_opened(tmp_path: Path) -> None:
    """A quote that never closes swallows every following line: the whole file is refused, naming its line."""
    text = csv_text([HEADER, ROWS[0]]) + 'listener-aaaa0002,"api.example.com,cert-1,x\r\n'
    text += "".join(f"listener-b{i},b{i}.example.com,cert-1,x\r\n" for i in range(5))
    with pytest.raises(
        MappingError, match=r"not a well-formed CSV.*\n  line 3: a quoted cell opened here is never"
    ) as e:
        read_mapping(write_bytes(tmp_path, text.encode()))
    assert "nothing is sent" in str(e.value)


def test_unclosed_quote_on_a_later_line_of_a_record(tmp_path: Path) -> None:
    """The line named is the one where the quote left open starts, not where its record starts."""
    text = csv_text([HEADER]) + 'listener-aaaa0001,a.example.com,"cert-1\r\nx",y,"open\r\n'
    text += "listener-aaaa0002,b.example.com,cert-2,\r\n"
    with pytest.raises(
        MappingError, match=r"line 3: a quoted cell opened here is never closed \(it runs to the end of"
    ):
        read_mapping(write_bytes(tmp_path, text.encode()))


def test_quote_balanced_by_a_later_quote_still_refuses(tmp_path: Path) -> None:
    """A missing quote that a later quote happens to close hides whole rows inside one cell: refused."""
    text = csv_text([HEADER, ROWS[0]])
    text += 'listener-aaaa0002,api.example.com,cert-1,"5 screens\r\n'
    text += "listener-aaaa0003,c.example.com,cert-1,x\r\n"
    text += 'listener-aaaa0004,d.example.com,cert-1,y"\r\n'
    with pytest.raises(MappingError, match=r"line 3: a quoted cell opened here runs on to line 5 and holds what looks"):
        read_mapping(write_bytes(tmp_path, text.encode()))
    stray = csv_text([HEADER, ROWS[0]]) + 'listener-aaaa0002,"api.example.com"x,cert-1,\r\n'
    with pytest.raises(MappingError, match="line 3: a quote ends a cell but more text follows it"):
        read_mapping(write_bytes(tmp_path, stray.encode(), "stray.csv"))


def test_records_with_more_cells_than_the_header_list_every_line(tmp_path: Path) -> None:
    """An unquoted delimiter inside a cell shifts the row: every such line is listed (up to 20, then a count)."""
    good = csv_text([HEADER, ROWS[0]])
    bad = "".join(f"listener-b{i},b{i}.example.com,cert-1,Zhang, San\r\n" for i in range(25))
    with pytest.raises(MappingError) as e:
        read_mapping(write_bytes(tmp_path, (good + bad).encode()))
    message = str(e.value)
    assert "25 problem(s)" in message and "line 3: 5 cells, but the header (row 1) has 4" in message
    assert "line 22:" in message and "line 23:" not in message and "… and 5 more" in message


# --- empty work, other files ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["ListenerId,Domain,CertificateId\r\n", "ListenerId,Domain,CertificateId\r\n,,\r\n\r\n"]
)
def test_no_data_rows_is_an_error(tmp_path: Path, text: str) -> None:
    """A header with nothing (or only blank rows) below it is no work: refused."""
    with pytest.raises(MappingError, match="has no data rows — the header is row 1"):
        read_mapping(write_bytes(tmp_path, text.encode()))


def test_require_rows_to_send(tmp_path: Path) -> None:
    """All rows invalid: the run is refused before it starts, saying how many and to run validate."""
    bad = read_mapping(
        write_bytes(tmp_path, csv_text([HEADER, ["x", "y", "z", ""], ["", "a.example.com", "", ""]]).encode())
    )
    with pytest.raises(MappingError, match=r"all 2 row\(s\) are invalid.*batchcert validate .*m\.csv") as e:
        require_rows_to_send(bad)
    assert e.value.exit_code == 2
    require_rows_to_send(read_mapping(write_bytes(tmp_path, csv_text([HEADER, *ROWS]).encode(), "ok.csv")))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("listener-aaaa0001\u200b", "U+200B ZERO WIDTH SPACE at position 18"),
        ("\ufefflistener-aaaa0001", "U+FEFF ZERO WIDTH NO-BREAK SPACE at position 1"),
        ("listener-aaaa\u00a00001", "U+00A0 NO-BREAK SPACE at position 14"),
        ("listener-ａａａａ0001", "U+FF41 FULLWIDTH LATIN SMALL LETTER A at position 10"),
        ("listener-\u0430aaa0001", "U+0430 CYRILLIC SMALL LETTER A at position 10"),
        ("listener-aaaa\x000001", "U+0000 (a control character) at position 14"),
    ],
)
def test_invisible_and_look_alike_characters_are_named(tmp_path: Path, value: str, message: str) -> None:
    """An id that looks right but is not names the offending character by code point, name and position."""
    mapping = read_mapping(write_bytes(tmp_path, csv_text([HEADER, [value, "www.example.com", "cert-1", ""]]).encode()))
    assert (
        f"row 2: ListenerId {value!r} is not a listener id (listener-…): it contains {message}" in mapping.problems[2]
    )


def test_non_ascii_domain_and_certificate_characters_are_named(tmp_path: Path) -> None:
    """A Unicode domain gets the xn-- hint; a full-width digit in a certificate id is named."""
    row = ["listener-aaaa0001", "bücher.example.com", "cert-０1", ""]
    problems = read_mapping(write_bytes(tmp_path, csv_text([HEADER, row]).encode())).problems[2]
    assert (
        "U+00FC LATIN SMALL LETTER U WITH DIAERESIS at position 2 — an internationalized domain is written" in problems
    )
    assert "CertificateId 'cert-０1' is not a certificate id (cert-… or default): it contains U+FF10" in problems


def test_directory_and_other_spreadsheet_formats(tmp_path: Path) -> None:
    """A directory, .xls, .ods and a password-protected (OLE2) workbook each say what to do instead."""
    with pytest.raises(MappingError, match="is a directory"):
        read_mapping(tmp_path)
    with pytest.raises(MappingError, match=r"Excel 97-2003 workbook \(\.xls\) — open it .* save it as \.xlsx"):
        read_mapping(write_bytes(tmp_path, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504), "m.xls"))
    with pytest.raises(MappingError, match="password-protected workbook"):
        read_mapping(write_bytes(tmp_path, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504), "m2.xlsx"))
    ods = tmp_path / "m.ods"
    with zipfile.ZipFile(ods, "w") as archive:
        archive.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
    with pytest.raises(MappingError, match=r"OpenDocument spreadsheet \(\.ods\) — .*'CSV UTF-8'"):
        read_mapping(ods)
    renamed = ods.rename(tmp_path / "ods.csv")
    with pytest.raises(MappingError, match="OpenDocument"):
        read_mapping(renamed)
    with pytest.raises(MappingError, match=r"not a readable \.xlsx .*if it is a CSV, rename it \.csv"):
        read_mapping(write_bytes(tmp_path, csv_text([HEADER, *ROWS]).encode(), "text.xlsx"))


def test_workbook_renamed_csv_is_read_as_a_workbook(tmp_path: Path) -> None:
    """An .xlsx saved under a .csv name is read as the workbook it is, with a note to rename it."""
    path = write_book(tmp_path, {"Sheet1": [HEADER, *ROWS]}, name="m.csv")
    mapping = read_mapping(path)
    assert ids(mapping) == EXPECTED and mapping.sheet == "Sheet1"
    assert "m.csv is an Excel workbook, not a CSV: read as .xlsx — rename it m.xlsx" in mapping.notes


# --- column names ---------------------------------------------------------------------------------------------------


def test_duplicate_mapping_column_names_both(tmp_path: Path) -> None:
    """Two columns that both mean Domain: refused, naming both with their column letters."""
    rows = [
        ["ListenerId", "Domain", "CertificateId", "域名"],
        ["listener-aaaa0001", "a.example.com", "cert-1", "b.example.com"],
    ]
    with pytest.raises(MappingError, match=r"columns 'Domain' \(column B\), '域名' \(column D\) all mean Domain"):
        read_mapping(write_bytes(tmp_path, csv_text(rows).encode()))


def test_unnamed_columns_empty_ones_dropped_filled_ones_kept(tmp_path: Path) -> None:
    """An unnamed column with nothing in it is ignored; one holding something is kept as 'column E' (documented)."""
    rows = [[*HEADER, "", ""], [*ROWS[0], "", ""], [*ROWS[1], "note", ""]]
    mapping = read_mapping(write_bytes(tmp_path, csv_text(rows).encode()))
    assert mapping.columns == (*HEADER, "column E")
    assert mapping.rows[1].extra == (("Owner", ROWS[1][3]), ("column E", "note"))
    assert mapping.cells[2] == (*ROWS[0], "")
    assert "column E has no header name — its cells are kept as 'column E'" in mapping.notes
    sheet = write_book(tmp_path, {"S": [HEADER, [*ROWS[0], None, "far"], ROWS[1]]})
    assert read_mapping(sheet).columns == (*HEADER, "column F")


# --- no row of a valid file is lost or altered ----------------------------------------------------------------------

FORMS = ["utf-8,", "utf-8-sig;", "gb18030,", "gb18030\t", "utf-16\t", "utf-16;", "xlsx"]
token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12)
# extra cells as people write them: Chinese, full-width punctuation, the delimiters, quotes, line breaks
extra_text = st.text(alphabet='abc XYZ 09 运维团队张三负责人备注，。！“”、 ,;\t"\n', max_size=20)


@st.composite
def valid_tables(draw: st.DrawFn) -> list[list[str]]:
    rows = []
    for i in range(draw(st.integers(1, 12))):
        rows.append(
            [
                f"listener-{draw(token)}",
                f"h{i}-{draw(token)}.example.com",
                draw(st.sampled_from(["default", f"cert-{draw(token)}"])),
                draw(extra_text),
                draw(extra_text),
            ]
        )
    return rows


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=valid_tables(), form=st.sampled_from(FORMS), title=st.booleans())
def test_no_row_of_a_valid_file_is_lost_or_altered(
    tmp_path: Path, rows: list[list[str]], form: str, title: bool
) -> None:
    """Valid rows written in every supported encoding, delimiter and format read back exactly, ids as written."""
    header = ["监听器ID", "域名", "证书ID", "负责人", "备注"]
    table = ([["证书更换清单"]] if title else []) + [header, *rows]
    if form == "xlsx":
        path = write_book(tmp_path, {"Sheet1": [list(r) for r in table]})
    else:
        codec, delimiter = form[:-1], form[-1]
        path = write_bytes(tmp_path, csv_text(table, delimiter).encode(codec))
    mapping = read_mapping(path)
    first = 3 if title else 2
    assert mapping.problems == {}
    assert [r.row_number for r in mapping.rows] == list(range(first, first + len(rows)))
    assert [(r.listener_id, r.domain, r.certificate_id, *(v for _, v in r.extra)) for r in mapping.rows] == [
        tuple(r) for r in rows
    ]
    assert [mapping.cells[r.row_number] for r in mapping.rows] == [tuple(r) for r in rows]
