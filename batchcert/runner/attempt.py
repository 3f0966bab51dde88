"""One attempt at a row's change (`Attempts.send`): the reads it needs first (after an answer that may hide an
applied change, after a busy answer, for a compare-and-swap row whose domain was changing), the lane's turn and the
pacer's gap, the journal before the request leaves, the gate priority, and what the answer teaches the pacer."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from batchcert import classify
from batchcert.journal import Attempt
from batchcert.live.reader import Reading
from batchcert.live.state import is_at_target
from batchcert.model import CallResult, Row
from batchcert.runner.lanes import ListenerLane
from batchcert.runner.outcomes import CHANGED_MEANWHILE_MESSAGE, refusal_if_moved
from batchcert.runner.readback import ListenerReads, TaskProbe
from batchcert.runner.state import EarlierSessions, RowForms, RunContext
from batchcert.schedule import GateClosed, ListenerPacer

#: a listener busy with a task (ours or someone else's): the pacer learns the task time from it, and a row it refused
#: keeps its lane (`retry.RetryDecision`: it refuses every row alike)
LISTENER_HAS_TASK = "FailedOperation.ListenerHasTask"


class ReadsBeforeSend:
    """Rows to read before they are sent (again): a row a busy listener or domain refused (someone else may have
    changed it meanwhile, README "Two operators") — its read starts with the busy answer, while the row waits — and
    a compare-and-swap row whose domain's change it waited out."""

    def __init__(self) -> None:
        self._rows: set[int] = set()
        self._started: dict[int, asyncio.Task[Reading]] = {}

    def require(self, row_number: int) -> None:
        self._rows.add(row_number)

    def required(self, row_number: int) -> bool:
        return row_number in self._rows

    def done(self, row_number: int) -> None:
        """The row was read and may be sent."""
        self._rows.discard(row_number)

    def start(self, row_number: int, read: Coroutine[Any, Any, Reading]) -> None:
        """Require a read of the row and start it now (`read`), replacing one started earlier."""
        self._rows.add(row_number)
        self.forget(row_number)
        self._started[row_number] = asyncio.get_running_loop().create_task(read)

    def take(self, row_number: int) -> asyncio.Task[Reading] | None:
        """The read started for the row, if any (it is the caller's now)."""
        return self._started.pop(row_number, None)

    def forget(self, row_number: int) -> None:
        """Drop a read started after a busy answer that no resend used (the row ended, or was refused again)."""
        taken = self._started.pop(row_number, None)
        if taken is not None and not taken.done():
            taken.cancel()


