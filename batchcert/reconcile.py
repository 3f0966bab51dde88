"""Reconciliation rules: what the live state of a domain is, whether a row is already at its target, and the mapping
row that undoes a change. Pure functions over `DescribeRules` answers; no I/O.

`DescribeRules(ListenerId)` lists one `DomainRuleSet` per domain with `CertificateId` (the literal `default` for a
domain on the listener's certificate), `ClientCertificateId`, `PolyClientCertificateAliasInfo` and `DomainStatus`
(0 running, 1 changing, 2 deleting) — docs/gaap-api.md, "Reading the live state".
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from collections.abc import Mapping as Lookup
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from batchcert.model import (
    DEFAULT_CERTIFICATE,
    PREFLIGHT_EXPIRED,
    PREFLIGHT_NOT_FOUND,
    PREFLIGHT_TYPE_MISMATCH,
    Expected,
    Mapping,
    Row,
)


@dataclass(frozen=True)
class LiveDomain:
    """A domain's certificate state as the service reports it. `client_ids` are the poly client CA ids, or the single
    ClientCertificateId when no poly list is shown; () for one-way TLS."""

    domain: str
    certificate_id: str
    client_ids: tuple[str, ...]
    status: int
    #: for a listener's own state: its proxy ("" on a proxy group)
    proxy_id: str = ""

    @property
    def client_text(self) -> str:
        return ";".join(self.client_ids)


#: the key of a listener's own state among its live domains (a listener row's `domain` is "")
LISTENER_KEY = ""


def client_ids_of(item: dict[str, Any]) -> tuple[str, ...]:
    """The client CA ids a DescribeRules rule or a DescribeHTTPSListeners listener shows: its poly list, or its single
    ClientCertificateId when there is no list; () for one-way TLS."""
    poly = tuple(
        str(p.get("CertificateId")) for p in item.get("PolyClientCertificateAliasInfo") or [] if p.get("CertificateId")
    )
    single = item.get("ClientCertificateId")
    return poly or ((str(single),) if single else ())


def live_listener(response: dict[str, Any]) -> LiveDomain | None:
    """A `DescribeHTTPSListeners(ListenerId=…)` answer as the listener's own state (`domain` ""; `status` is
    ListenerStatus: 0 running), or None when it lists no listener."""
    listed = response.get("ListenerSet") or []
    if not listed:
        return None
    item = listed[0]
    return LiveDomain(
        domain=LISTENER_KEY,
        certificate_id=str(item.get("CertificateId") or ""),
        client_ids=client_ids_of(item),
        status=int(item.get("ListenerStatus") or 0),
        proxy_id=str(item.get("ProxyId") or ""),
    )


def live_domains(response: dict[str, Any]) -> dict[str, LiveDomain]:
    """Index a DescribeRules answer by lower-cased domain."""
    found: dict[str, LiveDomain] = {}
    for rule in response.get("DomainRuleSet") or []:
        domain = str(rule.get("Domain", ""))
        found[domain.lower()] = LiveDomain(
            domain=domain,
            certificate_id=str(rule.get("CertificateId") or DEFAULT_CERTIFICATE),
            client_ids=client_ids_of(rule),
            status=int(rule.get("DomainStatus") or 0),
        )
    return found


def is_at_target(row: Row, live: LiveDomain) -> bool:
    """True when the live state already is what the row asks for. A row that names no client CA leaves the client
    side alone (ModifyCertificate does not change it), so only the server certificate is compared then."""
    if live.certificate_id != row.certificate_id:
        return False
    if row.poly_client_certificate_ids:
        return set(live.client_ids) == set(row.poly_client_certificate_ids)
    if row.client_certificate_id:
        if row.client_certificate_id == DEFAULT_CERTIFICATE:
            return live.client_ids in ((), (DEFAULT_CERTIFICATE,))
        return live.client_ids == (row.client_certificate_id,)
    return True


def same_clients(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """Two client CA lists mean the same: the same ids in any order; none and the listener's (`default`) alike."""
    none = ((), (DEFAULT_CERTIFICATE,))
    return (a in none and b in none) or set(a) == set(b)


