"""One sending session into an open journal (a `run`, or each `rerun`): recorded as it begins, the rows sent by a
runner with progress and the stop signals handled, the rehearsal world saved, the journal's session closed and the
reports written — summed up for the CLI."""

from __future__ import annotations

import asyncio
import importlib
import json
import socket
import threading
from dataclasses import dataclass

from batchcert.journal import Journal
from batchcert.live.reader import CertificateIndex
from batchcert.model import Row, SessionKind, SessionStatus, command_to_rerun
from batchcert.report import REPORT_LIBRARIES, write_reports
from batchcert.runner import Runner, RunnerConfig
from batchcert.workflow.progress import ProgressFn, ProgressTracker
from batchcert.workflow.rehearsal import save_rehearsal_world
from batchcert.workflow.results import RunSummary
from batchcert.workflow.signals import StopSignals, signals_deferred
from batchcert.workflow.target import Target, connect


def operator_name() -> str:
    """user@host, for the change record (who ran it)."""
    import getpass

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def execute_session(
    journal: Journal,
    kind: SessionKind,
    rows: list[Row],
    target: Target,
    config: RunnerConfig,
    on_progress: ProgressFn | None,
    certificates: CertificateIndex | None = None,
    expiring: tuple[str, ...] = (),
) -> RunSummary:
    """Send `rows` to `target` as a session of `kind` of `journal`, with `certificates` read before
    the prompt (None: not read) and the warnings about them; close the session and write the reports, holding the
    stop signals meanwhile. Returns how the run ended."""
    credentials = target.credentials
    journal.begin_session(kind, target.settings.to_record(), operator_name(), credentials.masked_id, credentials.source)
    if certificates is not None:
        journal.record_certificates(certificates.by_id.values())
    journal.set_facts(certificate_warnings=json.dumps(list(expiring)))
    _import_report_libraries_meanwhile()
    tracker = ProgressTracker(rows, journal.duplicate_counts(), on_progress or (lambda _progress: None))
    outcome = asyncio.run(_drive(journal, rows, target, config, tracker, certificates))
    if target.world is not None:
        save_rehearsal_world(journal.run_dir, target.world)
    with signals_deferred() as signalled:
        interrupted = outcome.interrupted or bool(signalled)
        signal_received = outcome.signal_received or (signalled[0] if signalled else None)
        status = (
            SessionStatus.INTERRUPTED
            if interrupted
            else (SessionStatus.STOPPED if outcome.stop_reason else SessionStatus.FINISHED)
        )
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
        rerun_command=command_to_rerun(journal.run_dir),
        failed_command=reports.failed_command,
    )


@dataclass(frozen=True)
class _Drive:
    """How the sending ended: why it stopped early ("" it did not) and whether a stop signal interrupted it."""

    stop_reason: str
    interrupted: bool
    signal_received: int | None = None


def _import_report_libraries_meanwhile() -> None:
    """Import pandas and xlsxwriter on a thread while the run waits on the network (~0.3 s of CPU that would
    otherwise be spent after the last answer, before the reports): the process ends that much sooner, and the
    reports find them imported. The import lock makes a report that comes first simply wait for it.

    It begins with the session, before the first request: numpy's and pandas' extension modules hold the
    interpreter lock while they initialise (tens of milliseconds at a time), and a request the gate has logged as
    sent but that such a pause holds back arrives late — begun 50 ms into the session, in the middle of a burst of
    reads, that was enough for the service to count 21 in one second (docs/scheduling.md, "Start-up")."""

    def work() -> None:
        for name in REPORT_LIBRARIES:
            importlib.import_module(name)

    threading.Thread(target=work, name="import-report-libraries", daemon=True).start()


async def _drive(
    journal: Journal,
    rows: list[Row],
    target: Target,
    config: RunnerConfig,
    tracker: ProgressTracker,
    certificates: CertificateIndex | None,
) -> _Drive:
    async with connect(target) as (client, quota):
        runner = Runner(
            client,
            quota,
            journal,
            config,
            on_row_done=tracker.row_done,
            settings=target.settings,
            certificates=None if certificates is None or certificates.worth_reading_again else certificates,
        )
        timeout_s = target.settings.timeout_s

        def stop() -> None:
            runner.stop("interrupted by the operator — run `batchcert rerun` to continue")
            tracker.tell(
                f"stopping: {quota.in_flight} request(s) in flight, each answered or given up within "
                f"{timeout_s:g} s; Ctrl-C again to abandon them"
            )

        signals = StopSignals(stop, timeout_s)
        with signals.handled():
            try:
                await runner.run(rows, journal.unverified_listeners())
            except asyncio.CancelledError:
                if not signals.interrupted:
                    raise
        return _Drive(runner.stop_reason, signals.interrupted, signals.first)
