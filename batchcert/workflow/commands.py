"""The commands that send no change: `validate` (the mapping read), `plan` (what `run` would do, from one read per
listener), `inventory` (the estate read, and the rotation mapping), `report` (every report rewritten from a journal)
and `emulator` (serving a world until interrupted)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from batchcert.errors import CredentialsError, SettingsError
from batchcert.inventory import (
    Estate,
    InventoryError,
    Replacement,
    StepFn,
    not_searched_advice,
    parse_replacement,
    plan_account_rotations,
    plan_rotation,
    read_estate,
    total_rotation,
)
from batchcert.journal import read_journal
from batchcert.live.state import PlanLine, count_plan_actions, plan_every_row
from batchcert.mapping import is_inventory, read_inventory_targets, read_mapping
from batchcert.model import SCOPE_LISTENER, Mapping, MappingSource, ProbeTarget, Row, ServedCheck, group_by_profile
from batchcert.report import Reports, write_inventory, write_plan, write_probe, write_reports, write_rotation
from batchcert.report.inventory_files import write_account_inventory, write_account_rotation
from batchcert.runner import plan_rows, probe_targets
from batchcert.schedule import Sleeper
from batchcert.settings import RunSettings, resolve_settings
from batchcert.workflow.rehearsal import read_only_worlds
from batchcert.workflow.requests import InventoryRequest, PlanRequest, ProbeRequest
from batchcert.workflow.results import InventoryResult, PlanResult, ProbeResult
from batchcert.workflow.run_dir import default_run_dir, remove_temps_of_killed_writes
from batchcert.workflow.target import (
    Target,
    Targets,
    build_reader,
    choose_mapping_targets,
    choose_target,
    choose_targets,
    connect,
    missing_profile,
    rows_name_accounts,
)

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
    path = write_plan(out_dir, lines, rows_name_accounts(mapping, targets))
    return PlanResult(lines, count_plan_actions(lines), path, mapping.notes, len(mapping.duplicate_of))


async def _plan_accounts(rows: list[Row], targets: Targets) -> list[PlanLine]:
    """Every account's rows planned against its own state, the accounts read at once."""
    rows_of = group_by_profile(rows)
    planned = await asyncio.gather(*(_plan(rows_of.get(p, []), target) for p, target in targets.by_profile.items()))
    return [line for lines in planned for line in lines]


async def _plan(rows: list[Row], target: Target) -> list[PlanLine]:
    async with connect(target) as (client, quota):
        reader = build_reader(client, quota, target)
        certificates = await reader.certificates()
        return await plan_rows(reader, rows, certificates, target.settings.min_validity_days)


def take_inventory(request: InventoryRequest, on_step: StepFn | None = None) -> InventoryResult:
    """Read every connection, HTTPS listener, domain and certificate (under the rate ceiling, with retries), write
    inventory.csv/xlsx, and with `replace` the mapping that moves every use of OLD to NEW. With two or more
    profiles, every account is read at once, each through its own credential, and one inventory (and one mapping)
    names the profile of every line. Raises BatchcertError (exit 2) when a profile does not exist, an estate cannot
    be read whole, or a NEW does not exist or has the wrong type — before writing anything."""
    replacements = [parse_replacement(text) for text in request.replace]
    settings = resolve_settings(request.settings, request.rehearsal or request.world is not None)
    profiles = list(dict.fromkeys(request.profiles))
    if len(profiles) > 1:
        targets = _inventory_targets(settings, profiles, request.world)
        return _take_account_inventories(targets, replacements, request, on_step)
    profile = profiles[0] if profiles else None
    target = choose_target(settings, profile, lambda: _inventory_worlds(request.world, [profile or ""])[profile or ""])
    estate = asyncio.run(_read_estate(target, on_step))
    rotation = plan_rotation(estate, replacements) if replacements else None
    out_dir = _inventory_dir(request)
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


