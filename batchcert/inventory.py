"""The estate as it is: every HTTPS listener and domain with the certificates it uses, read from the API, and the
mapping that moves every use of one certificate to another (a rotation).

Reads (docs/gaap-api.md, "Inventory and listener certificates"): `DescribeProxies` (100 a page) and
`DescribeProxyGroupList` (100 a page, `ProjectId` -1: every project) → `DescribeHTTPSListeners` per proxy not in a
group and per group (50 a page) → `DescribeRules` per HTTPS listener, and `DescribeCertificates` (50 a page) — every
request through the run's quota (each action its own ceiling) with the run's retries (`LiveReader.call`). Every paged
listing reads until it holds `TotalCount` items (page sizes: `api.vocabulary.PAGE_LIMIT`). A sibling of `runner`
and `report`: it decides what to read; `report.inventory_files` writes the files.

A connection whose listeners this credential may not list (CAM scoped to some connections), or that the listing
refuses (`FailedOperation.NotSupportProxyGroup`, …), does not stop the others: the inventory reads every place it
can and names what it could not read (`NotSearched`, carried on `Estate.places`). A refusal of a whole action — a
top-level listing, or a listing refused on every connection — stops it (InventoryError).

An inventory of several accounts (`--profile` given more than once) reads each account's estate through its own
credential (the workflow does); `plan_account_rotations` plans a rotation in each, with the certificates of each.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from batchcert import classify
from batchcert.api.vocabulary import (
    ACTION_DESCRIBE_CERTIFICATES,
    ACTION_DESCRIBE_GROUPS,
    ACTION_DESCRIBE_LISTENERS,
    ACTION_DESCRIBE_PROXIES,
    ACTION_DESCRIBE_RULES,
    CERTIFICATE_TYPE_NAMES,
)
from batchcert.errors import BatchcertError
from batchcert.live.certificates import CertificateInfo
from batchcert.live.reader import LiveReader
from batchcert.live.state import client_ids_of, live_domains
from batchcert.model import (
    DEFAULT_CERTIFICATE,
    NOT_SENT,
    SCOPE_DOMAIN,
    SCOPE_LISTENER,
    CallResult,
    Disposition,
    MappingLine,
    Place,
)

#: DescribeProxyGroupList's `ProjectId` for every project of the account. The reference gives no default for an
#: absent one (older pages mark it required), and the default project alone would hide every other project's groups
#: (docs/gaap-api.md, "Inventory and listener certificates")
ALL_PROJECTS = -1
#: `scope` of an inventory line for a connection that could not be read (inventory.csv)
SCOPE_PROXY = "proxy"
SCOPE_GROUP = "group"
#: refusals that say this credential may not do the action there (CAM is resource-level: docs/gaap-api.md, "Error
#: codes"); the same answer from every connection means the action is not granted at all
PERMISSION_CODES = frozenset({"UnauthorizedOperation", "AuthFailure.UnauthorizedOperation", "AuthFailure"})
#: answers that are not about the connection asked for: the request, the endpoint, the network, the service's load —
#: they stop the inventory (as do the codes that stop a run: a credential or an account that is unusable)
_NOT_SCOPED = (
    "Transport.",
    "Batchcert.",
    "InternalError",
    "ServiceUnavailable",
    "RequestLimitExceeded",
    "LimitExceeded",
    "InvalidParameter",
    "MissingParameter",
    "UnknownParameter",
    "InvalidAction",
    "InvalidRequest",
    "NoSuchVersion",
    "NoSuchProduct",
    "ActionOffline",
    "UnsupportedRegion",
    "UnsupportedProtocol",
    "RequestSizeLimitExceeded",
    "IpInBlacklist",
    "IpNotInWhitelist",
    "AuthFailure.",
)


class InventoryError(BatchcertError):
    """The estate could not be read, or a `--replace` cannot be done (exit 2)."""


@dataclass(frozen=True)
class NotSearched:
    """A connection the inventory could not search: its listeners could not be listed (nothing on it is among the
    places), or — with `listener_id` — the domains of one listener on it could not be read (the listener's own place
    is). `status` is the connection's as listed; `action`, `code` and `message` what was refused and how."""

    scope: str  # SCOPE_PROXY or SCOPE_GROUP
    proxy_id: str
    group_id: str
    name: str
    status: str
    action: str
    code: str
    message: str
    listener_id: str = ""
    #: the account (credential profile) it is in, when the inventory read several ("": it read one)
    profile: str = ""

    @property
    def connection_id(self) -> str:
        return self.proxy_id or self.group_id

    @property
    def reason(self) -> str:
        """The `status` column of its inventory line: the code and the message."""
        return f"{self.code}: {self.message}"

    def __str__(self) -> str:
        where = f"{self.scope} {self.connection_id}"
        where = f"{where} (listener {self.listener_id})" if self.listener_id else where
        return f"{where} of profile {self.profile}" if self.profile else where


