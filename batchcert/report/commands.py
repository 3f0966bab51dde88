"""The exact `batchcert` commands the reports tell the user to run next: failed.csv and rollback.csv aimed where the
run went, and `rerun` for the rows not done.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from batchcert.model import Outcome, command_to_rerun
from batchcert.settings import DEFAULT_ENDPOINT

#: the state a rehearsal left its emulator world in (batchcert.workflow writes it): its rollback runs there
REHEARSAL_WORLD_NAME = "rehearsal-world.json"


def run_command(mapping: Path, facts: dict[str, str], world: Path | None = None) -> str:
    """`batchcert run MAPPING` aimed where the run went (shell-quoted): `--endpoint` when it was not the default;
    for a rehearsal the emulator — `world` when given, else the run's world file, else `--emulator` (a row of a
    rehearsal must not go to the live API)."""
    command = f"batchcert run {shlex.quote(str(mapping))}"
    # a column the run passed through deliberately is still in failed.csv and rollback.csv
    for name in json.loads(facts.get("ignore_columns") or "[]"):
        command += f" --ignore-column {shlex.quote(str(name))}"
    if facts.get("profile") and facts.get("rehearsal") != "true":
        command += f" --profile {shlex.quote(facts['profile'])}"
    if facts.get("rehearsal") == "true":
        where = str(world) if world is not None else facts.get("world", "")
        return command + (f" --world {shlex.quote(where)}" if where else " --emulator")
    endpoint = facts.get("endpoint", "")
    return command + (f" --endpoint {shlex.quote(endpoint)}" if endpoint and endpoint != DEFAULT_ENDPOINT else "")


def failed_run_command(run_dir: Path, facts: dict[str, str], failed: Path | None = None) -> str:
    """`batchcert run RUN_DIR/failed.csv` (or `failed`, the file actually written) aimed where the run went:
    `--endpoint` when it was not the default, the same rehearsal world for a rehearsal."""
    return run_command(failed or run_dir / "failed.csv", facts)


def rollback_run_command(run_dir: Path, facts: dict[str, str], rollback: Path | None = None) -> str:
    """`batchcert run RUN_DIR/rollback.csv` (or `rollback`, the file actually written) aimed where the run went: for
    a rehearsal, the world the rehearsal left (RUN_DIR/rehearsal-world.json) — the state to roll back."""
    left = run_dir / REHEARSAL_WORLD_NAME
    return run_command(rollback or run_dir / "rollback.csv", facts, left if left.is_file() else None)


def next_steps(
    run_dir: Path, counts: dict[str, int], facts: dict[str, str] | None = None, failed: Path | None = None
) -> list[str]:
    """The rows not done, grouped by what to do, each with the exact command (the run directory shell-quoted);
    `failed` is the failed.csv actually written (default RUN_DIR/failed.csv)."""
    rerun = command_to_rerun(run_dir)
    failed = failed or run_dir / "failed.csv"
    steps = []
    if counts[Outcome.RETRYABLE] or counts[Outcome.NOT_ATTEMPTED]:
        n = counts[Outcome.RETRYABLE] + counts[Outcome.NOT_ATTEMPTED]
        steps.append(f"{n} retryable or not attempted: run `{rerun}` (later, or once the cause is fixed)")
    if counts[Outcome.TERMINAL]:
        steps.append(
            f"{counts[Outcome.TERMINAL]} terminal: fix the cause named in `error_message` (the ids, a permission), then "
            f"run `{rerun} --include-terminal`"
        )
    if counts[Outcome.INVALID]:
        steps.append(
            f"{counts[Outcome.INVALID]} invalid (never sent): fix them in {failed.name} (the `reason` column says what), "
            f"then run `{failed_run_command(run_dir, facts or {}, failed)}`"
        )
    return steps
