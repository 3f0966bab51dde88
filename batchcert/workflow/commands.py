"""The commands that send no change: `validate` (the mapping read), `plan` (what `run` would do, from one read per
listener), `inventory` (the estate read, and the rotation mapping), `report` (every report rewritten from a journal)
and `emulator` (serving a world until interrupted)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from batchcert.inventory import Estate, StepFn, not_searched_advice, parse_replacement, plan_rotation, read_estate
from batchcert.journal import read_journal
from batchcert.live.state import PlanLine, count_plan_actions, plan_every_row
from batchcert.mapping import is_inventory, read_inventory_targets, read_mapping
from batchcert.model import SCOPE_LISTENER, Mapping, MappingSource, ProbeTarget, Row, ServedCheck
from batchcert.report import Reports, write_inventory, write_plan, write_probe, write_reports, write_rotation
from batchcert.runner import plan_rows, probe_targets
from batchcert.schedule import Sleeper
from batchcert.settings import resolve_settings
from batchcert.workflow.rehearsal import estate_world
from batchcert.workflow.requests import InventoryRequest, PlanRequest, ProbeRequest
from batchcert.workflow.results import InventoryResult, PlanResult, ProbeResult
from batchcert.workflow.run_dir import default_run_dir, remove_temps_of_killed_writes
from batchcert.workflow.target import Target, Targets, build_reader, choose_mapping_targets, choose_target, connect

if TYPE_CHECKING:
    from batchcert import emulator


def validate_mapping(source: MappingSource) -> Mapping:
    """Read and validate a mapping; raises MappingError for file-level problems."""
    return read_mapping(
        source.path,
        source.sheet,
        encoding=source.encoding,
        include_hidden_rows=source.include_hidden_rows,
        ignore_columns=source.ignore_columns,
    )


def plan_mapping(request: PlanRequest) -> PlanResult:
    """Read every distinct listener of the mapping once (under the rate ceiling) and say what `run` would do with
    each row; write plan.csv. Sends no change. Raises BatchcertError for run-level problems."""
    mapping = validate_mapping(request.source)
    targets, mapping = choose_mapping_targets(request, mapping)
    lines = plan_every_row(mapping, asyncio.run(_plan_accounts(mapping.valid_rows(), targets)))
    out_dir = request.out or default_run_dir(
        request.reports_root, request.mapping.with_name(request.mapping.stem + "-plan")
    )
    path = write_plan(out_dir, lines)
    return PlanResult(lines, count_plan_actions(lines), path, mapping.notes, len(mapping.duplicate_of))


async def _plan_accounts(rows: list[Row], targets: Targets) -> list[PlanLine]:
    """Every account's rows planned against its own state, the accounts read at once."""
    planned = await asyncio.gather(
        *(_plan([r for r in rows if r.profile == p], target) for p, target in targets.by_profile.items())
    )
    return [line for lines in planned for line in lines]


async def _plan(rows: list[Row], target: Target) -> list[PlanLine]:
    async with connect(target) as (client, quota):
        reader = build_reader(client, quota, target)
        certificates = await reader.certificates()
        return await plan_rows(reader, rows, certificates, target.settings.min_validity_days)


def take_inventory(request: InventoryRequest, on_step: StepFn | None = None) -> InventoryResult:
    """Read every connection, HTTPS listener, domain and certificate (under the rate ceiling, with retries), write
    inventory.csv/xlsx, and with `replace` the mapping that moves every use of OLD to NEW. Raises BatchcertError
    (exit 2) when the estate cannot be read whole, or a NEW does not exist or has the wrong type — before writing
    anything."""
    replacements = [parse_replacement(text) for text in request.replace]
    rehearsal = request.rehearsal or request.world is not None
    target = choose_target(
        resolve_settings(request.settings, rehearsal), request.profile, lambda: estate_world(request.world)
    )

    async def read() -> Estate:
        async with connect(target) as (client, quota):
            return await read_estate(build_reader(client, quota, target), on_step)

    estate = asyncio.run(read())
    rotation = plan_rotation(estate, replacements) if replacements else None
    out_dir = request.out or request.reports_root / f"{datetime.now(tz=UTC).strftime('%Y%m%dT%H%M%SZ')}-inventory"
    files: tuple[Path, ...] = write_inventory(
        out_dir, estate.places, estate.certificates, time.time(), estate.not_searched
    )
    if rotation is not None:
        files += (write_rotation(out_dir, rotation.lines),)
    listeners = sum(1 for p in estate.places if p.scope == SCOPE_LISTENER)
    return InventoryResult(
        listeners,
        len(estate.places) - listeners,
        len(estate.certificates),
        rotation,
        files,
        estate.not_searched,
        not_searched_advice(estate.not_searched),
    )