@dataclass(frozen=True)
class Estate:
    """Every place, in listing order, the account's certificates, and what could not be searched (a connection whose
    listeners, or a listener whose domains, could not be read): the files say what the places lack."""

    places: tuple[Place, ...]
    certificates: dict[str, CertificateInfo]
    not_searched: tuple[NotSearched, ...] = ()


def not_searched_advice(holes: Sequence[NotSearched]) -> str:
    """What to do about the connections an inventory could not search (permission codes: the permission to grant)."""
    denied = sorted({hole.action for hole in holes if hole.code in PERMISSION_CODES})
    todo = [f"grant the credential {', '.join(f'gaap:{a}' for a in denied)} on them (CAM)"] if denied else []
    if any(hole.code not in PERMISSION_CODES for hole in holes):
        todo.append(
            f"check {'the others' if todo else 'them'} in the console (the code says why the service will not list them)"
        )
    return "; ".join(todo)


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


class _Refused(Exception):
    """A listing answered an error (or was not sent: `result` None)."""

    def __init__(self, action: str, where: str, result: CallResult | None) -> None:
        super().__init__(action)
        self.action, self.where, self.result = action, where, result

    @property
    def code(self) -> str:
        return (self.result.code or "") if self.result is not None else NOT_SENT

    @property
    def message(self) -> str:
        return self.result.message if self.result is not None else "the run stopped before it was sent"

    def error(self) -> InventoryError:
        where = f" of {self.where}" if self.where else ""
        return InventoryError(f"{self.action}{where} answered {self.code}: {self.message} — {_advice(self)}")


def _scoped(code: str) -> bool:
    """Whether a refusal of one connection's listing concerns that connection alone: not a problem of the request,
    the endpoint, the network or the service's load, nor a code that stops a run (the credential or the account)."""
    if code in PERMISSION_CODES:
        return True
    if not code or code == NOT_SENT or code.startswith(_NOT_SCOPED):
        return False
    return classify.disposition_of(code) is not Disposition.STOP_RUN


def _advice(refused: _Refused) -> str:
    """What to do about a refusal that stops the inventory, by its code."""
    code = refused.code
    again = "then run inventory again"
    if code in PERMISSION_CODES:
        return (
            f"the credential may not call {refused.action}: grant it gaap:{refused.action} (CAM; `gaap:Describe*` "
            f"covers every read the inventory makes), {again}"
        )
    if code == NOT_SENT:
        return "the inventory was stopped before it finished; nothing was written"
    if code.startswith("Transport."):
        return f"no answer from the API — check --endpoint, the network and --ca-bundle, {again}"
    if code.startswith(("InvalidAction", "NoSuchVersion", "NoSuchProduct", "ActionOffline", "UnsupportedRegion")):
        return f"the endpoint does not serve the GAAP API version batchcert speaks — check --endpoint, {again}"
    if code.startswith("AuthFailure"):
        return f"check the credentials (SecretId/SecretKey/token, --profile) and the system clock, {again}"
    if code.startswith(("InternalError", "ServiceUnavailable", "RequestLimitExceeded", "LimitExceeded")):
        return "the service did not answer it after the retries — run inventory again later (or with a lower --rate)"
    return f"the code and message say why; fix the cause, {again}"


