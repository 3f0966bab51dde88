"""The batch run (`Runner`): every row's change sent once, listener by listener, under the rate ceiling, and all of it
journalled. Each listener is a pipeline of its own — pre-flight read, sends, read-back — so reads (their own action
budget) overlap with other listeners' changes instead of adding to the wall time; listeners start longest queue
first, at most `MAX_LANES` at a time."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict, deque
from collections.abc import Callable

from batchcert.api.vocabulary import CHANGE_ACTIONS
from batchcert.journal import Journal
from batchcert.live.reader import CertificateIndex, ContentReads, LiveReader
from batchcert.model import SCOPE_LISTENER, Api, Outcome, Row, command_to_rerun
from batchcert.runner.attempt import Attempts
from batchcert.runner.config import Bursts, RunnerConfig, plan_bursts
from batchcert.runner.guard import FailureGuard, pick_canary
from batchcert.runner.lanes import ListenerLane
from batchcert.runner.outcomes import RowEnds
from batchcert.runner.preflight import Preflight, Sendable, needs_read
from batchcert.runner.readback import ListenerReads, TaskProbe
from batchcert.runner.retry import RowRetries
from batchcert.runner.served import ServedProofs
from batchcert.runner.state import EarlierSessions, RowForms, RunContext, RunStop
from batchcert.schedule import ListenerPacer, Quota, RetryBudget, TaskTimer
from batchcert.settings import RunSettings

#: listeners worked on at once. Enough to keep both action budgets busy (each lane waits at a gate most of the
#: time), few enough that a 100,000-listener mapping does not hold 100,000 suspended coroutines in memory.
MAX_LANES = 256


class Runner:
    """Runs one account's rows against one API and one journal, every request through `quota`, on the quota's
    clock. `on_row_done(row, outcome)` is called as each row ends. `settings` give the attempts per row and
    `listener_wait_s`; `certificates` are the account's when the workflow read them before asking (None: `run`
    reads them); `profile` names the account (its rows in a journal that holds several: README, "Many accounts in
    one run"). What the run learns — the pacer's gap, the task timer, the retry budget — is on `pacer`,
    `task_timer` and `budget`; its stop (`stop`) is the account's."""

    def __init__(
        self,
        api: Api,
        quota: Quota,
        journal: Journal,
        config: RunnerConfig,
        on_row_done: Callable[[Row, Outcome], None] | None = None,
        rng: random.Random | None = None,
        max_lanes: int = MAX_LANES,
        settings: RunSettings | None = None,
        certificates: CertificateIndex | None = None,
        profile: str = "",
    ) -> None:
        self.config = config
        self.profile = profile
        self.settings = settings or RunSettings()
        self.pacer = ListenerPacer(config.listener_task_s)
        self.task_timer = TaskTimer(config.listener_task_s)
        self.budget = RetryBudget(
            quota.clock, config.retry_budget_min_per_s, config.retry_budget_percent, config.retry_budget_window_s
        )
        policy = config.retry_policy(self.settings.max_attempts)
        self._stop = RunStop(quota)
        rng = rng or random.Random()
        ctx = RunContext(
            api=api,
            quota=quota,
            clock=quota.clock,
            journal=journal,
            settings=self.settings,
            policy=policy,
            rng=rng,
            stop=self._stop,
            sleeper=self._stop.sleeper,
            on_row_done=on_row_done or (lambda _row, _outcome: None),
        )
        self._ctx = ctx
        self._max_lanes = max_lanes
        reader = LiveReader(api, quota, policy, self._stop.sleeper, rng, journal.record_read)
        forms = RowForms()
        self._earlier = EarlierSessions()
        self._reads = ListenerReads(ctx, reader, forms, self.task_timer)
        self._probe = TaskProbe(ctx, self._reads, forms, self.task_timer, enabled=config.verify)
        self._ends = RowEnds(ctx, forms, self.budget)
        self._contents = ContentReads(reader)
        self._preflight = Preflight(ctx, self._reads, reader, forms, self._earlier, certificates, self._contents)
        self._attempts = Attempts(ctx, self._reads, forms, self._earlier, self.pacer, self._probe)
        self._retries = RowRetries(ctx, self._attempts, self.budget, self.pacer)
        self._guard = FailureGuard(None, 0, self.stop, "")
        self._served = ServedProofs(
            ctx,
            reader,
            self._contents,
            config.probe_wait_s,
            enabled=config.probe and config.verify,
            on_not_served=lambda row, check: self._guard.failed(row, f"the edge still served {check.subject}"),
        )
        #: per listener, every row on it to record at the read-back (this run's and earlier sessions')
        self._verify_rows: dict[str, list[Row]] = defaultdict(list)
        #: listeners with rows an earlier session changed and never read back (`run`'s `verify_listeners`)
        self._unverified: frozenset[str] = frozenset()

    @property
    def stopping(self) -> bool:
        return self._stop.stopping

    @property
    def stop_reason(self) -> str:
        return self._stop.reason

    def stop(self, reason: str) -> None:
        """Stop dispatching: calls in flight finish, rows not yet sent end `not_attempted` with `reason`."""
        self._stop.stop(reason)

    async def run(
        self, rows: list[Row], verify_listeners: frozenset[str] = frozenset(), guard: FailureGuard | None = None
    ) -> None:
        """Process `rows` (valid, primary rows of this account) to an outcome each, and verify `verify_listeners` too
        (listeners with succeeded rows an earlier session never verified). Returns when every row has an outcome.
        Failed changes count against `guard` (shared by the accounts of one run; default: this run's own).

        Listeners start longest queue first, at most `max_lanes` at a time. Rows whose last answer in an earlier
        session may hide an applied change (in flight at a crash, a timeout) are checked against the live state
        before anything is resent."""
        journal = self._ctx.journal
        rerun_command = command_to_rerun(journal.run_dir)
        self._guard = guard or FailureGuard(self.config.max_failures, len(rows), self.stop, rerun_command)
        reads_per_listener = int(self.config.preflight) + int(self.config.verify)
        bursts = plan_bursts(rows, self._ctx.quota.rate_per_s, self.config.listener_task_s, reads_per_listener)
        if bursts is not Bursts.NONE:
            self._ctx.quota.send_in_bursts(except_actions=CHANGE_ACTIONS if bursts is Bursts.READS else ())
            self.task_timer.probe_down = False  # a read-back poll that comes too early would wait a window
        self._earlier.recall_answers(journal, rows)
        if self.config.preflight:
            rows = await self._preflight.refuse_unusable_targets(rows)
        self._earlier.before = journal.previous_states()
        queues: dict[str, deque[Row]] = defaultdict(deque)
        for row in rows:
            queues[row.listener_id].append(row)
        if self._served.enabled:  # rows an earlier session changed that the edge was not seen serving: probe again
            verify_listeners |= journal.unproven_listeners(self.profile)
        self._unverified = verify_listeners
        if self.config.verify:
            for listener_id in verify_listeners:
                queues.setdefault(listener_id, deque())
        outcomes = journal.row_outcomes()
        self._verify_rows = defaultdict(list)
        for row in journal.rows():
            if (
                row.profile == self.profile
                and row.listener_id in queues
                and outcomes.get(row.row_number) is not Outcome.INVALID
            ):
                self._verify_rows[row.listener_id].append(row)
                if row.scope == SCOPE_LISTENER:
                    self._reads.include_own(row.listener_id)
        waiting: deque[str] = deque()

        async def work() -> None:
            while waiting and not self.stopping:
                listener_id = waiting.popleft()
                await self._run_listener(listener_id, queues.pop(listener_id))

        try:
            if self.config.canary:
                await self._run_canary(pick_canary(rows, self.config.canary), queues, rerun_command)
            # longest queue first (a stable sort keeps mapping order among equals): the longest chain bounds the run
            waiting.extend(sorted(queues, key=lambda lid: -len(queues[lid])))
            await asyncio.gather(*(work() for _ in range(min(self._max_lanes, len(waiting)))))
            await self._served.wait()
        finally:
            await self._probe.cancel()
            await self._served.cancel()
            await self._contents.close()
            await self._preflight.close()
        self._ends.settle_unstarted([row for lid in waiting for row in queues[lid]])

    async def _run_listener(self, listener_id: str, queue: deque[Row]) -> None:
        """One listener's pipeline: its pre-flight read, its rows on one lane, its read-back."""
        rows = Sendable(tuple(queue))
        if queue and (self.config.preflight or any(needs_read(row) for row in queue)):
            rows = await self._preflight.read_listener(listener_id, list(queue))
        self._served.prepare(listener_id, list(rows.rows))
        lane = ListenerLane(deque(rows.rows), self._take_row, self._stop, rows.changing)
        await lane.drive()
        # a listener whose rows the names all refused was read but is read back only for an earlier session's rows
        if self.config.verify and not self.stopping and not (rows.refused and listener_id not in self._unverified):
            verify_rows = self._verify_rows[listener_id]
            reading = await self._reads.read_back(listener_id, verify_rows, lane.last_change_sent)
            if not reading.failed:
                found = self._ends.record_verification(verify_rows, reading)
                for row in found.reverted:
                    self._guard.failed(row, "the service reverted it")
                self._served.start(listener_id, list(found.at_target), reading)

    async def _take_row(self, row: Row, lane: ListenerLane) -> None:
        """Work one row of `lane` to its end: not sent when its listener was found denied or closed; after its
        domain's change when it was changing; tried (`RowRetries`) and concluded otherwise."""
        if self._ends.is_scoped_out(row.listener_id):
            self._ctx.on_row_done(row, self._ends.conclude_scoped_out(row))
            return
        if row.row_number in lane.changing:
            await self._reads.wait_domain_idle(row)
            if row.expected is not None:  # the change it waited for may have moved the place: read it again
                self._attempts.reads_first.require(row.row_number)
        tries = await self._retries.run(row, lane)
        outcome = self._ends.conclude(row, tries)
        if outcome is Outcome.TERMINAL:
            self._guard.failed(row, f"terminal: {tries.last.code if tries.last else 'no answer'}")
        self._ctx.on_row_done(row, outcome)

    async def _run_canary(self, canary: list[Row], queues: dict[str, deque[Row]], rerun_command: str) -> None:
        """Send the canary rows — each alone on its listener — read them back and probe them before anything else;
        stop the run unless every one is done and served (README, "Canary and failure threshold")."""
        for row in canary:
            queues[row.listener_id].remove(row)
        await asyncio.gather(*(self._run_listener(row.listener_id, deque([row])) for row in canary))
        await self._served.wait()
        for row in canary:  # a listener the canary emptied is done, unless an earlier session's rows need reading
            if not queues[row.listener_id] and row.listener_id not in self._unverified:
                del queues[row.listener_id]
        failed = self._ctx.journal.canary_failures([row.row_number for row in canary])
        if failed and not self.stopping:
            self.stop(
                f"stopped after its canary of {len(canary)} change(s): {'; '.join(failed)} — nothing else was sent; "
                f"fix the cause, then `{rerun_command}` sends the rest"
            )
