"""Reconciliation rules: what the live state of a domain is, whether a row is already at its target, and the mapping
row that undoes a change. Pure functions over `DescribeRules` answers; no I/O.

`DescribeRules(ListenerId)` lists one `DomainRuleSet` per domain with `CertificateId` (the literal `default` for a
domain on the listener's certificate), `ClientCertificateId`, `PolyClientCertificateAliasInfo` and `DomainStatus`
(0 running, 1 changing, 2 deleting) — docs/gaap-api.md, "Reading the live state".
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from batchcert.model import DEFAULT_CERTIFICATE, Mapping, Row


@dataclass(frozen=True)
class LiveDomain:
    """A domain's certificate state as the service reports it. `client_ids` are the poly client CA ids, or the single
    ClientCertificateId when no poly list is shown; () for one-way TLS."""

    domain: str
    certificate_id: str
    client_ids: tuple[str, ...]
    status: int

    @property
    def client_text(self) -> str:
        return ";".join(self.client_ids)


def live_domains(response: dict[str, Any]) -> dict[str, LiveDomain]:
    """Index a DescribeRules answer by lower-cased domain."""
    found: dict[str, LiveDomain] = {}
    for rule in response.get("DomainRuleSet") or []:
        poly = tuple(
            str(p.get("CertificateId"))
            for p in rule.get("PolyClientCertificateAliasInfo") or []
            if p.get("CertificateId")
        )
        single = rule.get("ClientCertificateId")
        clients = poly or ((str(single),) if single else ())
        domain = str(rule.get("Domain", ""))
        found[domain.lower()] = LiveDomain(
            domain=domain,
            certificate_id=str(rule.get("CertificateId") or DEFAULT_CERTIFICATE),
            client_ids=clients,
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


def judge(row: Row, live: dict[str, LiveDomain] | None) -> tuple[Verdict, LiveDomain | None]:
    """The verdict for `row` given its listener's live domains (None: the listener does not exist)."""
    if live is None:
        return Verdict.NOT_FOUND, None
    domain = live.get(row.domain.lower())
    if domain is None:
        return Verdict.NOT_FOUND, None
    if is_at_target(row, domain):
        return Verdict.UNCHANGED, domain
    if domain.status != 0:
        return Verdict.CHANGING, domain
    return Verdict.CHANGE, domain


#: what `plan` can say of a row: a pre-flight verdict, or why there is none
PLAN_ACTIONS = (*(v.value for v in Verdict), "invalid", "unknown")


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
