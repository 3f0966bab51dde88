"""The estate an inventory reads, and a listener's own certificates, as the official SDK sees them (issue 14, part 5):
proxies, groups, listeners and certificates paged with each action's maximum Limit, ModifyHTTPSListenerAttribute as a
listener task, and worlds written before proxies existed."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.gaap.v20180529 import gaap_client, models

from batchcert import emulator as emu
from batchcert.errors import WorldError
from batchcert.model import Row
from tests.conftest import ThreadedEmulator
from tests.worlds import SECRET_ID, SECRET_KEY, small_world

REPO = Path(__file__).resolve().parent.parent
N_PROXIES, N_GROUPS, N_HTTPS, N_SERVER_CERTS = 110, 103, 57, 60


def estate(**overrides: Any) -> dict[str, Any]:
    """More proxies (110 + 3 + 1 synthesized), groups (103 + 1), HTTPS listeners on one proxy (57) and certificates (67)
    than one page of each listing holds; a fast world (no latency, a high rate limit). This file's own: only the
    listing tests page through an estate of every connection kind."""
    groups: dict[str, Any] = {f"lg-{i:04d}": {"name": f"group {i}", "version": "3.0"} for i in range(N_GROUPS)}
    groups["lg-old"] = {"name": "old group", "version": "1.0"}
    proxies: dict[str, Any] = {
        f"link-{i:04d}": {"name": f"proxy {i}", "version": "3.0", "group_id": "lg-0000" if i < 4 else None}
        for i in range(N_PROXIES)
    }
    proxies |= {
        "link-v1": {"name": "v1", "version": "1.0"},
        "link-closed": {"name": "closed", "status": "CLOSED"},
        "link-other": {"name": "other"},
    }
    listeners: dict[str, Any] = {
        f"listener-bulk{i:03d}": {"proxy_id": "link-0004", "port": 1000 + i, "certificate_id": "cert-s000"}
        for i in range(N_HTTPS)
    }
    listeners |= {f"listener-http{i}": {"proxy_id": "link-0004", "protocol": "HTTP", "port": 80 + i} for i in range(6)}
    listeners |= {f"listener-tcp{i}": {"proxy_id": "link-0004", "protocol": "TCP", "port": 22 + i} for i in range(2)}
    listeners |= {f"listener-grp{i}": {"group_id": "lg-0000", "certificate_id": "cert-s000"} for i in range(3)}
    listeners |= {
        "listener-mtls": {
            "proxy_id": "link-0005",
            "name": "shop",
            "auth_type": 1,
            "certificate_id": "cert-s000",
            "client_certificate_ids": ["cert-ca0"],
            "domains": {
                "on-default.example.com": {"certificate_id": "default"},
                "own.example.com": {"certificate_id": "cert-s001"},
            },
        },
        "listener-oneway": {"proxy_id": "link-0006", "certificate_id": "cert-s000"},
        "listener-v1": {"proxy_id": "link-v1", "certificate_id": "cert-s000"},
        "listener-closed": {"proxy_id": "link-closed", "certificate_id": "cert-s000"},
        "listener-oldgrp": {"group_id": "lg-old", "certificate_id": "cert-s000"},
        "listener-legacy1": {"proxy_version": "2.0", "certificate_id": "cert-s000"},
        "listener-denied": {
            "proxy_id": "link-0007",
            "certificate_id": "cert-s000",
            "denied_actions": [emu.ACTION_MODIFY_LISTENER],
        },
    }
    certificates: dict[str, Any] = {
        f"cert-s{i:03d}": {"type": 2, "domains": [f"*.d{i}.example.com", "*.example.com"]}
        for i in range(N_SERVER_CERTS)
    }
    certificates |= {f"cert-ca{i}": {"type": 1, "domains": [], "name": f"client CA {i}"} for i in range(5)}
    certificates["cert-expired"] = {"type": 2, "domains": ["old.example.com"], "expires_in_days": -3}
    certificates["cert-dated"] = {
        "type": 2,
        "domains": ["dated.example.com"],
        "name": "dated",
        "subject_cn": "dated.example.com",
        "issuer_cn": "Example CA",
        "begin_time": "2025-01-01T00:00:00Z",
        "end_time": 1767225600,
    }
    data = {
        "credentials": {SECRET_ID: SECRET_KEY},
        "rate_limit": 1000,
        "task_seconds": 0.3,
        "latency_ms": 0,
        "groups": groups,
        "proxies": proxies,
        "listeners": listeners,
        "certificates": certificates,
    }
    return data | overrides


def sdk(server: ThreadedEmulator) -> gaap_client.GaapClient:
    http = HttpProfile(protocol="http", endpoint=server.base_url.removeprefix("http://"), reqTimeout=10)
    return gaap_client.GaapClient(credential.Credential(SECRET_ID, SECRET_KEY), "", ClientProfile(httpProfile=http))


def call(client: gaap_client.GaapClient, action: str, **params: Any) -> Any:
    """One SDK call of `action` with `params` (the request built by the SDK's own model)."""
    request = getattr(models, f"{action}Request")()
    request.from_json_string(json.dumps(params))
    return getattr(client, action)(request)


def error_code(thunk: Callable[[], object]) -> str:
    with pytest.raises(TencentCloudSDKException) as info:
        thunk()
    return str(info.value.get_code())


def page_all(
    client: gaap_client.GaapClient, action: str, field: str, limit: int, **params: Any
) -> tuple[list[Any], set[int]]:
    """Every item of a paged listing, page by page, and the TotalCounts the pages reported."""
    items: list[Any] = []
    totals: set[int] = set()
    while True:
        resp = call(client, action, **params, Offset=len(items), Limit=limit)
        totals.add(resp.TotalCount)
        page = getattr(resp, field)
        assert len(page) <= limit
        items += page
        if not page or len(items) >= resp.TotalCount:
            return items, totals


@pytest.fixture
def estate_server(threaded_emulator: Callable[..., ThreadedEmulator]) -> ThreadedEmulator:
    return threaded_emulator(emu.World.from_dict(estate()))


def test_every_listing_pages_through_each_item_exactly_once(estate_server: ThreadedEmulator) -> None:
    """Paging at the maximum Limit and at an odd small one returns every proxy, group, listener and certificate
    once, with TotalCount counting every match; InstanceSet and ProxySet agree."""
    client = sdk(estate_server)
    all_proxies = {f"link-{i:04d}" for i in range(N_PROXIES)} | {"link-v1", "link-closed", "link-other", "link-legacy1"}
    for limit in (100, 7):
        proxies, totals = page_all(client, "DescribeProxies", "ProxySet", limit)
        assert sorted(p.ProxyId for p in proxies) == sorted(all_proxies) and totals == {len(all_proxies)}
        groups, totals = page_all(client, "DescribeProxyGroupList", "ProxyGroupList", limit)
        assert len({g.GroupId for g in groups}) == len(groups) == N_GROUPS + 1 and totals == {N_GROUPS + 1}
    resp = call(client, "DescribeProxies", Limit=3)
    assert (
        [p.InstanceId for p in resp.InstanceSet]
        == [p.ProxyId for p in resp.ProxySet]
        == [
            "link-0000",
            "link-0001",
            "link-0002",
        ]
    )
    first = resp.ProxySet[0]
    assert (first.ProxyName, first.Status, first.Version, first.GroupId) == ("proxy 0", "RUNNING", "3.0", "lg-0000")
    in_group = call(client, "DescribeProxies", Filters=[{"Name": "GroupId", "Values": ["lg-0000"]}], Limit=100)
    assert [p.ProxyId for p in in_group.ProxySet] == ["link-0000", "link-0001", "link-0002", "link-0003"]
    assert call(client, "DescribeProxies", Independent=1, Limit=1).TotalCount == len(all_proxies) - 4
    assert call(client, "DescribeProxies", ProxyIds=["link-v1", "link-gone"]).TotalCount == 1

    for limit in (50, 8):
        listeners, totals = page_all(client, "DescribeHTTPSListeners", "ListenerSet", limit, ProxyId="link-0004")
        assert sorted(x.ListenerId for x in listeners) == sorted(f"listener-bulk{i:03d}" for i in range(N_HTTPS))
        assert totals == {N_HTTPS} and {(x.Protocol, x.ProxyId, x.GroupId) for x in listeners} == {
            ("HTTPS", "link-0004", None)
        }
        certs, totals = page_all(client, "DescribeCertificates", "CertificateSet", limit)
        assert len({c.CertificateId for c in certs}) == len(certs) == N_SERVER_CERTS + 7 and totals == {len(certs)}
    http, _ = page_all(client, "DescribeHTTPListeners", "ListenerSet", 50, ProxyId="link-0004")
    assert sorted(x.ListenerId for x in http) == [f"listener-http{i}" for i in range(6)]
    grouped = call(client, "DescribeHTTPSListeners", GroupId="lg-0000")
    assert [(x.ListenerId, x.ProxyId, x.GroupId) for x in grouped.ListenerSet] == [
        (f"listener-grp{i}", None, "lg-0000") for i in range(3)
    ]
    assert call(client, "DescribeHTTPSListeners", ProxyId="link-0004", Port=1003).ListenerSet[0].ListenerId == (
        "listener-bulk003"
    )
    clients, totals = page_all(client, "DescribeCertificates", "CertificateSet", 2, CertificateType=1)
    assert [c.CertificateId for c in clients] == [f"cert-ca{i}" for i in range(5)] and totals == {5}


@pytest.mark.parametrize(
    ("action", "params", "most"),
    [
        ("DescribeProxies", {}, 100),
        ("DescribeProxyGroupList", {}, 100),
        ("DescribeHTTPSListeners", {"ProxyId": "link-0004"}, 50),
        ("DescribeHTTPListeners", {"ProxyId": "link-0004"}, 50),
        ("DescribeCertificates", {}, 50),
    ],
)
def test_a_limit_above_the_maximum_is_refused(
    estate_server: ThreadedEmulator, action: str, params: dict[str, Any], most: int
) -> None:
    """Limit up to the action's maximum pages; above it (or 0, or a negative Offset) answers InvalidParameterValue."""
    client = sdk(estate_server)
    assert call(client, action, **params, Limit=most).TotalCount > 0
    assert error_code(lambda: call(client, action, **params, Limit=most + 1)) == "InvalidParameterValue"
    assert error_code(lambda: call(client, action, **params, Limit=0)) == "InvalidParameterValue"


def test_certificates_carry_unix_second_validity_subject_and_names(estate_server: ThreadedEmulator) -> None:
    """BeginTime/EndTime are integer unix seconds: defaults valid now, `expires_in_days` < 0 expired, ISO 8601
    world times converted; SubjectCN, IssuerCN and CertificateName/Alias as the world says or their defaults."""
    certs = {c.CertificateId: c for c in page_all(sdk(estate_server), "DescribeCertificates", "CertificateSet", 50)[0]}
    now = time.time()
    fresh, expired, dated = certs["cert-s000"], certs["cert-expired"], certs["cert-dated"]
    assert all(isinstance(c.BeginTime, int) and isinstance(c.EndTime, int) for c in certs.values())
    assert fresh.BeginTime <= now < fresh.EndTime and fresh.CertificateType == 2
    assert (fresh.SubjectCN, fresh.CertificateAlias, fresh.CertificateName) == (
        "*.d0.example.com",
        "cert-s000",
        "cert-s000",
    )
    assert expired.EndTime < now and expired.SubjectCN == "old.example.com"
    assert (dated.BeginTime, dated.EndTime, dated.IssuerCN, dated.CertificateAlias) == (
        1735689600,
        1767225600,
        "Example CA",
        "dated",
    )
    assert (certs["cert-ca0"].CertificateType, certs["cert-ca0"].CertificateAlias) == (1, "client CA 0")


def test_listener_certificate_change_is_a_listener_task(threaded_emulator: Callable[..., ThreadedEmulator]) -> None:
    """ModifyHTTPSListenerAttribute applies as a listener task: ListenerStatus 4 and ListenerHasTask (for both
    writes) while it runs, a `listener` ledger entry, the new ids in DescribeHTTPSListeners; a domain on `default`
    still reads `default` while its effective certificate follows the listener's."""
    world = emu.World.from_dict(estate())
    server = threaded_emulator(world)
    client = sdk(server)
    resp = call(
        client,
        "ModifyHTTPSListenerAttribute",
        ListenerId="listener-mtls",
        ProxyId="link-0005",
        CertificateId="cert-s007",
        PolyClientCertificateIds=["cert-ca1", "cert-ca2"],
    )
    assert resp.RequestId
    again = {"ListenerId": "listener-mtls", "ProxyId": "link-0005", "CertificateId": "cert-s008"}
    assert (
        error_code(lambda: call(client, "ModifyHTTPSListenerAttribute", **again)) == "FailedOperation.ListenerHasTask"
    )
    domain_change = {"ListenerId": "listener-mtls", "Domain": "own.example.com", "CertificateId": "cert-s002"}
    assert error_code(lambda: call(client, "ModifyCertificate", **domain_change)) == "FailedOperation.ListenerHasTask"
    [seen] = call(client, "DescribeHTTPSListeners", ListenerId="listener-mtls").ListenerSet
    assert (seen.ListenerStatus, seen.CertificateId, seen.ClientCertificateId, seen.AuthType) == (
        4,
        "cert-s007",
        "cert-ca1",
        1,
    )
    assert [(p.CertificateId, p.CertificateAlias) for p in seen.PolyClientCertificateAliasInfo] == [
        ("cert-ca1", "client CA 1"),
        ("cert-ca2", "client CA 2"),
    ]
    assert server.emulator is not None and server.emulator.edge_address is not None
    # the listener's port is where its edge answers (the world says 443; the emulator's edge is on a free port)
    port = server.emulator.edge_address[1]
    assert (seen.ListenerName, seen.ProxyId, seen.GroupId, seen.Port) == ("shop", "link-0005", None, port)
    [entry] = server.emulator.ledger
    assert (entry.scope, entry.listener_id, entry.domain, entry.request_id) == (
        "listener",
        "listener-mtls",
        "",
        resp.RequestId,
    )
    assert (entry.before["certificate_id"], entry.after["certificate_id"]) == ("cert-s000", "cert-s007")
    assert entry.after["poly_client_certificate_ids"] == ["cert-ca1", "cert-ca2"]
    rules = {r.Domain: r for r in call(client, "DescribeRules", ListenerId="listener-mtls").DomainRuleSet}
    assert rules["on-default.example.com"].CertificateId == "default"
    assert world.effective_certificates("listener-mtls", "on-default.example.com") == (
        "cert-s007",
        ("cert-ca1", "cert-ca2"),
    )
    assert world.effective_certificates("listener-mtls", "own.example.com")[0] == "cert-s001"
    time.sleep(0.35)
    assert call(client, "DescribeHTTPSListeners", ListenerId="listener-mtls").ListenerSet[0].ListenerStatus == 0
    call(client, "ModifyHTTPSListenerAttribute", **again)
    assert [e.after["certificate_id"] for e in server.emulator.ledger] == ["cert-s007", "cert-s008"]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        (
            {"ListenerId": "listener-oneway", "ProxyId": "link-0006", "CertificateId": "cert-ca0"},
            "InvalidParameterValue",
        ),
        (
            {"ListenerId": "listener-oneway", "ProxyId": "link-0006", "CertificateId": "default"},
            "InvalidParameterValue",
        ),
        (
            {"ListenerId": "listener-oneway", "ProxyId": "link-0006", "CertificateId": "cert-nope"},
            "InvalidParameterValue",
        ),
        (
            {"ListenerId": "listener-mtls", "ProxyId": "link-0005", "PolyClientCertificateIds": ["cert-s001"]},
            "InvalidParameterValue",
        ),
        (
            {"ListenerId": "listener-oneway", "ProxyId": "link-0006", "ClientCertificateId": "cert-ca1"},
            "InvalidParameterValue",
        ),
        ({"ListenerId": "listener-oneway", "CertificateId": "cert-s001"}, "MissingParameter"),
        (
            {"ListenerId": "listener-oneway", "ProxyId": "link-0005", "CertificateId": "cert-s001"},
            "InvalidParameterValue",
        ),
        ({"ListenerId": "listener-oneway", "ProxyId": "link-gone", "CertificateId": "cert-s001"}, "ResourceNotFound"),
        (
            {"ListenerId": "listener-grp0", "ProxyId": "link-0000", "CertificateId": "cert-s001"},
            "InvalidParameterValue",
        ),
        (
            {"ListenerId": "listener-v1", "ProxyId": "link-v1", "CertificateId": "cert-s001"},
            "FailedOperation.NotSupportOldVersionProxy",
        ),
        (
            {"ListenerId": "listener-closed", "ProxyId": "link-closed", "CertificateId": "cert-s001"},
            "FailedOperation.InstanceStatusNotInRuning",
        ),
        ({"ListenerId": "listener-oldgrp", "CertificateId": "cert-s001"}, "FailedOperation.NotSupportProxyGroup"),
        (
            {"ListenerId": "listener-denied", "ProxyId": "link-0007", "CertificateId": "cert-s001"},
            "AuthFailure.UnauthorizedOperation",
        ),
        ({"ListenerId": "listener-http0", "ProxyId": "link-0004", "CertificateId": "cert-s001"}, "ResourceNotFound"),
        ({"ListenerId": "listener-gone", "ProxyId": "link-0004", "CertificateId": "cert-s001"}, "ResourceNotFound"),
    ],
)
def test_listener_changes_refused_and_nothing_applied(
    estate_server: ThreadedEmulator, params: dict[str, Any], code: str
) -> None:
    """Wrong-type, `default`, unknown or one-way-listener client certificates; a missing, foreign or unknown ProxyId;
    v1.0 proxies and groups, closed proxies, CAM denial, listeners that are not HTTPS: refused, ledger untouched."""
    client = sdk(estate_server)
    assert error_code(lambda: call(client, "ModifyHTTPSListenerAttribute", **params)) == code
    assert estate_server.emulator is not None and estate_server.emulator.ledger == []


