"""The batch run: send every row's change once, listener by listener, under the rate ceiling, and journal it all.

Scheduling (issue "The batch run", Sending):
- one worker per listener takes that listener's rows in mapping order, so never two changes are in flight on one
  listener; after a change it waits for the listener's asynchronous task (`ListenerPacer`) while the rate budget
  goes to other listeners;
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
    #: first guess of how long a listener stays busy after a change; learned as the run goes
    listener_task_s: float = 0.5
    #: retries the run may spend before any success, and retries each success earns (gRPC-style retry throttling)
    retry_budget_initial: float = 20.0
    retry_budget_per_success: float = 2.0


class ListenerPacer:
    """Learns how long a listener stays busy after a change (GAAP changes are asynchronous tasks).

    After every applied change a worker waits `estimate_s` before the next change on that listener. A
    `ListenerHasTask` answer means the wait was too short: the estimate grows by a quarter. Each success without one
    shrinks it by 2%, so it tracks the service from above with rare probes (issue: ListenerHasTask "rare").
    """

    def __init__(self, initial_s: float, floor_s: float = 0.05, cap_s: float = 30.0) -> None:
        self.estimate_s = initial_s
        self._floor_s, self._cap_s = floor_s, cap_s

    def after_success(self) -> None:
        self.estimate_s = max(self._floor_s, self.estimate_s * 0.98)

    def after_busy(self) -> float:
        self.estimate_s = min(self._cap_s, self.estimate_s * 1.25)
        return self.estimate_s


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


@dataclass(frozen=True)
class RowResult:
    """How one row ended in this session; `applied_maybe` means its listener may now be busy."""

    outcome: Outcome
    applied_maybe: bool


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
        await asyncio.gather(*(self._work_listener(queue) for queue in queues.values()))

    async def _work_listener(self, queue: deque[Row]) -> None:
        while queue:
            row = queue.popleft()
            result = await self._process_row(row, priority=len(queue) + 1)
            self._on_row_done(row, result.outcome)
            if result.applied_maybe and queue:
                await self._sleep(self.pacer.estimate_s)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake at once when the run stops."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    def _wait_before_retry(self, state: RetryCallState) -> float:
        result = state.outcome.result() if state.outcome else None
        if isinstance(result, CallResult) and result.code == LISTENER_HAS_TASK:
            return self.pacer.after_busy() * random.uniform(0.9, 1.1)
        return float(
            wait_exponential_jitter(
                initial=self.config.backoff_initial_s,
                max=self.config.backoff_max_s,
                jitter=self.config.backoff_jitter_s,
            )(state)
        )

    @staticmethod
    def _is_retryable(result: CallResult | None) -> bool:
        return (
            result is not None and not result.ok and classify.disposition_of(result.code or "") is Disposition.RETRYABLE
        )

    async def _send(self, row: Row, priority: float, attempts: list[CallResult]) -> CallResult | None:
        """One attempt: journal it just before it leaves, send, journal the answer. None when the run stopped first."""
        handle: list[Attempt] = []

        def journal_start() -> None:
            if self._stopping.is_set():
                raise GateClosed
            handle.append(self.journal.begin_attempt(row.row_number, ACTION_MODIFY))

        try:
            result = await self.client.call(
                ACTION_MODIFY, row.request_params(), priority=priority, before_send=journal_start
            )
        except GateClosed:
            return None
        self.journal.finish_attempt(handle[0], result)
        attempts.append(result)
        return result

    async def _process_row(self, row: Row, priority: float) -> RowResult:
        attempts: list[CallResult] = []
        retrying = AsyncRetrying(
            stop=stop_any(
                stop_after_attempt(self.config.max_attempts),
                _StopWhen(self._stopping.is_set),
                _StopWhen(lambda: not self.budget.take()),
            ),
            wait=self._wait_before_retry,
            retry=retry_if_result(self._is_retryable),
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
            sleep=self._sleep,
        )
        final: CallResult | None = await retrying(self._send, row, priority, attempts)
        return await self._conclude(row, final, attempts)

    async def _conclude(self, row: Row, final: CallResult | None, attempts: list[CallResult]) -> RowResult:
        last = final or (attempts[-1] if attempts else None)
        if last is None:
            self.journal.finish_row(row.row_number, Outcome.NOT_ATTEMPTED, message=f"not sent: {self.stop_reason}")
            return RowResult(Outcome.NOT_ATTEMPTED, applied_maybe=False)
        if last.ok:
            self.budget.earn()
            self.pacer.after_success()
            self.journal.finish_row(row.row_number, Outcome.SUCCEEDED, request_id=last.request_id)
            return RowResult(Outcome.SUCCEEDED, applied_maybe=True)
        code = last.code or ""
        policy = classify.policy_for(code)
        message = f"{last.message} — {policy.advice}" if last.message else policy.advice
        maybe = any(classify.policy_for(a.code or "").maybe_applied for a in attempts if not a.ok)
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
        return RowResult(outcome, applied_maybe=maybe or policy.maybe_applied)
