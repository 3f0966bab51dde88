"""A mapping file as bytes: which reader it needs (`detect_file_kind`: its first bytes, then its suffix; formats no
reader here understands are refused, saying what to save them as), its SHA-256, and its text (`decode`).

Files arrive as Excel, WPS and LibreOffice write them: CSV in UTF-8 (with or without BOM), UTF-16 ("Unicode Text",
tab-separated) or GB18030/GBK. The bytes are decoded once: a byte-order mark decides; else strict UTF-8; else
GB18030; `--encoding` overrides the guess.
"""

from __future__ import annotations

import codecs
import enum
import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path

from batchcert.errors import MappingError

CSV_SUFFIXES = (".csv", ".txt", ".tsv")
XLSX_SUFFIXES = (".xlsx", ".xlsm")
#: spreadsheet formats no reader here understands, and what they are (the message says what to save them as)
OTHER_SPREADSHEETS = {
    ".xls": "an Excel 97-2003 workbook (.xls)",
    ".ods": "an OpenDocument spreadsheet (.ods)",
    ".et": "a WPS spreadsheet (.et)",
    ".numbers": "a Numbers spreadsheet",
}
SAVE_AS = "open it in Excel, WPS or LibreOffice and save it as .xlsx (Excel Workbook) or as 'CSV UTF-8'"
ZIP_SIGNATURE = b"PK\x03\x04"
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


class FileKind(enum.Enum):
    """Which reader a mapping file needs."""

    CSV = "csv"
    XLSX = "xlsx"


@dataclass(frozen=True)
class DecodedText:
    """A CSV's text, the codec it was decoded with (as `codecs.lookup` names it) and how that codec was chosen, as
    the encoding note ends (" (--encoding)", " (no byte-order mark)" or "")."""

    text: str
    codec: str
    how: str

    @property
    def note(self) -> str:
        """The `note:` line that says which encoding was read."""
        return f"encoding {_ENCODING_NAMES.get(self.codec, self.codec.upper())}{self.how}"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def detect_file_kind(path: Path, notes: list[str]) -> FileKind:
    """Which reader the file needs: its first bytes decide, then its suffix. Raises MappingError for anything else,
    saying what to save it as."""
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
        raise MappingError(f"mapping {name} is {OTHER_SPREADSHEETS[suffix]} — {SAVE_AS}, and pass that file")
    if head.startswith(_OLE2_SIGNATURE):
        raise MappingError(
            f"mapping {name} is an Excel 97-2003 workbook (.xls) or a password-protected workbook — {SAVE_AS} "
            "(without a password), and pass that file"
        )
    if head.startswith(ZIP_SIGNATURE):
        inside = _zip_kind(path)
        if inside == "ods":
            raise MappingError(f"mapping {name} is {OTHER_SPREADSHEETS['.ods']} — {SAVE_AS}, and pass that file")
        if inside == "xlsx" and suffix not in XLSX_SUFFIXES:
            notes.append(f"{name} is an Excel workbook, not a CSV: read as .xlsx — rename it {path.stem}.xlsx")
            return FileKind.XLSX
        if suffix not in XLSX_SUFFIXES:
            raise MappingError(f"mapping {name} is a ZIP archive, not a CSV or .xlsx file — pass the mapping itself")
    if suffix in XLSX_SUFFIXES:
        return FileKind.XLSX  # openpyxl says what is wrong with a file that is no workbook
    if suffix in CSV_SUFFIXES:
        return FileKind.CSV
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


def decode(raw: bytes, encoding: str | None, label: str) -> DecodedText:
    """The bytes as text, decoded once: a byte-order mark decides; else strict UTF-8; else GB18030 (which includes
    GBK and GB2312, what Excel and WPS write for "CSV" on a Chinese Windows). `encoding` overrides the guess."""
    if encoding is not None:
        try:
            codec = codecs.lookup(encoding).name
        except LookupError:
            raise MappingError(
                f"unknown encoding {encoding!r} — name one such as utf-8, gb18030, utf-16, big5, shift_jis or cp1252"
            ) from None
        return DecodedText(_decode_as(raw, codec, label, "--encoding").removeprefix("\ufeff"), codec, " (--encoding)")
    for bom, codec in _BOMS:
        if raw.startswith(bom):
            return DecodedText(_decode_as(raw, codec, label, "its byte-order mark"), codec, "")
    guess = _utf16_without_bom(raw)
    if guess is not None:
        return DecodedText(_decode_as(raw, guess, label, "its zero bytes"), guess, " (no byte-order mark)")
    try:
        return DecodedText(raw.decode("utf-8"), "utf-8", "")
    except UnicodeDecodeError:
        pass
    try:
        return DecodedText(raw.decode("gb18030"), "gb18030", "")
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
