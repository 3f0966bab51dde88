"""An asyncio event loop on virtual time, for fast, deterministic scheduling tests.

Whenever the loop would wait for its next timer it jumps its clock there instead, so a run that takes minutes of
schedule (rate gates, listener tasks, backoff, latency) finishes in milliseconds — and since aiolimiter, asyncio
timers and `batchcert.schedule.LoopClock` all read `loop.time()`, they all see the same virtual time. Real I/O
still works (it is polled without waiting), but a test on this loop should use an in-process fake API
(`tests/fake_api.py`): a socket's answer takes real time the virtual clock does not wait for.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

#: virtual time the loop starts at (not 0, so code that treats 0 as "never" is not fooled)
START_S = 1000.0
#: how long to wait on real I/O when nothing is scheduled at all before calling it a deadlock
REAL_WAIT_S = 5.0
#: virtual time that passes per loop iteration that does not wait. Real time always moves a little; code that
#: computes a remaining wait of 1e-18 s and re-checks (aiolimiter's leaky bucket, after float rounding) would spin
#: forever on a clock that stands still. A nanosecond per iteration: a million iterations drift 1 ms.
TICK_S = 1e-9


class _FastForwardSelector(selectors.DefaultSelector):
    def __init__(self) -> None:
        super().__init__()
        self.now = START_S

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events: list[tuple[selectors.SelectorKey, int]] = super().select(0)
        if events or timeout == 0:
            self.now += TICK_S
            return events
        if timeout is None:  # nothing scheduled: only real I/O (a thread) can wake the loop
            events = super().select(REAL_WAIT_S)
            if not events:
                raise RuntimeError("virtual-time loop: nothing scheduled and no I/O — the code under test deadlocked")
            return events
        self.now += timeout  # jump to the next timer instead of waiting for it
        return events


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose `time()` is virtual and jumps to the next timer whenever the loop is idle."""

    def __init__(self) -> None:
        self._fast_forward = _FastForwardSelector()
        super().__init__(self._fast_forward)

    def time(self) -> float:
        return float(self._fast_forward.now)

    def spend(self, seconds: float) -> None:
        """Move the clock on by `seconds`, as if the code that just ran had kept the loop busy that long."""
        self._fast_forward.now += seconds


def spend(seconds: float) -> None:
    """Keep the running virtual-time loop busy for `seconds` of its time (a turn that comes late)."""
    loop = asyncio.get_running_loop()
    assert isinstance(loop, VirtualTimeLoop), "spend() needs run_virtual's loop"
    loop.spend(seconds)


def run_virtual(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` to completion on a fresh virtual-time loop, then close the loop cleanly."""
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(main)
    finally:
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
