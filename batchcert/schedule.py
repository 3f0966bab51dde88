"""When requests go: the per-action rate gate, listener pacing, the run-wide retry budget, backoff and the one retry
loop, all on one `Clock`. The runner decides *what* to send; this module decides *when*.

Design (docs/scheduling.md has the reasoning and the figures):
- **aiolimiter paces.** Each action has a `RateGate` whose grants come from an `AsyncLimiter(k, k/(rate × margin))`
  with k = one timer tick's worth of grants (`BURST_S`, at least one): at the API's 20/s a bucket of capacity one,
  grants spaced 1/(rate × margin) apart on the loop's clock and no burst possible (`AsyncLimiter(rate, 1)` would
  admit `rate` at once after every idle second — up to 2×rate in a sliding second, which the service refuses). On
  top of it sit only the things aiolimiter does not do: priority among waiters (long listener queues first), the
  hold after a throttled answer, the extra spacing while the quota is shared (adaptive rate below the ceiling), and a
  charge to the bucket for a send that left late. With the limiter's `acquire` made a no-op nothing else spaces
  grants: `tests/test_schedule.py` proves it.
- **One clock.** aiolimiter reads `loop.time()`, so the scheduler's `Clock` is the running loop's clock too; a test
  fakes time by running the loop on virtual time (`tests/virtual_time.py`), and every wait here — gate, pacer,
  backoff, polling — moves with it.
- **One retry loop** (`retry_call`): attempts, backoff with jitter, a per-call attempt limit, the run-wide
  `RetryBudget` and the run's stop, for writes and reads alike.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import heapq
import itertools
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiolimiter import AsyncLimiter

from batchcert import classify
from batchcert.model import Api, CallResult, Disposition

log = logging.getLogger("batchcert.schedule")

#: Share of the ceiling the gate uses. The service counts requests by *arrival* time in a sliding second; requests
#: spaced exactly 1/rate apart land rate+1 in some window once network jitter shifts them by a few ms
#: (docs/gaap-api.md, "Rate limit"). At 0.96 the 21st request trails the 1st by 1.04 s: 40 ms of jitter are absorbed.
RATE_MARGIN = 0.96
#: A send this much later than its grant is not charged to the next grant: grants stay on the limiter's schedule, so
#: such lags never add up, and 10 of the margin's 40 ms go to them (30 to the network). Charging every resume
#: latency (~1 ms) instead stretched every interval and cost 2% of a long run.
LAG_TOLERANCE_S = 0.01
#: aiolimiter waits out a full interval with a timer, which the event loop fires late by up to a millisecond (epoll
#: counts whole milliseconds): measured grants came ~0.9 ms slower than the interval, 1.7% of the ceiling lost. The
#: limiter's period is shortened by that much — never by more than 2% of it, so even a loop with exact timers stays
#: under 0.96 / 0.98 of the ceiling (the 21st request trails the 1st by 1.02 s or more).
TIMER_LATENESS_S = 0.001
#: The most grants the bucket hands out at once: what the ceiling allows in one tick of the event loop's timers (1 ms).
#: A grant closer than a tick to the last one cannot be timed anyway, so a bucket of capacity one would grant at most
#: one caller per turn of the loop: against a fast service (the emulator at 10,000/s, a rehearsal) every request then
#: cost a turn of its own: in the 30,000-row bench run's busy stretch 0.31 ms of CPU per request, against 0.23–0.26 with
#: a tick's worth per turn (docs/scheduling.md, "CPU"). At most rate × BURST_S extra requests in any second — 0.1% of
#: the ceiling, inside RATE_MARGIN's 4%; below 2,000/s (the API's 20/s) the capacity is one and nothing changes.
BURST_S = 0.001
#: The least send-to-send gap `ListenerPacer` keeps on one listener while the service has refused nothing: the event
#: loop's timer resolution (1 ms). A real GAAP task takes seconds (docs/gaap-api.md, "Listener tasks"), so the probe
#: meets a refusal long before this; it binds only against a service whose tasks end at once — an emulator or a
#: rehearsal — where any higher floor only idles the run: at 20 ms the bench's 30,000-row run (3,333 rows on each of
#: three listeners) took 84 s, at 5 ms 34 s, and its three long listeners still finished after the others, in a tail
#: where every change woke an idle process (docs/scheduling.md, "CPU").
GAP_FLOOR_S = 0.001


class Clock(Protocol):
    """Monotonic time in seconds and a sleep on the same time line."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class LoopClock:
    """The running event loop's clock: the one aiolimiter and asyncio timers use, so they cannot disagree.

    It keeps the loop it first ran in until that loop is closed (`asyncio.run` closes its loop at the end): finding
    the running loop costs a system call (CPython checks the process id), and the clock is read several times per
    request."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None

    def now(self) -> float:
        loop = self._loop
        if loop is None or loop.is_closed():
            loop = self._loop = asyncio.get_running_loop()
        return loop.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class Sleeper:
    """Sleeps on the loop's clock (timers, like `LoopClock`) and wakes every sleeper at once when `wake_all` is
    called: a stopping run does not wait out a backoff or a listener's task."""

    def __init__(self) -> None:
        self.stopped = False
        self._sleepers: set[asyncio.Future[None]] = set()

    async def sleep(self, seconds: float) -> None:
        """Sleep `seconds`, or less when the run stops meanwhile (a timer on a future: no task per sleep)."""
        if seconds <= 0 or self.stopped:
            return
        loop = asyncio.get_running_loop()
        wake: asyncio.Future[None] = loop.create_future()
        timer = loop.call_later(seconds, _resolve, wake)
        self._sleepers.add(wake)
        try:
            await wake
        finally:
            timer.cancel()
            self._sleepers.discard(wake)

    def wake_all(self) -> None:
        self.stopped = True
        for wake in list(self._sleepers):
            _resolve(wake)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class GateClosed(Exception):
    """The gate was closed (the run is stopping): the call was not sent."""