def matches_expected(expected: Expected, live: LiveDomain) -> bool:
    """True when the live state is the one a compare-and-swap row expects to replace: the same server certificate
    (as the API reads it, `default` included) and, when the file names them, the same client CAs."""
    if live.certificate_id != expected.certificate_id:
        return False
    return expected.client_ids is None or same_clients(live.client_ids, expected.client_ids)


def mismatch_message(expected: Expected, live: LiveDomain) -> str:
    """Why a compare-and-swap row is not sent: both states, by id."""

    def state(cert: str, clients: tuple[str, ...] | None) -> str:
        return cert + (f" with client CAs {';'.join(clients) or 'none'}" if clients is not None else "")

    return (
        f"the live certificate is {state(live.certificate_id, live.client_ids if expected.client_ids is not None else None)}, "
        f"the file expects {state(expected.certificate_id, expected.client_ids)} as the current one — not sent: the "
        "place changed since the file was made"
    )


def is_reverted(live: LiveDomain, before: tuple[str, tuple[str, ...]] | None) -> bool:
    """True when an idle domain shows again the state read before its change: the service accepted the change and
    its task failed (the read-back after it is the witness, README "Verification waits for the truth")."""
    return (
        before is not None
        and live.status == 0
        and live.certificate_id == before[0]
        and same_clients(live.client_ids, before[1])
    )


#: why a row at its target is `succeeded` although this session sent nothing: the journal recorded another state
#: before the run, so the change happened since — an earlier session's record of it was lost (a journal tail cut off
#: by a power failure, say). The report counts these and warns.
CONFIRMED_BY_READ_BACK = "succeeded: confirmed by read-back (the state before the run differed); attempt record missing"


def changed_since(row: Row, before: tuple[str, tuple[str, ...]] | None, live: LiveDomain) -> bool:
    """True when `live` is the row's target but the state recorded before the run (`before`) was not."""
    if before is None or not is_at_target(row, live):
        return False
    return not is_at_target(row, LiveDomain(row.domain, before[0], before[1], 0))


class Verdict(enum.StrEnum):
    """What the pre-flight read says about a row."""

    CHANGE = "change"
    UNCHANGED = "unchanged"
    NOT_FOUND = "not_found"
    CHANGING = "changing"  # the domain is being changed: wait, then send
    #: a compare-and-swap row whose place does not hold the expected current certificate: never sent
    MISMATCH = "mismatch"
    #: a listener row whose ProxyId is not the proxy the listener is on: never sent
    WRONG_PROXY = "wrong_proxy"


def judge(row: Row, live: dict[str, LiveDomain] | None) -> tuple[Verdict, LiveDomain | None]:
    """The verdict for `row` given its listener's live domains (None: the listener does not exist)."""
    if live is None:
        return Verdict.NOT_FOUND, None
    domain = live.get(row.domain.lower())
    if domain is None:
        return Verdict.NOT_FOUND, None
    if row.proxy_id and domain.proxy_id and row.proxy_id != domain.proxy_id:
        return Verdict.WRONG_PROXY, domain  # only a listener's own state carries its proxy
    if is_at_target(row, domain):
        return Verdict.UNCHANGED, domain
    if domain.status != 0:
        return Verdict.CHANGING, domain
    if row.expected is not None and not matches_expected(row.expected, domain):
        return Verdict.MISMATCH, domain
    return Verdict.CHANGE, domain


#: the plan action of a row the certificate pre-flight refuses (`run` ends it terminal, unsent)
REFUSED = "refused"
#: what `plan` can say of a row: a pre-flight verdict, or why there is none
PLAN_ACTIONS = (*(v.value for v in Verdict), REFUSED, "invalid", "unknown")
#: plan actions of rows `run` would not bring to their target (plan exits 1 when any row has one)
NOT_DONE_PLAN_ACTIONS = (
    "invalid",
    "unknown",
    REFUSED,
    Verdict.NOT_FOUND.value,
    Verdict.MISMATCH.value,
    Verdict.WRONG_PROXY.value,
)


