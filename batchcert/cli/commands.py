"""The typer commands: each parses its flags into a request, calls one function of `batchcert.workflow`, prints
what it returned (`cli.render`, `cli.progress`) and exits with its code; a run-level error exits with its own
(`batchcert.errors`). Heavy modules (the workflow, pandas, aiohttp) are imported inside the commands so that
`batchcert --help` stays fast."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, TypeVar

import typer

from batchcert.cli.options import (
    CREDENTIALS_EPILOG,
    VERBOSE_HELP,
    CaBundleOpt,
    CanaryOpt,
    EncodingOpt,
    EndpointOpt,
    ForceOpt,
    HiddenRowsOpt,
    IgnoreColumnOpt,
    ListenerWaitOpt,
    MappingArg,
    MaxAttemptsOpt,
    MaxFailuresOpt,
    MinValidityOpt,
    NoPreflightOpt,
    NoProbeOpt,
    NoVerifyOpt,
    ProbeWaitOpt,
    ProfileOpt,
    RateOpt,
    RunDirArg,
    SheetOpt,
    TimeoutOpt,
    VerboseOpt,
    YesOpt,
    log_decisions,
    print_version,
)
from batchcert.cli.progress import ProgressDisplay, reading_steps
from batchcert.cli.render import (
    confirm_on_terminal,
    err,
    fail,
    print_emulator_ready,
    print_inventory,
    print_plan,
    print_probe,
    print_report,
    print_summary,
    print_validation,
)
from batchcert.errors import BatchcertError, ExitCode, exit_code_for_interrupt
from batchcert.settings import DEFAULT_PROBE_WAIT_S, SettingFlags

if TYPE_CHECKING:
    from batchcert.model import Progress
    from batchcert.runner import RunnerConfig
    from batchcert.workflow import Preview, RunSummary

T = TypeVar("T")

app = typer.Typer(
    help="Change the certificates of many Tencent Cloud GAAP listener domains at once, with a reconciliation report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def options(
    version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit.", callback=print_version, is_eager=True),
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help=VERBOSE_HELP)] = False,
) -> None:
    """Change the certificates of many Tencent Cloud GAAP listener domains at once, with a reconciliation report."""
    log_decisions(verbose)


def _attempt(work: Callable[[], T]) -> T:
    """`work()`; a run-level error is printed and exits with its code."""
    try:
        return work()
    except BatchcertError as exc:
        raise fail(exc) from None


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

    source = MappingSource(mapping, sheet, encoding, include_hidden_rows, tuple(ignore_column or ()))
    checked = _attempt(lambda: validate_mapping(source))
    print_validation(checked)
    raise typer.Exit(ExitCode.CANNOT_START if checked.problems else ExitCode.OK)


def _send_with_progress(
    core: Callable[[Callable[[Preview], bool], Callable[[Progress], None]], RunSummary], yes: bool
) -> NoReturn:
    """Run a sending core function (`run_mapping`, `rerun_run`) with the prompt and a progress display, print its
    summary and exit with its code; run-level errors exit with theirs."""
    try:
        with ProgressDisplay() as progress:
            summary = core(confirm_on_terminal(yes), progress.update)
    except BatchcertError as exc:
        raise fail(exc) from None
    except KeyboardInterrupt as interrupt:  # before or after sending (the entry point has said so: batchcert.__main__)
        raise typer.Exit(exit_code_for_interrupt(interrupt)) from None
    with contextlib.suppress(OSError):  # a terminal that hung up: the reports are written, the exit code says it
        print_summary(summary)
    raise typer.Exit(summary.exit_code)


def _runner_config(
    no_preflight: bool, no_verify: bool, no_probe: bool, probe_wait_s: float, canary: int, max_failures: str | None
) -> RunnerConfig:
    """The runner's settings from `run`'s and `rerun`'s flags; a `--max-failures` it cannot take is a usage error
    naming what it takes."""
    from batchcert.runner import FailureLimit, RunnerConfig

    try:
        limit = FailureLimit.parse(max_failures) if max_failures is not None else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--max-failures") from None
    return RunnerConfig(
        preflight=not no_preflight,
        verify=not no_verify,
        probe=not no_probe,
        probe_wait_s=probe_wait_s,
        canary=canary,
        max_failures=limit,
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
    yes: YesOpt = False,
    no_preflight: NoPreflightOpt = False,
    no_verify: NoVerifyOpt = False,
    no_probe: NoProbeOpt = False,
    probe_wait: ProbeWaitOpt = DEFAULT_PROBE_WAIT_S,
    canary: CanaryOpt = 0,
    max_failures: MaxFailuresOpt = None,
    listener_wait: ListenerWaitOpt = None,
    ca_bundle: CaBundleOpt = None,
    min_validity_days: MinValidityOpt = None,
    ignore_column: IgnoreColumnOpt = None,
    force: ForceOpt = False,
    _verbose: VerboseOpt = False,
) -> None:
    """Send every valid row of MAPPING and write a reconciliation report."""
    from batchcert.workflow import RunRequest, run_mapping

    request = RunRequest(
        mapping=mapping,
        out=out_dir,
        settings=SettingFlags(endpoint, rate, timeout, max_attempts, listener_wait, ca_bundle, min_validity_days),
        profile=profile,
        sheet=sheet,
        rehearsal=emulator or world is not None,
        world=world,
        runner=_runner_config(no_preflight, no_verify, no_probe, probe_wait, canary, max_failures),
        encoding=encoding,
        include_hidden_rows=include_hidden_rows,
        ignore_columns=tuple(ignore_column or ()),
        force=force,
    )
    _send_with_progress(lambda confirm, progress: run_mapping(request, confirm, progress), yes)


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
    profile: ProfileOpt = None,
    yes: YesOpt = False,
    no_preflight: NoPreflightOpt = False,
    no_verify: NoVerifyOpt = False,
    no_probe: NoProbeOpt = False,
    probe_wait: ProbeWaitOpt = DEFAULT_PROBE_WAIT_S,
    canary: CanaryOpt = 0,
    max_failures: MaxFailuresOpt = None,
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
    from batchcert.workflow import RerunRequest, rerun_run

    request = RerunRequest(
        run_dir=run_dir,
        include_terminal=include_terminal,
        settings=SettingFlags(endpoint, rate, timeout, max_attempts, listener_wait, ca_bundle, min_validity_days),
        profile=profile,
        runner=_runner_config(no_preflight, no_verify, no_probe, probe_wait, canary, max_failures),
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
    from batchcert.workflow import write_run_reports

    print_report(_attempt(lambda: write_run_reports(run_dir, out_dir)))


@app.command(epilog=CREDENTIALS_EPILOG)
def plan(
    mapping: MappingArg,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Where plan.csv goes (default reports/<UTC>-<mapping>-plan/).")
    ] = None,
    endpoint: EndpointOpt = None,
    rate: RateOpt = None,
    timeout: TimeoutOpt = None,
    profile: ProfileOpt = None,
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
    result = _attempt(lambda: plan_mapping(request))
    print_plan(result)
    raise typer.Exit(result.exit_code)


@app.command(epilog=CREDENTIALS_EPILOG)
def inventory(
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Where the files go (default reports/<UTC>-inventory/).")
    ] = None,
    endpoint: EndpointOpt = None,
    rate: RateOpt = None,
    timeout: TimeoutOpt = None,
    profile: Annotated[
        list[str] | None,
        typer.Option(
            "--profile",
            help="Credential profile (repeatable: several accounts into one inventory, a profile column on every line).",
        ),
    ] = None,
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
    --replace OLD=NEW, also the mapping that rotates OLD out everywhere. With --profile given more than once, every
    account is read into one inventory (and one mapping, with a Profile column). A connection it may not search is
    named (on stderr, in inventory.csv and in the summary) and the others are read: exit 1."""
    from batchcert.workflow import InventoryRequest, take_inventory

    request = InventoryRequest(
        out=out_dir,
        settings=SettingFlags(endpoint, rate, timeout, ca_bundle=ca_bundle),
        profiles=tuple(profile or ()),
        rehearsal=emulator or world is not None,
        world=world,
        replace=tuple(replace or ()),
    )
    found = _attempt(lambda: take_inventory(request, reading_steps()))
    print_inventory(found, world, endpoint, request.profiles)
    if found.not_searched:
        raise typer.Exit(ExitCode.ROWS_NOT_DONE)