def test_a_group_listener_changes_without_a_proxy_id(estate_server: ThreadedEmulator) -> None:
    client = sdk(estate_server)
    call(
        client, "ModifyHTTPSListenerAttribute", ListenerId="listener-grp1", CertificateId="cert-s003", ListenerName="g1"
    )
    [seen] = call(client, "DescribeHTTPSListeners", GroupId="lg-0000", ListenerName="g1").ListenerSet
    assert (seen.ListenerId, seen.CertificateId, seen.ListenerStatus) == ("listener-grp1", "cert-s003", 4)


def test_old_style_worlds_get_a_proxy_per_listener_and_round_trip(
    threaded_emulator: Callable[..., ThreadedEmulator],
) -> None:
    """Listeners naming no proxy get `link-…` proxies with their own version and status; the world writes back as it
    was; ModifyHTTPSListenerAttribute works with the synthesized ProxyId; a closed listener closes its proxy."""
    world = small_world(task_seconds=0.05, latency_ms=0)
    written = world.to_dict()
    assert "proxy_id" not in written["listeners"]["listener-aaaa0001"] and written["proxies"] == {}
    assert emu.World.from_dict(json.loads(json.dumps(written))).to_dict() == written
    world.listeners["listener-aaaa0002"].proxy_status = "CLOSED"
    server = threaded_emulator(world)
    client = sdk(server)
    proxies = call(client, "DescribeProxies").ProxySet
    assert [(p.ProxyId, p.Version, p.Status, p.GroupId) for p in proxies] == [
        ("link-aaaa0001", "3.0", "RUNNING", None),
        ("link-aaaa0002", "3.0", "CLOSED", None),
        ("link-old00001", "2.0", "RUNNING", None),
    ]
    [listener] = call(client, "DescribeHTTPSListeners", ProxyId="link-aaaa0001").ListenerSet
    assert (listener.ListenerId, listener.ProxyId, listener.CertificateId) == (
        "listener-aaaa0001",
        "link-aaaa0001",
        "cert-listener1",
    )
    call(
        client,
        "ModifyHTTPSListenerAttribute",
        ListenerId="listener-aaaa0001",
        ProxyId="link-aaaa0001",
        CertificateId="cert-wild0001",
    )
    closed = {"ListenerId": "listener-aaaa0002", "ProxyId": "link-aaaa0002", "CertificateId": "cert-wild0001"}
    assert (
        error_code(lambda: call(client, "ModifyHTTPSListenerAttribute", **closed))
        == "FailedOperation.InstanceStatusNotInRuning"
    )
    old = {"ListenerId": "listener-old00001", "Domain": "www.example.com", "CertificateId": "cert-wild0001"}
    assert error_code(lambda: call(client, "ModifyCertificate", **old)) == "FailedOperation.ProxyVersionNotSupport"
    demo = emu.load_world(REPO / "inputs" / "demo-world.json")
    assert all(demo.connection(lid).kind == "proxy" for lid in demo.listeners)