@dataclass(frozen=True)
class PlanLine:
    """What the pre-flight says a row would do: `action` (a Verdict's value, "invalid", or "unknown" when the read
    failed), the live state, and why."""

    row: Row
    action: str
    live: LiveDomain | None
    reason: str = ""


def plan_every_row(mapping: Mapping, judged: list[PlanLine]) -> list[PlanLine]:
    """One line per mapping row, in mapping order: invalid rows with their problem, a duplicate with its primary's
    verdict, a valid row the pre-flight has no line for as `unknown`."""
    by_row = {line.row.row_number: line for line in judged}
    lines = []
    for row in mapping.rows:
        if row.row_number in mapping.problems:
            lines.append(PlanLine(row, "invalid", None, mapping.problems[row.row_number]))
            continue
        found = by_row.get(mapping.duplicate_of.get(row.row_number, row.row_number))
        lines.append(PlanLine(row, found.action, found.live, found.reason) if found else PlanLine(row, "unknown", None))
    return lines


def count_plan_actions(lines: list[PlanLine]) -> dict[str, int]:
    """Rows per plan action, every action present."""
    counts = dict.fromkeys(PLAN_ACTIONS, 0)
    for line in lines:
        counts[line.action] += 1
    return counts


@dataclass(frozen=True)
class Rollback:
    """The mapping cells that restore a domain's previous state, and a note when that cannot be done exactly."""

    certificate_id: str
    client_certificate_id: str
    poly_client_certificate_ids: str
    note: str


def rollback_for(row: Row, previous_certificate_id: str, previous_client_ids: tuple[str, ...]) -> Rollback:
    """The row that undoes `row`'s change, given the state recorded before it. A domain that followed its listener's
    client CA (read as `default`) gets `default` back only when the row changed client CAs; a row that named none
    leaves the client side alone, and so does its rollback (batchcert kept the domain's client CAs). ModifyCertificate
    cannot remove client CAs, so when the row added some to a domain that had none the rollback restores the server
    certificate only and says so."""
    note = ""
    client, poly = "", ""
    changed_clients = bool(row.client_certificate_id or row.poly_client_certificate_ids)
    if previous_client_ids == (DEFAULT_CERTIFICATE,):
        client = DEFAULT_CERTIFICATE if changed_clients else ""
    elif not changed_clients:
        pass
    elif len(previous_client_ids) == 1:
        client = previous_client_ids[0]
    elif previous_client_ids:
        poly = ";".join(previous_client_ids)
    else:
        note = "the domain had no client CA before; ModifyCertificate cannot remove one — remove it in the console"
    return Rollback(previous_certificate_id, client, poly, note)


# ----------------------------------------------------------------------------------------- certificate pre-flight
#: CertificateType values (docs/gaap-api.md, "Inventory and listener certificates")
CLIENT_CA_TYPE = 1
SERVER_SSL_TYPE = 2
CERTIFICATE_TYPE_NAMES = {0: "basic-auth", 1: "client CA", 2: "server SSL", 3: "origin CA", 4: "proxy SSL"}
_DAY_S = 86400


@dataclass(frozen=True)
class CertificateInfo:
    """A certificate as `DescribeCertificates` lists it (no key material): EndTime in unix seconds."""

    certificate_id: str
    type: int
    end_time_s: int
    subject_cn: str = ""
    alias: str = ""


def certificates_in(response: dict[str, Any]) -> list[CertificateInfo]:
    """The certificates of one `DescribeCertificates` page."""
    return [
        CertificateInfo(
            certificate_id=str(item.get("CertificateId", "")),
            type=int(item.get("CertificateType") or 0),
            end_time_s=int(item.get("EndTime") or 0),
            subject_cn=str(item.get("SubjectCN") or ""),
            alias=str(item.get("CertificateAlias") or item.get("CertificateName") or ""),
        )
        for item in response.get("CertificateSet") or []
    ]


