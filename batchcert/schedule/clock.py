"""The scheduler's one clock: `Clock` (monotonic time and a sleep on the same time line), `LoopClock` (the running
event loop's clock) and `Sleeper` (sleeps a stopping run cuts short).

**One clock.** aiolimiter reads `loop.time()`, so the scheduler's `Clock` is the running loop's clock too; a test
fakes time by running the loop on virtual time (`tests/virtual_time.py`), and every wait in `batchcert.schedule` —
gate, pacer, backoff, polling — moves with it.
"""

from __future__ import annotations

import asyncio
from typing import Protocol


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
