"""The emulated account (`World`) and the world file that describes it: `World.from_dict` / `World.to_dict` (the
contract below, byte for byte what tools and tests write), and `world_for_rows` (a world in which given rows succeed).
A world file may instead hold several accounts, `{"accounts": {"<name>": <world object>, …}}`: that form's contract
and the readers of either form from disk (`load_world`, `load_estate`) live in `batchcert.emulator.accounts`.

The world file is a contract other tools write (every key but `listeners` and `certificates` is optional):
```
{"credentials": {"<SecretId>": "<SecretKey>",               optional; demo credentials are used (and printed) if absent
                 "<TmpSecretId>": {"key": "<TmpSecretKey>", "token": "<token>", "expires_at": 1767225600}},
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
                                     "poly_client_certificate_ids": [], "status": 0,
                                     "edge_lag_s": 0.5, "edge_stuck": false}}}},
 "certificates": {"cert-…": {"type": 2, "domains": ["*.example.com", "example.com"], "name": "…",
                             "subject_cn": "*.example.com", "issuer_cn": "…",
                             "begin_time": "2025-01-01T00:00:00Z", "end_time": 1767225600, "expires_in_days": 30,
                             "chain": "complete"}},
 "faults": {"seed": 1, "hang_seconds": 30, "probabilities": {"InternalError": 0.1, ...},
            "domains": {"www.example.com": [{"kind": "InternalError", "times": 2}, {"kind": "changing", "seconds": 1}]},
            "listeners": {"listener-…": [{"kind": "task_fail"}]}},
 "competing_rate": 0,                                          optional; requests/s another client spends of each limit
 "clock_offset_s": 0,                                         optional; the server clock runs this far ahead
 "edge": true, "edge_lag_s": 0,                                optional; the TLS edge, and every domain's default lag
 "listing_quirks": {"DescribeProxyGroupList": {"empty_from_offset": 100},    optional, for tests of the reader
                    "DescribeProxies": {"instance_set_only": true}}}
```
`latency_ms` (a number, or [min, max] drawn per request; half is spent before the request is processed, half after)
is the world's, so each test sets its own; `World.latency_ms` may also be changed while the emulator serves.

Credentials. A value is the SecretKey (long-term keys), or an object for temporary keys: `key` (required), `token`
(the session token every request signed with them must carry in `X-TC-Token`) and `expires_at` (unix seconds on the
emulator's clock, `clock_offset_s` included), both optional. A request signed with temporary keys past `expires_at`,
or without their token, or with another, is answered `AuthFailure.TokenFailure` (`batchcert.emulator.admission`;
docs/gaap-api.md, "Credentials"). to_dict writes the object form only for keys that have a token or an expiry.
`World.add_credential` registers keys while the emulator serves (a test's fake STS hands them out).

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
`Offset`/`Limit` (at most the action's `PAGE_LIMIT` in batchcert.api.vocabulary) and answers the true `TotalCount`;
DescribeProxies carries the proxies in both `ProxySet` and the older `InstanceSet`. `listing_quirks` (by action) makes
a listing misbehave for tests: `empty_from_offset` answers empty pages from that Offset on (TotalCount unchanged),
`instance_set_only` (DescribeProxies) leaves `ProxySet` out.

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
DescribeCertificateDetail answers real X.509 content made from these fields (`batchcert.emulator.pki`), the same PEM
on every run for the same fields (an undated certificate's validity follows the emulator's start): an SSL certificate (2, 4) is a leaf whose SubjectAltName DNS names are its `domains` (wildcards as
given), with its SubjectCN and validity, signed by a CA named `issuer_cn`; `chain` says what its content carries:
"complete" (the default) the leaf then the issuer's certificate, "leaf_only" the leaf alone (an incomplete chain),
"self_signed" a leaf signed by its own key (IssuerCN then reads its SubjectCN); any other value is refused on load. A
CA (1, 3) is a CA certificate (signed by `issuer_cn`, or by itself when `chain` is "self_signed"), its content that
certificate alone. `CertificateKey` (types 2 and 4 only) is a fake carrying `pki.FAKE_KEY_MARKER`, never a key.

Per listener: `"denied_actions": ["ModifyCertificate"]` (CAM denies this credential those actions there:
AuthFailure.UnauthorizedOperation), `"task_seconds"` (its own task time). World: `"denied_actions":
["DescribeCertificates"]` (denied account-wide: UnauthorizedOperation), `"missing_listener_code":
"InvalidParameter"` answers a missing listener as "ListenerId(…) Not Exist." A domain on its listener's client CA reads
`ClientCertificateId: "default"` and `PolyClientCertificateAliasInfo: [{"CertificateId": "default", …}]`; a change
naming no client CA on a mutual-TLS domain resets its client CAs (the adversarial reading). A domain whose certificate
is `default` keeps reading `default` in DescribeRules while its effective certificate follows the listener's
(`World.effective_certificates`). The ledger records domain changes (`scope` "domain") and listener changes (`scope`
"listener", `domain` "").

The TLS edge (`batchcert.emulator.edge`; docs/gaap-api.md, "What the edge serves"). While the emulator is served
(`serve`) and `edge` is true (the default), a TLS server on 127.0.0.1 answers each HTTPS domain's SNI with the chain
and key of the certificate it serves (a domain on `default`: its listener's), and the listings report where: every
proxy's `IP`/`IPList` 127.0.0.1, every group's `Domain` localhost, every HTTPS listener's `Port` the edge's (a `Port`
filter matches the world's port or the edge's). A domain on several HTTPS listeners is served as on the first of them
in world order. After a change of what a domain serves (its own certificate, or its listener's for a domain on
`default`), applied or rolled back through the write path, the edge keeps serving what it served before for the
domain's `edge_lag_s` (default: the world's `edge_lag_s`, 0); an `"edge_stuck": true` domain is always served the
certificate it had when the world was loaded. to_dict writes these keys only when set (`edge` only when false).

`faults` (fault kinds, scripts, probabilities, storms) is documented in `batchcert.emulator.faults`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from batchcert.api.vocabulary import ACTION_DESCRIBE_PROXIES, CLIENT_CA_TYPE, PAGE_LIMIT, SERVER_SSL_TYPE
from batchcert.emulator.admission import TemporaryCredential, credentials_from_dict, credentials_to_dict
from batchcert.emulator.faults import Faults
from batchcert.emulator.state import (
    CHAIN_COMPLETE,
    CHAINS,
    PROTOCOLS,
    Certificate,
    Connection,
    DomainState,
    GroupState,
    ListenerState,
    ListingQuirk,
    ProxyState,
)
from batchcert.errors import WorldError
from batchcert.model import DEFAULT_CERTIFICATE, Row

DEMO_SECRET_ID = "AKIDbatchcertEmulatorDemo0000000000"  # noqa: S105 - published demo id
DEMO_SECRET_KEY = "batchcert-emulator-demo-key"  # noqa: S105 - a published demo key for the emulator only


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
    #: whether `serve` runs the TLS edge, and how long after a change it serves the previous certificate (a domain's
    #: own `edge_lag_s` overrides it)
    edge: bool = True
    edge_lag_s: float = 0.0
    #: SecretId → the token and expiry of temporary keys (their key is in `credentials`, like any other)
    temporary_credentials: dict[str, TemporaryCredential] = field(default_factory=dict)

    def add_credential(self, secret_id: str, secret_key: str, token: str = "", expires_at: float | None = None) -> None:
        """Accept keys from now on: temporary ones when a token or an expiry is given. Safe to call from another
        thread while the emulator serves (two dict stores, the temporary part first)."""
        if token or expires_at is not None:
            self.temporary_credentials[secret_id] = TemporaryCredential(token, expires_at)
        else:
            self.temporary_credentials.pop(secret_id, None)
        self.credentials[secret_id] = secret_key

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

    def served_certificate(self, listener_id: str, domain: str, now_s: float) -> str:
        """The server certificate the edge serves for a domain at `now_s` (monotonic; the module docstring)."""
        state = self.listeners[listener_id].domains[domain]
        lag_s = self.edge_lag_s if state.edge_lag_s is None else state.edge_lag_s
        return state.served_certificate(self.effective_certificates(listener_id, domain)[0], lag_s, now_s)

    def to_dict(self) -> dict[str, Any]:
        """The contract's JSON shape of the current state, with every option (faults, denials, latency, a competing
        client, a skewed clock), so a world saved after a rehearsal behaves as it did; busy timers are not kept.
        Synthesized proxies are not written: their listeners keep `proxy_version`/`proxy_status` as before."""
        data: dict[str, Any] = {
            "credentials": credentials_to_dict(self.credentials, self.temporary_credentials),
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
        if not self.edge:
            data["edge"] = False
        if self.edge_lag_s:
            data["edge_lag_s"] = self.edge_lag_s
        return data

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
        data["domains"] = {name: _domain_dict(d) for name, d in ls.domains.items()}
        return data


def _domain_dict(d: DomainState) -> dict[str, Any]:
    data: dict[str, Any] = {
        "certificate_id": d.certificate_id,
        "client_certificate_id": d.client_certificate_id,
        "poly_client_certificate_ids": list(d.poly_client_certificate_ids),
        "status": d.status,
    }
    if d.edge_lag_s is not None:
        data["edge_lag_s"] = d.edge_lag_s
    if d.edge_stuck:
        data["edge_stuck"] = True
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
        if action not in PAGE_LIMIT:
            raise ValueError(f"listing_quirks: {action!r} is not a paged listing; known: {', '.join(PAGE_LIMIT)}")
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


def _lag_s(where: str, value: Any) -> float:
    """An `edge_lag_s`: seconds ≥ 0."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{where}: edge_lag_s must be seconds ≥ 0, not {value!r}")
    return float(value)


