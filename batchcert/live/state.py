"""A domain's live state and what it means for a row: `LiveDomain` read from `DescribeRules` and
`DescribeHTTPSListeners` answers, whether a row is already at its target, the pre-flight verdict (`judge`), the plan
lines, and the mapping row that undoes a change (`rollback_for`). Pure functions; no I/O.

`DescribeRules(ListenerId)` lists one `DomainRuleSet` per domain with `CertificateId` (the literal `default` for a
domain on the listener's certificate), `ClientCertificateId`, `PolyClientCertificateAliasInfo` and `DomainStatus`
(0 running, 1 changing, 2 deleting) — docs/gaap-api.md, "Reading the live state".
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from batchcert.model import DEFAULT_CERTIFICATE, Expected, Mapping, Row


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


class PlanAction(enum.StrEnum):
    """What `plan` says of a row (plan.csv's `action`): a pre-flight verdict, or why there is none."""

    CHANGE = Verdict.CHANGE.value
    UNCHANGED = Verdict.UNCHANGED.value
    NOT_FOUND = Verdict.NOT_FOUND.value
    CHANGING = Verdict.CHANGING.value
    MISMATCH = Verdict.MISMATCH.value
    WRONG_PROXY = Verdict.WRONG_PROXY.value
    #: the certificate pre-flight refuses the row (`run` ends it terminal, unsent)
    REFUSED = "refused"
    #: the mapping row is invalid
    INVALID = "invalid"
    #: the listener could not be read
    UNKNOWN = "unknown"

    @classmethod
    def of(cls, verdict: Verdict) -> PlanAction:
        return cls(verdict.value)


#: what `plan` can say of a row, in the order its counts are reported
PLAN_ACTIONS = tuple(PlanAction)
#: plan actions of rows `run` would not bring to their target (plan exits 1 when any row has one)
NOT_DONE_PLAN_ACTIONS = (
    PlanAction.INVALID,
    PlanAction.UNKNOWN,
    PlanAction.REFUSED,
    PlanAction.NOT_FOUND,
    PlanAction.MISMATCH,
    PlanAction.WRONG_PROXY,
)
#: plan actions of rows `run` would change (plan exits 4 when any row has one and none is not done)
PENDING_PLAN_ACTIONS = (PlanAction.CHANGE, PlanAction.CHANGING)


@dataclass(frozen=True)
class PlanLine:
    """What the pre-flight says a row would do: `action`, the live state, and why."""

    row: Row
    action: PlanAction
    live: LiveDomain | None
    reason: str = ""


def plan_every_row(mapping: Mapping, judged: list[PlanLine]) -> list[PlanLine]:
    """One line per mapping row, in mapping order: invalid rows with their problem, a duplicate with its primary's
    verdict, a valid row the pre-flight has no line for as `unknown`."""
    by_row = {line.row.row_number: line for line in judged}
    lines = []
    for row in mapping.rows:
        if row.row_number in mapping.problems:
            lines.append(PlanLine(row, PlanAction.INVALID, None, mapping.problems[row.row_number]))
            continue
        found = by_row.get(mapping.duplicate_of.get(row.row_number, row.row_number))
        lines.append(
            PlanLine(row, found.action, found.live, found.reason) if found else PlanLine(row, PlanAction.UNKNOWN, None)
        )
    return lines


def count_plan_actions(lines: list[PlanLine]) -> dict[PlanAction, int]:
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
