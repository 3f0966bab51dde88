"""What the commands give back to the CLI: the preview shown before sending, and how each command ended — with the
exit code it maps to (README, "Exit codes")."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from batchcert.errors import ExitCode, exit_code_for_signal
from batchcert.inventory import NotSearched, Rotation
from batchcert.live.state import NOT_DONE_PLAN_ACTIONS, PENDING_PLAN_ACTIONS, PlanAction, PlanLine
from batchcert.model import DONE_OUTCOMES, Outcome, Served
from batchcert.report import Reports


@dataclass(frozen=True)
class Preview:
    """What will be sent, shown before asking the operator."""

    source: str
    rows: int
    to_send: int
    invalid: int
    duplicates: int
    #: distinct listeners the rows to send are on
    listeners: int
    #: the least time sending can take (runner.estimate_run_s), s
    estimate_s: float
    #: the .xlsx sheet read ("" for a CSV)
    sheet: str
    endpoint: str
    secret_id_masked: str
    rehearsal: bool
    run_dir: Path
    warnings: tuple[str, ...]
    #: why rows are invalid ("row 17: CertificateId is empty — …"), in mapping order
    problems: tuple[str, ...] = ()
    #: what the mapping reader decided (encoding, sheet, header row, hidden rows)
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunSummary:
    """How a run ended, for the CLI to print and map to an exit code."""

    run_dir: Path
    counts: dict[Outcome, int]
    stop_reason: str
    rehearsal: bool
    interrupted: bool
    reports: Reports
    rerun_command: str
    #: `batchcert run RUN_DIR/failed.csv` aimed where the run went
    failed_command: str = ""
    #: the stop signal that interrupted the run (None: none, or not known)
    signal_received: int | None = None

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return exit_code_for_signal(self.signal_received)
        done = all(n == 0 for o, n in self.counts.items() if o not in DONE_OUTCOMES)
        # a change the service applied that the edge does not serve is not signed off (README, "What the edge serves")
        return ExitCode.OK if done and not self.reports.not_served else ExitCode.ROWS_NOT_DONE


@dataclass(frozen=True)
class PlanResult:
    """What would happen per mapping row, counts per action, and the plan.csv path."""

    lines: list[PlanLine]
    counts: dict[PlanAction, int]
    path: Path
    #: what the mapping reader decided (encoding, sheet, header row, hidden rows)
    notes: tuple[str, ...] = ()
    #: identical duplicates among `lines` (each counted with its first row's action)
    duplicates: int = 0

    @property
    def exit_code(self) -> int:
        """0 nothing would change; 1 some row would not be done (invalid, absent, unreadable, refused, moved since
        the file was made, on another proxy); 4 changes are pending (README, "Exit codes")."""
        if any(self.counts[action] for action in NOT_DONE_PLAN_ACTIONS):
            return ExitCode.ROWS_NOT_DONE
        return ExitCode.CHANGES_PENDING if any(self.counts[a] for a in PENDING_PLAN_ACTIONS) else ExitCode.OK


@dataclass(frozen=True)
class InventoryResult:
    """What the inventory found and wrote: places per scope, the rotation (when asked) and the files."""

    listeners: int
    domains: int
    certificates: int
    rotation: Rotation | None
    files: tuple[Path, ...]
    #: connections (or listeners) it could not search, named in inventory.csv; and what to do about them
    not_searched: tuple[NotSearched, ...] = ()
    advice: str = ""
    #: the accounts it read when they were several (by profile, in order; the counts and the rotation are their
    #: sums); empty when it read one
    profiles: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProbeResult:
    """What `batchcert probe` found: places per `Served` value, what was not probed at all (listener lines, rows
    without a domain), and probe.csv."""

    counts: dict[Served, int]
    skipped: int
    path: Path

    @property
    def exit_code(self) -> int:
        """1 when an edge served another certificate than the file expects (README, "What the edge serves")."""
        return ExitCode.ROWS_NOT_DONE if self.counts.get(Served.FALSE) else ExitCode.OK