class RateGate:
    """Admits callers one at a time (at most a timer tick's worth at once, `BURST_S`), never more than
    `ceiling_per_s × RATE_MARGIN` per second (see the module doc).

    Among waiting callers the one with the highest `priority` goes first (ties: first come). Adaptive for a shared
    quota (console, other tools on the same sub-account): a throttled answer although we kept the ceiling means
    someone else spends part of it, so `rate_per_s` drops by 30% — once per round of feedback (throttles of calls
    granted before the last cut are already accounted for) — and climbs back by `RECOVERY_SHARE` of the ceiling per
    success, never above it (the AIMD shape of botocore's adaptive retry mode). A cut also holds grants for `HOLD_S`:
    the service counts a sliding second, so once it is full every further request is refused until old ones leave.
    """

    DECREASE = 0.7
    RECOVERY_SHARE = 0.0025
    MIN_RATE_PER_S = 0.5
    HOLD_S = 0.5

    def __init__(self, rate_per_s: float, clock: Clock, name: str = "") -> None:
        self.ceiling_per_s = rate_per_s
        self.rate_per_s = rate_per_s
        self.name = name
        self._clock = clock
        target_s = 1 / (rate_per_s * RATE_MARGIN)
        self._interval_s = target_s - min(TIMER_LATENESS_S, 0.02 * target_s)
        burst = max(1, int(rate_per_s * BURST_S))
        self._limiter = AsyncLimiter(burst, burst * self._interval_s)
        self._lag_s = 0.0
        self._waiters: list[tuple[float, int, asyncio.Future[float]]] = []
        self._order = itertools.count()
        self._pump: asyncio.Task[None] | None = None
        self._last_cut = float("-inf")
        self._hold_until = float("-inf")
        self.closed = False

    async def acquire(self, priority: float = 0.0) -> float:
        """Wait for this caller's turn; returns the grant time (clock s) to pass to `throttled`. Raises GateClosed
        once `close` was called, also for callers already waiting. Cancellation gives up the turn unused."""
        if self.closed:
            raise GateClosed
        if self._uncontended():
            # nobody waits and the bucket has room: take the limiter's grant here (its `acquire` does not suspend
            # when it has capacity) instead of a future, a heap entry and a pump task per request
            await self._limiter.acquire()
            return self._clock.now()
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (-priority, next(self._order), fut))
        if self._pump is None or self._pump.done():
            self._pump = asyncio.create_task(self._run_pump())
        try:
            return await fut
        except asyncio.CancelledError:
            fut.cancel()
            raise

    def _uncontended(self) -> bool:
        """True when a caller can be granted at once with nothing else to honour: no waiter ahead, no pump at work,
        no late send to charge, no hold, no cut rate, and room in the limiter's bucket."""
        return (
            not self._waiters
            and (self._pump is None or self._pump.done())
            and self._lag_s <= 0
            and self.rate_per_s >= self.ceiling_per_s
            and self._hold_until <= self._clock.now()
            and self._limiter.has_capacity()
        )

    async def _run_pump(self) -> None:
        while self._waiters:
            await self._limiter.acquire()
            # A granted call that went on the wire late (the event loop was busy between the grant and the send)
            # would sit closer than one interval to the next: charge the bucket for that lag, in the limiter's own
            # units, so the spacing holds between actual sends.
            while self._lag_s > 0:
                charge = min(1.0, self._lag_s / self._interval_s)
                self._lag_s = 0.0
                await self._limiter.acquire(charge)
            # on top of the limiter: the hold after a throttle, and the extra spacing while the rate is cut
            extra_s = max(0.0, self._hold_until - self._clock.now())
            if self.rate_per_s < self.ceiling_per_s:
                extra_s += 1 / (self.rate_per_s * RATE_MARGIN) - 1 / (self.ceiling_per_s * RATE_MARGIN)
            if extra_s > 0:
                await self._clock.sleep(extra_s)
            while self._waiters and self._waiters[0][2].done():
                heapq.heappop(self._waiters)
            if self._waiters:
                heapq.heappop(self._waiters)[2].set_result(self._clock.now())

    def mark_sent(self, granted_at: float) -> None:
        """The call granted at `granted_at` goes on the wire now; a send later than LAG_TOLERANCE_S is charged to the
        next grant."""
        self._lag_s = max(self._lag_s, self._clock.now() - granted_at - LAG_TOLERANCE_S)

    def throttled(self, granted_at: float) -> None:
        """The service answered RequestLimitExceeded to a call this gate granted at `granted_at` (clock s)."""
        if granted_at > self._last_cut:
            self._last_cut = self._clock.now()
            self._hold_until = self._last_cut + self.HOLD_S
            self.rate_per_s = max(self.MIN_RATE_PER_S, self.rate_per_s * self.DECREASE)
            log.info("%s throttled: rate cut to %.2f/s, holding %.1f s", self.name, self.rate_per_s, self.HOLD_S)

    def succeeded(self) -> None:
        """A call this gate admitted was not throttled."""
        self.rate_per_s = min(self.ceiling_per_s, self.rate_per_s + self.RECOVERY_SHARE * self.ceiling_per_s)

    def close(self) -> None:
        """Admit no one any more: every waiter, and every later caller, gets GateClosed."""
        self.closed = True
        for _, _, fut in self._waiters:
            if not fut.done():
                fut.set_exception(GateClosed())
        self._waiters.clear()
        if self._pump is not None:
            self._pump.cancel()