def test_world_contract_checks_the_new_keys() -> None:
    """A listener on both a proxy and a group, on an unknown proxy, on a grouped proxy, or with its own proxy_version
    while naming a proxy, is refused; explicit worlds round-trip."""
    base = estate()
    assert emu.World.from_dict(json.loads(json.dumps(emu.World.from_dict(base).to_dict()))).to_dict() == (
        emu.World.from_dict(base).to_dict()
    )
    bad_listeners = [
        {"proxy_id": "link-0005", "group_id": "lg-0001"},
        {"proxy_id": "link-nope"},
        {"proxy_id": "link-0000"},
        {"proxy_id": "link-0005", "proxy_version": "2.0"},
        {"protocol": "QUIC"},
        {"protocol": "TCP", "domains": {"a.example.com": {}}},
    ]
    for spec in bad_listeners:
        with pytest.raises(WorldError):
            emu.World.from_dict(base | {"listeners": {"listener-bad": spec}})
    with pytest.raises(WorldError, match="end_time or expires_in_days"):
        emu.World.from_dict(base | {"certificates": {"c": {"type": 2, "end_time": 1, "expires_in_days": 1}}})


def test_world_for_rows_gives_listeners_proxies_and_certificates_validity() -> None:
    """A --from-mapping world: every listener on a running 3.0 proxy of its own (written out), every certificate
    with a SubjectCN and a validity around the emulator's start; a listener-scope row (a `scope` attribute) makes its
    listener without a domain, mutual-TLS when it names client CAs."""

    @dataclass(frozen=True)
    class ListenerRow(Row):
        scope: str = "listener"

    rows = [
        Row(2, "listener-x1", "a.example.com", "cert-s1"),
        ListenerRow(3, "listener-x2", "", "cert-l2", "", ("cert-c1",)),
    ]
    world = emu.world_for_rows(rows)
    assert {lid: world.connection(lid) for lid in world.listeners} == {
        "listener-x1": emu.Connection("proxy", "link-x1", "3.0", "RUNNING"),
        "listener-x2": emu.Connection("proxy", "link-x2", "3.0", "RUNNING"),
    }
    assert set(world.to_dict()["proxies"]) == {"link-x1", "link-x2"}
    assert world.listeners["listener-x2"].domains == {} and world.listeners["listener-x2"].auth_type == 1
    assert world.certificates["cert-s1"].subject_cn == "a.example.com"
    assert world.certificates["cert-l2"].type == 2 and world.certificates["cert-c1"].type == 1
    epoch = time.time()
    assert all(b <= epoch < e for b, e in (c.validity(epoch) for c in world.certificates.values()))
    again = emu.World.from_dict(json.loads(json.dumps(world.to_dict())))
    assert again.to_dict() == world.to_dict()


