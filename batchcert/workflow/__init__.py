"""One core function per command, composing runner, inventory, report and emulator (siblings that must not import
each other).

This layer is an addition to the project's layering (README, "Development"), made for a reason: `run --emulator`
needs the emulator and the runner in one event loop, and every command ends by writing reports from the journal;
without a layer above the siblings the CLI would have to orchestrate them itself and stop being thin. It owns no
policy about rows (that is in `runner`, `inventory`, `mapping`, `live`, `classify`); it resolves the settings once
(`settings.resolve_settings`), chooses the targets once (`target.choose_targets`: one per account the rows name, live
or rehearsal), opens, wires, runs and closes.

Modules:
- `requests`: what the operator asked for, one frozen request per command (`RunRequest`, `PlanRequest`, …).
- `results`: what a command gives back to the CLI (`Preview`, `RunSummary`, `PlanResult`, `InventoryResult`) and
  the exit code each maps to.
- `target`: where a command sends, per account (live endpoint and the profile's credentials, or a rehearsal's
  emulator), which rows' profiles do not exist, and a client, quota and live reader aimed at one target.
- `rehearsal`: the emulator worlds a rehearsal sends to, one per account — built, loaded, continued by a rerun,
  saved.
- `run_dir`: the run directory's default place, the temporaries a killed write leaves, a copy's rerun warning.
- `certificates`: each account's certificates read before the prompt, and the warnings about the rows' targets.
- `run`: `run` and `rerun` — the preview, the confirmation, the claims, the journal created or reopened.
- `session`: one sending session into an open journal — a runner per account driven at once, the session closed,
  the reports.
- `progress`: the rows of a session counted as they settle, told to the display at display speed.
- `signals`: the stop signals during a run — stop, then abandon while sending; held while the reports are written.
- `commands`: the commands that send nothing — validate, plan, inventory, report, emulator.
"""

from batchcert.workflow.commands import (
    emulator_credentials,
    load_world,
    plan_mapping,
    probe_places,
    serve_emulator,
    take_inventory,
    validate_mapping,
    world_from_mapping,
    write_run_reports,
)
from batchcert.workflow.requests import InventoryRequest, PlanRequest, ProbeRequest, RerunRequest, RunRequest
from batchcert.workflow.results import InventoryResult, PlanResult, Preview, ProbeResult, RunSummary
from batchcert.workflow.run import Declined, rerun_run, run_mapping

__all__ = [
    "Declined",
    "InventoryRequest",
    "InventoryResult",
    "PlanRequest",
    "PlanResult",
    "Preview",
    "ProbeRequest",
    "ProbeResult",
    "RerunRequest",
    "RunRequest",
    "RunSummary",
    "emulator_credentials",
    "load_world",
    "plan_mapping",
    "probe_places",
    "rerun_run",
    "run_mapping",
    "serve_emulator",
    "take_inventory",
    "validate_mapping",
    "world_from_mapping",
    "write_run_reports",
]
