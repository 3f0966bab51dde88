"""The batch run: send every row's change once, listener by listener, under the rate ceiling, and journal it all.

Scheduling (issue "The batch run", Sending):
- one worker per listener (a `ListenerLane`) takes that listener's rows in mapping order, so never two changes are
  in flight on one listener; between changes it waits out the listener's asynchronous task (`ListenerPacer`)
  while the rate budget goes to other listeners;
- every call waits at the action's `RateGate` with priority = rows left on its listener, so long listener queues
  start early and are never starved by many short ones;
- retries follow `batchcert.classify` (never an `if` per code here), with jittered exponential backoff (tenacity),
  a per-row attempt limit and a run-wide `RetryBudget`, so an outage does not become a retry storm;
- a code whose disposition is STOP_RUN (bad credentials, account state) stops dispatching at once: rows not yet
  sent end `not_attempted` with the reason.
Per-row failures are outcomes in the journal, never exceptions.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_result,
    stop_after_attempt,
    stop_any,
    wait_exponential_jitter,
)
from tenacity.stop import stop_base

from batchcert import classify
from batchcert.client import GaapClient, GateClosed
from batchcert.journal import Attempt, Journal
from batchcert.model import ACTION_MODIFY, CallResult, Disposition, Outcome, Row

LISTENER_HAS_TASK = "FailedOperation.ListenerHasTask"


@dataclass(frozen=True)
class RunnerConfig:
    """Retry and pacing knobs. Times in seconds."""

    max_attempts: int = 6
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 8.0
    backoff_jitter_s: float = 0.5
    #: first guess of the send-to-send gap a listener needs between changes; learned as the run goes
    listener_task_s: float = 0.5
    #: retries the run may spend before any success, and retries each success earns (gRPC-style retry throttling)
    retry_budget_initial: float = 20.0
    retry_budget_per_success: float = 2.0


class ListenerPacer:
    """Learns the send-to-send gap two changes on one listener need (GAAP changes are asynchronous tasks).

    The service starts a listener's task when it processes a change and refuses the next change with
    `ListenerHasTask` until the task ends, so what matters is the gap between two *sends*, not the time after an
    answer: a listener can then take a change every `task` seconds instead of every `task + latency`. Learned
    run-wide (task time is a property of the service): a refusal at gap g proves the task is longer than g (`busy_s`
    rises to g); the pacer uses 10% + 10 ms above that. Until the first refusal it probes downward from the initial
    guess by 10% per accepted change, and every 20 accepted changes it lowers `busy_s` by 5% to follow a service
    that got faster — so refusals stay rare (issue: ListenerHasTask "expected, retried after a wait, and rare").
    """

    def __init__(self, initial_s: float, floor_s: float = 0.02, cap_s: float = 30.0) -> None:
        self._probe_s = initial_s
        self.busy_s: float | None = None
        self._floor_s, self._cap_s = floor_s, cap_s
        self._accepted = 0

    @property
    def gap_s(self) -> float:
        """The send-to-send gap to keep between two changes on one listener, in seconds."""
        if self.busy_s is None:
            return self._probe_s
        return min(self._cap_s, max(self._floor_s, self.busy_s * 1.1 + 0.01))

    def accepted(self, gap_s: float) -> None:
        """A change sent `gap_s` after the listener's previous one was accepted."""
        self._accepted += 1
        if self.busy_s is None:
            self._probe_s = max(self._floor_s, min(self._probe_s, gap_s) * 0.9)
        elif self._accepted % 20 == 0:
            self.busy_s *= 0.95

    def refused(self, gap_s: float) -> None:
        """A change sent `gap_s` after the listener's previous one got ListenerHasTask."""
        self.busy_s = max(self.busy_s or 0.0, gap_s)


class ListenerLane:
    """One listener's queue of rows and the send time (monotonic s) of the last change that may have applied."""

    def __init__(self, rows: deque[Row]) -> None:
        self.rows = rows
        self.last_change_sent: float | None = None


class RetryBudget:
    """A run-wide allowance of retries: starts at `initial`, each retry costs one, each success earns `per_success`
    (capped at twice the initial allowance plus what successes earned recently)."""

    def __init__(self, initial: float, per_success: float) -> None:
        self.tokens = initial
        self._per_success = per_success
        self._cap = max(initial, 1.0) * 5
        self.spent = 0

    def take(self) -> bool:
        if self.tokens < 1:
            return False
        self.tokens -= 1
        self.spent += 1
        return True

    def earn(self) -> None:
        self.tokens = min(self._cap, self.tokens + self._per_success)


class _StopWhen(stop_base):
    """A tenacity stop condition from a no-argument predicate."""

    def __init__(self, predicate: Callable[[], bool]) -> None:
        self._predicate = predicate

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self._predicate()


