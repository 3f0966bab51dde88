"""Where a command sends, chosen once per account (`Targets`: a `Target` per credential profile the rows name): the
live endpoint with that profile's credentials (static keys, or a role whose temporary keys are refreshed:
`api.credentials`), or for a rehearsal an in-process emulator serving the account's world (`workflow.rehearsal`) with
a credential of its own; which rows cannot be sent because their profile does not exist; and, for the duration of a
block, a client, a quota and a live reader aimed at one target."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from batchcert.api.client import GaapClient, create_session
from batchcert.api.credentials import ROLE_VARIABLES, CredentialSource, TemporaryKeys, find_credentials
from batchcert.live.reader import LiveReader
from batchcert.mapping import PROFILE, assign_profiles
from batchcert.model import group_by_profile
from batchcert.runner import RunnerConfig
from batchcert.schedule import Quota, Sleeper
from batchcert.settings import Credentials, RunSettings, find_static_credentials, parse_endpoint, resolve_settings
from batchcert.workflow.rehearsal import rehearsal_worlds

if TYPE_CHECKING:
    from batchcert import emulator
    from batchcert.model import Mapping as RowMapping
    from batchcert.workflow.requests import PlanRequest


@dataclass(frozen=True)
class Target:
    """Where a command sends, chosen once: the resolved settings (no endpoint for a rehearsal), the credential it
    signs with (for a role: its first temporary keys, `credentials.source` naming the provider), and for a rehearsal
    the world an in-process emulator serves."""

    settings: RunSettings
    credentials: Credentials
    world: emulator.World | None = None
    #: what the credential lookup warned about (a file readable by others)
    warnings: tuple[str, ...] = ()
    #: what refreshes temporary keys (None: static keys, never refreshed)
    provider: TemporaryKeys | None = None

    def credential_source(self) -> CredentialSource:
        """What a client asks for the keys of each request (one per connection block: each keeps its own keys)."""
        return CredentialSource(self.credentials, self.provider)


def choose_target(
    settings: RunSettings,
    profile: str | None,
    rehearsal_world: Callable[[], emulator.World],
    environ: Mapping[str, str] | None = None,
) -> Target:
    """The live endpoint with the operator's credentials, or — for a rehearsal — `rehearsal_world()` with its own.
    Raises CredentialsError when a live target has no credentials, or a role's first keys cannot be had."""
    if settings.rehearsal:
        world = rehearsal_world()
        return Target(settings, _emulator_credentials(world), world)
    found = find_credentials(profile, environ)
    return Target(settings, found.credentials, None, found.warnings, found.provider)


@dataclass(frozen=True)
class Targets:
    """Where a command sends for each account its rows belong to: a `Target` per profile ("" the default
    credentials), in the order the rows first name them (README, "Many accounts in one run")."""

    by_profile: dict[str, Target]

    @property
    def first(self) -> Target:
        return next(iter(self.by_profile.values()))

    @property
    def settings(self) -> RunSettings:
        return self.first.settings

    @property
    def several(self) -> bool:
        """More than one account, or one named by a profile: the outputs then say the profile of every row."""
        return len(self.by_profile) > 1 or any(self.by_profile)

    @property
    def warnings(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(w for target in self.by_profile.values() for w in target.warnings))

    @property
    def masked_ids(self) -> str:
        """Every account's SecretId, masked: one, or "profile: id" for each."""
        if not self.several:
            return self.first.credentials.masked_id
        return ", ".join(
            f"{profile or '(default)'}: {t.credentials.masked_id}" for profile, t in self.by_profile.items()
        )


def choose_mapping_targets(request: PlanRequest, mapping: RowMapping) -> tuple[Targets, RowMapping]:
    """The targets of a command that reads a mapping (`plan`, `run`) — a rehearsal when asked for (`--emulator`, or
    a world file given), in the world file's accounts or else in worlds where every valid row would succeed — and
    the mapping with each row's profile decided: a row naming a profile that does not exist is invalid
    (`mapping.assign_profiles`). Raises CredentialsError when a profile the rows use has no usable credentials."""
    rehearsal = request.rehearsal or request.world is not None
    settings = resolve_settings(request.settings, rehearsal)
    default = request.profile or ""
    if rehearsal:
        worlds = rehearsal_worlds(request.world, mapping)
        mapping = assign_profiles(mapping, default, worlds.refusal)
        profiles = list(group_by_profile(mapping.valid_rows())) or [default]
        return choose_targets(settings, profiles, default, worlds.world_of), mapping
    mapping = assign_profiles(mapping, default, missing_profile)
    return choose_targets(settings, list(group_by_profile(mapping.valid_rows())) or [default], default), mapping


