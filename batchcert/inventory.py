"""The estate as it is: every HTTPS listener and domain with the certificates it uses, read from the API, and the
mapping that moves every use of one certificate to another (a rotation).

Reads (docs/gaap-api.md, "Inventory and listener certificates"): `DescribeProxies` and `DescribeProxyGroupList`
(paged, 100 a page) → `DescribeHTTPSListeners` per proxy not in a group and per group (paged, 50) →
`DescribeRules` per HTTPS listener, and `DescribeCertificates` (paged, 50) — every request through the run's quota
(each action its own ceiling) with the run's retries (`LiveReader.call`). A sibling of `runner`: it decides what to
read; `report` writes the files.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from batchcert.errors import BatchcertError
from batchcert.model import (
    ACTION_DESCRIBE_LISTENERS,
    ACTION_DESCRIBE_RULES,
    DEFAULT_CERTIFICATE,
    SCOPE_DOMAIN,
    SCOPE_LISTENER,
    MappingLine,
    Place,
)
from batchcert.reading import LiveReader
from batchcert.reconcile import CERTIFICATE_TYPE_NAMES, CertificateInfo, client_ids_of, live_domains

ACTION_DESCRIBE_PROXIES = "DescribeProxies"
ACTION_DESCRIBE_GROUPS = "DescribeProxyGroupList"
#: the largest page each listing takes (docs/gaap-api.md, "Inventory and listener certificates")
PAGE = {ACTION_DESCRIBE_PROXIES: 100, ACTION_DESCRIBE_GROUPS: 100, ACTION_DESCRIBE_LISTENERS: 50}


class InventoryError(BatchcertError):
    """The estate could not be read, or a `--replace` cannot be done (exit 2)."""


@dataclass(frozen=True)
class Estate:
    """Every place, in listing order, and the account's certificates."""

    places: tuple[Place, ...]
    certificates: dict[str, CertificateInfo]


@dataclass(frozen=True)
class Connection:
    """A proxy or a proxy group, as listed."""

    proxy_id: str
    group_id: str
    name: str
    status: str


T = TypeVar("T")
#: progress callback: (what is being read, how many of them are read, how many there are)
StepFn = Callable[[str, int, int], None]


async def read_estate(reader: LiveReader, on_step: StepFn | None = None) -> Estate:
    """Read every connection, HTTPS listener, domain and certificate; `on_step` hears how far each phase is.
    Raises InventoryError naming the action and the code when a listing cannot be read (an inventory with holes
    would hide places a rotation must change)."""
    step = on_step or (lambda _what, _done, _total: None)
    done: Counter[str] = Counter()

    async def counted(read: Awaitable[T], what: str, total: int) -> T:
        result = await read
        done[what] += 1
        step(what, done[what], total)
        return result

    proxies, groups, certificates = await asyncio.gather(
        _listing(reader, ACTION_DESCRIBE_PROXIES, {}, "ProxySet"),
        _listing(reader, ACTION_DESCRIBE_GROUPS, {}, "ProxyGroupList"),
        reader.certificates(),
    )
    if certificates.failed:
        raise InventoryError(f"DescribeCertificates answered {certificates.failed} — {_ADVICE}")
    connections = [
        Connection(
            str(p.get("ProxyId") or p.get("InstanceId")), "", str(p.get("ProxyName") or ""), str(p.get("Status"))
        )
        for p in proxies
        if not p.get("GroupId")  # a proxy in a group has its listeners on the group
    ]
    connections += [
        Connection("", str(g.get("GroupId")), str(g.get("GroupName") or ""), str(g.get("Status"))) for g in groups
    ]
    listeners = await asyncio.gather(
        *(counted(_listeners_of(reader, c), "connections", len(connections)) for c in connections)
    )
    found = [(c, listener) for c, listed in zip(connections, listeners, strict=True) for listener in listed]
    rules = await asyncio.gather(
        *(counted(_rules_of(reader, str(listener.get("ListenerId"))), "listeners", len(found)) for _, listener in found)
    )
    places: list[Place] = []
    for (connection, listener), domains in zip(found, rules, strict=True):
        places += _places_of(connection, listener, domains)
    return Estate(tuple(places), certificates.by_id)


_ADVICE = "grant the credential read access to GAAP (gaap:Describe*), check --endpoint, then run inventory again"


