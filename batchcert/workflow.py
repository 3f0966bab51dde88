"""One core function per command, composing runner, inventory, report and emulator (siblings that must not import
each other).

This layer is an addition to the project's layering (README, "Development"), made for a reason: `run --emulator`
needs the emulator and the runner in one event loop, and every command ends by writing reports from the journal;
without a layer above the siblings the CLI would have to orchestrate them itself and stop being thin. It owns no
policy about rows (that is in `runner`, `inventory`, `plan`, `reconcile`, `classify`); it resolves the settings once
(`settings.resolve_settings`), chooses the target once (`choose_target`: live or rehearsal), opens, wires, runs and
closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import random
import secrets
import shlex
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from batchcert import __version__
from batchcert.claims import claim_places, place_digests
from batchcert.client import GaapClient, create_session
from batchcert.errors import STOP_SIGNALS, BatchcertError, ExitCode, SettingsError, exit_code_for_signal
from batchcert.inventory import (
    Estate,
    NotSearched,
    Rotation,
    StepFn,
    not_searched_advice,
    parse_replacement,
    plan_rotation,
    read_estate,
)
from batchcert.journal import MARKER_NAME, Journal, create_journal, open_journal, read_journal
from batchcert.model import RERUN_OUTCOMES, SCOPE_LISTENER, Mapping, MappingSource, Outcome, Progress, Row
from batchcert.plan import file_sha256, read_mapping, require_rows_to_send
from batchcert.reading import CertificateIndex, LiveReader
from batchcert.reconcile import (
    NOT_DONE_PLAN_ACTIONS,
    PlanLine,
    count_plan_actions,
    expiring_targets,
    plan_every_row,
)
from batchcert.report import (
    REHEARSAL_WORLD_NAME,
    REPORT_LIBRARIES,
    Reports,
    write_inventory,
    write_plan,
    write_reports,
    write_rotation,
)
from batchcert.runner import Runner, RunnerConfig, estimate_run_s, plan_rows
from batchcert.schedule import Quota, Sleeper
from batchcert.settings import (
    Credentials,
    RunSettings,
    SettingFlags,
    load_credentials,
    parse_endpoint,
    resolve_settings,
)

if TYPE_CHECKING:
    from batchcert import emulator

#: progress callback: called as rows settle, and at once when the run starts stopping
ProgressFn = Callable[[Progress], None]


class Declined(BatchcertError):
    """The operator answered no at the confirmation prompt; nothing was sent."""


@dataclass(frozen=True)
class RunRequest:
    """What the operator asked for on the command line (`batchcert run`)."""

    mapping: Path
    out: Path | None = None
    settings: SettingFlags = field(default_factory=SettingFlags)
    profile: str | None = None
    sheet: str | None = None
    rehearsal: bool = False
    world: Path | None = None
    reports_root: Path = Path("reports")
    runner: RunnerConfig = field(default_factory=RunnerConfig)
    encoding: str | None = None
    include_hidden_rows: bool = False
    ignore_columns: tuple[str, ...] = ()
    #: run although another live run on this machine claims some of the same places (batchcert.claims)
    force: bool = False

    @property
    def source(self) -> MappingSource:
        return MappingSource(self.mapping, self.sheet, self.encoding, self.include_hidden_rows, self.ignore_columns)


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
        done = all(n == 0 for o, n in self.counts.items() if o not in (Outcome.SUCCEEDED, Outcome.UNCHANGED))
        return ExitCode.OK if done else ExitCode.ROWS_NOT_DONE


def validate_mapping(source: MappingSource) -> Mapping:
    """Read and validate a mapping; raises MappingError for file-level problems."""
    return read_mapping(
        source.path,
        source.sheet,
        encoding=source.encoding,
        include_hidden_rows=source.include_hidden_rows,
        ignore_columns=source.ignore_columns,
    )


def _operator() -> str:
    """user@host, for the change record (who ran it)."""
    import getpass

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def default_run_dir(root: Path, mapping: Path) -> Path:
    """`reports/<UTC yyyymmddThhmmssZ>-<mapping stem>/`, with a numeric suffix if that exists already."""
    stamp = datetime.now(tz=UTC).strftime("%Y%m%dT%H%M%SZ")
    candidate = root / f"{stamp}-{mapping.stem}"
    n = 1
    while candidate.exists():
        n += 1
        candidate = root / f"{stamp}-{mapping.stem}-{n}"
    return candidate


def _emulator_credentials(world: emulator.World) -> Credentials:
    """The credential a rehearsal signs with: the world's first (the in-process emulator is all that knows it)."""
    secret_id, secret_key = next(iter(world.credentials.items()))
    return Credentials(secret_id, secret_key, source="emulator")


