"""Reading a listener while the run works on it: `ListenerReads.read` (one read, learning the listener's proxy and
stopping the run at a credential or account problem) and `ListenerReads.read_until`, the one loop that reads a
listener until a condition holds or a deadline passes. Its users, each a `Watch`: a row waiting out its domain's
change (`wait_domain_idle`), the read-back after a listener's last change (`read_back`, timed by `TaskTimer`),
settling an answer that may hide an applied change (`settle_doubt`), and `TaskProbe`, which follows one of the run's
first changes to measure the listener task time (docs/scheduling.md, "Read-back")."""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
from typing import Protocol

from batchcert import classify
from batchcert.live.reader import URGENT, LiveReader, Reading
from batchcert.live.state import LISTENER_KEY, LiveDomain, is_at_target
from batchcert.model import NOT_SENT, CallResult, Disposition, Row
from batchcert.runner.outcomes import OUTCOME_UNKNOWN, OUTCOME_UNKNOWN_MESSAGE, VERIFIED_MESSAGE, refusal_if_moved
from batchcert.runner.state import RowForms, RunContext
from batchcert.schedule import POLL_FLOOR_S, Clock, RetryPolicy, TaskTimer

#: runs' first accepted changes followed to measure the listener task time, one after another until one measures it
#: (a follow that starts late sees the task over and measures nothing)
MAX_TASK_PROBES = 3
_IDLE = LiveDomain("", "", (), 0)
#: a watch's last reading before it has read anything (what the reader answers for a read it did not send)
_UNREAD = Reading(None, failed=True, code=NOT_SENT)


def reread_backoff_s(policy: RetryPolicy, retry: int, rng: random.Random, at_least_s: float = 0.0) -> float:
    """The retry backoff before reading a listener again that is not ready yet (at least `at_least_s`)."""
    return max(at_least_s, policy.backoff_s(min(retry, 6), rng))


class Watch(Protocol):
    """What one `read_until` loop looks for in a listener's readings."""

    def holds(self, reading: Reading, asked_at_s: float) -> bool:
        """Whether `reading` (asked for at `asked_at_s`, clock s: before it waited at the gate) ends the loop."""
        ...

    def pause_s(self, reading: Reading) -> float:
        """The wait before the next read, after `reading` did not end the loop (never past the deadline)."""
        ...


class ListenerReads:
    """Reads listeners for the run — with their own certificates too when a listener row is on them — and the one
    deadline loop over such reads."""

    def __init__(self, ctx: RunContext, reader: LiveReader, forms: RowForms, task_timer: TaskTimer) -> None:
        self._ctx = ctx
        self._reader = reader
        self._forms = forms
        self._timer = task_timer
        #: listeners with a listener row: their reads include the listener's own certificates
        self._own: set[str] = set()

    def include_own(self, listener_id: str) -> None:
        """Read `listener_id`'s own certificates too (a listener row is on it)."""
        self._own.add(listener_id)

    async def read(self, listener_id: str, row_number: int | None = None, priority: float = URGENT) -> Reading:
        """Read a listener's domains — and its own certificates when a listener row is on it."""
        own = listener_id in self._own
        reading = await self._reader.read(listener_id, row_number, priority, own=own)
        mine = (reading.domains or {}).get(LISTENER_KEY) if own else None
        if mine is not None and mine.proxy_id:
            self._forms.note_proxy(listener_id, mine.proxy_id)
        if reading.failed and classify.disposition_of(reading.code) is Disposition.STOP_RUN:
            said = f" ({reading.message})" if reading.message else ""
            advice = classify.policy_for(reading.code).advice
            self._ctx.stop.stop(f"the run stopped at {reading.code}{said} — {advice}")
        return reading

    async def read_until(
        self,
        watch: Watch,
        listener_id: str,
        deadline_s: float,
        *,
        row_number: int | None = None,
        priority: float = URGENT,
        read_at_deadline: bool = True,
    ) -> bool:
        """Read `listener_id` until `watch` holds (True), or give up once the run stops or `deadline_s` (clock s)
        has passed (False), pausing `watch.pause_s` between reads but never past the deadline. With
        `read_at_deadline` the first read is always sent and a read after a pause that reached the deadline is sent
        too (its answer may yet hold); without it no read is sent once the run stops or the deadline has passed."""
        clock = self._ctx.clock
        while True:
            if not read_at_deadline and self._past(deadline_s):
                return False
            asked_at_s = clock.now()
            reading = await self.read(listener_id, row_number, priority)
            if watch.holds(reading, asked_at_s):
                return True
            if read_at_deadline and self._past(deadline_s):
                return False
            pause_s = watch.pause_s(reading)
            await self._ctx.sleeper.sleep(min(pause_s, max(0.0, deadline_s - clock.now())))

    def _past(self, deadline_s: float) -> bool:
        return self._ctx.stop.stopping or self._ctx.clock.now() >= deadline_s

    def _deadline_s(self) -> float:
        """The deadline of a wait that starts now: `listener_wait_s` from now (clock s)."""
        return self._ctx.clock.now() + self._ctx.settings.listener_wait_s

    async def wait_domain_idle(self, row: Row) -> None:
        """A row whose domain is changing waits (re-reading with backoff) until it runs, up to `listener_wait_s`."""
        watch = _DomainIdle(row.domain.lower(), self._ctx.policy, self._ctx.rng)
        deadline_s = self._deadline_s()
        await self.read_until(watch, row.listener_id, deadline_s, row_number=row.row_number, read_at_deadline=False)

    async def read_back(self, listener_id: str, rows: list[Row], changed_at: float | None) -> Reading:
        """Read the listener again once the domains of `rows` are idle (DomainStatus 0: a change still running may
        yet fail and be reverted), and return the reading to record. After this session's last change on it (sent
        at `changed_at`, clock s) the first read waits for the task as the run has learned it (`TaskTimer`), and a
        read-back that saw the task end teaches the timer; re-reads while a domain is changing, up to
        `listener_wait_s` (a domain still changing then is recorded `pending`)."""
        clock, stop = self._ctx.clock, self._ctx.stop
        while changed_at is not None and not stop.stopping:
            # in short steps: the estimate may come down meanwhile (other listeners' read-backs)
            wait_s = changed_at + self._timer.estimate_s - clock.now()
            if wait_s <= 0:
                break
            await self._ctx.sleeper.sleep(min(wait_s, POLL_FLOOR_S))
        watch = _TaskOver(rows, changed_at, self._timer, self._ctx.policy, self._ctx.rng)
        await self.read_until(watch, listener_id, self._deadline_s(), priority=0)
        reading = watch.last
        if not reading.failed and changed_at is not None and not watch.changing:
            self._timer.observed(watch.changing_s, reading.sent_at_s - changed_at)
        return reading

    async def settle_doubt(self, row: Row, settle_from: float) -> CallResult | None:
        """After an answer that may hide an applied change: read the listener until it proves either way. Returns a
        verified success when it shows the target; None (send) when a read sent from `settle_from` on (the answer,
        plus the request timeout when the request may still be on its way) shows the domain idle without it; an
        OUTCOME_UNKNOWN result — not to be resent in this run — when reads keep failing or the domain keeps changing
        through `listener_wait_s`. Never resends blind."""
        watch = _DoubtSettled(row, self._forms, settle_from, self._ctx)
        if await self.read_until(watch, row.listener_id, self._deadline_s(), row_number=row.row_number):
            return watch.found
        return watch.unknown()


