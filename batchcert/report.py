"""Reports: views over the journal, regenerated whole at any time (also after a crash).

Files in the run directory: `report.csv` (one line per mapping row, mapping order), `report.xlsx` (Summary with a
chart, Rows filterable and colour-coded, Errors), `summary.md` (the change record a change manager signs off),
`summary.json` (the same, for automation), `failed.csv` (rows not done, in the mapping's own columns — a valid mapping
to fix and feed back), `rollback.csv` (a compare-and-swap mapping that undoes this run's changes, each only where the
place still holds what the run set).

The user's files are theirs: `reports.sha256.json` records the sha256 of every report file batchcert wrote in the
directory. A file that is there and is not what batchcert recorded (the user edited it, or an older batchcert wrote
it without a record) is never replaced: the new report goes beside it as `failed-2.csv` (the next free number), and
`Reports.kept` and the summary say so.

Spreadsheet safety (docs/gaap-api.md, "Spreadsheet safety"; OWASP CSV injection): text cells starting with `=`, `+`, `-`, `@`,
tab or CR get a leading `'` in the CSV files; in the workbook they are written as plain strings with Excel's quote
prefix, and xlsxwriter's string-to-formula and string-to-URL conversions are off. `batchcert.plan` strips the `'`
again when a report is read back as a mapping.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import json
import os
import re
import shlex
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from batchcert import classify
from batchcert.errors import ReportError
from batchcert.journal import FailedAttempt, Journal, ReportRecord, iso_utc
from batchcert.model import (
    CHANGE_REVERTED,
    DEFAULT_CERTIFICATE,
    PRECONDITION_MISMATCH,
    MappingLine,
    Outcome,
    Place,
    Row,
)
from batchcert.plan import FORMULA_PREFIXES, file_sha256, normalize_header
from batchcert.reconcile import (
    CERTIFICATE_TYPE_NAMES,
    CONFIRMED_BY_READ_BACK,
    CertificateInfo,
    PlanLine,
    Rollback,
    check_targets,
    rollback_for,
)
from batchcert.settings import DEFAULT_ENDPOINT

if TYPE_CHECKING:
    import pandas as pd

#: pandas and xlsxwriter are imported when the reports are written, not with this module: a run imports them on a
#: thread while it waits on the network (batchcert.workflow), so they are off the start-up path
REPORT_LIBRARIES = ("pandas", "xlsxwriter")

REPORT_COLUMNS = (
    "row",
    "scope",
    "proxy_id",
    "listener_id",
    "domain",
    "certificate_id",
    "client_certificate_id",
    "poly_client_certificate_ids",
    "expected_certificate_id",
    "expected_client_certificate_ids",
    "target_certificate_end_time",
    "outcome",
    "error_code",
    "error_message",
    "attempts",
    "request_id",
    "request_ids",
    "started_at",
    "finished_at",
    "duplicate_of",
    "previous_certificate_id",
    "previous_client_certificate_ids",
    "verified_certificate_id",
    "verified",
)
#: rollback.csv, a compare-and-swap mapping: `CertificateId` / `PolyClientCertificateIds` are what the run set (the
#: state the place must still be in), the New* columns what restores the state read before the change
ROLLBACK_COLUMNS = (
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
)
OUTCOME_COLOURS = {
    Outcome.SUCCEEDED: "#C6EFCE",
    Outcome.UNCHANGED: "#DDEBF7",
    Outcome.RETRYABLE: "#FFEB9C",
    Outcome.TERMINAL: "#FFC7CE",
    Outcome.INVALID: "#F4B084",
    Outcome.NOT_ATTEMPTED: "#D9D9D9",
}
DONE_OUTCOMES = (Outcome.SUCCEEDED, Outcome.UNCHANGED)
#: UTF-8 with a BOM: Excel on Windows reads it as UTF-8 (without, Chinese cells show as mojibake); every reader of
#: batchcert's files accepts it
CSV_ENCODING = "utf-8-sig"
#: failed.csv adds these after the mapping's own columns; read back as a mapping they are extra columns
FAILED_EXTRA_COLUMNS = ("source_row", "outcome", "reason")
EXCEL_CELL_CHARS = 32767
#: every file `write_reports` writes, in the order `Reports.files` lists them
REPORT_FILES = ("report.csv", "report.xlsx", "summary.md", "summary.json", "failed.csv", "rollback.csv")
#: the sha256 of every report file batchcert wrote in a directory (see the module doc)
MANIFEST_NAME = "reports.sha256.json"
#: the state a rehearsal left its emulator world in (batchcert.workflow writes it): its rollback runs there
REHEARSAL_WORLD_NAME = "rehearsal-world.json"
#: headers (as `plan.normalize_header` leaves them) of a mapping column holding the change ticket
TICKET_HEADERS = frozenset({"changeticket", "ticket", "变更单", "工单", "变更单号", "工单号"})
#: the summary lists this many rows not done (then "… and N more: see failed.csv"), rollback findings, ticket values
LISTED_ROWS = 50
LISTED_TICKETS = 20
SERVER_MOVE, CLIENT_MOVE = "server certificate", "client CAs"
MOVE_KEYS = ["kind", "from", "to", "scope"]
#: a move whose state before the run was not read (a journal that lost it)
NOT_READ = "(not read)"


def neutralize(value: Any) -> Any:
    """Prefix a text cell that a spreadsheet would evaluate with `'`; other values pass unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


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

    def path_of(self, name: str) -> Path:
        """Where the report file `name` (one of REPORT_FILES) was written."""
        return self.files[REPORT_FILES.index(name)]


