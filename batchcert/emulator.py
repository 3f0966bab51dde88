"""An emulator of the GAAP API as an aiohttp.web app: the writes `ModifyCertificate` (a domain's certificates) and
`ModifyHTTPSListenerAttribute` (a listener's own certificates), the reads `DescribeRules`, `DescribeHTTPSListeners`,
`DescribeHTTPListeners`, `DescribeProxies`, `DescribeProxyGroupList` and `DescribeCertificates` (the estate an
inventory reads; docs/gaap-api.md, "Inventory and listener certificates").

Faithful where a bulk run can tell (docs/gaap-api.md, all sections): TC3 signatures, the per-(SecretId, action) limit in
a sliding 1 s window of admitted requests with the real throttle message (every action, reads included), changes as
asynchronous listener tasks (`FailedOperation.ListenerHasTask`), the service's validation codes, paging with each
action's maximum `Limit`, HTTP 200 with `Content-Type: application/json` exactly for API errors, and the response
shapes the official SDK deserializes. It keeps a ledger of applied changes and injects faults on demand. Test hooks
live under `/_emulator/` (never part of the real API).

The world file is a contract other tools write (every key but `listeners` and `certificates` is optional):
```
{"credentials": {"<SecretId>": "<SecretKey>"},              optional; demo credentials are used (and printed) if absent
 "rate_limit": 20, "task_seconds": 0.3, "latency_ms": 20,    optional; latency_ms may be [min, max]
 "proxies": {"link-…": {"name": "…", "status": "RUNNING", "version": "3.0", "group_id": null, "project_id": 0,
                        "denied_actions": ["DescribeHTTPSListeners"],
                        "refused_actions": {"DescribeRules": "FailedOperation.NotSupportOldVersionProxy"}}},
 "groups": {"lg-…": {"name": "…", "status": "RUNNING", "version": "3.0", "project_id": 0,
                     "refused_actions": {"DescribeHTTPSListeners": "FailedOperation.NotSupportProxyGroup"}}},
 "listeners": {"listener-…": {"proxy_id": "link-…", "certificate_id": "cert-…",
     "protocol": "HTTPS", "port": 443, "name": "…", "auth_type": 0, "client_certificate_ids": [],
     "forward_protocol": "HTTP",
     "domains": {"www.example.com": {"certificate_id": "cert-…", "client_certificate_id": null,
                                     "poly_client_certificate_ids": [], "status": 0}}}},
 "certificates": {"cert-…": {"type": 2, "domains": ["*.example.com", "example.com"], "name": "…",
                             "subject_cn": "*.example.com", "issuer_cn": "…",
                             "begin_time": "2025-01-01T00:00:00Z", "end_time": 1767225600, "expires_in_days": 30}},
 "faults": {"seed": 1, "hang_seconds": 30, "probabilities": {"InternalError": 0.1, ...},
            "domains": {"www.example.com": [{"kind": "InternalError", "times": 2}, {"kind": "changing", "seconds": 1}]},
            "listeners": {"listener-…": [{"kind": "task_fail"}]}},
 "competing_rate": 0,                                          optional; requests/s another client spends of each limit
 "clock_offset_s": 0,                                         optional; the server clock runs this far ahead
 "listing_quirks": {"DescribeProxyGroupList": {"empty_from_offset": 100},    optional, for tests of the reader
                    "DescribeProxies": {"instance_set_only": true}}}
```
`latency_ms` (a number, or [min, max] drawn per request; half is spent before the request is processed, half after)
is the world's, so each test sets its own; `World.latency_ms` may also be changed while the emulator serves.

Connections. A listener sits on a proxy (`proxy_id`, a key of `proxies`) or on a proxy group (`group_id`, a key of
`groups`), never both; a proxy in a group (`group_id`) has no listeners of its own. A listener naming neither (every
world written before proxies existed) gets a proxy of its own, synthesized on load as `link-<listener id without
"listener-">` (suffixed `-2`, `-3`… on a clash), whose version and status are that listener's `"proxy_version"`
(default "3.0") and `"proxy_status"` (default RUNNING; anything else: the connection is closed); to_dict writes such
listeners back as they were. A listener naming a proxy or group takes version and status from it, and may not carry
`proxy_version`/`proxy_status` itself. `protocol` is HTTPS (default), HTTP, TCP or UDP: only HTTPS listeners take the
certificate actions and appear in DescribeHTTPSListeners (a listener of another protocol answers there as a missing
one), HTTP ones appear in DescribeHTTPListeners, TCP/UDP ones have no domains. `name` defaults to the listener id,
`port` to 443, `auth_type` to 0 (one-way; 1 mutual), `client_certificate_ids` (the listener's own client CAs) to [].
Order of every listing: the world file's order (synthesized proxies after the named ones).

Projects and listings. Proxies and groups sit in a project (`project_id`, default 0, the default project).
DescribeProxyGroupList with `ProjectId` -1 lists every project's groups, with another number that project's, and
without `ProjectId` the default project's only (the adversarial reading: the reference gives no default);
DescribeProxies lists every project's proxies unless a `ProjectId` filter names some. Every listing pages with
`Offset`/`Limit` (at most the action's MAX_LIMIT) and answers the true `TotalCount`; DescribeProxies carries the
proxies in both `ProxySet` and the older `InstanceSet`. `listing_quirks` (by action) makes a listing misbehave for
tests: `empty_from_offset` answers empty pages from that Offset on (TotalCount unchanged), `instance_set_only`
(DescribeProxies) leaves `ProxySet` out.

Refusals scoped to a connection. A proxy's or group's `denied_actions` are answered `UnauthorizedOperation` (CAM
scoped to some connections) and its `refused_actions` answer the code given (`FailedOperation.NotSupportProxyGroup`,
`FailedOperation.NotSupportOldVersionProxy`, `ResourceNotFound`, …), for requests of those actions on it: a listener
listing by its ProxyId/GroupId, and any action on a listener that sits on it (DescribeHTTPSListeners by ListenerId,
DescribeRules, the writes). Writes on a listener whose connection is not RUNNING are refused:
ModifyHTTPSListenerAttribute with `FailedOperation.InstanceStatusNotInRuning` (a proxy) or
`FailedOperation.GroupStatusNotInRuning` (a group), ModifyCertificate with `FailedOperation.ProxyStatusNotInRuning` /
`FailedOperation.GroupStatusNotInRuning`; listings of it still answer, with its status.

Certificates. Times are unix seconds or ISO 8601 strings (UTC when no offset is given); to_dict writes unix seconds.
`expires_in_days` (may be negative: expired) sets `end_time` relative to the emulator's wall clock when it starts.
Without `end_time`/`expires_in_days` a certificate ends 365 days after that start; without `begin_time` it begins 365
days before its end — so an unmodified world always reads valid, and tests write expired ones explicitly. `name`
(CertificateName/CertificateAlias) defaults to the id, `subject_cn` to the first of `domains` (else the id), `issuer_cn`
to "batchcert emulator CA". `type`: 0 basic auth, 1 client CA, 2 server SSL, 3 origin CA, 4 proxy SSL.

Fault kinds: `InternalError`, `http502`, `reset`, `hang` (no answer, nothing applied), `apply_then_hang` (applied, no
answer), `changing` (the domain reports DomainStatus 1 for `seconds`; at listener scope the listener reads
ListenerStatus 4 and refuses changes for `seconds`), `ListenerHasTask` (the listener stays busy for `seconds`; < 0 until
released through `/_emulator/release`), `task_fail` (accepted, DomainStatus 1 / ListenerStatus 4 during the task, then
rolled back), `code` (answers `{"code": "FailedOperation.…"}`). `faults.domains` scripts ModifyCertificate per domain,
`faults.listeners` scripts ModifyHTTPSListenerAttribute per listener; `faults.probabilities` draw for both writes.
`faults.storms`: [[start_s, seconds], …] after start during which every request is throttled.

Per listener: `"denied_actions": ["ModifyCertificate"]` (CAM denies this credential those actions there:
AuthFailure.UnauthorizedOperation), `"task_seconds"` (its own task time). World: `"denied_actions":
["DescribeCertificates"]` (denied account-wide: UnauthorizedOperation), `"missing_listener_code":
"InvalidParameter"` answers a missing listener as "ListenerId(…) Not Exist." A domain on its listener's client CA reads
`ClientCertificateId: "default"` and `PolyClientCertificateAliasInfo: [{"CertificateId": "default", …}]`; a change
naming no client CA on a mutual-TLS domain resets its client CAs (the adversarial reading). A domain whose certificate
is `default` keeps reading `default` in DescribeRules while its effective certificate follows the listener's
(`World.effective_certificates`). The ledger records domain changes (`scope` "domain") and listener changes (`scope`
"listener", `domain` "").
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import hmac
import json
import random
import socket
import ssl
import struct
import time
import uuid
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import formatdate
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from batchcert.errors import WorldError
from batchcert.model import (
    ACTION_DESCRIBE_LISTENERS,
    ACTION_DESCRIBE_RULES,
    ACTION_MODIFY,
    API_VERSION,
    DEFAULT_CERTIFICATE,
    SERVICE,
    Row,
)
from batchcert.reconcile import domain_covered
from batchcert.signing import canonical_request, parse_authorization, signature, string_to_sign, utc_date

DEMO_SECRET_ID = "AKIDbatchcertEmulatorDemo0000000000"  # noqa: S105 - published demo id
DEMO_SECRET_KEY = "batchcert-emulator-demo-key"  # noqa: S105 - a published demo key for the emulator only
SIGNATURE_WINDOW_S = 300  # docs/gaap-api.md, "Signing": timestamp skew > 5 min → AuthFailure.SignatureExpire
FAULT_KINDS = (
    "InternalError",
    "http502",
    "reset",
    "hang",
    "apply_then_hang",
    "changing",
    "ListenerHasTask",
    "task_fail",
    "code",
)
_MODIFY_PARAMS = {"ListenerId", "Domain", "CertificateId", "ClientCertificateId", "PolyClientCertificateIds"}

# Actions beyond batchcert.model's three (docs/gaap-api.md, "Inventory and listener certificates").
ACTION_MODIFY_LISTENER = "ModifyHTTPSListenerAttribute"
ACTION_DESCRIBE_HTTP_LISTENERS = "DescribeHTTPListeners"
ACTION_DESCRIBE_PROXIES = "DescribeProxies"
ACTION_DESCRIBE_GROUPS = "DescribeProxyGroupList"
ACTION_DESCRIBE_CERTIFICATES = "DescribeCertificates"

#: the page size when a request gives no Limit (every paged action documents 20)
DEFAULT_LIMIT = 20
#: the largest Limit each paged action accepts; above it answers InvalidParameterValue (docs/gaap-api.md, "Inventory
#: and listener certificates"): DescribeProxies and DescribeProxyGroupList document 100; the listener and certificate
#: listings document none, and 50 is what the Terraform provider pages them with (known to be accepted)
MAX_LIMIT = {
    ACTION_DESCRIBE_PROXIES: 100,
    ACTION_DESCRIBE_GROUPS: 100,
    ACTION_DESCRIBE_LISTENERS: 50,
    ACTION_DESCRIBE_HTTP_LISTENERS: 50,
    ACTION_DESCRIBE_CERTIFICATES: 50,
}
_LISTENER_FILTERS = {
    "ProxyId",
    "GroupId",
    "ListenerId",
    "ListenerName",
    "Port",
    "Offset",
    "Limit",
    "SearchValue",
    "Http3Supported",
}
_MODIFY_LISTENER_PARAMS = {
    "ListenerId",
    "ProxyId",
    "ListenerName",
    "ForwardProtocol",
    "CertificateId",
    "ClientCertificateId",
    "PolyClientCertificateIds",
}
_PROXIES_PARAMS = {
    "InstanceIds",
    "ProxyIds",
    "Offset",
    "Limit",
    "Filters",
    "TagSet",
    "Independent",
    "Order",
    "OrderField",
}
#: DescribeProxies filter names (py-sdk models.py, DescribeProxiesRequest.Filters); GroupId and ProjectId are applied
_PROXY_FILTER_NAMES = {"ProjectId", "AccessRegion", "RealServerRegion", "GroupId", "IPAddressVersion", "PackageType"}
_GROUPS_PARAMS = {"Offset", "Limit", "ProjectId", "Filters", "TagSet"}
_CERTIFICATES_PARAMS = {"CertificateType", "Offset", "Limit"}
PROTOCOLS = ("HTTPS", "HTTP", "TCP", "UDP")
#: CertificateType values (CN docs 36977): 0 basic auth, 1 client CA, 2 server SSL, 3 origin CA, 4 proxy SSL
CERTIFICATE_TYPES = (0, 1, 2, 3, 4)
#: the validity a certificate has when the world gives none, around the emulator's start (see the module docstring)
DEFAULT_VALIDITY_S = 365 * 86400
#: a fixed creation time for everything the world does not date (2019-02-25, the signing docs' example)
CREATED_AT = 1551113065
_ACCESS_REGION = {"RegionId": "ap-guangzhou", "RegionName": "South China (Guangzhou)"}
_REAL_SERVER_REGION = {"RegionId": "na-siliconvalley", "RegionName": "Silicon Valley"}


#: scripted fault kinds that act on a change once it is applied (a refused attempt does not use them up)
_APPLY_FAULTS = frozenset({"task_fail"})
T = TypeVar("T")


class ApiError(Exception):
    """An API error answer: HTTP 200 with `Response.Error`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code)
        self.code, self.message = code, message
        self.request_id = ""