def choose_targets(
    settings: RunSettings,
    profiles: Sequence[str],
    default: str,
    rehearsal_world: Callable[[str], emulator.World] | None = None,
) -> Targets:
    """A target per profile of the rows; rows of profile "" (a rerun's rows that named none) sign with `default`
    (`--profile`). The role variables of the environment (`TENCENTCLOUD_ROLE_ARN`, …) are for the run's own credential
    (`--profile`, or none): a role ARN names one account's role, so a row's own profile signs with its keys alone."""
    roles_off = {k: v for k, v in os.environ.items() if k not in ROLE_VARIABLES}
    by_profile: dict[str, Target] = {}
    for profile in profiles:
        name = profile or default

        def world(profile: str = profile) -> emulator.World:
            if rehearsal_world is None:
                raise AssertionError("a live target has no world")
            return rehearsal_world(profile)

        by_profile[profile] = choose_target(settings, name or None, world, None if name == default else roles_off)
    return Targets(by_profile)


def missing_profile(profile: str, named_in: str = "the cell") -> str | None:
    """Why rows naming `profile` cannot be sent on a live target: it is in neither credentials file (None: it is,
    or it is "" — the default credentials, whose absence stops the command, as it always has). `named_in`: where the
    user named it, to correct (a mapping's cell, or --profile)."""
    if not profile or find_static_credentials(profile) is not None:
        return None
    return (
        f"no profile {profile!r} in ~/.tencentcloud/credentials or ~/.tccli/{profile}.credential — add it there, or "
        f"correct {named_in}"
    )


def rows_name_accounts(mapping: RowMapping, targets: Targets) -> bool:
    """Whether a run's or plan's outputs say each row's profile: the mapping has a Profile column, or its rows go to
    more than one account (README, "Many accounts in one run")."""
    return PROFILE in mapping.column_of or len(targets.by_profile) > 1


def _emulator_credentials(world: emulator.World) -> Credentials:
    """The credential a rehearsal signs with: the world's first (the in-process emulator is all that knows it)."""
    secret_id, secret_key = next(iter(world.credentials.items()))
    temporary = world.temporary_credentials.get(secret_id)
    return Credentials(secret_id, secret_key, temporary.token if temporary else "", source="emulator")


@contextlib.asynccontextmanager
async def connect(target: Target) -> AsyncIterator[tuple[GaapClient, Quota]]:
    """A client and a quota for `target` for the duration of the block; for a rehearsal, the emulator serving its
    world on loopback for as long (the emulator module is imported only then: 50 ms a live run does not need)."""
    async with contextlib.AsyncExitStack() as stack:
        endpoint = target.settings.endpoint
        if target.world is not None:
            from batchcert import emulator

            world = target.world
            url, served = await stack.enter_async_context(emulator.serve(world))
            # the world a rehearsal leaves keeps what is left of its scripted faults (README, "Reruns")
            stack.callback(lambda: setattr(world, "faults", served.remaining_faults()))
            endpoint = parse_endpoint(url)
        assert endpoint is not None  # a live target always has one (resolve_settings)
        session = await stack.enter_async_context(create_session(endpoint, target.settings.ca_bundle))
        quota = Quota(target.settings.rate_per_s)
        stack.callback(quota.close)
        yield GaapClient(session, endpoint, target.credential_source(), target.settings.timeout_s), quota


def build_reader(client: GaapClient, quota: Quota, target: Target, max_attempts: int | None = None) -> LiveReader:
    """A reader of the live state through `client` under `quota`, retrying as a run does — `max_attempts` times
    (default: the target's setting)."""
    policy = RunnerConfig().retry_policy(max_attempts or target.settings.max_attempts)
    return LiveReader(client, quota, policy, Sleeper(), random.Random())