class Quota:
    """One `RateGate` per action, all at the same ceiling (the service counts per API + sub-account), and the one
    way a request goes out: `send` waits at the action's gate, then calls the API."""

    def __init__(self, rate_per_s: float, clock: Clock | None = None) -> None:
        self.rate_per_s = rate_per_s
        self.clock = clock or LoopClock()
        self._gates: dict[str, RateGate] = {}
        self.closed = False
        #: requests sent and not yet answered (what a stopping run waits for)
        self.in_flight = 0

    def gate(self, action: str) -> RateGate:
        if action not in self._gates:
            self._gates[action] = RateGate(self.rate_per_s, self.clock, action)
            self._gates[action].closed = self.closed
        return self._gates[action]

    def close(self) -> None:
        """Close every gate (see `RateGate.close`); gates made later are closed too."""
        self.closed = True
        for gate in self._gates.values():
            gate.close()

    async def send(
        self,
        api: Api,
        action: str,
        params: dict[str, Any],
        *,
        priority: float = 0.0,
        before_send: Callable[[], None] | None = None,
        durable: Callable[[], Awaitable[None]] | None = None,
    ) -> CallResult:
        """Wait for the action's gate, run `before_send` (journal the attempt there; it may raise GateClosed to
        give up), wait for `durable` (the journal's group commit: the intent is on disk before the request leaves),
        send, and feed the answer back to the gate. Raises GateClosed when the run stopped first."""
        gate = self.gate(action)
        granted_at = await gate.acquire(priority)
        if before_send is not None:
            before_send()
        if durable is not None:
            await durable()
        gate.mark_sent(granted_at)
        self.in_flight += 1
        try:
            result = await api.send(action, params)
        finally:
            self.in_flight -= 1
        if classify.is_throttling(result.code or ""):  # RequestLimitExceeded* and its namesakes (classify.THROTTLED)
            gate.throttled(granted_at)
        elif result.http_status == 200:
            gate.succeeded()
        return result