# ----------------------------------------------------------------------------------------------------------- world
@dataclass
class DomainState:
    certificate_id: str
    client_certificate_id: str | None = None
    poly_client_certificate_ids: list[str] = field(default_factory=list)
    status: int = 0
    changing_until: float = 0.0  # monotonic; DomainStatus reads 1 until then


@dataclass
class ProxyState:
    """A proxy (GAAP "connection", `link-…`). `owner` is set on a proxy synthesized for a listener that names none: its
    version and status are then that listener's `proxy_version`/`proxy_status`, and to_dict does not write it."""

    name: str = ""
    status: str = "RUNNING"
    version: str = "3.0"
    group_id: str | None = None
    owner: str | None = None
    #: the project it belongs to (0: the default project)
    project_id: int = 0
    #: what CAM or the service answers this credential for an action on this connection or a listener on it
    #: (action → code; `denied_actions` in the world file are UnauthorizedOperation)
    refused_actions: dict[str, str] = field(default_factory=dict)


@dataclass
class GroupState:
    """A proxy group (`lg-…`)."""

    name: str = ""
    status: str = "RUNNING"
    version: str = "3.0"
    #: the project it belongs to (0: the default project)
    project_id: int = 0
    #: action → code answered for that action on this group or a listener on it (see ProxyState)
    refused_actions: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Connection:
    """What a listener sits on, as its writes are checked: a proxy or a group, with its version and status."""

    kind: str  # "proxy" or "group"
    id: str
    version: str
    status: str


@dataclass
class ListenerState:
    #: version and status of the listener's own synthesized proxy (when it names no proxy or group)
    proxy_version: str = "3.0"
    proxy_status: str = "RUNNING"
    certificate_id: str = ""
    domains: dict[str, DomainState] = field(default_factory=dict)
    busy_until: float = 0.0  # monotonic; a change task runs until then
    pinned_busy: bool = False  # held busy by a test until released
    #: actions the credential may not perform on this listener (CAM is resource-level): AuthFailure.UnauthorizedOperation
    denied_actions: list[str] = field(default_factory=list)
    #: this listener's task time, when it differs from the world's
    task_seconds: float | None = None
    #: the proxy or the group the listener sits on (None and None: a proxy is synthesized for it, `World.attach`)
    proxy_id: str | None = None
    group_id: str | None = None
    protocol: str = "HTTPS"
    port: int = 443
    #: ListenerName; "" reads as the listener id
    name: str = ""
    #: 0 one-way, 1 mutual authentication
    auth_type: int = 0
    #: the listener's own client CAs (ClientCertificateId / PolyClientCertificateAliasInfo of DescribeHTTPSListeners)
    client_certificate_ids: list[str] = field(default_factory=list)
    forward_protocol: str = "HTTP"


