"""When requests go: the per-action rate gate, listener pacing, the run-wide retry budget, backoff and the one retry
loop, all on one `Clock`. The runner decides *what* to send; this package decides *when* (docs/scheduling.md has the
reasoning and the figures).

- `clock`: the one clock — `Clock`, `LoopClock` (the running event loop's, which aiolimiter reads too) and `Sleeper`
  (sleeps a stopping run cuts short); every wait here moves with it, so tests run on virtual time.
- `gate`: `RateGate` per action (a window of sends the service's count cannot exceed; within it aiolimiter spreads
  grants, or a run no chain binds sends in bursts; priority, hold and adaptive rate on top), `Quota` (a gate per action; `Quota.send` is the one way a request
  goes out) and `GateClosed`. The only module that imports aiolimiter.
- `pacer`: `ListenerPacer` (the send-to-send gap on one listener) and `TaskTimer` (when to read a listener back),
  learned run-wide.
- `retry`: `RetryPolicy`, `RetryBudget` and `retry_call`, the one retry loop (attempts, jittered backoff, budget and
  the run's stop, for writes and reads alike), which asks one `decide` hook for a `Decision` (`RetryVerdict`: stop,
  retry, wait out; the default `backoff_if_retryable`) per answer, waits through a `Waiter`, and answers with `Tries` /
  `GaveUp`.
"""

from __future__ import annotations

from batchcert.schedule.clock import Clock, LoopClock, Sleeper
from batchcert.schedule.gate import (
    BURST_S,
    BURST_SPACING_S,
    MIN_LAG_S,
    RATE_MARGIN,
    RECOUNT_S,
    TIMER_LATENESS_S,
    WARM_UP_S,
    GateClosed,
    Quota,
    RateGate,
    Window,
)
from batchcert.schedule.pacer import GAP_FLOOR_S, POLL_FLOOR_S, ListenerPacer, TaskTimer
from batchcert.schedule.retry import (
    Decision,
    GaveUp,
    RetryBudget,
    RetryPolicy,
    RetryVerdict,
    Tries,
    Waiter,
    backoff_if_retryable,
    is_retryable,
    retry_call,
)

__all__ = [
    "BURST_S",
    "BURST_SPACING_S",
    "GAP_FLOOR_S",
    "MIN_LAG_S",
    "POLL_FLOOR_S",
    "RATE_MARGIN",
    "RECOUNT_S",
    "TIMER_LATENESS_S",
    "WARM_UP_S",
    "Clock",
    "Decision",
    "GateClosed",
    "GaveUp",
    "ListenerPacer",
    "LoopClock",
    "Quota",
    "RateGate",
    "RetryBudget",
    "RetryPolicy",
    "RetryVerdict",
    "Sleeper",
    "TaskTimer",
    "Tries",
    "Waiter",
    "Window",
    "backoff_if_retryable",
    "is_retryable",
    "retry_call",
]