def _rehearsal_world(world_path: Path | None, mapping: Mapping) -> emulator.World:
    """The given world file, or one in which every valid row of the mapping would succeed."""
    from batchcert import emulator

    if world_path is not None:
        return emulator.load_world(world_path)
    return emulator.world_for_rows(mapping.valid_rows(), credentials=_fresh_credentials())


def _fresh_credentials() -> dict[str, str]:
    """A random credential for a rehearsal: the in-process emulator is the only thing that knows it."""
    return {f"AKIDrehearsal{secrets.token_hex(12)}": secrets.token_urlsafe(24)}


def _save_rehearsal_world(run_dir: Path, world: emulator.World) -> None:
    state = world.to_dict()
    state.pop("credentials", None)  # never a secret in the run directory, not even an emulator's
    tmp = run_dir / f".{REHEARSAL_WORLD_NAME}.tmp"
    tmp.write_text(json.dumps(state, indent=1), encoding="utf-8")
    tmp.replace(run_dir / REHEARSAL_WORLD_NAME)


def _rehearsal_world_of(journal: Journal, facts: dict[str, str]) -> emulator.World:
    """The world a rehearsal's rerun continues in: the state the last session left, else the run's world file,
    else one built from the rows."""
    from batchcert import emulator

    saved = journal.run_dir / REHEARSAL_WORLD_NAME
    if saved.is_file():
        world = emulator.load_world(saved)
        world.credentials = _fresh_credentials()
        return world
    if facts.get("world"):
        return emulator.load_world(Path(facts["world"]))
    return emulator.world_for_rows(journal.rows(), credentials=_fresh_credentials())


@dataclass(frozen=True)
class Target:
    """Where a command sends, chosen once: the resolved settings (no endpoint for a rehearsal), the credential it
    signs with, and for a rehearsal the world an in-process emulator serves."""

    settings: RunSettings
    credentials: Credentials
    world: emulator.World | None = None
    #: what the credential lookup warned about (a file readable by others)
    warnings: tuple[str, ...] = ()


def choose_target(settings: RunSettings, profile: str | None, rehearsal_world: Callable[[], emulator.World]) -> Target:
    """The live endpoint with the operator's credentials, or — for a rehearsal — `rehearsal_world()` with its own.
    Raises CredentialsError when a live target has no credentials."""
    if settings.rehearsal:
        world = rehearsal_world()
        return Target(settings, _emulator_credentials(world), world)
    lookup = load_credentials(profile)
    return Target(settings, lookup.credentials, None, lookup.warnings)


@contextlib.asynccontextmanager
async def _connect(target: Target) -> AsyncIterator[tuple[GaapClient, Quota]]:
    """A client and a quota for `target` for the duration of the block; for a rehearsal, the emulator serving its
    world on loopback for as long (the emulator module is imported only then: 50 ms a live run does not need)."""
    async with contextlib.AsyncExitStack() as stack:
        endpoint = target.settings.endpoint
        if target.world is not None:
            from batchcert import emulator

            world = target.world
            url, served = await stack.enter_async_context(emulator.serve(world))
            # the world a rehearsal leaves keeps what is left of its scripted faults (README, "Reruns")
            stack.callback(lambda: setattr(world, "faults", served.remaining_faults()))
            endpoint = parse_endpoint(url)
        assert endpoint is not None  # a live target always has one (resolve_settings)
        session = await stack.enter_async_context(create_session(endpoint, target.settings.ca_bundle))
        quota = Quota(target.settings.rate_per_s)
        stack.callback(quota.close)
        yield GaapClient(session, endpoint, target.credentials, target.settings.timeout_s), quota


