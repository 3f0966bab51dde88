"""What a certificate's content says, read with the `cryptography` package (the only module of the client that
imports it): `CertificateContent` from the PEM `DescribeCertificateDetail` answers (docs/gaap-api.md, "Certificate
content"), and from the DER leaf an edge serves (`read_leaf`). Pure, no I/O.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding


@dataclass(frozen=True)
class CertificateContent:
    """The leaf of a certificate's content and what a client checks of it: the SubjectAltName DNS names (browsers
    ignore the CN since RFC 6125 §6.4.4 when SANs exist, and Chrome and Safari reject a leaf without them, so only
    SANs count), the leaf's SHA-256 (what the edge must serve), its subject and notAfter, and whether the content
    carries the leaf's issuer (or the leaf signs itself)."""

    names: tuple[str, ...]
    leaf_sha256: str
    subject: str
    not_after_s: int
    chain_complete: bool


class UnreadableContent(ValueError):
    """The content holds no certificate `cryptography` can read."""


def read_content(pem: str) -> CertificateContent:
    """The leaf (the first certificate) of `pem` and whether the rest carries its issuer. Raises
    UnreadableContent."""
    try:
        chain = x509.load_pem_x509_certificates(pem.encode("ascii", "replace"))
    except ValueError as exc:
        raise UnreadableContent(str(exc)) from exc
    if not chain:
        raise UnreadableContent("no certificate in the content")
    leaf = chain[0]
    names = _names_of(leaf)
    self_signed = leaf.issuer == leaf.subject
    return CertificateContent(
        names=names,
        leaf_sha256=hashlib.sha256(leaf.public_bytes(Encoding.DER)).hexdigest(),
        subject=leaf.subject.rfc4514_string(),
        not_after_s=int(leaf.not_valid_after_utc.timestamp()),
        chain_complete=self_signed or any(other.subject == leaf.issuer for other in chain[1:]),
    )


def read_leaf(der: bytes) -> CertificateContent:
    """What a served certificate (DER, as a TLS handshake carries it) says: its names, SHA-256, subject and notAfter
    (`chain_complete` cannot be known from a leaf alone: False). Raises UnreadableContent."""
    try:
        leaf = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise UnreadableContent(str(exc)) from exc
    return CertificateContent(
        names=_names_of(leaf),
        leaf_sha256=hashlib.sha256(der).hexdigest(),
        subject=leaf.subject.rfc4514_string(),
        not_after_s=int(leaf.not_valid_after_utc.timestamp()),
        chain_complete=False,
    )


def _names_of(leaf: x509.Certificate) -> tuple[str, ...]:
    """The leaf's SubjectAltName DNS names (none without the extension)."""
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(san.get_values_for_type(x509.DNSName))
