"""`Journal`: one run directory's journal, as the runner, the workflow and the report use it — composed of the
store (`db.Store`), the row writes (`writes.RowWriter`) and the functions of `sessions`, `views` and `recovery`,
each of which owns its concern; this class only holds them together and delegates."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from batchcert.journal import recovery, views
from batchcert.journal import sessions as run_sessions
from batchcert.journal.db import Store
from batchcert.journal.intents import IntentLog
from batchcert.journal.views import Columns, FailedAttempt, RowRange
from batchcert.journal.writes import Attempt, RowWriter
from batchcert.live.certificates import CertificateInfo
from batchcert.model import (
    Basis,
    CallResult,
    Mapping,
    Outcome,
    ReadBack,
    Row,
    ServedCheck,
    SessionAccount,
    SessionKind,
    SessionStatus,
)


class Journal:
    """A run directory's journal. Not thread-safe; one writer process (held by the run directory's lock)."""

    #: the group commit's flush window (`db.Store.FLUSH_WINDOW_S`, where docs/scheduling.md looks for it)
    FLUSH_WINDOW_S = Store.FLUSH_WINDOW_S

    def __init__(self, run_dir: Path, connection: sqlite3.Connection, lock_fd: int | None) -> None:
        self.run_dir = run_dir
        self._lock_fd = lock_fd
        intents = IntentLog(run_dir)
        #: the connection, its transactions, group commit and flushes
        self.store = Store(run_dir, connection, intents)
        #: the writes about rows and their requests, for the open session
        self.writes = RowWriter(self.store, intents)
        #: what `inspect_journal` found when the journal was opened (shown in the reports)
        self.warnings: tuple[str, ...] = ()
        #: opened by `rerun --reread` although it cannot prove it holds every change sent: every row may have been
        #: sent, and is read before it is sent again
        self.unproven = False

    @property
    def session_id(self) -> int | None:
        """The session open now (`begin_session`), None before one is."""
        return self.writes.session_id

    # -- lifecycle and durability (db.Store)
    def close(self) -> None:
        """Commit what is pending, close the journal and release the run directory."""
        self.store.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def durable(self) -> None:
        """Return once every line written so far is on disk, the intents first (`db.Store.durable`)."""
        await self.store.durable()

    def commit(self) -> None:
        """Make every line written so far durable now (`db.Store.commit`)."""
        self.store.commit()

    # -- the run and its sessions (sessions)
    def set_facts(self, **facts: str) -> None:
        run_sessions.set_facts(self.store, facts)

    def record_mapping(self, mapping: Mapping) -> None:
        """Store every row of the mapping, then mark the run set up (`sessions.record_mapping`)."""
        run_sessions.record_mapping(self.store, mapping)

    def record_certificates(self, certificates: Iterable[CertificateInfo]) -> None:
        run_sessions.record_certificates(self.store, certificates)

    def begin_session(
        self,
        kind: SessionKind,
        settings: dict[str, Any],
        operator: str = "",
        secret_id_masked: str = "",
        credential_source: str = "",
        accounts: Sequence[SessionAccount] = (),
    ) -> int:
        """Open a session (`sessions.begin_session`); the requests recorded from now on belong to it."""
        self.writes.session_id = run_sessions.begin_session(
            self.store, kind, settings, operator, secret_id_masked, credential_source, accounts
        )
        return self.writes.session_id

    def end_session(self, status: SessionStatus, note: str = "") -> None:
        """Close the open session and write run.json (`sessions.end_session`)."""
        run_sessions.end_session(self.store, self.session_id, status, note)

    def recover(self) -> int:
        """Settle what a dead process left open; how many rows it settled (`recovery.recover`)."""
        return recovery.recover(self.store, self.session_id)

    # -- rows and their requests (writes.RowWriter)
    def begin_attempt(self, row_number: int, action: str) -> Attempt:
        """Journal a change before it is sent; await `durable` before sending (`writes.RowWriter.begin_attempt`)."""
        return self.writes.begin_attempt(row_number, action)

    def finish_attempt(self, attempt: Attempt, result: CallResult) -> None:
        self.writes.finish_attempt(attempt, result)

    def record_read(
        self,
        listener_id: str,
        result: CallResult,
        sent_at: float,
        row_number: int | None = None,
        action: str = "DescribeRules",
    ) -> None:
        self.writes.record_read(listener_id, result, sent_at, row_number, action)

    def record_previous(self, states: list[tuple[int, str, tuple[str, ...]]]) -> None:
        self.writes.record_previous(states)

    def previous_states(self) -> dict[int, tuple[str, tuple[str, ...]]]:
        return self.writes.previous_states()

    def previous_state(self, row_number: int) -> tuple[str, tuple[str, ...]] | None:
        return self.writes.previous_state(row_number)

    def finish_row(
        self,
        row_number: int,
        outcome: Outcome,
        code: str = "",
        message: str = "",
        request_id: str = "",
        basis: Basis = Basis.ANSWER,
    ) -> None:
        self.writes.finish_row(row_number, outcome, code, message, request_id, basis)

    def finish_rows(self, row_numbers: list[int], outcome: Outcome, message: str) -> None:
        self.writes.finish_rows(row_numbers, outcome, message)

    def record_verification(self, checks: list[ReadBack]) -> None:
        self.writes.record_verification(checks)

    def record_served(self, checks: list[ServedCheck]) -> None:
        self.writes.record_served(checks)

    # -- what the runner and the rerun read (views)
    def facts(self) -> dict[str, str]:
        return views.read_facts(self.store.connection)

    def rows(self, outcomes: frozenset[Outcome] | None = None) -> list[Row]:
        return views.read_rows(self.store.connection, outcomes)

    def outcome_counts(self) -> dict[Outcome, int]:
        return views.count_outcomes(self.store.connection)

    def row_outcomes(self) -> dict[int, Outcome]:
        return views.read_row_outcomes(self.store.connection)

    def duplicate_counts(self) -> dict[int, int]:
        return views.count_duplicates(self.store.connection)

    def modified_rows(self) -> frozenset[int]:
        return views.find_changed_rows(self.store.connection)

    def unverified_listeners(self, profile: str = "") -> frozenset[str]:
        return views.find_unverified_listeners(self.store.connection, profile)

    def unproven_listeners(self, profile: str = "") -> frozenset[str]:
        return views.find_unproven_listeners(self.store.connection, profile)

    def canary_failures(self, row_numbers: list[int]) -> list[str]:
        return views.describe_canary_failures(self.store.connection, row_numbers)

    def unproven_rows(self, row_numbers: list[int]) -> frozenset[int]:
        return views.find_unproven_rows(self.store.connection, row_numbers)

    def last_modify_codes(self) -> dict[int, str]:
        return views.read_last_change_codes(self.store.connection)

    def certificates(self) -> list[CertificateInfo]:
        return views.read_certificates(self.store.connection)

    def sessions(self) -> list[dict[str, Any]]:
        return views.read_sessions(self.store.connection)

    # -- what the report reads (views): its tables a range of rows at a time (as columns), then the rest
    def row_ranges(self, rows_per_range: int) -> Iterator[RowRange]:
        return views.split_rows(self.store.connection, rows_per_range)

    def stored_rows(self, rows: RowRange) -> Columns:
        return views.read_stored_rows(self.store.connection, rows)

    def outcome_records(self, rows: RowRange) -> Columns:
        return views.read_outcome_records(self.store.connection, rows)

    def previous_records(self, rows: RowRange) -> Columns:
        return views.read_previous_records(self.store.connection, rows)

    def verification_records(self, rows: RowRange) -> Columns:
        return views.read_verification_records(self.store.connection, rows)

    def change_attempts(self, rows: RowRange) -> Columns:
        return views.read_change_attempts(self.store.connection, rows)

    def extra_column_names(self) -> list[str]:
        return views.read_extra_column_names(self.store.connection)

    def request_counts(self) -> tuple[dict[str, int], dict[str, int]]:
        return views.count_requests(self.store.connection)

    def failed_attempts(self) -> Iterator[FailedAttempt]:
        return views.stream_failed_attempts(self.store.connection)

    def transient_error_counts(self) -> dict[str, int]:
        return views.count_transient_errors(self.store.connection)

    def attempt_records(self) -> list[dict[str, Any]]:
        return views.read_attempt_records(self.store.connection)
