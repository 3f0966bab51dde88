"""`run` and `rerun`: from a request to a claimed, confirmed sending session (`workflow.session`) — the mapping read
or the journal reopened, the target chosen, the preview shown to `confirm`, the places claimed, the journal created
with the facts the run records."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from batchcert import __version__
from batchcert.claims import claim_places, place_digests
from batchcert.errors import BatchcertError
from batchcert.journal import Journal, create_journal, open_journal
from batchcert.mapping import file_sha256, require_rows_to_send
from batchcert.model import RERUN_OUTCOMES, Mapping, Outcome, Row, SessionKind, group_by_profile
from batchcert.runner import estimate_run_s
from batchcert.settings import resolve_settings
from batchcert.workflow.certificates import all_certificate_warnings, read_all_certificates
from batchcert.workflow.commands import validate_mapping
from batchcert.workflow.progress import ProgressFn
from batchcert.workflow.rehearsal import continued_worlds
from batchcert.workflow.requests import RerunRequest, RunRequest
from batchcert.workflow.results import Preview, RunSummary
from batchcert.workflow.run_dir import default_run_dir, moved_run_warning, remove_temps_of_killed_writes
from batchcert.workflow.session import execute_session, operator_name
from batchcert.workflow.target import Targets, choose_mapping_targets, choose_targets, rows_name_accounts


class Declined(BatchcertError):
    """The operator answered no at the confirmation prompt; nothing was sent."""


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
    targets, mapping = choose_mapping_targets(request, mapping)
    run_dir = request.out or default_run_dir(request.reports_root, request.mapping)
    certificates = read_all_certificates(targets) if request.runner.preflight else None
    expiring = all_certificate_warnings(mapping.valid_rows(), certificates, targets)
    preview = Preview(
        source=f"{mapping.path} (sha256 {mapping.sha256[:12]}…)",
        rows=len(mapping.rows),
        to_send=len(mapping.valid_rows()),
        invalid=len(mapping.problems),
        duplicates=len(mapping.duplicate_of),
        listeners=len({row.listener_id for row in mapping.valid_rows()}),
        estimate_s=estimate_run_s(mapping.valid_rows(), targets.settings.rate_per_s),
        sheet=mapping.sheet,
        endpoint=targets.settings.endpoint_label,
        secret_id_masked=targets.masked_ids,
        rehearsal=targets.settings.rehearsal,
        run_dir=run_dir,
        warnings=targets.warnings + expiring,
        problems=tuple(mapping.problems[n] for n in sorted(mapping.problems)),
        notes=mapping.notes,
    )
    with _claim(targets, run_dir, mapping.valid_rows(), request.force):
        if not confirm(preview):
            raise Declined("nothing was sent — answered no at the prompt")
        journal = _create_journal(request, mapping, targets, run_dir)
        with journal:
            journal.record_mapping(mapping)
            return execute_session(
                journal,
                SessionKind.RUN,
                mapping.valid_rows(),
                targets,
                request.runner,
                on_progress,
                certificates,
                expiring,
            )


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
        remove_temps_of_killed_writes(request.run_dir)
        journal.recover()
        facts = journal.facts()
        recorded = journal.sessions()[-1]["settings"] if journal.sessions() else {}
        warnings = _mapping_change_warning(journal, facts) + moved_run_warning(request.run_dir, facts)
        wanted = RERUN_OUTCOMES | ({Outcome.TERMINAL} if request.include_terminal else set())
        rows = journal.rows(frozenset(wanted))
        targets = _rerun_targets(request, journal, facts, recorded, rows)
        counts = journal.outcome_counts()
        certificates = read_all_certificates(targets) if request.runner.preflight and rows else None
        expiring = all_certificate_warnings(rows, certificates, targets)
        preview = Preview(
            source=facts.get("mapping", ""),
            rows=sum(counts.values()),
            to_send=len(rows),
            invalid=counts[Outcome.INVALID],
            duplicates=sum(journal.duplicate_counts().values()),
            listeners=len({row.listener_id for row in rows}),
            estimate_s=estimate_run_s(rows, targets.settings.rate_per_s),
            sheet=facts.get("sheet", ""),
            endpoint=targets.settings.endpoint_label,
            secret_id_masked=targets.masked_ids,
            rehearsal=targets.settings.rehearsal,
            run_dir=request.run_dir,
            warnings=warnings + targets.warnings + expiring,
        )
        with _claim(targets, request.run_dir, rows, request.force):
            if not confirm(preview):
                raise Declined("nothing was sent — answered no at the prompt")
            return execute_session(
                journal, SessionKind.RERUN, rows, targets, request.runner, on_progress, certificates, expiring
            )


def _rerun_targets(
    request: RerunRequest, journal: Journal, facts: dict[str, str], recorded: dict[str, Any], rows: list[Row]
) -> Targets:
    """A target for each account the rows to resend belong to (their profiles as the run recorded them; `--profile`,
    else the run's, signs for rows that named none, as it did for the run), continuing a rehearsal's worlds."""
    default = request.profile if request.profile is not None else facts.get("profile", "")
    settings = resolve_settings(request.settings, facts.get("rehearsal") == "true", recorded)
    profiles = list(group_by_profile(rows)) or [default]
    if settings.rehearsal:
        worlds = continued_worlds(journal, facts)
        return choose_targets(settings, profiles, default, worlds.world_of)
    return choose_targets(settings, profiles, default)


def _claim(targets: Targets, run_dir: Path, rows: list[Row], force: bool) -> contextlib.AbstractContextManager[None]:
    """Claim the places (listener, domain) `rows` change for the run (batchcert.claims); a rehearsal's emulator is
    its own, nothing to claim."""
    if targets.settings.rehearsal:
        return contextlib.nullcontext()
    return claim_places(run_dir, place_digests((r.listener_id, r.domain) for r in rows), force=force)


def _create_journal(request: RunRequest, mapping: Mapping, targets: Targets, run_dir: Path) -> Journal:
    """The run's journal, created in `run_dir` with the facts the run records: the mapping, who ran it and where,
    how the mapping was read, the target."""
    return create_journal(
        run_dir,
        {
            "mapping": str(request.mapping.resolve()),
            "mapping_sha256": mapping.sha256,
            "operator": operator_name(),
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
            "endpoint": targets.settings.endpoint_label,
            "secret_id_masked": targets.masked_ids,
            "rehearsal": "true" if targets.settings.rehearsal else "false",
            # rows name their accounts (a Profile column, or a profile other than the default): the outputs say
            # each row's profile (README, "Many accounts in one run")
            "profiles": "true" if rows_name_accounts(mapping, targets) else "false",
            "world": str(request.world.resolve()) if request.world else "",
        },
    )


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
