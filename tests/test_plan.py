"""Reading and validating mappings: formats, column matching, row numbers, every row-level rule."""

from __future__ import annotations

from pathlib import Path

import pytest
import xlsxwriter

from batchcert.errors import MappingError
from batchcert.mapping import read_mapping

HEADER = "ListenerId,Domain,CertificateId,ClientCertificateId,PolyClientCertificateIds,Owner\n"


def write(tmp_path: Path, text: str, name: str = "m.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def write_xlsx(tmp_path: Path, rows: list[list[object]], name: str = "m.xlsx", sheet: str = "Sheet1") -> Path:
    path = tmp_path / name
    book = xlsxwriter.Workbook(str(path))
    ws = book.add_worksheet(sheet)
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            if value is not None:
                ws.write(r, c, value)
    book.close()
    return path


def test_clean_csv_reads_every_row_as_text_with_spreadsheet_row_numbers(tmp_path: Path) -> None:
    """A clean CSV gives one Row per record numbered from 2, with extra columns kept verbatim."""
    path = write(
        tmp_path,
        HEADER
        + "listener-aaaa0001,www.example.com,cert-00001,,,team-a\nlistener-aaaa0001,api.example.com,default,cert-cli01,,007\n",
    )
    mapping = read_mapping(path)
    assert [r.row_number for r in mapping.rows] == [2, 3]
    assert mapping.problems == {}
    assert mapping.rows[1].certificate_id == "default" and mapping.rows[1].client_certificate_id == "cert-cli01"
    assert dict(mapping.rows[1].extra) == {"Owner": "007"}
    assert mapping.extra_columns == ("Owner",)
    assert len(mapping.sha256) == 64


def test_semicolon_bom_and_loose_header_spelling(tmp_path: Path) -> None:
    """A ';' CSV with a BOM and headers like 'listener id' / 'CERTIFICATE_ID' is understood."""
    path = write(tmp_path, "\ufefflistener id;domain;CERTIFICATE_ID\nlistener-aaaa0001;www.example.com;cert-00001\n")
    mapping = read_mapping(path)
    assert mapping.rows[0].listener_id == "listener-aaaa0001"
    assert mapping.column_of["ListenerId"] == "listener id"


def test_row_numbers_count_blank_lines_and_embedded_newlines(tmp_path: Path) -> None:
    """Blank lines are skipped but keep their numbers; a quoted newline stays within one record."""
    text = (
        HEADER
        + 'listener-aaaa0001,a.example.com,cert-00001,,,"two\nlines"\n\n,,,,,\nlistener-aaaa0001,b.example.com,cert-00001,,,x\n\n'
    )
    mapping = read_mapping(write(tmp_path, text))
    assert [r.row_number for r in mapping.rows] == [2, 5]
    assert dict(mapping.rows[0].extra)["Owner"] == "two\nlines"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (",www.example.com,cert-00001,,", "row 2: ListenerId is empty — fill it or delete the row"),
        ("lsn-1,www.example.com,cert-00001,,", "row 2: ListenerId 'lsn-1' is not a listener id"),
        ("listener-aaaa0001,,cert-00001,,", "row 2: Domain is empty"),
        ("listener-aaaa0001,bad_domain!,cert-00001,,", "row 2: Domain 'bad_domain!' is not a host name"),
        ("listener-aaaa0001,www.example.com,,,", "row 2: CertificateId is empty — fill it or delete the row"),
        ("listener-aaaa0001,www.example.com,12345.0,,", "row 2: CertificateId '12345.0' is not a certificate id"),
        (
            "listener-aaaa0001,www.example.com,cert-00001,client,",
            "row 2: ClientCertificateId 'client' is not a certificate id",
        ),
        ("listener-aaaa0001,www.example.com,cert-00001,,cert-a1;oops", "row 2: PolyClientCertificateIds has 'oops'"),
        (
            "listener-aaaa0001,www.example.com,cert-00001,cert-a1,cert-a2",
            "row 2: ClientCertificateId and PolyClientCertificateIds are both set",
        ),
    ],
)
def test_invalid_rows_name_row_and_column(tmp_path: Path, line: str, expected: str) -> None:
    """Each rule names the row number and the column, and says what to do."""
    mapping = read_mapping(write(tmp_path, HEADER + line + ",\n"))
    assert expected in mapping.problems[2]
    assert mapping.valid_rows() == []


