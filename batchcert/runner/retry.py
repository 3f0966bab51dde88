"""Whether and when a row's change is tried again — one decision per row (`RetryDecision`) — and `RowRetries`, which
drives a row's attempts through `schedule.retry_call` with it. Retries follow `batchcert.classify` (never an `if` per
code here): jittered exponential backoff, a per-row attempt limit and a run-wide `RetryBudget`, so an outage does not
become a retry storm."""

from __future__ import annotations

from batchcert import classify
from batchcert.model import CallResult, Row
from batchcert.runner.attempt import LISTENER_HAS_TASK, Attempts
from batchcert.runner.lanes import ListenerLane
from batchcert.runner.outcomes import OUTCOME_UNKNOWN
from batchcert.runner.state import RunContext
from batchcert.schedule import ListenerPacer, RetryBudget, Tries, is_retryable, retry_call


class RetryDecision:
    """The retry decision for one row on its lane:

    - `retries`: which answers are tried again — the classification's retryable ones, except an outcome no read
      could settle (never resent blind) and a listener found denied or closed;
    - `waits_out`: a busy listener or domain is waited out by time (no attempt, no budget) up to `listener_wait_s`;
    - `wait_s`: how long before the next attempt. A row about to wait hands the rest of its lane on and waits aside
      (`ListenerLane.hand_off`) — except after a busy listener, which refuses every row alike, so the row keeps the
      lane. A listener busy with our own previous change is retried as soon as the pacer's gap has passed; after an
      answer whose request may still be on its way the listener is read back at once — it may already show the
      change — while the resend keeps the backoff (`resend_not_before_s`; `Attempts.send` also waits for a read at
      least the timeout after the answer); anything else backs off with jitter (None: the retry policy's backoff).
    """

    def __init__(self, lane: ListenerLane, ctx: RunContext, pacer: ListenerPacer) -> None:
        self._lane = lane
        self._ctx = ctx
        self._pacer = pacer
        self._parked = False
        #: clock s before which the next attempt is not sent (a backoff the read-back did not wait out)
        self.resend_not_before_s = 0.0

    @staticmethod
    def retries(result: CallResult) -> bool:
        return (
            is_retryable(result)
            and result.code != OUTCOME_UNKNOWN
            and classify.listener_scope(result.code or "") is None
        )

    @staticmethod
    def waits_out(result: CallResult) -> bool:
        return (result.code or "") in classify.WAITED_OUT

    def wait_s(self, result: CallResult, retry: int) -> float | None:
        if not self._parked and result.code != LISTENER_HAS_TASK:
            self._parked = self._lane.hand_off()
        ctx = self._ctx
        if result.code == LISTENER_HAS_TASK and self._lane.last_change_sent is not None:
            free_in_s = self._lane.free_in_s(self._pacer.gap_s, ctx.clock.now())
            return max(0.02, free_in_s) * ctx.rng.uniform(1.0, 1.1)
        if classify.may_still_arrive(result.code or ""):
            self.resend_not_before_s = ctx.clock.now() + ctx.policy.backoff_s(min(retry, 6), ctx.rng)
            return 0.0
        return None

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
                sleeper=ctx.sleeper,
                rng=ctx.rng,
                budget=self._budget,
                wait_s=decision.wait_s,
                retry_if=decision.retries,
                patient=decision.waits_out,
                patience_s=ctx.settings.listener_wait_s,
            )
        finally:
            decision.release()
            self._attempts.reads_first.forget(row.row_number)
