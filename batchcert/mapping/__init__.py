"""The mapping in: read a CSV or XLSX file as people really have it, match its columns, validate every row before
anything is sent (`read_mapping`). Modules, each owning one concern (imports go down this list):

- `reader`: `read_mapping`, the steps in order, from the file to a `batchcert.model.Mapping`.
- `rows`: records into validated `Row`s — every row problem's message, compare-and-swap `expected` cells,
  duplicates and conflicts; `require_rows_to_send`.
- `unread_columns`: columns batchcert does not read — certificate ids found there (a column of them, spilled ids)
  and `--ignore-column`.
- `csvfile`: a CSV's delimiter and records, and the refusal of a malformed one (by file line).
- `workbook`: a workbook's sheet, cells, hidden rows, merged ranges and formulas saved without a value (openpyxl,
  imported nowhere else in batchcert).
- `header`: where the header is (title rows above it, two- and three-row headers, merged cells), each column's name
  and letter (`Columns`), which mapping column it is, and the current → new `Layout`.
- `table`: `Table`, a file's records and what its reader learned, before the header is known.
- `files`: which reader a file needs (or why none), its SHA-256, its bytes as text (BOM, UTF-8, GB18030/GBK, UTF-16).
- `columns`: the mapping's column names and every header spelling accepted (`COLUMN_ALIASES`), `normalize_header`,
  spreadsheet column letters.
- `profiles`: which account (credential profile) each row belongs to, and the rows that makes invalid
  (`assign_profiles`).
- `places`: the places an inventory.csv asks `batchcert probe` to probe (`read_inventory_targets`).
- `cells`: what a cell may hold (id, domain and separator patterns), `restore_cell`, how a message shows a cell.

Why the `csv` module and openpyxl rather than pandas: a refused CSV must name the *line* where a stray quote opened,
which pandas' parser does not say; the bytes are decoded once (BOM, strict UTF-8, then GB18030) and parsed once, so a
100,000-row GB18030 file reads as fast as UTF-8 (pandas needs the encoding up front and re-parses on a guess); and
hidden sheets and hidden rows are workbook facts pandas drops. pandas builds the report's tables (`batchcert.report`).
"""

from batchcert.errors import MappingError
from batchcert.mapping.cells import FORMULA_PREFIXES, restore_cell
from batchcert.mapping.columns import COLUMN_ALIASES, COLUMNS, PROFILE, REQUIRED_COLUMNS, normalize_header
from batchcert.mapping.files import file_sha256
from batchcert.mapping.places import is_inventory, read_inventory_targets
from batchcert.mapping.profiles import assign_profiles
from batchcert.mapping.reader import read_mapping
from batchcert.mapping.rows import require_rows_to_send

__all__ = [
    "COLUMNS",
    "COLUMN_ALIASES",
    "FORMULA_PREFIXES",
    "PROFILE",
    "REQUIRED_COLUMNS",
    "MappingError",
    "assign_profiles",
    "file_sha256",
    "is_inventory",
    "normalize_header",
    "read_inventory_targets",
    "read_mapping",
    "require_rows_to_send",
    "restore_cell",
]
