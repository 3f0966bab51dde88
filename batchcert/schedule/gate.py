"""The per-action rate gate: `RateGate` (one action's grants), `Quota` (a gate per action, and `Quota.send`, the one
way a request goes out) and `GateClosed`. The only module that imports aiolimiter.

**aiolimiter paces** (docs/scheduling.md has the reasoning and the figures). Each action has a `RateGate` whose grants
come from an `AsyncLimiter(k, k/(rate × margin))` with k = one timer tick's worth of grants (`BURST_S`, at least one):
at the API's 20/s a bucket of capacity one, grants spaced 1/(rate × margin) apart on the loop's clock and no burst
possible (`AsyncLimiter(rate, 1)` would admit `rate` at once after every idle second — up to 2×rate in a sliding
second, which the service refuses). On top of it sit only the things aiolimiter does not do: priority among waiters
(long listener queues first), the hold after a throttled answer, the extra spacing while the quota is shared (adaptive
rate below the ceiling), and a charge to the bucket for a send that left late. With the limiter's `acquire` made a
no-op nothing else spaces grants: `tests/test_schedule.py` proves it.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiolimiter import AsyncLimiter

from batchcert import classify
from batchcert.model import Api, CallResult
from batchcert.schedule.clock import Clock, LoopClock

# the scheduler's log keeps the name it always had (a --verbose line shows it)
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
