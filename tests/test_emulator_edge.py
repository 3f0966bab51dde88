"""The emulator's TLS edge: each HTTPS domain's served leaf, by SNI, is the first certificate of the content
DescribeCertificateDetail answers for the certificate the world serves it (its own, or its listener's on `default`);
changes show after their lag, stuck domains never change, unknown names fail the handshake; while the edge runs the
listings say where it is, and without it they answer as before; the world's edge keys round-trip."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from batchcert import emulator as emu
from batchcert.errors import WorldError
from tests.conftest import ThreadedEmulator
from tests.test_emulator_inventory import call as sdk_call
from tests.test_emulator_inventory import sdk
from tests.worlds import SECRET_ID, SECRET_KEY, small_world

LISTENER, GROUP_LISTENER, HTTP_LISTENER = "listener-edge0001", "listener-edge0002", "listener-http0001"
#: the domains' lag in the lag test: short, yet far longer than a loopback handshake
LAG_S = 0.3


def edge_world(**overrides: Any) -> dict[str, Any]:
    """A proxy listener (a domain of each edge kind: plain, lagging, stuck, on `default`, on a certificate not in the
    world), a group listener that also has www.example.com (the first listener serves it), an HTTP listener; fast
    tasks, no latency. This file's own: only the edge's tests need domains that lag or stick."""
    wildcard = {"type": 2, "domains": ["*.example.com"]}
    return {
        "credentials": {SECRET_ID: SECRET_KEY},
        "task_seconds": 0.05,
        "latency_ms": 0,
        "proxies": {"link-edge": {"name": "edge"}},
        "groups": {"lg-edge": {"name": "edge group"}},
        "listeners": {
            LISTENER: {
                "proxy_id": "link-edge",
                "certificate_id": "cert-listener",
                "domains": {
                    "www.example.com": {"certificate_id": "cert-a"},
                    "lag.example.com": {"certificate_id": "cert-a", "edge_lag_s": LAG_S},
                    "stuck.example.com": {"certificate_id": "cert-a", "edge_stuck": True},
                    "on-default.example.com": {"certificate_id": "default"},
                    "roll.example.com": {"certificate_id": "cert-a"},
                    "gone.example.com": {"certificate_id": "cert-gone"},
                },
            },
            GROUP_LISTENER: {
                "group_id": "lg-edge",
                "certificate_id": "cert-b",
                "port": 8443,
                "domains": {
                    "www.example.com": {"certificate_id": "cert-b"},
                    "g.example.com": {"certificate_id": "cert-b"},
                },
            },
            HTTP_LISTENER: {
                "proxy_id": "link-edge",
                "protocol": "HTTP",
                "port": 80,
                "domains": {"plain.example.com": {}},
            },
        },
        "certificates": {
            "cert-a": wildcard | {"issuer_cn": "Edge Test CA"},
            "cert-b": wildcard,
            "cert-listener": wildcard | {"chain": "leaf_only"},
        },
    } | overrides


@contextlib.asynccontextmanager
async def serving(data: dict[str, Any]) -> AsyncIterator[tuple[str, emu.Emulator]]:
    async with emu.serve(emu.World.from_dict(data)) as (url, em):
        yield url, em


async def call(em: emu.Emulator, action: str, **params: Any) -> dict[str, Any]:
    """One request through the emulator's admission and handlers (as a signed request goes, without HTTP)."""
    return await em.answer(SECRET_ID, action, json.dumps(params).encode(), "req-edge")


async def leaf_sha256(em: emu.Emulator, cert_id: str) -> str:
    """SHA-256 of the DER of the first certificate of the CertificateContent DescribeCertificateDetail answers."""
    detail = await call(em, "DescribeCertificateDetail", CertificateId=cert_id)
    first, _, _ = detail["CertificateDetail"]["CertificateContent"].partition("-----END CERTIFICATE-----")
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(first + "-----END CERTIFICATE-----\n")).hexdigest()


async def served_sha256(em: emu.Emulator, domain: str | None) -> str:
    """SHA-256 of the DER leaf the edge serves for SNI `domain` (None: no SNI, the address is an IP literal)."""
    assert em.edge_address is not None
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    host, port = em.edge_address
    _reader, writer = await asyncio.open_connection(host, port, ssl=client, server_hostname=domain)
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    assert der
    return hashlib.sha256(der).hexdigest()


async def shas(em: emu.Emulator, *cert_ids: str) -> list[str]:
    return [await leaf_sha256(em, c) for c in cert_ids]


async def test_each_domain_is_served_its_certificate_leaf() -> None:
    """A domain's own certificate, a `default` domain its listener's (a leaf-only chain as well), a domain on two
    listeners the first one's; the leaf is byte for byte DescribeCertificateDetail's first certificate, whatever case
    the SNI is in."""
    async with serving(edge_world()) as (_, em):
        a, listener = await shas(em, "cert-a", "cert-listener")
        assert await served_sha256(em, "www.example.com") == a
        assert await served_sha256(em, "WWW.Example.com") == a
        assert await served_sha256(em, "on-default.example.com") == listener
        assert await served_sha256(em, "g.example.com") == await leaf_sha256(em, "cert-b")


