"""Writing the files of a run: the report set (`write_reports`: REPORT_FILES in one streaming pass over the journal)
and plan.csv (`write_plan`).
"""

from __future__ import annotations

import json
import os
import shlex
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchcert.errors import ReportError
from batchcert.journal import Journal
from batchcert.live.certificates import CertificateInfo
from batchcert.live.state import PlanLine
from batchcert.mapping import file_sha256
from batchcert.model import Outcome, ProbeTarget, ServedCheck
from batchcert.report.files import (
    PLAN_FILE,
    PROBE_FILE,
    REPORT_FILES,
    Manifest,
    open_csv,
    remove_stale_temps,
    staged_files,
    write_csv,
)
from batchcert.report.records import CHUNK_ROWS, records_of, report_frames
from batchcert.report.report_workbook import ReportWorkbook
from batchcert.report.summary import render_markdown, summarize
from batchcert.report.tables import (
    FAILED_EXTRA_COLUMNS,
    PROBE_COLUMNS,
    failed_line,
    plan_columns,
    plan_line,
    probe_line,
    report_columns,
    report_line,
    rollback_columns,
    rollback_line,
    rollback_of,
)
from batchcert.report.tally import RollbackTally, Tally

#: pandas and xlsxwriter are imported when the reports are written, not with this package: a run imports them on a
#: thread while it waits on the network (batchcert.workflow), so they are off the start-up path
REPORT_LIBRARIES = ("pandas", "xlsxwriter")


@dataclass(frozen=True)
class Reports:
    """Paths of the written reports and the counts they show."""

    run_dir: Path
    counts: dict[Outcome, int]
    #: the files written (REPORT_FILES, each where it actually went: `failed-2.csv` when failed.csv was kept)
    files: tuple[Path, ...]
    #: rows that succeeded although the post-run read shows another state
    live_state_differs: tuple[int, ...] = ()
    #: (kept user file, new file): report files changed since batchcert wrote them (or with no record of it), left as
    #: they are, and where the new report went instead
    kept: tuple[tuple[Path, Path], ...] = ()
    #: `batchcert run …/failed.csv …` and `batchcert run …/rollback.csv …` on the files actually written
    failed_command: str = ""
    rollback_command: str = ""
    #: changed rows whose edge still served another certificate when the probe gave up (served false)
    not_served: int = 0

    def path_of(self, name: str) -> Path:
        """Where the report file `name` (one of REPORT_FILES) was written."""
        return self.files[REPORT_FILES.index(name)]


def write_plan(out_dir: Path, lines: Iterable[PlanLine], with_profile: bool = False) -> Path:
    """Write `out_dir/plan.csv` (PLAN_COLUMNS, one line per mapping row; with `profile` after `row` when the rows
    name their accounts) and return its path. Raises ReportError naming the path when it cannot be written."""
    plan = (plan_line(line, with_profile) for line in lines)
    return _write_table(out_dir / PLAN_FILE, plan_columns(with_profile), plan)


def write_probe(out_dir: Path, lines: Iterable[tuple[ProbeTarget, ServedCheck]]) -> Path:
    """Write `out_dir/probe.csv` (PROBE_COLUMNS: what each probed domain's edge served, `batchcert probe`) and return
    its path. Raises ReportError naming the path when it cannot be written."""
    return _write_table(out_dir / PROBE_FILE, PROBE_COLUMNS, (probe_line(t, check) for t, check in lines))


def _write_table(path: Path, columns: Sequence[str], lines: Iterable[Sequence[Any]]) -> Path:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_csv(path, columns, lines)
    except OSError as exc:
        where = exc.filename or path.parent
        raise ReportError(
            f"cannot write {where}: {exc.strerror or exc} — free space or fix permissions, or choose another --out"
        ) from None
    return path


def write_reports(journal: Journal, out_dir: Path | None = None, notes: tuple[str, ...] = ()) -> Reports:
    """(Re)write every report file of `journal`'s run directory in one streaming pass over the journal, CHUNK_ROWS
    records at a time (memory does not grow with the mapping). Each file is written beside its target and renamed
    into place at the end, so a reader sees the old set or the new one. A file the user changed since batchcert wrote
    it is never replaced: the new one goes beside it (`failed-2.csv`, see `batchcert.report.files`) and
    `Reports.kept` names both. `out_dir` defaults to the run directory; `notes` (what the journal inspection found)
    go into the summary. Raises ReportError naming the path when a file cannot be written."""
    try:
        return _write_reports(journal, out_dir or journal.run_dir, notes)
    except OSError as exc:
        where = exc.filename or out_dir or journal.run_dir
        raise ReportError(
            f"cannot write the reports to {where}: {exc.strerror or exc} — free space or fix permissions, or write "
            f"them elsewhere with `batchcert report {shlex.quote(str(journal.run_dir))} --out DIR`; the journal is intact"
        ) from None


