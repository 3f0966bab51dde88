"""One sending session into an open journal (a `run`, or each `rerun`): recorded as it begins, the rows sent by a
runner per account (all at once) with progress and the stop signals handled, the rehearsal worlds saved, the
journal's session closed and the reports written — summed up for the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import socket
import threading
from dataclasses import dataclass

from batchcert.journal import Journal
from batchcert.live.reader import CertificateIndex
from batchcert.model import Row, SessionAccount, SessionKind, SessionStatus, command_to_rerun, group_by_profile
from batchcert.report import REPORT_LIBRARIES, write_reports
from batchcert.runner import FailureGuard, Runner, RunnerConfig
from batchcert.schedule import Quota
from batchcert.workflow.progress import ProgressFn, ProgressTracker
from batchcert.workflow.rehearsal import save_rehearsal_worlds
from batchcert.workflow.results import RunSummary
from batchcert.workflow.signals import StopSignals, signals_deferred
from batchcert.workflow.target import Targets, connect


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
    targets: Targets,
    config: RunnerConfig,
    on_progress: ProgressFn | None,
    certificates: dict[str, CertificateIndex] | None = None,
    expiring: tuple[str, ...] = (),
) -> RunSummary:
    """Send `rows` — each to its profile's target in `targets`, every account at once — as a session of `kind` of
    `journal`, with each account's `certificates` read before the prompt (None: not read) and the warnings about
    them; close the session and write the reports, holding the stop signals meanwhile. Returns how the run ended."""
    first = targets.first.credentials
    accounts = [
        SessionAccount(profile, t.credentials.masked_id, t.credentials.source)
        for profile, t in targets.by_profile.items()
    ]
    journal.begin_session(kind, targets.settings.to_record(), operator_name(), first.masked_id, first.source, accounts)
    for index in (certificates or {}).values():
        journal.record_certificates(index.by_id.values())
    journal.set_facts(certificate_warnings=json.dumps(list(expiring)))
    _import_report_libraries_meanwhile()
    tracker = ProgressTracker(rows, journal.duplicate_counts(), on_progress or (lambda _progress: None))
    outcome = asyncio.run(_drive(journal, rows, targets, config, tracker, certificates or {}))
    worlds = {profile: t.world for profile, t in targets.by_profile.items() if t.world is not None}
    if worlds:
        save_rehearsal_worlds(journal.run_dir, worlds)
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
        rehearsal=targets.settings.rehearsal,
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
    targets: Targets,
    config: RunnerConfig,
    tracker: ProgressTracker,
    certificates: dict[str, CertificateIndex],
) -> _Drive:
    """Every account's rows on a runner of its own — its own client, quota, pacing, retry budget and stop — all in
    one event loop; the operator's stop and `--max-failures` stop them all."""
    async with contextlib.AsyncExitStack() as stack:
        runners: list[tuple[Runner, Quota, list[Row]]] = []
        rows_of = group_by_profile(rows)
        for profile, target in targets.by_profile.items():
            client, quota = await stack.enter_async_context(connect(target))
            index = certificates.get(profile)
            runner = Runner(
                client,
                quota,
                journal,
                config,
                on_row_done=tracker.row_done,
                settings=target.settings,
                certificates=None if index is None or index.worth_reading_again else index,
                profile=profile,
            )
            runners.append((runner, quota, rows_of.get(profile, [])))
        timeout_s = targets.settings.timeout_s

        def stop_all(reason: str) -> None:
            for runner, _quota, _rows in runners:
                runner.stop(reason)

        def stop() -> None:
            stop_all("interrupted by the operator — run `batchcert rerun` to continue")
            in_flight = sum(quota.in_flight for _runner, quota, _rows in runners)
            tracker.tell(
                f"stopping: {in_flight} request(s) in flight, each answered or given up within "
                f"{timeout_s:g} s; Ctrl-C again to abandon them"
            )

        # one threshold for the whole run: --max-failures counts every account's failed changes
        guard = FailureGuard(config.max_failures, len(rows), stop_all, command_to_rerun(journal.run_dir))
        signals = StopSignals(stop, timeout_s)
        with signals.handled():
            try:
                await asyncio.gather(
                    *(
                        runner.run(account_rows, journal.unverified_listeners(runner.profile), guard)
                        for runner, _quota, account_rows in runners
                    )
                )
            except asyncio.CancelledError:
                if not signals.interrupted:
                    raise
        return _Drive(_stop_reason([runner for runner, _quota, _rows in runners]), signals.interrupted, signals.first)


def _stop_reason(runners: list[Runner]) -> str:
    """Why the session stopped early ("" it did not): the one reason, or each stopped account's."""
    reasons = {runner.profile: runner.stop_reason for runner in runners if runner.stop_reason}
    if len(runners) == 1 or (len(set(reasons.values())) <= 1 and len(reasons) == len(runners)):
        return next(iter(reasons.values()), "")
    return "; ".join(f"account {profile or '(default)'}: {reason}" for profile, reason in reasons.items())