async def test_a_change_is_served_once_its_lag_passed() -> None:
    """After ModifyCertificate the API reads the new certificate at once; the edge serves the old one for the domain's
    `edge_lag_s`, then the new one; a domain without lag serves the new one at once."""
    async with serving(edge_world()) as (_, em):
        a, b = await shas(em, "cert-a", "cert-b")
        await call(em, "ModifyCertificate", ListenerId=LISTENER, Domain="lag.example.com", CertificateId="cert-b")
        rules = await call(em, "DescribeRules", ListenerId=LISTENER)
        assert {r["Domain"]: r["CertificateId"] for r in rules["DomainRuleSet"]}["lag.example.com"] == "cert-b"
        assert await served_sha256(em, "lag.example.com") == a
        await asyncio.sleep(LAG_S + 0.05)
        assert await served_sha256(em, "lag.example.com") == b
        await call(em, "ModifyCertificate", ListenerId=LISTENER, Domain="www.example.com", CertificateId="cert-b")
        assert await served_sha256(em, "www.example.com") == b


async def test_a_stuck_domain_keeps_the_certificate_it_was_loaded_with() -> None:
    async with serving(edge_world()) as (_, em):
        [a] = await shas(em, "cert-a")
        for target in ("cert-b", "cert-listener"):
            await call(em, "ModifyCertificate", ListenerId=LISTENER, Domain="stuck.example.com", CertificateId=target)
            await asyncio.sleep(0.1)  # the listener's task (0.05 s) ends
            assert await served_sha256(em, "stuck.example.com") == a


async def test_a_default_domain_follows_a_listener_change_after_the_world_lag() -> None:
    """ModifyHTTPSListenerAttribute changes what the listener's `default` domains serve, after the world's
    `edge_lag_s`; a domain's own `edge_lag_s` 0 overrides it; domains on their own certificate do not change."""
    data = edge_world(edge_lag_s=LAG_S)
    data["listeners"][LISTENER]["domains"]["now.example.com"] = {"certificate_id": "default", "edge_lag_s": 0}
    async with serving(data) as (_, em):
        a, b, listener = await shas(em, "cert-a", "cert-b", "cert-listener")
        await call(em, "ModifyHTTPSListenerAttribute", ListenerId=LISTENER, ProxyId="link-edge", CertificateId="cert-b")
        assert await served_sha256(em, "on-default.example.com") == listener
        assert await served_sha256(em, "now.example.com") == b
        await asyncio.sleep(LAG_S + 0.05)
        assert await served_sha256(em, "on-default.example.com") == b
        assert await served_sha256(em, "www.example.com") == a


async def test_a_rolled_back_change_is_served_rolled_back() -> None:
    """A change whose task fails (fault `task_fail`) is served until the rollback, then the certificate before it."""
    data = edge_world(faults={"domains": {"roll.example.com": [{"kind": "task_fail"}]}})
    async with serving(data) as (_, em):
        a, b = await shas(em, "cert-a", "cert-b")
        await call(em, "ModifyCertificate", ListenerId=LISTENER, Domain="roll.example.com", CertificateId="cert-b")
        assert await served_sha256(em, "roll.example.com") == b
        await asyncio.sleep(0.1)
        assert em.reverted == [(LISTENER, "roll.example.com")]
        assert await served_sha256(em, "roll.example.com") == a


@pytest.mark.parametrize(
    "domain",
    ["nope.example.com", "plain.example.com", "gone.example.com", None],
    ids=["unknown", "http-listener-only", "certificate-not-in-world", "no-sni"],
)
async def test_a_name_the_edge_cannot_serve_fails_the_handshake(domain: str | None) -> None:
    """An SNI no HTTPS domain has (a domain of an HTTP listener neither), a domain whose certificate the world lacks,
    or no SNI at all: the handshake fails, and the edge goes on serving."""
    async with serving(edge_world()) as (_, em):
        with pytest.raises(ssl.SSLError):
            await served_sha256(em, domain)
        assert await served_sha256(em, "www.example.com") == await leaf_sha256(em, "cert-a")