def _flag(where: str, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{where}: {key} must be true or false, not {value!r}")
    return value


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
    chain = c.get("chain", CHAIN_COMPLETE)
    if chain not in CHAINS:
        raise ValueError(f"certificate {cid}: chain must be one of {', '.join(CHAINS)}, not {chain!r}")
    return Certificate(
        type=int(c["type"]),
        domains=[str(x) for x in c.get("domains", [])],
        name=str(c.get("name") or ""),
        subject_cn=str(c.get("subject_cn") or ""),
        issuer_cn=str(c.get("issuer_cn") or ""),
        begin_time=times.get("begin_time"),
        end_time=times.get("end_time"),
        expires_in_days=float(expires) if expires is not None else None,
        chain=chain,
    )


def _listener_from_dict(lid: str, spec: dict[str, Any], data: dict[str, Any]) -> ListenerState:
    domains = {
        name: DomainState(
            certificate_id=str(d.get("certificate_id") or DEFAULT_CERTIFICATE),
            client_certificate_id=d.get("client_certificate_id"),
            poly_client_certificate_ids=[str(x) for x in d.get("poly_client_certificate_ids") or []],
            status=int(d.get("status", 0)),
            edge_lag_s=_lag_s(f"domain {name}", d["edge_lag_s"]) if d.get("edge_lag_s") is not None else None,
            edge_stuck=_flag(f"domain {name}", "edge_stuck", d.get("edge_stuck", False)),
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
    if not isinstance(data, dict) or "accounts" in data:  # several accounts are an Estate's (accounts.py)
        raise TypeError("the world must be a JSON object of one account, without `accounts`: see load_estate")
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
    faults = Faults.from_dict(data.get("faults", {}))
    credentials, temporary = credentials_from_dict(data.get("credentials") or {DEMO_SECRET_ID: DEMO_SECRET_KEY})
    world = World(
        credentials=credentials,
        temporary_credentials=temporary,
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
        edge=_flag("world", "edge", data.get("edge", True)),
        edge_lag_s=_lag_s("world", data.get("edge_lag_s", 0)),
    )
    world.attach_all()
    return world


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
        PREVIOUS_CERTIFICATE: Certificate(SERVER_SSL_TYPE, []),
        LISTENER_CERTIFICATE: Certificate(SERVER_SSL_TYPE, []),
    }
    for row in rows:
        listener = listeners.setdefault(row.listener_id, ListenerState(certificate_id=LISTENER_CERTIFICATE))
        domain_row = getattr(row, "scope", "domain") != "listener"
        if domain_row:
            listener.domains.setdefault(row.domain, DomainState(certificate_id=PREVIOUS_CERTIFICATE))
            certificates[PREVIOUS_CERTIFICATE].domains.append(row.domain)
        if row.certificate_id != DEFAULT_CERTIFICATE:
            cert = certificates.setdefault(row.certificate_id, Certificate(SERVER_SSL_TYPE, []))
            if domain_row:
                cert.domains.append(row.domain)
        for client_id in (row.client_certificate_id, *row.poly_client_certificate_ids):
            if client_id and client_id != DEFAULT_CERTIFICATE:
                certificates.setdefault(client_id, Certificate(CLIENT_CA_TYPE, []))
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
