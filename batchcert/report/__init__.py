"""Every file batchcert writes for the user: the reports (views over the journal, regenerated whole at any time, also
after a crash), plan.csv, and the inventory's files.

The report set in a run directory: `report.csv` (one line per mapping row, mapping order), `report.xlsx` (Summary
with a chart, Rows filterable and colour-coded, Errors), `summary.md` (the change record a change manager signs off),
`summary.json` (the same, for automation), `failed.csv` (rows not done, in the mapping's own columns — a valid mapping
to fix and feed back), `rollback.csv` (a compare-and-swap mapping that undoes this run's changes, each only where the
place still holds what the run set), and `reports.sha256.json` (so that a file the user changed is never replaced:
the new one goes beside it as `failed-2.csv`, and `Reports.kept` and the summary say so).

Modules:
- `files`: writing any file — atomic writes, the safe CSV writer (formula cells neutralized, utf-8-sig), the
  user's files (`Manifest`, reports.sha256.json, `failed-2.csv`), stale temporary files; the output file names.
- `workbook`: writing any xlsx workbook (the only importer of xlsxwriter): safe cells, headers, filters, widths.
- `records`: the report's records — the journal's tables of a range of rows joined with pandas (`pd.merge`) into one
  `ReportRecord` per mapping row, a chunk of rows at a time (`report_frames`, `report_records`).
- `tables`: the columns of report.csv, failed.csv, rollback.csv, plan.csv and probe.csv and one line of each.
- `tally`: what the summary counts while the chunks stream past (pandas, a frame at a time), and the rollback checks.
- `summary`: summary.json's content and summary.md.
- `commands`: the `batchcert` commands the reports tell the user to run next.
- `report_workbook`: report.xlsx's sheets (Summary, Rows, Errors).
- `artifacts`: `write_reports` (the report set, one streaming pass over the journal), `write_plan` and
  `write_probe` (`batchcert probe`'s probe.csv).
- `inventory_files`: inventory.csv, inventory.xlsx and the rotation's mapping.csv.

pandas and xlsxwriter are imported when a file is written or records are joined, not with this package
(REPORT_LIBRARIES).
"""

from batchcert.report.artifacts import REPORT_LIBRARIES, Reports, write_plan, write_probe, write_reports
from batchcert.report.commands import (
    REHEARSAL_WORLD_NAME,
    failed_run_command,
    next_steps,
    rollback_run_command,
    run_command,
)
from batchcert.report.files import CSV_ENCODING, MANIFEST_NAME, REPORT_FILES, remove_stale_temps
from batchcert.report.inventory_files import (
    CERTIFICATE_COLUMNS,
    INVENTORY_COLUMNS,
    ROTATION_COLUMNS,
    UnsearchedConnection,
    write_inventory,
    write_rotation,
)
from batchcert.report.records import ReportRecord, report_records
from batchcert.report.tables import FAILED_EXTRA_COLUMNS, PLAN_COLUMNS, REPORT_COLUMNS, ROLLBACK_COLUMNS

__all__ = [
    "CERTIFICATE_COLUMNS",
    "CSV_ENCODING",
    "FAILED_EXTRA_COLUMNS",
    "INVENTORY_COLUMNS",
    "MANIFEST_NAME",
    "PLAN_COLUMNS",
    "REHEARSAL_WORLD_NAME",
    "REPORT_COLUMNS",
    "REPORT_FILES",
    "REPORT_LIBRARIES",
    "ROLLBACK_COLUMNS",
    "ROTATION_COLUMNS",
    "ReportRecord",
    "Reports",
    "UnsearchedConnection",
    "failed_run_command",
    "next_steps",
    "remove_stale_temps",
    "report_records",
    "rollback_run_command",
    "run_command",
    "write_inventory",
    "write_plan",
    "write_probe",
    "write_reports",
    "write_rotation",
]
