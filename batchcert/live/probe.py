"""What the edge serves: a TLS handshake to a connection's access point on the listener's port with SNI = the domain,
the served leaf's SHA-256 compared with the target's (docs/gaap-api.md, "What the edge serves").

The chain is not validated: the leaf is compared byte for byte, which is stronger for this question (is the edge
serving the certificate the row installed?) and works for private CAs and self-signed targets alike. Probes go
straight to the edge, outside the API quota.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from batchcert.live.x509 import UnreadableContent, read_leaf
from batchcert.model import Served


@dataclass(frozen=True)
class AccessPoint:
    """Where clients reach a listener: the connection's addresses (its IPs, then its access domain), the listener's
    port (no hosts, or no port: nothing to probe), and the listener's own certificate (what its `default` domains
    serve; "" unknown)."""

    hosts: tuple[str, ...]
    port: int | None
    certificate_id: str = ""


@dataclass(frozen=True)
class ServedLeaf:
    """The leaf a handshake was answered with: its DER SHA-256, subject and notAfter (Unix seconds)."""

    sha256: str
    subject: str
    not_after_s: int


@dataclass(frozen=True)
class ProbeResult:
    """A domain's probe: what was served (`served`), the last leaf seen (None: no handshake), the address that
    answered or was tried last, why there was no handshake, and how many handshakes were tried."""

    served: Served
    leaf: ServedLeaf | None = None
    address: str = ""
    error: str = ""
    tries: int = 0


#: a probe's connect and handshake, each: an edge that does not answer within this is `unreachable` for this try
HANDSHAKE_TIMEOUT_S = 5.0
#: Between two handshakes of a domain that still serves another certificate: a quarter of the time it has been
#: probed so far, at least PROBE_INTERVAL_S and at most MAX_PROBE_INTERVAL_S — so the probe finds a lagging edge
#: serving the target at most a quarter of its lag late (bench (g): a fixed 2 s found a 2 s lag 1.3 s late), and a
#: stuck edge costs a few dozen handshakes over a 120 s wait, not hundreds
PROBE_INTERVAL_S = 0.25
MAX_PROBE_INTERVAL_S = 5.0
PROBE_INTERVAL_SHARE = 0.25


class ProbeFailed(Exception):
    """No TLS handshake with the address (refused, reset, timed out, not a TLS server)."""


def _client_context() -> ssl.SSLContext:
    """A TLS client that reads whatever leaf is served: no chain or host name check (the leaf is compared exactly)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def read_served_leaf(host: str, port: int, domain: str, timeout_s: float = HANDSHAKE_TIMEOUT_S) -> ServedLeaf:
    """The leaf `host:port` serves for SNI `domain`. Raises ProbeFailed."""
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(
                host, port, ssl=_client_context(), server_hostname=domain, ssl_handshake_timeout=timeout_s
            )
    except (OSError, TimeoutError, ssl.SSLError, UnicodeError) as exc:
        raise ProbeFailed(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__) from exc
    try:
        tls = writer.get_extra_info("ssl_object")
        der = tls.getpeercert(binary_form=True) if tls is not None else None
        if not der:
            raise ProbeFailed("the handshake carried no certificate")
        try:
            leaf = read_leaf(der)
        except UnreadableContent as exc:
            raise ProbeFailed(f"the served certificate could not be read ({exc})") from exc
        return ServedLeaf(leaf.leaf_sha256, leaf.subject, leaf.not_after_s)
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
            async with asyncio.timeout(timeout_s):
                await writer.wait_closed()
        del reader


def _never_resolves(host: str) -> bool:
    """A name under `.invalid` never resolves (RFC 6761, section 6.4): no lookup is spent on it."""
    return host.lower().rstrip(".").endswith(".invalid") or host.lower().rstrip(".") == "invalid"


async def probe_domain(
    point: AccessPoint,
    domain: str,
    want_sha256: str,
    wait_s: float,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    now_s: Callable[[], float] = time.monotonic,
    interval_s: float = PROBE_INTERVAL_S,
    timeout_s: float = HANDSHAKE_TIMEOUT_S,
) -> ProbeResult:
    """Probe `domain` at `point` until it serves the leaf `want_sha256` or `wait_s` has passed: `true` as soon as it
    does, `false` when another leaf was still served at the end, `unreachable` at once when the point has no address
    or none of its hosts completes a handshake on the first try. Each of the point's hosts is tried in turn until
    one answers."""
    hosts = tuple(h for h in point.hosts if not _never_resolves(h))
    if not hosts or point.port is None:
        return ProbeResult(Served.UNREACHABLE, error="the connection has no access address or the listener no port")
    started_s = now_s()
    deadline_s, tries, error, address = started_s + wait_s, 0, "", ""
    last: ServedLeaf | None = None
    while True:
        for host in hosts:
            address, tries = f"{host}:{point.port}", tries + 1
            try:
                last = await read_served_leaf(host, point.port, domain, timeout_s)
            except ProbeFailed as exc:
                error = str(exc)
                continue
            error = ""
            break
        if last is None:  # no handshake at all: a warning at once, never a wait (README, "What the edge serves")
            return ProbeResult(Served.UNREACHABLE, None, address, error, tries)
        if last.sha256 == want_sha256:
            return ProbeResult(Served.TRUE, last, address, "", tries)
        left_s = deadline_s - now_s()
        if left_s <= 0:
            return ProbeResult(Served.FALSE, last, address, error, tries)
        pause_s = min(MAX_PROBE_INTERVAL_S, max(interval_s, PROBE_INTERVAL_SHARE * (now_s() - started_s)))
        await sleep(min(pause_s, left_s))
