"""What the commands print, on stdout (`out`: results, the files written) and stderr (`err`: notes, warnings, the
preview and its prompt, errors): the messages, the plan's table and count line, a run's summary, the inventory's
findings. rich is used here and in `cli.progress` only."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from batchcert.errors import BatchcertError
from batchcert.live.state import PlanAction

if TYPE_CHECKING:
    from pathlib import Path

    from batchcert.model import Mapping
    from batchcert.report import Reports
    from batchcert.workflow import InventoryResult, PlanResult, Preview, ProbeResult, RunSummary

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def fail(exc: BatchcertError) -> typer.Exit:
    """Print a run-level error; the exit (its code) for the command to raise."""
    err.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True)
    return typer.Exit(exc.exit_code)


def print_notes(notes: tuple[str, ...]) -> None:
    """What the mapping reader decided (encoding, sheet, header row, hidden rows), one `note:` line each."""
    for note in notes:
        err.print(f"note: {note}", highlight=False, markup=False)


def print_validation(checked: Mapping) -> None:
    """`validate`'s report: the reader's notes, every problem with its row number, and the counts."""
    print_notes(checked.notes)
    for problem in checked.problems.values():
        out.print(problem, highlight=False, markup=False)
    dupes = len(checked.duplicate_of)
    summary = (
        f"{len(checked.rows)} rows: {len(checked.rows) - len(checked.problems)} valid, {len(checked.problems)} invalid"
    )
    if dupes:
        summary += f", {dupes} identical duplicate(s) (sent once, reported for each)"
    out.print(summary, highlight=False)


SHOWN_PROBLEMS = 50


def confirm_on_terminal(yes: bool) -> Callable[[Preview], bool]:
    """The `confirm` of `run` and `rerun`: show the preview, then ask — unless `--yes`, or stdin is no terminal."""

    def confirm(preview: Preview) -> bool:
        print_notes(preview.notes)
        for warning in preview.warnings:
            err.print(f"[yellow]warning:[/] {warning}", highlight=False)
        for problem in preview.problems[:SHOWN_PROBLEMS]:
            err.print(f"invalid, not sent: {problem}", highlight=False, markup=False)
        if len(preview.problems) > SHOWN_PROBLEMS:
            err.print(
                f"… and {len(preview.problems) - SHOWN_PROBLEMS} more invalid rows (see the report)", highlight=False
            )
        sheet = f", sheet {preview.sheet}" if preview.sheet else ""
        for line in (
            f"Mapping:   {preview.source}{sheet}",
            f"Rows:      {preview.rows} — {preview.to_send} to send on {preview.listeners} listener(s), "
            f"{preview.invalid} invalid, {preview.duplicates} duplicate(s)",
            f"Duration:  at least {duration_text(preview.estimate_s)} at the API's rate",
            f"Endpoint:  {preview.endpoint}",
            f"SecretId:  {preview.secret_id_masked}",
            f"Run dir:   {preview.run_dir}",
        ):
            err.print(line, highlight=False, markup=False)
        if preview.rehearsal:
            err.print("[bold]Rehearsal: nothing will change on Tencent Cloud.[/]")
        if yes or not sys.stdin.isatty():
            return True
        return bool(typer.confirm("Send these changes?", default=False, err=True))

    return confirm


def duration_text(seconds: float) -> str:
    """1h02m, 3m10s, 42s."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else (f"{minutes}m{secs:02d}s" if minutes else f"{secs}s")


def print_summary(summary: RunSummary) -> None:
    """How a run ended: the counts, what went wrong, where the reports are, and the command to run next."""
    from batchcert.model import Outcome

    if summary.rehearsal:
        out.print("[bold]REHEARSAL against the embedded emulator — nothing changed on Tencent Cloud.[/]")
    counts = ", ".join(f"{o.value} {summary.counts[o]}" for o in Outcome)
    out.print(f"Rows: {counts}", highlight=False)
    if summary.reports.live_state_differs:
        rows = ", ".join(str(r) for r in summary.reports.live_state_differs)
        err.print(
            f"[bold red]WARNING:[/] rows {rows} succeeded but the live state read after the run shows something "
            "else — check them before signing off",
            highlight=False,
        )
    if summary.reports.not_served:
        err.print(
            f"[bold red]WARNING:[/] the edge still served another certificate for {summary.reports.not_served} "
            f"changed row(s) (served false, listed in summary.md) — `{summary.rerun_command}` probes them again",
            highlight=False,
        )
    if summary.stop_reason:
        label = "interrupted" if summary.interrupted else "stopped"
        err.print(f"[bold red]{label}:[/] {summary.stop_reason}", highlight=False)
    reports = summary.reports
    others = ", ".join(
        reports.path_of(name).name for name in ("report.xlsx", "summary.md", "failed.csv", "rollback.csv")
    )
    out.print(f"Report: {reports.path_of('report.csv')} (and {others})", highlight=False, markup=False)
    print_kept(reports)
    if summary.counts[Outcome.RETRYABLE] or summary.counts[Outcome.NOT_ATTEMPTED]:
        out.print(f"To continue: {summary.rerun_command}", highlight=False)
    if summary.counts[Outcome.TERMINAL]:
        out.print(
            f"Terminal rows need a fix first (see error_message in the report); then: "
            f"{summary.rerun_command} --include-terminal",
            highlight=False,
        )
    if summary.counts[Outcome.INVALID]:
        out.print(
            f"Invalid rows were never sent: fix them in {reports.path_of('failed.csv').name}, then: "
            f"{summary.failed_command}",
            highlight=False,
            markup=False,
        )


