"""Whether and when a row's change is tried again — one decision per row (`RetryDecision`, the `decide` hook of
`schedule.retry_call`, and the row's wait) — and `RowRetries`, which drives a row's attempts through
`schedule.retry_call` with it. Retries follow `batchcert.classify` (never an `if` per code here): jittered exponential
backoff, a per-row attempt limit and a run-wide `RetryBudget`, so an outage does not become a retry storm."""

from __future__ import annotations

from batchcert import classify
from batchcert.model import CallResult, Row
from batchcert.runner.attempt import LISTENER_HAS_TASK, Attempts
from batchcert.runner.lanes import ListenerLane
from batchcert.runner.outcomes import OUTCOME_UNKNOWN
from batchcert.runner.state import RunContext
from batchcert.schedule import Decision, ListenerPacer, RetryBudget, Tries, is_retryable, retry_call

#: a listener busy with our own previous change is tried again once the pacer's gap has passed, stretched by up to
#: this share at random (rows refused together do not come back in lockstep)
BUSY_JITTER_RATIO = 0.1
#: the shortest wait before such a retry, s
BUSY_MIN_WAIT_S = 0.02


class RetryDecision:
    """The retry decision for one row on its lane (`decide`, `retry_call`'s hook):

    - which answers are tried again: the classification's retryable ones, except an outcome no read could settle
      (never resent blind) and a listener found denied or closed — every other answer stands;
    - a busy listener or domain is waited out by time (no attempt, no budget) up to `listener_wait_s`;
    - how long before the next attempt: a listener busy with our own previous change is retried as soon as the
      pacer's gap has passed; after an answer whose request may still be on its way the listener is read back at once
      — it may already show the change — while the resend keeps the backoff (`resend_not_before_s`; `Attempts.send`
      also waits for a read at least the timeout after the answer); anything else backs off with jitter (the retry
      policy's backoff).

    It is also how the row waits (`retry_call`'s sleeper): a row about to wait hands the rest of its lane on and
    waits aside (`ListenerLane.hand_off`) — except after a busy listener, which refuses every row alike, so the row
    keeps the lane. That happens as the wait starts, so a row whose retries end (attempts, budget, patience, the
    stop) never hands its lane on, and the resend's backoff is drawn only for a retry that happens."""

    def __init__(self, lane: ListenerLane, ctx: RunContext, pacer: ListenerPacer) -> None:
        self._lane = lane
        self._ctx = ctx
        self._pacer = pacer
        self._parked = False
        #: what the next wait does as it starts: hand the lane on; draw the resend's backoff for this retry number
        self._aside = False
        self._resend_retry: int | None = None
        #: clock s before which the next attempt is not sent (a backoff the read-back did not wait out)
        self.resend_not_before_s = 0.0

    def decide(self, result: CallResult, retry: int) -> Decision:
        code = result.code or ""
        if not is_retryable(result) or code == OUTCOME_UNKNOWN or classify.listener_scope(code) is not None:
            return Decision.stop()
        busy = code == LISTENER_HAS_TASK
        self._aside = not busy
        self._resend_retry = None
        wait_s: float | None = None  # the policy's backoff
        jitter_ratio = 0.0
        if busy and self._lane.last_change_sent is not None:
            wait_s = max(BUSY_MIN_WAIT_S, self._lane.free_in_s(self._pacer.gap_s, self._ctx.clock.now()))
            jitter_ratio = BUSY_JITTER_RATIO
        elif classify.may_still_arrive(code):
            wait_s = 0.0
            self._resend_retry = retry
        if code in classify.WAITED_OUT:
            return Decision.wait_out(self._ctx.settings.listener_wait_s, wait_s, jitter_ratio)
        return Decision.retry(wait_s, jitter_ratio)

    @property
    def stopped(self) -> bool:
        return self._ctx.sleeper.stopped

    async def sleep(self, seconds: float) -> None:
        """The row's wait before its next attempt: aside when `decide` said so, and the resend held back by the
        backoff after an answer that may still arrive."""
        ctx = self._ctx
        if self._aside and not self._parked:
            self._parked = self._lane.hand_off()
        if self._resend_retry is not None:
            self.resend_not_before_s = ctx.clock.now() + ctx.policy.backoff_s(min(self._resend_retry, 6), ctx.rng)
        await ctx.sleeper.sleep(seconds)

    def release(self) -> None:
        """The row has ended: it no longer waits aside."""
        if self._parked:
            self._lane.unpark()


class RowRetries:
    """Tries one row's change until an answer is final, its attempts or the budget are used up, or the run stops."""

    def __init__(self, ctx: RunContext, attempts: Attempts, budget: RetryBudget, pacer: ListenerPacer) -> None:
        self._ctx = ctx
        self._attempts = attempts
        self._budget = budget
        self._pacer = pacer

    async def run(self, row: Row, lane: ListenerLane) -> Tries:
        ctx = self._ctx
        decision = RetryDecision(lane, ctx, self._pacer)
        try:
            return await retry_call(
                lambda previous: self._attempts.send(row, lane, previous, decision.resend_not_before_s),
                policy=ctx.policy,
                sleeper=decision,
                rng=ctx.rng,
                budget=self._budget,
                decide=decision.decide,
            )
        finally:
            decision.release()
            self._attempts.reads_first.forget(row.row_number)