def run_mapping(
    request: RunRequest,
    confirm: Callable[[Preview], bool] = lambda _: True,
    on_progress: ProgressFn | None = None,
) -> RunSummary:
    """Validate the mapping, ask `confirm`, send every valid row, write the reports. Returns how the run ended.

    Raises BatchcertError (exit 2) for run-level problems before anything is sent: unreadable mapping, missing
    column, bad settings, no credentials, an occupied run directory; Declined when `confirm` says no.
    """
    mapping = validate_mapping(request.source)
    require_rows_to_send(mapping)
    target = choose_target(
        resolve_settings(request.settings, request.rehearsal or request.world is not None),
        request.profile,
        lambda: _rehearsal_world(request.world, mapping),
    )
    run_dir = request.out or default_run_dir(request.reports_root, request.mapping)
    certificates = read_certificates(target) if request.runner.preflight else None
    expiring = _certificate_warnings(mapping.valid_rows(), certificates, target.settings)
    preview = Preview(
        source=f"{mapping.path} (sha256 {mapping.sha256[:12]}…)",
        rows=len(mapping.rows),
        to_send=len(mapping.valid_rows()),
        invalid=len(mapping.problems),
        duplicates=len(mapping.duplicate_of),
        listeners=len({row.listener_id for row in mapping.valid_rows()}),
        estimate_s=estimate_run_s(mapping.valid_rows(), target.settings.rate_per_s),
        sheet=mapping.sheet,
        endpoint=target.settings.endpoint_label,
        secret_id_masked=target.credentials.masked_id,
        rehearsal=target.settings.rehearsal,
        run_dir=run_dir,
        warnings=target.warnings + expiring,
        problems=tuple(mapping.problems[n] for n in sorted(mapping.problems)),
        notes=mapping.notes,
    )
    with _claim(target, run_dir, mapping.valid_rows(), request.force):
        if not confirm(preview):
            raise Declined("nothing was sent — answered no at the prompt")
        return _create_and_run(request, mapping, target, run_dir, certificates, expiring, on_progress)


def _claim(target: Target, run_dir: Path, rows: list[Row], force: bool) -> contextlib.AbstractContextManager[None]:
    """Claim the places (listener, domain) `rows` change for the run (batchcert.claims); a rehearsal's emulator is
    its own, nothing to claim."""
    if target.settings.rehearsal:
        return contextlib.nullcontext()
    return claim_places(run_dir, place_digests((r.listener_id, r.domain) for r in rows), force=force)


def _create_and_run(
    request: RunRequest,
    mapping: Mapping,
    target: Target,
    run_dir: Path,
    certificates: CertificateIndex | None,
    expiring: tuple[str, ...],
    on_progress: ProgressFn | None,
) -> RunSummary:
    journal = create_journal(
        run_dir,
        {
            "mapping": str(request.mapping.resolve()),
            "mapping_sha256": mapping.sha256,
            "operator": _operator(),
            # where the run directory was made: a rerun elsewhere (a copy) warns (README, "Reruns")
            "created_host": socket.gethostname(),
            "ignore_columns": json.dumps(list(request.ignore_columns)),
            # the credential profile, so the commands the reports print (failed.csv, rollback.csv) use it too
            "profile": request.profile or "",
            "created_path": str(run_dir.resolve()),
            "batchcert_version": __version__,
            "sheet": mapping.sheet,
            "encoding": mapping.encoding,
            "header_row": str(mapping.header_row),
            "endpoint": target.settings.endpoint_label,
            "secret_id_masked": target.credentials.masked_id,
            "rehearsal": "true" if target.settings.rehearsal else "false",
            "world": str(request.world.resolve()) if request.world else "",
        },
    )
    with journal:
        journal.record_mapping(mapping)
        return _execute(
            journal, "run", mapping.valid_rows(), target, request.runner, on_progress, certificates, expiring
        )


@dataclass(frozen=True)
class RerunRequest:
    """`batchcert rerun RUN_DIR`: settings left None default to what the run recorded (never the secret)."""

    run_dir: Path
    include_terminal: bool = False
    settings: SettingFlags = field(default_factory=SettingFlags)
    profile: str | None = None
    runner: RunnerConfig = field(default_factory=RunnerConfig)
    #: rerun although another live run on this machine claims some of the same places (batchcert.claims)
    force: bool = False
    #: accept a journal that cannot prove it holds every change sent, and rebuild what was sent from the live state
    reread: bool = False