async def read_estate(reader: LiveReader, on_step: StepFn | None = None) -> Estate:
    """Read every connection, HTTPS listener, domain and certificate; `on_step` hears how far each phase is. A
    connection whose listing is refused for that
    connection alone (`_scoped`) becomes a NotSearched and the others are read (so does a listener whose DescribeRules
    is). Raises InventoryError naming the action, the code and what to do when a top-level listing cannot be read, a
    listing ends before its TotalCount, a listing is refused on every connection (or listener) for want of
    permission, or a read of one connection fails for a reason that is not about it (the request, the credential, the
    network, the service's load)."""
    step: StepFn = on_step or (lambda _what, _done, _total: None)
    done: Counter[str] = Counter()

    async def counted(read: Awaitable[T], what: str, total: int) -> T:
        result = await read
        done[what] += 1
        step(what, done[what], total)
        return result

    try:
        proxies, groups, certificates = await asyncio.gather(
            _listing(reader, ACTION_DESCRIBE_PROXIES, {}, ("ProxySet", "InstanceSet")),
            _listing(reader, ACTION_DESCRIBE_GROUPS, {"ProjectId": ALL_PROJECTS}, ("ProxyGroupList",)),
            reader.certificates(),
        )
    except _Refused as refused:
        raise refused.error() from None
    if certificates.failed:
        failed = _Refused(ACTION_DESCRIBE_CERTIFICATES, "", CallResult(certificates.failed))
        raise InventoryError(f"{ACTION_DESCRIBE_CERTIFICATES} answered {certificates.failed} — {_advice(failed)}")
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
    listed = await asyncio.gather(
        *(counted(_listeners_of(reader, c), "connections", len(connections)) for c in connections)
    )
    holes = [hole for hole in listed if isinstance(hole, NotSearched)]
    _refused_everywhere(holes, len(connections), "connection")
    found = [
        (c, listener)
        for c, listeners in zip(connections, listed, strict=True)
        if not isinstance(listeners, NotSearched)
        for listener in listeners
    ]
    rules = await asyncio.gather(
        *(counted(_rules_of(reader, c, listener), "listeners", len(found)) for c, listener in found)
    )
    rule_holes = [hole for hole in rules if isinstance(hole, NotSearched)]
    _refused_everywhere(rule_holes, len(found), "HTTPS listener")
    places: list[Place] = []
    for (connection, listener), domains in zip(found, rules, strict=True):
        places += _places_of(connection, listener, None if isinstance(domains, NotSearched) else domains)
    return Estate(tuple(places), certificates.by_id, tuple(holes + rule_holes))


def _refused_everywhere(holes: Sequence[NotSearched], asked: int, what: str) -> None:
    """Raise InventoryError when every one of `asked` reads was refused for want of permission: the action is not
    granted at all (or on nothing), and a partial inventory of nothing would only hide it."""
    if not asked or len(holes) < asked or not all(h.code in PERMISSION_CODES for h in holes):
        return
    action = holes[0].action
    codes = ", ".join(sorted({h.code for h in holes}))
    raise InventoryError(
        f"{action} was refused on every {what} ({asked} of {asked}: {codes}) — the credential may not call it: grant "
        f"it gaap:{action} (CAM; `gaap:Describe*` covers every read the inventory makes), then run inventory again"
    )


async def _listing(
    reader: LiveReader, action: str, params: dict[str, Any], keys: Sequence[str], where: str = ""
) -> list[dict[str, Any]]:
    """Every item of a paged listing (`LiveReader.listing`). Raises _Refused for an error answer (or none: the run
    stopped), InventoryError for a page that is empty before TotalCount (never a silent end)."""
    listing = await reader.listing(action, params, keys, where)
    if listing.failed:
        raise _Refused(action, where, listing.answer)
    if listing.short_of is not None:
        of, read, total = f" of {where}" if where else "", len(listing.items), listing.short_of
        raise InventoryError(
            f"{action}{of} answered an empty page at Offset {read} although its TotalCount is {total}: {read} of "
            f"{total} read — the listing changed while it was read or the service pages differently; run inventory "
            "again (an inventory with a hole would hide places a rotation must change)"
        )
    return listing.items


async def _listeners_of(reader: LiveReader, connection: Connection) -> list[dict[str, Any]] | NotSearched:
    """The connection's HTTPS listeners, or a NotSearched when their listing is refused for this connection alone."""
    where = {"ProxyId": connection.proxy_id} if connection.proxy_id else {"GroupId": connection.group_id}
    try:
        return await _listing(
            reader, ACTION_DESCRIBE_LISTENERS, where, ("ListenerSet",), connection.proxy_id or connection.group_id
        )
    except _Refused as refused:
        if not _scoped(refused.code):
            raise refused.error() from None
        return _hole(connection, refused)


async def _rules_of(
    reader: LiveReader, connection: Connection, listener: dict[str, Any]
) -> dict[str, Any] | NotSearched:
    """The listener's DescribeRules answer, or a NotSearched (its connection, this listener) when the read is
    refused for it alone."""
    listener_id = str(listener.get("ListenerId"))
    result = await reader.call(ACTION_DESCRIBE_RULES, {"ListenerId": listener_id}, 0.0, listener_id, None)
    if result is not None and result.ok:
        return result.response
    refused = _Refused(ACTION_DESCRIBE_RULES, listener_id, result)
    if not _scoped(refused.code):
        raise refused.error()
    return _hole(connection, refused, listener_id)