class ListenerPacer:
    """Learns the send-to-send gap two changes on one listener need (GAAP changes are asynchronous tasks).

    The service starts a listener's task when it processes a change and refuses the next change with
    `ListenerHasTask` until the task ends, so what matters is the gap between two *sends*, not the time after an
    answer: a listener then takes a change every `task` seconds instead of every `task + latency`. Learned run-wide
    (task time is a property of the service): a refusal at gap g proves the task is longer than g (`busy_s` rises to
    g); the pacer keeps 10% + 10 ms above that. Until the first refusal it probes downward from the initial guess by
    10% per accepted change, and every 20 accepted changes it lowers `busy_s` by 5% to follow a service that got
    faster — so refusals stay rare. Two refusals in a row, the second although the pacer's own gap was kept, mean
    the estimate is far off (tasks of several seconds are possible: Terraform waits minutes for GAAP listeners), so
    `busy_s` doubles: a long task is learned in a few refusals, not dozens of +10% steps. (One refusal at the
    pacer's gap is the expected end of a downward probe, and only sets `busy_s`.) A doubled estimate is a guess,
    not a measurement — two refusals in a row also happen when the first change's request was slow to arrive — so
    it comes down again by 10% per accepted change, never below the gap a refusal proved too short, and the pacer
    settles there; otherwise one unlucky pair of refusals would keep a long listener at twice its task time for
    hundreds of changes.
    """

    def __init__(self, initial_s: float, floor_s: float = GAP_FLOOR_S, cap_s: float = 30.0) -> None:
        self._probe_s = initial_s
        self.busy_s: float | None = None
        self._floor_s, self._cap_s = floor_s, cap_s
        self._accepted = 0
        self._refused_last = False
        #: after a doubling: the longest gap a refusal proved too short, which the fast way down stops at
        self._proven_s: float | None = None

    @property
    def gap_s(self) -> float:
        """The send-to-send gap to keep between two changes on one listener, in seconds."""
        if self.busy_s is None:
            return self._probe_s
        return min(self._cap_s, max(self._floor_s, self.busy_s * 1.1 + 0.01))

    def accepted(self, gap_s: float) -> None:
        """A change sent `gap_s` after the listener's previous one was accepted."""
        self._accepted += 1
        self._refused_last = False
        if self.busy_s is None:
            self._probe_s = max(self._floor_s, min(self._probe_s, gap_s) * 0.9)
        elif self._proven_s is not None:
            self.busy_s = max(self._proven_s, self.busy_s * 0.9)
            if self.busy_s == self._proven_s:
                self._proven_s = None
        elif self._accepted % 20 == 0:
            self.busy_s *= 0.95

    def refused(self, gap_s: float) -> None:
        """A change sent `gap_s` after the listener's previous one got ListenerHasTask."""
        before = self.busy_s
        if before is not None and self._refused_last and gap_s >= self.gap_s * 0.999:
            self._proven_s = max(before, gap_s)
            self.busy_s = self._proven_s * 2
        else:
            self.busy_s = max(before or 0.0, gap_s)
            self._proven_s = None
        self._refused_last = True
        if before != self.busy_s:
            log.info("listener tasks take over %.3f s: changes on one listener now %.3f s apart", gap_s, self.gap_s)


#: The shortest pause between two read-backs of a listener whose task still runs: a read's round trip at the
#: lowest latency a real account answers in (docs/scheduling.md, "Read-back").
POLL_FLOOR_S = 0.05