def rerun_run(
    request: RerunRequest,
    confirm: Callable[[Preview], bool] = lambda _: True,
    on_progress: ProgressFn | None = None,
) -> RunSummary:
    """Continue the run in `request.run_dir`: settle what a dead process left open, then resend every row that is
    `retryable` or `not_attempted` (and `terminal` with include_terminal) from the journal's copy of the rows, into
    the same journal, and rewrite the reports. Raises JournalError (exit 2) when the directory is locked or holds no
    journal, CredentialsError when no credentials are found, Declined when `confirm` says no."""
    journal = open_journal(request.run_dir, request.reread)
    with journal:
        _remove_temps_of_killed_writes(request.run_dir)
        journal.recover()
        facts = journal.facts()
        recorded = journal.sessions()[-1]["settings"] if journal.sessions() else {}
        warnings = _mapping_change_warning(journal, facts) + _moved_run_warning(request.run_dir, facts)
        wanted = RERUN_OUTCOMES | ({Outcome.TERMINAL} if request.include_terminal else set())
        rows = journal.rows(frozenset(wanted))
        target = choose_target(
            resolve_settings(request.settings, facts.get("rehearsal") == "true", recorded),
            request.profile,
            lambda: _rehearsal_world_of(journal, facts),
        )
        counts = journal.outcome_counts()
        certificates = read_certificates(target) if request.runner.preflight and rows else None
        expiring = _certificate_warnings(rows, certificates, target.settings)
        preview = Preview(
            source=facts.get("mapping", ""),
            rows=sum(counts.values()),
            to_send=len(rows),
            invalid=counts[Outcome.INVALID],
            duplicates=sum(journal.duplicate_counts().values()),
            listeners=len({row.listener_id for row in rows}),
            estimate_s=estimate_run_s(rows, target.settings.rate_per_s),
            sheet=facts.get("sheet", ""),
            endpoint=target.settings.endpoint_label,
            secret_id_masked=target.credentials.masked_id,
            rehearsal=target.settings.rehearsal,
            run_dir=request.run_dir,
            warnings=warnings + target.warnings + expiring,
        )
        with _claim(target, request.run_dir, rows, request.force):
            if not confirm(preview):
                raise Declined("nothing was sent — answered no at the prompt")
            return _execute(journal, "rerun", rows, target, request.runner, on_progress, certificates, expiring)


def _mapping_change_warning(journal: Journal, facts: dict[str, str]) -> tuple[str, ...]:
    """Compare the mapping file with the sha256 the run recorded — or say it is gone; note a difference in the
    journal's facts (`mapping_changed`). The rerun uses the journal's rows either way."""
    recorded = facts.get("mapping", "")
    if not recorded:
        return ()
    path = Path(recorded)
    if not path.is_file():
        note = (
            f"the mapping file {path} is no longer there (moved or deleted) — this rerun uses the rows the journal "
            "recorded"
        )
    else:
        now = file_sha256(path)
        if now == facts.get("mapping_sha256"):
            return ()
        note = (
            f"the mapping file {path} changed since the run (sha256 now {now[:12]}…, recorded "
            f"{facts.get('mapping_sha256', '')[:12]}…); this rerun uses the rows the journal recorded"
        )
    journal.set_facts(mapping_changed=note)
    return (note,)


def _remove_temps_of_killed_writes(run_dir: Path) -> None:
    """Remove the temporary files a killed write of run.json or of the rehearsal world left: only the process that
    holds the run directory writes them, so call it holding the lock (rerun) or when nobody holds it (report). The
    report files' own temps are `report.remove_stale_temps`'."""
    with contextlib.suppress(OSError):
        for stale in (*run_dir.glob(f".{MARKER_NAME}.*"), run_dir / f".{REHEARSAL_WORLD_NAME}.tmp"):
            stale.unlink(missing_ok=True)


def _moved_run_warning(run_dir: Path, facts: dict[str, str]) -> tuple[str, ...]:
    """A run directory rerun on another machine or at another path than where it was made (a copy: its original may
    be rerun too, and each copy would send what the other already sent)."""
    host, path = facts.get("created_host", ""), facts.get("created_path", "")
    here, there = socket.gethostname(), str(run_dir.resolve())
    if (not host or host == here) and (not path or path == there):
        return ()
    return (
        f"this run directory was made at {path or '?'} on {host or '?'} and is rerun at {there} on {here} — if the "
        "original is rerun too, both send the same rows: rerun only one of them",
    )