async def _listing(reader: LiveReader, action: str, params: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """Every item of a paged listing."""
    items: list[dict[str, Any]] = []
    while True:
        page = {**params, "Offset": len(items), "Limit": PAGE[action]}
        result = await reader.call(action, page, 0.0, str(params.get("ProxyId") or params.get("GroupId") or ""), None)
        if result is None or not result.ok:
            code = "not sent (stopped)" if result is None else f"{result.code}: {result.message}"
            raise InventoryError(f"{action} {params or ''} answered {code} — {_ADVICE}")
        listed = list(result.response.get(key) or [])
        items += listed
        if not listed or len(items) >= int(result.response.get("TotalCount") or 0):
            return items


async def _listeners_of(reader: LiveReader, connection: Connection) -> list[dict[str, Any]]:
    where = {"ProxyId": connection.proxy_id} if connection.proxy_id else {"GroupId": connection.group_id}
    return await _listing(reader, ACTION_DESCRIBE_LISTENERS, where, "ListenerSet")


async def _rules_of(reader: LiveReader, listener_id: str) -> dict[str, Any]:
    result = await reader.call(ACTION_DESCRIBE_RULES, {"ListenerId": listener_id}, 0.0, listener_id, None)
    if result is None or not result.ok:
        code = "not sent (stopped)" if result is None else f"{result.code}: {result.message}"
        raise InventoryError(f"DescribeRules of {listener_id} answered {code} — {_ADVICE}")
    return result.response


def _places_of(connection: Connection, listener: dict[str, Any], rules: dict[str, Any]) -> list[Place]:
    """The listener's own place, then one per domain on it."""
    own = str(listener.get("CertificateId") or "")
    mine = Place(
        scope=SCOPE_LISTENER,
        proxy_id=connection.proxy_id or str(listener.get("ProxyId") or ""),
        group_id=connection.group_id or str(listener.get("GroupId") or ""),
        listener_id=str(listener.get("ListenerId")),
        domain="",
        certificate_id=own,
        client_certificate_ids=client_ids_of(listener),
        effective_certificate_id=own,
        listener_name=str(listener.get("ListenerName") or ""),
        port=int(listener["Port"]) if listener.get("Port") is not None else None,
        status=int(listener.get("ListenerStatus") or 0),
        proxy_name=connection.name,
        proxy_status=connection.status,
    )
    return [mine] + [
        replace(
            mine,
            scope=SCOPE_DOMAIN,
            domain=live.domain,
            certificate_id=live.certificate_id,
            client_certificate_ids=live.client_ids,
            effective_certificate_id=own if live.certificate_id == DEFAULT_CERTIFICATE else live.certificate_id,
            status=live.status,
        )
        for live in live_domains(rules).values()
    ]


def days_to_expiry(certificate: CertificateInfo | None, now_s: float) -> int | None:
    if certificate is None or not certificate.end_time_s:
        return None
    return int((certificate.end_time_s - now_s) // 86400)


# ----------------------------------------------------------------------------------------------------- rotation
@dataclass(frozen=True)
class Replacement:
    """`--replace OLD=NEW`."""

    old: str
    new: str


def parse_replacement(text: str) -> Replacement:
    """`OLD=NEW` → Replacement; raises InventoryError with the form to use."""
    old, sep, new = text.partition("=")
    old, new = old.strip(), new.strip()
    if not sep or not old or not new or old == new or DEFAULT_CERTIFICATE in (old, new):
        raise InventoryError(
            f"--replace {text!r} is not OLD=NEW with two different certificate ids — e.g. --replace cert-old=cert-new"
        )
    return Replacement(old, new)


@dataclass(frozen=True)
class Rotation:
    """The mapping lines of one or more replacements, and how many places of each kind they change."""

    lines: tuple[MappingLine, ...]
    domain_server: int
    listener_server: int
    client_lists: int


def plan_rotation(estate: Estate, replacements: Iterable[Replacement]) -> Rotation:
    """One mapping line per place that uses an OLD certificate — a domain's own server certificate, a listener's
    server certificate, or among client CAs (then the full new client list with OLD replaced). Domains on `default`
    get no line: they follow their listener's. Raises InventoryError when a NEW does not exist or has not the
    type of its OLD (server SSL for server, client CA for client)."""
    swaps = {r.old: r.new for r in replacements}
    for old, new in swaps.items():
        target = estate.certificates.get(new)
        if target is None:
            raise InventoryError(f"--replace {old}={new}: {new} is not among the account's certificates — upload it")
        known = estate.certificates.get(old)
        if known is not None and known.type != target.type:
            raise InventoryError(
                f"--replace {old}={new}: {old} is a {CERTIFICATE_TYPE_NAMES.get(known.type, known.type)} "
                f"certificate and {new} a {CERTIFICATE_TYPE_NAMES.get(target.type, target.type)} one — pick a "
                "replacement of the same type"
            )
    lines: list[MappingLine] = []
    domain_server = listener_server = client_lists = 0
    for place in estate.places:
        server_hit = place.certificate_id in swaps
        client_hit = any(c in swaps for c in place.client_certificate_ids)
        if not (server_hit or client_hit):
            continue
        domain_server += server_hit and place.scope == SCOPE_DOMAIN
        listener_server += server_hit and place.scope == SCOPE_LISTENER
        client_lists += client_hit
        clients = tuple(swaps.get(c, c) for c in place.client_certificate_ids) if client_hit else ()
        lines.append(
            MappingLine(
                place.scope,
                place.proxy_id,
                place.listener_id,
                place.domain,
                swaps.get(place.certificate_id, place.certificate_id),
                clients,
                current_certificate_id=place.certificate_id,
                current_client_certificate_ids=place.client_certificate_ids if client_hit else (),
            )
        )
    return Rotation(tuple(lines), domain_server, listener_server, client_lists)
