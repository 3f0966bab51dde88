"""A run's shared state, each concern in one small typed object: the run's stop (`RunStop`), the collaborators every
part uses (`RunContext`), how rows are sent as the live state showed them (`RowForms`), and what earlier sessions
left for this one (`EarlierSessions`)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from batchcert import classify
from batchcert.journal import Journal
from batchcert.live.state import LiveDomain
from batchcert.model import DEFAULT_CERTIFICATE, SCOPE_LISTENER, Api, Outcome, Row
from batchcert.schedule import Clock, Quota, RetryPolicy, Sleeper
from batchcert.settings import RunSettings


class RunStop:
    """The run's stop: once `stop` is called nothing more is dispatched — every sleeper wakes, every gate of the
    quota closes, calls in flight finish — and `reason` says why (rows not yet sent end `not_attempted` with it)."""

    def __init__(self, quota: Quota) -> None:
        self.sleeper = Sleeper()
        self.reason = ""
        self._quota = quota

    @property
    def stopping(self) -> bool:
        return self.sleeper.stopped

    def stop(self, reason: str) -> None:
        """Stop dispatching: calls in flight finish, rows not yet sent end `not_attempted` with `reason`."""
        if not self.sleeper.stopped:
            self.reason = reason
            self.sleeper.wake_all()
            self._quota.close()


@dataclass(frozen=True)
class RunContext:
    """What every part of a run uses: the API and the quota every request goes through (its clock is the run's), the
    journal, the settings (attempts per row; `listener_wait_s`: how long a row waits out its domain changing, or
    keeps reading after an ambiguous answer, before giving up) and the retry policy, the run's random numbers (one
    generator, drawn in a fixed order, so a seeded run repeats exactly), its stop and sleeper, and `on_row_done(row,
    outcome)`, called as each row ends."""

    api: Api
    quota: Quota
    clock: Clock
    journal: Journal
    settings: RunSettings
    policy: RetryPolicy
    rng: random.Random
    stop: RunStop
    sleeper: Sleeper
    on_row_done: Callable[[Row, Outcome], None]


class RowForms:
    """How each row is sent, as reading its listener showed it: a domain the service spells otherwise than the
    mapping (case) is sent as the service spells it; a row naming no client CA on a mutual-TLS domain carries the
    live client CAs along; a listener row that gives no proxy takes the listener's proxy as its own read showed it
    (ModifyHTTPSListenerAttribute takes it)."""

    def __init__(self) -> None:
        self._spelling: dict[int, str] = {}
        self._carried: dict[int, tuple[str, ...]] = {}
        self._proxy_of: dict[str, str] = {}

    def learn_from(self, row: Row, live: LiveDomain | None) -> None:
        """What the pre-flight read of `row`'s domain (`live`; None: absent) says about sending it."""
        if live is not None and live.domain and live.domain != row.domain:
            self._spelling[row.row_number] = live.domain
        names_clients = bool(row.client_certificate_id or row.poly_client_certificate_ids)
        if live is not None and not names_clients and live.client_ids not in ((), (DEFAULT_CERTIFICATE,)):
            # a mutual-TLS domain and a row naming only a server certificate: send its client CAs along, so they
            # are kept under either reading of the API (docs/gaap-api.md, "The call")
            self._carried[row.row_number] = live.client_ids

    def note_proxy(self, listener_id: str, proxy_id: str) -> None:
        """A listener's proxy, as its own read showed it."""
        self._proxy_of[listener_id] = proxy_id

    def spelled(self, row_number: int) -> str | None:
        """The domain as the service spells it, when it differs from the mapping's (None: as the mapping has it)."""
        return self._spelling.get(row_number)

    def carried(self, row_number: int) -> tuple[str, ...] | None:
        """The live client CAs sent along with a row that names none (None: the row is sent as it is)."""
        return self._carried.get(row_number)

    def target_of(self, row: Row) -> Row:
        """The row as sent: with the live client CAs carried over when it names none on a mutual-TLS domain or
        listener, and a listener row's proxy as the listener's read showed it when the mapping gives none."""
        carried = self._carried.get(row.row_number)
        if carried:
            row = replace(row, poly_client_certificate_ids=carried)
        spelled = self._spelling.get(row.row_number)
        if spelled:
            row = replace(row, domain=spelled)
        if row.scope == SCOPE_LISTENER and not row.proxy_id and row.listener_id in self._proxy_of:
            row = replace(row, proxy_id=self._proxy_of[row.listener_id])
        return row


@dataclass
class EarlierSessions:
    """What earlier sessions left for this run: the rows whose last answer may hide an applied change (`ambiguous`:
    in flight at a crash, a timeout — or every row, when `rerun --reread` accepted a journal that lost records), the
    state each row had before the run as a session recorded it (`before`), and the rows whose listener this run's
    pre-flight read (`read_since`): an earlier ambiguous answer is settled by that read."""

    ambiguous: frozenset[int] = frozenset()
    before: dict[int, tuple[str, tuple[str, ...]]] = field(default_factory=dict)
    read_since: set[int] = field(default_factory=set)

    def recall_answers(self, journal: Journal, rows: list[Row]) -> None:
        """Note the rows whose last answer in an earlier session may hide an applied change."""
        self.ambiguous = frozenset(
            n for n, code in journal.last_modify_codes().items() if classify.policy_for(code).maybe_applied
        )
        if journal.unproven:  # `rerun --reread`: any row may have been sent in records the journal lost
            self.ambiguous = frozenset(row.row_number for row in rows)

    def in_doubt(self, row_number: int) -> bool:
        """An earlier session's answer may hide an applied change, and no read of this run has settled it."""
        return row_number in self.ambiguous and row_number not in self.read_since