class _DomainIdle:
    """Holds when the row's domain is idle, absent or unread; re-reads after the retry backoff."""

    def __init__(self, domain: str, policy: RetryPolicy, rng: random.Random) -> None:
        self._domain = domain
        self._policy = policy
        self._rng = rng
        self._retry = 0

    def holds(self, reading: Reading, asked_at_s: float) -> bool:
        live = (reading.domains or {}).get(self._domain)
        return reading.failed or live is None or live.status == 0

    def pause_s(self, reading: Reading) -> float:
        self._retry += 1
        return reread_backoff_s(self._policy, self._retry, self._rng)


class _TaskOver:
    """Holds when no domain of `rows` is changing (or the read failed); while one is, re-reads `TaskTimer.poll_s`
    apart — short polls while the task runs (the read quota is idle at a listener's end) — never longer apart than
    the retry backoff. Keeps the last reading, and when the last read that saw the task running was sent."""

    def __init__(
        self, rows: list[Row], changed_at: float | None, timer: TaskTimer, policy: RetryPolicy, rng: random.Random
    ) -> None:
        self._rows = rows
        self._changed_at = changed_at
        self._timer = timer
        self._policy = policy
        self._rng = rng
        self.last = _UNREAD
        self.changing = False
        self.reads_changing = 0
        #: the last read that saw a domain changing, s after the change (None: none did)
        self.changing_s: float | None = None

    def holds(self, reading: Reading, asked_at_s: float) -> bool:
        self.last = reading
        domains = reading.domains or {}
        self.changing = any(domains.get(r.domain.lower(), _IDLE).status != 0 for r in self._rows)
        return reading.failed or not self.changing

    def pause_s(self, reading: Reading) -> float:
        self.reads_changing += 1
        if self._changed_at is not None:
            self.changing_s = reading.sent_at_s - self._changed_at
        backoff_s = reread_backoff_s(self._policy, self.reads_changing, self._rng)
        return min(self._timer.poll_s(self.reads_changing), backoff_s)