def print_kept(reports: Reports) -> None:
    """Say which report files were left as the user changed them, and where the new ones went."""
    for kept, written in reports.kept:
        err.print(
            f"note: {kept.name} is not the file batchcert last wrote there (edited by hand, or left by an older "
            f"batchcert) — kept as it is; this report's is {written.name}",
            highlight=False,
            markup=False,
        )


def print_report(written: Reports) -> None:
    """`report`'s answer: the counts, the files kept as the user changed them, every file written."""
    from batchcert.model import Outcome

    out.print(", ".join(f"{o.value} {written.counts[o]}" for o in Outcome), highlight=False)
    print_kept(written)
    for path in written.files:
        out.print(str(path), highlight=False)


PLAN_TABLE_ROWS = 50
#: plan's count line: (plan actions, what they are called), in order; every action once, so the counts add up to the
#: mapping's rows
PLAN_COUNT_WORDS = (
    ((PlanAction.CHANGE, PlanAction.CHANGING), "to change"),
    ((PlanAction.UNCHANGED,), "unchanged"),
    ((PlanAction.REFUSED,), "refused by the certificate pre-flight"),
    ((PlanAction.MISMATCH,), "moved since the file was made"),
    ((PlanAction.WRONG_PROXY,), "on another proxy"),
    ((PlanAction.NOT_FOUND,), "not found"),
    ((PlanAction.INVALID,), "invalid"),
    ((PlanAction.UNKNOWN,), "unreadable"),
)


def print_plan(result: PlanResult) -> None:
    """`plan`'s answer: the reader's notes, a table of the first PLAN_TABLE_ROWS rows that are not unchanged, the
    count line and where plan.csv is."""
    from rich.table import Table

    print_notes(result.notes)
    table = Table("row", "listener", "domain", "action", "current", "target", "reason")
    shown = [line for line in result.lines if line.action is not PlanAction.UNCHANGED][:PLAN_TABLE_ROWS]
    for line in shown:
        row, live = line.row, line.live
        clients = row.client_certificate_id or ";".join(row.poly_client_certificate_ids)
        target = row.certificate_id + (f" / {clients}" if clients else "")
        current = (live.certificate_id + (f" / {live.client_text}" if live.client_text else "")) if live else ""
        table.add_row(str(row.row_number), row.listener_id, row.domain, line.action, current, target, line.reason)
    if shown:
        out.print(table)
    hidden = sum(1 for line in result.lines if line.action is not PlanAction.UNCHANGED) - len(shown)
    if hidden > 0:
        out.print(f"… {hidden} more in {result.path}", highlight=False)
    out.print(plan_count_line(result.counts, len(result.lines), result.duplicates), highlight=False)
    out.print(f"Plan: {result.path}", highlight=False)


def plan_count_line(counts: dict[PlanAction, int], rows: int, duplicates: int) -> str:
    """`N to change, M unchanged, …` for every row of the mapping (empty kinds after the first two left out), and
    how many of them are identical duplicates counted with their first row."""
    totals = [(sum(counts[action] for action in actions), words) for actions, words in PLAN_COUNT_WORDS]
    parts = [f"{n} {words}" for i, (n, words) in enumerate(totals) if i < 2 or n > 0]
    dupes = f", {duplicates} of them identical duplicates counted with their first row" if duplicates else ""
    return ", ".join(parts) + f" — {rows} row(s){dupes}"