@dataclass
class Certificate:
    """A certificate. Unset times (None) are placed around the emulator's start (`validity`)."""

    type: int
    domains: list[str]
    name: str = ""
    subject_cn: str = ""
    issuer_cn: str = ""
    begin_time: int | None = None
    end_time: int | None = None
    #: end_time relative to the emulator's start, in days (negative: expired)
    expires_in_days: float | None = None

    def validity(self, epoch: float) -> tuple[int, int]:
        """(BeginTime, EndTime) in unix seconds, for an emulator that started at wall time `epoch`."""
        if self.end_time is not None:
            end = self.end_time
        elif self.expires_in_days is not None:
            end = int(epoch + self.expires_in_days * 86400)
        elif self.begin_time is not None:
            end = self.begin_time + DEFAULT_VALIDITY_S
        else:
            end = int(epoch) + DEFAULT_VALIDITY_S
        begin = self.begin_time if self.begin_time is not None else end - DEFAULT_VALIDITY_S
        return begin, end

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": self.type, "domains": list(self.domains)}
        for key in ("name", "subject_cn", "issuer_cn"):
            if getattr(self, key):
                data[key] = getattr(self, key)
        for key in ("begin_time", "end_time", "expires_in_days"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        return data


@dataclass
class ListingQuirk:
    """How a paged listing misbehaves, for tests of the reader (world key `listing_quirks`, by action)."""

    #: pages from this Offset on come back empty while TotalCount still counts every match (None: never)
    empty_from_offset: int | None = None
    #: DescribeProxies answers the older `InstanceSet` only, without `ProxySet`
    instance_set_only: bool = False

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.empty_from_offset is not None:
            data["empty_from_offset"] = self.empty_from_offset
        if self.instance_set_only:
            data["instance_set_only"] = True
        return data


@dataclass
class Faults:
    seed: int = 0
    hang_seconds: float = 30.0
    probabilities: dict[str, float] = field(default_factory=dict)
    #: scripted faults of ModifyCertificate, by domain
    domains: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    storms: list[tuple[float, float]] = field(default_factory=list)
    #: scripted faults of ModifyHTTPSListenerAttribute, by listener
    listeners: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The contract's JSON shape (`faults` of a world file)."""
        return {
            "seed": self.seed,
            "hang_seconds": self.hang_seconds,
            "probabilities": dict(self.probabilities),
            "domains": copy.deepcopy(self.domains),
            "storms": [list(s) for s in self.storms],
            "listeners": copy.deepcopy(self.listeners),
        }


@dataclass
class World:
    """The emulated account. `latency_ms` is (min, max); a request waits half before and half after processing."""

    credentials: dict[str, str]
    listeners: dict[str, ListenerState]
    certificates: dict[str, Certificate]
    rate_limit: int = 20
    task_seconds: float = 0.3
    latency_ms: tuple[float, float] = (20.0, 20.0)
    faults: Faults = field(default_factory=Faults)
    competing_rate: float = 0.0
    clock_offset_s: float = 0.0
    #: how a missing listener is answered: `ResourceNotFound`, or `InvalidParameter` ("ListenerId(…) Not Exist.")
    missing_listener_code: str = "ResourceNotFound"
    #: actions CAM denies this credential account-wide (a sub-account without, say, gaap:DescribeCertificates):
    #: UnauthorizedOperation for every request of them
    denied_actions: list[str] = field(default_factory=list)
    proxies: dict[str, ProxyState] = field(default_factory=dict)
    groups: dict[str, GroupState] = field(default_factory=dict)
    #: paged listings that misbehave (by action), for tests: early empty pages, InstanceSet only
    listing_quirks: dict[str, ListingQuirk] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Any) -> World:
        """Build a world from the contract's JSON shape. Raises WorldError saying which key is wrong."""
        try:
            return _world_from_dict(data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise WorldError(
                f"world file does not follow the world contract: {exc!r} — see batchcert.emulator"
            ) from None

    def attach(self, listener_id: str) -> ListenerState:
        """The listener, given a proxy of its own (`link-…`, see the module docstring) when it names neither a proxy
        nor a group — listeners of older worlds, or added after loading."""
        listener = self.listeners[listener_id]
        if listener.proxy_id is None and listener.group_id is None:
            base = "link-" + listener_id.removeprefix("listener-")
            proxy_id, n = base, 1
            while proxy_id in self.proxies:
                n += 1
                proxy_id = f"{base}-{n}"
            self.proxies[proxy_id] = ProxyState(name=proxy_id, owner=listener_id)
            listener.proxy_id = proxy_id
        return listener

    def attach_all(self) -> None:
        """Synthesize the proxy of every listener that names none (idempotent)."""
        for listener_id in self.listeners:
            self.attach(listener_id)

    def connection(self, listener_id: str) -> Connection:
        """The proxy or group `listener_id` sits on, with the version and status its writes are checked against."""
        listener = self.attach(listener_id)
        if listener.group_id is not None:
            group = self.groups[listener.group_id]
            return Connection("group", listener.group_id, group.version, group.status)
        assert listener.proxy_id is not None  # attach() gave it one
        proxy = self.proxies[listener.proxy_id]
        if proxy.owner is not None:
            return Connection("proxy", listener.proxy_id, listener.proxy_version, listener.proxy_status)
        return Connection("proxy", listener.proxy_id, proxy.version, proxy.status)

    def refusal(self, kind: str, connection_id: str, action: str) -> str | None:
        """The code a proxy's or a group's `refused_actions` answer for `action` on it (None: allowed)."""
        state: ProxyState | GroupState | None = (
            self.proxies.get(connection_id) if kind == "proxy" else self.groups.get(connection_id)
        )
        return state.refused_actions.get(action) if state is not None else None

    def proxy_view(self, proxy_id: str) -> tuple[str, str]:
        """(version, status) of a proxy as DescribeProxies reads it (a synthesized one: its listener's)."""
        proxy = self.proxies[proxy_id]
        owner = self.listeners.get(proxy.owner) if proxy.owner is not None else None
        return (owner.proxy_version, owner.proxy_status) if owner is not None else (proxy.version, proxy.status)

    def effective_certificates(self, listener_id: str, domain: str) -> tuple[str, tuple[str, ...]]:
        """(server certificate, client CAs) a domain serves with: a domain on `default` follows its listener's."""
        listener = self.listeners[listener_id]
        state = listener.domains[domain]
        server = listener.certificate_id if state.certificate_id == DEFAULT_CERTIFICATE else state.certificate_id
        own = [c for c in state.poly_client_certificate_ids or [state.client_certificate_id or ""] if c]
        if not own or own == [DEFAULT_CERTIFICATE]:
            return server, tuple(listener.client_certificate_ids)
        return server, tuple(own)

    def to_dict(self) -> dict[str, Any]:
        """The contract's JSON shape of the current state, with every option (faults, denials, latency, a competing
        client, a skewed clock), so a world saved after a rehearsal behaves as it did; busy timers are not kept.
        Synthesized proxies are not written: their listeners keep `proxy_version`/`proxy_status` as before."""
        return {
            "credentials": dict(self.credentials),
            "rate_limit": self.rate_limit,
            "task_seconds": self.task_seconds,
            "latency_ms": list(self.latency_ms),
            "faults": self.faults.to_dict(),
            "competing_rate": self.competing_rate,
            "clock_offset_s": self.clock_offset_s,
            "proxies": {
                pid: {"name": p.name, "status": p.status, "version": p.version, "group_id": p.group_id}
                | _connection_extras(p)
                for pid, p in self.proxies.items()
                if p.owner is None
            },
            "groups": {
                gid: {"name": g.name, "status": g.status, "version": g.version} | _connection_extras(g)
                for gid, g in self.groups.items()
            },
            "listeners": {lid: self._listener_dict(lid, ls) for lid, ls in self.listeners.items()},
            "certificates": {cid: c.to_dict() for cid, c in self.certificates.items()},
            "missing_listener_code": self.missing_listener_code,
            "denied_actions": list(self.denied_actions),
            "listing_quirks": {action: q.to_dict() for action, q in self.listing_quirks.items()},
        }

    def _listener_dict(self, listener_id: str, ls: ListenerState) -> dict[str, Any]:
        own_proxy = ls.group_id is None and (ls.proxy_id is None or self.proxies[ls.proxy_id].owner == listener_id)
        data: dict[str, Any] = (
            {"proxy_version": ls.proxy_version, "proxy_status": ls.proxy_status}
            if own_proxy
            else {"group_id": ls.group_id}
            if ls.group_id is not None
            else {"proxy_id": ls.proxy_id}
        )
        data |= {
            "certificate_id": ls.certificate_id,
            "protocol": ls.protocol,
            "port": ls.port,
            "auth_type": ls.auth_type,
            "client_certificate_ids": list(ls.client_certificate_ids),
            "forward_protocol": ls.forward_protocol,
        }
        if ls.name:
            data["name"] = ls.name
        if ls.denied_actions:
            data["denied_actions"] = list(ls.denied_actions)
        if ls.task_seconds is not None:
            data["task_seconds"] = ls.task_seconds
        data["domains"] = {
            name: {
                "certificate_id": d.certificate_id,
                "client_certificate_id": d.client_certificate_id,
                "poly_client_certificate_ids": list(d.poly_client_certificate_ids),
                "status": d.status,
            }
            for name, d in ls.domains.items()
        }
        return data


def _connection_extras(state: ProxyState | GroupState) -> dict[str, Any]:
    """The world-file keys of a proxy or group beyond name, status, version (and group_id)."""
    data: dict[str, Any] = {"project_id": state.project_id}
    if state.refused_actions:
        data["refused_actions"] = dict(state.refused_actions)
    return data


def _refused_actions(where: str, spec: dict[str, Any]) -> dict[str, str]:
    """A proxy's or group's `denied_actions` (UnauthorizedOperation) and `refused_actions` (action → code)."""
    refused = {str(action): "UnauthorizedOperation" for action in spec.get("denied_actions") or []}
    for action, code in dict(spec.get("refused_actions") or {}).items():
        if not isinstance(code, str) or not code:
            raise ValueError(
                f"{where}: refused_actions[{action!r}] must be an error code such as UnauthorizedOperation"
            )
        refused[str(action)] = code
    return refused


def _project_id(where: str, spec: dict[str, Any]) -> int:
    value = spec.get("project_id", 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{where}: project_id must be a project number (0: the default project), not {value!r}")
    return value


def _listing_quirks(data: dict[str, Any]) -> dict[str, ListingQuirk]:
    quirks: dict[str, ListingQuirk] = {}
    for action, spec in dict(data.get("listing_quirks") or {}).items():
        if action not in MAX_LIMIT:
            raise ValueError(f"listing_quirks: {action!r} is not a paged listing; known: {', '.join(MAX_LIMIT)}")
        unknown = set(spec) - {"empty_from_offset", "instance_set_only"}
        if unknown:
            raise ValueError(f"listing_quirks[{action!r}]: unknown keys {sorted(unknown)}")
        if spec.get("instance_set_only") and action != ACTION_DESCRIBE_PROXIES:
            raise ValueError(f"listing_quirks[{action!r}]: instance_set_only is for {ACTION_DESCRIBE_PROXIES} only")
        empty = spec.get("empty_from_offset")
        quirks[str(action)] = ListingQuirk(
            empty_from_offset=int(empty) if empty is not None else None,
            instance_set_only=bool(spec.get("instance_set_only", False)),
        )
    return quirks


def _latency_ms(value: Any) -> tuple[float, float]:
    """`latency_ms`: milliseconds, or [min, max] drawn uniformly per request."""
    lo, hi = (float(value[0]), float(value[1])) if isinstance(value, list | tuple) else (float(value), float(value))
    if lo < 0 or hi < lo:
        raise ValueError(f"latency_ms must be ≥ 0 milliseconds, or [min, max] with 0 ≤ min ≤ max, not {value!r}")
    return lo, hi


def _unix_seconds(value: Any, key: str) -> int:
    """A world time: unix seconds, or an ISO 8601 string (UTC when it carries no offset)."""
    if isinstance(value, bool):
        raise TypeError(f"{key} must be unix seconds or an ISO 8601 string")
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str):
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return int(moment.timestamp())
    raise TypeError(f"{key} must be unix seconds or an ISO 8601 string, not {value!r}")


def _certificate_from_dict(cid: str, c: dict[str, Any]) -> Certificate:
    times = {key: _unix_seconds(c[key], f"certificate {cid}: {key}") for key in ("begin_time", "end_time") if key in c}
    expires = c.get("expires_in_days")
    if expires is not None and "end_time" in c:
        raise ValueError(f"certificate {cid}: give end_time or expires_in_days, not both")
    return Certificate(
        type=int(c["type"]),
        domains=[str(x) for x in c.get("domains", [])],
        name=str(c.get("name") or ""),
        subject_cn=str(c.get("subject_cn") or ""),
        issuer_cn=str(c.get("issuer_cn") or ""),
        begin_time=times.get("begin_time"),
        end_time=times.get("end_time"),
        expires_in_days=float(expires) if expires is not None else None,
    )


def _listener_from_dict(lid: str, spec: dict[str, Any], data: dict[str, Any]) -> ListenerState:
    domains = {
        name: DomainState(
            certificate_id=str(d.get("certificate_id") or DEFAULT_CERTIFICATE),
            client_certificate_id=d.get("client_certificate_id"),
            poly_client_certificate_ids=[str(x) for x in d.get("poly_client_certificate_ids") or []],
            status=int(d.get("status", 0)),
        )
        for name, d in dict(spec.get("domains", {})).items()
    }
    proxy_id, group_id = spec.get("proxy_id"), spec.get("group_id")
    if proxy_id is not None and group_id is not None:
        raise ValueError(f"listener {lid} names both proxy_id and group_id — a listener sits on one of them")
    if (proxy_id is not None or group_id is not None) and ("proxy_version" in spec or "proxy_status" in spec):
        raise ValueError(
            f"listener {lid} names a proxy or group and also proxy_version/proxy_status — give those on the proxy"
        )
    if proxy_id is not None:
        proxy = dict(data.get("proxies") or {}).get(proxy_id)
        if proxy is None:
            raise ValueError(f"listener {lid}: proxy_id {proxy_id!r} is not in proxies")
        if proxy.get("group_id") is not None:
            raise ValueError(
                f"listener {lid}: proxy {proxy_id} belongs to group {proxy['group_id']} — give the listener group_id"
            )
    if group_id is not None and group_id not in dict(data.get("groups") or {}):
        raise ValueError(f"listener {lid}: group_id {group_id!r} is not in groups")
    protocol = str(spec.get("protocol", "HTTPS")).upper()
    if protocol not in PROTOCOLS:
        raise ValueError(f"listener {lid}: protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}")
    if protocol in ("TCP", "UDP") and domains:
        raise ValueError(f"listener {lid}: a {protocol} listener has no domains")
    auth_type = int(spec.get("auth_type", 0))
    if auth_type not in (0, 1):
        raise ValueError(f"listener {lid}: auth_type must be 0 (one-way) or 1 (mutual)")
    return ListenerState(
        proxy_version=str(spec.get("proxy_version", "3.0")),
        proxy_status=str(spec.get("proxy_status", "RUNNING")),
        certificate_id=str(spec.get("certificate_id", "")),
        domains=domains,
        denied_actions=[str(a) for a in spec.get("denied_actions", [])],
        task_seconds=float(spec["task_seconds"]) if spec.get("task_seconds") is not None else None,
        proxy_id=str(proxy_id) if proxy_id is not None else None,
        group_id=str(group_id) if group_id is not None else None,
        protocol=protocol,
        port=int(spec.get("port", 443)),
        name=str(spec.get("name") or ""),
        auth_type=auth_type,
        client_certificate_ids=[str(x) for x in spec.get("client_certificate_ids") or []],
        forward_protocol=str(spec.get("forward_protocol", "HTTP")),
    )


def _world_from_dict(data: Any) -> World:
    if not isinstance(data, dict):
        raise TypeError("the world must be a JSON object")
    lo, hi = _latency_ms(data.get("latency_ms", 20))
    groups = {
        str(gid): GroupState(
            name=str(g.get("name") or gid),
            status=str(g.get("status", "RUNNING")),
            version=str(g.get("version", "3.0")),
            project_id=_project_id(f"group {gid}", g),
            refused_actions=_refused_actions(f"group {gid}", g),
        )
        for gid, g in dict(data.get("groups") or {}).items()
    }
    proxies = {}
    for pid, spec in dict(data.get("proxies") or {}).items():
        group_id = spec.get("group_id")
        if group_id is not None and group_id not in groups:
            raise ValueError(f"proxy {pid}: group_id {group_id!r} is not in groups")
        proxies[str(pid)] = ProxyState(
            name=str(spec.get("name") or pid),
            status=str(spec.get("status", "RUNNING")),
            version=str(spec.get("version", "3.0")),
            group_id=str(group_id) if group_id is not None else None,
            project_id=_project_id(f"proxy {pid}", spec),
            refused_actions=_refused_actions(f"proxy {pid}", spec),
        )
    listeners = {
        str(lid): _listener_from_dict(str(lid), dict(spec), data)
        for lid, spec in dict(data.get("listeners", {})).items()
    }
    certificates = {
        str(cid): _certificate_from_dict(str(cid), dict(c)) for cid, c in dict(data.get("certificates", {})).items()
    }
    f = dict(data.get("faults", {}))
    faults = Faults(
        seed=int(f.get("seed", 0)),
        hang_seconds=float(f.get("hang_seconds", 30.0)),
        probabilities={str(k): float(v) for k, v in dict(f.get("probabilities", {})).items()},
        domains={str(k): [dict(x) for x in v] for k, v in dict(f.get("domains", {})).items()},
        storms=[(float(a), float(b)) for a, b in f.get("storms", [])],
        listeners={str(k): [dict(x) for x in v] for k, v in dict(f.get("listeners", {})).items()},
    )
    scripted = [x.get("kind") for script in (faults.domains, faults.listeners) for v in script.values() for x in v]
    for kind in [*faults.probabilities, *scripted]:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(FAULT_KINDS)}")
    world = World(
        credentials={
            str(k): str(v) for k, v in dict(data.get("credentials") or {DEMO_SECRET_ID: DEMO_SECRET_KEY}).items()
        },
        listeners=listeners,
        certificates=certificates,
        rate_limit=int(data.get("rate_limit", 20)),
        task_seconds=float(data.get("task_seconds", 0.3)),
        latency_ms=(lo, hi),
        faults=faults,
        competing_rate=float(data.get("competing_rate", 0.0)),
        clock_offset_s=float(data.get("clock_offset_s", 0.0)),
        missing_listener_code=str(data.get("missing_listener_code", "ResourceNotFound")),
        denied_actions=[str(a) for a in data.get("denied_actions", [])],
        proxies=proxies,
        groups=groups,
        listing_quirks=_listing_quirks(data),
    )
    world.attach_all()
    return world