class _DoubtSettled:
    """Holds when a read proves whether an ambiguous answer's change was applied: the target is live (`found`: a
    verified success), a compare-and-swap row's domain moved (`found`: the precondition failure), or the domain is
    idle without the target in a read sent from `settle_from` on, or gone (`found` None: send)."""

    def __init__(self, row: Row, forms: RowForms, settle_from: float, ctx: RunContext) -> None:
        self._row = row
        self._forms = forms
        self._settle_from = settle_from
        self._ctx = ctx
        self.found: CallResult | None = None
        self.last = _UNREAD
        self._settled = False
        self._idle_early = False
        self._retry = 0

    def holds(self, reading: Reading, asked_at_s: float) -> bool:
        self.last = reading
        live = (reading.domains or {}).get(self._row.domain.lower())
        target = self._forms.target_of(self._row)
        if live is not None and is_at_target(target, live):
            self.found = CallResult(code=None, message=VERIFIED_MESSAGE, request_id=reading.request_id)
            return True
        self._settled = asked_at_s >= self._settle_from
        self.found = refusal_if_moved(self._row, target, live, reading.request_id) if self._settled else None
        if self.found is not None:
            return True
        if not reading.failed and (live is None or (live.status == 0 and self._settled)):
            return True  # proven not applied (or the domain is gone: the answer will say so)
        self._idle_early = live is not None and live.status == 0
        return False

    def pause_s(self, reading: Reading) -> float:
        now_s = self._ctx.clock.now()
        if self._idle_early:  # idle, read too early: only time settles it, not a backoff
            return max(0.0, self._settle_from - now_s)
        self._retry += 1
        until_settled_s = self._settle_from - now_s if not reading.failed and not self._settled else 0.0
        return reread_backoff_s(self._ctx.policy, self._retry, self._ctx.rng, at_least_s=until_settled_s)

    def unknown(self) -> CallResult:
        """The result when no read settled it before the deadline (or the run stopped): outcome unknown."""
        why = f"reads failed ({self.last.code})" if self.last.failed else "the domain was still changing"
        return CallResult(
            code=OUTCOME_UNKNOWN,
            message=f"{OUTCOME_UNKNOWN_MESSAGE}; {why} — not resent in this run",
            request_id=self.last.request_id,
        )


class TaskProbe:
    """After one of the run's first accepted changes, follow its domain until its task has ended, so the read-back
    after each listener's last change waits for a measured task time (`TaskTimer`) — learned at the start, not from
    the read-backs alone: when every listener gets its last change in the run's final second, those read-backs all
    go before anything was learned. One follow at a time, `MAX_TASK_PROBES` in a run, only when the run verifies."""

    def __init__(
        self, ctx: RunContext, reads: ListenerReads, forms: RowForms, task_timer: TaskTimer, enabled: bool
    ) -> None:
        self._ctx = ctx
        self._reads = reads
        self._forms = forms
        self._timer = task_timer
        self._enabled = enabled
        self._task: asyncio.Task[None] | None = None
        self._probes = 0

    def start_after(self, row: Row, sent_at: float) -> None:
        """`row`'s change, sent at `sent_at` (clock s), was accepted: follow it when no probe runs and none has
        measured the task time yet."""
        if (
            not self._enabled
            or self._timer.measured
            or self._probes >= MAX_TASK_PROBES
            or (self._task is not None and not self._task.done())
        ):
            return
        self._probes += 1
        self._task = asyncio.get_running_loop().create_task(self._follow(row, sent_at))

    async def _follow(self, row: Row, sent_at: float) -> None:
        """Read `row`'s listener (at the lowest priority: reads that gate changes go first) until its domain is idle
        again, and tell the task timer how long the task ran."""
        domain = (self._forms.spelled(row.row_number) or row.domain).lower()
        clock = self._ctx.clock
        # the first read at once: a task that is already over (a service whose tasks take no time) is then measured
        # as the round trip it is, not as the poll floor
        await self._ctx.sleeper.sleep(max(0.0, sent_at - clock.now()))
        watch = _TaskFollowed(domain, sent_at, self._timer, clock)
        await self._reads.read_until(watch, row.listener_id, math.inf, priority=0, read_at_deadline=False)
        if watch.idle_s is not None:
            self._timer.observed(watch.changing_s, watch.idle_s)

    async def cancel(self) -> None:
        """Stop the follow still running (the run is over)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class _TaskFollowed:
    """Holds when the followed domain is idle again (`idle_s` after the change) — or cannot be followed: the read
    failed, the domain is gone, or the read was not sent; re-reads `TaskTimer.follow_s` apart."""

    def __init__(self, domain: str, sent_at: float, timer: TaskTimer, clock: Clock) -> None:
        self._domain = domain
        self._sent_at = sent_at
        self._timer = timer
        self._clock = clock
        #: the last read that saw the task running, s after the change (None: none did)
        self.changing_s: float | None = None
        #: the read that saw the domain idle again, s after the change (None: it was not seen idle)
        self.idle_s: float | None = None

    def holds(self, reading: Reading, asked_at_s: float) -> bool:
        live = (reading.domains or {}).get(self._domain)
        if reading.failed or live is None or reading.sent_at_s <= 0:
            return True
        if live.status == 0:
            self.idle_s = reading.sent_at_s - self._sent_at
            return True
        self.changing_s = reading.sent_at_s - self._sent_at
        return False

    def pause_s(self, reading: Reading) -> float:
        next_at = reading.sent_at_s + self._timer.follow_s(reading.sent_at_s - self._sent_at)
        return max(0.0, next_at - self._clock.now())
