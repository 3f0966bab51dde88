"""The X.509 content `DescribeCertificateDetail` answers, made from a world certificate's spec (`world` docstring,
"Certificates"): deterministic EC P-256 certificates, the same PEM on every run and in every emulator.

- A server SSL (type 2) or proxy SSL (type 4) certificate is a leaf: SubjectAltName DNS names = its `domains`
  (wildcards as given), CN = its SubjectCN, validity = its BeginTime/EndTime, signed by the CA named by its IssuerCN.
  Its content is the leaf followed by that CA's certificate (`chain` "complete"), the leaf alone ("leaf_only": an
  incomplete chain, as a customer who uploads no intermediate leaves it), or a leaf signed by its own key
  ("self_signed").
- A client CA (type 1) or origin CA (type 3) is a CA certificate (BasicConstraints ca=True) signed by its issuer, or
  by itself when `chain` is "self_signed" or its issuer is itself (a root); its content is that certificate alone.
- A basic-auth "certificate" (type 0) is an htpasswd line, not X.509 (CN docs 36977: the type's content is a user
  and password file).

Keys come from `ec.derive_private_key` over a SHA-256 of the certificate id (an issuer CA's: of its name), and
signatures use RFC 6979 deterministic ECDSA (`ecdsa_deterministic`), so the PEM depends on the spec alone.

The TLS edge (`batchcert.emulator.edge`) serves an SSL certificate with `make_edge_credentials`: the same content
(so the leaf's DER, and its SHA-256, is the one DescribeCertificateDetail answers) and the leaf's private key as PKCS#8
PEM — the key stays in the emulator, never in an API answer.

`CertificateKey` is never a real key: `fake_key` answers a PEM-looking block whose body carries `FAKE_KEY_MARKER`,
so a test can tell that no key content leaks into anything the client writes (docs/gaap-api.md, "Certificate
content").
"""

from __future__ import annotations

import base64
import functools
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from batchcert.emulator.state import CHAIN_COMPLETE, CHAIN_SELF_SIGNED, Certificate

#: the marker every fake `CertificateKey` carries, and no real answer ever does
FAKE_KEY_MARKER = "EMULATOR-FAKE-KEY"
#: the issuer a certificate without `issuer_cn` is signed by (the IssuerCN DescribeCertificates reads)
DEFAULT_ISSUER_CN = "batchcert emulator CA"
#: the types whose content is a leaf certificate with a private key: "SSL证书" (py-sdk models.py,
#: CertificateDetail.CertificateKey: "仅当证书类型为SSL证书时，返回该字段" — only SSL certificates carry a key)
LEAF_TYPES = (2, 4)
#: the types whose content is a CA certificate
CA_TYPES = (1, 3)
BASIC_AUTH_TYPE = 0
#: the order of the P-256 group (SEC 2, https://www.secg.org/sec2-v2.pdf, 2.4.2): a private scalar is in [1, n-1]
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
#: an issuer CA's validity: wide enough to cover any leaf a world dates, and fixed so its PEM never changes
_CA_NOT_BEFORE = datetime(2000, 1, 1, tzinfo=UTC)
_CA_NOT_AFTER = datetime(2099, 12, 31, 23, 59, 59, tzinfo=UTC)
#: the longest CommonName X.509 allows (RFC 5280 appendix A, ub-common-name); a longer SubjectCN is left out of the
#: certificate's subject (the certificate still names it in SubjectCN, as DescribeCertificates does)
_MAX_CN = 64


@dataclass(frozen=True)
class Spec:
    """What a certificate's content is made from: its id and the world's fields (hashable, for the cache)."""

    cert_id: str
    type: int
    domains: tuple[str, ...]
    subject_cn: str
    issuer_cn: str
    begin_time: int
    end_time: int
    chain: str


def subject_cn(cert_id: str, cert: Certificate) -> str:
    """SubjectCN: the world's `subject_cn`, else its first domain, else the id (the `world` docstring)."""
    return cert.subject_cn or (cert.domains[0] if cert.domains else cert_id)


def issuer_cn(cert_id: str, cert: Certificate) -> str:
    """IssuerCN as the content says it: the certificate's own CN when it signs itself, else its issuer's."""
    if cert.chain == CHAIN_SELF_SIGNED:
        return subject_cn(cert_id, cert)
    return cert.issuer_cn or DEFAULT_ISSUER_CN


def spec_of(cert_id: str, cert: Certificate, epoch: float) -> Spec:
    """The spec of a world certificate, its validity placed around `epoch` as `Certificate.validity` does."""
    begin, end = cert.validity(epoch)
    return Spec(
        cert_id=cert_id,
        type=cert.type,
        domains=tuple(cert.domains),
        subject_cn=subject_cn(cert_id, cert),
        issuer_cn=cert.issuer_cn or DEFAULT_ISSUER_CN,
        begin_time=begin,
        end_time=end,
        chain=cert.chain,
    )


def certificate_content(cert_id: str, cert: Certificate, epoch: float) -> str:
    """CertificateContent of a world certificate (see the module docstring)."""
    return content_of(spec_of(cert_id, cert, epoch))


class EdgeCredentials(NamedTuple):
    """What a TLS server needs to serve a certificate: its content (the chain, leaf first) and the leaf's key, PEM."""

    chain_pem: str
    key_pem: str


