"""How rows end: the messages, what a pre-flight verdict makes of a row (`verdict_outcome`, `conclude_by_read`), the
precondition failure of a compare-and-swap row that moved (`refusal_if_moved`), and `RowEnds`, which journals each
row's outcome and keeps what ending rows taught the run (listeners found denied or closed, rows brought to their
target). Per-row failures are outcomes in the journal, never exceptions."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from batchcert import classify
from batchcert.live.reader import Reading
from batchcert.live.state import (
    CONFIRMED_BY_READ_BACK,
    LiveDomain,
    Verdict,
    changed_since,
    is_at_target,
    is_reverted,
    matches_expected,
    mismatch_message,
)
from batchcert.model import (
    CHANGE_REVERTED,
    PRECONDITION_MISMATCH,
    PRECONDITION_WRONG_PROXY,
    Basis,
    CallResult,
    Disposition,
    Outcome,
    ReadBack,
    Row,
    Verified,
)
from batchcert.runner.state import EarlierSessions, RowForms, RunContext
from batchcert.schedule import GaveUp, RetryBudget, Tries

#: the runner package's one logger: its lines say `batchcert.runner`, wherever in the package they come from
log = logging.getLogger("batchcert.runner")

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


@dataclass(frozen=True)
class ReadBackRows:
    """What a listener's read-back found of its rows: those at their target, and those this session changed that
    the service reverted (now `retryable`)."""

    at_target: tuple[Row, ...]
    reverted: tuple[Row, ...]


@dataclass(frozen=True)
class Conclusion:
    """How a row ends without being sent: its outcome, error code and message, and what that rests on."""

    outcome: Outcome
    code: str
    message: str
    basis: Basis = Basis.ANSWER


#: what a pre-flight verdict makes of a row that is not sent
VERDICT_OUTCOMES: dict[Verdict, Conclusion] = {
    Verdict.UNCHANGED: Conclusion(Outcome.UNCHANGED, "", UNCHANGED_MESSAGE),
    Verdict.NOT_FOUND: Conclusion(Outcome.TERMINAL, "ResourceNotFound", NOT_FOUND_MESSAGE),
    Verdict.MISMATCH: Conclusion(Outcome.TERMINAL, PRECONDITION_MISMATCH, ""),
    Verdict.WRONG_PROXY: Conclusion(Outcome.TERMINAL, PRECONDITION_WRONG_PROXY, ""),
}


def verdict_outcome(row: Row, verdict: Verdict, live: LiveDomain | None) -> Conclusion | None:
    """What a pre-flight verdict makes of a row that is not sent, or None: send it."""
    if verdict not in VERDICT_OUTCOMES:
        return None
    settled = VERDICT_OUTCOMES[verdict]
    if verdict is Verdict.MISMATCH and row.expected is not None and live is not None:
        return Conclusion(settled.outcome, settled.code, mismatch_message(row.expected, live))
    if verdict is Verdict.WRONG_PROXY and live is not None:
        message = (
            f"listener {row.listener_id} is on proxy {live.proxy_id}, not on {row.proxy_id} as the row says — "
            "not sent; fix ProxyId"
        )
        return Conclusion(settled.outcome, settled.code, message)
    return settled


def conclude_by_read(
    row: Row, verdict: Verdict, live: LiveDomain | None, earlier: EarlierSessions, unproven: bool
) -> Conclusion | None:
    """What the pre-flight read makes of a row (None: send it) — as `verdict_outcome`, except that a row found at
    its target is `succeeded` when an earlier session's answer may have applied it (`unproven`: the journal lost
    records, `rerun --reread`) or when a session recorded it at another state before."""
    settled = verdict_outcome(row, verdict, live)
    if settled is None or verdict is not Verdict.UNCHANGED:
        return settled
    if row.row_number in earlier.ambiguous:
        return Conclusion(Outcome.SUCCEEDED, settled.code, REREAD_MESSAGE if unproven else VERIFIED_MESSAGE)
    if live is not None and changed_since(row, earlier.before.get(row.row_number), live):
        return Conclusion(Outcome.SUCCEEDED, settled.code, CONFIRMED_BY_READ_BACK, Basis.READ_BACK)
    return settled


def refusal_if_moved(row: Row, target: Row, live: LiveDomain | None, request_id: str) -> CallResult | None:
    """The precondition failure of a compare-and-swap row whose idle domain shows neither its target (`target`: the
    row as sent) nor the state it expects (None: it has not moved, or the row expects nothing)."""
    if (
        row.expected is None
        or live is None
        or live.status != 0
        or is_at_target(target, live)
        or matches_expected(row.expected, live)
    ):
        return None
    return CallResult(code=PRECONDITION_MISMATCH, message=mismatch_message(row.expected, live), request_id=request_id)


@dataclass(frozen=True)
class ScopedOut:
    """A listener found denied or closed: its scope, the code, and the row that found it."""

    scope: classify.Scope
    code: str
    first_row: int


class RowEnds:
    """Ends rows that were tried (or not) in the journal, and keeps what that taught the run: listeners found denied
    or closed (their other rows are not sent; denials of the run's first listeners with nothing succeeded stop the
    run), and the rows this session brought to their target — a read-back right after showing their old state again
    is a reverted change (an earlier session's row found back at its old state may be a deliberate rollback
    since)."""

    def __init__(self, ctx: RunContext, forms: RowForms, budget: RetryBudget) -> None:
        self._ctx = ctx
        self._forms = forms
        self._budget = budget
        self._scoped_out: dict[str, ScopedOut] = {}
        self._successes = 0
        self._succeeded: set[int] = set()

    def is_scoped_out(self, listener_id: str) -> bool:
        return listener_id in self._scoped_out

    def conclude_scoped_out(self, row: Row) -> Outcome:
        """A row on a listener that an earlier row found denied or closed: not sent, the same reason."""
        found = self._scoped_out[row.listener_id]
        if found.scope is classify.Scope.DENIED:
            outcome = Outcome.TERMINAL
            message = (
                f"not sent: row {found.first_row} found that this sub-account may not change listener "
                f"{row.listener_id} — {classify.policy_for(found.code).advice}"
            )
        else:
            outcome = Outcome.RETRYABLE
            message = (
                f"not sent: row {found.first_row} found listener {row.listener_id}'s connection not running "
                f"({found.code}) — rerun when it is running again"
            )
        self._ctx.journal.finish_row(row.row_number, outcome, found.code, message)
        return outcome

    def _note_scope(self, row: Row, code: str) -> None:
        """Remember a listener found denied or closed; stop the run when denials look account-wide."""
        scope = classify.listener_scope(code)
        if scope is None or row.listener_id in self._scoped_out:
            return
        self._scoped_out[row.listener_id] = ScopedOut(scope, code, row.row_number)
        log.info("listener %s is %s (%s): its other rows are not sent", row.listener_id, scope.value, code)
        denied = sum(1 for found in self._scoped_out.values() if found.scope is classify.Scope.DENIED)
        if scope is classify.Scope.DENIED and not self._successes and denied >= classify.ACCOUNT_WIDE_DENIALS:
            self._ctx.stop.stop(
                f"the first {denied} listeners were all denied and nothing succeeded: the credential lacks "
                f"permission account-wide ({code}) — {classify.policy_for(code).advice}"
            )

    def conclude(self, row: Row, tries: Tries) -> Outcome:
        """Journal the outcome of a row's tries: its last answer, with advice, and why it was not retried."""
        journal, stop = self._ctx.journal, self._ctx.stop
        last = tries.last or (tries.results[-1] if tries.results else None)
        if last is None:
            journal.finish_row(row.row_number, Outcome.NOT_ATTEMPTED, message=f"not sent: {stop.reason}")
            return Outcome.NOT_ATTEMPTED
        if last.ok and last.by_others:
            journal.finish_row(row.row_number, Outcome.UNCHANGED, message=last.message, request_id=last.request_id)
            return Outcome.UNCHANGED
        if last.ok:
            self._budget.earn()
            self._successes += 1
            self._succeeded.add(row.row_number)
            journal.finish_row(
                row.row_number, Outcome.SUCCEEDED, message=self._success_message(row, last), request_id=last.request_id
            )
            return Outcome.SUCCEEDED
        code = last.code or ""
        policy = classify.policy_for(code)
        message = f"{last.message} — {policy.advice}" if last.message else policy.advice
        self._note_scope(row, code)
        if policy.disposition is Disposition.STOP_RUN:
            # the run's problem (a credential, the account), not the row's: the plain `rerun` resends it
            said = f" ({last.message})" if last.message else ""
            stop.stop(f"the run stopped at {code}{said} on row {row.row_number} — {policy.advice}")
            outcome = Outcome.RETRYABLE
            message = f"{message} (the run stopped here; the row itself may be fine)"
        elif policy.disposition is Disposition.TERMINAL:
            outcome = Outcome.TERMINAL
        else:
            outcome = Outcome.RETRYABLE
            message = f"{message} ({self._why_not_retried(tries, code)})"
        journal.finish_row(row.row_number, outcome, code, message, last.request_id)
        return outcome

    def _success_message(self, row: Row, last: CallResult) -> str:
        """The answer's message, and how the row was sent when that differs from the mapping."""
        message = last.message
        spelled = self._forms.spelled(row.row_number)
        if spelled is not None:
            message = "; ".join(filter(None, [message, f"sent as the service spells the domain: {spelled}"]))
        carried = self._forms.carried(row.row_number)
        if carried is not None:
            kept = ";".join(carried)
            message = "; ".join(filter(None, [message, f"client CAs kept as they were: {kept} (the row named none)"]))
        return message

    def _why_not_retried(self, tries: Tries, code: str) -> str:
        """Why a retryable answer was not retried further."""
        if tries.gave_up is GaveUp.STOPPED or self._ctx.stop.stopping:
            return f"not retried: {self._ctx.stop.reason}"
        if tries.gave_up is GaveUp.PATIENCE:
            return f"still busy after --listener-wait {self._ctx.settings.listener_wait_s:g} s"
        if classify.listener_scope(code) is not None:
            return "not retried in this run: the listener's connection is not running"
        if tries.gave_up is GaveUp.BUDGET:
            return f"run-wide retry budget exhausted after {self._budget.spent} retries"
        return f"gave up after {len(tries.results)} attempts"

    def record_verification(self, rows: list[Row], reading: Reading) -> ReadBackRows:
        """Record, per row on a listener read back after its last change, the live state and whether it is the
        row's target (`pending` while its domain still changes); a row this session brought to its target that
        shows its old state again ends retryable (`rerun` reads it and sends it again). Returns the rows at their
        target and those reverted."""
        journal = self._ctx.journal
        domains = reading.domains or {}
        checks: list[ReadBack] = []
        reverted = []
        for row in rows:
            live = domains.get(row.domain.lower())
            at_target = live is not None and is_at_target(self._forms.target_of(row), live)
            changing = live is not None and live.status != 0
            checks.append(
                ReadBack(
                    row.row_number,
                    live.certificate_id if live else "",
                    live.client_ids if live else (),
                    Verified.PENDING if changing else Verified.of(at_target),
                )
            )
            if (
                live is not None
                and not at_target
                and row.row_number in self._succeeded
                and is_reverted(live, journal.previous_state(row.row_number))
            ):
                reverted.append(row)
        journal.record_verification(checks)
        for row in reverted:
            # not a success: the old certificates are live again — retryable, so `rerun` reads it and sends it again
            log.info("row %d: the service reverted the change", row.row_number)
            self._succeeded.discard(row.row_number)
            journal.finish_row(row.row_number, Outcome.RETRYABLE, CHANGE_REVERTED, REVERTED_MESSAGE)
        shown = {check.row_number for check in checks if check.verified is Verified.AT_TARGET}
        return ReadBackRows(tuple(row for row in rows if row.row_number in shown), tuple(reverted))

    def settle_unstarted(self, rows: list[Row]) -> None:
        """Rows of listeners never started because the run stopped: `not_attempted`, in one journal transaction."""
        if not rows:
            return
        self._ctx.journal.finish_rows(
            [r.row_number for r in rows], Outcome.NOT_ATTEMPTED, f"not sent: {self._ctx.stop.reason}"
        )
        for row in rows:
            self._ctx.on_row_done(row, Outcome.NOT_ATTEMPTED)