def load_world(path: Path) -> World:
    """Read a world file. Raises WorldError when it is unreadable or off-contract."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WorldError(f"cannot read world file {path}: {exc} — check the path and that it is JSON") from None
    return World.from_dict(data)


PREVIOUS_CERTIFICATE = "cert-previous0"
LISTENER_CERTIFICATE = "cert-listener0"


def world_for_rows(rows: Iterable[Row], credentials: dict[str, str] | None = None, **knobs: Any) -> World:
    """A world in which every given row would succeed: its listener exists on a running 3.0 proxy of its own
    (`link-…`), on the server certificate `cert-listener0`; a domain row's domain exists (on `cert-previous0`); its
    server certificate is type 2 covering its domain, its client certificates are type 1 (and their listener is
    mutual-TLS). Certificates carry a SubjectCN and the default validity (see the module docstring). `knobs` set
    rate_limit, task_seconds, latency_ms (milliseconds, or (min, max)).

    A row whose `scope` attribute is "listener" (a listener-level change: empty domain) gets its listener and its
    certificates but no domain; rows without that attribute are domain rows."""
    listeners: dict[str, ListenerState] = {}
    certificates: dict[str, Certificate] = {
        PREVIOUS_CERTIFICATE: Certificate(2, []),
        LISTENER_CERTIFICATE: Certificate(2, []),
    }
    for row in rows:
        listener = listeners.setdefault(row.listener_id, ListenerState(certificate_id=LISTENER_CERTIFICATE))
        domain_row = getattr(row, "scope", "domain") != "listener"
        if domain_row:
            listener.domains.setdefault(row.domain, DomainState(certificate_id=PREVIOUS_CERTIFICATE))
            certificates[PREVIOUS_CERTIFICATE].domains.append(row.domain)
        if row.certificate_id != DEFAULT_CERTIFICATE:
            cert = certificates.setdefault(row.certificate_id, Certificate(2, []))
            if domain_row:
                cert.domains.append(row.domain)
        for client_id in (row.client_certificate_id, *row.poly_client_certificate_ids):
            if client_id and client_id != DEFAULT_CERTIFICATE:
                certificates.setdefault(client_id, Certificate(1, []))
                listener.auth_type = 1
    for cid, cert in certificates.items():
        cert.subject_cn = cert.domains[0] if cert.domains else cid
    world = World(
        credentials=credentials or {DEMO_SECRET_ID: DEMO_SECRET_KEY},
        listeners=listeners,
        certificates=certificates,
        latency_ms=_latency_ms(knobs.pop("latency_ms", 20.0)),
        **knobs,
    )
    world.attach_all()
    for proxy in world.proxies.values():
        proxy.owner = None  # written out as real proxies: the rehearsal world a rerun reloads keeps them
    for listener in listeners.values():
        listener.proxy_version, listener.proxy_status = "3.0", "RUNNING"
    return world


# ---------------------------------------------------------------------------------------------------------- server
@dataclass(frozen=True)
class LedgerEntry:
    """One applied change: wall time, where, the certificate state before and after, the answering RequestId.

    `scope` "domain": a ModifyCertificate of `domain`; "listener": a ModifyHTTPSListenerAttribute of the listener's
    own certificates (`domain` is ""; before/after also carry `listener_name` and `forward_protocol`)."""

    time: float
    listener_id: str
    domain: str
    before: dict[str, Any]
    after: dict[str, Any]
    request_id: str
    scope: str = "domain"


class Emulator:
    """The emulated service. `app()` gives the aiohttp application; `ledger` and `stats` are for tests.

    `wall_clock` is the server's clock for signature checks (patch it to emulate skew); windows, tasks and
    latency use the monotonic clock.
    """

    def __init__(self, world: World, wall_clock: Callable[[], float] = time.time) -> None:
        self.world = world
        self.wall_clock: Callable[[], float] = (
            (lambda: wall_clock() + world.clock_offset_s) if world.clock_offset_s else wall_clock
        )
        self.started = monotonic_s()
        self.ledger: list[LedgerEntry] = []
        #: answers given, by code ("OK" for success) — e.g. stats["RequestLimitExceeded"]
        self.stats: Counter[str] = Counter()
        #: (listener, domain) of changes whose task failed and were rolled back (fault `task_fail`)
        self.reverted: list[tuple[str, str]] = []
        #: requests received, by X-TC-Action
        self.requests: Counter[str] = Counter()
        #: monotonic arrival times of admitted requests per (SecretId, action)
        self.admitted: dict[tuple[str, str], deque[float]] = {}
        self._rng = random.Random(world.faults.seed)
        self._scripted = copy.deepcopy(world.faults.domains)
        self._scripted_listeners = copy.deepcopy(world.faults.listeners)
        #: the wall time certificates without dates are placed around (the module docstring, "Certificates")
        self.epoch = self.wall_clock()
        world.attach_all()

    # -- public helpers for tests and tools
    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/", self._handle)
        app.router.add_get("/_emulator/ledger", self._get_ledger)
        app.router.add_get("/_emulator/world", self._get_world)
        app.router.add_get("/_emulator/stats", self._get_stats)
        app.router.add_post("/_emulator/release", self._post_release)
        return app

    def release(self, listener_id: str | None = None) -> None:
        """Free pinned-busy listeners (all, or one) — the fault `ListenerHasTask` with `seconds` < 0 pins them."""
        for lid, listener in self.world.listeners.items():
            if listener_id in (None, lid):
                listener.pinned_busy = False
                listener.busy_until = 0.0

    def max_admitted_in_window(self, action: str, window_s: float = 1.0) -> int:
        """The most requests of `action` admitted within any `window_s` (all credentials summed)."""
        times = sorted(t for (_, act), q in self.admitted.items() if act == action for t in q)
        best, lo = 0, 0
        for hi, t in enumerate(times):
            while t - times[lo] >= window_s:
                lo += 1
            best = max(best, hi - lo + 1)
        return best

    # -- HTTP
    async def _get_ledger(self, _: web.Request) -> web.Response:
        return _json(200, [e.__dict__ for e in self.ledger])

    async def _get_world(self, _: web.Request) -> web.Response:
        return _json(200, self.world.to_dict())

    async def _get_stats(self, _: web.Request) -> web.Response:
        return _json(200, dict(self.stats))

    async def _post_release(self, request: web.Request) -> web.Response:
        self.release(request.query.get("listener"))
        return _json(200, {"released": True})

    def draw_latency_s(self) -> float:
        """This request's latency, half spent before processing and half after."""
        return self._rng.uniform(*self.world.latency_ms) / 1000

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        latency_s = self.draw_latency_s()
        await asyncio.sleep(latency_s / 2)
        request_id = str(uuid.uuid4())
        try:
            try:
                secret_id = self._authenticate(request, body)
            except ApiError as err:
                self.stats[err.code] += 1
                raise
            payload = await self.answer(secret_id, request.headers.get("X-TC-Action", ""), body, request_id)
        except ApiError as err:
            payload = {"Error": {"Code": err.code, "Message": err.message}}
        except HttpFault as fault:
            return web.Response(status=fault.status, text=fault.text, content_type="text/html")
        except ConnectionAborted:
            _reset(request)
            return web.Response(status=500)
        await asyncio.sleep(latency_s / 2)
        payload["RequestId"] = request_id
        response = _json(200, {"Response": payload})
        response.headers["Date"] = formatdate(self.wall_clock(), usegmt=True)  # the server's clock, skew included
        return response

    async def answer(self, secret_id: str, action: str, body: bytes, request_id: str) -> dict[str, Any]:
        """Process an authenticated request — the rate limit, then the action — and return the `Response` payload
        (without RequestId). Raises ApiError for an API error answer, HttpFault / ConnectionAborted for the
        transport faults. Counted in `requests` and `stats`. The HTTP handler and in-process test fakes share it."""
        self.requests[action] += 1
        try:
            self._admit(secret_id, action)
            params = _parse_body(body)
            if action in self.world.denied_actions:
                raise ApiError(
                    "UnauthorizedOperation",
                    f"You are not authorized to perform operation (gaap:{action}) on resource (qcs::gaap::uin/"
                    "100000000001:*).",
                )
            if action == ACTION_MODIFY:
                payload = await self._modify(params, request_id)
            elif action == ACTION_DESCRIBE_RULES:
                payload = self._describe_rules(params)
            elif action == ACTION_DESCRIBE_LISTENERS:
                payload = self._describe_listeners(params, "HTTPS", action)
            elif action == ACTION_DESCRIBE_HTTP_LISTENERS:
                payload = self._describe_listeners(params, "HTTP", action)
            elif action == ACTION_MODIFY_LISTENER:
                payload = await self._modify_listener(params, request_id)
            elif action == ACTION_DESCRIBE_PROXIES:
                payload = self._describe_proxies(params)
            elif action == ACTION_DESCRIBE_GROUPS:
                payload = self._describe_groups(params)
            elif action == ACTION_DESCRIBE_CERTIFICATES:
                payload = self._describe_certificates(params)
            else:
                raise ApiError("InvalidAction", f"The action `{action}` is not supported by gaap.")
        except ApiError as err:
            self.stats[err.code] += 1
            raise
        except HttpFault as fault:
            self.stats[f"fault:{fault.status}"] += 1
            raise
        except ConnectionAborted:
            self.stats["fault:abort"] += 1
            raise
        self.stats["OK"] += 1
        return payload

    # -- checks
    def _authenticate(self, request: web.Request, body: bytes) -> str:
        auth = parse_authorization(request.headers.get("Authorization", ""))
        if auth is None or not {"content-type", "host"} <= set(auth.signed_headers):
            raise ApiError("AuthFailure.SignatureFailure", "The provided credentials could not be validated.")
        secret_key = self.world.credentials.get(auth.secret_id)
        if secret_key is None:
            raise ApiError(
                "AuthFailure.SecretIdNotFound",
                "The SecretId is not found, please ensure that your SecretId is correct.",
            )
        raw_ts = request.headers.get("X-TC-Timestamp", "")
        if not raw_ts.isdigit():
            raise ApiError("MissingParameter", "The request is missing a valid X-TC-Timestamp header.")
        timestamp = int(raw_ts)
        if abs(self.wall_clock() - timestamp) > SIGNATURE_WINDOW_S:
            raise ApiError(
                "AuthFailure.SignatureExpire",
                f"Signature expired. Timestamp {timestamp} is more than {SIGNATURE_WINDOW_S}s from server time.",
            )
        if request.headers.get("X-TC-Version", "") != API_VERSION:
            raise ApiError(
                "NoSuchVersion",
                f"The API version `{request.headers.get('X-TC-Version', '')}` does not exist.",
            )
        headers = tuple((name, request.headers.get(name, "").strip()) for name in auth.signed_headers)
        canonical = canonical_request(body, "", "", signed_headers=headers)
        expected = signature(secret_key, timestamp, SERVICE, string_to_sign(canonical, timestamp, SERVICE))
        scope_ok = auth.date == utc_date(timestamp) and auth.service == SERVICE
        if not scope_ok or not hmac.compare_digest(expected, auth.signature):
            raise ApiError("AuthFailure.SignatureFailure", "The provided credentials could not be validated.")
        return auth.secret_id

    def _admit(self, secret_id: str, action: str) -> None:
        now = monotonic_s()
        since_start = now - self.started
        if any(start <= since_start < start + length for start, length in self.world.faults.storms):
            raise ApiError(
                "RequestLimitExceeded",
                f"Your current request times equals to `{self.world.rate_limit + 1}` in a second, which exceeds the "
                f"frequency limit `{self.world.rate_limit}` for a second.",
            )
        window = self.admitted.setdefault((secret_id, action), deque())
        while window and window[0] <= now - 1.0:
            window.popleft()
        used = len(window) + self._competing_in_window(now)
        if used >= self.world.rate_limit:
            raise ApiError(
                "RequestLimitExceeded",
                f"Your current request times equals to `{used + 1}` in a second, which exceeds the frequency "
                f"limit `{self.world.rate_limit}` for a second.",
            )
        window.append(now)

    def _competing_in_window(self, now: float) -> int:
        """Requests another client of the same account admitted in the last second, evenly spread."""
        if not self.world.competing_rate:
            return 0
        period = 1.0 / self.world.competing_rate
        # their requests land at k × period; count those in (now-1, now]
        return int(now // period) - int((now - 1.0) // period)

    def _next_fault(self, key: str, scripts: dict[str, list[dict[str, Any]]] | None = None) -> dict[str, Any] | None:
        """The fault scripted for `key` (a domain; a listener with `scripts` = the listener scripts), else a drawn one."""
        script = (self._scripted if scripts is None else scripts).get(key)
        if script and script[0].get("kind") in _APPLY_FAULTS:
            return None  # taken by the change that is applied (`_take_apply_fault`), not by a refused attempt
        if script:
            fault = script[0]
            fault["times"] = int(fault.get("times", 1)) - 1
            if fault["times"] <= 0:
                script.pop(0)
            return fault
        draw = self._rng.random()
        for kind, p in self.world.faults.probabilities.items():
            if draw < p:
                return {"kind": kind}
            draw -= p
        return None

    async def _modify(self, params: dict[str, Any], request_id: str) -> dict[str, Any]:
        unknown = sorted(set(params) - _MODIFY_PARAMS)
        if unknown:
            raise ApiError("UnknownParameter", f"The parameter `{unknown[0]}` is not recognized.")
        for name in ("ListenerId", "Domain", "CertificateId"):
            if name not in params:
                raise ApiError("MissingParameter", f"The request is missing a required parameter `{name}`.")
        for name in ("ListenerId", "Domain", "CertificateId", "ClientCertificateId"):
            if name in params and not isinstance(params[name], str):
                raise ApiError("InvalidParameter", f"The parameter `{name}` must be a string.")
        client_id, poly = _client_params(params)

        listener_id, domain_name, cert_id = params["ListenerId"], params["Domain"], params["CertificateId"]
        fault = self._next_fault(domain_name)
        kind = fault["kind"] if fault else None
        await self._answer_fault(fault)

        listener = self._https_listener(listener_id, ACTION_MODIFY)
        now = monotonic_s()
        if kind == "changing" and domain_name in listener.domains:
            listener.domains[domain_name].changing_until = now + float(fault.get("seconds", 1.0))  # type: ignore[union-attr]
        if kind == "ListenerHasTask":
            self._hold_busy(listener, fault, now)
        connection = self.world.connection(listener_id)
        if connection.version != "3.0":
            raise ApiError(
                "FailedOperation.ProxyVersionNotSupport",
                "This operation is only supported on version 3.0 connections.",
            )
        if connection.status != "RUNNING":
            if connection.kind == "group":
                raise ApiError("FailedOperation.GroupStatusNotInRuning", "The connection group is not running.")
            raise ApiError("FailedOperation.ProxyStatusNotInRuning", "The connection is not running.")
        if listener.pinned_busy or now < listener.busy_until:
            raise ApiError("FailedOperation.ListenerHasTask", "The listener has a task in progress; try again later.")
        domain = listener.domains.get(domain_name)
        if domain is None:
            raise ApiError(
                "ResourceNotFound", f"The domain `{domain_name}` does not exist on listener `{listener_id}`."
            )
        if domain.status != 0 or now < domain.changing_until:
            raise ApiError("FailedOperation.DomainStatusNotInRunning", "The domain is not in the running state.")
        self._check_certificate(cert_id, 2, "CertificateId")
        for cid in [client_id] if client_id else list(poly or []):
            self._check_certificate(cid, 1, "ClientCertificateId" if client_id else "PolyClientCertificateIds")
        if cert_id != DEFAULT_CERTIFICATE and not domain_covered(self.world.certificates[cert_id].domains, domain_name):
            raise ApiError(
                "InvalidParameterValue.CertificateNotMatchDomain",
                f"The certificate `{cert_id}` does not match the domain `{domain_name}`.",
            )

        before = _cert_state(domain)
        domain.certificate_id = cert_id
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
        task_s = self.world.task_seconds if listener.task_seconds is None else listener.task_seconds
        listener.busy_until = now + task_s
        domain.changing_until = now + task_s
        self.ledger.append(
            LedgerEntry(self.wall_clock(), listener_id, domain_name, before, _cert_state(domain), request_id)
        )
        if kind == "task_fail" or self._take_apply_fault(domain_name) == "task_fail":
            # accepted, then the task fails and the change is rolled back when it ends
            domain.changing_until = float("inf")  # changing until the rollback is done, never idle at the target
            asyncio.get_running_loop().call_later(task_s, self._revert, listener_id, domain_name, before)
        if kind == "apply_then_hang":
            await asyncio.sleep(self.world.faults.hang_seconds)
            raise ConnectionAborted
        return {}

    async def _answer_fault(self, fault: dict[str, Any] | None) -> None:
        """Answer a fault that acts before anything is looked at: errors, gateway pages, dropped connections."""
        kind = fault["kind"] if fault else None
        if kind == "InternalError":
            raise ApiError("InternalError", "An internal error has occurred. Retry your request.")
        if kind == "http502":
            raise HttpFault(502, "<html><body><h1>502 Bad Gateway</h1></body></html>")
        if kind == "reset":
            raise ConnectionAborted
        if kind == "hang":
            await asyncio.sleep(self.world.faults.hang_seconds)
            raise ConnectionAborted
        if kind == "code" and fault is not None:
            raise ApiError(str(fault["code"]), str(fault.get("message", "The operation failed; try again later.")))

    @staticmethod
    def _hold_busy(listener: ListenerState, fault: dict[str, Any] | None, now: float) -> None:
        """Fault `ListenerHasTask`: the listener stays busy for the fault's `seconds` (< 0: until released)."""
        seconds = float((fault or {}).get("seconds", 1.0))
        listener.pinned_busy = listener.pinned_busy or seconds < 0
        listener.busy_until = max(listener.busy_until, now + max(seconds, 0))

    def _take_apply_fault(self, key: str, scripts: dict[str, list[dict[str, Any]]] | None = None) -> str | None:
        """The kind of a scripted fault that acts on an applied change (`task_fail`), consumed now."""
        script = (self._scripted if scripts is None else scripts).get(key)
        if not script or script[0].get("kind") not in _APPLY_FAULTS:
            return None
        fault = script[0]
        fault["times"] = int(fault.get("times", 1)) - 1
        if fault["times"] <= 0:
            script.pop(0)
        return str(fault["kind"])

    def remaining_faults(self) -> Faults:
        """The world's faults with the scripted ones this emulator has not consumed yet: what a world saved after a
        rehearsal keeps, so its rerun meets what is left, not the whole script again."""
        return dataclasses.replace(
            self.world.faults,
            domains=copy.deepcopy({k: v for k, v in self._scripted.items() if v}),
            listeners=copy.deepcopy({k: v for k, v in self._scripted_listeners.items() if v}),
        )

    def _revert(self, listener_id: str, domain_name: str, before: dict[str, Any]) -> None:
        domain = self.world.listeners[listener_id].domains[domain_name]
        domain.certificate_id = before["certificate_id"]
        domain.client_certificate_id = before["client_certificate_id"]
        domain.poly_client_certificate_ids = list(before["poly_client_certificate_ids"])
        domain.changing_until = 0.0
        self.reverted.append((listener_id, domain_name))

    def _listener(self, listener_id: str, action: str) -> ListenerState:
        """The listener, as this credential may use it: absent (answered as the world says) or denied by CAM."""
        listener = self.world.listeners.get(listener_id)
        if listener is None:
            raise self._missing_listener(listener_id)
        if action in listener.denied_actions:
            raise ApiError(
                "AuthFailure.UnauthorizedOperation",
                f"You are not authorized to perform operation (gaap:{action}) on resource "
                f"(qcs::gaap::uin/100000000001:listener/{listener_id}).",
            )
        connection = self.world.connection(listener_id)
        self._refuse_on(connection.kind, connection.id, action)
        return listener

    def _refuse_on(self, kind: str, connection_id: str, action: str) -> None:
        """Answer the code the proxy's or group's `refused_actions` name for `action` (CAM scoped to some connections,
        or a connection the action does not support), if any."""
        code = self.world.refusal(kind, connection_id, action)
        if code is None:
            return
        what = "connection" if kind == "proxy" else "connection group"
        resource = f"qcs::gaap::uin/100000000001:{'proxy' if kind == 'proxy' else 'proxyGroup'}/{connection_id}"
        denied = f"You are not authorized to perform operation (gaap:{action}) on resource ({resource})."
        messages = {
            "UnauthorizedOperation": denied,
            "AuthFailure.UnauthorizedOperation": denied,
            "FailedOperation.NotSupportProxyGroup": f"The connection group `{connection_id}` does not support {action}.",
            "FailedOperation.NotSupportOldVersionProxy": (
                f"The {what} `{connection_id}` is of an old version that does not support {action}."
            ),
            "ResourceNotFound": f"The {what} `{connection_id}` does not exist.",
        }
        raise ApiError(code, messages.get(code, f"{action} failed on the {what} `{connection_id}`."))

    def _paged(self, action: str, matches: list[T], offset: int, limit: int) -> list[T]:
        """One page of `matches` — empty from the world's `listing_quirks` offset on, TotalCount untouched."""
        quirk = self.world.listing_quirks.get(action)
        if quirk is not None and quirk.empty_from_offset is not None and offset >= quirk.empty_from_offset:
            return []
        return matches[offset : offset + limit]

    def _https_listener(self, listener_id: str, action: str) -> ListenerState:
        """The listener for an action on HTTPS listeners: one of another protocol answers as a missing listener."""
        listener = self._listener(listener_id, action)
        if listener.protocol != "HTTPS":
            raise self._missing_listener(listener_id)
        return listener

    def _missing_listener(self, listener_id: str) -> ApiError:
        if self.world.missing_listener_code == "InvalidParameter":
            return ApiError("InvalidParameter", f"ListenerId({listener_id}) Not Exist.")
        return ApiError("ResourceNotFound", f"The listener `{listener_id}` does not exist.")

    def _check_certificate(self, cert_id: str, cert_type: int, param: str) -> None:
        if cert_id == DEFAULT_CERTIFICATE:
            return
        cert = self.world.certificates.get(cert_id)
        if cert is None:
            raise ApiError("InvalidParameterValue", f"The {param} `{cert_id}` does not exist.")
        if cert.type != cert_type:
            raise ApiError(
                "InvalidParameterValue",
                f"The {param} `{cert_id}` is of type {cert.type}, expected {cert_type}.",
            )

    def _listener_or_404(self, params: dict[str, Any], allowed: set[str]) -> tuple[str, ListenerState]:
        unknown = sorted(set(params) - allowed)
        if unknown:
            raise ApiError("UnknownParameter", f"The parameter `{unknown[0]}` is not recognized.")
        listener_id = params.get("ListenerId")
        if not isinstance(listener_id, str) or not listener_id:
            raise ApiError("MissingParameter", "The request is missing a required parameter `ListenerId`.")
        return listener_id, self._listener(listener_id, ACTION_DESCRIBE_RULES)

    def _describe_rules(self, params: dict[str, Any]) -> dict[str, Any]:
        _, listener = self._listener_or_404(params, {"ListenerId"})
        now = monotonic_s()
        rule_sets = [
            {
                "Domain": name,
                "RuleSet": [],
                "CertificateId": d.certificate_id,
                "CertificateAlias": None,
                # a domain on its listener's client CA shows the literal `default` (tccli's DescribeRules example)
                "ClientCertificateId": d.client_certificate_id or DEFAULT_CERTIFICATE,
                "ClientCertificateAlias": None,
                "PolyClientCertificateAliasInfo": [
                    {"CertificateId": c, "CertificateAlias": None} for c in d.poly_client_certificate_ids
                ]
                or [{"CertificateId": DEFAULT_CERTIFICATE, "CertificateAlias": "默认证书"}],
                "BasicAuth": 0,
                "RealServerAuth": 0,
                "GaapAuth": 0,
                "DomainStatus": 1 if (d.status == 0 and now < d.changing_until) else d.status,
                "BanStatus": 0,
                "IsDefaultServer": False,
            }
            for name, d in listener.domains.items()
        ]
        return {"DomainRuleSet": rule_sets, "TotalCount": len(rule_sets)}

    # -- listings (docs/gaap-api.md, "Inventory and listener certificates")
    @staticmethod
    def _params(params: dict[str, Any], allowed: set[str], strings: Iterable[str] = ()) -> None:
        """Refuse unknown parameters and string parameters of another type."""
        unknown = sorted(set(params) - allowed)
        if unknown:
            raise ApiError("UnknownParameter", f"The parameter `{unknown[0]}` is not recognized.")
        for name in strings:
            if params.get(name) is not None and not isinstance(params[name], str):
                raise ApiError("InvalidParameter", f"The parameter `{name}` must be a string.")

    @staticmethod
    def _integer(params: dict[str, Any], name: str, default: int | None) -> int | None:
        value = params.get(name)
        if value is None:
            return default
        if not isinstance(value, int) or isinstance(value, bool):
            raise ApiError("InvalidParameter", f"The parameter `{name}` must be an integer.")
        return value

    def _page(self, params: dict[str, Any], action: str) -> tuple[int, int]:
        """(Offset, Limit) of a paged listing: Offset ≥ 0, 1 ≤ Limit ≤ the action's maximum (MAX_LIMIT)."""
        offset = self._integer(params, "Offset", 0)
        limit = self._integer(params, "Limit", DEFAULT_LIMIT)
        assert offset is not None and limit is not None
        if offset < 0:
            raise ApiError("InvalidParameterValue", f"The value of `Offset` ({offset}) must not be negative.")
        top = MAX_LIMIT[action]
        if not 1 <= limit <= top:
            raise ApiError("InvalidParameterValue", f"The value of `Limit` ({limit}) must be between 1 and {top}.")
        return offset, limit

    @staticmethod
    def _string_list(params: dict[str, Any], name: str, most: int) -> list[str] | None:
        value = params.get(name)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
            raise ApiError("InvalidParameter", f"The parameter `{name}` must be a list of strings.")
        if len(value) > most:
            raise ApiError("InvalidParameterValue", f"The parameter `{name}` takes at most {most} values.")
        return list(value)

    @staticmethod
    def _filters(params: dict[str, Any], names: set[str]) -> dict[str, list[str]]:
        """`Filters` as {Name: Values}: at most 10 filters of at most 5 values each (DescribeProxiesRequest)."""
        raw = params.get("Filters")
        if raw is None:
            return {}
        if not isinstance(raw, list) or len(raw) > 10:
            raise ApiError("InvalidParameterValue", "The parameter `Filters` takes a list of at most 10 filters.")
        out: dict[str, list[str]] = {}
        for item in raw:
            name, values = (item.get("Name"), item.get("Values")) if isinstance(item, dict) else (None, None)
            if name not in names:
                raise ApiError("InvalidParameterValue", f"The filter name `{name}` is not supported.")
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values) or len(values) > 5:
                raise ApiError("InvalidParameterValue", f"The filter `{name}` takes a list of at most 5 strings.")
            out.setdefault(name, []).extend(values)
        return out

    def _alias(self, cert_id: str | None) -> str | None:
        cert = self.world.certificates.get(cert_id or "")
        return (cert.name or cert_id) if cert is not None else None

    def _describe_listeners(self, params: dict[str, Any], protocol: str, action: str) -> dict[str, Any]:
        """DescribeHTTPSListeners / DescribeHTTPListeners: by ListenerId, ProxyId or GroupId (at least one; not both
        of the last two), exact ListenerName and Port, fuzzy SearchValue; paged."""
        self._params(params, _LISTENER_FILTERS, ("ListenerId", "ProxyId", "GroupId", "ListenerName", "SearchValue"))
        listener_id, proxy_id, group_id = params.get("ListenerId"), params.get("ProxyId"), params.get("GroupId")
        if not (listener_id or proxy_id or group_id):
            raise ApiError("MissingParameter", "At least one of `ListenerId`, `ProxyId` and `GroupId` is required.")
        if proxy_id and group_id:
            raise ApiError("InvalidParameter", "`ProxyId` and `GroupId` cannot both be set.")
        port = self._integer(params, "Port", None)
        self._integer(params, "Http3Supported", None)
        offset, limit = self._page(params, action)
        if listener_id:
            listener = self._listener(listener_id, action)
            if listener.protocol != protocol:
                raise self._missing_listener(listener_id)
            candidates = [(listener_id, self.world.attach(listener_id))]
        else:
            self.world.attach_all()
            candidates = [(lid, ls) for lid, ls in self.world.listeners.items() if ls.protocol == protocol]
        if proxy_id and proxy_id not in self.world.proxies:
            raise ApiError("ResourceNotFound", f"The connection `{proxy_id}` does not exist.")
        if group_id and group_id not in self.world.groups:
            raise ApiError("ResourceNotFound", f"The connection group `{group_id}` does not exist.")
        if proxy_id:
            self._refuse_on("proxy", proxy_id, action)
        if group_id:
            self._refuse_on("group", group_id, action)
        name, search = params.get("ListenerName"), params.get("SearchValue")
        matches = [
            (lid, ls)
            for lid, ls in candidates
            if (not proxy_id or (ls.group_id is None and ls.proxy_id == proxy_id))
            and (not group_id or ls.group_id == group_id)
            and (name is None or (ls.name or lid) == name)
            and (port is None or ls.port == port)
            and (not search or search in (ls.name or lid) or search == str(ls.port))
        ]
        return {
            "TotalCount": len(matches),
            "ListenerSet": [self._listener_item(lid, ls) for lid, ls in self._paged(action, matches, offset, limit)],
        }

    def _listener_item(self, listener_id: str, ls: ListenerState) -> dict[str, Any]:
        """One HTTPSListener / HTTPListener as py-sdk models.py names its fields."""
        busy = ls.pinned_busy or monotonic_s() < ls.busy_until
        item: dict[str, Any] = {
            "ListenerId": listener_id,
            "ListenerName": ls.name or listener_id,
            "Port": ls.port,
            "Protocol": ls.protocol,
            "ListenerStatus": 4 if busy else 0,
            "CreateTime": CREATED_AT,
            "ProxyId": ls.proxy_id if ls.group_id is None else None,
            "GroupId": ls.group_id,
        }
        if ls.protocol == "HTTPS":
            clients = ls.client_certificate_ids
            item |= {
                "CertificateId": ls.certificate_id,
                "CertificateAlias": self._alias(ls.certificate_id),
                "ForwardProtocol": ls.forward_protocol,
                "AuthType": ls.auth_type,
                "ClientCertificateId": clients[0] if clients else None,
                "ClientCertificateAlias": self._alias(clients[0]) if clients else None,
                "PolyClientCertificateAliasInfo": [
                    {"CertificateId": c, "CertificateAlias": self._alias(c)} for c in clients
                ],
                "Http3Supported": 0,
            }
        return item

    def _describe_proxies(self, params: dict[str, Any]) -> dict[str, Any]:
        """DescribeProxies: by ProxyIds (or the older InstanceIds) or Filters (GroupId, ProjectId applied; the other
        documented names accepted), Independent (1: proxies outside groups, 0: in groups); paged; InstanceSet and
        ProxySet carry the same proxies."""
        self._params(params, _PROXIES_PARAMS, ("Order", "OrderField"))
        offset, limit = self._page(params, ACTION_DESCRIBE_PROXIES)
        wanted = self._string_list(params, "ProxyIds", 100)
        legacy = self._string_list(params, "InstanceIds", 100)
        filters = self._filters(params, _PROXY_FILTER_NAMES)
        if (wanted is not None or legacy is not None) and filters:
            raise ApiError("InvalidParameter", "`ProxyIds`/`InstanceIds` and `Filters` cannot both be set.")
        wanted = wanted if wanted is not None else legacy
        independent = self._integer(params, "Independent", None)
        self.world.attach_all()
        matches = [
            (pid, proxy)
            for pid, proxy in self.world.proxies.items()
            if (wanted is None or pid in wanted)
            and (independent is None or (proxy.group_id is None) == (independent == 1))
            and ("GroupId" not in filters or proxy.group_id in filters["GroupId"])
            and ("ProjectId" not in filters or str(proxy.project_id) in filters["ProjectId"])
        ]
        page = self._paged(ACTION_DESCRIBE_PROXIES, matches, offset, limit)
        items = [self._proxy_item(pid, proxy) for pid, proxy in page]
        quirk = self.world.listing_quirks.get(ACTION_DESCRIBE_PROXIES)
        if quirk is not None and quirk.instance_set_only:
            return {"TotalCount": len(matches), "InstanceSet": items}
        return {"TotalCount": len(matches), "InstanceSet": items, "ProxySet": copy.deepcopy(items)}

    def _proxy_item(self, proxy_id: str, proxy: ProxyState) -> dict[str, Any]:
        """One ProxyInfo (py-sdk models.py); fields the world does not model carry fixed, plausible values."""
        version, status = self.world.proxy_view(proxy_id)
        return {
            "InstanceId": proxy_id,
            "ProxyId": proxy_id,
            "ProxyName": proxy.name or proxy_id,
            "Status": status,
            "Version": version,
            "GroupId": proxy.group_id,
            "CreateTime": CREATED_AT,
            "ProjectId": proxy.project_id,
            "AccessRegion": _ACCESS_REGION["RegionId"],
            "RealServerRegion": _REAL_SERVER_REGION["RegionId"],
            "AccessRegionInfo": dict(_ACCESS_REGION),
            "RealServerRegionInfo": dict(_REAL_SERVER_REGION),
            "Bandwidth": 10,
            "Concurrent": 2,
            "Domain": f"{proxy_id}.gaap.emulator.invalid",
            "IP": "",
            "Scalarable": 1,
            "SupportProtocols": list(PROTOCOLS),
            "PolicyId": None,
            "ForwardIP": "",
            "TagSet": [],
            "IPAddressVersion": "IPv4",
            "NetworkType": "normal",
            "PackageType": "Thunder",
            "BanStatus": "RECOVER",
            "IPList": [],
        }

    def _describe_groups(self, params: dict[str, Any]) -> dict[str, Any]:
        """DescribeProxyGroupList: ProjectId -1 lists every project's groups, another number that project's; an
        absent ProjectId lists the default project's (0) only — the adversarial reading of a parameter the reference
        gives no default (docs/gaap-api.md, "Inventory and listener certificates"); paged."""
        self._params(params, _GROUPS_PARAMS)
        offset, limit = self._page(params, ACTION_DESCRIBE_GROUPS)
        project = self._integer(params, "ProjectId", 0)
        self._filters(params, {"RealServerRegion", "PackageType"})
        matches = [(gid, g) for gid, g in self.world.groups.items() if project in (-1, g.project_id)]
        items: list[dict[str, Any]] = [
            {
                "GroupId": gid,
                "GroupName": group.name or gid,
                "Domain": None,
                "ProjectId": group.project_id,
                "RealServerRegionInfo": dict(_REAL_SERVER_REGION),
                "Status": group.status,
                "TagSet": [],
                "Version": group.version,
                "CreateTime": CREATED_AT,
                "ProxyType": 0,
                "Http3Supported": 0,
            }
            for gid, group in self._paged(ACTION_DESCRIBE_GROUPS, matches, offset, limit)
        ]
        return {"TotalCount": len(matches), "ProxyGroupList": items}

    def _describe_certificates(self, params: dict[str, Any]) -> dict[str, Any]:
        """DescribeCertificates: CertificateType -1 (default) or absent lists every type; paged; never key material.
        Times are integer unix seconds (py-sdk models.py, Certificate.BeginTime/EndTime)."""
        self._params(params, _CERTIFICATES_PARAMS)
        offset, limit = self._page(params, ACTION_DESCRIBE_CERTIFICATES)
        wanted = self._integer(params, "CertificateType", -1)
        if wanted != -1 and wanted not in CERTIFICATE_TYPES:
            raise ApiError("InvalidParameterValue", f"The value of `CertificateType` ({wanted}) is not supported.")
        matches = [(cid, c) for cid, c in self.world.certificates.items() if wanted in (-1, c.type)]
        items: list[dict[str, Any]] = []
        for cid, cert in self._paged(ACTION_DESCRIBE_CERTIFICATES, matches, offset, limit):
            begin, end = cert.validity(self.epoch)
            items.append(
                {
                    "CertificateId": cid,
                    "CertificateName": cert.name or cid,
                    "CertificateAlias": cert.name or cid,
                    "CertificateType": cert.type,
                    "CreateTime": begin,
                    "BeginTime": begin,
                    "EndTime": end,
                    "IssuerCN": cert.issuer_cn or "batchcert emulator CA",
                    "SubjectCN": cert.subject_cn or (cert.domains[0] if cert.domains else cid),
                }
            )
        return {"TotalCount": len(matches), "CertificateSet": items}

    # -- a listener's own certificates
    async def _modify_listener(self, params: dict[str, Any], request_id: str) -> dict[str, Any]:
        """ModifyHTTPSListenerAttribute (CN docs 36996): a listener's name, forward protocol, server certificate and
        client CAs, applied as a listener task like ModifyCertificate. ProxyId is required for a listener on a single
        proxy (and must be its proxy); a group listener takes none. Version 1.0 proxies and groups are refused."""
        self._params(
            params,
            _MODIFY_LISTENER_PARAMS,
            ("ListenerId", "ProxyId", "ListenerName", "ForwardProtocol", "CertificateId", "ClientCertificateId"),
        )
        if not params.get("ListenerId"):
            raise ApiError("MissingParameter", "The request is missing a required parameter `ListenerId`.")
        client_id, poly = _client_params(params)

        listener_id: str = params["ListenerId"]
        fault = self._next_fault(listener_id, self._scripted_listeners)
        kind = fault["kind"] if fault else None
        await self._answer_fault(fault)
        listener = self._https_listener(listener_id, ACTION_MODIFY_LISTENER)
        now = monotonic_s()
        if kind in ("ListenerHasTask", "changing"):
            self._hold_busy(listener, fault, now)
        self._check_connection(listener_id, params.get("ProxyId") or None)
        if listener.pinned_busy or now < listener.busy_until:
            raise ApiError("FailedOperation.ListenerHasTask", "The listener has a task in progress; try again later.")
        cert_id = params.get("CertificateId") or None
        clients = [client_id] if client_id else list(poly or [])
        for cid, cert_type, param in [
            *([(cert_id, 2, "CertificateId")] if cert_id else []),
            *((c, 1, "ClientCertificateId" if client_id else "PolyClientCertificateIds") for c in clients),
        ]:
            if cid == DEFAULT_CERTIFICATE:
                raise ApiError("InvalidParameterValue", f"The {param} of a listener cannot be `default`.")
            self._check_certificate(cid, cert_type, param)
        if clients and listener.auth_type != 1:
            raise ApiError(
                "InvalidParameterValue",
                f"The listener `{listener_id}` uses one-way authentication: client CA certificates need mutual.",
            )
        forward = params.get("ForwardProtocol")
        if forward is not None and forward not in ("HTTP", "HTTPS"):
            raise ApiError("InvalidParameterValue", f"The ForwardProtocol `{forward}` is not HTTP or HTTPS.")
        name = params.get("ListenerName")
        if name is not None and not name.strip():
            raise ApiError("InvalidParameterValue", "The ListenerName cannot be empty.")

        before = _listener_state(listener)
        listener.certificate_id = cert_id or listener.certificate_id
        listener.client_certificate_ids = clients or listener.client_certificate_ids
        listener.forward_protocol = forward or listener.forward_protocol
        listener.name = name if name is not None else listener.name
        task_s = self.world.task_seconds if listener.task_seconds is None else listener.task_seconds
        listener.busy_until = now + task_s
        self.ledger.append(
            LedgerEntry(
                self.wall_clock(), listener_id, "", before, _listener_state(listener), request_id, scope="listener"
            )
        )
        if kind == "task_fail" or self._take_apply_fault(listener_id, self._scripted_listeners) == "task_fail":
            asyncio.get_running_loop().call_later(task_s, self._revert_listener, listener_id, before)
        if kind == "apply_then_hang":
            await asyncio.sleep(self.world.faults.hang_seconds)
            raise ConnectionAborted
        return {}

    def _check_connection(self, listener_id: str, proxy_id: str | None) -> None:
        """The connection rules of ModifyHTTPSListenerAttribute (go-sdk client.go lists these codes for it)."""
        connection = self.world.connection(listener_id)
        if connection.kind == "proxy":
            if proxy_id is None:
                raise ApiError(
                    "MissingParameter",
                    f"The request is missing a required parameter `ProxyId` (listener `{listener_id}` is on a "
                    "single connection).",
                )
            if proxy_id != connection.id:
                if proxy_id not in self.world.proxies:
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

    def _revert_listener(self, listener_id: str, before: dict[str, Any]) -> None:
        listener = self.world.listeners[listener_id]
        listener.certificate_id = before["certificate_id"]
        listener.client_certificate_ids = list(before["poly_client_certificate_ids"])
        listener.name = before["listener_name"]
        listener.forward_protocol = before["forward_protocol"]
        self.reverted.append((listener_id, ""))


