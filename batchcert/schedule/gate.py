"""The per-action rate gate: `RateGate` (one action's grants), `Quota` (a gate per action, and `Quota.send`, the one
way a request goes out) and `GateClosed`. The only module that imports aiolimiter.

The service counts each action's requests by arrival in a sliding second (docs/gaap-api.md, "Rate limit"); each gate
keeps that count on its own side (docs/scheduling.md, "The rate gate"): a log of the sends that still count, which
admits a request only while fewer than the ceiling's worth do. A send counts for the service's second plus the lag
its round trip allows (`MIN_LAG_S`), or `1 / RATE_MARGIN` seconds until it is answered. Requests granted and not yet
on the wire count as sent now, and a send is logged when it goes out, so a late send (a busy event loop, a slow disk)
moves the window with it. Within that window a gate either

- **spreads** its grants (the default): aiolimiter paces, `AsyncLimiter(k, k × interval)` with the interval of the
  ceiling's share and k = one timer tick's worth of grants (`BURST_S`, at least one). A request that becomes ready
  waits at most one interval, which a run bound by its listeners' chains of tasks needs; or
- sends in **bursts** (`Quota.send_in_bursts`, where the runner's plan says no listener's chain can bind), once
  the action has been answered without an error code (a bad credential must not cost a window's worth of refusals):
  every waiter the window has room for, `BURST_SPACING_S` apart, the next when the oldest send leaves the window.
  That uses the whole of every window — 220 requests at 20/s end at 10.4 s, not 11.4 s — but a request that becomes
  ready just after a burst waits for the next window.

After a throttle (a shared quota) every gate spreads for the rest of the run: the other client's requests arrive at
times we cannot see, and an even spacing collides least with them. Priority among waiters, the hold after a throttled
answer and the adaptive rate sit on top.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any

from aiolimiter import AsyncLimiter

from batchcert import classify
from batchcert.model import Api, CallResult
from batchcert.schedule.clock import Clock, LoopClock

# the scheduler's log keeps the name it always had (a --verbose line shows it)
log = logging.getLogger("batchcert.schedule")

#: Share of the ceiling the gate uses. The service counts requests by *arrival* time in a sliding second; a request
#: leaving exactly 1 s after the one 20 before it can arrive inside that one's second once network jitter shifts
#: them by a few ms (docs/gaap-api.md, "Rate limit"). The gate's window is 1 / 0.96 s: the 21st request leaves at
#: least 1.04 s after the 1st, so 40 ms of jitter are absorbed.
RATE_MARGIN = 0.96
#: aiolimiter waits out a full interval with a timer, which the event loop fires late by up to a millisecond (epoll
#: counts whole milliseconds): measured grants came ~0.9 ms slower than the interval, 1.7% of the ceiling lost. The
#: limiter's period is shortened by that much — never by more than 2% of it; the window of sends holds the margin
#: whatever the timers do.
TIMER_LATENESS_S = 0.001
#: The most grants a spreading gate's bucket hands out at once: what the ceiling allows in one tick of the event
#: loop's timers (1 ms). A grant closer than a tick to the last one cannot be timed anyway, so a bucket of capacity
#: one would grant at most one caller per turn of the loop: against a fast service (the emulator at 10,000/s, a
#: rehearsal) every request then cost a turn of its own: in the 30,000-row bench run's busy stretch 0.31 ms of CPU
#: per request, against 0.23–0.26 with a tick's worth per turn (docs/scheduling.md, "CPU"). Below 2,000/s (the API's
#: 20/s) the capacity is one.
BURST_S = 0.001
#: A burst's requests leave this far apart (never more than half the spreading interval): the service takes them
#: as they come instead of queueing the whole burst. Requests leaving at once arrived, against the emulator on this
#: project's 2-core machines, up to 80 ms late at the end of a burst — more than the margin's 40 ms when the burst
#: after it was not queued — and 1 to 3 of bench (f)'s requests were throttled in every run; 5 ms apart, 20 requests
#: take 0.1 s of a window (docs/scheduling.md, "The rate gate").
BURST_SPACING_S = 0.005
#: How far the service's count of a request may lag its send, once requests of the action have been answered: the
#: request's round trip less the shortest round trip seen, never less than `MIN_LAG_S` nor more than `MAX_LAG_S`.
#: The service counts a request when it arrives, somewhere within its round trip; what a round trip took beyond the
#: fastest one (queues, a slow path, a busy service or client) may have been spent on the way there, so the request
#: 20 after it waits for that too, not for a fixed share of the second (docs/scheduling.md, "The rate gate"). A fixed
#: 40 ms margin was not enough at 20–80 ms latency: a request whose round trip took 101 ms was counted after the next
#: second's 20th had left 1.05 s later (bench (a), one throttle in most runs). Before any answer the margin stands in
#: (1 / RATE_MARGIN − 1 s); MAX_LAG_S bounds what one slow answer can cost. Adding MIN_LAG_S to every lag instead
#: of flooring it was measured too: bench (a) took 0.2–0.4 s longer (1%, more than its ≥ 0.92 check can spare).
MIN_LAG_S = 0.01
MAX_LAG_S = 0.2
#: Sends in a gate's first WARM_UP_S count at least the margin's 1 / RATE_MARGIN s, whatever their round trips say.
#: The shortest round trip is what a later request's way there is judged by, and at first it is known from few
#: answers, all slowed by the run's start (the report libraries importing meanwhile, connections opening): bench (a)
#: saw DescribeRules answers of 51 ms at the least in its first second and 23–25 ms after it. A request sent then
#: on a fast path arrived 10 ms earlier than that shortest round trip allowed and was throttled, 1.14 s into the run
#: (26 runs of (a) and (g): 3 throttled once each, at 1.01 s, 1.14 s and 1.15 s, none later). The margin costs at
#: most a few requests' time, once.
WARM_UP_S = 2.0
#: Every answered send still counting is recounted only once the shortest round trip is this much below the one they
#: were last recounted against — whether it fell at once or a little at a time: a window of thousands of sends (a fast
#: rehearsal) is not walked for every microsecond the minimum moves, and no send's lag falls short by more than this
RECOUNT_S = 0.001
#: Sends closer than this to the end of a window count as out of it: a timer the event loop fires at the window's
#: end must not find the oldest send a rounding error short of leaving.
EPSILON_S = 1e-9


@dataclass(frozen=True)
class Window:
    """What a gate at a ceiling admits: at most `capacity` requests in any `seconds` (the service's own window,
    `service_seconds`, stretched by the margin)."""

    capacity: int
    service_seconds: float

    @property
    def seconds(self) -> float:
        return self.service_seconds / RATE_MARGIN

    @classmethod
    def of(cls, rate_per_s: float) -> Window:
        """The ceiling's whole requests per second in a second (below one a second: one request per 1 / rate
        seconds)."""
        capacity = max(1, math.floor(rate_per_s))
        return cls(capacity, max(1.0, capacity / rate_per_s))


@dataclass(eq=False)
class Send:
    """A request on the wire, as its gate counts it: when it left, its round trip once answered
    (`RateGate.answered`), until when it counts, and whether it still does."""

    at: float
    leaves_at: float
    #: its place in the order of sending (what breaks ties between sends that stop counting at once)
    order: int
    rtt_s: float | None = None
    counting: bool = True


class GateClosed(Exception):
    """The gate was closed (the run is stopping): the call was not sent."""


class RateGate:
    """Admits callers while fewer than `capacity` requests sent (or granted and not yet sent) still count, spread
    evenly by aiolimiter or, with `bursts`, all the window has room for in one burst (module doc).

    Among waiting callers the one with the highest `priority` goes first (ties: first come). Adaptive for a shared
    quota: a throttled answer although we kept the ceiling means someone else spends part of it, so `rate_per_s`
    drops by 30% — once per round of feedback (throttles of calls granted before the last cut are already accounted
    for) — and climbs back by `RECOVERY_SHARE` of the ceiling per success, never above it (the AIMD shape of
    botocore's adaptive retry mode); below the ceiling grants are spread, with the extra spacing of the cut rate. A
    cut also holds grants for `HOLD_S`: the service counts a sliding second, so once it is full every further
    request is refused until old ones leave.

    Every grant is followed by exactly one `mark_sent` (the call went out) or `release` (it did not); `Quota.send`
    does both.
    """

    DECREASE = 0.7
    RECOVERY_SHARE = 0.0025
    MIN_RATE_PER_S = 0.5
    HOLD_S = 0.5

    def __init__(self, rate_per_s: float, clock: Clock, name: str = "", *, bursts: bool = False) -> None:
        self.ceiling_per_s = rate_per_s
        self.rate_per_s = rate_per_s
        self.name = name
        self.bursts = bursts
        self._clock = clock
        window = Window.of(rate_per_s)
        self.capacity = window.capacity
        self.window_s = window.seconds
        #: the service's own window: a second, or one request's share of it below 1/s
        self._service_window_s = window.service_seconds
        #: the sends by when they stop counting (a send whose time moved is in it again; its older entry is stale)
        self._leaving: list[tuple[float, int, Send]] = []
        self._counting: dict[int, Send] = {}  # the sends that still count, by order of sending
        self._sends = itertools.count()
        self._shortest_rtt_s = math.inf
        self._warm_from = math.inf  # WARM_UP_S after the first send
        #: the shortest round trip when every answered send still counting was last recounted: each such send's lag
        #: was taken against a shortest round trip at most RECOUNT_S above today's
        self._recounted_shortest_s = math.inf
        self._pending = 0  # granted, neither sent nor released yet
        self._room = asyncio.Event()  # set when a pending grant is sent or released
        target_s = self.window_s / self.capacity
        interval_s = target_s - min(TIMER_LATENESS_S, 0.02 * target_s)
        self._burst_spacing_s = min(BURST_SPACING_S, target_s / 2)
        self._last_grant = float("-inf")
        tick = max(1, int(rate_per_s * BURST_S))
        self._limiter = AsyncLimiter(tick, tick * interval_s)
        self._waiters: list[tuple[float, int, asyncio.Future[float]]] = []
        self._order = itertools.count()
        self._pump: asyncio.Task[None] | None = None
        self._last_cut = float("-inf")
        self._hold_until = float("-inf")
        #: the action has been answered without an error code: the credential and the action work, so a burst will
        #: not spend a window's worth of requests on a refusal that stops the run
        self._answered_ok = False
        self.closed = False

    async def acquire(self, priority: float = 0.0) -> float:
        """Wait for this caller's turn; returns the grant time (clock s) to pass to `throttled`. Raises GateClosed
        once `close` was called, also for callers already waiting. Cancellation gives up the turn unused."""
        if self.closed:
            raise GateClosed
        if self._uncontended():
            # nobody waits and there is room: grant here instead of a future, a heap entry and a pump task per
            # request. The room is taken before the limiter's `acquire`, which may yield to the loop (aiolimiter 1.1
            # does even with room in its bucket): another caller must not take it meanwhile.
            self._pending += 1
            self._last_grant = self._clock.now()
            if not self._bursting():
                try:
                    await self._limiter.acquire()
                except BaseException:
                    self.release()
                    raise
            return self._clock.now()
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (-priority, next(self._order), fut))
        if self._pump is None or self._pump.done():
            self._pump = asyncio.create_task(self._run_pump())
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self.release()  # granted, then cancelled before it could use the grant
            fut.cancel()
            raise

    def mark_sent(self) -> Send:
        """A granted call goes on the wire now: it counts in the window from now on (until `answered` says how
        long)."""
        self._pending -= 1
        now = self._clock.now()
        if self._warm_from == math.inf:
            self._warm_from = now + WARM_UP_S
        send = Send(now, now + self.window_s, next(self._sends))
        self._counting[send.order] = send
        heapq.heappush(self._leaving, (send.leaves_at, send.order, send))
        self._room.set()
        return send

    def answered(self, send: Send, rtt_s: float) -> None:
        """The service answered `send` after `rtt_s`: it counts until its second at the service can have ended
        (`_leaves_at`)."""
        send.rtt_s = rtt_s
        self._shortest_rtt_s = min(self._shortest_rtt_s, rtt_s)
        if self._recounted_shortest_s - self._shortest_rtt_s < RECOUNT_S:
            self._recount(send)
            return
        # the shortest round trip fell by more than a trifle since the last recount — at once or a little at a time
        # (the first answers may have come from a busy start): every answered send still counting may have arrived
        # later than thought, so each counts longer
        self._recounted_shortest_s = self._shortest_rtt_s
        for counting in self._counting.values():
            if counting.rtt_s is not None:
                self._recount(counting)

    def _recount(self, send: Send) -> None:
        """Move when an answered `send` stops counting: the service's second and the lag its round trip allows
        against the shortest round trip seen (MIN_LAG_S)."""
        assert send.rtt_s is not None
        lag_s = min(MAX_LAG_S, max(MIN_LAG_S, send.rtt_s - self._shortest_rtt_s))
        leaves_at = send.at + self._service_window_s + lag_s
        if send.at < self._warm_from:  # sent while the shortest round trip was known from few, slow answers
            leaves_at = max(leaves_at, send.at + self.window_s)
        if send.counting and leaves_at != send.leaves_at:
            send.leaves_at = leaves_at
            heapq.heappush(self._leaving, (leaves_at, send.order, send))

    def release(self) -> None:
        """A granted call was not sent (the run stopped, the journal failed): its room goes back to the window."""
        self._pending -= 1
        self._room.set()

    def _bursting(self) -> bool:
        return self.bursts and self._answered_ok and self.rate_per_s >= self.ceiling_per_s

    def _in_window(self, now: float) -> int:
        """Requests that count in the window ending now: those sent in it, and those granted and not yet sent."""
        # oldest first: a later send that would leave sooner (a shorter round trip) counts until the oldest leaves
        while self._leaving and self._leaving[0][0] <= now + EPSILON_S:
            leaves_at, _, send = heapq.heappop(self._leaving)
            if send.counting and leaves_at == send.leaves_at:  # not a stale entry of a send whose time moved
                send.counting = False
                del self._counting[send.order]
        return len(self._counting) + self._pending

    def _next_leaving_s(self) -> float | None:
        """When the next send stops counting (None: none counts)."""
        while self._leaving and not self._leaving[0][2].counting:
            heapq.heappop(self._leaving)
        return self._leaving[0][0] if self._leaving else None

    def _uncontended(self) -> bool:
        """True when a caller can be granted at once with nothing else to honour: no waiter ahead, no pump at work,
        no hold, no cut rate, room in the window and (when spreading) in the limiter's bucket."""
        now = self._clock.now()
        return (
            not self._waiters
            and (self._pump is None or self._pump.done())
            and self.rate_per_s >= self.ceiling_per_s
            and self._hold_until <= now
            and self._in_window(now) < self.capacity
            and (
                self._limiter.has_capacity()
                if not self._bursting()
                else now - self._last_grant >= self._burst_spacing_s
            )
        )

    async def _run_pump(self) -> None:
        while self._waiters:
            if self._bursting():
                await self._wait_for_room()
                gap_s = self._last_grant + self._burst_spacing_s - self._clock.now()
                if gap_s > 0:
                    await self._clock.sleep(gap_s)
                    continue  # the window, the hold and the mode are checked again
                self._grant_next()
                continue
            # room first, then the limiter: a grant that waited for room is still spaced from the one before. Sends
            # leave the window closer together than they were sent when their lags differ (a slower round trip, the
            # end of the warm-up): taken the other way round, the limiter's turn was spent during the wait, and in
            # the skewed run of tests/test_schedule.py two writes went out 19 ms apart where the interval is 51 ms
            await self._wait_for_room()
            await self._limiter.acquire()
            if self.rate_per_s < self.ceiling_per_s:  # a cut rate: the extra spacing it needs
                await self._clock.sleep(1 / (self.rate_per_s * RATE_MARGIN) - self.window_s / self.capacity)
            await self._wait_for_room()  # a recount meanwhile may have made a send count longer
            self._grant_next()

    async def _wait_for_room(self) -> None:
        """Until the hold after a throttle is over and the window has room for one more request."""
        while True:
            now = self._clock.now()
            if self._hold_until > now:
                await self._clock.sleep(self._hold_until - now)
            elif self._in_window(now) < self.capacity:
                return
            elif (leaving_s := self._next_leaving_s()) is not None:  # room once the next send stops counting
                await self._clock.sleep(max(0.0, leaving_s - now))
            else:  # the whole window is granted and not yet sent: room once one goes out or is released
                self._room.clear()
                await self._room.wait()

    def _grant_next(self) -> None:
        """Hand a grant to the waiter first in line (skipping those that gave up)."""
        while self._waiters and self._waiters[0][2].done():
            heapq.heappop(self._waiters)
        if self._waiters:
            self._pending += 1
            self._last_grant = self._clock.now()
            heapq.heappop(self._waiters)[2].set_result(self._last_grant)

    def throttled(self, granted_at: float) -> None:
        """The service answered RequestLimitExceeded to a call this gate granted at `granted_at` (clock s)."""
        if self.bursts:
            # someone else spends part of the quota: bursts would collide with their requests, so spread from now on
            self.bursts = False
            log.info("%s throttled while sending in bursts: spreading from now on", self.name)
        if granted_at > self._last_cut:
            self._last_cut = self._clock.now()
            self._hold_until = self._last_cut + self.HOLD_S
            self.rate_per_s = max(self.MIN_RATE_PER_S, self.rate_per_s * self.DECREASE)
            log.info("%s throttled: rate cut to %.2f/s, holding %.1f s", self.name, self.rate_per_s, self.HOLD_S)

    def succeeded(self, ok: bool = False) -> None:
        """A call this gate admitted was not throttled (`ok`: and was answered without an error code)."""
        self._answered_ok = self._answered_ok or ok
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
    way a request goes out: `send` waits at the action's gate, then calls the API. Gates spread their grants until
    `send_in_bursts` (see the module doc)."""

    def __init__(self, rate_per_s: float, clock: Clock | None = None) -> None:
        self.rate_per_s = rate_per_s
        self.clock = clock or LoopClock()
        self.bursts = False
        self._spread_actions: frozenset[str] = frozenset()
        self._gates: dict[str, RateGate] = {}
        self.closed = False
        #: requests sent and not yet answered (what a stopping run waits for)
        self.in_flight = 0

    def gate(self, action: str) -> RateGate:
        if action not in self._gates:
            bursts = self.bursts and action not in self._spread_actions
            gate = RateGate(self.rate_per_s, self.clock, action, bursts=bursts)
            gate.closed = self.closed
            self._gates[action] = gate
        return self._gates[action]

    def send_in_bursts(self, except_actions: Collection[str] = ()) -> None:
        """From now on every gate but those of `except_actions`, and every such gate made later, sends in bursts."""
        self.bursts = True
        self._spread_actions = frozenset(except_actions)
        for action, gate in self._gates.items():
            gate.bursts = action not in self._spread_actions

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
        try:
            if before_send is not None:
                before_send()
            if durable is not None:
                await durable()
        except BaseException:
            gate.release()
            raise
        send = gate.mark_sent()
        self.in_flight += 1
        try:
            result = await api.send(action, params)
        finally:
            self.in_flight -= 1
        if result.http_status is not None:  # an answer: its round trip bounds how late the service counted it
            gate.answered(send, result.latency_s)
        if classify.is_throttling(result.code or ""):  # RequestLimitExceeded* and its namesakes (classify.THROTTLED)
            gate.throttled(granted_at)
        elif result.http_status == 200:
            gate.succeeded(ok=not result.code)
        return result