def _run_certificates(journal: Journal) -> dict[str, CertificateInfo] | None:
    """The account's certificates as the run read them, by id; None when the run did not read them."""
    by_id = {c.certificate_id: c for c in journal.certificates()}
    return by_id or None


def _write_rows(
    journal: Journal,
    temps: dict[str, Path],
    header: list[str],
    columns: list[str],
    tally: Tally,
    rollback: RollbackTally,
    with_profile: bool = False,
) -> ReportWorkbook:
    """Every mapping row's lines, CHUNK_ROWS rows at a time: report.csv and the workbook's Rows sheet (`header`:
    `report_columns(with_profile)` and the extra columns), failed.csv (the mapping's `columns`, then
    FAILED_EXTRA_COLUMNS) and rollback.csv into `temps`, each chunk counted into `tally` and each rollback line into
    `rollback`. Returns the workbook, to be closed once the summary is known."""
    extra_names = header[len(report_columns(with_profile)) :]
    with (
        open_csv(temps["report.csv"]) as report_csv,
        open_csv(temps["failed.csv"]) as failed_csv,
        open_csv(temps["rollback.csv"]) as rollback_csv,
    ):
        report_csv.write(header)
        failed_csv.write([*columns, *FAILED_EXTRA_COLUMNS])
        rollback_csv.write(rollback_columns(with_profile))
        book = ReportWorkbook(temps["report.xlsx"], header)
        for frame in report_frames(journal, CHUNK_ROWS):
            tally.add(frame)
            for record in records_of(frame):
                line = report_line(record, extra_names, with_profile)
                report_csv.write(line)
                book.add_row(line)
                failed = failed_line(record)
                if failed is not None:
                    failed_csv.write(failed)
                undo = rollback_of(record)
                if undo is not None:
                    rollback_csv.write(rollback_line(*undo, with_profile))
                    rollback.add(*undo)
            del frame  # the next chunk is joined without this one held: one chunk in memory at a time
    return book


def _write_reports(journal: Journal, out_dir: Path, notes: tuple[str, ...]) -> Reports:
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out_dir)
    facts = journal.facts()
    with_profile = facts.get("profiles") == "true"
    own_columns = report_columns(with_profile)
    extra_names = [n for n in journal.extra_column_names() if n not in own_columns]
    header = [*own_columns, *extra_names]
    manifest = Manifest(out_dir)
    targets: dict[str, Path] = {}
    kept: list[tuple[Path, Path]] = []
    for name in REPORT_FILES:
        targets[name], passed = manifest.choose(name)
        kept += [(user_file, targets[name]) for user_file in passed]
    tally = Tally.for_columns(extra_names)
    rollback = RollbackTally(_run_certificates(journal), time.time())
    with staged_files(targets) as temps:
        book = _write_rows(
            journal, temps, header, json.loads(facts.get("columns", "[]")), tally, rollback, with_profile
        )
        summary = summarize(journal, facts, tally, rollback, targets, kept, notes)
        book.close(summary, journal.failed_attempts())
        temps["summary.json"].write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        temps["summary.md"].write_text(render_markdown(summary), encoding="utf-8")
        digests = {name: file_sha256(temps[name]) for name in REPORT_FILES}
        manifest.write({targets[name].name: digests[name] for name in REPORT_FILES}, replacing=True)
        for name in REPORT_FILES:
            if not manifest.is_ours(targets[name]):  # the user saved a file there while the reports were written
                targets[name], passed = manifest.choose(name)
                kept += [(user_file, targets[name]) for user_file in passed]
            os.replace(temps[name], targets[name])
        manifest.write({targets[name].name: digests[name] for name in REPORT_FILES}, replacing=False)
    counts = {o: tally.counts[o.value] for o in Outcome}
    return Reports(
        out_dir,
        counts,
        tuple(targets[name] for name in REPORT_FILES),
        tuple(tally.differs),
        tuple(dict.fromkeys(kept)),
        summary["failed_command"],
        summary["rollback"]["command"],
        summary["served"]["false"],
    )