def write_run_reports(run_dir: Path, out: Path | None = None) -> Reports:
    """Regenerate every report of a run directory from its journal, into `out` (default: the run directory). The
    journal is only read, from a private copy, without the lock, so it works beside a live run and on a copy or a
    read-only directory (`out` elsewhere); what a dead process left open is settled in that copy. What it writes
    are the report files and their manifest (never over a file the user changed), and it removes the temporary
    files a killed write left. Raises JournalError when the journal is missing or damaged (nothing is changed),
    ReportError when `out` cannot be written."""
    with read_journal(run_dir) as (journal, inspection, live):
        if not live:
            _remove_temps_of_killed_writes(run_dir)
        unproven = journal.facts().get("journal_unproven", "")
        notes = (
            inspection.warnings
            + ((unproven,) if unproven else ())
            + (("a batchcert process is working on this run now: rows in flight",) if live else ())
        )
        return write_reports(journal, out or run_dir, notes)


def _execute(
    journal: Journal,
    kind: str,
    rows: list[Row],
    target: Target,
    config: RunnerConfig,
    on_progress: ProgressFn | None,
    certificates: CertificateIndex | None = None,
    expiring: tuple[str, ...] = (),
) -> RunSummary:
    journal.begin_session(kind, target.settings.to_record(), _operator(), target.credentials.masked_id)
    if certificates is not None:
        journal.record_certificates(certificates.by_id.values())
    journal.set_facts(certificate_warnings=json.dumps(list(expiring)))
    _import_report_libraries_meanwhile()
    tracker = _Tracker(rows, journal.duplicate_counts(), on_progress or (lambda _progress: None))
    outcome = asyncio.run(_drive(journal, rows, target, config, tracker, certificates))
    if target.world is not None:
        _save_rehearsal_world(journal.run_dir, target.world)
    with _signals_deferred() as signalled:
        interrupted = outcome.interrupted or bool(signalled)
        signal_received = outcome.signal_received or (signalled[0] if signalled else None)
        status = "interrupted" if interrupted else ("stopped" if outcome.stop_reason else "finished")
        journal.recover()  # attempts abandoned at a second interrupt are closed and their rows made retryable
        journal.end_session(status, outcome.stop_reason)
        reports = write_reports(journal, journal.run_dir, journal.warnings)
    return RunSummary(
        run_dir=journal.run_dir,
        counts=reports.counts,
        stop_reason=outcome.stop_reason,
        rehearsal=target.settings.rehearsal,
        interrupted=interrupted or bool(signalled),
        signal_received=signal_received,
        reports=reports,
        rerun_command=f"batchcert rerun {shlex.quote(str(journal.run_dir))}",
        failed_command=reports.failed_command,
    )


@contextlib.contextmanager
def _signals_deferred() -> Iterator[list[int]]:
    """Hold the stop signals (SIGINT, SIGTERM, SIGHUP) while the journal is closed and the reports are written, so
    the set is never left half-written; the signals received are listed (the run then ends as interrupted, exit 130
    — 129 for SIGHUP)."""
    received: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, _frame: received.append(signum)) for sig in STOP_SIGNALS}
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@dataclass(frozen=True)
class _Drive:
    stop_reason: str
    interrupted: bool
    signal_received: int | None = None


def _import_report_libraries_meanwhile() -> None:
    """Import pandas and xlsxwriter on a thread while the run waits on the network (~0.3 s of CPU that would
    otherwise be spent after the last answer, before the reports): the process ends that much sooner, and the
    reports find them imported. The import lock makes a report that comes first simply wait for it."""

    def work() -> None:
        for name in REPORT_LIBRARIES:
            importlib.import_module(name)

    threading.Thread(target=work, name="import-report-libraries", daemon=True).start()


class _Tracker:
    """Counts this session's rows as they settle (a row's identical duplicates with it, so the counts add up to
    `done`) and tells `on_progress` — at most every EVERY_S (no display redraws faster: the CLI's bar 10 times a
    second, its plain lines every 5 s), and always for the last row."""

    EVERY_S = 0.1

    def __init__(self, rows: list[Row], copies: dict[int, int], on_progress: ProgressFn) -> None:
        self._copies = copies
        self._total = sum(1 + copies.get(row.row_number, 0) for row in rows)
        self._done = 0
        self._counts: dict[Outcome, int] = dict.fromkeys(Outcome, 0)
        self._on_progress = on_progress
        self._started_s = self._told_s = time.monotonic()

    def row_done(self, row: Row, outcome: Outcome) -> None:
        moved = 1 + self._copies.get(row.row_number, 0)
        self._done += moved
        self._counts[outcome] += moved
        if self._done >= self._total or time.monotonic() - self._told_s >= self.EVERY_S:
            self.tell()

    def tell(self, stopping: str = "") -> None:
        self._told_s = time.monotonic()
        elapsed_s = self._told_s - self._started_s
        self._on_progress(Progress(self._done, self._total, dict(self._counts), elapsed_s, stopping))