def _inventory_dir(request: InventoryRequest) -> Path:
    return request.out or request.reports_root / f"{datetime.now(tz=UTC).strftime('%Y%m%dT%H%M%SZ')}-inventory"


def _take_account_inventories(
    targets: Targets, replacements: list[Replacement], request: InventoryRequest, on_step: StepFn | None
) -> InventoryResult:
    """`take_inventory` of several accounts: every estate read at once, the rotation planned in each account, then
    one inventory (and one mapping) with the profile of every line."""
    estates = asyncio.run(_read_estates(targets, on_step))
    rotations = plan_account_rotations(estates, replacements) if replacements else None
    out_dir = _inventory_dir(request)
    files: tuple[Path, ...] = write_account_inventory(out_dir, estates, time.time())
    if rotations is not None:
        files += (write_account_rotation(out_dir, {p: r.lines for p, r in rotations.items()}),)
    places = [place for estate in estates.values() for place in estate.places]
    holes = tuple(hole for estate in estates.values() for hole in estate.not_searched)
    listeners = sum(1 for p in places if p.scope == SCOPE_LISTENER)
    return InventoryResult(
        listeners,
        len(places) - listeners,
        sum(len(estate.certificates) for estate in estates.values()),
        total_rotation(rotations.values()) if rotations is not None else None,
        files,
        holes,
        not_searched_advice(holes),
        tuple(estates),
    )


def _inventory_targets(settings: RunSettings, profiles: list[str], world: Path | None) -> Targets:
    """A target per profile, every one checked before anything is read: for a rehearsal, the world file's account
    of that name; live, the profile's credentials — its own keys alone (a role ARN in the environment names one
    account's role, not one for each profile). Raises SettingsError or CredentialsError saying what to do."""
    if "" in profiles:
        raise SettingsError("--profile '' names no profile — give each account's profile name, or drop the empty one")
    if settings.rehearsal:
        worlds = _inventory_worlds(world, profiles)
        return choose_targets(settings, profiles, "", worlds.__getitem__)
    missing = [reason for profile in profiles if (reason := missing_profile(profile, "--profile")) is not None]
    if missing:
        raise CredentialsError("; ".join(missing))
    return choose_targets(settings, profiles, "")


def _inventory_worlds(world: Path | None, profiles: list[str]) -> dict[str, emulator.World]:
    """The world an inventory's rehearsal reads for each profile ("": none given; `read_only_worlds`)."""
    return read_only_worlds(world, profiles, "no --profile was given — give --profile NAME for each account to read")


async def _read_estate(target: Target, on_step: StepFn | None) -> Estate:
    async with connect(target) as (client, quota):
        return await read_estate(build_reader(client, quota, target), on_step)


async def _read_estates(targets: Targets, on_step: StepFn | None) -> dict[str, Estate]:
    """Every account's estate (by profile, in order), read at once, each through its own client and quota; what
    could not be searched says its profile. An account's InventoryError is raised naming its profile."""

    async def read(profile: str, target: Target) -> Estate:
        step = None if on_step is None else _step_of(profile, on_step)
        try:
            estate = await _read_estate(target, step)
        except InventoryError as exc:
            raise InventoryError(f"profile {profile}: {exc}") from None
        return replace(estate, not_searched=tuple(replace(h, profile=profile) for h in estate.not_searched))

    estates = await asyncio.gather(*(read(profile, target) for profile, target in targets.by_profile.items()))
    return dict(zip(targets.by_profile, estates, strict=True))


