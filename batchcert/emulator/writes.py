"""The write actions, ModifyCertificate and ModifyHTTPSListenerAttribute, through one apply path: the fault that acts
on the request, the listener (access), the connection rules, the listener's task (`FailedOperation.ListenerHasTask`
while one runs; docs/gaap-api.md, "Listener tasks"), the target's checks, then the change applied as a listener task,
recorded in the ledger, and rolled back when its task fails. Applying and rolling back also record, for each domain
whose effective server certificate changed, what the TLS edge served until then (`state.ServedChange`; the `world`
docstring, "The TLS edge"). What differs between the two is in `changes`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from batchcert.emulator.access import find_listener
from batchcert.emulator.changes import Change, DomainChange, ListenerChange, Scope
from batchcert.emulator.clock import monotonic_s
from batchcert.emulator.faults import FaultInjector
from batchcert.emulator.outcomes import ApiError
from batchcert.emulator.state import ListenerState, ServedChange
from batchcert.emulator.world import World

#: the account name of a one-account emulator (a world file without `accounts`): its ledger entries carry it
DEFAULT_ACCOUNT = ""


@dataclass(frozen=True)
class LedgerEntry:
    """One applied change: wall time, where, the certificate state before and after, the answering RequestId.

    `scope` "domain": a ModifyCertificate of `domain`; "listener": a ModifyHTTPSListenerAttribute of the listener's
    own certificates (`domain` is ""; before/after also carry `listener_name` and `forward_protocol`). `secret_id`
    signed the request, `account` names the account it was applied in (`DEFAULT_ACCOUNT` in a one-account emulator;
    `batchcert.emulator.accounts`): with several accounts, which credential changed what is what tests prove."""

    time: float
    listener_id: str
    domain: str
    before: dict[str, Any]
    after: dict[str, Any]
    request_id: str
    scope: str = "domain"
    secret_id: str = ""
    account: str = DEFAULT_ACCOUNT


@dataclass(frozen=True)
class _Served:
    """A domain's effective and served server certificates just before a change or a rollback."""

    domain: str
    effective_id: str
    served_id: str


class Writes:
    """The write actions on one world. `ledger` lists the changes applied, `reverted` the (listener, domain) of those
    whose task failed and were rolled back (fault `task_fail`; domain "" for a listener's own certificates).
    `wall_clock` dates ledger entries; `account` is the name they carry."""

    def __init__(
        self, world: World, faults: FaultInjector, wall_clock: Callable[[], float], account: str = DEFAULT_ACCOUNT
    ) -> None:
        self.world = world
        self.faults = faults
        self.wall_clock = wall_clock
        self.account = account
        self.ledger: list[LedgerEntry] = []
        self.reverted: list[tuple[str, str]] = []

    async def modify_certificate(self, params: dict[str, Any], request_id: str, secret_id: str = "") -> dict[str, Any]:
        """ModifyCertificate: a domain's certificates (docs/gaap-api.md, "The call")."""
        return await self.apply(DomainChange.parse(params), request_id, secret_id)

    async def modify_listener(self, params: dict[str, Any], request_id: str, secret_id: str = "") -> dict[str, Any]:
        """ModifyHTTPSListenerAttribute (CN docs 36996): a listener's own certificates, name and forwarding."""
        return await self.apply(ListenerChange.parse(params), request_id, secret_id)

    async def apply(self, change: Change, request_id: str, secret_id: str = "") -> dict[str, Any]:
        """Check and apply one change as a listener task, signed by `secret_id`; the answer's payload is empty."""
        scripts = self.faults.listeners if change.scope is Scope.LISTENER else self.faults.domains
        fault = self.faults.next_fault(scripts, change.fault_key)
        kind = fault.kind if fault else None
        await self.faults.answer_early(fault)
        listener = find_listener(self.world, change.listener_id, change.action, "HTTPS")
        now = monotonic_s()
        change.hold(listener, fault, now)
        change.check_connection(self.world)
        if listener.pinned_busy or now < listener.busy_until:
            raise ApiError("FailedOperation.ListenerHasTask", "The listener has a task in progress; try again later.")
        change.check_target(self.world, listener, now)

        before = change.state(listener)
        served = self._served_before(change, listener, now)
        change.set(listener)
        self._record_served(change.listener_id, served, now)
        task_s = self.world.task_seconds if listener.task_seconds is None else listener.task_seconds
        listener.busy_until = now + task_s
        change.start_task(listener, now + task_s)
        self.ledger.append(
            LedgerEntry(
                self.wall_clock(),
                change.listener_id,
                change.domain,
                before,
                change.state(listener),
                request_id,
                scope=change.scope.value,
                secret_id=secret_id,
                account=self.account,
            )
        )
        if kind == "task_fail" or self.faults.take_apply_fault(scripts, change.fault_key) == "task_fail":
            # accepted, then the task fails and the change is rolled back when it ends
            change.fail_task(listener)
            asyncio.get_running_loop().call_later(task_s, self._revert, change, before)
        if kind == "apply_then_hang":
            await self.faults.hang()
        return {}

    def _revert(self, change: Change, before: dict[str, Any]) -> None:
        now = monotonic_s()
        served = self._served_before(change, self.world.listeners[change.listener_id], now)
        change.restore(self.world, before)
        self._record_served(change.listener_id, served, now)
        self.reverted.append((change.listener_id, change.domain))

    def _served_before(self, change: Change, listener: ListenerState, now: float) -> tuple[_Served, ...]:
        world, listener_id = self.world, change.listener_id
        return tuple(
            _Served(d, world.effective_certificates(listener_id, d)[0], world.served_certificate(listener_id, d, now))
            for d in change.edge_domains(listener)
        )

    def _record_served(self, listener_id: str, served: tuple[_Served, ...], now: float) -> None:
        """A domain whose effective certificate changed is served what it was served before, for its lag."""
        domains = self.world.listeners[listener_id].domains
        for s in served:
            if self.world.effective_certificates(listener_id, s.domain)[0] != s.effective_id:
                domains[s.domain].served_change = ServedChange(s.served_id, now)