async def test_reads_are_rate_limited_and_listener_faults_apply() -> None:
    """Every read action has the per-(SecretId, action) limit; a scripted listener `task_fail` rolls the listener
    back when its task ends; unknown parameters (AuthType is not one of this action's) are refused."""
    world = emu.World.from_dict(
        estate(
            rate_limit=3,
            task_seconds=0.05,
            faults={"listeners": {"listener-oneway": [{"kind": "task_fail"}]}},
        )
    )
    em = emu.Emulator(world)

    async def answer(action: str, **params: Any) -> dict[str, Any]:
        return await em.answer(SECRET_ID, action, json.dumps(params).encode(), "rid")

    for _ in range(3):
        await answer("DescribeCertificates")
    with pytest.raises(emu.ApiError, match="RequestLimitExceeded"):
        await answer("DescribeCertificates")
    await answer("DescribeProxies")  # another action, its own budget
    with pytest.raises(emu.ApiError, match="UnknownParameter"):
        await answer("ModifyHTTPSListenerAttribute", ListenerId="listener-oneway", ProxyId="link-0006", AuthType=1)
    await answer(
        "ModifyHTTPSListenerAttribute", ListenerId="listener-oneway", ProxyId="link-0006", CertificateId="cert-s009"
    )
    assert world.listeners["listener-oneway"].certificate_id == "cert-s009"
    await asyncio.sleep(0.1)
    assert world.listeners["listener-oneway"].certificate_id == "cert-s000"
    assert em.reverted == [("listener-oneway", "")]
