"""TC3-HMAC-SHA256 request signing, as docs/gaap-api.md ("Signing") states it. Pure: no I/O, no clock.

The caller passes the timestamp (so the clock is injected) and the exact Content-Type and Host it will send:
the server recomputes the canonical request from the headers it receives, so they must match byte for byte.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime

ALGORITHM = "TC3-HMAC-SHA256"
CONTENT_TYPE_JSON = "application/json"


def utc_date(timestamp: int) -> str:
    """The UTC date (YYYY-MM-DD) of a unix timestamp in seconds — never the local date."""
    return _utc_date_of_day(timestamp // 86400)


@functools.lru_cache(maxsize=8)
def _utc_date_of_day(day: int) -> str:
    # one formatting per UTC day, not per request (a unix day is exactly 86,400 s: no leap seconds)
    return datetime.fromtimestamp(day * 86400, tz=UTC).strftime("%Y-%m-%d")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def canonical_request(
    body: bytes, content_type: str, host: str, signed_headers: tuple[tuple[str, str], ...] | None = None
) -> str:
    """The canonical request of a `POST /` with no query string.

    `signed_headers` lists (lowercase name, value) in signing order; by default content-type and host.
    """
    headers = signed_headers or (("content-type", content_type), ("host", host))
    canonical_headers = "".join(f"{name}:{value}\n" for name, value in headers)
    names = ";".join(name for name, _ in headers)
    return f"POST\n/\n\n{canonical_headers}\n{names}\n{sha256_hex(body)}"


def string_to_sign(canonical: str, timestamp: int, service: str) -> str:
    scope = f"{utc_date(timestamp)}/{service}/tc3_request"
    return f"{ALGORITHM}\n{timestamp}\n{scope}\n{sha256_hex(canonical.encode('utf-8'))}"


def signature(secret_key: str, timestamp: int, service: str, to_sign: str) -> str:
    """Hex HMAC of the string to sign under the key derived from (secret key, UTC date, service)."""
    k_signing = _signing_key(secret_key, utc_date(timestamp), service)
    return hmac.new(k_signing, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


@functools.lru_cache(maxsize=16)
def _signing_key(secret_key: str, date: str, service: str) -> bytes:
    # derived once per (key, UTC day, service) instead of three HMACs per request; held in process memory only,
    # like the key itself
    k_date = _hmac(("TC3" + secret_key).encode("utf-8"), date)
    k_service = _hmac(k_date, service)
    return _hmac(k_service, "tc3_request")


@dataclass(frozen=True)
class SignedRequest:
    """The headers to send with `body`. Content-Type and Host are the signed values: send them unchanged."""

    headers: dict[str, str]
    body: bytes


def sign_request(
    *,
    secret_id: str,
    secret_key: str,
    service: str,
    host: str,
    action: str,
    version: str,
    body: bytes,
    timestamp: int,
    token: str = "",
    content_type: str = CONTENT_TYPE_JSON,
    language: str = "en-US",
) -> SignedRequest:
    """Sign one API call. `timestamp` is unix seconds; `host` is host[:port] as sent in the Host header."""
    canonical = canonical_request(body, content_type, host)
    sig = signature(secret_key, timestamp, service, string_to_sign(canonical, timestamp, service))
    authorization = (
        f"{ALGORITHM} Credential={secret_id}/{utc_date(timestamp)}/{service}/tc3_request, "
        f"SignedHeaders=content-type;host, Signature={sig}"
    )
    headers = {
        "Authorization": authorization,
        "Content-Type": content_type,
        "Host": host,
        "X-TC-Action": action,
        "X-TC-Version": version,
        "X-TC-Timestamp": str(timestamp),
        "X-TC-Language": language,
    }
    if token:
        headers["X-TC-Token"] = token
    return SignedRequest(headers=headers, body=body)


@dataclass(frozen=True)
class Authorization:
    """A parsed `Authorization` header."""

    secret_id: str
    date: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str


def parse_authorization(value: str) -> Authorization | None:
    """Parse `TC3-HMAC-SHA256 Credential=ID/date/service/tc3_request, SignedHeaders=a;b, Signature=hex`.

    Returns None when the header is malformed in any way.
    """
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        return None
    fields: dict[str, str] = {}
    for part in rest.split(","):
        key, sep, val = part.strip().partition("=")
        if not sep:
            return None
        fields[key] = val.strip()
    scope = fields.get("Credential", "").split("/")
    if len(scope) != 4 or scope[3] != "tc3_request" or not all(scope):
        return None
    signed = tuple(h.strip().lower() for h in fields.get("SignedHeaders", "").split(";") if h.strip())
    sig = fields.get("Signature", "")
    if not signed or not sig:
        return None
    return Authorization(scope[0], scope[1], scope[2], signed, sig)
