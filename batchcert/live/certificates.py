"""The certificate pre-flight: the account's certificates as `DescribeCertificates` lists them (`CertificateInfo`,
`certificates_in`) and the checks every certificate a row installs must pass before it is sent — it exists, has the
right type and has not expired (`check_targets`, `expiring_targets`), the server certificate's names cover the domain
(its SubjectAltName when its content was read, `domain_covered`; else its SubjectCN, a warning only) and its content
carries its issuer (a warning). Certificate types are `batchcert.api.vocabulary`'s. Pure functions; no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping as Lookup
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from batchcert.api.vocabulary import CERTIFICATE_TYPE_NAMES, CLIENT_CA_TYPE, SERVER_SSL_TYPE
from batchcert.live.x509 import CertificateContent
from batchcert.model import (
    DEFAULT_CERTIFICATE,
    PREFLIGHT_EXPIRED,
    PREFLIGHT_NOT_FOUND,
    PREFLIGHT_SAN_MISMATCH,
    PREFLIGHT_TYPE_MISMATCH,
    Row,
)

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
    summary), a server certificate whose SubjectCN does not name the domain when its content was not read (plan only:
    its alternative names may), a content without the leaf's issuer (`chain_incomplete`: clients that do not fetch
    it reject the chain) — and the end time of the server certificate the row installs (None for `default`)."""

    code: str = ""
    message: str = ""
    expiring: tuple[str, ...] = ()
    name_mismatch: str = ""
    end_time_s: int | None = None
    chain_incomplete: str = ""


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
    row: Row,
    certificates: Lookup[str, CertificateInfo],
    now_s: float,
    min_validity_days: float,
    contents: Lookup[str, CertificateContent] | None = None,
) -> TargetCheck:
    """Check every certificate `row` installs against the account's certificates: it exists, has the right type
    (server SSL for CertificateId, client CA for the client ids) and has not expired; and, for a domain row whose
    server certificate's content was read (`contents`), that its SubjectAltName covers the domain. `default` is the
    listener's own and is not checked."""
    wanted = [(row.certificate_id, SERVER_SSL_TYPE, "CertificateId")]
    clients = row.poly_client_certificate_ids or ((row.client_certificate_id,) if row.client_certificate_id else ())
    wanted += [(c, CLIENT_CA_TYPE, "client certificate") for c in clients]
    expiring: list[str] = []
    name_mismatch = chain_incomplete = ""
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
            content = (contents or {}).get(cert_id)
            if content is not None and row.domain:
                refused = check_names(row.domain, cert_id, content)
                if refused is not None:
                    return refused
                if not content.chain_complete:
                    chain_incomplete = incomplete_chain(cert_id)
            elif found.subject_cn and row.domain and not domain_covered([found.subject_cn], row.domain):
                name_mismatch = (
                    f"{cert_id}'s SubjectCN {found.subject_cn} does not name {row.domain} (its alternative names may; "
                    "the service decides)"
                )
    return TargetCheck(
        expiring=tuple(expiring), name_mismatch=name_mismatch, end_time_s=end_time_s, chain_incomplete=chain_incomplete
    )


def check_names(domain: str, cert_id: str, content: CertificateContent) -> TargetCheck | None:
    """The refusal of a server certificate whose SubjectAltName names do not cover `domain` (None: they do)."""
    if domain_covered(content.names, domain):
        return None
    named = ", ".join(content.names[:5]) + (", …" if len(content.names) > 5 else "")
    return TargetCheck(
        PREFLIGHT_SAN_MISMATCH, f"{cert_id} names {named or 'no domain (it has no SubjectAltName)'} — not {domain}"
    )


def incomplete_chain(cert_id: str) -> str:
    """The warning for a server certificate whose content lacks its issuer's certificate."""
    return f"{cert_id}'s content lacks the certificate of its issuer (an incomplete chain)"


def content_targets(rows: Iterable[Row], certificates: Lookup[str, CertificateInfo]) -> list[str]:
    """The server certificates domain rows install (not `default`), once each: those whose names are checked."""
    wanted: dict[str, None] = {}
    for row in rows:
        found = certificates.get(row.certificate_id)
        if row.domain and found is not None and found.type == SERVER_SSL_TYPE:
            wanted[row.certificate_id] = None
    return list(wanted)


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