def _hole(connection: Connection, refused: _Refused, listener_id: str = "") -> NotSearched:
    return NotSearched(
        scope=SCOPE_PROXY if connection.proxy_id else SCOPE_GROUP,
        proxy_id=connection.proxy_id,
        group_id=connection.group_id,
        name=connection.name,
        status=connection.status,
        action=refused.action,
        code=refused.code,
        message=refused.message,
        listener_id=listener_id,
    )


def _places_of(connection: Connection, listener: dict[str, Any], rules: dict[str, Any] | None) -> list[Place]:
    """The listener's own place, then one per domain on it (none when its rules could not be read: None)."""
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
        for live in (live_domains(rules).values() if rules is not None else ())
    ]


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
    """The mapping lines of one or more replacements, how many places of each kind they change, and what the
    inventory could not search (the mapping covers every place it read, and nothing there)."""

    lines: tuple[MappingLine, ...]
    domain_server: int
    listener_server: int
    client_lists: int
    not_searched: tuple[NotSearched, ...] = ()


def plan_rotation(estate: Estate, replacements: Iterable[Replacement]) -> Rotation:
    """One mapping line per place that uses an OLD certificate — a domain's own server certificate, a listener's
    server certificate, or among client CAs (then the full new client list with OLD replaced). Domains on `default`
    get no line: they follow their listener's. Raises InventoryError when a NEW does not exist or has not the
    type of its OLD (server SSL for server, client CA for client). Nothing the inventory could not search gets a
    line: the rotation's `not_searched` names it."""
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
    return Rotation(tuple(lines), domain_server, listener_server, client_lists, estate.not_searched)


def plan_account_rotations(estates: Mapping[str, Estate], replacements: Iterable[Replacement]) -> dict[str, Rotation]:
    """Each account's rotation (by profile, in `estates`' order): a replacement applies in every account whose
    certificates hold its OLD — ids are an account's own, so NEW must be among that account's certificates too, with
    OLD's type. An OLD that no account holds is taken as `plan_rotation` takes it in one account: it applies where
    a place still uses it, and NEW must exist (in those accounts; in one of them at least when no place uses OLD).
    Raises InventoryError naming the account (or the accounts searched) before any rotation is planned."""
    swaps = {r.old: r.new for r in replacements}
    names = ", ".join(estates)
    mine: dict[str, list[Replacement]] = {profile: [] for profile in estates}
    for old, new in swaps.items():
        holders = [profile for profile, estate in estates.items() if old in estate.certificates]
        if not holders:
            if not any(new in estate.certificates for estate in estates.values()):
                raise InventoryError(
                    f"--replace {old}={new}: {new} is not among the certificates of profiles {names} — upload it"
                )
            holders = [profile for profile, estate in estates.items() if _uses(estate, old)]
        for profile in holders:
            certificates = estates[profile].certificates
            target, known = certificates.get(new), certificates.get(old)
            if target is None:
                has = "holds" if known is not None else "has places using"
                raise InventoryError(
                    f"--replace {old}={new}: profile {profile} {has} {old} but {new} is not among its certificates — "
                    f"upload {new} to that account (a certificate id is its account's own)"
                )
            if known is not None and known.type != target.type:
                raise InventoryError(
                    f"--replace {old}={new} in profile {profile}: {old} is a "
                    f"{CERTIFICATE_TYPE_NAMES.get(known.type, known.type)} certificate and {new} a "
                    f"{CERTIFICATE_TYPE_NAMES.get(target.type, target.type)} one — pick a replacement of the same type"
                )
            mine[profile].append(Replacement(old, new))
    return {profile: plan_rotation(estates[profile], mine[profile]) for profile in estates}


def _uses(estate: Estate, certificate_id: str) -> bool:
    """Whether a place of the estate uses the certificate: as its server certificate or among its client CAs."""
    return any(
        certificate_id == place.certificate_id or certificate_id in place.client_certificate_ids
        for place in estate.places
    )


def total_rotation(rotations: Iterable[Rotation]) -> Rotation:
    """The rotations of several accounts as one: their lines in order, the counts summed, every hole."""
    parts = list(rotations)
    return Rotation(
        tuple(line for r in parts for line in r.lines),
        sum(r.domain_server for r in parts),
        sum(r.listener_server for r in parts),
        sum(r.client_lists for r in parts),
        tuple(hole for r in parts for hole in r.not_searched),
    )