class Attempts:
    """Sends one attempt of a row at a time, on its lane's turn."""

    def __init__(
        self,
        ctx: RunContext,
        reads: ListenerReads,
        forms: RowForms,
        earlier: EarlierSessions,
        pacer: ListenerPacer,
        probe: TaskProbe,
    ) -> None:
        self._ctx = ctx
        self._reads = reads
        self._forms = forms
        self._earlier = earlier
        self._pacer = pacer
        self._probe = probe
        self.reads_first = ReadsBeforeSend()

    async def send(
        self, row: Row, lane: ListenerLane, previous: CallResult | None, not_before_s: float = 0.0
    ) -> CallResult | None:
        """One attempt: journal it just before it leaves, send, journal the answer, teach the pacer.
        Returns None when the run stopped before it was sent. After an answer that may hide an applied change
        (timeout, reset, InternalError, 5xx — or such an answer in an earlier session) the live state is read first:
        when it already shows the target, nothing is resent and a verified success is returned instead. Nothing is
        sent before `not_before_s` (clock s: a backoff the read-back did not wait out)."""
        ctx = self._ctx
        clock, journal = ctx.clock, ctx.journal
        earlier_ambiguous = previous is None and self._earlier.in_doubt(row.row_number)
        if earlier_ambiguous or (previous is not None and classify.policy_for(previous.code or "").maybe_applied):
            settle_from = clock.now()  # an earlier session's answer: long enough ago
            if previous is not None:
                # a request that timed out may still reach the service for up to its timeout: a read showing the
                # old state proves nothing until then
                late_s = ctx.settings.timeout_s if classify.may_still_arrive(previous.code or "") else 0.0
                settle_from = previous.sent_at_s + previous.latency_s + late_s
            found = await self._reads.settle_doubt(row, settle_from)
            if found is not None:
                return found
            await ctx.sleeper.sleep(max(0.0, not_before_s - clock.now()))
        elif self.reads_first.required(row.row_number):
            found = await self._read_before_send(row)
            if found is not None:
                return found
        handle: list[Attempt] = []

        def journal_start() -> None:
            if ctx.stop.stopping:
                raise GateClosed
            handle.append(journal.begin_attempt(row.row_number, row.action))

        # the lane's turn, from the pacer's wait to the answer: one change of ours in flight per listener.
        # Gate priority: rows left on the lane; a retry goes half a step ahead of first attempts of equally long
        # lanes, or rows hit by a transient fault would queue behind every fresh row and become the run's tail —
        # and so does any row of a lane with rows waiting aside, since their retries queue for its turn
        async with lane.turn:
            await ctx.sleeper.sleep(lane.free_in_s(self._pacer.gap_s, clock.now()))
            try:
                result = await ctx.quota.send(
                    ctx.api,
                    row.action,
                    self._forms.target_of(row).request_params(),
                    priority=len(lane.rows) + 1 + (0.5 if previous is not None or lane.parked else 0.0),
                    before_send=journal_start,
                    durable=journal.durable,
                )
            except GateClosed:
                return None
            journal.finish_attempt(handle[0], result)
            last_sent = lane.last_change_sent
            if (result.code or "") in classify.WAITED_OUT:
                # busy: with our previous change — or with someone else's (another operator, another machine),
                # which no timing can tell apart. Read the row before sending it again (README, "Two operators"):
                # the read starts now, while the row waits for the listener, so it costs the resend no time
                self.reads_first.start(row.row_number, self._reads.read(row.listener_id, row.row_number))
            if result.ok or classify.policy_for(result.code or "").maybe_applied:
                lane.last_change_sent = result.sent_at_s
            if result.ok:
                self._probe.start_after(row, result.sent_at_s)
        if last_sent is not None and result.ok:
            self._pacer.accepted(result.sent_at_s - last_sent)
        elif last_sent is not None and result.code == LISTENER_HAS_TASK:
            self._pacer.refused(result.sent_at_s - last_sent)
        return result

    async def _read_before_send(self, row: Row) -> CallResult | None:
        """Read the row's domain before sending it again after a busy answer (or a compare-and-swap row after its
        domain's change was waited out): None (send) when it is neither at its target nor moved away from the
        expected state; a result that ends the row otherwise — at its target already (`by_others`: unchanged, someone
        else's change), moved (the precondition failure), or unread or still changing for a compare-and-swap row
        (retryable, not sent: never sent on a guess). The read taken right after the busy answer is used when there is
        one (it overlapped the wait before the resend)."""
        taken = self.reads_first.take(row.row_number)
        reading = await taken if taken is not None else await self._reads.read(row.listener_id, row.row_number)
        live = (reading.domains or {}).get(row.domain.lower())
        target = self._forms.target_of(row)
        if live is not None and is_at_target(target, live):
            return CallResult(
                code=None, message=CHANGED_MEANWHILE_MESSAGE, request_id=reading.request_id, by_others=True
            )
        moved = refusal_if_moved(row, target, live, reading.request_id)
        if moved is not None:
            return moved
        if reading.failed or (row.expected is not None and (live is None or live.status != 0)):
            # unread, or a compare-and-swap row whose place is still changing: not sent on a guess (a code that
            # says nothing was applied, so the next attempt reads again rather than settling a doubt)
            why = f"the read failed ({reading.code})" if reading.failed else "the domain is still changing"
            return CallResult(
                code=classify.NOT_SENT_UNREAD,
                message=f"could not check the domain before sending it: {why} — not sent",
                request_id=reading.request_id,
                sent=False,
            )
        if live is not None:  # the state before our change, when no earlier read recorded one (rollback.csv)
            self._ctx.journal.record_previous([(row.row_number, live.certificate_id, live.client_ids)])
        self.reads_first.done(row.row_number)
        return None