async def _drive(
    journal: Journal,
    rows: list[Row],
    target: Target,
    config: RunnerConfig,
    tracker: _Tracker,
    certificates: CertificateIndex | None,
) -> _Drive:
    interrupted = False
    received: list[int] = []
    async with _connect(target) as (client, quota):
        runner = Runner(
            client,
            quota,
            journal,
            config,
            on_row_done=tracker.row_done,
            settings=target.settings,
            certificates=None if certificates is None or certificates.worth_reading_again else certificates,
        )
        main = asyncio.current_task()
        loop = asyncio.get_running_loop()
        timeout_s = target.settings.timeout_s

        def on_signal(signum: int) -> None:
            nonlocal interrupted
            received.append(signum)
            if interrupted and main is not None:
                main.cancel()  # second signal: abandon in-flight requests at once
                return
            interrupted = True
            runner.stop("interrupted by the operator — run `batchcert rerun` to continue")
            tracker.tell(
                f"stopping: {quota.in_flight} request(s) in flight, each answered or given up within "
                f"{timeout_s:g} s; Ctrl-C again to abandon them"
            )
            if main is not None:  # the drain is bounded by the request timeout, whatever else is waiting
                loop.call_later(timeout_s + 1.0, main.cancel)

        for sig in STOP_SIGNALS:  # SIGHUP too: the reports matter more when the terminal is gone
            loop.add_signal_handler(sig, on_signal, sig)
        try:
            await runner.run(rows, journal.unverified_listeners())
        except asyncio.CancelledError:
            if not interrupted:
                raise
        finally:
            for sig in STOP_SIGNALS:
                loop.remove_signal_handler(sig)
        return _Drive(runner.stop_reason, interrupted, received[0] if received else None)


async def _serve_forever(world: emulator.World, host: str, port: int, on_ready: Callable[[str], None]) -> None:
    from batchcert import emulator

    async with emulator.serve(world, host, port) as (url, _):
        on_ready(url)
        await asyncio.Event().wait()


def serve_emulator(world: emulator.World, port: int, on_ready: Callable[[str], None], host: str = "127.0.0.1") -> None:
    """Serve `world` on host:port until interrupted; `on_ready(url)` is called once listening."""
    try:
        asyncio.run(_serve_forever(world, host, port, on_ready))
    except KeyboardInterrupt:
        return


def world_from_mapping(source: MappingSource) -> emulator.World:
    """A world in which every valid row of the mapping would succeed."""
    from batchcert import emulator

    return emulator.world_for_rows(validate_mapping(source).valid_rows())


def load_world(path: Path) -> emulator.World:
    from batchcert import emulator

    return emulator.load_world(path)


@dataclass(frozen=True)
class PlanRequest:
    """`batchcert plan MAPPING`: the pre-flight read alone."""

    mapping: Path
    out: Path | None = None
    settings: SettingFlags = field(default_factory=SettingFlags)
    profile: str | None = None
    sheet: str | None = None
    rehearsal: bool = False
    world: Path | None = None
    reports_root: Path = Path("reports")
    encoding: str | None = None
    include_hidden_rows: bool = False
    ignore_columns: tuple[str, ...] = ()

    @property
    def source(self) -> MappingSource:
        return MappingSource(self.mapping, self.sheet, self.encoding, self.include_hidden_rows, self.ignore_columns)


@dataclass(frozen=True)
class PlanResult:
    """What would happen per mapping row, counts per action, and the plan.csv path."""

    lines: list[PlanLine]
    counts: dict[str, int]
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
        return ExitCode.CHANGES_PENDING if self.counts["change"] or self.counts["changing"] else ExitCode.OK


def plan_mapping(request: PlanRequest) -> PlanResult:
    """Read every distinct listener of the mapping once (under the rate ceiling) and say what `run` would do with
    each row; write plan.csv. Sends no change. Raises BatchcertError for run-level problems."""
    mapping = validate_mapping(request.source)
    target = choose_target(
        resolve_settings(request.settings, request.rehearsal or request.world is not None),
        request.profile,
        lambda: _rehearsal_world(request.world, mapping),
    )
    lines = plan_every_row(mapping, asyncio.run(_plan(mapping.valid_rows(), target)))
    out_dir = request.out or default_run_dir(
        request.reports_root, request.mapping.with_name(request.mapping.stem + "-plan")
    )
    path = write_plan(out_dir, lines)
    return PlanResult(lines, count_plan_actions(lines), path, mapping.notes, len(mapping.duplicate_of))


