"""The runner's knobs that the command line does not set (`RunnerConfig`), the least time a run can take
(`estimate_run_s`) and which of its gates may send in bursts (`plan_bursts`)."""

from __future__ import annotations

import enum
import math
from collections import Counter
from dataclasses import dataclass

from batchcert.model import Row, group_by_profile
from batchcert.runner.guard import FailureLimit
from batchcert.schedule import RetryPolicy, Window
from batchcert.settings import DEFAULT_PROBE_WAIT_S


@dataclass(frozen=True)
class RunnerConfig:
    """Retry and pacing knobs the command line does not set (those are `RunSettings`). Times in seconds."""

    backoff_initial_s: float = 0.25
    backoff_max_s: float = 8.0
    backoff_jitter_s: float = 0.25
    #: first guess of the send-to-send gap a listener needs between changes; learned as the run goes
    listener_task_s: float = 0.5
    #: read every listener's live state before sending (rows at target end `unchanged`, absent ones `terminal`)
    preflight: bool = True
    #: read every touched listener again after its last change and record `verified` per row
    verify: bool = True
    #: the run-wide retry budget (`schedule.RetryBudget`): retries per second always allowed, the share of recent
    #: successes allowed on top, over a window of this many seconds — 5/s is a quarter of the API's 20/s
    retry_budget_min_per_s: float = 5.0
    retry_budget_percent: float = 0.2
    retry_budget_window_s: float = 10.0
    #: probe each changed domain at the edge after its read-back (`--no-probe`: not), and for how long a domain is
    #: probed again while it serves another certificate (`--probe-wait`; README, "What the edge serves")
    probe: bool = True
    probe_wait_s: float = DEFAULT_PROBE_WAIT_S
    #: changes sent, read back and probed before any other (`--canary`), and the failed changes that stop the run
    #: (`--max-failures`; None: none do) — README, "Canary and failure threshold"
    canary: int = 0
    max_failures: FailureLimit | None = None

    def retry_policy(self, max_attempts: int) -> RetryPolicy:
        return RetryPolicy(max_attempts, self.backoff_initial_s, self.backoff_max_s, self.backoff_jitter_s)


def estimate_run_s(rows: list[Row], rate_per_s: float, task_s: float = RunnerConfig.listener_task_s) -> float:
    """How long sending `rows` takes at best (docs/scheduling.md, "The bound"): the writes at the ceiling, the reads
    (one before and one after per listener, their own budget) at the ceiling, or the longest listener's chain of
    changes one task apart — whichever is longest; for rows of several accounts, the longest account's (each has its
    own ceiling, and they proceed at once)."""
    estimates = [0.0]
    for account_rows in group_by_profile(rows).values():
        per_listener = Counter(row.listener_id for row in account_rows)
        longest = max(per_listener.values(), default=0)
        writes_s, reads_s = len(account_rows) / rate_per_s, 2 * len(per_listener) / rate_per_s
        estimates.append(max(writes_s, reads_s, longest * task_s))
    return max(estimates)


class Bursts(enum.Enum):
    """Which of a run's gates send in bursts (docs/scheduling.md, "The rate gate")."""

    NONE = "none"
    READS = "reads"  # the reads are the longer pole; the changes stay spread for the listeners' chains
    ALL = "all"


#: the reads on a listener's chain (its pre-flight read, a read before a resend, the read-back) that may each wait a
#: window of a bursting read gate
CHAIN_READS = 3


def plan_bursts(
    rows: list[Row], rate_per_s: float, task_s: float = RunnerConfig.listener_task_s, reads_per_listener: int = 2
) -> Bursts:
    """Which gates may send in bursts without making sending `rows` longer. Bursts give a listener one change per
    window of the gate (more windows when a task outlasts one), so the changes burst only when the longest
    listener's chain fits in the windows the writes need anyway; then the reads burst too (a spread pre-flight would
    spread the first window of changes, and every window after keeps its shape). Otherwise the reads alone burst
    when they outlast the longest chain of changes (spread, one task apart) by the few windows its own reads may
    wait."""
    per_listener = Counter(row.listener_id for row in rows)
    if not per_listener:
        return Bursts.NONE
    window = Window.of(rate_per_s)
    longest = max(per_listener.values())
    if longest * math.ceil(task_s / window.seconds) <= math.ceil(len(rows) / window.capacity):
        return Bursts.ALL
    reads_s = math.ceil(reads_per_listener * len(per_listener) / window.capacity) * window.seconds
    if longest * task_s + CHAIN_READS * window.seconds <= reads_s:
        return Bursts.READS
    return Bursts.NONE
