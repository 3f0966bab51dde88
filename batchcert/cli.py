"""The command line: parse, build a request, call one core function in `batchcert.workflow`, print, map errors to
exit codes (`batchcert.errors`). typer and rich are used here only. Heavy modules (pandas, aiohttp) are imported
inside the commands so that `batchcert --help` stays fast.
"""

from __future__ import annotations

import contextlib
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console

from batchcert.errors import BatchcertError, ExitCode, exit_code_for_interrupt
from batchcert.settings import (
    DEFAULT_ENDPOINT,
    DEFAULT_LISTENER_WAIT_S,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MIN_VALIDITY_DAYS,
    DEFAULT_RATE_PER_S,
    DEFAULT_TIMEOUT_S,
    ENV_SECRET_ID,
    ENV_SECRET_KEY,
    ENV_TOKENS,
    SettingFlags,
)

if TYPE_CHECKING:
    from datetime import datetime

    from batchcert.model import Progress
    from batchcert.report import Reports
    from batchcert.workflow import Preview, RunSummary

app = typer.Typer(
    help="Change the certificates of many Tencent Cloud GAAP listener domains at once, with a reconciliation report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def _print_version(value: bool) -> None:
    if value:
        from batchcert import __version__

        out.print(f"batchcert {__version__}", highlight=False)
        raise typer.Exit(ExitCode.OK)


def _log_decisions(verbose: bool) -> None:
    if verbose:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)


_VERBOSE_HELP = "Log scheduling decisions as they happen: rate cuts, pacing, retry budget, clock."
#: -v/--verbose before the command (`batchcert -v run …`) or after it (`batchcert run … -v`): the same
VerboseOpt = Annotated[
    bool, typer.Option("--verbose", "-v", help=_VERBOSE_HELP, callback=_log_decisions, expose_value=False)
]


@app.callback()
def options(
    version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit.", callback=_print_version, is_eager=True),
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help=_VERBOSE_HELP)] = False,
) -> None:
    """Change the certificates of many Tencent Cloud GAAP listener domains at once, with a reconciliation report."""
    _log_decisions(verbose)


MappingArg = Annotated[
    Path,
    typer.Argument(
        help="The mapping: .csv/.tsv/.txt (UTF-8, UTF-16 or GB18030; ',' ';' or TAB) or .xlsx.",
        show_default=False,
        metavar="MAPPING",
    ),
]
SheetOpt = Annotated[
    str | None, typer.Option("--sheet", help="The .xlsx sheet to read (default: the only visible one).")
]
EncodingOpt = Annotated[
    str | None, typer.Option("--encoding", help="The CSV's encoding, e.g. gbk or big5 (default: detected).")
]
HiddenRowsOpt = Annotated[
    bool, typer.Option("--include-hidden-rows", help="Also send rows hidden or filtered out in the workbook.")
]
NoPreflightOpt = Annotated[
    bool, typer.Option("--no-preflight", help="Skip reading each listener's live state before sending.")
]
NoVerifyOpt = Annotated[bool, typer.Option("--no-verify", help="Skip reading the live state again after the run.")]
ListenerWaitOpt = Annotated[
    float | None,
    typer.Option(
        "--listener-wait",
        help=f"Seconds a row waits out a busy listener or a changing domain (not counted as attempts) "
        f"[default: {DEFAULT_LISTENER_WAIT_S:g}].",
        show_default=False,
    ),
]
#: settings a rerun takes from what the run recorded when not given (batchcert.settings.resolve_settings)
EndpointOpt = Annotated[
    str | None,
    typer.Option(
        help=f"API endpoint; international site: https://gaap.intl.tencentcloudapi.com; http only for loopback "
        f"[default: {DEFAULT_ENDPOINT}; rerun: what the run recorded].",
        show_default=False,
    ),
]
RateOpt = Annotated[
    float | None,
    typer.Option(
        help=f"Ceiling in requests/s per action per credential [default: {DEFAULT_RATE_PER_S:g}; rerun: recorded].",
        show_default=False,
    ),
]
TimeoutOpt = Annotated[
    float | None,
    typer.Option(
        help=f"Per-request timeout in seconds [default: {DEFAULT_TIMEOUT_S:g}; rerun: recorded].", show_default=False
    ),
]
MaxAttemptsOpt = Annotated[
    int | None,
    typer.Option(help=f"Attempts per row [default: {DEFAULT_MAX_ATTEMPTS}; rerun: recorded].", show_default=False),
]
CaBundleOpt = Annotated[
    Path | None, typer.Option("--ca-bundle", help="PEM file of extra trusted CAs (a corporate TLS proxy).")
]
MinValidityOpt = Annotated[
    float | None,
    typer.Option(
        "--min-validity-days",
        help=f"A target certificate expiring within this many days is a warning "
        f"[default: {DEFAULT_MIN_VALIDITY_DAYS:g}; rerun: recorded].",
        show_default=False,
    ),
]
ForceOpt = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Send although another run on this machine is changing some of the same places (it is named).",
    ),
]
IgnoreColumnOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--ignore-column",
        metavar="NAME",
        help="Pass this column through although its cells look like certificate ids (its header as the file spells "
        "it, or its letter; repeatable).",
    ),
]