def print_probe(found: ProbeResult) -> None:
    """`probe`'s answer: domains per `served` value, what was not probed, and where probe.csv is."""
    from batchcert.model import Served

    counts = ", ".join(f"{served.value or 'not probed'} {found.counts.get(served, 0)}" for served in Served)
    out.print(f"Served: {counts}", highlight=False)
    if found.skipped:
        out.print(f"Not probed: {found.skipped} row(s) without a domain (listener rows)", highlight=False)
    if found.counts.get(Served.FALSE):
        err.print(
            f"[bold red]WARNING:[/] {found.counts[Served.FALSE]} domain(s) serve another certificate than the file "
            "expects — see probe.csv",
            highlight=False,
        )
    out.print(f"Report: {found.path}", highlight=False, markup=False)


def print_inventory(found: InventoryResult, world: Path | None, endpoint: str | None, profiles: Sequence[str]) -> None:
    """`inventory`'s answer: what it could not search, what it found (in every account it read), the rotation, the
    files, the next commands (aimed at the estate it read: `world`, `endpoint`, the `profiles` given — several are
    named by mapping.csv's Profile column instead) and, when incomplete, what to do."""
    holes = found.not_searched
    for hole in holes:
        err.print(
            f"not searched: {hole} {hole.name!r} ({hole.status}) — {hole.action} answered {hole.reason}",
            highlight=False,
            markup=False,
        )
    connections = len({(hole.scope, hole.connection_id) for hole in holes})
    missing = f" — {connections} connection(s) not searched" if holes else ""
    accounts = f" in {len(found.profiles)} accounts ({', '.join(found.profiles)})" if found.profiles else ""
    out.print(
        f"{found.listeners} HTTPS listener(s), {found.domains} domain(s), {found.certificates} certificate(s)"
        f"{accounts}{missing}",
        highlight=False,
        markup=False,
    )
    named = ", ".join(str(hole) for hole in holes)
    if found.rotation is not None:
        r = found.rotation
        out.print(
            f"To replace: {r.domain_server} domain server certificate(s), {r.listener_server} listener server "
            f"certificate(s), {r.client_lists} client CA list(s) — {len(r.lines)} mapping row(s)"
            + (f"; not searched: {named}" if holes else ""),
            highlight=False,
            markup=False,
        )
    for path in found.files:
        out.print(str(path), highlight=False, markup=False)
    if found.rotation is not None and found.rotation.lines:
        # the next commands read the same estate the inventory read: its world, endpoint and profile
        where = [str(found.files[-1])]
        # one account's profile is the mapping's; several accounts' are each line's own (its Profile column)
        profile = profiles[0] if profiles and not found.profiles else None
        for flag, value in (("--world", world), ("--endpoint", endpoint), ("--profile", profile)):
            if value is not None:
                where += [flag, str(value)]
        args = shlex.join(where)
        out.print(f"Next: batchcert plan {args}, then batchcert run {args}", highlight=False, markup=False)
    if holes:
        err.print(
            f"incomplete: {connections} connection(s) not searched ({named}) — inventory.csv lists each with the code "
            "and message that refused it; what is on them is not in the inventory"
            + (" nor in mapping.csv" if found.rotation is not None else "")
            + f". To search them: {found.advice}, then run inventory again.",
            highlight=False,
            markup=False,
        )


def print_emulator_ready(credentials: dict[str, tuple[str, str]], url: str) -> None:
    """Where the emulator listens, and how to aim batchcert at it: each account's credential (account "" for a
    one-account world: the variables; else a credentials-file section per account, for a Profile column)."""
    out.print(f"GAAP emulator listening on {url}", highlight=False)
    if list(credentials) == [""]:
        secret_id, secret_key = credentials[""]
        out.print(
            f"  export TENCENTCLOUD_SECRET_ID={secret_id} TENCENTCLOUD_SECRET_KEY={secret_key}",
            highlight=False,
        )
        out.print(f"  batchcert run MAPPING --endpoint {url}", highlight=False)
        return
    for account, (secret_id, secret_key) in credentials.items():
        out.print(
            f"  account {account}: export TENCENTCLOUD_SECRET_ID={secret_id} TENCENTCLOUD_SECRET_KEY={secret_key}",
            highlight=False,
            markup=False,
        )
    out.print("  ~/.tencentcloud/credentials, a section per account:", highlight=False)
    for account, (secret_id, secret_key) in credentials.items():
        out.print(f"    [{account}] secret_id = {secret_id}  secret_key = {secret_key}", highlight=False, markup=False)
    out.print(
        f"  batchcert run MAPPING --endpoint {url}   (a Profile column names each row's account)", highlight=False
    )
