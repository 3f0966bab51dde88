"""One lane per listener (`ListenerLane`): it takes that listener's rows in mapping order and sends one change at a
time (the lane's turn), so never two of our changes are in flight on one listener. A row that must wait before its
retry (a backoff, or reads until an ambiguous answer is settled) hands the rest of its lane on to a new task and
waits aside, so one fault does not stall the listener's whole chain (docs/scheduling.md, "Listener pacing")."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

from batchcert.model import Row
from batchcert.runner.state import RunStop

#: rows of one lane waiting aside for their retry while the lane goes on: enough that the faults of a flaky network
#: never stall a long chain, few enough that an outage on a listener is not a burst of first attempts
MAX_PARKED_PER_LANE = 8


class ListenerLane:
    """One listener's queue of rows (those whose domain was `changing` at the pre-flight read wait for it first),
    the send time (clock s) of the last change that may have applied, and the turn each change holds from the
    pacer's wait to its answer. `take_row(row, lane)` works one row to its end. `dispatcher` names the task that
    takes the next row; rows that handed the lane on while they wait for a retry are `parked` and their successors
    in `handoffs`."""

    def __init__(
        self,
        rows: deque[Row],
        take_row: Callable[[Row, ListenerLane], Awaitable[None]],
        stop: RunStop,
        changing: frozenset[int] = frozenset(),
    ) -> None:
        self.rows = rows
        self.changing = changing
        self.last_change_sent: float | None = None
        self.turn = asyncio.Lock()
        self.dispatcher: object | None = None
        self.parked = 0
        self.handoffs: set[asyncio.Task[None]] = set()
        self._take_row = take_row
        self._stop = stop

    def free_in_s(self, gap_s: float, now_s: float) -> float:
        """Seconds until `gap_s` (the pacer's) since the lane's last change has passed (0 when it has)."""
        if self.last_change_sent is None:
            return 0.0
        return max(0.0, self.last_change_sent + gap_s - now_s)

    async def drive(self) -> None:
        """Work the lane's rows to their ends, including those of every task the lane was handed on to; the first
        failure of any of them is raised (and the lane's other tasks are stopped)."""
        try:
            await self._work()
            while self.handoffs:  # a successor may hand on again: wait until none is left, failing at the first
                done, _ = await asyncio.wait(set(self.handoffs), return_when=asyncio.FIRST_EXCEPTION)
                for task in done:
                    self.handoffs.discard(task)
                    task.result()
        finally:
            for task in self.handoffs:  # only after a failure (the run is over): stop the lane's other tasks
                if task.done() and not task.cancelled():
                    task.exception()  # retrieved: the first failure is the one raised
                task.cancel()

    async def _work(self, me: object | None = None) -> None:
        """Take the lane's rows one after another while this task is the lane's dispatcher; a row that parks
        (`hand_off`) makes a new task the dispatcher, and this one ends with that row."""
        me = me or object()
        self.dispatcher = me
        while self.rows and self.dispatcher is me:
            await self._take_row(self.rows.popleft(), self)

    def hand_off(self) -> bool:
        """Let a row wait for its retry aside: a new task takes the lane's next rows (True), unless none is left,
        the run stops, or `MAX_PARKED_PER_LANE` rows already wait (False: the row keeps the lane, as a lane with
        one row always does). A row that parked calls `unpark` when it ends."""
        if not self.rows or self._stop.stopping or self.parked >= MAX_PARKED_PER_LANE:
            return False
        self.parked += 1
        successor = object()
        self.dispatcher = successor
        task = asyncio.get_running_loop().create_task(self._work(successor))
        self.handoffs.add(task)
        task.add_done_callback(_forget_if_finished_well(self.handoffs))
        return True

    def unpark(self) -> None:
        """A row that waited aside has ended."""
        self.parked -= 1


def _forget_if_finished_well(tasks: set[asyncio.Task[None]]) -> Callable[[asyncio.Task[None]], None]:
    """A done callback that drops a task from `tasks` once it has finished without an error, so a long lane holds
    only the tasks still running and the failures still to be raised."""

    def forget(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is None:
            tasks.discard(task)

    return forget