class TaskTimer:
    """How long after a change is sent a read of its listener shows it idle again, learned run-wide from the
    read-backs, so the read after a listener's last change goes when its task has ended: not at once (a read that
    only shows the task still running) nor a retry backoff late (docs/scheduling.md, "Read-back").

    The estimate starts at a guess. A read-back that saw the task still running `changing_s` after the change and
    idle `idle_s` after sets it to `idle_s`; one whose first read, sent at about the estimate, was idle already
    brings it down 10% (the guess was high, or the service got faster), never below the last `changing_s` — the
    pacer's way of probing down (`ListenerPacer`); a first read sent later than the estimate says nothing. While a task still runs, reads go `poll_s` apart: a fifth of
    the estimate (at least `POLL_FLOOR_S`), doubling per read. Times are between the two requests' sends, so a read
    that waited at the gate does not count as task time.
    """

    def __init__(self, initial_s: float) -> None:
        self.estimate_s = initial_s
        self._proven_s = 0.0
        #: a read-back has seen a task running and then ended: the estimate is a measurement, not the guess
        self.measured = False

    @staticmethod
    def follow_s(elapsed_s: float) -> float:
        """The pause between two reads that follow a task to measure it, `elapsed_s` after its change was sent: a
        quarter of the time so far (at least `POLL_FLOOR_S`), so the measurement is off by a quarter at most and a
        task of seconds costs about twenty reads, once per run."""
        return max(POLL_FLOOR_S, elapsed_s / 4)

    def poll_s(self, reads_changing: int) -> float:
        """The pause after the `reads_changing`-th read (1 for the first) that showed the task still running."""
        return float(max(POLL_FLOOR_S, 0.2 * self.estimate_s) * 2 ** max(0, reads_changing - 1))

    def observed(self, changing_s: float | None, idle_s: float) -> None:
        """A read-back ended: its last read that showed the task running was sent `changing_s` after the change
        (None: its first read was idle already), the read that showed it idle `idle_s` after."""
        if changing_s is not None:
            self._proven_s = changing_s
            self.estimate_s = max(changing_s, idle_s)
            self.measured = True
        elif idle_s <= self.estimate_s + POLL_FLOOR_S:
            # sent at about the estimate and idle: maybe earlier would have done (a read sent later — at an older
            # estimate, or held at the gate — says nothing)
            self.estimate_s = max(self._proven_s, min(self.estimate_s, idle_s) * 0.9)


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


def is_retryable(result: CallResult) -> bool:
    return not result.ok and classify.disposition_of(result.code or "") is Disposition.RETRYABLE


async def retry_call(
    attempt: Callable[[CallResult | None], Awaitable[CallResult | None]],
    *,
    policy: RetryPolicy,
    sleeper: Sleeper,
    rng: random.Random,
    budget: RetryBudget | None = None,
    wait_s: Callable[[CallResult, int], float | None] | None = None,
    retry_if: Callable[[CallResult], bool] = is_retryable,
    patient: Callable[[CallResult], bool] = lambda _result: False,
    patience_s: float = 0.0,
) -> Tries:
    """Call `attempt(previous answer)` (None the first time) until its answer is not retryable, the policy's
    attempts are used up, the budget refuses a retry or the run stops. `attempt` returns None when it was not sent
    (the run stopped).
    `wait_s(result, retry_number)` may choose the wait before a retry (None: the policy's backoff); `retry_if` says
    which answers are retried (default: the classification's retryable ones). `patient` answers (a busy listener)
    are waited out by time instead: they count as no attempt and cost no budget, until `patience_s` after the first."""
    results: list[CallResult] = []
    n = 0
    waiting_since: float | None = None
    loop = asyncio.get_running_loop()
    while True:
        result = await attempt(results[-1] if results else None)
        if result is None:
            return Tries(tuple(results), None, GaveUp.STOPPED if results else GaveUp.NOTHING)
        results.append(result)
        if not retry_if(result):
            return Tries(tuple(results), result)
        if patient(result):
            waiting_since = loop.time() if waiting_since is None else waiting_since
            if loop.time() - waiting_since >= patience_s:
                return Tries(tuple(results), result, GaveUp.PATIENCE)
        else:
            n += 1
            if n >= policy.max_attempts:
                return Tries(tuple(results), result, GaveUp.ATTEMPTS)
            if budget is not None and not budget.take():
                return Tries(tuple(results), result, GaveUp.BUDGET)
        if sleeper.stopped:
            return Tries(tuple(results), result, GaveUp.STOPPED)
        chosen = wait_s(result, len(results)) if wait_s is not None else None
        await sleeper.sleep(policy.backoff_s(min(len(results), 6), rng) if chosen is None else chosen)
        if sleeper.stopped:
            return Tries(tuple(results), result, GaveUp.STOPPED)