def _write_atomic(path: Path, write: Any) -> None:
    """Write to a temporary file beside `path`, then rename: a reader never sees half a report."""
    tmp = _temp_beside(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


PLAN_COLUMNS = (
    "row",
    "listener_id",
    "domain",
    "action",
    "current_certificate_id",
    "current_client_certificate_ids",
    "domain_status",
    "certificate_id",
    "client_certificate_id",
    "poly_client_certificate_ids",
    "reason",
)


def write_plan(out_dir: Path, lines: Iterable[PlanLine]) -> Path:
    """Write `out_dir/plan.csv` (PLAN_COLUMNS, one line per mapping row) and return its path. Raises ReportError
    naming the path when it cannot be written."""
    path = out_dir / "plan.csv"

    def cells(line: PlanLine) -> list[Any]:
        row, live = line.row, line.live
        return [
            row.row_number,
            row.listener_id,
            row.domain,
            line.action,
            live.certificate_id if live else "",
            live.client_text if live else "",
            live.status if live else "",
            row.certificate_id,
            row.client_certificate_id,
            ";".join(row.poly_client_certificate_ids),
            line.reason,
        ]

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_csv(path, PLAN_COLUMNS, (cells(line) for line in lines))
    except OSError as exc:
        where = exc.filename or out_dir
        raise ReportError(
            f"cannot write {where}: {exc.strerror or exc} — free space or fix permissions, or choose another --out"
        ) from None
    return path


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    def write(target: Path) -> None:
        with target.open("w", newline="", encoding=CSV_ENCODING) as fh:
            out = csv.writer(fh)
            out.writerow([neutralize(h) for h in header])
            out.writerows([neutralize("" if v is None else v) for v in row] for row in rows)

    _write_atomic(path, write)


# ------------------------------------------------------------------------------------------- the user's files
def _numbered(name: str, n: int) -> str:
    """`failed.csv`, `failed-2.csv`, `failed-3.csv`, …"""
    if n == 1:
        return name
    stem, dot, suffix = name.rpartition(".")
    return f"{stem}-{n}.{suffix}" if dot else f"{name}-{n}"


class _Manifest:
    """MANIFEST_NAME in a report directory: the sha256 of each report file batchcert wrote there. A file is batchcert's
    to replace only when it holds exactly what the manifest records; anything else — edited by hand, written by an
    older batchcert that kept no record, a manifest that cannot be read — is the user's and is kept."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / MANIFEST_NAME
        self.files: dict[str, str] = {}
        #: what a write that was interrupted between the manifest and the renames may have left (either is ours)
        self.replacing: dict[str, str] = {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return  # none, or unreadable: nothing here is known to be batchcert's, so nothing is replaced
        if isinstance(data, dict):
            for key, into in (("files", self.files), ("replacing", self.replacing)):
                found = data.get(key)
                if isinstance(found, dict):
                    into.update({str(k): str(v) for k, v in found.items()})

    def is_ours(self, path: Path) -> bool:
        """True when `path` is free, or holds exactly what batchcert recorded writing there."""
        try:
            digest = file_sha256(path)
        except FileNotFoundError:
            return not path.is_symlink()
        except OSError:
            return False  # a directory, an unreadable file: not ours to replace
        return digest in (self.files.get(path.name), self.replacing.get(path.name))

    def choose(self, name: str) -> tuple[Path, list[Path]]:
        """Where the report file `name` goes: `name` itself when it is free or batchcert's, else the first
        `stem-N.suffix` that is; and the user's files passed over."""
        passed: list[Path] = []
        for n in itertools.count(1):
            candidate = self.directory / _numbered(name, n)
            if self.is_ours(candidate):
                return candidate, passed
            passed.append(candidate)
        raise AssertionError("unreachable")  # pragma: no cover

    def write(self, written: dict[str, str], replacing: bool) -> None:
        """Record `written` (file name → sha256) atomically: with `replacing`, before the files are renamed into
        place (the old digests stay valid until the files are there); else as the final record. Entries of files
        no longer there are dropped."""
        kept = {name: digest for name, digest in self.files.items() if (self.directory / name).exists()}
        if replacing:
            data = {"format": 1, "files": kept, "replacing": written}
        else:
            self.files = {**kept, **written}
            data = {"format": 1, "files": self.files}
        text = json.dumps(data, indent=2, sort_keys=True) + "\n"
        _write_atomic(self.path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


# ------------------------------------------------------------------------------------------- the streaming pass
@dataclass
class _Tally:
    """What the summary needs, counted while the rows stream past (bounded: the lists keep their first rows)."""

    rows: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)
    checked: int = 0
    verified: int = 0
    not_checked: int = 0
    pending: int = 0
    differs: list[int] = field(default_factory=list)
    #: rows whose change a lost journal record hid, found by reading the live state
    confirmed_by_read_back: list[int] = field(default_factory=list)
    #: the first LISTED_ROWS rows not done, and how many there are
    not_done: list[dict[str, Any]] = field(default_factory=list)
    not_done_total: int = 0
    #: rows whose change the service reverted; rows not sent because the place was not in the expected state
    reverted: list[int] = field(default_factory=list)
    mismatched: list[int] = field(default_factory=list)
    #: change-ticket column → its distinct values, in the order first seen
    tickets: dict[str, dict[str, None]] = field(default_factory=dict)
    #: certificate moves of each chunk of rows, grouped (kind, from, to, scope) → places
    moves: list[pd.Series] = field(default_factory=list)

    def add(self, record: ReportRecord) -> None:
        self.rows += 1
        self.counts[record.outcome] += 1
        if record.error_code:
            self.codes[record.error_code] += 1
        done = record.outcome in DONE_VALUES
        self.checked += record.verified != ""
        self.verified += done and record.verified == "true"
        self.not_checked += done and record.verified == ""
        self.pending += done and record.verified == "pending"
        if done and record.verified == "false":
            self.differs.append(record.row)
        if record.error_message == CONFIRMED_BY_READ_BACK:
            self.confirmed_by_read_back.append(record.row)
        if not done:
            self.not_done_total += 1
            if len(self.not_done) < LISTED_ROWS:
                self.not_done.append(
                    {
                        "row": record.row,
                        "scope": record.scope,
                        "listener_id": record.listener_id,
                        "domain": record.domain,
                        "outcome": record.outcome,
                        "error_code": record.error_code,
                        "error_message": record.error_message,
                    }
                )
            if record.error_code == CHANGE_REVERTED:
                self.reverted.append(record.row)
            elif record.error_code == PRECONDITION_MISMATCH:
                self.mismatched.append(record.row)
        if self.tickets:
            extra = dict(record.extra)
            for column, values in self.tickets.items():
                value = extra.get(column, "").strip()
                if value:
                    values.setdefault(value, None)

    def add_moves(self, records: Sequence[ReportRecord]) -> None:
        """The certificate moves of a chunk of records — the rows this run changed (succeeded, primary): server
        certificate from → to, and client CA lists where the row set them and they differ — grouped with pandas."""
        import pandas as pd

        moves: list[tuple[str, str, str, str]] = []
        for r in records:
            if r.outcome != Outcome.SUCCEEDED or r.duplicate_of is not None:
                continue
            before = r.previous_certificate_id if r.previous_read else NOT_READ
            if before != r.certificate_id:
                moves.append((SERVER_MOVE, before, r.certificate_id, r.scope))
            clients = r.poly_client_certificate_ids or r.client_certificate_id
            if clients:
                before = (r.previous_client_certificate_ids or "(none)") if r.previous_read else NOT_READ
                if set(before.split(";")) != set(clients.split(";")):
                    moves.append((CLIENT_MOVE, before, clients, r.scope))
        if moves:
            self.moves.append(pd.DataFrame(moves, columns=MOVE_KEYS).groupby(MOVE_KEYS).size())

    def move_table(self) -> list[dict[str, Any]]:
        """Every move with its number of places, most places first."""
        import pandas as pd

        if not self.moves:
            return []
        total = pd.concat(self.moves).groupby(level=MOVE_KEYS).sum().rename("places").reset_index()
        total = total.sort_values(["places", *MOVE_KEYS], ascending=[False, True, True, True, True])
        return [
            {"kind": str(kind), "from": str(before), "to": str(after), "scope": str(scope), "places": int(places)}
            for kind, before, after, scope, places in total.itertuples(index=False, name=None)
        ]


DONE_VALUES = frozenset(o.value for o in DONE_OUTCOMES)


@dataclass
class _RollbackTally:
    """rollback.csv's lines as they are written: how many, and which the service would refuse."""

    #: the account's certificates as the run read them (None: they were not read, the check is not possible)
    certificates: dict[str, CertificateInfo] | None
    now_s: float
    lines: int = 0
    refused: list[dict[str, Any]] = field(default_factory=list)
    refused_total: int = 0
    noted: list[dict[str, Any]] = field(default_factory=list)
    noted_total: int = 0
    #: restore targets whose SubjectCN does not name the domain: the service may refuse them (CertificateNotMatchDomain)
    #: — or accept them, when an alternative name covers the domain
    doubtful: list[dict[str, Any]] = field(default_factory=list)
    doubtful_total: int = 0

    def add(self, row: Row, undo: Rollback) -> None:
        self.lines += 1
        place = {"row": row.row_number, "scope": row.scope, "listener_id": row.listener_id, "domain": row.domain}
        if undo.note:
            self.noted_total += 1
            if len(self.noted) < LISTED_ROWS:
                self.noted.append({**place, "note": undo.note})
        if self.certificates is None:
            return
        restore = Row(
            row.row_number,
            row.listener_id,
            row.domain,
            undo.certificate_id,
            undo.client_certificate_id,
            tuple(p for p in undo.poly_client_certificate_ids.split(";") if p),
            scope=row.scope,
            proxy_id=row.proxy_id,
        )
        check = check_targets(restore, self.certificates, self.now_s, 0)
        if not check.code and check.name_mismatch:
            self.doubtful_total += 1
            if len(self.doubtful) < LISTED_ROWS:
                self.doubtful.append({**place, "restores": undo.certificate_id, "reason": check.name_mismatch})
        if check.code:
            self.refused_total += 1
            if len(self.refused) < LISTED_ROWS:
                restores = ";".join(
                    i for i in (undo.certificate_id, undo.client_certificate_id, undo.poly_client_certificate_ids) if i
                )
                self.refused.append({**place, "restores": restores, "code": check.code, "reason": check.message})


def report_line(record: ReportRecord, extra_names: Sequence[str]) -> list[Any]:
    """The report's cells for one record: REPORT_COLUMNS, then the mapping's extra columns."""
    expected = record.expected
    cells = [
        record.row,
        record.scope,
        record.proxy_id,
        record.listener_id,
        record.domain,
        record.certificate_id,
        record.client_certificate_id,
        record.poly_client_certificate_ids,
        "" if expected is None else expected.certificate_id,
        "" if expected is None else expected.client_text,
        record.target_certificate_end_time,
        record.outcome,
        record.error_code,
        record.error_message,
        record.attempts,
        record.request_id,
        record.request_ids,
        record.started_at,
        record.finished_at,
        record.duplicate_of,
        record.previous_certificate_id,
        record.previous_client_certificate_ids,
        record.verified_certificate_id,
        record.verified,
    ]
    if extra_names:
        extra = dict(record.extra)
        cells += [extra.get(n, "") for n in extra_names]
    return cells


#: report lines per pandas frame: the table is built and written a chunk at a time, so memory does not grow with the
#: mapping (a 100,000-row run is never one frame)
FRAME_ROWS = 5000


def report_frames(
    records: Iterable[ReportRecord], extra_names: Sequence[str]
) -> Iterator[tuple[list[ReportRecord], pd.DataFrame]]:
    """The report table in chunks of FRAME_ROWS lines: each chunk's records and its frame (REPORT_COLUMNS, then the
    mapping's extra columns; every cell kept as the object it is — ids stay text, blanks stay blank)."""
    import pandas as pd

    columns = [*REPORT_COLUMNS, *extra_names]
    iterator = iter(records)
    while chunk := list(itertools.islice(iterator, FRAME_ROWS)):
        frame = pd.DataFrame([report_line(r, extra_names) for r in chunk], columns=columns, dtype=object)
        yield chunk, frame


def _csv_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with every cell neutralized, every column still of objects: `DataFrame.map` would infer column types
    again, and a column of integers with blanks (`duplicate_of`) would become floats — `7.0` in the CSV."""
    import numpy as np
    import pandas as pd

    cells = np.frompyfunc(neutralize, 1, 1)(frame.to_numpy(dtype=object))
    return pd.DataFrame(cells, columns=frame.columns, dtype=object)


def write_reports(journal: Journal, out_dir: Path | None = None, notes: tuple[str, ...] = ()) -> Reports:
    """(Re)write every report file of `journal`'s run directory in one streaming pass over the journal, the table a
    pandas frame of FRAME_ROWS lines at a time (memory does not grow with the mapping). Each file is written beside
    its target and renamed into place at the end, so a reader sees the old set or the new one. A file the user
    changed since batchcert wrote it is never replaced: the new one goes beside it (`failed-2.csv`, see the module
    doc) and `Reports.kept` names both. `out_dir` defaults to the run directory; `notes` (what the journal
    inspection found) go into the summary. Raises ReportError naming the path when a file cannot be written."""
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


def _write_reports(journal: Journal, out_dir: Path, notes: tuple[str, ...]) -> Reports:
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out_dir)
    facts = journal.facts()
    extra_names = [n for n in journal.extra_column_names() if n not in REPORT_COLUMNS]
    header = [*REPORT_COLUMNS, *extra_names]
    manifest = _Manifest(out_dir)
    targets: dict[str, Path] = {}
    kept: list[tuple[Path, Path]] = []
    for name in REPORT_FILES:
        targets[name], passed = manifest.choose(name)
        kept += [(user_file, targets[name]) for user_file in passed]
    tally = _Tally(tickets={n: {} for n in extra_names if normalize_header(n) in TICKET_HEADERS})
    rollback = _RollbackTally(_run_certificates(journal), time.time())
    temps = {name: _temp_beside(targets[name]) for name in REPORT_FILES}
    try:
        with (
            temps["report.csv"].open("w", newline="", encoding=CSV_ENCODING) as report_fh,
            temps["failed.csv"].open("w", newline="", encoding=CSV_ENCODING) as failed_fh,
            temps["rollback.csv"].open("w", newline="", encoding=CSV_ENCODING) as rollback_fh,
        ):
            failed_csv, rollback_csv = _SafeCsv(failed_fh), _SafeCsv(rollback_fh)
            _SafeCsv(report_fh).write(header)
            failed_csv.write([*json.loads(facts.get("columns", "[]")), *FAILED_EXTRA_COLUMNS])
            rollback_csv.write(ROLLBACK_COLUMNS)
            book = _Workbook(temps["report.xlsx"], header)
            for records, frame in report_frames(journal.report_records(), extra_names):
                _csv_frame(frame).to_csv(report_fh, header=False, index=False, lineterminator="\r\n")
                for line in frame.itertuples(index=False, name=None):
                    book.add_row(line)
                tally.add_moves(records)
                for record in records:
                    tally.add(record)
                    if record.outcome not in DONE_VALUES:
                        failed_csv.write([*record.cells, record.row, record.outcome, record.error_message])
                    undo = _rollback_of(record)
                    if undo is not None:
                        rollback_csv.write(_rollback_line(*undo))
                        rollback.add(*undo)
        by_action, answers = journal.request_counts()
        summary = _summary(
            facts,
            tally,
            by_action,
            answers,
            journal.sessions(),
            journal.run_dir,
            journal.transient_error_counts(),
            targets,
            kept,
            rollback,
        )
        restored = facts.get("intents_restored", "")
        summary["journal_warnings"] = [*notes, *([f"the journal lost records: {restored}"] if restored else [])]
        book.close(summary, journal.failed_attempts())
        temps["summary.json"].write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        temps["summary.md"].write_text(_markdown(summary), encoding="utf-8")
        digests = {name: file_sha256(temps[name]) for name in REPORT_FILES}
        manifest.write({targets[name].name: digests[name] for name in REPORT_FILES}, replacing=True)
        for name in REPORT_FILES:
            if not manifest.is_ours(targets[name]):  # the user saved a file there while the reports were written
                targets[name], passed = manifest.choose(name)
                kept += [(user_file, targets[name]) for user_file in passed]
            os.replace(temps[name], targets[name])
        manifest.write({targets[name].name: digests[name] for name in REPORT_FILES}, replacing=False)
    finally:
        for temp in temps.values():
            temp.unlink(missing_ok=True)
    counts = {o: tally.counts[o.value] for o in Outcome}
    return Reports(
        out_dir,
        counts,
        tuple(targets[name] for name in REPORT_FILES),
        tuple(tally.differs),
        tuple(dict.fromkeys(kept)),
        summary["failed_command"],
        summary["rollback"]["command"],
    )


def _temp_beside(path: Path) -> Path:
    """A new hidden file beside `path` (`.failed.csv.<pid>.<random>`): the pid tells a later run whether the process
    that was writing it is gone (`remove_stale_temps`)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.")
    os.close(fd)
    return Path(tmp)


#: a temporary file of an earlier batchcert (no pid in its name) older than this is a killed write's
STALE_TEMP_S = 600.0


def _temp_pattern(names: Iterable[str]) -> re.Pattern[str]:
    """`.NAME.<pid>.<random>` or an earlier batchcert's `.NAME.<random>` for each name, numbered variants included
    (`.failed-2.csv.123.abcd1234`)."""
    alternatives = []
    for name in names:
        stem, dot, suffix = name.partition(".")
        alternatives.append(re.escape(stem) + r"(?:-\d+)?" + (re.escape(dot + suffix) if dot else ""))
    # mkstemp's random part: 8 of [a-z0-9_] (CPython's tempfile._RandomNameSequence) — so `.failed.csv.bak`, a
    # user's own backup, never matches
    return re.compile(r"\.(?:" + "|".join(alternatives) + r")\.(?:(?P<pid>\d+)\.)?[a-z0-9_]{8}")


def remove_stale_temps(directory: Path) -> list[Path]:
    """Remove the temporary files a killed write of a report left in `directory`: those whose process is gone, and
    pid-less ones (an earlier batchcert's) older than STALE_TEMP_S. A write still going on (its process alive, a
    `report` beside a live run) is left alone. Returns what was removed."""
    removed = []
    for path in directory.iterdir():
        found = _TEMP_NAMES.fullmatch(path.name)
        if found is None:
            continue
        if found["pid"] is not None:
            if _process_alive(int(found["pid"])):
                continue
        else:
            with contextlib.suppress(OSError):
                if time.time() - path.stat().st_mtime < STALE_TEMP_S:
                    continue
        with contextlib.suppress(OSError):
            path.unlink()
            removed.append(path)
    return removed


_TEMP_NAMES = _temp_pattern(
    (*REPORT_FILES, MANIFEST_NAME, "inventory.csv", "inventory.xlsx", "mapping.csv", "plan.csv")
)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


class _SafeCsv:
    """A CSV writer that neutralizes every formula-like text cell (see the module doc)."""

    def __init__(self, fh: Any) -> None:
        self._out = csv.writer(fh)

    def write(self, cells: Iterable[Any]) -> None:
        self._out.writerow([neutralize("" if v is None else v) for v in cells])


def _rollback_of(record: ReportRecord) -> tuple[Row, Rollback] | None:
    """For a row this run changed (succeeded, primary, its state before read): the row as the run sent it and what
    restores the ids read before the change (`default` too)."""
    if record.outcome != Outcome.SUCCEEDED or record.duplicate_of is not None or not record.previous_read:
        return None
    row = Row(
        record.row,
        record.listener_id,
        record.domain,
        record.certificate_id,
        record.client_certificate_id,
        tuple(p for p in record.poly_client_certificate_ids.split(";") if p),
        scope=record.scope,
        proxy_id=record.proxy_id,
    )
    previous_clients = tuple(p for p in record.previous_client_certificate_ids.split(";") if p)
    return row, rollback_for(row, record.previous_certificate_id, previous_clients)


def _rollback_line(row: Row, undo: Rollback) -> list[Any]:
    """rollback.csv's line (ROLLBACK_COLUMNS) for `row`: compare-and-swap — the place must still hold what the run
    set (`CertificateId`, and the client CAs it set when the rollback changes client CAs) — to the ids read before."""
    changes_clients = bool(undo.client_certificate_id or undo.poly_client_certificate_ids)
    run_set_clients = ";".join(row.poly_client_certificate_ids) or row.client_certificate_id
    return [
        row.scope,
        row.proxy_id,
        row.listener_id,
        row.domain,
        row.certificate_id,
        run_set_clients if changes_clients else "",
        undo.certificate_id,
        undo.client_certificate_id,
        undo.poly_client_certificate_ids,
        row.row_number,
        undo.note,
    ]


# ------------------------------------------------------------------------------------------------- the summary
def _summary(
    facts: dict[str, str],
    tally: _Tally,
    by_action: dict[str, int],
    answers: dict[str, int],
    sessions: list[dict[str, Any]],
    run_dir: Path,
    transient: dict[str, int],
    targets: dict[str, Path],
    kept: list[tuple[Path, Path]],
    rollback: _RollbackTally,
) -> dict[str, Any]:
    started = sessions[0]["started_at"] if sessions else None
    finished = sessions[-1]["finished_at"] if sessions else None
    counts = {o.value: tally.counts[o.value] for o in Outcome}
    failed_name = targets["failed.csv"].name
    return {
        "mapping": facts.get("mapping", ""),
        "mapping_sha256": facts.get("mapping_sha256", ""),
        "mapping_changed": facts.get("mapping_changed", ""),
        "endpoint": facts.get("endpoint", ""),
        "secret_id": facts.get("secret_id_masked", ""),
        "rehearsal": facts.get("rehearsal", "") == "true",
        "started_at": iso_utc(started),
        "finished_at": iso_utc(finished),
        "duration_s": round(finished - started, 3) if started and finished else None,
        "rows": tally.rows,
        "counts": counts,
        "error_codes": dict(tally.codes.most_common()),
        #: failed requests of rows that ended done (retried past), by code: not in error_codes
        "transient_errors": transient,
        #: target certificates expiring within --min-validity-days, or why they could not be checked
        "certificate_warnings": [
            *json.loads(facts.get("certificate_warnings") or "[]"),
            *([f"certificate pre-flight {facts['certificate_check']}"] if facts.get("certificate_check") else []),
        ],
        # an unknown code is terminal (never retried blindly); naming it lets the table grow by one line
        "codes_not_in_table": sorted(c for c in tally.codes if not classify.in_table(c)),
        "requests": by_action,
        "answers": answers,
        #: every session with who ran it and with which SecretId (an earlier journal: the run's)
        "sessions": [
            {
                "kind": s["kind"],
                "started_at": iso_utc(s["started_at"]),
                "finished_at": iso_utc(s["finished_at"]),
                "status": s["status"],
                "note": s["note"],
                "operator": s.get("operator") or facts.get("operator", ""),
                "secret_id": s.get("secret_id_masked") or facts.get("secret_id_masked", ""),
            }
            for s in sessions
        ],
        "all_done": all(n == 0 for o, n in counts.items() if o not in DONE_VALUES),
        "next_steps": next_steps(run_dir, counts, facts, targets["failed.csv"]),
        "failed_command": failed_run_command(run_dir, facts, targets["failed.csv"]),
        "interrupted": bool(sessions) and sessions[-1]["status"] in ("interrupted", "died"),
        "operator": facts.get("operator", ""),
        "batchcert_version": facts.get("batchcert_version", ""),
        "sheet": facts.get("sheet", ""),
        "encoding": facts.get("encoding", ""),
        "settings": sessions[-1]["settings"] if sessions else {},
        "journal_lost_records": tally.confirmed_by_read_back,
        "verification": {
            "checked": tally.checked,
            "verified": tally.verified,
            "not_checked": tally.not_checked,
            "pending": tally.pending,
            "succeeded_but_live_state_differs": tally.differs,
        },
        #: the report files as written (a name → where it went) and the user's files kept instead of replaced
        "files": {name: targets[name].name for name in REPORT_FILES},
        "kept_files": [{"kept": user.name, "written": new.name} for user, new in dict.fromkeys(kept)],
        #: server certificate and client CA list moves over the rows this run changed
        "certificate_moves": tally.move_table(),
        "not_done": {
            "total": tally.not_done_total,
            "rows": tally.not_done,
            "more": tally.not_done_total - len(tally.not_done),
            "file": failed_name,
        },
        "reverted": tally.reverted,
        "precondition_mismatch": tally.mismatched,
        "change_tickets": [
            {"column": column, "values": list(values)[:LISTED_TICKETS], "more": max(len(values) - LISTED_TICKETS, 0)}
            for column, values in tally.tickets.items()
        ],
        "rollback": {
            "file": targets["rollback.csv"].name,
            "rows": rollback.lines,
            "command": rollback_run_command(run_dir, facts, targets["rollback.csv"]),
            "targets_checked": rollback.certificates is not None,
            "refused": rollback.refused,
            "refused_total": rollback.refused_total,
            "notes": rollback.noted,
            "notes_total": rollback.noted_total,
            "doubtful": rollback.doubtful,
            "doubtful_total": rollback.doubtful_total,
        },
    }


def _cell(value: Any) -> str:
    """A markdown table cell: one line, `|` escaped."""
    return " ".join(str(value).split()).replace("|", "\\|")


def _code(value: Any) -> str:
    """Inline code that survives backticks in the value."""
    text = " ".join(str(value).split())
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def _row_list(rows: Sequence[int]) -> str:
    shown = ", ".join(str(r) for r in rows[:LISTED_ROWS])
    return shown + (f" and {len(rows) - LISTED_ROWS} more" if len(rows) > LISTED_ROWS else "")


def _reason(line: dict[str, Any]) -> str:
    code, message = line.get("error_code", ""), line.get("error_message", "")
    return f"{code}: {message}" if code and message else code or message


def _markdown(summary: dict[str, Any]) -> str:
    name = Path(summary["mapping"]).name or "mapping"
    lines = [f"# batchcert: {name}, {summary['started_at']} – {summary['finished_at']}", ""]
    if summary["interrupted"]:
        lines += ["**INTERRUPTED: the last session was stopped before it finished — see What to do next.**", ""]
    if summary["rehearsal"]:
        lines += ["**REHEARSAL against the embedded emulator — nothing changed on Tencent Cloud.**", ""]
    source = "".join(
        f", {label} {summary[key]}" for label, key in (("sheet", "sheet"), ("encoding", "encoding")) if summary[key]
    )
    settings = ", ".join(f"{k} {v}" for k, v in summary["settings"].items() if k != "endpoint")
    lines += [
        f"- Run by {summary['operator'] or 'unknown'} with batchcert {summary['batchcert_version'] or 'unknown'}",
        f"- Mapping: `{summary['mapping']}` (sha256 `{summary['mapping_sha256']}`{source})",
    ]
    for ticket in summary["change_tickets"]:
        values = ", ".join(_code(v) for v in ticket["values"]) or "(empty)"
        more = f" and {ticket['more']} more" if ticket["more"] else ""
        lines.append(f"- Change ticket (column {_code(ticket['column'])}): {values}{more}")
    lines += [
        f"- Settings: {settings or 'none recorded'}",
        f"- Endpoint: {summary['endpoint']}  ·  SecretId: `{summary['secret_id']}`",
        f"- Started {summary['started_at']}, finished {summary['finished_at']}",
        f"- Rows: {summary['rows']}  ·  requests: "
        + (", ".join(f"{k} {v}" for k, v in summary["requests"].items()) or "none"),
    ]
    if summary["mapping_changed"]:
        lines.append(f"- **Note:** {summary['mapping_changed']}")
    for kept in summary["kept_files"]:
        lines.append(
            f"- **Note:** `{kept['kept']}` was changed since batchcert wrote it (or batchcert has no record of "
            f"writing it): it is kept as it is, and this report's version is `{kept['written']}`"
        )
    for note in summary.get("journal_warnings", []):
        lines += ["", f"**WARNING: {note}**"]
    for note in summary["certificate_warnings"]:
        lines += ["", f"**Certificate warning: {note}**"]
    if summary["journal_lost_records"]:
        rows = ", ".join(str(r) for r in summary["journal_lost_records"])
        lines += [
            "",
            f"**WARNING: the journal lost records: rows {rows} were changed by this run but their attempts were not "
            f"in the journal; the live state confirms each change (they are in {summary['rollback']['file']}).**",
        ]
    check = summary["verification"]
    if check["succeeded_but_live_state_differs"]:
        rows = ", ".join(str(r) for r in check["succeeded_but_live_state_differs"])
        lines += [
            "",
            f"**WARNING: rows {rows} succeeded but the live state read after the run shows something else "
            "— check them in the console before signing off.**",
        ]
    if summary["reverted"]:
        lines += [
            "",
            f"**WARNING: the service accepted and then reverted the change of row(s) {_row_list(summary['reverted'])} "
            f"({CHANGE_REVERTED}): they are not done (retryable) — `batchcert rerun` reads them and sends them again.**",
        ]
    if summary["precondition_mismatch"]:
        lines += [
            "",
            f"**WARNING: row(s) {_row_list(summary['precondition_mismatch'])} were not sent: the place no longer held "
            f"the certificate the file expected ({PRECONDITION_MISMATCH}) — someone changed it since the file was "
            "made.**",
        ]
    lines.append(
        f"- Verified against the live state after the run: {check['verified']} row(s) at their target"
        + (f", {check['not_checked']} done row(s) not checked" if check["not_checked"] else "")
        + (
            f", {check['pending']} still changing when last read (verified `pending`: `batchcert rerun` reads again)"
            if check["pending"]
            else ""
        )
    )
    lines += ["", "| outcome | rows |", "|---|---:|"]
    lines += [f"| {k} | {v} |" for k, v in summary["counts"].items()]
    if summary["error_codes"]:
        lines += ["", "| error code | rows |", "|---|---:|"]
        lines += [f"| {_cell(k)} | {v} |" for k, v in summary["error_codes"].items()]
    if summary["transient_errors"]:
        got_past = ", ".join(f"{k} {v}" for k, v in summary["transient_errors"].items())
        lines += ["", f"Transient errors the run got past (retried; not in the table above): {got_past}"]
    if summary["codes_not_in_table"]:
        codes = ", ".join(f"`{c}`" for c in summary["codes_not_in_table"])
        lines += [
            "",
            f"Codes not in batchcert's classification table (treated by their family, else terminal): {codes}",
        ]
    lines += _sessions_markdown(summary["sessions"])
    lines += _moves_markdown(summary["certificate_moves"])
    lines += _not_done_markdown(summary["not_done"])
    lines += _rollback_markdown(summary["rollback"])
    if summary["all_done"]:
        lines += ["", "Every row succeeded or was unchanged.", ""]
        return "\n".join(lines)
    lines += ["", "## What to do next", ""]
    lines += [f"- {step}" for step in summary["next_steps"]]
    lines.append("")
    return "\n".join(lines)


def _sessions_markdown(sessions: list[dict[str, Any]]) -> list[str]:
    lines = ["", "## Sessions", "", "| # | kind | started | finished | status | operator | SecretId |"]
    lines.append("|---:|---|---|---|---|---|---|")
    for n, s in enumerate(sessions, start=1):
        cells = (s["kind"], s["started_at"], s["finished_at"], s["status"], s["operator"] or "unknown")
        secret = f"`{_cell(s['secret_id'])}`" if s["secret_id"] else ""
        lines.append(f"| {n} | " + " | ".join(_cell(c) for c in cells) + f" | {secret} |")
    return lines


def _moves_markdown(moves: list[dict[str, Any]]) -> list[str]:
    lines = ["", "## Certificate moves", ""]
    if not moves:
        return [*lines, "This run changed no certificate."]
    lines += ["| kind | from | to | scope | places |", "|---|---|---|---|---:|"]
    lines += [
        f"| {m['kind']} | {_cell(m['from'])} | {_cell(m['to'])} | {_cell(m['scope'])} | {m['places']} |" for m in moves
    ]
    return lines


def _not_done_markdown(not_done: dict[str, Any]) -> list[str]:
    if not not_done["total"]:
        return []
    lines = ["", f"## Rows not done ({not_done['total']})", ""]
    lines += ["| row | listener | domain | outcome | reason |", "|---:|---|---|---|---|"]
    lines += [
        f"| {r['row']} | {_cell(r['listener_id'])} | {_cell(r['domain'] or '(listener)')} | {r['outcome']} | "
        f"{_cell(_reason(r))} |"
        for r in not_done["rows"]
    ]
    if not_done["more"]:
        lines += ["", f"… and {not_done['more']} more: see {not_done['file']}"]
    return lines


def _rollback_markdown(rollback: dict[str, Any]) -> list[str]:
    lines = ["", "## Rollback", ""]
    if not rollback["rows"]:
        return [*lines, "Nothing to roll back: this run changed no row."]
    lines += [
        f"`{rollback['file']}` puts back the certificates read before the change on the {rollback['rows']} row(s) "
        "this run changed — each only where the place still holds what this run set (compare-and-swap):",
        "",
        f"    {rollback['command']}",
    ]
    if not rollback["targets_checked"]:
        lines += [
            "",
            "The restore targets could not be checked: the run did not read the account's certificates "
            "(DescribeCertificates).",
        ]
    elif rollback["refused_total"]:
        lines += _md_place_table(
            f"The service would refuse to roll back {rollback['refused_total']} row(s): what they restore cannot be "
            "installed now.",
            ["restores", "reason"],
            [[r["restores"], f"{r['code']}: {r['reason']}"] for r in rollback["refused"]],
            rollback["refused"],
            rollback["refused_total"],
        )
    elif not rollback["doubtful_total"]:
        lines += ["", "Every restore target exists, has the right type, has not expired and names its domain."]
    if rollback["doubtful_total"]:
        lines += _md_place_table(
            f"The service may refuse to roll back {rollback['doubtful_total']} row(s): the certificate they restore "
            "does not name the domain in its SubjectCN (an alternative name may cover it; the service decides).",
            ["restores", "reason"],
            [[r["restores"], r["reason"]] for r in rollback["doubtful"]],
            rollback["doubtful"],
            rollback["doubtful_total"],
        )
    if rollback["notes_total"]:
        lines += _md_place_table(
            f"{rollback['notes_total']} rollback line(s) cannot restore the previous state exactly:",
            ["note"],
            [[r["note"]] for r in rollback["notes"]],
            rollback["notes"],
            rollback["notes_total"],
        )
    return lines


def _md_place_table(
    title: str, more_columns: list[str], more_cells: list[list[Any]], places: list[dict[str, Any]], total: int
) -> list[str]:
    """A bold title and a table of rows of the run — row, listener, domain (a listener row's is "(listener)"), then
    `more_columns` — listing `places` of `total` ("… and N more" when the list was cut)."""
    lines = ["", f"**{title}**", "", "| row | listener | domain | " + " | ".join(more_columns) + " |"]
    lines.append("|---:|---|---|" + "---|" * len(more_columns))
    for place, cells in zip(places, more_cells, strict=True):
        shown = [str(place["row"]), _cell(place["listener_id"]), _cell(place["domain"] or "(listener)")]
        lines.append("| " + " | ".join(shown + [_cell(c) for c in cells]) + " |")
    if total > len(places):
        lines += ["", f"… and {total - len(places)} more"]
    return lines


# ------------------------------------------------------------------------------------------------- the commands
def run_command(mapping: Path, facts: dict[str, str], world: Path | None = None) -> str:
    """`batchcert run MAPPING` aimed where the run went (shell-quoted): `--endpoint` when it was not the default;
    for a rehearsal the emulator — `world` when given, else the run's world file, else `--emulator` (a row of a
    rehearsal must not go to the live API)."""
    command = f"batchcert run {shlex.quote(str(mapping))}"
    # a column the run passed through deliberately is still in failed.csv and rollback.csv
    for name in json.loads(facts.get("ignore_columns") or "[]"):
        command += f" --ignore-column {shlex.quote(str(name))}"
    if facts.get("profile") and facts.get("rehearsal") != "true":
        command += f" --profile {shlex.quote(facts['profile'])}"
    if facts.get("rehearsal") == "true":
        where = str(world) if world is not None else facts.get("world", "")
        return command + (f" --world {shlex.quote(where)}" if where else " --emulator")
    endpoint = facts.get("endpoint", "")
    return command + (f" --endpoint {shlex.quote(endpoint)}" if endpoint and endpoint != DEFAULT_ENDPOINT else "")


def failed_run_command(run_dir: Path, facts: dict[str, str], failed: Path | None = None) -> str:
    """`batchcert run RUN_DIR/failed.csv` (or `failed`, the file actually written) aimed where the run went:
    `--endpoint` when it was not the default, the same rehearsal world for a rehearsal."""
    return run_command(failed or run_dir / "failed.csv", facts)


def rollback_run_command(run_dir: Path, facts: dict[str, str], rollback: Path | None = None) -> str:
    """`batchcert run RUN_DIR/rollback.csv` (or `rollback`, the file actually written) aimed where the run went: for
    a rehearsal, the world the rehearsal left (RUN_DIR/rehearsal-world.json) — the state to roll back."""
    left = run_dir / REHEARSAL_WORLD_NAME
    return run_command(rollback or run_dir / "rollback.csv", facts, left if left.is_file() else None)


def next_steps(
    run_dir: Path, counts: dict[str, int], facts: dict[str, str] | None = None, failed: Path | None = None
) -> list[str]:
    """The rows not done, grouped by what to do, each with the exact command (the run directory shell-quoted);
    `failed` is the failed.csv actually written (default RUN_DIR/failed.csv)."""
    where = shlex.quote(str(run_dir))
    failed = failed or run_dir / "failed.csv"
    steps = []
    if counts[Outcome.RETRYABLE] or counts[Outcome.NOT_ATTEMPTED]:
        n = counts[Outcome.RETRYABLE] + counts[Outcome.NOT_ATTEMPTED]
        steps.append(
            f"{n} retryable or not attempted: run `batchcert rerun {where}` (later, or once the cause is fixed)"
        )
    if counts[Outcome.TERMINAL]:
        steps.append(
            f"{counts[Outcome.TERMINAL]} terminal: fix the cause named in `error_message` (the ids, a permission), then "
            f"run `batchcert rerun {where} --include-terminal`"
        )
    if counts[Outcome.INVALID]:
        steps.append(
            f"{counts[Outcome.INVALID]} invalid (never sent): fix them in {failed.name} (the `reason` column says what), "
            f"then run `{failed_run_command(run_dir, facts or {}, failed)}`"
        )
    return steps


# ------------------------------------------------------------------------------------------------------ inventory
#: the first columns of inventory.csv, exactly these names in this order (README, "Rotate a certificate")
INVENTORY_COLUMNS = (
    "scope",
    "proxy_id",
    "listener_id",
    "domain",
    "certificate_id",
    "client_certificate_ids",
    "effective_certificate_id",
    "certificate_end_time",
    "days_to_expiry",
    "certificate_alias",
    "subject_cn",
    "proxy_name",
    "proxy_status",
    "group_id",
    "listener_name",
    "port",
    "status",
)
#: the columns of the mapping `inventory --replace` writes (a mapping `batchcert run` takes as it is), compare-and-swap:
#: `CertificateId` / `PolyClientCertificateIds` are what the place uses now (as the inventory read it), the New*
#: columns what it moves to — so a rotation never overwrites a place changed since the inventory
ROTATION_COLUMNS = (
    "Scope",
    "ProxyId",
    "ListenerId",
    "Domain",
    "CertificateId",
    "PolyClientCertificateIds",
    "NewCertificateId",
    "NewPolyClientCertificateIds",
)
CERTIFICATE_COLUMNS = ("certificate_id", "alias", "type", "subject_cn", "end_time", "days_to_expiry", "places")


class UnsearchedConnection(Protocol):
    """What the inventory could not search (`inventory.NotSearched`): a proxy or group (`scope` "proxy" or "group")
    whose listeners — or, with `listener_id`, the domains of one listener on it — could not be read."""

    @property
    def scope(self) -> str: ...
    @property
    def proxy_id(self) -> str: ...
    @property
    def group_id(self) -> str: ...
    @property
    def listener_id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def reason(self) -> str: ...


def write_inventory(
    out_dir: Path,
    places: Sequence[Place],
    certificates: dict[str, CertificateInfo],
    now_s: float,
    not_searched: Sequence[UnsearchedConnection] = (),
) -> tuple[Path, Path]:
    """Write `inventory.csv` (INVENTORY_COLUMNS, one line per HTTPS listener and per domain) and `inventory.xlsx`
    (the same, plus the certificates by expiry with the number of places each is used). First come the lines of
    what could not be searched — `not_searched` (`inventory.Estate.not_searched`): one per connection, `scope` proxy or group, its ids, its name and status (`proxy_name`, `proxy_status`), and in
    `status` the refusal's code and message. Raises ReportError naming the path when they cannot be written."""
    holes = not_searched

    def days(cert_id: str) -> int | str:
        found = certificates.get(cert_id)
        return int((found.end_time_s - now_s) // 86400) if found and found.end_time_s else ""

    def cells(place: Place) -> list[Any]:
        found = certificates.get(place.effective_certificate_id)
        return [
            place.scope,
            place.proxy_id,
            place.listener_id,
            place.domain,
            place.certificate_id,
            ";".join(place.client_certificate_ids),
            place.effective_certificate_id,
            iso_utc(found.end_time_s, "seconds") if found else "",
            days(place.effective_certificate_id),
            found.alias if found else "",
            found.subject_cn if found else "",
            place.proxy_name,
            place.proxy_status,
            place.group_id,
            place.listener_name,
            "" if place.port is None else place.port,
            place.status,
        ]

    def hole_cells(hole: UnsearchedConnection) -> list[Any]:
        line: dict[str, Any] = dict.fromkeys(INVENTORY_COLUMNS, "")
        line |= {
            "scope": hole.scope,
            "proxy_id": hole.proxy_id,
            "listener_id": hole.listener_id,
            "proxy_name": hole.name,
            "proxy_status": hole.status,
            "group_id": hole.group_id,
            "status": hole.reason,
        }
        return list(line.values())

    uses: Counter[str] = Counter()
    for place in places:
        uses.update({place.effective_certificate_id, *place.client_certificate_ids} - {"", DEFAULT_CERTIFICATE})
    by_expiry = sorted(certificates.values(), key=lambda c: (c.end_time_s or float("inf"), c.certificate_id))
    table = [hole_cells(hole) for hole in holes] + [cells(place) for place in places]
    certificate_table = [
        [
            c.certificate_id,
            c.alias,
            CERTIFICATE_TYPE_NAMES.get(c.type, str(c.type)),
            c.subject_cn,
            iso_utc(c.end_time_s, "seconds"),
            days(c.certificate_id),
            uses[c.certificate_id],
        ]
        for c in by_expiry
    ]
    csv_path, xlsx_path = out_dir / "inventory.csv", out_dir / "inventory.xlsx"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_csv(csv_path, INVENTORY_COLUMNS, table)
        _write_atomic(
            xlsx_path,
            lambda tmp: _write_sheets(
                tmp, {"Inventory": (INVENTORY_COLUMNS, table), "Certificates": (CERTIFICATE_COLUMNS, certificate_table)}
            ),
        )
    except OSError as exc:
        raise ReportError(
            f"cannot write the inventory to {exc.filename or out_dir}: {exc.strerror or exc} — choose another --out"
        ) from None
    return csv_path, xlsx_path


def write_rotation(out_dir: Path, lines: Sequence[MappingLine]) -> Path:
    """Write `mapping.csv` (ROTATION_COLUMNS, compare-and-swap) for `batchcert run`."""
    path = out_dir / "mapping.csv"
    rows = [
        [
            ln.scope,
            ln.proxy_id,
            ln.listener_id,
            ln.domain,
            ln.current_certificate_id,
            ";".join(ln.current_client_certificate_ids),
            ln.certificate_id,
            ";".join(ln.poly_client_certificate_ids),
        ]
        for ln in lines
    ]
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_csv(path, ROTATION_COLUMNS, rows)
    except OSError as exc:
        raise ReportError(f"cannot write {path}: {exc.strerror or exc} — choose another --out") from None
    return path


def _write_sheets(path: Path, sheets: dict[str, tuple[Sequence[str], list[list[Any]]]]) -> None:
    """A workbook of plain tables: a bold frozen header, filters, sized columns; text never turned into formulas."""
    import xlsxwriter

    book = xlsxwriter.Workbook(
        str(path), {"strings_to_formulas": False, "strings_to_urls": False, "strings_to_numbers": False}
    )
    bold, quoted = book.add_format({"bold": True}), book.add_format({"quote_prefix": True})
    for name, (header, table) in sheets.items():
        ws = book.add_worksheet(name)
        for c, title in enumerate(header):
            ws.write_string(0, c, title, bold)
            ws.set_column(c, c, COLUMN_WIDTHS.get(title, 16))
        for r, line in enumerate(table, start=1):
            for c, value in enumerate(line):
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    ws.write_number(r, c, value)
                elif value != "":
                    text = str(value)
                    ws.write_string(r, c, text, quoted if text.startswith(FORMULA_PREFIXES) else None)
        ws.freeze_panes(1, 0)
        ws.autofilter(0, 0, max(len(table), 1), len(header) - 1)
    book.close()


#: report.xlsx column widths (characters) so that ids and timestamps show whole; others get 14
COLUMN_WIDTHS = {
    "row": 7,
    "listener_id": 22,
    "domain": 30,
    "certificate_id": 16,
    "client_certificate_id": 18,
    "poly_client_certificate_ids": 28,
    "expected_certificate_id": 22,
    "expected_client_certificate_ids": 28,
    "target_certificate_end_time": 22,
    "outcome": 14,
    "error_code": 34,
    "error_message": 60,
    "attempts": 9,
    "request_id": 38,
    "request_ids": 40,
    "started_at": 25,
    "finished_at": 25,
    "duplicate_of": 12,
    "previous_certificate_id": 22,
    "previous_client_certificate_ids": 28,
    "verified_certificate_id": 22,
    "verified": 10,
    "scope": 9,
    "proxy_id": 16,
    "effective_certificate_id": 22,
    "client_certificate_ids": 28,
    "certificate_end_time": 22,
    "subject_cn": 24,
    "end_time": 22,
}
ERRORS_COLUMN_WIDTHS = {"kind": 18, "row": 7, "action": 24, "at": 25, "code": 40, "message": 70, "request_id": 38}


class _Workbook:
    """report.xlsx written as the rows stream past (xlsxwriter's constant_memory mode: each row goes to disk when
    the next begins): Summary (with a chart), Rows (filterable, colour-coded, header frozen), Errors."""

    def __init__(self, path: Path, header: Sequence[str]) -> None:
        import xlsxwriter

        self._book = xlsxwriter.Workbook(
            str(path),
            {
                "constant_memory": True,
                "strings_to_formulas": False,
                "strings_to_urls": False,
                "strings_to_numbers": False,
            },
        )
        self._bold = self._book.add_format({"bold": True})
        self._quoted = self._book.add_format({"quote_prefix": True})
        self._summary_ws = self._book.add_worksheet("Summary")
        self._rows_ws = self._book.add_worksheet("Rows")
        self._errors_ws = self._book.add_worksheet("Errors")
        self._header = list(header)
        for c, name in enumerate(header):
            self._put(self._rows_ws, 0, c, name, self._bold)
            self._rows_ws.set_column(c, c, COLUMN_WIDTHS.get(name, 14))
        #: `verified` is written as a real boolean (TRUE/FALSE) where it is one
        self._verified_col = self._header.index("verified")
        self._rows = 0

    def _put(self, sheet: Any, r: int, c: int, value: Any, fmt: Any = None) -> None:
        if value is None:
            sheet.write_blank(r, c, None, fmt)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            sheet.write_number(r, c, value, fmt)
        else:
            text = str(value)
            if len(text) > EXCEL_CELL_CHARS:  # Excel's limit; the CSV report keeps the whole value
                text = text[: EXCEL_CELL_CHARS - 20] + " …[truncated]"
            sheet.write_string(r, c, text, self._quoted if text.startswith(FORMULA_PREFIXES) else fmt)

    def add_row(self, line: Sequence[Any]) -> None:
        """One report line on the Rows sheet (hot loop: plain strings go straight to write_string)."""
        self._rows += 1
        r, write_string = self._rows, self._rows_ws.write_string
        for c, value in enumerate(line):
            if c == self._verified_col and value in ("true", "false"):
                self._rows_ws.write_boolean(r, c, value == "true")
            elif (
                type(value) is str
                and value
                and not value.startswith(FORMULA_PREFIXES)
                and len(value) <= EXCEL_CELL_CHARS
            ):
                write_string(r, c, value)
            elif value != "":
                self._put(self._rows_ws, r, c, value)

    def close(self, summary: dict[str, Any], failed: Iterable[FailedAttempt]) -> None:
        self._finish_rows()
        self._write_summary(summary)
        self._write_errors(failed)
        self._book.close()

    def _finish_rows(self) -> None:
        ws, last = self._rows_ws, max(self._rows, 1)
        ws.freeze_panes(1, 0)
        ws.autofilter(0, 0, last, len(self._header) - 1)
        col = self._header.index("outcome")
        for outcome, colour in OUTCOME_COLOURS.items():
            ws.conditional_format(
                1,
                col,
                last,
                col,
                {
                    "type": "cell",
                    "criteria": "==",
                    "value": f'"{outcome.value}"',
                    "format": self._book.add_format({"bg_color": colour}),
                },
            )

    def _write_summary(self, summary: dict[str, Any]) -> None:
        ws, bold = self._summary_ws, self._bold
        ws.set_column(0, 0, 24)
        ws.set_column(1, 1, 70)
        settings = ", ".join(f"{k} {v}" for k, v in summary["settings"].items() if k != "endpoint")
        top = [
            ("Run by", f"{summary['operator']} with batchcert {summary['batchcert_version']}"),
            ("Mapping", summary["mapping"]),
            ("Mapping sha256", summary["mapping_sha256"]),
            ("Sheet", summary["sheet"] or "(CSV)"),
            ("Encoding", summary["encoding"]),
            ("Settings", settings or "none recorded"),
            ("Endpoint", summary["endpoint"]),
            ("SecretId", summary["secret_id"]),
            ("Started", summary["started_at"]),
            ("Finished", summary["finished_at"]),
            ("Rows", summary["rows"]),
            ("Verified after the run", summary["verification"]["verified"]),
            ("Transient errors got past", sum(summary["transient_errors"].values())),
            (
                "Rollback command",
                summary["rollback"]["command"] if summary["rollback"]["rows"] else "nothing to roll back",
            ),
            *(("Next step", step) for step in summary["next_steps"]),
        ]
        for ticket in reversed(summary["change_tickets"]):
            more = f" and {ticket['more']} more" if ticket["more"] else ""
            values = ", ".join(ticket["values"]) or "(empty)"
            top.insert(2, ("Change ticket", f"{values}{more} (column {ticket['column']})"))
        for kept in summary["kept_files"]:
            top.append(
                (
                    "Kept file",
                    f"{kept['kept']} was changed since batchcert wrote it: this report's is {kept['written']}",
                )
            )
        if summary["precondition_mismatch"]:
            rows = _row_list(summary["precondition_mismatch"])
            top.insert(0, ("WARNING", f"rows {rows} were not sent: the place no longer held the expected certificate"))
        if summary["reverted"]:
            rows = _row_list(summary["reverted"])
            top.insert(0, ("WARNING", f"the service reverted the change of rows {rows}: retryable, rerun sends them"))
        if summary["interrupted"]:
            top.insert(0, ("INTERRUPTED", "the last session was interrupted: rows not attempted are listed below"))
        if summary["verification"]["succeeded_but_live_state_differs"]:
            differs = ", ".join(str(r) for r in summary["verification"]["succeeded_but_live_state_differs"])
            top.insert(0, ("WARNING", f"rows {differs} succeeded but the live state shows something else"))
        if summary["rehearsal"]:
            top.insert(0, ("REHEARSAL", "embedded emulator — nothing changed on Tencent Cloud"))
        for r, (k, v) in enumerate(top):
            ws.write_string(r, 0, k, bold)
            self._put(ws, r, 1, v)
        base = len(top) + 1
        ws.write_string(base, 0, "Outcome", bold)
        ws.write_string(base, 1, "Rows", bold)
        for i, (k, v) in enumerate(summary["counts"].items(), start=1):
            ws.write_string(base + i, 0, k)
            ws.write_number(base + i, 1, v)
        chart = self._book.add_chart({"type": "column"})
        chart.add_series(
            {
                "name": "Rows per outcome",
                "categories": ["Summary", base + 1, 0, base + len(summary["counts"]), 0],
                "values": ["Summary", base + 1, 1, base + len(summary["counts"]), 1],
            }
        )
        chart.set_legend({"none": True})
        ws.insert_chart(1, 3, chart)
        codes_at = base + len(summary["counts"]) + 2
        ws.write_string(codes_at, 0, "Error code", bold)
        ws.write_string(codes_at, 1, "Rows", bold)
        for i, (k, v) in enumerate(summary["error_codes"].items(), start=1):
            self._put(ws, codes_at + i, 0, k)
            ws.write_number(codes_at + i, 1, v)
        at = codes_at + len(summary["error_codes"]) + 2
        sessions = summary["sessions"]
        at = self._table(
            at,
            "Sessions",
            ["#", "kind", "started", "finished", "status", "operator", "SecretId"],
            [
                [n, s["kind"], s["started_at"], s["finished_at"], s["status"], s["operator"], s["secret_id"]]
                for n, s in enumerate(sessions, start=1)
            ],
        )
        moves = summary["certificate_moves"]
        at = self._table(
            at,
            "Certificate moves",
            [*MOVE_KEYS, "places"],
            [[m["kind"], m["from"], m["to"], m["scope"], m["places"]] for m in moves],
            "this run changed no certificate",
        )
        not_done = summary["not_done"]
        if not_done["total"]:
            at = self._table(
                at,
                f"Rows not done ({not_done['total']})",
                ["row", "listener_id", "domain", "outcome", "reason"],
                [[r["row"], r["listener_id"], r["domain"], r["outcome"], _reason(r)] for r in not_done["rows"]],
                more=f"… and {not_done['more']} more: see {not_done['file']}" if not_done["more"] else "",
            )
        rollback = summary["rollback"]
        if rollback["rows"] and not rollback["targets_checked"]:
            ws.write_string(at, 0, "Rollback refused", bold)
            ws.write_string(at, 1, "not checked: the run did not read the account's certificates")
            at += 2
        elif rollback["rows"]:
            at = self._table(
                at,
                f"Rollback refused ({rollback['refused_total']})",
                ["row", "listener_id", "domain", "restores", "reason"],
                [
                    [r["row"], r["listener_id"], r["domain"], r["restores"], f"{r['code']}: {r['reason']}"]
                    for r in rollback["refused"]
                ],
                "every restore target exists, has the right type and has not expired",
            )
            if rollback["doubtful_total"]:
                at = self._table(
                    at,
                    f"Rollback may be refused ({rollback['doubtful_total']})",
                    ["row", "listener_id", "domain", "restores", "reason"],
                    [
                        [r["row"], r["listener_id"], r["domain"], r["restores"], r["reason"]]
                        for r in rollback["doubtful"]
                    ],
                    "",
                )
        if rollback["notes_total"]:
            self._table(
                at,
                f"Rollback notes ({rollback['notes_total']})",
                ["row", "listener_id", "domain", "note"],
                [[r["row"], r["listener_id"], r["domain"], r["note"]] for r in rollback["notes"]],
            )

    def _table(
        self, at: int, title: str, header: Sequence[str], rows: list[list[Any]], empty: str = "", more: str = ""
    ) -> int:
        """A titled table on the Summary sheet from row `at`; returns the row after it and a blank line."""
        ws = self._summary_ws
        ws.write_string(at, 0, title, self._bold)
        if not rows:
            if empty:
                ws.write_string(at, 1, empty)
            return at + 2
        for c, name in enumerate(header):
            ws.write_string(at + 1, c, name, self._bold)
        for r, line in enumerate(rows, start=at + 2):
            for c, value in enumerate(line):
                self._put(ws, r, c, value)
        at += len(rows) + 2
        if more:
            ws.write_string(at, 0, more)
            at += 1
        return at + 1

    def _write_errors(self, failed: Iterable[FailedAttempt]) -> None:
        """Why rows are not done (final errors first), the pre-flight's findings, then every failed request with
        `kind` saying whether the run got past it (transient)."""
        ws = self._errors_ws
        headers = ["kind", "row", "action", "at", "code", "message", "request_id", "latency_ms"]
        for c, name in enumerate(headers):
            ws.write_string(0, c, name, self._bold)
            ws.set_column(c, c, ERRORS_COLUMN_WIDTHS.get(name, 14))
        r = 0
        for r, a in enumerate(failed, start=1):
            line = (a.kind, a.row, a.action, a.sent_at, a.code, a.message, a.request_id, a.latency_ms)
            for c, value in enumerate(line):
                self._put(ws, r, c, value)
        ws.freeze_panes(1, 0)
        ws.autofilter(0, 0, max(r, 1), len(headers) - 1)
