"""The batch run: send every row's change once, listener by listener, under the rate ceiling, and journal it all.

This package decides *what* is sent; `batchcert.schedule` decides *when* (gates, pacer, budget, retry loop, clock).
One lane per listener sends one change at a time and waits out the listener's asynchronous task between changes
while the rate budget goes to other listeners; every call waits at the action's gate with priority = rows left on its
listener, so long listener queues start early. A code whose disposition is STOP_RUN (bad credentials, account state)
stops dispatching at once: rows not yet sent end `not_attempted` with the reason. A `Runner` is one account's (one
credential profile's): a run over several accounts has a runner each, with its own quota, pacing, budget and stop
(`batchcert.workflow.session`). Reconciliation (README,
"Reconciliation"): a listener is read once before its first change, before resending after an ambiguous or busy
answer, and once more after its last change to record `verified` per row; a listener row (Scope `listener`:
ModifyHTTPSListenerAttribute) shares its listener's lane, and its reads include the listener's own certificates.

Modules, each owning one concern:
- `run`: `Runner`, the facade — a run's parts put together, listeners started longest queue first, each listener's
  pipeline (pre-flight read, lane, read-back).
- `config`: `RunnerConfig` (the knobs the command line does not set), `estimate_run_s` (the least time a run takes)
  and `plan_bursts` (which gates of the run may send in bursts).
- `state`: the run's shared state in small typed objects — its stop, its context, how rows are sent as the live state
  showed them (`RowForms`), what earlier sessions left (`EarlierSessions`).
- `preflight`: the certificate pre-flight, each listener's read before its first change, and `plan_rows` (`plan`).
- `lanes`: `ListenerLane`, one listener's queue and turn, and the hand-off of rows waiting aside for a retry.
- `attempt`: one send of a row — the reads it needs first, the journal before it leaves, the pacer.
- `retry`: the retry decision of a row (whether, when, waiting aside) and the `retry_call` that drives its attempts.
- `readback`: reading a listener until a condition holds before a deadline (one loop) — a domain's change waited
  out, the read-back after a listener's last change, an ambiguous answer settled — and the task-time probe.
- `outcomes`: the messages, verdict → outcome, and concluding rows in the journal (`RowEnds`).
- `served`: proving changes where clients see them — each changed domain probed at the edge after its read-back
  (`ServedProofs`).
- `guard`: the canary (`pick_canary`) and the failure threshold that stops a run (`FailureLimit`, `FailureGuard`).
"""

from batchcert.runner.config import RunnerConfig, estimate_run_s
from batchcert.runner.guard import FailureGuard, FailureLimit
from batchcert.runner.lanes import MAX_PARKED_PER_LANE
from batchcert.runner.outcomes import (
    CHANGED_MEANWHILE_MESSAGE,
    OUTCOME_UNKNOWN,
    OUTCOME_UNKNOWN_MESSAGE,
    REREAD_MESSAGE,
    VERIFIED_MESSAGE,
)
from batchcert.runner.preflight import plan_rows
from batchcert.runner.run import Runner
from batchcert.runner.served import probe_targets

__all__ = [
    "CHANGED_MEANWHILE_MESSAGE",
    "MAX_PARKED_PER_LANE",
    "OUTCOME_UNKNOWN",
    "OUTCOME_UNKNOWN_MESSAGE",
    "REREAD_MESSAGE",
    "VERIFIED_MESSAGE",
    "FailureGuard",
    "FailureLimit",
    "Runner",
    "RunnerConfig",
    "estimate_run_s",
    "plan_rows",
    "probe_targets",
]