class Runner:
    """Runs rows against one client and one journal. `on_row_done(row, outcome)` is called as each row ends."""

    def __init__(
        self,
        client: GaapClient,
        journal: Journal,
        config: RunnerConfig,
        on_row_done: Callable[[Row, Outcome], None] | None = None,
    ) -> None:
        self.client = client
        self.journal = journal
        self.config = config
        self.pacer = ListenerPacer(config.listener_task_s)
        self.budget = RetryBudget(config.retry_budget_initial, config.retry_budget_per_success)
        self.stop_reason = ""
        self._stopping = asyncio.Event()
        self._on_row_done = on_row_done or (lambda _row, _outcome: None)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop(self, reason: str) -> None:
        """Stop dispatching: calls in flight finish, rows not yet sent end `not_attempted` with `reason`."""
        if not self._stopping.is_set():
            self.stop_reason = reason
            self._stopping.set()
            self.client.quota.close()

    async def run(self, rows: list[Row]) -> None:
        """Process `rows` (valid, primary rows) to an outcome each. Returns when every row has one."""
        queues: dict[str, deque[Row]] = defaultdict(deque)
        for row in rows:
            queues[row.listener_id].append(row)
        await asyncio.gather(*(self._work_lane(ListenerLane(queue)) for queue in queues.values()))

    async def _work_lane(self, lane: ListenerLane) -> None:
        while lane.rows:
            row = lane.rows.popleft()
            await self._sleep(self._until_listener_free(lane))
            outcome = await self._process_row(row, lane)
            self._on_row_done(row, outcome)

    def _until_listener_free(self, lane: ListenerLane) -> float:
        """Seconds until the pacer's gap since the lane's last change has passed (0 when it has)."""
        if lane.last_change_sent is None:
            return 0.0
        return max(0.0, lane.last_change_sent + self.pacer.gap_s - time.monotonic())

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake at once when the run stops."""
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    def _wait_before_retry(self, lane: ListenerLane) -> Callable[[RetryCallState], float]:
        backoff = wait_exponential_jitter(
            multiplier=self.config.backoff_initial_s, max=self.config.backoff_max_s, jitter=self.config.backoff_jitter_s
        )

        def wait(state: RetryCallState) -> float:
            result = state.outcome.result() if state.outcome else None
            if (
                isinstance(result, CallResult)
                and result.code == LISTENER_HAS_TASK
                and lane.last_change_sent is not None
            ):
                # our own previous change is still running: retry as soon as the (now longer) gap has passed
                return max(0.02, self._until_listener_free(lane)) * random.uniform(1.0, 1.1)
            return float(backoff(state))

        return wait

    @staticmethod
    def _is_retryable(result: CallResult | None) -> bool:
        return (
            result is not None and not result.ok and classify.disposition_of(result.code or "") is Disposition.RETRYABLE
        )

    async def _send(self, row: Row, lane: ListenerLane, attempts: list[CallResult]) -> CallResult | None:
        """One attempt: journal it just before it leaves, send, journal the answer, teach the pacer.
        Returns None when the run stopped before it was sent."""
        handle: list[Attempt] = []
        sent_at: list[float] = []

        def journal_start() -> None:
            if self._stopping.is_set():
                raise GateClosed
            handle.append(self.journal.begin_attempt(row.row_number, ACTION_MODIFY))
            sent_at.append(time.monotonic())

        try:
            result = await self.client.call(
                ACTION_MODIFY, row.request_params(), priority=len(lane.rows) + 1, before_send=journal_start
            )
        except GateClosed:
            return None
        self.journal.finish_attempt(handle[0], result)
        attempts.append(result)
        previous = lane.last_change_sent
        if result.ok or classify.policy_for(result.code or "").maybe_applied:
            lane.last_change_sent = sent_at[0]
        if previous is not None and result.ok:
            self.pacer.accepted(sent_at[0] - previous)
        elif previous is not None and result.code == LISTENER_HAS_TASK:
            self.pacer.refused(sent_at[0] - previous)
        return result

    async def _process_row(self, row: Row, lane: ListenerLane) -> Outcome:
        attempts: list[CallResult] = []
        retrying = AsyncRetrying(
            stop=stop_any(
                stop_after_attempt(self.config.max_attempts),
                _StopWhen(self._stopping.is_set),
                _StopWhen(lambda: not self.budget.take()),
            ),
            wait=self._wait_before_retry(lane),
            retry=retry_if_result(self._is_retryable),
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
            sleep=self._sleep,
        )
        final: CallResult | None = await retrying(self._send, row, lane, attempts)
        return self._conclude(row, final, attempts)

    def _conclude(self, row: Row, final: CallResult | None, attempts: list[CallResult]) -> Outcome:
        last = final or (attempts[-1] if attempts else None)
        if last is None:
            self.journal.finish_row(row.row_number, Outcome.NOT_ATTEMPTED, message=f"not sent: {self.stop_reason}")
            return Outcome.NOT_ATTEMPTED
        if last.ok:
            self.budget.earn()
            self.journal.finish_row(row.row_number, Outcome.SUCCEEDED, request_id=last.request_id)
            return Outcome.SUCCEEDED
        code = last.code or ""
        policy = classify.policy_for(code)
        message = f"{last.message} — {policy.advice}" if last.message else policy.advice
        if policy.disposition is Disposition.STOP_RUN:
            self.stop(f"the run stopped at {code} on row {row.row_number} — {policy.advice}")
            outcome = Outcome.TERMINAL
        elif policy.disposition is Disposition.TERMINAL:
            outcome = Outcome.TERMINAL
        else:
            outcome = Outcome.RETRYABLE
            if final is None or self.stopping:
                message = f"{message} (not retried: {self.stop_reason})"
            elif len(attempts) < self.config.max_attempts:
                message = f"{message} (run-wide retry budget exhausted after {self.budget.spent} retries)"
            else:
                message = f"{message} (gave up after {len(attempts)} attempts)"
        self.journal.finish_row(row.row_number, outcome, code, message, last.request_id)
        return outcome