#: the end of `--help` of every command that signs requests (docs/gaap-api.md, "Credentials")
CREDENTIALS_EPILOG = (
    f"Credentials: {ENV_SECRET_ID} and {ENV_SECRET_KEY} (temporary keys: also {ENV_TOKENS[0]}), or --profile NAME "
    "from ~/.tencentcloud/credentials or ~/.tccli/NAME.credential. The secret key is never a flag. A rehearsal "
    "(--emulator/--world) needs none."
)


def _fail(exc: BatchcertError) -> typer.Exit:
    err.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True)
    return typer.Exit(exc.exit_code)


def _print_notes(notes: tuple[str, ...]) -> None:
    for note in notes:
        err.print(f"note: {note}", highlight=False, markup=False)


@app.command()
def validate(
    mapping: MappingArg,
    sheet: SheetOpt = None,
    encoding: EncodingOpt = None,
    include_hidden_rows: HiddenRowsOpt = False,
    ignore_column: IgnoreColumnOpt = None,
    _verbose: VerboseOpt = False,
) -> None:
    """List every problem in a mapping with its row number; exit 0 when clean, 2 when not."""
    from batchcert.model import MappingSource
    from batchcert.workflow import validate_mapping

    try:
        checked = validate_mapping(
            MappingSource(mapping, sheet, encoding, include_hidden_rows, tuple(ignore_column or ()))
        )
    except BatchcertError as exc:
        raise _fail(exc) from None
    _print_notes(checked.notes)
    for problem in checked.problems.values():
        out.print(problem, highlight=False, markup=False)
    dupes = len(checked.duplicate_of)
    summary = (
        f"{len(checked.rows)} rows: {len(checked.rows) - len(checked.problems)} valid, {len(checked.problems)} invalid"
    )
    if dupes:
        summary += f", {dupes} identical duplicate(s) (sent once, reported for each)"
    out.print(summary, highlight=False)
    raise typer.Exit(ExitCode.CANNOT_START if checked.problems else ExitCode.OK)


SHOWN_PROBLEMS = 50


def _confirm_on_terminal(yes: bool) -> Any:
    def confirm(preview: Preview) -> bool:
        _print_notes(preview.notes)
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
            f"Duration:  at least {_duration_text(preview.estimate_s)} at the API's rate",
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


