"""Retries: `RetryPolicy` (attempts and backoff), `RetryBudget` (the run-wide allowance) and `retry_call`, the **one
retry loop** — attempts, backoff with jitter, a per-call attempt limit, the run-wide budget and the run's stop, for
writes and reads alike — which asks one hook, `decide`, what to do with each answer (a `Decision`: stop, retry, or
wait a busy listener out, and after which wait) and reports what it did as `Tries` (and why it gave up, `GaveUp`).
"""

from __future__ import annotations

import asyncio
import collections
import enum
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from batchcert import classify
from batchcert.model import CallResult, Disposition
from batchcert.schedule.clock import Clock

# the scheduler's log keeps the name it always had (a --verbose line shows it)
log = logging.getLogger("batchcert.schedule")


class RetryBudget:
    """A run-wide allowance of retries that is a rate, not a pot (Finagle's RetryBudget,
    https://twitter.github.io/finagle/guide/Clients.html#retries): within any `window_s`, at most `min_per_s` ×
    `window_s` retries, plus `percent` of the successes answered in that window. A flaky service costs bounded quota
    per second, never the run: retries go on at the floor rate however slowly successes come back (a pot of 20
    emptied before the first success of a 50 ms network came back, and every later row ended retryable); a total
    outage costs at most the floor rate in retries, however long it lasts. Times on `clock`."""

    def __init__(self, clock: Clock, min_per_s: float = 5.0, percent: float = 0.2, window_s: float = 10.0) -> None:
        self._clock = clock
        self._reserve = min_per_s * window_s
        self._percent = percent
        self._window_s = window_s
        self._retries: collections.deque[float] = collections.deque()
        self._successes: collections.deque[float] = collections.deque()
        #: retries taken in the whole run (the report says how many when the budget refused one)
        self.spent = 0
        self._said = False

    def _forget_before(self, now: float) -> None:
        horizon = now - self._window_s
        for times in (self._retries, self._successes):
            while times and times[0] <= horizon:
                times.popleft()

    def take(self) -> bool:
        """A retry now, when the window allows one."""
        now = self._clock.now()
        self._forget_before(now)
        if len(self._retries) + 1 > self._reserve + self._percent * len(self._successes):
            if not self._said:
                log.info("run-wide retry budget exhausted after %d retries", self.spent)
                self._said = True  # say it once per exhaustion
            return False
        self._said = False
        self._retries.append(now)
        self.spent += 1
        return True

    def earn(self) -> None:
        """A success answered now (it lets `percent` of a retry more into the window)."""
        now = self._clock.now()
        self._forget_before(now)
        self._successes.append(now)


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts per call and the backoff between them: initial × 2^(n-1), capped, plus up to `jitter_s` at random
    (jitter keeps many rows hit by one fault from retrying in lockstep)."""

    max_attempts: int = 6
    backoff_initial_s: float = 0.25
    backoff_max_s: float = 8.0
    backoff_jitter_s: float = 0.25

    def backoff_s(self, retry_number: int, rng: random.Random) -> float:
        """Seconds to wait before retry number `retry_number` (1 for the first retry)."""
        base = min(self.backoff_max_s, self.backoff_initial_s * 2 ** max(0, retry_number - 1))
        return float(base + rng.uniform(0, self.backoff_jitter_s))


class GaveUp(enum.StrEnum):
    """Why `retry_call` stopped retrying a retryable answer (empty when it did not)."""

    NOTHING = ""
    ATTEMPTS = "attempts"
    PATIENCE = "patience"
    BUDGET = "budget"
    STOPPED = "stopped"


@dataclass(frozen=True)
class Tries:
    """What `retry_call` did: every answer in order, the last one (None when the last try was not sent because the
    run stopped), and why it gave up on a retryable answer."""

    results: tuple[CallResult, ...]
    last: CallResult | None
    gave_up: GaveUp = GaveUp.NOTHING


class RetryVerdict(enum.Enum):
    """What `retry_call` does with an answer."""

    #: the answer stands: the call ends with it
    STOP = "stop"
    #: try again: one of the policy's attempts, and a retry of the run-wide budget
    RETRY = "retry"
    #: a busy listener: try again by time instead — no attempt counted, no budget spent — until the decision's
    #: `patience_s` after the first answer waited out
    WAIT_OUT = "wait_out"


@dataclass(frozen=True)
class Decision:
    """What to do with one answer (what a `decide` hook returns): its `verdict`, and the wait before the next try —
    the policy's jittered backoff (`wait_s` None) or `wait_s` chosen by the caller, stretched by a random factor in
    [1, 1 + `jitter_ratio`] (rows refused together do not come back in lockstep). The loop draws that factor only
    when it does retry, so a call that gives up leaves the run's random sequence as it was."""

    verdict: RetryVerdict
    wait_s: float | None = None
    jitter_ratio: float = 0.0
    #: WAIT_OUT: how long after the first answer waited out the call keeps waiting (then it gives up: PATIENCE)
    patience_s: float = 0.0

    @classmethod
    def stop(cls) -> Decision:
        return cls(RetryVerdict.STOP)

    @classmethod
    def retry(cls, wait_s: float | None = None, jitter_ratio: float = 0.0) -> Decision:
        return cls(RetryVerdict.RETRY, wait_s, jitter_ratio)

    @classmethod
    def wait_out(cls, patience_s: float, wait_s: float | None = None, jitter_ratio: float = 0.0) -> Decision:
        return cls(RetryVerdict.WAIT_OUT, wait_s, jitter_ratio, patience_s)

    def next_wait_s(self, policy: RetryPolicy, retry_number: int, rng: random.Random) -> float:
        """Seconds to wait before retry number `retry_number` (the backoff's exponent stops growing at the 6th)."""
        if self.wait_s is None:
            return policy.backoff_s(min(retry_number, 6), rng)
        if self.jitter_ratio:
            return self.wait_s * rng.uniform(1.0, 1.0 + self.jitter_ratio)
        return self.wait_s