def test_a_client_finds_the_edge_through_the_sdk_and_reads_the_target_leaf(
    threaded_emulator: Callable[..., ThreadedEmulator],
) -> None:
    """As a client proves a change: the access point from DescribeHTTPSListeners (Port) and DescribeProxies (IPList),
    read through the official SDK; a blocking TLS client with SNI = the domain gets the leaf whose DER SHA-256 is the
    one of the first certificate of DescribeCertificateDetail's content, before and after a ModifyCertificate."""
    server = threaded_emulator(emu.World.from_dict(edge_world()))
    client = sdk(server)

    def served(domain: str) -> str:
        [listener] = sdk_call(client, "DescribeHTTPSListeners", ListenerId=LISTENER).ListenerSet
        [proxy] = sdk_call(client, "DescribeProxies", ProxyIds=[listener.ProxyId]).ProxySet
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE
        with (
            socket.create_connection((proxy.IPList[0].IP, listener.Port), timeout=5) as raw,
            tls.wrap_socket(raw, server_hostname=domain) as conn,
        ):
            der = conn.getpeercert(binary_form=True)
        assert der
        return hashlib.sha256(der).hexdigest()

    def target(cert_id: str) -> str:
        content = sdk_call(client, "DescribeCertificateDetail", CertificateId=cert_id).CertificateDetail
        first = content.CertificateContent.partition("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
        return hashlib.sha256(ssl.PEM_cert_to_DER_cert(first)).hexdigest()

    assert served("www.example.com") == target("cert-a")
    sdk_call(client, "ModifyCertificate", ListenerId=LISTENER, Domain="www.example.com", CertificateId="cert-b")
    assert served("www.example.com") == target("cert-b") != target("cert-a")


async def test_listings_report_the_edge_while_it_runs() -> None:
    """Proxies' IP and IPList 127.0.0.1, groups' Domain localhost, HTTPS listeners' Port the edge's (a Port filter
    takes the world's or the edge's); HTTP listeners keep their port; the test hook says where the edge is."""
    async with serving(edge_world()) as (url, em):
        assert em.edge_address is not None
        host, port = em.edge_address
        [proxy] = (await call(em, "DescribeProxies"))["ProxySet"]
        assert (proxy["IP"], proxy["IPList"]) == (
            "127.0.0.1",
            [{"IP": "127.0.0.1", "Provider": "BGP", "Bandwidth": 10}],
        )
        assert proxy["Domain"] == "link-edge.gaap.emulator.invalid"
        [group] = (await call(em, "DescribeProxyGroupList"))["ProxyGroupList"]
        assert group["Domain"] == "localhost"
        for where in ({"ProxyId": "link-edge"}, {"GroupId": "lg-edge"}):
            [listener] = (await call(em, "DescribeHTTPSListeners", **where))["ListenerSet"]
            assert listener["Port"] == port
        for wanted in (443, port):
            found = await call(em, "DescribeHTTPSListeners", ProxyId="link-edge", Port=wanted)
            assert [x["ListenerId"] for x in found["ListenerSet"]] == [LISTENER]
        [http] = (await call(em, "DescribeHTTPListeners", ProxyId="link-edge"))["ListenerSet"]
        assert http["Port"] == 80
        async with aiohttp.ClientSession() as session, session.get(f"{url}/_emulator/edge") as resp:
            assert await resp.json() == {"host": host, "port": port}
    assert em.edge_address is None


async def test_without_an_edge_the_listings_answer_as_before() -> None:
    """`"edge": false` starts no edge (the hook says null), and an in-process emulator has none: no access address,
    the world's ports."""
    async with serving(edge_world(edge=False)) as (url, em):
        assert em.edge_address is None
        async with aiohttp.ClientSession() as session, session.get(f"{url}/_emulator/edge") as resp:
            assert await resp.json() == {"host": None, "port": None}
        await check_no_access_point(em)
    await check_no_access_point(emu.Emulator(emu.World.from_dict(edge_world())))


async def check_no_access_point(em: emu.Emulator) -> None:
    [proxy] = (await call(em, "DescribeProxies"))["ProxySet"]
    assert (proxy["IP"], proxy["IPList"], proxy["Domain"]) == ("", [], "link-edge.gaap.emulator.invalid")
    [group] = (await call(em, "DescribeProxyGroupList"))["ProxyGroupList"]
    assert group["Domain"] is None
    listed = await call(em, "DescribeHTTPSListeners", GroupId="lg-edge")
    assert [x["Port"] for x in listed["ListenerSet"]] == [8443]


def test_the_edge_keys_round_trip_and_are_written_only_when_set() -> None:
    data = edge_world(edge=False, edge_lag_s=0.25)
    written = emu.World.from_dict(data).to_dict()
    assert (written["edge"], written["edge_lag_s"]) == (False, 0.25)
    domains = written["listeners"][LISTENER]["domains"]
    assert (domains["lag.example.com"]["edge_lag_s"], domains["stuck.example.com"]["edge_stuck"]) == (LAG_S, True)
    assert not {"edge_lag_s", "edge_stuck"} & set(domains["www.example.com"])
    assert emu.World.from_dict(json.loads(json.dumps(written))).to_dict() == written
    plain = small_world().to_dict()
    assert not {"edge", "edge_lag_s"} & set(plain)
    assert all(
        not {"edge_lag_s", "edge_stuck"} & set(d) for ls in plain["listeners"].values() for d in ls["domains"].values()
    )
    bad: list[dict[str, Any]] = [{"edge": "yes"}, {"edge_lag_s": -1}, {"edge_lag_s": True}]
    for wrong in bad:
        with pytest.raises(WorldError):
            emu.World.from_dict(edge_world(**wrong))
    for domain in ({"edge_stuck": 1}, {"edge_lag_s": "soon"}):
        broken = edge_world()
        broken["listeners"][LISTENER]["domains"]["www.example.com"] |= domain
        with pytest.raises(WorldError):
            emu.World.from_dict(broken)