def _duration_text(seconds: float) -> str:
    """1h02m, 3m10s, 42s."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else (f"{minutes}m{secs:02d}s" if minutes else f"{secs}s")


def progress_line(progress: Progress, now: datetime) -> str:
    """The off-terminal progress line: UTC time, done/total, rate, ETA, and counts that add up to done."""
    from batchcert.model import Outcome

    eta = "—" if progress.eta_s is None else _duration_text(progress.eta_s)
    counts = " · ".join(f"{o.value} {progress.counts[o]}" for o in Outcome if progress.counts.get(o))
    share = 100 * progress.done / progress.total if progress.total else 100.0
    return (
        f"{now.strftime('%Y-%m-%dT%H:%M:%SZ')}  {progress.done}/{progress.total} rows ({share:.1f}%)  "
        f"{progress.rows_per_s:.1f} rows/s  ETA {eta}" + (f"  {counts}" if counts else "")
    )


class _Progress:
    """A rich progress bar on a terminal; off a terminal a plain line every PLAIN_EVERY_S seconds (and at the end).
    A stopping run is announced at once, in both."""

    PLAIN_EVERY_S = 5.0

    def __init__(self) -> None:
        self.tty = err.is_terminal
        self._last = 0.0
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> _Progress:
        if self.tty:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("[bold]sending"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeRemainingColumn(),
                TextColumn("{task.description}"),
                console=err,
                transient=False,
            )
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            with contextlib.suppress(OSError):  # a terminal that hung up (SIGHUP): the run's reports still matter
                self._bar.__exit__(None, None, None)

    def update(self, progress: Progress) -> None:
        """Called as rows settle. A terminal that hung up (SIGHUP) refuses writes: the run goes on to its reports."""
        with contextlib.suppress(OSError):
            self._draw(progress)

    def _draw(self, progress: Progress) -> None:
        """Redraw at most 10 times a second (terminal) or every PLAIN_EVERY_S (plain); a stop is announced at once."""
        from datetime import UTC, datetime

        if progress.stopping:
            err.print(f"[bold yellow]{progress.stopping}[/]", highlight=False)
        now = time.monotonic()
        due = now - self._last >= (0.1 if self._bar is not None else self.PLAIN_EVERY_S)
        if not (due or progress.done >= progress.total):
            return
        self._last = now
        if self._bar is None:
            err.print(progress_line(progress, datetime.now(tz=UTC)), highlight=False, markup=False)
            return
        text = "  ".join(f"{o.value} {n}" for o, n in progress.counts.items() if n)
        rate = f"{progress.rows_per_s:.1f} rows/s"
        if self._task is None:
            self._task = self._bar.add_task(text, total=progress.total, rate=rate)
        self._bar.update(self._task, completed=progress.done, description=text, rate=rate)


def _send_with_progress(core: Callable[[Any, Any], RunSummary], yes: bool) -> NoReturn:
    """Run a sending core function (`run_mapping`, `rerun_run`) with the prompt and a progress display, print its
    summary and exit with its code; run-level errors exit with theirs."""
    try:
        with _Progress() as progress:
            summary = core(_confirm_on_terminal(yes), progress.update)
    except BatchcertError as exc:
        raise _fail(exc) from None
    except KeyboardInterrupt as interrupt:  # before or after sending (the entry point has said so: batchcert.__main__)
        raise typer.Exit(exit_code_for_interrupt(interrupt)) from None
    with contextlib.suppress(OSError):  # a terminal that hung up: the reports are written, the exit code says it
        _print_summary(summary)
    raise typer.Exit(summary.exit_code)


def _print_summary(summary: RunSummary) -> None:
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
    if summary.stop_reason:
        label = "interrupted" if summary.interrupted else "stopped"
        err.print(f"[bold red]{label}:[/] {summary.stop_reason}", highlight=False)
    reports = summary.reports
    others = ", ".join(
        reports.path_of(name).name for name in ("report.xlsx", "summary.md", "failed.csv", "rollback.csv")
    )
    out.print(f"Report: {reports.path_of('report.csv')} (and {others})", highlight=False, markup=False)
    _print_kept(reports)
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


def _print_kept(reports: Reports) -> None:
    """Say which report files were left as the user changed them, and where the new ones went."""
    for kept, written in reports.kept:
        err.print(
            f"note: {kept.name} is not the file batchcert last wrote there (edited by hand, or left by an older "
            f"batchcert) — kept as it is; this report's is {written.name}",
            highlight=False,
            markup=False,
        )


@app.command(epilog=CREDENTIALS_EPILOG)
def run(
    mapping: MappingArg,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Run directory (default reports/<UTC>-<mapping>/).")
    ] = None,
    endpoint: EndpointOpt = None,
    rate: RateOpt = None,
    timeout: TimeoutOpt = None,
    max_attempts: MaxAttemptsOpt = None,
    profile: Annotated[
        str | None, typer.Option(help="Credential profile (~/.tencentcloud/credentials, ~/.tccli).")
    ] = None,
    sheet: SheetOpt = None,
    encoding: EncodingOpt = None,
    include_hidden_rows: HiddenRowsOpt = False,
    emulator: Annotated[bool, typer.Option("--emulator", help="Rehearse against an in-process emulator.")] = False,
    world: Annotated[
        Path | None, typer.Option(help="Emulator world file for the rehearsal (implies --emulator).")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    no_preflight: NoPreflightOpt = False,
    no_verify: NoVerifyOpt = False,
    listener_wait: ListenerWaitOpt = None,
    ca_bundle: CaBundleOpt = None,
    min_validity_days: MinValidityOpt = None,
    ignore_column: IgnoreColumnOpt = None,
    force: ForceOpt = False,
    _verbose: VerboseOpt = False,
) -> None:
    """Send every valid row of MAPPING and write a reconciliation report."""
    from batchcert.runner import RunnerConfig
    from batchcert.workflow import RunRequest, run_mapping

    request = RunRequest(
        mapping=mapping,
        out=out_dir,
        settings=SettingFlags(endpoint, rate, timeout, max_attempts, listener_wait, ca_bundle, min_validity_days),
        profile=profile,
        sheet=sheet,
        rehearsal=emulator or world is not None,
        world=world,
        runner=RunnerConfig(preflight=not no_preflight, verify=not no_verify),
        encoding=encoding,
        include_hidden_rows=include_hidden_rows,
        ignore_columns=tuple(ignore_column or ()),
        force=force,
    )
    _send_with_progress(lambda confirm, progress: run_mapping(request, confirm, progress), yes)


RunDirArg = Annotated[
    Path, typer.Argument(help="A run directory made by `batchcert run`.", show_default=False, metavar="RUN_DIR")
]


@app.command(epilog=CREDENTIALS_EPILOG)
def rerun(
    run_dir: RunDirArg,
    include_terminal: Annotated[
        bool, typer.Option("--include-terminal", help="Also resend rows that ended terminal (fixed elsewhere since).")
    ] = False,
    endpoint: EndpointOpt = None,
    rate: RateOpt = None,
    timeout: TimeoutOpt = None,
    max_attempts: MaxAttemptsOpt = None,
    profile: Annotated[str | None, typer.Option(help="Credential profile.")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    no_preflight: NoPreflightOpt = False,
    no_verify: NoVerifyOpt = False,
    listener_wait: ListenerWaitOpt = None,
    ca_bundle: CaBundleOpt = None,
    min_validity_days: MinValidityOpt = None,
    force: ForceOpt = False,
    reread: Annotated[
        bool,
        typer.Option(
            "--reread",
            help="Accept a journal that cannot prove it holds every change sent (run.json and the -wal missing): "
            "every row not done is read before it is sent again.",
        ),
    ] = False,
    _verbose: VerboseOpt = False,
) -> None:
    """Continue a run: resend its retryable, not_attempted and interrupted rows into the same journal and reports."""
    from batchcert.runner import RunnerConfig
    from batchcert.workflow import RerunRequest, rerun_run

    request = RerunRequest(
        run_dir=run_dir,
        include_terminal=include_terminal,
        settings=SettingFlags(endpoint, rate, timeout, max_attempts, listener_wait, ca_bundle, min_validity_days),
        profile=profile,
        runner=RunnerConfig(preflight=not no_preflight, verify=not no_verify),
        force=force,
        reread=reread,
    )
    _send_with_progress(lambda confirm, progress: rerun_run(request, confirm, progress), yes)


@app.command()
def report(
    run_dir: RunDirArg,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Write the reports here instead (a read-only run directory, say).")
    ] = None,
    _verbose: VerboseOpt = False,
) -> None:
    """Rewrite every report file of a run directory from its journal, at any time (also beside a live run or after a
    crash). Reads the journal only; never changes it."""
    from batchcert.model import Outcome
    from batchcert.workflow import write_run_reports

    try:
        written = write_run_reports(run_dir, out_dir)
    except BatchcertError as exc:
        raise _fail(exc) from None
    out.print(", ".join(f"{o.value} {written.counts[o]}" for o in Outcome), highlight=False)
    _print_kept(written)
    for path in written.files:
        out.print(str(path), highlight=False)


@app.command(epilog=CREDENTIALS_EPILOG)
def plan(
    mapping: MappingArg,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Where plan.csv goes (default reports/<UTC>-<mapping>-plan/).")
    ] = None,
    endpoint: EndpointOpt = None,
    rate: RateOpt = None,
    timeout: TimeoutOpt = None,
    profile: Annotated[str | None, typer.Option(help="Credential profile.")] = None,
    sheet: SheetOpt = None,
    encoding: EncodingOpt = None,
    include_hidden_rows: HiddenRowsOpt = False,
    emulator: Annotated[bool, typer.Option("--emulator", help="Plan against an in-process emulator.")] = False,
    world: Annotated[Path | None, typer.Option(help="Emulator world file (implies --emulator).")] = None,
    ca_bundle: CaBundleOpt = None,
    min_validity_days: MinValidityOpt = None,
    ignore_column: IgnoreColumnOpt = None,
    _verbose: VerboseOpt = False,
) -> None:
    """Say what `run` would change, from one read per listener; exit 0 nothing to change, 1 a row would not be done,
    2 plan could not run, 4 changes pending."""
    from rich.table import Table

    from batchcert.workflow import PlanRequest, plan_mapping

    request = PlanRequest(
        mapping=mapping,
        out=out_dir,
        settings=SettingFlags(endpoint, rate, timeout, ca_bundle=ca_bundle, min_validity_days=min_validity_days),
        profile=profile,
        sheet=sheet,
        rehearsal=emulator or world is not None,
        world=world,
        encoding=encoding,
        include_hidden_rows=include_hidden_rows,
        ignore_columns=tuple(ignore_column or ()),
    )
    try:
        result = plan_mapping(request)
    except BatchcertError as exc:
        raise _fail(exc) from None
    _print_notes(result.notes)
    table = Table("row", "listener", "domain", "action", "current", "target", "reason")
    shown = [line for line in result.lines if line.action != "unchanged"][:PLAN_TABLE_ROWS]
    for line in shown:
        row, live = line.row, line.live
        clients = row.client_certificate_id or ";".join(row.poly_client_certificate_ids)
        target = row.certificate_id + (f" / {clients}" if clients else "")
        current = (live.certificate_id + (f" / {live.client_text}" if live.client_text else "")) if live else ""
        table.add_row(str(row.row_number), row.listener_id, row.domain, line.action, current, target, line.reason)
    if shown:
        out.print(table)
    hidden = sum(1 for line in result.lines if line.action != "unchanged") - len(shown)
    if hidden > 0:
        out.print(f"… {hidden} more in {result.path}", highlight=False)
    out.print(plan_count_line(result.counts, len(result.lines), result.duplicates), highlight=False)
    out.print(f"Plan: {result.path}", highlight=False)
    raise typer.Exit(result.exit_code)


PLAN_TABLE_ROWS = 50
#: plan's count line: (plan actions, what they are called), in order; every action once, so the counts add up to the
#: mapping's rows
PLAN_COUNT_WORDS = (
    (("change", "changing"), "to change"),
    (("unchanged",), "unchanged"),
    (("refused",), "refused by the certificate pre-flight"),
    (("mismatch",), "moved since the file was made"),
    (("wrong_proxy",), "on another proxy"),
    (("not_found",), "not found"),
    (("invalid",), "invalid"),
    (("unknown",), "unreadable"),
)


def plan_count_line(counts: dict[str, int], rows: int, duplicates: int) -> str:
    """`N to change, M unchanged, …` for every row of the mapping (empty kinds after the first two left out), and
    how many of them are identical duplicates counted with their first row."""
    totals = [(sum(counts[action] for action in actions), words) for actions, words in PLAN_COUNT_WORDS]
    parts = [f"{n} {words}" for i, (n, words) in enumerate(totals) if i < 2 or n > 0]
    dupes = f", {duplicates} of them identical duplicates counted with their first row" if duplicates else ""
    return ", ".join(parts) + f" — {rows} row(s){dupes}"


@app.command(epilog=CREDENTIALS_EPILOG)
def inventory(
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Where the files go (default reports/<UTC>-inventory/).")
    ] = None,
    endpoint: EndpointOpt = None,
    rate: RateOpt = None,
    timeout: TimeoutOpt = None,
    profile: Annotated[str | None, typer.Option(help="Credential profile.")] = None,
    ca_bundle: CaBundleOpt = None,
    emulator: Annotated[bool, typer.Option("--emulator", help="Read an in-process emulator (with --world).")] = False,
    world: Annotated[Path | None, typer.Option(help="Emulator world file to read (implies --emulator).")] = None,
    replace: Annotated[
        list[str] | None,
        typer.Option(
            "--replace",
            metavar="OLD=NEW",
            help="Also write mapping.csv moving every use of certificate OLD to NEW (repeatable).",
        ),
    ] = None,
    _verbose: VerboseOpt = False,
) -> None:
    """List every HTTPS listener and domain with the certificates it uses (inventory.csv, inventory.xlsx); with
    --replace OLD=NEW, also the mapping that rotates OLD out everywhere. A connection it may not search is named (on
    stderr, in inventory.csv and in the summary) and the others are read: exit 1."""
    from batchcert.workflow import InventoryRequest, take_inventory

    request = InventoryRequest(
        out=out_dir,
        settings=SettingFlags(endpoint, rate, timeout, ca_bundle=ca_bundle),
        profile=profile,
        rehearsal=emulator or world is not None,
        world=world,
        replace=tuple(replace or ()),
    )
    shown = {"at": 0.0}

    def step(what: str, done: int, total: int) -> None:
        """A line every 2 s and at the end of each phase: what is read, how far."""
        now = time.monotonic()
        if done == total or now - shown["at"] >= 2.0:
            shown["at"] = now
            err.print(f"reading {what}: {done}/{total}", highlight=False, markup=False)

    try:
        found = take_inventory(request, step)
    except BatchcertError as exc:
        raise _fail(exc) from None
    holes = found.not_searched
    for hole in holes:
        err.print(
            f"not searched: {hole} {hole.name!r} ({hole.status}) — {hole.action} answered {hole.reason}",
            highlight=False,
            markup=False,
        )
    connections = len({(hole.scope, hole.connection_id) for hole in holes})
    missing = f" — {connections} connection(s) not searched" if holes else ""
    out.print(
        f"{found.listeners} HTTPS listener(s), {found.domains} domain(s), {found.certificates} certificate(s){missing}",
        highlight=False,
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
        raise typer.Exit(ExitCode.ROWS_NOT_DONE)


@app.command("emulator")
def emulator_command(
    port: Annotated[int, typer.Option(help="TCP port on 127.0.0.1 (0 = any free port).")] = 8765,
    world: Annotated[Path | None, typer.Option(help="World file (see batchcert.emulator).")] = None,
    from_mapping: Annotated[
        Path | None, typer.Option(help="Build a world where every row of this mapping succeeds.")
    ] = None,
    _verbose: VerboseOpt = False,
) -> None:
    """Serve the GAAP emulator on 127.0.0.1 until Ctrl-C."""
    from batchcert.model import MappingSource
    from batchcert.workflow import load_world, serve_emulator, world_from_mapping

    if (world is None) == (from_mapping is None):
        err.print("error: give exactly one of --world FILE or --from-mapping MAPPING")
        raise typer.Exit(ExitCode.CANNOT_START)
    try:
        served = load_world(world) if world is not None else world_from_mapping(MappingSource(from_mapping))  # type: ignore[arg-type]
    except BatchcertError as exc:
        raise _fail(exc) from None

    def ready(url: str) -> None:
        secret_id, secret_key = next(iter(served.credentials.items()))
        out.print(f"GAAP emulator listening on {url}", highlight=False)
        out.print(
            f"  export TENCENTCLOUD_SECRET_ID={secret_id} TENCENTCLOUD_SECRET_KEY={secret_key}",
            highlight=False,
        )
        out.print(f"  batchcert run MAPPING --endpoint {url}", highlight=False)

    serve_emulator(served, port, ready)


def main() -> None:
    """Entry point. An unexpected error (a bug) exits 3 with a one-line message instead of a traceback; the
    journal of a run directory stays intact. BATCHCERT_DEBUG=1 shows the traceback."""
    import os

    try:
        app()
    except Exception as exc:  # the last line of defence: documented exit code, no traceback
        if os.environ.get("BATCHCERT_DEBUG"):
            raise
        err.print(
            f"internal error: {type(exc).__name__}: {exc} — this is a bug; the journal of any run directory is "
            "intact (`batchcert report RUN_DIR` rewrites its reports). Set BATCHCERT_DEBUG=1 for details.",
            highlight=False,
            markup=False,
        )
        raise SystemExit(ExitCode.INTERNAL) from None