class ConnectionAborted(Exception):
    """Drop the connection without an answer (reset / hang faults)."""


class HttpFault(Exception):
    """Answer with a non-200 status and a non-API body, as a gateway in front of the service does."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(status)
        self.status, self.text = status, text


def _client_params(params: dict[str, Any]) -> tuple[str | None, list[str] | None]:
    """(ClientCertificateId, PolyClientCertificateIds) of a write, checked as the service does: a list of strings,
    and not both."""
    poly = params.get("PolyClientCertificateIds")
    if poly is not None and (not isinstance(poly, list) or not all(isinstance(x, str) for x in poly)):
        raise ApiError("InvalidParameter", "The parameter `PolyClientCertificateIds` must be a list of strings.")
    client_id = params.get("ClientCertificateId") or None
    if client_id and poly:
        raise ApiError("InvalidParameter", "ClientCertificateId and PolyClientCertificateIds cannot both be set.")
    return client_id, poly


def monotonic_s() -> float:
    """The running event loop's clock — tests may run the loop on virtual time — else `time.monotonic`, which is
    the clock asyncio's own loops use. Listener tasks, the rate window and latency all use it."""
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        return time.monotonic()


def _listener_state(listener: ListenerState) -> dict[str, Any]:
    """A listener's own certificate state for the ledger (the keys of `_cert_state`, and its name and forwarding)."""
    return {
        "certificate_id": listener.certificate_id,
        "client_certificate_id": listener.client_certificate_ids[0] if listener.client_certificate_ids else None,
        "poly_client_certificate_ids": list(listener.client_certificate_ids),
        "listener_name": listener.name,
        "forward_protocol": listener.forward_protocol,
    }