async def _plan(rows: list[Row], target: Target) -> list[PlanLine]:
    async with _connect(target) as (client, quota):
        reader = _reader(client, quota, target)
        certificates = await reader.certificates()
        return await plan_rows(reader, rows, certificates, target.settings.min_validity_days)


def _reader(client: GaapClient, quota: Quota, target: Target, max_attempts: int | None = None) -> LiveReader:
    policy = RunnerConfig().retry_policy(max_attempts or target.settings.max_attempts)
    return LiveReader(client, quota, policy, Sleeper(), random.Random())


#: attempts of the certificate read before the operator is asked: it only feeds warnings, and a run whose read
#: fails here reads again (with the run's attempts) before it sends — an unreachable endpoint must not hold the prompt
PROMPT_READ_ATTEMPTS = 2


def read_certificates(target: Target) -> CertificateIndex:
    """The account's certificates (DescribeCertificates, paged), read once before the operator is asked."""

    async def read() -> CertificateIndex:
        async with _connect(target) as (client, quota):
            return await _reader(client, quota, target, PROMPT_READ_ATTEMPTS).certificates()

    return asyncio.run(read())


def _certificate_warnings(
    rows: list[Row], certificates: CertificateIndex | None, settings: RunSettings
) -> tuple[str, ...]:
    """What the operator should know about the targets before sending: those expiring soon, or that they could
    not be checked (or not yet: a transient failure is read again before sending)."""
    if certificates is None or not rows:
        return ()
    if certificates.worth_reading_again:
        return (f"the target certificates could not be read yet ({certificates.failed}): read again before sending",)
    if certificates.failed:
        return (f"the target certificates could not be checked: DescribeCertificates answered {certificates.failed}",)
    return expiring_targets(rows, certificates.by_id, time.time(), settings.min_validity_days)


@dataclass(frozen=True)
class InventoryRequest:
    """`batchcert inventory`: read the estate; with `replace` (OLD=NEW texts) also write the rotation mapping."""

    out: Path | None = None
    settings: SettingFlags = field(default_factory=SettingFlags)
    profile: str | None = None
    rehearsal: bool = False
    world: Path | None = None
    reports_root: Path = Path("reports")
    replace: tuple[str, ...] = ()


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


def take_inventory(request: InventoryRequest, on_step: StepFn | None = None) -> InventoryResult:
    """Read every connection, HTTPS listener, domain and certificate (under the rate ceiling, with retries), write
    inventory.csv/xlsx, and with `replace` the mapping that moves every use of OLD to NEW. Raises BatchcertError
    (exit 2) when the estate cannot be read whole, or a NEW does not exist or has the wrong type — before writing
    anything."""
    from batchcert import emulator

    replacements = [parse_replacement(text) for text in request.replace]
    rehearsal = request.rehearsal or request.world is not None
    target = choose_target(
        resolve_settings(request.settings, rehearsal),
        request.profile,
        lambda: emulator.load_world(request.world) if request.world else _missing_world(),
    )

    async def read() -> Estate:
        async with _connect(target) as (client, quota):
            return await read_estate(_reader(client, quota, target), on_step)

    estate = asyncio.run(read())
    rotation = plan_rotation(estate, replacements) if replacements else None
    out_dir = request.out or request.reports_root / f"{datetime.now(tz=UTC).strftime('%Y%m%dT%H%M%SZ')}-inventory"
    files: tuple[Path, ...] = write_inventory(
        out_dir, estate.places, estate.certificates, time.time(), estate.not_searched
    )
    if rotation is not None:
        files += (write_rotation(out_dir, rotation.lines),)
    listeners = sum(1 for p in estate.places if p.scope == SCOPE_LISTENER)
    return InventoryResult(
        listeners,
        len(estate.places) - listeners,
        len(estate.certificates),
        rotation,
        files,
        estate.not_searched,
        not_searched_advice(estate.not_searched),
    )


def _missing_world() -> emulator.World:
    raise SettingsError("an inventory rehearsal needs the estate to read: pass --world FILE")
