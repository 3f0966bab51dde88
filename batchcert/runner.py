"""The batch run: send every row's change once, listener by listener, under the rate ceiling, and journal it all.

This module decides *what* is sent; `batchcert.schedule` decides *when* (gates, pacer, budget, retry loop, clock).
- one lane per listener (a `ListenerLane`) takes that listener's rows in mapping order, and sends one change at a
  time (the lane's turn), so never two of our changes are in flight on one listener; between changes it waits out
  the listener's asynchronous task (`ListenerPacer`) while the rate budget goes to other listeners. A row that must
  wait before its retry (a backoff, or reads until an ambiguous answer is settled) hands the rest of its lane on
  and waits aside, so one fault does not stall the listener's whole chain (docs/scheduling.md, "Listener pacing");
- every call waits at the action's `RateGate` with priority = rows left on its listener, so long listener queues
  start early and are never starved by many short ones;
- retries follow `batchcert.classify` (never an `if` per code here) through `batchcert.schedule.retry_call`: jittered
  exponential backoff, a per-row attempt limit and a run-wide `RetryBudget`, so an outage does not become a retry
  storm;
- a code whose disposition is STOP_RUN (bad credentials, account state) stops dispatching at once: rows not yet
  sent end `not_attempted` with the reason.

Reconciliation (README, "Reconciliation"): each lane reads its listener once before its first
change (`DescribeRules`, its own action budget; rows at target end `unchanged`, absent ones `terminal`), reads it
before resending after an ambiguous answer (an applied change is `succeeded`, not resent), and once more after its
last change to record `verified` per row. A listener with a listener row (Scope `listener`:
ModifyHTTPSListenerAttribute) is read with DescribeHTTPSListeners too, its own state judged like a domain's under
`reconcile.LISTENER_KEY`; its listener row and domain rows share the lane, so they are never in flight together.
Before any lane starts, the certificate pre-flight ends rows whose target certificate is missing, of the wrong type
or expired (`Preflight.*`, never sent). `plan_rows` is the pre-flight alone.
Per-row failures are outcomes in the journal, never exceptions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, replace

from batchcert import classify
from batchcert.journal import Attempt, Journal
from batchcert.model import (
    CHANGE_REVERTED,
    DEFAULT_CERTIFICATE,
    PRECONDITION_MISMATCH,
    PRECONDITION_WRONG_PROXY,
    SCOPE_LISTENER,
    Api,
    CallResult,
    Disposition,
    Outcome,
    Row,
)
from batchcert.reading import URGENT, CertificateIndex, LiveReader, Reading
from batchcert.reconcile import (
    CONFIRMED_BY_READ_BACK,
    LISTENER_KEY,
    REFUSED,
    LiveDomain,
    PlanLine,
    Verdict,
    changed_since,
    check_targets,
    is_at_target,
    is_reverted,
    judge,
    matches_expected,
    mismatch_message,
)
from batchcert.schedule import (
    POLL_FLOOR_S,
    GateClosed,
    GaveUp,
    ListenerPacer,
    Quota,
    RetryBudget,
    RetryPolicy,
    Sleeper,
    TaskTimer,
    Tries,
    is_retryable,
    retry_call,
)
from batchcert.settings import RunSettings

log = logging.getLogger("batchcert.runner")
LISTENER_HAS_TASK = "FailedOperation.ListenerHasTask"
#: rows of one lane waiting aside for their retry while the lane goes on: enough that the faults of a flaky network
#: never stall a long chain, few enough that an outage on a listener is not a burst of first attempts
MAX_PARKED_PER_LANE = 8
#: listeners worked on at once. Enough to keep both action budgets busy (each lane waits at a gate most of the
#: time), few enough that a 100,000-listener mapping does not hold 100,000 suspended coroutines in memory.
MAX_LANES = 256
#: runs' first accepted changes followed to measure the listener task time, one after another until one measures it
#: (a follow that starts late sees the task over and measures nothing)
MAX_TASK_PROBES = 3
_IDLE = LiveDomain("", "", (), 0)


@dataclass(frozen=True)
class RunnerConfig:
    """Retry and pacing knobs the command line does not set (those are `RunSettings`). Times in seconds."""

    backoff_initial_s: float = 0.25
    backoff_max_s: float = 8.0
    backoff_jitter_s: float = 0.25
    #: first guess of the send-to-send gap a listener needs between changes; learned as the run goes
    listener_task_s: float = 0.5
    #: read every listener's live state before sending (rows at target end `unchanged`, absent ones `terminal`)
    preflight: bool = True
    #: read every touched listener again after its last change and record `verified` per row
    verify: bool = True
    #: the run-wide retry budget (`schedule.RetryBudget`): retries per second always allowed, the share of recent
    #: successes allowed on top, over a window of this many seconds — 5/s is a quarter of the API's 20/s
    retry_budget_min_per_s: float = 5.0
    retry_budget_percent: float = 0.2
    retry_budget_window_s: float = 10.0

    def retry_policy(self, max_attempts: int) -> RetryPolicy:
        return RetryPolicy(max_attempts, self.backoff_initial_s, self.backoff_max_s, self.backoff_jitter_s)


def estimate_run_s(rows: list[Row], rate_per_s: float, task_s: float = RunnerConfig.listener_task_s) -> float:
    """How long sending `rows` takes at best (docs/scheduling.md, "The bound"): the writes at the ceiling, the reads
    (one before and one after per listener, their own budget) at the ceiling, or the longest listener's chain of
    changes one task apart — whichever is longest."""
    per_listener = Counter(row.listener_id for row in rows)
    longest = max(per_listener.values(), default=0)
    return max(len(rows) / rate_per_s, 2 * len(per_listener) / rate_per_s, longest * task_s)


class ListenerLane:
    """One listener's queue of rows, the send time (clock s) of the last change that may have applied, and the turn
    each change holds from the pacer's wait to its answer. `dispatcher` names the task that takes the next row;
    rows that handed the lane on while they wait for a retry are `parked` and their successors in `handoffs`."""

    def __init__(self, rows: deque[Row]) -> None:
        self.rows = rows
        self.last_change_sent: float | None = None
        self.turn = asyncio.Lock()
        self.dispatcher: object | None = None
        self.parked = 0
        self.handoffs: set[asyncio.Task[None]] = set()


def _forget_if_finished_well(tasks: set[asyncio.Task[None]]) -> Callable[[asyncio.Task[None]], None]:
    """A done callback that drops a task from `tasks` once it has finished without an error, so a long lane holds
    only the tasks still running and the failures still to be raised."""

    def forget(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is None:
            tasks.discard(task)

    return forget


#: the code of a row whose change may or may not have been applied, and that no read could settle: retryable, but
#: never resent blind — `rerun` reads the listener before it sends the row again
OUTCOME_UNKNOWN = classify.OUTCOME_UNKNOWN
OUTCOME_UNKNOWN_MESSAGE = "outcome unknown: the change may have been applied"
VERIFIED_MESSAGE = "verified after an ambiguous response: the live state already shows the target"
UNCHANGED_MESSAGE = "already at the target before the run: not sent"
REREAD_MESSAGE = (
    "at its target when read again (--reread): the journal lost whether this run or someone else put it there; "
    "its earlier state is unknown"
)
NOT_FOUND_MESSAGE = "the pre-flight read found no such listener or domain — fix the ids in the mapping"
CHANGED_MEANWHILE_MESSAGE = (
    "changed by someone else meanwhile: the listener answered busy, and the read before resending showed the target "
    "already live — not sent"
)
REVERTED_MESSAGE = (
    "the service reverted the change: it was accepted, its task failed and the read-back shows the old "
    "certificates again"
)
UNREAD_MESSAGE = (
    "could not read the live state ({code}), which this row needs before it is sent (to compare with the expected "
    "current certificate, or to spell the domain as the service does) — not sent; rerun"
)
#: what a pre-flight verdict makes of a row that is not sent: outcome, error code, message
VERDICT_OUTCOMES: dict[Verdict, tuple[Outcome, str, str]] = {
    Verdict.UNCHANGED: (Outcome.UNCHANGED, "", UNCHANGED_MESSAGE),
    Verdict.NOT_FOUND: (Outcome.TERMINAL, "ResourceNotFound", NOT_FOUND_MESSAGE),
    Verdict.MISMATCH: (Outcome.TERMINAL, PRECONDITION_MISMATCH, ""),
    Verdict.WRONG_PROXY: (Outcome.TERMINAL, PRECONDITION_WRONG_PROXY, ""),
}


def verdict_outcome(row: Row, verdict: Verdict, live: LiveDomain | None) -> tuple[Outcome, str, str] | None:
    """What a pre-flight verdict makes of a row that is not sent (outcome, code, message), or None: send it."""
    if verdict not in VERDICT_OUTCOMES:
        return None
    outcome, code, message = VERDICT_OUTCOMES[verdict]
    if verdict is Verdict.MISMATCH and row.expected is not None and live is not None:
        message = mismatch_message(row.expected, live)
    elif verdict is Verdict.WRONG_PROXY and live is not None:
        message = (
            f"listener {row.listener_id} is on proxy {live.proxy_id}, not on {row.proxy_id} as the row says — "
            "not sent; fix ProxyId"
        )
    return outcome, code, message


def needs_read(row: Row) -> bool:
    """A row that may only be sent after its listener was read, even with --no-preflight: a compare-and-swap row
    (its expected current state is checked) and a domain not written in lower case (it is sent as the service spells
    it, README "Current → new")."""
    return row.expected is not None or row.domain != row.domain.lower()


async def plan_rows(
    reader: LiveReader, rows: list[Row], certificates: CertificateIndex, min_validity_days: float
) -> list[PlanLine]:
    """Read each distinct listener once and judge every row against it and its target certificates against the
    account's (`batchcert plan`): a row `run` would refuse is `refused` with its Preflight code; expiry and
    SubjectCN warnings go into the reason."""
    listeners = list(dict.fromkeys(r.listener_id for r in rows))
    own = {r.listener_id for r in rows if r.scope == SCOPE_LISTENER}
    reads = [reader.read(lid, own=lid in own) for lid in listeners]
    readings = dict(zip(listeners, await asyncio.gather(*reads), strict=True))
    now_s, lines = time.time(), []
    for row in rows:
        check = None if certificates.failed else check_targets(row, certificates.by_id, now_s, min_validity_days)
        if check is not None and check.code:
            lines.append(PlanLine(row, REFUSED, None, f"{check.code}: {check.message}"))
            continue
        reading = readings[row.listener_id]
        if reading.failed:
            lines.append(PlanLine(row, "unknown", None, f"could not read the listener: {reading.code}"))
            continue
        verdict, live = judge(row, reading.domains)
        settled = verdict_outcome(row, verdict, live)
        notes = [settled[2]] if settled and settled[2] else []
        if check is not None:
            notes += [f"warning: {w}" for w in (*check.expiring, check.name_mismatch) if w]
        lines.append(PlanLine(row, verdict.value, live, "; ".join(notes)))
    return lines


class Runner:
    """Runs rows against one API and one journal, every request through `quota`, on the quota's clock.
    `on_row_done(row, outcome)` is called as each row ends."""

    def __init__(
        self,
        api: Api,
        quota: Quota,
        journal: Journal,
        config: RunnerConfig,
        on_row_done: Callable[[Row, Outcome], None] | None = None,
        rng: random.Random | None = None,
        max_lanes: int = MAX_LANES,
        settings: RunSettings | None = None,
        certificates: CertificateIndex | None = None,
    ) -> None:
        self.api = api
        self.quota = quota
        self.clock = quota.clock
        self.journal = journal
        self.config = config
        #: attempts per row, and `listener_wait_s`: how long a row waits out its domain changing, or keeps reading
        #: after an ambiguous answer, before giving up
        self.settings = settings or RunSettings()
        self.pacer = ListenerPacer(config.listener_task_s)
        self.task_timer = TaskTimer(config.listener_task_s)
        self.budget = RetryBudget(
            self.clock, config.retry_budget_min_per_s, config.retry_budget_percent, config.retry_budget_window_s
        )
        self.policy = config.retry_policy(self.settings.max_attempts)
        self.sleeper = Sleeper()
        self.stop_reason = ""
        self._rng = rng or random.Random()
        self._max_lanes = max_lanes
        self._on_row_done = on_row_done or (lambda _row, _outcome: None)
        self.reader = LiveReader(api, quota, self.policy, self.sleeper, self._rng, journal.record_read)
        self._changing: set[int] = set()
        self._ambiguous: frozenset[int] = frozenset()
        #: listeners found denied or closed: scope, the code, the row that found it
        self._scoped_out: dict[str, tuple[classify.Scope, str, int]] = {}
        #: rows naming no client CA on a mutual-TLS domain → the live client CAs they carry
        self._carried: dict[int, tuple[str, ...]] = {}
        self._successes = 0
        #: the state each row had before the run, as an earlier session recorded it
        self._before: dict[int, tuple[str, tuple[str, ...]]] = {}
        #: rows whose listener the pre-flight read: an earlier session's ambiguous answer is settled by that read
        self._read_before: set[int] = set()
        self._verify_rows: dict[str, list[Row]] = defaultdict(list)
        #: the account's certificates (read once per run, by the workflow before asking, or by `run`)
        self.certificates = certificates
        #: listeners with a listener row: their reads include the listener's own certificates
        self._own_read: set[str] = set()
        #: a listener's proxy as its own read showed it (ModifyHTTPSListenerAttribute takes it)
        self._proxy_of: dict[str, str] = {}
        #: rows whose domain the service spells otherwise than the mapping (case): sent as the service spells it
        self._spelling: dict[int, str] = {}
        #: rows this session brought to their target: a read-back right after showing their old state again is a
        #: reverted change (an earlier session's row found back at its old state may be a deliberate rollback since)
        self._succeeded: set[int] = set()
        #: rows a busy listener or domain refused: read before they are sent again (someone else may have changed
        #: them meanwhile, README "Two operators"); the read starts with the busy answer, while the row waits
        self._read_first: set[int] = set()
        self._reads_after_busy: dict[int, asyncio.Task[Reading]] = {}
        #: the read-backs following one of the run's first changes to measure its task (`_probe_task_time`)
        self._task_probe: asyncio.Task[None] | None = None
        self._task_probes = 0

    @property
    def stopping(self) -> bool:
        return self.sleeper.stopped

    def stop(self, reason: str) -> None:
        """Stop dispatching: calls in flight finish, rows not yet sent end `not_attempted` with `reason`."""
        if not self.sleeper.stopped:
            self.stop_reason = reason
            self.sleeper.wake_all()
            self.quota.close()

    async def run(self, rows: list[Row], verify_listeners: frozenset[str] = frozenset()) -> None:
        """Process `rows` (valid, primary rows) to an outcome each, and verify `verify_listeners` too (listeners with
        succeeded rows an earlier session never verified). Returns when every row has an outcome.

        Each listener is a pipeline of its own — pre-flight read, sends, verification read — so reads (their own
        action budget) overlap with other listeners' changes instead of adding to the wall time. Listeners start
        longest queue first, at most `max_lanes` at a time. Rows whose last answer in an earlier session may hide an
        applied change (in flight at a crash, a timeout) are checked against the live state before anything is
        resent."""
        self._ambiguous = frozenset(
            n for n, code in self.journal.last_modify_codes().items() if classify.policy_for(code).maybe_applied
        )
        if self.journal.unproven:  # `rerun --reread`: any row may have been sent in records the journal lost
            self._ambiguous = frozenset(row.row_number for row in rows)
        if self.config.preflight:
            rows = await self._refuse_unusable_targets(rows)
        self._before = self.journal.previous_states()
        queues: dict[str, deque[Row]] = defaultdict(deque)
        for row in rows:
            queues[row.listener_id].append(row)
        if self.config.verify:
            for listener_id in verify_listeners:
                queues.setdefault(listener_id, deque())
        outcomes = self.journal.row_outcomes()
        self._verify_rows = defaultdict(list)
        for row in self.journal.rows():
            if row.listener_id in queues and outcomes.get(row.row_number) is not Outcome.INVALID:
                self._verify_rows[row.listener_id].append(row)
                if row.scope == SCOPE_LISTENER:
                    self._own_read.add(row.listener_id)
        # longest queue first (a stable sort keeps mapping order among equals): the longest chain bounds the run
        waiting = deque(sorted(queues, key=lambda lid: -len(queues[lid])))

        async def work() -> None:
            while waiting and not self.stopping:
                listener_id = waiting.popleft()
                await self._run_listener(listener_id, queues.pop(listener_id))

        try:
            await asyncio.gather(*(work() for _ in range(min(self._max_lanes, len(waiting)))))
        finally:
            if self._task_probe is not None:
                self._task_probe.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task_probe
        self._settle_unstarted([row for lid in waiting for row in queues[lid]])

    async def _refuse_unusable_targets(self, rows: list[Row]) -> list[Row]:
        """The certificate pre-flight: rows whose target certificate is missing, of the wrong type or expired end
        `terminal` with a `Preflight.*` code and are never sent; the rest go on. Skipped (with a journal note) when
        the certificates cannot be read."""
        if self.certificates is None:
            self.certificates = await self.reader.certificates()
            self.journal.record_certificates(self.certificates.by_id.values())
        if self.certificates.failed:
            self.journal.set_facts(
                certificate_check=f"skipped: DescribeCertificates answered {self.certificates.failed}"
            )
            return rows
        now_s, keep = time.time(), []
        for row in rows:
            check = check_targets(row, self.certificates.by_id, now_s, self.settings.min_validity_days)
            if not check.code:
                keep.append(row)
                continue
            advice = classify.policy_for(check.code).advice
            self.journal.finish_row(
                row.row_number, Outcome.TERMINAL, check.code, f"{check.message} — {advice}; not sent"
            )
            self._on_row_done(row, Outcome.TERMINAL)
        return keep

    def _settle_unstarted(self, rows: list[Row]) -> None:
        """Rows of listeners never started because the run stopped: `not_attempted`, in one journal transaction."""
        if not rows:
            return
        self.journal.finish_rows([r.row_number for r in rows], Outcome.NOT_ATTEMPTED, f"not sent: {self.stop_reason}")
        for row in rows:
            self._on_row_done(row, Outcome.NOT_ATTEMPTED)

    async def _run_listener(self, listener_id: str, queue: deque[Row]) -> None:
        lane = ListenerLane(queue)
        if queue and (self.config.preflight or any(needs_read(row) for row in queue)):
            lane.rows = deque(await self._preflight(listener_id, list(queue)))
        try:
            await self._work_lane(lane)
            while lane.handoffs:  # a successor may hand on again: wait until none is left, failing at the first
                done, _ = await asyncio.wait(set(lane.handoffs), return_when=asyncio.FIRST_EXCEPTION)
                for task in done:
                    lane.handoffs.discard(task)
                    task.result()
        finally:
            for task in lane.handoffs:  # only after a failure (the run is over): stop the lane's other tasks
                if task.done() and not task.cancelled():
                    task.exception()  # retrieved: the first failure is the one raised
                task.cancel()
        if self.config.verify and not self.stopping:
            await self._verify(listener_id, self._verify_rows[listener_id], lane.last_change_sent)

    async def _read(self, listener_id: str, row_number: int | None = None, priority: float = URGENT) -> Reading:
        """Read a listener's domains — and its own certificates when a listener row is on it."""
        own = listener_id in self._own_read
        reading = await self.reader.read(listener_id, row_number, priority, own=own)
        mine = (reading.domains or {}).get(LISTENER_KEY) if own else None
        if mine is not None and mine.proxy_id:
            self._proxy_of[listener_id] = mine.proxy_id
        if reading.failed and classify.disposition_of(reading.code) is Disposition.STOP_RUN:
            self.stop(f"the run stopped at {reading.code} — {classify.policy_for(reading.code).advice}")
        return reading

    async def _preflight(self, listener_id: str, rows: list[Row]) -> list[Row]:
        """Read the listener once; settle rows already at target or absent; return the rows to send."""
        reading = await self._read(listener_id, priority=len(rows))
        if reading.failed:
            # unknown state: send, and let the answers decide — except rows that must not be sent unread
            sendable = []
            for row in rows:
                if not needs_read(row):
                    sendable.append(row)
                    continue
                self.journal.finish_row(
                    row.row_number, Outcome.RETRYABLE, reading.code, UNREAD_MESSAGE.format(code=reading.code)
                )
                self._on_row_done(row, Outcome.RETRYABLE)
            return sendable
        pending = []
        self._read_before.update(row.row_number for row in rows)
        judged = [(row, *judge(row, reading.domains)) for row in rows]
        for row, _, live in judged:
            if live is not None and live.domain and live.domain != row.domain:
                self._spelling[row.row_number] = live.domain
            names_clients = bool(row.client_certificate_id or row.poly_client_certificate_ids)
            if live is not None and not names_clients and live.client_ids not in ((), (DEFAULT_CERTIFICATE,)):
                # a mutual-TLS domain and a row naming only a server certificate: send its client CAs along, so
                # they are kept under either reading of the API (docs/gaap-api.md, "The call")
                self._carried[row.row_number] = live.client_ids
        self.journal.record_previous(
            [(row.row_number, live.certificate_id, live.client_ids) for row, _, live in judged if live is not None]
        )
        for row, verdict, live in judged:
            settled = verdict_outcome(row, verdict, live)
            if settled is not None:
                outcome, code, message = settled
                if verdict is Verdict.UNCHANGED and row.row_number in self._ambiguous:
                    outcome = Outcome.SUCCEEDED
                    message = REREAD_MESSAGE if self.journal.unproven else VERIFIED_MESSAGE
                elif (
                    verdict is Verdict.UNCHANGED
                    and live is not None
                    and changed_since(row, self._before.get(row.row_number), live)
                ):
                    outcome, message = Outcome.SUCCEEDED, CONFIRMED_BY_READ_BACK
                self.journal.finish_row(row.row_number, outcome, code, message, reading.request_id)
                self._on_row_done(row, outcome)
                continue
            if verdict is Verdict.CHANGING:
                self._changing.add(row.row_number)
            pending.append(row)
        return pending

    async def _wait_domain_idle(self, row: Row) -> None:
        """A row whose domain is changing waits (re-reading with backoff) until it runs, up to `listener_wait_s`."""
        deadline = self.clock.now() + self.settings.listener_wait_s
        retry = 0
        while self.clock.now() < deadline and not self.stopping:
            reading = await self._read(row.listener_id, row.row_number)
            live = (reading.domains or {}).get(row.domain.lower())
            if reading.failed or live is None or live.status == 0:
                return
            retry += 1
            await self._pause_before_reread(retry, deadline)

    async def _pause_before_reread(self, retry: int, deadline: float, at_least_s: float = 0.0) -> None:
        """The wait between two reads of a listener that is not ready yet: the retry backoff (at least
        `at_least_s`), never past `deadline` — shared by waiting for a domain, verifying, and settling a doubt."""
        wait_s = max(at_least_s, self.policy.backoff_s(min(retry, 6), self._rng))
        await self.sleeper.sleep(min(wait_s, max(0.0, deadline - self.clock.now())))

    async def _verify(self, listener_id: str, rows: list[Row], changed_at: float | None = None) -> None:
        """Read the listener again and record, per row on it, the live state and whether it is the row's target —
        judged only once the domain is idle (DomainStatus 0): a change still running may yet fail and be reverted.
        After this session's last change on it (sent at `changed_at`, clock s) the first read waits for the task as
        the run has learned it (`TaskTimer`); re-reads while a domain is changing, up to `listener_wait_s`; a domain
        still changing then is recorded `pending`."""
        while changed_at is not None and not self.stopping:
            # in short steps: the estimate may come down meanwhile (other listeners' read-backs)
            wait_s = changed_at + self.task_timer.estimate_s - self.clock.now()
            if wait_s <= 0:
                break
            await self.sleeper.sleep(min(wait_s, POLL_FLOOR_S))
        deadline = self.clock.now() + self.settings.listener_wait_s
        reads_changing = 0
        changing_s: float | None = None
        while True:
            reading = await self._read(listener_id, priority=0)
            domains = reading.domains or {}
            changing = [r for r in rows if domains.get(r.domain.lower(), _IDLE).status != 0]
            if reading.failed or not changing or self.stopping or self.clock.now() >= deadline:
                break
            reads_changing += 1
            if changed_at is not None:
                changing_s = reading.sent_at_s - changed_at
            # short polls while the task runs (the read quota is idle at a listener's end), never longer apart than
            # the retry backoff
            wait_s = min(
                self.task_timer.poll_s(reads_changing), self.policy.backoff_s(min(reads_changing, 6), self._rng)
            )
            await self.sleeper.sleep(min(wait_s, max(0.0, deadline - self.clock.now())))
        if reading.failed:
            return
        if changed_at is not None and not changing:
            self.task_timer.observed(changing_s, reading.sent_at_s - changed_at)
        checks = []
        reverted = []
        for row in rows:
            live = domains.get(row.domain.lower())
            verdict = "pending" if live is not None and live.status != 0 else ""
            at_target = live is not None and is_at_target(self._target_of(row), live)
            checks.append(
                (
                    row.row_number,
                    live.certificate_id if live else "",
                    live.client_ids if live else (),
                    verdict or at_target,
                )
            )
            if (
                live is not None
                and not at_target
                and row.row_number in self._succeeded
                and is_reverted(live, self.journal.previous_state(row.row_number))
            ):
                reverted.append(row)
        self.journal.record_verification(checks)
        for row in reverted:
            # not a success: the old certificates are live again — retryable, so `rerun` reads it and sends it again
            log.info("row %d: the service reverted the change", row.row_number)
            self._succeeded.discard(row.row_number)
            self.journal.finish_row(row.row_number, Outcome.RETRYABLE, CHANGE_REVERTED, REVERTED_MESSAGE)

    async def _work_lane(self, lane: ListenerLane, me: object | None = None) -> None:
        """Take the lane's rows one after another while this task is the lane's dispatcher; a row that parks
        (`_hand_off`) makes a new task the dispatcher, and this one ends with that row."""
        me = me or object()
        lane.dispatcher = me
        while lane.rows and lane.dispatcher is me:
            row = lane.rows.popleft()
            if row.listener_id in self._scoped_out:
                self._on_row_done(row, self._conclude_scoped_out(row))
                continue
            if row.row_number in self._changing:
                await self._wait_domain_idle(row)
                if row.expected is not None:  # the change it waited for may have moved the place: read it again
                    self._read_first.add(row.row_number)
            outcome = await self._process_row(row, lane)
            self._on_row_done(row, outcome)

    def _refusal_if_moved(self, row: Row, live: LiveDomain | None, request_id: str) -> CallResult | None:
        """The precondition failure of a compare-and-swap row whose idle domain shows neither its target nor the
        state it expects (None: it has not moved, or the row expects nothing)."""
        if (
            row.expected is None
            or live is None
            or live.status != 0
            or is_at_target(self._target_of(row), live)
            or matches_expected(row.expected, live)
        ):
            return None
        return CallResult(
            code=PRECONDITION_MISMATCH, message=mismatch_message(row.expected, live), request_id=request_id
        )

    def _hand_off(self, lane: ListenerLane) -> bool:
        """Let a row wait for its retry aside: a new task takes the lane's next rows (True), unless none is left,
        the run stops, or `MAX_PARKED_PER_LANE` rows already wait (False: the row keeps the lane, as a lane with
        one row always does)."""
        if not lane.rows or self.stopping or lane.parked >= MAX_PARKED_PER_LANE:
            return False
        lane.parked += 1
        successor = object()
        lane.dispatcher = successor
        task = asyncio.get_running_loop().create_task(self._work_lane(lane, successor))
        lane.handoffs.add(task)
        task.add_done_callback(_forget_if_finished_well(lane.handoffs))
        return True

    def _until_listener_free(self, lane: ListenerLane) -> float:
        """Seconds until the pacer's gap since the lane's last change has passed (0 when it has)."""
        if lane.last_change_sent is None:
            return 0.0
        return max(0.0, lane.last_change_sent + self.pacer.gap_s - self.clock.now())

    def _wait_before_retry(self, lane: ListenerLane, result: CallResult) -> float | None:
        """A listener busy with our own previous change is retried as soon as the pacer's gap has passed; anything
        else backs off with jitter (None: the retry policy's backoff)."""
        if result.code == LISTENER_HAS_TASK and lane.last_change_sent is not None:
            return max(0.02, self._until_listener_free(lane)) * self._rng.uniform(1.0, 1.1)
        return None

    async def _settle_doubt(self, row: Row, settle_from: float) -> CallResult | None:
        """After an answer that may hide an applied change: read the listener until it proves either way. Returns a
        verified success when it shows the target; None (send) when a read sent from `settle_from` on (the answer,
        plus the request timeout when the request may still be on its way) shows the domain idle without it; an
        OUTCOME_UNKNOWN result — not to be resent in this run — when reads keep failing or the domain keeps changing
        through `listener_wait_s`. Never resends blind."""
        deadline = self.clock.now() + self.settings.listener_wait_s
        retry = 0
        while True:
            read_at = self.clock.now()
            reading = await self._read(row.listener_id, row.row_number)
            live = (reading.domains or {}).get(row.domain.lower())
            if live is not None and is_at_target(self._target_of(row), live):
                return CallResult(code=None, message=VERIFIED_MESSAGE, request_id=reading.request_id)
            settled = read_at >= settle_from
            moved = self._refusal_if_moved(row, live, reading.request_id) if settled else None
            if moved is not None:
                return moved
            if not reading.failed and (live is None or (live.status == 0 and settled)):
                return None  # proven not applied (or the domain is gone: the answer will say so)
            if self.stopping or self.clock.now() >= deadline:
                why = f"reads failed ({reading.code})" if reading.failed else "the domain was still changing"
                return CallResult(
                    code=OUTCOME_UNKNOWN,
                    message=f"{OUTCOME_UNKNOWN_MESSAGE}; {why} — not resent in this run",
                    request_id=reading.request_id,
                )
            if live is not None and live.status == 0:  # idle, read too early: only time settles it, not a backoff
                await self.sleeper.sleep(max(0.0, min(settle_from, deadline) - self.clock.now()))
                continue
            retry += 1
            until_settled_s = settle_from - self.clock.now() if not reading.failed and not settled else 0.0
            await self._pause_before_reread(retry, deadline, at_least_s=until_settled_s)

    async def _send(
        self, row: Row, lane: ListenerLane, previous: CallResult | None, not_before_s: float = 0.0
    ) -> CallResult | None:
        """One attempt: journal it just before it leaves, send, journal the answer, teach the pacer.
        Returns None when the run stopped before it was sent. After an answer that may hide an applied change
        (timeout, reset, InternalError, 5xx — or such an answer in an earlier session) the live state is read first:
        when it already shows the target, nothing is resent and a verified success is returned instead. Nothing is
        sent before `not_before_s` (clock s: a backoff the read-back did not wait out)."""
        earlier_ambiguous = previous is None and row.row_number in self._ambiguous - self._read_before
        if earlier_ambiguous or (previous is not None and classify.policy_for(previous.code or "").maybe_applied):
            settle_from = self.clock.now()  # an earlier session's answer: long enough ago
            if previous is not None:
                # a request that timed out may still reach the service for up to its timeout: a read showing the
                # old state proves nothing until then
                late_s = self.settings.timeout_s if classify.may_still_arrive(previous.code or "") else 0.0
                settle_from = previous.sent_at_s + previous.latency_s + late_s
            found = await self._settle_doubt(row, settle_from)
            if found is not None:
                return found
            await self.sleeper.sleep(max(0.0, not_before_s - self.clock.now()))
        elif row.row_number in self._read_first:
            found = await self._read_before_send(row)
            if found is not None:
                return found
        handle: list[Attempt] = []

        def journal_start() -> None:
            if self.stopping:
                raise GateClosed
            handle.append(self.journal.begin_attempt(row.row_number, row.action))

        # the lane's turn, from the pacer's wait to the answer: one change of ours in flight per listener.
        # Gate priority: rows left on the lane; a retry goes half a step ahead of first attempts of equally long
        # lanes, or rows hit by a transient fault would queue behind every fresh row and become the run's tail —
        # and so does any row of a lane with rows waiting aside, since their retries queue for its turn
        async with lane.turn:
            await self.sleeper.sleep(self._until_listener_free(lane))
            try:
                result = await self.quota.send(
                    self.api,
                    row.action,
                    self._target_of(row).request_params(),
                    priority=len(lane.rows) + 1 + (0.5 if previous is not None or lane.parked else 0.0),
                    before_send=journal_start,
                    durable=self.journal.durable,
                )
            except GateClosed:
                return None
            self.journal.finish_attempt(handle[0], result)
            last_sent = lane.last_change_sent
            if (result.code or "") in classify.WAITED_OUT:
                # busy: with our previous change — or with someone else's (another operator, another machine),
                # which no timing can tell apart. Read the row before sending it again (README, "Two operators"):
                # the read starts now, while the row waits for the listener, so it costs the resend no time
                self._read_first.add(row.row_number)
                self._forget_read_after_busy(row.row_number)
                self._reads_after_busy[row.row_number] = asyncio.get_running_loop().create_task(
                    self._read(row.listener_id, row.row_number)
                )
            if result.ok or classify.policy_for(result.code or "").maybe_applied:
                lane.last_change_sent = result.sent_at_s
            if result.ok:
                self._probe_task_time(row, result.sent_at_s)
        if last_sent is not None and result.ok:
            self.pacer.accepted(result.sent_at_s - last_sent)
        elif last_sent is not None and result.code == LISTENER_HAS_TASK:
            self.pacer.refused(result.sent_at_s - last_sent)
        return result

    def _probe_task_time(self, row: Row, sent_at: float) -> None:
        """After one of the run's first accepted changes, follow its domain until its task has ended, so the
        read-back after each listener's last change waits for a measured task time (`TaskTimer`) — learned at the
        start, not from the read-backs alone: when every listener gets its last change in the run's final second,
        those read-backs all go before anything was learned. One follow at a time, `MAX_TASK_PROBES` in a run."""
        if (
            not self.config.verify
            or self.task_timer.measured
            or self._task_probes >= MAX_TASK_PROBES
            or (self._task_probe is not None and not self._task_probe.done())
        ):
            return
        self._task_probes += 1
        self._task_probe = asyncio.get_running_loop().create_task(self._follow_task(row, sent_at))

    async def _follow_task(self, row: Row, sent_at: float) -> None:
        """Read `row`'s listener (at the lowest priority: reads that gate changes go first) until its domain is idle
        again, and tell the task timer how long the task ran."""
        changing_s: float | None = None
        domain = self._spelling.get(row.row_number, row.domain).lower()
        await self.sleeper.sleep(max(0.0, sent_at + self.task_timer.follow_s(0.0) - self.clock.now()))
        while not self.stopping:
            reading = await self._read(row.listener_id, priority=0)
            live = (reading.domains or {}).get(domain)
            if reading.failed or live is None or reading.sent_at_s <= 0:
                return
            if live.status == 0:
                self.task_timer.observed(changing_s, reading.sent_at_s - sent_at)
                return
            changing_s = reading.sent_at_s - sent_at
            next_at = reading.sent_at_s + self.task_timer.follow_s(changing_s)
            await self.sleeper.sleep(max(0.0, next_at - self.clock.now()))

    async def _read_before_send(self, row: Row) -> CallResult | None:
        """Read the row's domain before sending it again after a busy answer (or a compare-and-swap row after its
        domain's change was waited out): None (send) when it is neither at its target nor moved away from the
        expected state; a result that ends the row otherwise — at its target already (`by_others`: unchanged, someone
        else's change), moved (the precondition failure), or unread or still changing for a compare-and-swap row
        (retryable, not sent: never sent on a guess). The read taken right after the busy answer is used when there is
        one (it overlapped the wait before the resend)."""
        taken = self._reads_after_busy.pop(row.row_number, None)
        reading = await taken if taken is not None else await self._read(row.listener_id, row.row_number)
        live = (reading.domains or {}).get(row.domain.lower())
        if live is not None and is_at_target(self._target_of(row), live):
            return CallResult(
                code=None, message=CHANGED_MEANWHILE_MESSAGE, request_id=reading.request_id, by_others=True
            )
        moved = self._refusal_if_moved(row, live, reading.request_id)
        if moved is not None:
            return moved
        if reading.failed or (row.expected is not None and (live is None or live.status != 0)):
            # unread, or a compare-and-swap row whose place is still changing: not sent on a guess (a code that
            # says nothing was applied, so the next attempt reads again rather than settling a doubt)
            why = f"the read failed ({reading.code})" if reading.failed else "the domain is still changing"
            return CallResult(
                code=classify.NOT_SENT_UNREAD,
                message=f"could not check the domain before sending it: {why} — not sent",
                request_id=reading.request_id,
                sent=False,
            )
        if live is not None:  # the state before our change, when no earlier read recorded one (rollback.csv)
            self.journal.record_previous([(row.row_number, live.certificate_id, live.client_ids)])
        self._read_first.discard(row.row_number)
        return None

    async def _process_row(self, row: Row, lane: ListenerLane) -> Outcome:
        parked = False
        resend_at_s = 0.0

        def wait_s(result: CallResult, retry: int) -> float | None:
            nonlocal parked, resend_at_s
            # a backoff, maybe reads to settle a doubt: wait aside — but a busy listener refuses every row alike,
            # so a row it refused keeps the lane
            if not parked and result.code != LISTENER_HAS_TASK:
                parked = self._hand_off(lane)
            chosen_s = self._wait_before_retry(lane, result)
            if chosen_s is None and classify.may_still_arrive(result.code or ""):
                # read back at once — it may already show the change — while the resend still keeps the backoff
                # (and waits for a read at least the timeout after the answer: `_send`)
                resend_at_s = self.clock.now() + self.policy.backoff_s(min(retry, 6), self._rng)
                return 0.0
            return chosen_s

        try:
            tries = await retry_call(
                lambda previous: self._send(row, lane, previous, resend_at_s),
                policy=self.policy,
                sleeper=self.sleeper,
                rng=self._rng,
                budget=self.budget,
                wait_s=wait_s,
                retry_if=lambda result: (
                    is_retryable(result)
                    and result.code != OUTCOME_UNKNOWN
                    and classify.listener_scope(result.code or "") is None
                ),
                patient=lambda result: (result.code or "") in classify.WAITED_OUT,
                patience_s=self.settings.listener_wait_s,
            )
        finally:
            if parked:
                lane.parked -= 1
            self._forget_read_after_busy(row.row_number)
        return self._conclude(row, tries)

    def _forget_read_after_busy(self, row_number: int) -> None:
        """Drop a read started after a busy answer that no resend used (the row ended, or was refused again)."""
        taken = self._reads_after_busy.pop(row_number, None)
        if taken is not None and not taken.done():
            taken.cancel()

    def _target_of(self, row: Row) -> Row:
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

    def _conclude_scoped_out(self, row: Row) -> Outcome:
        """A row on a listener that an earlier row found denied or closed: not sent, the same reason."""
        scope, code, first_row = self._scoped_out[row.listener_id]
        if scope is classify.Scope.DENIED:
            outcome = Outcome.TERMINAL
            message = (
                f"not sent: row {first_row} found that this sub-account may not change listener {row.listener_id} "
                f"— {classify.policy_for(code).advice}"
            )
        else:
            outcome = Outcome.RETRYABLE
            message = (
                f"not sent: row {first_row} found listener {row.listener_id}'s connection not running ({code}) — "
                "rerun when it is running again"
            )
        self.journal.finish_row(row.row_number, outcome, code, message)
        return outcome

    def _note_scope(self, row: Row, code: str) -> None:
        """Remember a listener found denied or closed; stop the run when denials look account-wide."""
        scope = classify.listener_scope(code)
        if scope is None or row.listener_id in self._scoped_out:
            return
        self._scoped_out[row.listener_id] = (scope, code, row.row_number)
        log.info("listener %s is %s (%s): its other rows are not sent", row.listener_id, scope.value, code)
        denied = sum(1 for s, _, _ in self._scoped_out.values() if s is classify.Scope.DENIED)
        if scope is classify.Scope.DENIED and not self._successes and denied >= classify.ACCOUNT_WIDE_DENIALS:
            self.stop(
                f"the first {denied} listeners were all denied and nothing succeeded: the credential lacks "
                f"permission account-wide ({code}) — {classify.policy_for(code).advice}"
            )

    def _conclude(self, row: Row, tries: Tries) -> Outcome:
        last = tries.last or (tries.results[-1] if tries.results else None)
        if last is None:
            self.journal.finish_row(row.row_number, Outcome.NOT_ATTEMPTED, message=f"not sent: {self.stop_reason}")
            return Outcome.NOT_ATTEMPTED
        if last.ok and last.by_others:
            self.journal.finish_row(row.row_number, Outcome.UNCHANGED, message=last.message, request_id=last.request_id)
            return Outcome.UNCHANGED
        if last.ok:
            self.budget.earn()
            self._successes += 1
            self._succeeded.add(row.row_number)
            message = last.message
            if row.row_number in self._spelling:
                spelled = f"sent as the service spells the domain: {self._spelling[row.row_number]}"
                message = "; ".join(filter(None, [message, spelled]))
            if row.row_number in self._carried:
                kept = ";".join(self._carried[row.row_number])
                message = "; ".join(
                    filter(None, [message, f"client CAs kept as they were: {kept} (the row named none)"])
                )
            self.journal.finish_row(row.row_number, Outcome.SUCCEEDED, message=message, request_id=last.request_id)
            return Outcome.SUCCEEDED
        code = last.code or ""
        policy = classify.policy_for(code)
        message = f"{last.message} — {policy.advice}" if last.message else policy.advice
        self._note_scope(row, code)
        if policy.disposition is Disposition.STOP_RUN:
            # the run's problem (a credential, the account), not the row's: the plain `rerun` resends it
            self.stop(f"the run stopped at {code} on row {row.row_number} — {policy.advice}")
            outcome = Outcome.RETRYABLE
            message = f"{message} (the run stopped here; the row itself may be fine)"
        elif policy.disposition is Disposition.TERMINAL:
            outcome = Outcome.TERMINAL
        else:
            outcome = Outcome.RETRYABLE
            if tries.gave_up is GaveUp.STOPPED or self.stopping:
                message = f"{message} (not retried: {self.stop_reason})"
            elif tries.gave_up is GaveUp.PATIENCE:
                message = f"{message} (still busy after --listener-wait {self.settings.listener_wait_s:g} s)"
            elif classify.listener_scope(code) is not None:
                message = f"{message} (not retried in this run: the listener's connection is not running)"
            elif tries.gave_up is GaveUp.BUDGET:
                message = f"{message} (run-wide retry budget exhausted after {self.budget.spent} retries)"
            else:
                message = f"{message} (gave up after {len(tries.results)} attempts)"
        self.journal.finish_row(row.row_number, outcome, code, message, last.request_id)
        return outcome
