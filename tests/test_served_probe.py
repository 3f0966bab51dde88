"""The served-certificate probe (issue 23, part 1; README "What the edge serves"): a TLS handshake by SNI with an
access point, the served leaf compared exactly with the target's (no chain check), probing again until it matches or
the wait ends, and `unreachable` at once where no handshake is possible."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import pytest
import trustme

from batchcert.live import probe as probe_module
from batchcert.live.probe import AccessPoint, ServedLeaf, probe_domain, read_served_leaf
from batchcert.live.reader import CertificateIndex, ContentReads, LiveReader
from batchcert.live.x509 import CertificateContent
from batchcert.model import Served
from batchcert.runner import served as served_module
from batchcert.schedule import LoopClock, Sleeper


class Edge:
    """A loopback TLS server that serves one of two certificates (`serving`), whatever the SNI."""

    def __init__(self, tmp_path: Path) -> None:
        self._dir = tmp_path
        ca = trustme.CA()
        self.contexts, self.sha256 = [], []
        for n, name in enumerate(("old.example.com", "new.example.com")):
            cert = ca.issue_cert(name)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            chain, key = tmp_path / f"chain{n}.pem", tmp_path / f"key{n}.pem"
            chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
            key.write_bytes(cert.private_key_pem.bytes())
            context.load_cert_chain(chain, key)
            self.contexts.append(context)
            der = ssl.PEM_cert_to_DER_cert(cert.cert_chain_pems[0].bytes().decode())
            self.sha256.append(hashlib.sha256(der).hexdigest())
        self.serving = 0
        self.handshakes = 0
        self.port = 0

    def _pick(self, tls: ssl.SSLObject, _sni: str | None, _context: ssl.SSLContext) -> None:
        self.handshakes += 1
        tls.context = self.contexts[self.serving]

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Edge]:
        front = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        front.load_cert_chain(*self._files(0))
        front.sni_callback = self._pick

        async def serve(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()

        server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=front)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            server.close()
            await server.wait_closed()

    def _files(self, n: int) -> tuple[Path, Path]:
        return self._dir / f"chain{n}.pem", self._dir / f"key{n}.pem"


async def test_the_served_leaf_is_read_by_sni_without_checking_the_chain(tmp_path: Path) -> None:
    async with Edge(tmp_path).running() as edge:
        leaf = await read_served_leaf("127.0.0.1", edge.port, "www.example.com")
    assert leaf.sha256 == edge.sha256[0] and leaf.not_after_s > 0


async def test_a_domain_serving_the_target_is_true_at_the_first_try(tmp_path: Path) -> None:
    async with Edge(tmp_path).running() as edge:
        edge.serving = 1
        result = await probe_domain(AccessPoint(("127.0.0.1",), edge.port), "www.example.com", edge.sha256[1], 5)
    assert (result.served, result.tries) == (Served.TRUE, 1)
    assert result.leaf is not None and result.leaf.sha256 == edge.sha256[1]


async def test_an_edge_that_lags_is_probed_again_until_it_serves_the_target(tmp_path: Path) -> None:
    async with Edge(tmp_path).running() as edge:

        async def switch_later() -> None:
            await asyncio.sleep(0.3)
            edge.serving = 1

        switching = asyncio.ensure_future(switch_later())
        point = AccessPoint(("127.0.0.1",), edge.port)
        result = await probe_domain(point, "www.example.com", edge.sha256[1], 5, interval_s=0.05)
        await switching
    assert result.served is Served.TRUE and result.tries > 1


async def test_an_edge_that_never_changes_is_false_when_the_wait_ends_with_what_it_served(tmp_path: Path) -> None:
    async with Edge(tmp_path).running() as edge:
        point = AccessPoint(("127.0.0.1",), edge.port)
        result = await probe_domain(point, "www.example.com", edge.sha256[1], 0.3, interval_s=0.05)
    assert result.served is Served.FALSE
    assert result.leaf is not None and result.leaf.sha256 == edge.sha256[0] and result.tries >= 3


async def test_no_address_a_name_that_never_resolves_or_a_closed_port_is_unreachable_at_once(
    tmp_path: Path,
) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert (await probe_domain(AccessPoint((), 443), "a.example.com", "00", 60)).served is Served.UNREACHABLE
    invalid = AccessPoint(("link-1.gaap.emulator.invalid",), 443)
    assert (await probe_domain(invalid, "a.example.com", "00", 60)).served is Served.UNREACHABLE
    async with Edge(tmp_path).running() as edge:
        port = edge.port
    closed = await probe_domain(AccessPoint(("127.0.0.1",), port), "a.example.com", "00", 60)
    assert closed.served is Served.UNREACHABLE and closed.error and closed.tries == 1
    assert loop.time() - started < 5  # never a wait of the 60 s


async def test_a_lagging_edge_is_found_serving_at_most_a_quarter_of_its_lag_late(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Probes go again after a quarter of the time spent so far (0.25 s to 5 s): on a fake clock, an edge that starts
    serving the target 8 s after the probe began is found serving by 8 × 1.25 + 0.25 s, in fewer than 20 tries."""
    now = [0.0]
    seen: list[float] = []

    async def handshake(_host: str, _port: int, _domain: str, _timeout_s: float) -> ServedLeaf:
        seen.append(now[0])
        return ServedLeaf("new" if now[0] >= 8 else "old", "CN=x", 0)

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    monkeypatch.setattr(probe_module, "read_served_leaf", handshake)
    point = AccessPoint(("127.0.0.1",), 443)
    result = await probe_domain(point, "a.example.com", "new", 120, sleep=sleep, now_s=lambda: now[0])
    assert result.served is Served.TRUE
    assert seen[-1] <= 8 * 1.25 + 0.25 and len(seen) < 20
    gaps = [b - a for a, b in itertools.pairwise(seen)]
    assert gaps[0] == pytest.approx(0.25) and max(gaps) <= 5


async def test_an_access_point_no_handshake_reached_is_not_tried_again_for_its_other_domains(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An edge that drops connections costs one handshake timeout, not one per domain: after a domain of an access
    point was unreachable, the point's other domains are unreachable at once, with the same reason."""
    calls: list[str] = []

    async def handshake(_host: str, _port: int, domain: str, _timeout_s: float) -> ServedLeaf:
        calls.append(domain)
        raise probe_module.ProbeFailed("TimeoutError")

    monkeypatch.setattr(probe_module, "read_served_leaf", handshake)
    index = CertificateIndex({}, contents={"cert-new": CertificateContent((), "aa" * 32, "CN=x", 0, True)})
    contents = ContentReads(cast(LiveReader, None))
    future: asyncio.Future[CertificateIndex] = asyncio.get_running_loop().create_future()
    future.set_result(index)
    contents._reads["cert-new"] = future
    prober = served_module._Prober(contents, 60, Sleeper(), LoopClock())
    point = AccessPoint(("127.0.0.1",), 443)
    results = [await prober.probe(point, f"d{n}.example.com", "cert-new") for n in range(5)]
    assert [r.served for r in results] == [Served.UNREACHABLE] * 5
    assert calls == ["d0.example.com"] and {r.error for r in results} == {"TimeoutError"}
