"""The records an emulated account is made of: proxies and groups (connections), listeners and their domains (with
what the TLS edge serves for each, `ServedChange`), certificates, and the listing quirks of paged reads. `world.World`
holds them; the world file's keys for each are documented in `world`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: a listener's `protocol`: only HTTPS listeners take the certificate actions
PROTOCOLS = ("HTTPS", "HTTP", "TCP", "UDP")
#: the validity a certificate has when the world gives none, around the emulator's start (`Certificate.validity`)
DEFAULT_VALIDITY_S = 365 * 86400
#: a certificate's `chain` (world key): what its DescribeCertificateDetail content carries besides the certificate —
#: its issuer's certificate (complete), nothing (leaf_only: an incomplete chain), or it signs itself (self_signed)
CHAIN_COMPLETE = "complete"
CHAIN_LEAF_ONLY = "leaf_only"
CHAIN_SELF_SIGNED = "self_signed"
CHAINS = (CHAIN_COMPLETE, CHAIN_LEAF_ONLY, CHAIN_SELF_SIGNED)


@dataclass(frozen=True)
class ServedChange:
    """A change of the server certificate a domain's edge serves (`batchcert.emulator.edge`), recorded where a change is
    applied or rolled back (`writes`): the certificate the edge served until then, and when it changed (monotonic)."""

    previous_certificate_id: str
    changed_at_s: float


@dataclass
class DomainState:
    certificate_id: str
    client_certificate_id: str | None = None
    poly_client_certificate_ids: list[str] = field(default_factory=list)
    status: int = 0
    changing_until: float = 0.0  # monotonic; DomainStatus reads 1 until then
    #: how long the edge keeps serving the previous certificate after a change (None: the world's `edge_lag_s`)
    edge_lag_s: float | None = None
    #: the edge serves the certificate the domain had when the world was loaded, whatever changes
    edge_stuck: bool = False
    #: the last change of what the edge serves for it (None: none since the world was loaded)
    served_change: ServedChange | None = None

    def served_certificate(self, effective_id: str, lag_s: float, now_s: float) -> str:
        """What the edge serves at `now_s` (monotonic), given the domain's effective server certificate and its lag:
        the one served before the last change while the lag runs (always, when stuck: every change since the load
        was recorded with what was served before it, the loaded certificate), else the effective one."""
        change = self.served_change
        if change is not None and (self.edge_stuck or now_s < change.changed_at_s + lag_s):
            return change.previous_certificate_id
        return effective_id


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
    #: what its content carries besides itself (one of CHAINS; `emulator.pki`)
    chain: str = CHAIN_COMPLETE

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
        if self.chain != CHAIN_COMPLETE:
            data["chain"] = self.chain  # the default is not written: worlds without `chain` round-trip unchanged
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