def make_edge_credentials(cert_id: str, cert: Certificate, epoch: float) -> EdgeCredentials:
    """The chain and key the edge serves for a world SSL certificate (types 2, 4): the chain is exactly
    `certificate_content`. Raises ValueError for another type (no leaf, no key)."""
    spec = spec_of(cert_id, cert, epoch)
    if spec.type not in LEAF_TYPES:
        raise ValueError(f"certificate {cert_id} is of type {spec.type}, not an SSL certificate with a key")
    return _edge_credentials_of(spec)


@functools.lru_cache(maxsize=1024)
def _edge_credentials_of(spec: Spec) -> EdgeCredentials:
    key_pem = _key(f"certificate:{spec.cert_id}").private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return EdgeCredentials(content_of(spec), key_pem.decode("ascii"))


def fake_key(cert_id: str, cert_type: int) -> str | None:
    """CertificateKey: a recognisable fake for an SSL certificate (never a real key), None for the other types."""
    if cert_type not in LEAF_TYPES:
        return None
    return (
        "-----BEGIN PRIVATE KEY-----\n"
        f"{FAKE_KEY_MARKER}-{cert_id}-NOT-A-REAL-KEY-THE-BATCHCERT-EMULATOR-NEVER-HOLDS-ONE\n"
        "-----END PRIVATE KEY-----\n"
    )


@functools.lru_cache(maxsize=4096)
def content_of(spec: Spec) -> str:
    """The content of a spec, cached: a spec that changes (a world edited while served) makes new content."""
    if spec.type == BASIC_AUTH_TYPE:
        return _htpasswd(spec.cert_id)
    ca = spec.type in CA_TYPES
    own_key = _key(f"certificate:{spec.cert_id}")
    if spec.chain == CHAIN_SELF_SIGNED or (ca and spec.issuer_cn == spec.subject_cn):
        cert = _build(spec, own_key, _name(spec.subject_cn), own_key, ca=ca)
        return _pem(cert)
    issuer_key, issuer_cert = _issuer(spec.issuer_cn)
    cert = _build(spec, own_key, issuer_cert.subject, issuer_key, ca=ca)
    if ca or spec.chain != CHAIN_COMPLETE:
        return _pem(cert)
    return _pem(cert) + _pem(issuer_cert)


def clear_caches() -> None:
    """Forget every certificate made so far (tests: the next content is made afresh, as in a new process)."""
    content_of.cache_clear()
    _edge_credentials_of.cache_clear()
    _issuer.cache_clear()


def _build(
    spec: Spec,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
) -> x509.Certificate:
    begin = datetime.fromtimestamp(spec.begin_time, UTC)
    # the builder refuses an end before the start; a world that dates one so still gets a (momentary) certificate
    end = max(datetime.fromtimestamp(spec.end_time, UTC), begin)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(spec.subject_cn))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(_serial(f"certificate:{spec.cert_id}"))
        .not_valid_before(begin)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    if ca:
        builder = builder.add_extension(_key_usage(cert_sign=True), critical=True)
    else:
        builder = builder.add_extension(_key_usage(cert_sign=False), critical=True)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if spec.type == 2 else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if spec.domains:
            names = [x509.DNSName(_a_label(d)) for d in spec.domains]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256(), ecdsa_deterministic=True)


@functools.lru_cache(maxsize=256)
def _issuer(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """The issuer CA named `name` (a self-signed root, one per name): its key and certificate."""
    key = _key(f"issuer:{name}")
    subject = _name(name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(_serial(f"issuer:{name}"))
        .not_valid_before(_CA_NOT_BEFORE)
        .not_valid_after(_CA_NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256(), ecdsa_deterministic=True)
    )
    return key, cert


def _key(seed: str) -> ec.EllipticCurvePrivateKey:
    """A P-256 key derived from `seed`: the same key on every run."""
    digest = int.from_bytes(hashlib.sha256(f"batchcert-emulator:{seed}".encode()).digest(), "big")
    return ec.derive_private_key(digest % (_P256_ORDER - 1) + 1, ec.SECP256R1())


def _serial(seed: str) -> int:
    """A positive serial number of at most 20 octets (RFC 5280 4.1.2.2), derived from `seed`."""
    digest = hashlib.sha256(f"batchcert-emulator-serial:{seed}".encode()).digest()
    return int.from_bytes(digest[:16], "big") | 1


def _name(cn: str) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "batchcert emulator")]
    if 1 <= len(cn) <= _MAX_CN:
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attributes)


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _a_label(domain: str) -> str:
    """A DNS name as X.509 carries it: internationalized names as A-labels (RFC 5280 4.2.1.6)."""
    return domain if domain.isascii() else domain.encode("idna").decode("ascii")


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _htpasswd(cert_id: str) -> str:
    """A basic-auth content: one htpasswd line in the {SHA} form, of a password derived from the id (never real)."""
    # {SHA} is SHA-1 by definition (https://httpd.apache.org/docs/2.4/misc/password_encryptions.html)
    sha1 = hashlib.sha1(f"batchcert-emulator:{cert_id}".encode(), usedforsecurity=False)
    digest = base64.b64encode(sha1.digest()).decode()
    return f"emulator:{{SHA}}{digest}\n"
