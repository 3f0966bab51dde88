"""What the run writes about its rows as it goes: each change journaled before it is sent (its attempt, and its
intent in intents.jsonl), the answer, the reads, each row's state before any change, its outcome and what the
verification read saw.

The contract ("write the journal before you trust it"): an attempt is recorded before it is sent and completed
after; an attempt without an end is one that was in flight when the process died (`recovery.recover` settles it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from batchcert.journal.db import Store
from batchcert.journal.intents import Intent, IntentLog
from batchcert.journal.views import read_previous_states
from batchcert.model import Basis, CallResult, Outcome, ReadBack, ServedCheck


@dataclass(frozen=True)
class Attempt:
    """The handle of a journaled attempt, to complete it with `finish_attempt`."""

    id: int
    row_number: int


def _answer_fields(result: CallResult) -> tuple[Any, ...]:
    """An answer as the attempts table stores it: finished_at, request_id, code ("OK" on success), message,
    http_status, latency_ms."""
    return (
        time.time(),
        result.request_id,
        result.code or "OK",
        result.message,
        result.http_status,
        round(result.latency_s * 1000, 1),
    )


class RowWriter:
    """The journal's writes about rows and their requests, for the session now open (`session_id`)."""

    def __init__(self, store: Store, intents: IntentLog) -> None:
        self._store = store
        self._intents = intents
        #: each row's state before any change (this session's pre-flight, or an earlier session's), for the intents
        self._previous: dict[int, tuple[str, tuple[str, ...]]] = {}
        #: the session the attempts and reads belong to (0 in the journal while none is open)
        self.session_id: int | None = None

    # -- requests
    def begin_attempt(self, row_number: int, action: str) -> Attempt:
        """Record that an attempt is about to be sent, and its intent. Not yet durable: the sender awaits
        `Journal.durable()` before the request leaves (or calls `Journal.commit()`)."""
        sent_at = time.time()
        with self._store.later() as db:
            cur = db.execute(
                "INSERT INTO attempts(row_number, session_id, action, sent_at) VALUES (?, ?, ?, ?)",
                (row_number, self.session_id or 0, action, sent_at),
            )
            attempt = Attempt(int(cur.lastrowid or 0), row_number)
            before = self._previous.get(row_number)
            self._intents.append(Intent(attempt.id, row_number, self.session_id or 0, action, sent_at, before))
        return attempt

    def finish_attempt(self, attempt: Attempt, result: CallResult) -> None:
        """Record an attempt's answer."""
        with self._store.later() as db:
            db.execute(
                "UPDATE attempts SET finished_at = ?, request_id = ?, code = ?, message = ?, http_status = ?, "
                "latency_ms = ? WHERE id = ?",
                (*_answer_fields(result), attempt.id),
            )

    def record_read(self, listener_id: str, result: CallResult, sent_at: float, row: int | None, action: str) -> None:
        """Record a read (DescribeRules, DescribeCertificates) after the fact: reads change nothing, so nothing is
        at stake before."""
        with self._store.later() as db:
            db.execute(
                "INSERT INTO attempts(row_number, listener_id, session_id, action, sent_at, finished_at, request_id, "
                "code, message, http_status, latency_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (row, listener_id, self.session_id or 0, action, sent_at, *_answer_fields(result)),
            )

    # -- each row's state before any change
    def record_previous(self, states: list[tuple[int, str, tuple[str, ...]]]) -> None:
        """Record rows' state before any change, as (row number, certificate id, client ids) — only the first time
        per row (a rerun keeps the original state)."""
        for n, cert, clients in states:
            self._previous.setdefault(n, (cert, clients))
        with self._store.later() as db:
            db.executemany(
                "UPDATE rows SET previous_read = 1, previous_certificate_id = ?, previous_client_ids = ? "
                "WHERE row_number = ? AND previous_read = 0",
                [(cert, ";".join(clients), n) for n, cert, clients in states],
            )

    def previous_states(self) -> dict[int, tuple[str, tuple[str, ...]]]:
        """Row number → (certificate id, client ids) recorded before any change, for rows that have one; kept for
        `previous_state` and the intents."""
        found = read_previous_states(self._store.connection)
        self._previous.update(found)
        return found

    def previous_state(self, row_number: int) -> tuple[str, tuple[str, ...]] | None:
        """A row's (certificate id, client ids) before any change, as recorded in this process or loaded by
        `previous_states` (no query: the verification of every listener asks)."""
        return self._previous.get(row_number)

    # -- outcomes
    def finish_row(
        self,
        row_number: int,
        outcome: Outcome,
        code: str = "",
        message: str = "",
        request_id: str = "",
        basis: Basis = Basis.ANSWER,
    ) -> None:
        """Record a row's (current) outcome and what it rests on; a rerun may overwrite it later."""
        with self._store.later() as db:
            db.execute(
                "UPDATE rows SET outcome = ?, error_code = ?, error_message = ?, request_id = ?, finished_at = ?, "
                "basis = ? WHERE row_number = ?",
                (outcome.value, code, message, request_id, time.time(), basis.value, row_number),
            )

    def finish_rows(self, row_numbers: list[int], outcome: Outcome, message: str) -> None:
        """Record the same outcome for many rows in one transaction (rows a stopped run never started)."""
        now = time.time()
        with self._store.tx() as db:
            db.executemany(
                "UPDATE rows SET outcome = ?, error_code = '', error_message = ?, request_id = '', finished_at = ?, "
                "basis = '' WHERE row_number = ?",
                [(outcome.value, message, now, n) for n in row_numbers],
            )

    def record_served(self, checks: list[ServedCheck]) -> None:
        """Record what probing the edge found for each row (`rows.served`, a `Served` value, and the leaf)."""
        with self._store.later() as db:
            db.executemany(
                "UPDATE rows SET served = ?, served_sha256 = ?, served_subject = ?, served_not_after = ?, "
                "served_note = ? WHERE row_number = ?",
                [(c.served.value, c.sha256, c.subject, c.not_after_s, c.note, c.row_number) for c in checks],
            )

    def record_verification(self, checks: list[ReadBack]) -> None:
        """Record what the verification read saw; `rows.verified` stores the `Verified` value ('' not read back,
        'pending', 'true' or 'false')."""
        with self._store.later() as db:
            db.executemany(
                "UPDATE rows SET verified = ?, verified_certificate_id = ?, verified_client_ids = ? WHERE row_number = ?",
                [(c.verified.value, c.certificate_id, ";".join(c.client_ids), c.row_number) for c in checks],
            )