@app.command(epilog=CREDENTIALS_EPILOG)
def probe(
    source: Annotated[
        Path,
        typer.Argument(
            exists=True,
            help="A mapping (CSV or XLSX), a run directory, or the inventory.csv `batchcert inventory` wrote.",
        ),
    ],
    probe_wait: Annotated[
        float,
        typer.Option(
            "--probe-wait",
            min=0,
            help="Seconds to keep probing a domain whose edge serves another certificate (default 0: once).",
        ),
    ] = 0.0,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Where probe.csv goes (default reports/<UTC>-<source>-probe/).")
    ] = None,
    endpoint: EndpointOpt = None,
    rate: RateOpt = None,
    timeout: TimeoutOpt = None,
    profile: ProfileOpt = None,
    ca_bundle: CaBundleOpt = None,
    emulator: Annotated[bool, typer.Option("--emulator", help="Probe an in-process emulator (with --world).")] = False,
    world: Annotated[Path | None, typer.Option(help="Emulator world file to probe (implies --emulator).")] = None,
    _verbose: VerboseOpt = False,
) -> None:
    """What the edge serves now for every domain of SOURCE, against the certificate the file expects (probe.csv):
    a baseline before a change, a proof after it, a monitoring check. Sends no change; exit 1 when a domain serves
    another certificate."""
    from batchcert.workflow import ProbeRequest, probe_places

    request = ProbeRequest(
        source=source,
        out=out_dir,
        settings=SettingFlags(endpoint, rate, timeout, ca_bundle=ca_bundle),
        profile=profile,
        rehearsal=emulator or world is not None,
        world=world,
        probe_wait_s=probe_wait,
    )
    found = _attempt(lambda: probe_places(request))
    print_probe(found)
    raise typer.Exit(found.exit_code)


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
    from batchcert.workflow import emulator_credentials, load_world, serve_emulator, world_from_mapping

    if (world is None) == (from_mapping is None):
        err.print("error: give exactly one of --world FILE or --from-mapping MAPPING")
        raise typer.Exit(ExitCode.CANNOT_START)
    served = _attempt(
        lambda: load_world(world) if world is not None else world_from_mapping(MappingSource(from_mapping))  # type: ignore[arg-type]
    )
    serve_emulator(served, port, lambda url: print_emulator_ready(emulator_credentials(served), url))


def main() -> None:
    """Entry point. An unexpected error (a bug) exits 3 with a one-line message instead of a traceback; the
    journal of a run directory stays intact. BATCHCERT_DEBUG=1 shows the traceback."""
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