def probe_places(request: ProbeRequest) -> ProbeResult:
    """What the edge serves now for every domain of a mapping, a run directory (its journal's rows) or an
    inventory.csv, against the certificate each should serve; write probe.csv. Sends no change. Raises BatchcertError
    for an unreadable source, missing credentials or settings (exit 2)."""
    source = request.source
    rehearsal = request.rehearsal or request.world is not None
    rows: list[Row] = []
    inventory = not source.is_dir() and is_inventory(source)
    if source.is_dir():
        with read_journal(source) as (journal, _, _):
            rows = journal.rows()
    elif not inventory:
        rows = validate_mapping(MappingSource(source)).valid_rows()
    if inventory:
        targets = read_inventory_targets(source)
    else:
        targets = [ProbeTarget(r.row_number, r.listener_id, r.domain, r.certificate_id) for r in rows if r.domain]
    target = choose_target(
        resolve_settings(request.settings, rehearsal), request.profile, lambda: estate_world(request.world)
    )

    async def probe() -> list[ServedCheck]:
        async with connect(target) as (client, quota):
            reader = build_reader(client, quota, target)
            return await probe_targets(reader, targets, request.probe_wait_s, Sleeper(), quota.clock)

    checks = asyncio.run(probe())
    out_dir = request.out or default_run_dir(request.reports_root, source.with_name(source.stem + "-probe"))
    path = write_probe(out_dir, zip(targets, checks, strict=True))
    counts = dict(Counter(check.served for check in checks))
    return ProbeResult(counts, len([r for r in rows if not r.domain]), path)


def write_run_reports(run_dir: Path, out: Path | None = None) -> Reports:
    """Regenerate every report of a run directory from its journal, into `out` (default: the run directory). The
    journal is only read, from a private copy, without the lock, so it works beside a live run and on a copy or a
    read-only directory (`out` elsewhere); what a dead process left open is settled in that copy. What it writes
    are the report files and their manifest (never over a file the user changed), and it removes the temporary
    files a killed write left. Raises JournalError when the journal is missing or damaged (nothing is changed),
    ReportError when `out` cannot be written."""
    with read_journal(run_dir) as (journal, inspection, live):
        if not live:
            remove_temps_of_killed_writes(run_dir)
        unproven = journal.facts().get("journal_unproven", "")
        notes = (
            inspection.warnings
            + ((unproven,) if unproven else ())
            + (("a batchcert process is working on this run now: rows in flight",) if live else ())
        )
        return write_reports(journal, out or run_dir, notes)


def load_world(path: Path) -> emulator.World:
    """The world in a world file (see batchcert.emulator)."""
    from batchcert import emulator

    return emulator.load_world(path)


def world_from_mapping(source: MappingSource) -> emulator.World:
    """A world in which every valid row of the mapping would succeed."""
    from batchcert import emulator

    return emulator.world_for_rows(validate_mapping(source).valid_rows())


def serve_emulator(world: emulator.World, port: int, on_ready: Callable[[str], None], host: str = "127.0.0.1") -> None:
    """Serve `world` on host:port until interrupted; `on_ready(url)` is called once listening."""
    try:
        asyncio.run(_serve_forever(world, host, port, on_ready))
    except KeyboardInterrupt:
        return


async def _serve_forever(world: emulator.World, host: str, port: int, on_ready: Callable[[str], None]) -> None:
    from batchcert import emulator

    async with emulator.serve(world, host, port) as (url, _):
        on_ready(url)
        await asyncio.Event().wait()