def _step_of(profile: str, on_step: StepFn) -> StepFn:
    """`on_step` for one account's read: what is read names the profile (the accounts' reads interleave)."""
    return lambda what, done, total: on_step(f"{what} of profile {profile}", done, total)


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
        targets = [
            ProbeTarget(r.row_number, r.listener_id, r.domain, r.certificate_id, r.profile) for r in rows if r.domain
        ]
    settings = resolve_settings(request.settings, rehearsal)
    default = request.profile or ""
    targets_of = group_by_profile(targets)
    profiles = list(targets_of) or [""]
    accounts = choose_targets(
        settings, profiles, default, _probe_worlds(request.world, profiles, default) if rehearsal else None
    )

    async def probe(profile: str, target: Target) -> list[ServedCheck]:
        async with connect(target) as (client, quota):
            reader = build_reader(client, quota, target)
            mine = targets_of.get(profile, [])
            return await probe_targets(reader, mine, request.probe_wait_s, Sleeper(), quota.clock)

    async def probe_all() -> list[ServedCheck]:
        """Each account's places through its own credential, the accounts at once, in the targets' order."""
        found = await asyncio.gather(*(probe(p, target) for p, target in accounts.by_profile.items()))
        by_place = {
            (t.row_number, t.profile): check
            for profile, checks in zip(accounts.by_profile, found, strict=True)
            for t, check in zip(targets_of.get(profile, []), checks, strict=True)
        }
        return [by_place[(t.row_number, t.profile)] for t in targets]

    checks = asyncio.run(probe_all())
    out_dir = request.out or default_run_dir(request.reports_root, source.with_name(source.stem + "-probe"))
    path = write_probe(out_dir, zip(targets, checks, strict=True))
    counts = dict(Counter(check.served for check in checks))
    return ProbeResult(counts, len([r for r in rows if not r.domain]), path)


def _probe_worlds(world: Path | None, profiles: list[str], default: str) -> Callable[[str], emulator.World]:
    """The world a probe's rehearsal reads for each profile (`read_only_worlds`), every one checked first; places
    that name none are read in the world of `default` (--profile)."""
    names = {profile: profile or default for profile in profiles}
    worlds = read_only_worlds(
        world, list(dict.fromkeys(names.values())), "name each row's account in a Profile column, or give --profile"
    )
    return lambda profile: worlds[names[profile]]


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


def load_world(path: Path) -> emulator.World | emulator.Estate:
    """The world in a world file — one account's, or several accounts' (see batchcert.emulator)."""
    from batchcert import emulator

    return emulator.load_estate(path)


def emulator_credentials(world: emulator.World | emulator.Estate) -> dict[str, tuple[str, str]]:
    """What each account of `world` signs with: (SecretId, SecretKey) by account name, "" for a one-account world."""
    from batchcert import emulator

    if isinstance(world, emulator.Estate):
        return {
            name: (found.secret_id, found.secret_key)
            for name in world.accounts
            if (found := world.credentials_of(name))
        }
    return {"": next(iter(world.credentials.items()))}


def world_from_mapping(source: MappingSource) -> emulator.World | emulator.Estate:
    """A world in which every valid row of the mapping would succeed: one account's, or — when the rows name
    profiles — an account per profile (rows naming none in an account called "default")."""
    from batchcert import emulator

    rows = validate_mapping(source).valid_rows()
    if not any(row.profile for row in rows):
        return emulator.world_for_rows(rows)
    accounts = {profile or "default": group for profile, group in group_by_profile(rows).items()}
    return emulator.Estate(
        {
            name: emulator.world_for_rows(group, credentials=dict([emulator.account_credential(name)]))
            for name, group in accounts.items()
        }
    )


def serve_emulator(
    world: emulator.World | emulator.Estate, port: int, on_ready: Callable[[str], None], host: str = "127.0.0.1"
) -> None:
    """Serve `world` (one account, or several behind one endpoint) on host:port until interrupted; `on_ready(url)` is
    called once listening."""
    try:
        asyncio.run(_serve_forever(world, host, port, on_ready))
    except KeyboardInterrupt:
        return


async def _serve_forever(
    world: emulator.World | emulator.Estate, host: str, port: int, on_ready: Callable[[str], None]
) -> None:
    from batchcert import emulator

    served = (
        emulator.serve_estate(world, host, port)
        if isinstance(world, emulator.Estate)
        else emulator.serve(world, host, port)
    )
    async with served as (url, _):
        on_ready(url)
        await asyncio.Event().wait()