def test_wildcard_domain_and_poly_separators(tmp_path: Path) -> None:
    """A leading '*.' domain is valid; poly ids split on ';', ',', '|' and white space."""
    mapping = read_mapping(
        write(tmp_path, HEADER + 'listener-aaaa0001,*.example.com,cert-00001,,"cert-a1, cert-a2|cert-a3 cert-a4",\n')
    )
    assert mapping.problems == {}
    assert mapping.rows[0].poly_client_certificate_ids == ("cert-a1", "cert-a2", "cert-a3", "cert-a4")


def test_conflicting_targets_make_every_such_row_invalid(tmp_path: Path) -> None:
    """One (listener, domain) asked for two targets: all those rows are invalid and point at each other."""
    text = (
        HEADER
        + "listener-aaaa0001,www.example.com,cert-00001,,,\nlistener-aaaa0001,WWW.example.com,cert-00002,,,\nlistener-aaaa0001,other.example.com,cert-00001,,,\n"
    )
    mapping = read_mapping(write(tmp_path, text))
    assert set(mapping.problems) == {2, 3}
    assert "row(s) 3" in mapping.problems[2] and "row(s) 2" in mapping.problems[3]
    assert [r.row_number for r in mapping.valid_rows()] == [4]


def test_identical_duplicates_are_sent_once(tmp_path: Path) -> None:
    """Identical requests are valid; later copies point at the first and are not sent."""
    line = "listener-aaaa0001,www.example.com,cert-00001,,,\n"
    mapping = read_mapping(write(tmp_path, HEADER + line + line + line))
    assert mapping.problems == {}
    assert mapping.duplicate_of == {3: 2, 4: 2}
    assert [r.row_number for r in mapping.valid_rows()] == [2]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Domain,CertificateId\nwww.example.com,cert-00001\n", r"lacks the column\(s\) ListenerId"),
        ("", "is empty"),
        ("ListenerId,Listener,Domain,CertificateId\n", "all mean ListenerId"),
    ],
)
def test_file_level_problems_raise(tmp_path: Path, text: str, message: str) -> None:
    """A missing required column, an empty file or a doubled column stops before any row is read."""
    with pytest.raises(MappingError, match=message):
        read_mapping(write(tmp_path, text))


def test_not_utf8_and_unknown_type_and_missing_file(tmp_path: Path) -> None:
    """A CSV that is neither UTF-8 nor GB18030, an unsupported suffix and a missing file each raise a MappingError
    that says what to do."""
    with pytest.raises(MappingError, match="not UTF-8, nor GB18030"):
        read_mapping(write(tmp_path, HEADER + "listener-aaaa0001,www.example.com,cert-1,,,Café\n", encoding="latin-1"))
    with pytest.raises(MappingError, match="unsupported file type"):
        read_mapping(write(tmp_path, HEADER, name="m.json"))
    with pytest.raises(MappingError, match="does not exist"):
        read_mapping(tmp_path / "nope.csv")


def test_xlsx_reads_as_text_and_names_sheets(tmp_path: Path) -> None:
    """An .xlsx mapping reads every cell as text (a number stays visibly wrong, never NaN); --sheet picks a sheet."""
    rows: list[list[object]] = [
        ["ListenerId", "Domain", "CertificateId", "Owner"],
        ["listener-aaaa0001", "www.example.com", "cert-00001", None],
        ["listener-aaaa0001", "api.example.com", 12345, 7],
    ]
    path = write_xlsx(tmp_path, rows, sheet="changes")
    mapping = read_mapping(path, sheet="changes")
    assert mapping.rows[0].extra == (("Owner", ""),)
    assert "is not a certificate id" in mapping.problems[3]
    assert "nan" not in repr(mapping.rows).lower()
    with pytest.raises(MappingError, match="no sheet 'other' — sheets: changes"):
        read_mapping(path, sheet="other")


def test_broken_xlsx_is_a_mapping_error(tmp_path: Path) -> None:
    """A file named .xlsx that is not a workbook is reported, not a traceback."""
    with pytest.raises(MappingError, match=r"not a readable \.xlsx"):
        read_mapping(write(tmp_path, "not a zip", name="m.xlsx"))


def test_neutralized_cells_read_back_as_their_value(tmp_path: Path) -> None:
    """A report's neutralizing quote ('=x) is removed again, so failed.csv feeds back as a mapping."""
    mapping = read_mapping(write(tmp_path, HEADER + "listener-aaaa0001,www.example.com,cert-00001,,,'=SUM(A1)\n"))
    assert dict(mapping.rows[0].extra)["Owner"] == "=SUM(A1)"