def _cert_state(domain: DomainState) -> dict[str, Any]:
    return {
        "certificate_id": domain.certificate_id,
        "client_certificate_id": domain.client_certificate_id,
        "poly_client_certificate_ids": list(domain.poly_client_certificate_ids),
    }


def _parse_body(body: bytes) -> dict[str, Any]:
    try:
        params = json.loads(body or b"{}")
    except ValueError:
        raise ApiError("InvalidParameter", "The request body is not valid JSON.") from None
    if not isinstance(params, dict):
        raise ApiError("InvalidParameter", "The request body must be a JSON object.")
    return params


def _json(status: int, payload: Any) -> web.Response:
    # The real service answers `application/json` with no charset; the SDK reads errors only under that exact type.
    return web.Response(
        status=status, body=json.dumps(payload).encode("utf-8"), headers={"Content-Type": "application/json"}
    )


def _reset(request: web.Request) -> None:
    """Abort the TCP connection with RST (SO_LINGER 0), so the client sees a connection reset."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


@contextlib.asynccontextmanager
async def serve(
    world: World, host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None, **kwargs: Any
) -> AsyncIterator[tuple[str, Emulator]]:
    """Serve an emulator on `host:port` (0 = any free port) for the duration of the block; https when an
    `ssl_context` is given.

    Yields (base URL such as `http://127.0.0.1:40123`, the Emulator). Pending handlers are cancelled on exit.
    """
    emulator = Emulator(world, **kwargs)
    runner = web.AppRunner(emulator.app(), access_log=None, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    await site.start()
    bound = runner.addresses[0]
    scheme = "https" if ssl_context else "http"
    try:
        yield f"{scheme}://{host}:{bound[1]}", emulator
    finally:
        await runner.cleanup()