class Waiter(Protocol):
    """How `retry_call` waits between tries: a `Sleeper`, or a caller's own that acts as it starts waiting (a row
    that lets the rest of its listener's queue go on while it waits, `runner.retry.RetryDecision`)."""

    @property
    def stopped(self) -> bool: ...

    async def sleep(self, seconds: float) -> None: ...


def is_retryable(result: CallResult) -> bool:
    return not result.ok and classify.disposition_of(result.code or "") is Disposition.RETRYABLE


def backoff_if_retryable(result: CallResult, _retry_number: int) -> Decision:
    """The default decision: the classification's retryable answers are tried again after the policy's backoff,
    every other answer stands."""
    return Decision.retry() if is_retryable(result) else Decision.stop()


async def retry_call(
    attempt: Callable[[CallResult | None], Awaitable[CallResult | None]],
    *,
    policy: RetryPolicy,
    sleeper: Waiter,
    rng: random.Random,
    budget: RetryBudget | None = None,
    decide: Callable[[CallResult, int], Decision] = backoff_if_retryable,
) -> Tries:
    """Call `attempt(previous answer)` (None the first time) until `decide(answer, retry number)` lets the answer
    stand, the policy's attempts are used up, the budget refuses a retry, a busy listener outlasts the decision's
    patience or the run stops. `attempt` returns None when it was not sent (the run stopped). The retry number is
    that of the retry the answer would lead to (1 after the first answer; answers waited out count here too). One
    hook answers both whether and when, as stamina's `on` does (https://stamina.hynek.me/en/stable/api.html); the
    counting — attempts, budget, patience, the stop — stays here, for every caller alike. Since the call may still
    give up after `decide` answered, `decide` only decides; what must happen only when a retry does happen (a row
    stepping aside, a random draw) belongs in `sleeper.sleep`."""
    results: list[CallResult] = []
    n = 0
    waiting_since: float | None = None
    loop = asyncio.get_running_loop()
    while True:
        result = await attempt(results[-1] if results else None)
        if result is None:
            return Tries(tuple(results), None, GaveUp.STOPPED if results else GaveUp.NOTHING)
        results.append(result)
        decision = decide(result, len(results))
        if decision.verdict is RetryVerdict.STOP:
            return Tries(tuple(results), result)
        if decision.verdict is RetryVerdict.WAIT_OUT:
            waiting_since = loop.time() if waiting_since is None else waiting_since
            if loop.time() - waiting_since >= decision.patience_s:
                return Tries(tuple(results), result, GaveUp.PATIENCE)
        else:
            n += 1
            if n >= policy.max_attempts:
                return Tries(tuple(results), result, GaveUp.ATTEMPTS)
            if budget is not None and not budget.take():
                return Tries(tuple(results), result, GaveUp.BUDGET)
        if sleeper.stopped:
            return Tries(tuple(results), result, GaveUp.STOPPED)
        await sleeper.sleep(decision.next_wait_s(policy, len(results), rng))
        if sleeper.stopped:
            return Tries(tuple(results), result, GaveUp.STOPPED)