@dataclass(frozen=True)
class TargetCheck:
    """What the certificate pre-flight says about a row: `code`/`message` when a target cannot be installed (the
    row is not sent); otherwise warnings — targets expiring within the minimum validity (plan, confirmation,
    summary) and a server certificate whose SubjectCN does not name the domain (plan only: its alternative names
    may) — and the end time of the server certificate the row installs (None for `default`)."""

    code: str = ""
    message: str = ""
    expiring: tuple[str, ...] = ()
    name_mismatch: str = ""
    end_time_s: int | None = None


def domain_covered(names: Iterable[str], domain: str) -> bool:
    """True when a certificate name covers `domain`: equal, or a `*.` wildcard matching exactly one leftmost label."""
    domain = domain.lower().rstrip(".")
    for name in names:
        name = name.lower().rstrip(".")
        if name == domain:
            return True
        if name.startswith("*.") and not domain.startswith("*."):
            head, _, rest = domain.partition(".")
            if head and rest == name[2:]:
                return True
    return False


def check_targets(
    row: Row, certificates: Lookup[str, CertificateInfo], now_s: float, min_validity_days: float
) -> TargetCheck:
    """Check every certificate `row` installs against the account's certificates: it exists, has the right type
    (server SSL for CertificateId, client CA for the client ids) and has not expired. `default` is the listener's
    own and is not checked."""
    wanted = [(row.certificate_id, SERVER_SSL_TYPE, "CertificateId")]
    clients = row.poly_client_certificate_ids or ((row.client_certificate_id,) if row.client_certificate_id else ())
    wanted += [(c, CLIENT_CA_TYPE, "client certificate") for c in clients]
    expiring: list[str] = []
    name_mismatch = ""
    end_time_s: int | None = None
    for cert_id, expected, role in wanted:
        if cert_id == DEFAULT_CERTIFICATE:
            continue
        found = certificates.get(cert_id)
        if found is None:
            return TargetCheck(PREFLIGHT_NOT_FOUND, f"{role} {cert_id} is not among the account's certificates")
        if found.type != expected:
            return TargetCheck(
                PREFLIGHT_TYPE_MISMATCH,
                f"{role} {cert_id} is a {CERTIFICATE_TYPE_NAMES.get(found.type, str(found.type))} certificate "
                f"(type {found.type}); it must be {CERTIFICATE_TYPE_NAMES[expected]} (type {expected})",
            )
        if found.end_time_s and found.end_time_s <= now_s:
            return TargetCheck(PREFLIGHT_EXPIRED, f"{role} {cert_id} expired on {_iso_day(found.end_time_s)}")
        if found.end_time_s and found.end_time_s - now_s < min_validity_days * _DAY_S:
            days = int((found.end_time_s - now_s) // _DAY_S)
            expiring.append(f"{cert_id} expires on {_iso_day(found.end_time_s)} (in {days} days)")
        if expected == SERVER_SSL_TYPE:
            end_time_s = found.end_time_s or None
            if found.subject_cn and row.domain and not domain_covered([found.subject_cn], row.domain):
                name_mismatch = (
                    f"{cert_id}'s SubjectCN {found.subject_cn} does not name {row.domain} (its alternative names may; "
                    "the service decides)"
                )
    return TargetCheck(expiring=tuple(expiring), name_mismatch=name_mismatch, end_time_s=end_time_s)


def expiring_targets(
    rows: Iterable[Row], certificates: Lookup[str, CertificateInfo], now_s: float, min_validity_days: float
) -> tuple[str, ...]:
    """Each target certificate expiring within `min_validity_days`, once, with how many rows install it."""
    found: dict[str, int] = {}
    for row in rows:
        for warning in check_targets(row, certificates, now_s, min_validity_days).expiring:
            found[warning] = found.get(warning, 0) + 1
    return tuple(f"{warning}: {n} row(s) install it" for warning, n in found.items())


def _iso_day(unix_s: float) -> str:
    return datetime.fromtimestamp(unix_s, tz=UTC).strftime("%Y-%m-%d")
