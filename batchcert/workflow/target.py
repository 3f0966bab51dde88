"""Where a command sends, chosen once: the live endpoint with the operator's credentials (static keys, or a role whose
temporary keys are refreshed: `api.credentials`), or for a rehearsal an in-process emulator serving a world
(`workflow.rehearsal`) with a credential of its own; and, for the duration of a block, a client, a quota and a live
reader aimed at it."""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from batchcert.api.client import GaapClient, create_session
from batchcert.api.credentials import CredentialSource, TemporaryKeys, find_credentials
from batchcert.live.reader import LiveReader
from batchcert.runner import RunnerConfig
from batchcert.schedule import Quota, Sleeper
from batchcert.settings import Credentials, RunSettings, parse_endpoint, resolve_settings
from batchcert.workflow.rehearsal import rehearsal_world

if TYPE_CHECKING:
    from batchcert import emulator
    from batchcert.model import Mapping
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


def choose_target(settings: RunSettings, profile: str | None, rehearsal_world: Callable[[], emulator.World]) -> Target:
    """The live endpoint with the operator's credentials, or — for a rehearsal — `rehearsal_world()` with its own.
    Raises CredentialsError when a live target has no credentials, or a role's first keys cannot be had."""
    if settings.rehearsal:
        world = rehearsal_world()
        return Target(settings, _emulator_credentials(world), world)
    found = find_credentials(profile)
    return Target(settings, found.credentials, None, found.warnings, found.provider)


def choose_mapping_target(request: PlanRequest, mapping: Mapping) -> Target:
    """The target of a command that reads a mapping (`plan`, `run`): a rehearsal when asked for (`--emulator`, or a
    world file given), in the world file or else in a world where every valid row of `mapping` would succeed."""
    return choose_target(
        resolve_settings(request.settings, request.rehearsal or request.world is not None),
        request.profile,
        lambda: rehearsal_world(request.world, mapping),
    )


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
