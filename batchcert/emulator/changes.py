"""What each write action changes, checked as the service checks it: `DomainChange` (ModifyCertificate: a domain's
server certificate and client CAs) and `ListenerChange` (ModifyHTTPSListenerAttribute, CN docs 36996: a listener's
name, forward protocol, server certificate and client CAs). Each parses its request, says which fault script and
connection rules apply, validates its target and sets, reads and restores that target's state, and names the domains
whose served certificate it may change (`edge_domains`, for the TLS edge's lag); `writes` runs both through one apply
path."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from batchcert.api.vocabulary import ACTION_MODIFY, ACTION_MODIFY_LISTENER, CLIENT_CA_TYPE, SERVER_SSL_TYPE
from batchcert.emulator.access import check_certificate
from batchcert.emulator.faults import Fault
from batchcert.emulator.outcomes import ApiError
from batchcert.emulator.params import check_known, check_params, read_client_params
from batchcert.emulator.state import DomainState, ListenerState
from batchcert.emulator.world import World
from batchcert.live.certificates import domain_covered
from batchcert.model import DEFAULT_CERTIFICATE

_MODIFY_PARAMS = {"ListenerId", "Domain", "CertificateId", "ClientCertificateId", "PolyClientCertificateIds"}
_MODIFY_LISTENER_PARAMS = {
    "ListenerId",
    "ProxyId",
    "ListenerName",
    "ForwardProtocol",
    "CertificateId",
    "ClientCertificateId",
    "PolyClientCertificateIds",
}


class Scope(enum.StrEnum):
    """What a change is of: a domain's certificates, or a listener's own (the ledger's `scope`)."""

    DOMAIN = "domain"
    LISTENER = "listener"


class Change(Protocol):
    """One write request, its parameters checked, as the apply path (`writes.Writes`) drives it."""

    action: ClassVar[str]
    scope: ClassVar[Scope]

    @property
    def listener_id(self) -> str: ...

    @property
    def domain(self) -> str:
        """The domain changed ("" for a listener's own certificates)."""
        ...

    @property
    def fault_key(self) -> str:
        """What its fault script is keyed by: the domain, or the listener."""
        ...

    def hold(self, listener: ListenerState, fault: Fault | None, now: float) -> None:
        """What a `changing` or `ListenerHasTask` fault does before the checks."""

    def check_connection(self, world: World) -> None:
        """The rules for the connection (proxy or group) the listener sits on."""

    def check_target(self, world: World, listener: ListenerState, now: float) -> None:
        """The checks after the listener's task: the target and the certificates named."""

    def state(self, listener: ListenerState) -> dict[str, Any]:
        """The target's certificate state, as the ledger records it."""
        ...

    def set(self, listener: ListenerState) -> None:
        """Apply the change to the target."""

    def edge_domains(self, listener: ListenerState) -> tuple[str, ...]:
        """The domains whose served certificate (`World.served_certificate`) this change or its rollback may change."""
        ...

    def start_task(self, listener: ListenerState, until: float) -> None:
        """Mark the target as changing until `until` (monotonic), beyond the listener's task."""

    def fail_task(self, listener: ListenerState) -> None:
        """Mark the target as changing until the rollback (fault `task_fail`)."""

    def restore(self, world: World, before: dict[str, Any]) -> None:
        """Roll the target back to `before` (a `state`) when its task failed."""


def hold_busy(listener: ListenerState, fault: Fault | None, now: float) -> None:
    """Fault `ListenerHasTask`: the listener stays busy for the fault's `seconds` (< 0: until released)."""
    seconds = fault.seconds if fault is not None else 1.0
    listener.pinned_busy = listener.pinned_busy or seconds < 0
    listener.busy_until = max(listener.busy_until, now + max(seconds, 0))


@dataclass(frozen=True)
class DomainChange:
    """ModifyCertificate: a domain's server certificate and client CAs. A change naming no client CA on a mutual-TLS
    domain resets its client CAs (the adversarial reading; docs/gaap-api.md, "The call")."""

    action: ClassVar[str] = ACTION_MODIFY
    scope: ClassVar[Scope] = Scope.DOMAIN
    listener_id: str
    domain: str
    certificate_id: str
    client_certificate_id: str | None
    poly_client_certificate_ids: tuple[str, ...]

    @classmethod
    def parse(cls, params: dict[str, Any]) -> DomainChange:
        check_known(params, _MODIFY_PARAMS)
        for name in ("ListenerId", "Domain", "CertificateId"):
            if name not in params:
                raise ApiError("MissingParameter", f"The request is missing a required parameter `{name}`.")
        for name in ("ListenerId", "Domain", "CertificateId", "ClientCertificateId"):
            if name in params and not isinstance(params[name], str):
                raise ApiError("InvalidParameter", f"The parameter `{name}` must be a string.")
        client_id, poly = read_client_params(params)
        return cls(params["ListenerId"], params["Domain"], params["CertificateId"], client_id, tuple(poly or ()))

    @property
    def fault_key(self) -> str:
        return self.domain

    @property
    def _clients(self) -> tuple[str, ...]:
        return (self.client_certificate_id,) if self.client_certificate_id else self.poly_client_certificate_ids

    def hold(self, listener: ListenerState, fault: Fault | None, now: float) -> None:
        kind = fault.kind if fault else None
        if kind == "changing" and fault is not None and self.domain in listener.domains:
            listener.domains[self.domain].changing_until = now + fault.seconds
        if kind == "ListenerHasTask":
            hold_busy(listener, fault, now)

    def check_connection(self, world: World) -> None:
        connection = world.connection(self.listener_id)
        if connection.version != "3.0":
            raise ApiError(
                "FailedOperation.ProxyVersionNotSupport",
                "This operation is only supported on version 3.0 connections.",
            )
        if connection.status != "RUNNING":
            if connection.kind == "group":
                raise ApiError("FailedOperation.GroupStatusNotInRuning", "The connection group is not running.")
            raise ApiError("FailedOperation.ProxyStatusNotInRuning", "The connection is not running.")

    def check_target(self, world: World, listener: ListenerState, now: float) -> None:
        domain = listener.domains.get(self.domain)
        if domain is None:
            raise ApiError(
                "ResourceNotFound", f"The domain `{self.domain}` does not exist on listener `{self.listener_id}`."
            )
        if domain.status != 0 or now < domain.changing_until:
            raise ApiError("FailedOperation.DomainStatusNotInRunning", "The domain is not in the running state.")
        check_certificate(world, self.certificate_id, SERVER_SSL_TYPE, "CertificateId")
        param = "ClientCertificateId" if self.client_certificate_id else "PolyClientCertificateIds"
        for cid in self._clients:
            check_certificate(world, cid, CLIENT_CA_TYPE, param)
        cert_id = self.certificate_id
        if cert_id != DEFAULT_CERTIFICATE and not domain_covered(world.certificates[cert_id].domains, self.domain):
            raise ApiError(
                "InvalidParameterValue.CertificateNotMatchDomain",
                f"The certificate `{cert_id}` does not match the domain `{self.domain}`.",
            )

    def state(self, listener: ListenerState) -> dict[str, Any]:
        return _domain_state(listener.domains[self.domain])

    def set(self, listener: ListenerState) -> None:
        domain = listener.domains[self.domain]
        domain.certificate_id = self.certificate_id
        client_id, poly = self.client_certificate_id, self.poly_client_certificate_ids
        if client_id:
            domain.client_certificate_id = client_id
            domain.poly_client_certificate_ids = [] if client_id == DEFAULT_CERTIFICATE else [client_id]
        elif poly:
            domain.client_certificate_id = poly[0]
            domain.poly_client_certificate_ids = list(poly)
        elif domain.poly_client_certificate_ids:
            # The adversarial reading of an unclear point (docs/gaap-api.md, "The call"): a change naming no client
            # CA on a mutual-TLS domain resets its client CAs to the listener's.
            domain.client_certificate_id = None
            domain.poly_client_certificate_ids = []

    def edge_domains(self, listener: ListenerState) -> tuple[str, ...]:
        return (self.domain,)

    def start_task(self, listener: ListenerState, until: float) -> None:
        listener.domains[self.domain].changing_until = until

    def fail_task(self, listener: ListenerState) -> None:
        # changing until the rollback is done, never idle at the target
        listener.domains[self.domain].changing_until = float("inf")

    def restore(self, world: World, before: dict[str, Any]) -> None:
        domain = world.listeners[self.listener_id].domains[self.domain]
        domain.certificate_id = before["certificate_id"]
        domain.client_certificate_id = before["client_certificate_id"]
        domain.poly_client_certificate_ids = list(before["poly_client_certificate_ids"])
        domain.changing_until = 0.0


@dataclass(frozen=True)
class ListenerChange:
    """ModifyHTTPSListenerAttribute: ProxyId is required for a listener on a single proxy (and must be its proxy);
    a group listener takes none. Version 1.0 proxies and groups are refused. During its task the listener reads
    ListenerStatus 4 (its `busy_until`); nothing else marks it as changing."""

    action: ClassVar[str] = ACTION_MODIFY_LISTENER
    scope: ClassVar[Scope] = Scope.LISTENER
    domain: ClassVar[str] = ""
    listener_id: str
    proxy_id: str | None
    certificate_id: str | None
    #: the client CAs named, and the parameter that named them
    clients: tuple[str, ...]
    clients_param: str
    forward_protocol: str | None
    name: str | None

    @classmethod
    def parse(cls, params: dict[str, Any]) -> ListenerChange:
        check_params(
            params,
            _MODIFY_LISTENER_PARAMS,
            ("ListenerId", "ProxyId", "ListenerName", "ForwardProtocol", "CertificateId", "ClientCertificateId"),
        )
        if not params.get("ListenerId"):
            raise ApiError("MissingParameter", "The request is missing a required parameter `ListenerId`.")
        client_id, poly = read_client_params(params)
        return cls(
            listener_id=params["ListenerId"],
            proxy_id=params.get("ProxyId") or None,
            certificate_id=params.get("CertificateId") or None,
            clients=(client_id,) if client_id else tuple(poly or ()),
            clients_param="ClientCertificateId" if client_id else "PolyClientCertificateIds",
            forward_protocol=params.get("ForwardProtocol"),
            name=params.get("ListenerName"),
        )

    @property
    def fault_key(self) -> str:
        return self.listener_id

    def hold(self, listener: ListenerState, fault: Fault | None, now: float) -> None:
        if fault is not None and fault.kind in ("ListenerHasTask", "changing"):
            hold_busy(listener, fault, now)

    def check_connection(self, world: World) -> None:
        """The connection rules of ModifyHTTPSListenerAttribute (go-sdk client.go lists these codes for it)."""
        listener_id, proxy_id = self.listener_id, self.proxy_id
        connection = world.connection(listener_id)
        if connection.kind == "proxy":
            if proxy_id is None:
                raise ApiError(
                    "MissingParameter",
                    f"The request is missing a required parameter `ProxyId` (listener `{listener_id}` is on a "
                    "single connection).",
                )
            if proxy_id != connection.id:
                if proxy_id not in world.proxies:
                    raise ApiError("ResourceNotFound", f"The connection `{proxy_id}` does not exist.")
                raise ApiError(
                    "InvalidParameterValue",
                    f"The listener `{listener_id}` does not belong to the connection `{proxy_id}`.",
                )
            if connection.version == "1.0":
                raise ApiError(
                    "FailedOperation.NotSupportOldVersionProxy", "Version 1.0 connections are not supported."
                )
            if connection.status != "RUNNING":
                raise ApiError("FailedOperation.InstanceStatusNotInRuning", "The connection is not running.")
            return
        if proxy_id is not None:
            raise ApiError(
                "InvalidParameterValue",
                f"The listener `{listener_id}` belongs to the connection group `{connection.id}`, not to `{proxy_id}`.",
            )
        if connection.version == "1.0":
            raise ApiError("FailedOperation.NotSupportProxyGroup", "Version 1.0 connection groups are not supported.")
        if connection.status != "RUNNING":
            raise ApiError("FailedOperation.GroupStatusNotInRuning", "The connection group is not running.")

    def check_target(self, world: World, listener: ListenerState, now: float) -> None:
        named = [(self.certificate_id, SERVER_SSL_TYPE, "CertificateId")] if self.certificate_id else []
        for cid, cert_type, param in [*named, *((c, CLIENT_CA_TYPE, self.clients_param) for c in self.clients)]:
            if cid == DEFAULT_CERTIFICATE:
                raise ApiError("InvalidParameterValue", f"The {param} of a listener cannot be `default`.")
            check_certificate(world, cid, cert_type, param)
        if self.clients and listener.auth_type != 1:
            raise ApiError(
                "InvalidParameterValue",
                f"The listener `{self.listener_id}` uses one-way authentication: client CA certificates need mutual.",
            )
        forward = self.forward_protocol
        if forward is not None and forward not in ("HTTP", "HTTPS"):
            raise ApiError("InvalidParameterValue", f"The ForwardProtocol `{forward}` is not HTTP or HTTPS.")
        if self.name is not None and not self.name.strip():
            raise ApiError("InvalidParameterValue", "The ListenerName cannot be empty.")

    def state(self, listener: ListenerState) -> dict[str, Any]:
        """A listener's own certificate state (the keys of a domain's, and its name and forwarding)."""
        return {
            "certificate_id": listener.certificate_id,
            "client_certificate_id": listener.client_certificate_ids[0] if listener.client_certificate_ids else None,
            "poly_client_certificate_ids": list(listener.client_certificate_ids),
            "listener_name": listener.name,
            "forward_protocol": listener.forward_protocol,
        }

    def set(self, listener: ListenerState) -> None:
        listener.certificate_id = self.certificate_id or listener.certificate_id
        listener.client_certificate_ids = list(self.clients) or listener.client_certificate_ids
        listener.forward_protocol = self.forward_protocol or listener.forward_protocol
        listener.name = self.name if self.name is not None else listener.name

    def edge_domains(self, listener: ListenerState) -> tuple[str, ...]:
        """The listener's domains on `default`: they serve its certificate (`World.effective_certificates`)."""
        if self.certificate_id is None:
            return ()
        return tuple(name for name, d in listener.domains.items() if d.certificate_id == DEFAULT_CERTIFICATE)

    def start_task(self, listener: ListenerState, until: float) -> None:
        """Nothing beyond the listener's task: the listener itself reads busy."""

    def fail_task(self, listener: ListenerState) -> None:
        """Nothing: the listener reads busy until its task ends, when the rollback happens."""

    def restore(self, world: World, before: dict[str, Any]) -> None:
        listener = world.listeners[self.listener_id]
        listener.certificate_id = before["certificate_id"]
        listener.client_certificate_ids = list(before["poly_client_certificate_ids"])
        listener.name = before["listener_name"]
        listener.forward_protocol = before["forward_protocol"]


def _domain_state(domain: DomainState) -> dict[str, Any]:
    return {
        "certificate_id": domain.certificate_id,
        "client_certificate_id": domain.client_certificate_id,
        "poly_client_certificate_ids": list(domain.poly_client_certificate_ids),
    }
