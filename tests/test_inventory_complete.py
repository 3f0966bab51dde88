"""An inventory that misses nothing on a real account (issue 22, points 1, 2, 3 and 7), against the emulator: groups
in several projects (`ProjectId` -1), every page of every listing up to its TotalCount (an early empty page is an
error naming the listing), `InstanceSet` answers, connections this credential may not search named in the files,
on stderr and in the summary while everything else is listed exactly (exit 1), a refusal of a whole action stopping
with the permission to grant (exit 2), listener writes on stopped connections, and the world's latency."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Set
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from batchcert import emulator as emu
from batchcert.errors import WorldError
from batchcert.inventory import InventoryError
from batchcert.settings import SettingFlags
from batchcert.workflow import InventoryRequest, InventoryResult, take_inventory
from tests.conftest import ThreadedEmulator
from tests.test_emulator_inventory import call, error_code, sdk
from tests.worlds import SECRET_ID, SECRET_KEY

pytestmark = pytest.mark.usefixtures("credentials_env")

OLD, NEW = "cert-old", "cert-new"
OLD2, NEW2 = "cert-caold", "cert-canew"
PROJECTS = (0, 7, 12)
N_GROUPS = 105  # > 100: DescribeProxyGroupList pages at 100 (35 groups in each project)
N_PROXIES = 105  # > 100: DescribeProxies pages at 100
N_BULK = 55  # HTTPS listeners on link-0003 (> 50: DescribeHTTPSListeners pages at 50)
RATE = 500
#: the columns an inventory line is compared on (the oracle below computes them from the world data)
KEY = (
    "scope",
    "proxy_id",
    "group_id",
    "listener_id",
    "domain",
    "certificate_id",
    "client_certificate_ids",
    "effective_certificate_id",
    "proxy_name",
    "proxy_status",
)
ROTATION_KEY = ("Scope", "ProxyId", "ListenerId", "Domain", "CertificateId", "NewCertificateId")


def estate(**overrides: Any) -> dict[str, Any]:
    """105 groups (35 in each of projects 0, 7 and 12) and 105 proxies across the same projects; listeners on a group
    of each project, 55 HTTPS listeners (and an HTTP one) on link-0003, a listener on a CLOSED proxy, on a group that
    is changing, a mutual-TLS listener using OLD2, and two proxies (link-0006, link-0007) the tests make unreadable.
    This file's own: the estate spread over projects is what the inventory must find whole."""
    groups: dict[str, Any] = {
        f"lg-{i:04d}": {"name": f"group {i}", "project_id": PROJECTS[i % 3]} for i in range(N_GROUPS)
    }
    groups["lg-0004"]["status"] = "CHANGING"  # project 7
    proxies: dict[str, Any] = {
        f"link-{i:04d}": {"name": f"proxy {i}", "project_id": PROJECTS[i % 3]} for i in range(N_PROXIES)
    }
    proxies["link-0000"]["group_id"] = "lg-0000"  # in a group: no listeners of its own, not listed by itself
    proxies["link-0001"]["group_id"] = "lg-0001"
    proxies["link-0005"]["status"] = "CLOSED"
    listeners: dict[str, Any] = {}
    for i in range(N_BULK):
        domains: dict[str, Any] = {f"b{i}a.example.com": {"certificate_id": OLD if i % 3 == 0 else "cert-s001"}}
        if i % 3 == 0:
            domains[f"b{i}b.example.com"] = {"certificate_id": "default"}
        listeners[f"listener-bulk{i:03d}"] = {
            "proxy_id": "link-0003",
            "port": 1000 + i,
            "certificate_id": OLD if i % 5 == 0 else "cert-s002",
            "domains": domains,
        }
    listeners["listener-http0"] = {
        "proxy_id": "link-0003",
        "protocol": "HTTP",
        "port": 80,
        "domains": {"h0.example.com": {"certificate_id": "default"}},
    }
    for gid in ("lg-0000", "lg-0001", "lg-0002", "lg-0004"):  # projects 0, 7, 12, 7
        n = gid[-1]
        listeners[f"listener-g{n}"] = {
            "group_id": gid,
            "certificate_id": OLD,
            "domains": {
                f"g{n}a.example.com": {"certificate_id": OLD},
                f"g{n}b.example.com": {"certificate_id": "default"},
                f"g{n}c.example.com": {"certificate_id": "cert-s003"},
            },
        }
    listeners["listener-closed"] = {
        "proxy_id": "link-0005",
        "certificate_id": OLD,
        "domains": {"closed.example.com": {"certificate_id": OLD}},
    }
    for pid in ("link-0006", "link-0007"):
        n = pid[-1]
        listeners[f"listener-u{n}"] = {
            "proxy_id": pid,
            "certificate_id": OLD,
            "domains": {f"u{n}.example.com": {"certificate_id": OLD}},
        }
    listeners["listener-mtls"] = {
        "proxy_id": "link-0008",  # project 12
        "auth_type": 1,
        "certificate_id": "cert-s004",
        "client_certificate_ids": [OLD2],
        "domains": {
            "m1.example.com": {"certificate_id": OLD},
            "m2.example.com": {
                "certificate_id": "cert-s004",
                "client_certificate_id": OLD2,
                "poly_client_certificate_ids": [OLD2],
            },
        },
    }
    certificates: dict[str, Any] = {f"cert-s{i:03d}": {"type": 2, "domains": ["*.example.com"]} for i in range(5)}
    certificates |= {
        OLD: {"type": 2, "domains": ["*.example.com"], "expires_in_days": 12},
        NEW: {"type": 2, "domains": ["*.example.com"], "expires_in_days": 400},
        OLD2: {"type": 1, "domains": []},
        NEW2: {"type": 1, "domains": []},
    }
    data = {
        "credentials": {SECRET_ID: SECRET_KEY},
        "rate_limit": RATE,
        "task_seconds": 0.02,
        "latency_ms": 0,
        "groups": groups,
        "proxies": proxies,
        "listeners": listeners,
        "certificates": certificates,
    }
    return data | overrides


def with_proxy(data: dict[str, Any], proxy_id: str, **spec: Any) -> dict[str, Any]:
    data["proxies"][proxy_id] |= spec
    return data


def expected_places(data: dict[str, Any], unreadable: Set[str] = frozenset()) -> Counter[tuple[str, ...]]:
    """The inventory lines (KEY) the world holds: every HTTPS listener and domain on a connection not `unreadable`."""
    lines: Counter[tuple[str, ...]] = Counter()
    for lid, spec in data["listeners"].items():
        proxy, group = spec.get("proxy_id") or "", spec.get("group_id") or ""
        if spec.get("protocol", "HTTPS") != "HTTPS" or (proxy or group) in unreadable:
            continue
        owner = data["proxies"][proxy] if proxy else data["groups"][group]
        where = (proxy, group)
        about = (str(owner["name"]), str(owner.get("status", "RUNNING")))
        own = spec.get("certificate_id", "")
        lines[("listener", *where, lid, "", own, ";".join(spec.get("client_certificate_ids", [])), own, *about)] += 1
        for domain, d in spec.get("domains", {}).items():
            server = d.get("certificate_id", "default")
            clients = d.get("poly_client_certificate_ids") or [d.get("client_certificate_id") or "default"]
            effective = own if server == "default" else server
            lines[("domain", *where, lid, domain, server, ";".join(clients), effective, *about)] += 1
    return lines


def expected_rotation(data: dict[str, Any], unreadable: Set[str] = frozenset()) -> Counter[tuple[str, ...]]:
    """The mapping rows (ROTATION_KEY) `--replace OLD=NEW --replace OLD2=NEW2` must write for the readable places."""
    swaps = {OLD: NEW, OLD2: NEW2}
    rows: Counter[tuple[str, ...]] = Counter()
    for lid, spec in data["listeners"].items():
        proxy, group = spec.get("proxy_id") or "", spec.get("group_id") or ""
        if spec.get("protocol", "HTTPS") != "HTTPS" or (proxy or group) in unreadable:
            continue
        places = [("listener", "", spec.get("certificate_id", ""), spec.get("client_certificate_ids") or [])]
        places += [
            ("domain", name, d.get("certificate_id", "default"), d.get("poly_client_certificate_ids") or [])
            for name, d in spec.get("domains", {}).items()
        ]
        for scope, domain, server, clients in places:
            if server in swaps or any(c in swaps for c in clients):
                rows[(scope, proxy, lid, domain, server, swaps.get(server, server))] += 1
    return rows


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        return list(csv.DictReader(fh))


def keyed(lines: list[dict[str, str]]) -> Counter[tuple[str, ...]]:
    return Counter(tuple(line[c] for c in KEY) for line in lines if line["scope"] in ("listener", "domain"))


def inventory(server: ThreadedEmulator, out: Path, *replace: str) -> InventoryResult:
    flags = SettingFlags(endpoint=server.base_url, rate_per_s=RATE)
    return take_inventory(InventoryRequest(out=out, settings=flags, replace=replace))


def emulator_of(server: ThreadedEmulator) -> emu.Emulator:
    assert server.emulator is not None
    return server.emulator


def run_cli(server: ThreadedEmulator, tmp_path: Path, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "TENCENTCLOUD_SECRET_ID": SECRET_ID,
        "TENCENTCLOUD_SECRET_KEY": SECRET_KEY,
    }
    for name in ("TENCENTCLOUD_SESSION_TOKEN", "TENCENTCLOUD_TOKEN", "TENCENTCLOUD_SECURITY_TOKEN"):
        env.pop(name, None)
    command = [sys.executable, "-m", "batchcert", "inventory", "--endpoint", server.base_url, "--rate", str(RATE)]
    command += ["--out", str(out), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120, check=False)


# ---------------------------------------------------------------------------------- 1. every group, every page
def test_an_inventory_across_groups_in_three_projects_is_exact(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path
) -> None:
    """Every place of every group of every project (and of every proxy, across pages), exactly once; connections
    that are not RUNNING are listed with their status."""
    data = estate()
    server = threaded_emulator(emu.World.from_dict(data))
    # the emulator reads an absent ProjectId as the default project: an inventory not sending -1 would miss groups
    default_only = call(sdk(server), "DescribeProxyGroupList", Limit=100)
    assert default_only.TotalCount == N_GROUPS // 3 and {g.ProjectId for g in default_only.ProxyGroupList} == {0}

    found = inventory(server, tmp_path / "inv", f"{OLD}={NEW}", f"{OLD2}={NEW2}")
    lines = read_csv(tmp_path / "inv" / "inventory.csv")
    expected = expected_places(data)
    assert keyed(lines) == expected, (
        f"missing {sorted((expected - keyed(lines)).elements())}, extra {sorted((keyed(lines) - expected).elements())}"
    )
    assert len(lines) == sum(expected.values()), "no other line (nothing is unreadable)"
    groups_seen = {line["group_id"] for line in lines if line["group_id"]}
    assert groups_seen == {"lg-0000", "lg-0001", "lg-0002", "lg-0004"}  # projects 0, 7, 12
    assert {line["proxy_status"] for line in lines if line["listener_id"] == "listener-closed"} == {"CLOSED"}
    assert {line["proxy_status"] for line in lines if line["group_id"] == "lg-0004"} == {"CHANGING"}
    assert found.rotation is not None and not found.rotation.not_searched
    mapping = Counter(tuple(r[c] for c in ROTATION_KEY) for r in read_csv(tmp_path / "inv" / "mapping.csv"))
    assert mapping == expected_rotation(data)

    requests = emulator_of(server).requests
    # 105 of each: pages of 100 and 5 (and the check above: one more DescribeProxyGroupList)
    assert requests["DescribeProxyGroupList"] == 1 + 2 and requests["DescribeProxies"] == 2
    listed = N_PROXIES - 2 + N_GROUPS  # proxies outside groups and groups, each listed once — link-0003 on 2 pages
    assert requests["DescribeHTTPSListeners"] == listed + 1


def test_the_emulator_pages_truthfully_and_reads_projects_as_documented(
    threaded_emulator: Callable[..., ThreadedEmulator],
) -> None:
    """Offset/Limit pages through every item once with the true TotalCount; DescribeProxyGroupList: -1 every project,
    a number that project, absent the default one; DescribeProxies lists every project unless filtered."""
    client = sdk(threaded_emulator(emu.World.from_dict(estate())))
    seen: list[str] = []
    for offset in range(0, N_GROUPS, 40):
        page = call(client, "DescribeProxyGroupList", ProjectId=-1, Offset=offset, Limit=40)
        assert page.TotalCount == N_GROUPS
        seen += [g.GroupId for g in page.ProxyGroupList]
    assert seen == [f"lg-{i:04d}" for i in range(N_GROUPS)]
    for project in PROJECTS:
        only = call(client, "DescribeProxyGroupList", ProjectId=project, Limit=100)
        assert only.TotalCount == N_GROUPS // 3 and {g.ProjectId for g in only.ProxyGroupList} == {project}
    assert call(client, "DescribeProxyGroupList", ProjectId=99).TotalCount == 0
    assert call(client, "DescribeProxies").TotalCount == N_PROXIES
    in_seven = call(client, "DescribeProxies", Filters=[{"Name": "ProjectId", "Values": ["7"]}], Limit=100)
    assert in_seven.TotalCount == N_PROXIES // 3 and {p.ProjectId for p in in_seven.ProxySet} == {7}
    tail = call(client, "DescribeHTTPSListeners", ProxyId="link-0003", Offset=50, Limit=50)
    assert tail.TotalCount == N_BULK and [x.ListenerId for x in tail.ListenerSet] == [
        f"listener-bulk{i:03d}" for i in range(50, N_BULK)
    ]


@pytest.mark.parametrize(
    ("action", "offset", "total"),
    [
        ("DescribeProxyGroupList", 100, N_GROUPS),
        ("DescribeProxies", 100, N_PROXIES),
        ("DescribeHTTPSListeners", 50, N_BULK),
    ],
)
def test_an_early_empty_page_is_an_error_naming_the_listing(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path, action: str, offset: int, total: int
) -> None:
    """A page that comes back empty before TotalCount items are read stops the inventory with the listing, where it
    was and the counts — never a silent end; nothing is written."""
    data = estate(listing_quirks={action: {"empty_from_offset": offset}})
    server = threaded_emulator(emu.World.from_dict(data))
    with pytest.raises(InventoryError) as info:
        inventory(server, tmp_path / "inv")
    said = str(info.value)
    assert action in said and f"Offset {offset}" in said and f"{offset} of {total}" in said, said
    if action == "DescribeHTTPSListeners":
        assert "link-0003" in said, said
    assert not (tmp_path / "inv").exists()

    done = run_cli(server, tmp_path, tmp_path / "cli")
    assert done.returncode == 2, done.stdout + done.stderr
    assert action in done.stderr and f"{offset} of {total}" in done.stderr and "Traceback" not in done.stderr


def test_instance_set_answers_are_read(threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path) -> None:
    """A DescribeProxies that answers the older InstanceSet only (no ProxySet) gives the same exact inventory."""
    data = estate(listing_quirks={"DescribeProxies": {"instance_set_only": True}})
    server = threaded_emulator(emu.World.from_dict(data))
    answer = call(sdk(server), "DescribeProxies", Limit=100)
    assert answer.ProxySet is None and len(answer.InstanceSet) == 100 and answer.TotalCount == N_PROXIES
    inventory(server, tmp_path / "inv")
    assert keyed(read_csv(tmp_path / "inv" / "inventory.csv")) == expected_places(data)
    assert emulator_of(server).requests["DescribeProxies"] == 1 + 2  # the check above, then both pages


# ----------------------------------------------------------------- 2. a partial inventory says what it could not read
def test_two_unreadable_proxies_are_named_and_everything_else_is_listed_exactly(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path
) -> None:
    """One proxy CAM does not let this credential list (UnauthorizedOperation), one whose listing the service refuses
    (FailedOperation.NotSupportOldVersionProxy): every other place is listed exactly, both are named on stderr, in
    inventory.csv and .xlsx and in the "To replace" line, the exit is 1 and the mapping covers every readable place."""
    data = estate()
    with_proxy(data, "link-0006", denied_actions=["DescribeHTTPSListeners"])
    with_proxy(
        data, "link-0007", refused_actions={"DescribeHTTPSListeners": "FailedOperation.NotSupportOldVersionProxy"}
    )
    server = threaded_emulator(emu.World.from_dict(data))
    out = tmp_path / "inv"
    done = run_cli(server, tmp_path, out, "--replace", f"{OLD}={NEW}", "--replace", f"{OLD2}={NEW2}")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    unreadable = {"link-0006", "link-0007"}

    lines = read_csv(out / "inventory.csv")
    expected = expected_places(data, unreadable)
    assert keyed(lines) == expected, (
        f"missing {sorted((expected - keyed(lines)).elements())}, extra {sorted((keyed(lines) - expected).elements())}"
    )
    holes = [line for line in lines if line["scope"] not in ("listener", "domain")]
    assert len(lines) == sum(expected.values()) + 2
    by_proxy = {line["proxy_id"]: line for line in holes}
    assert set(by_proxy) == unreadable and {line["scope"] for line in holes} == {"proxy"}
    assert by_proxy["link-0006"]["status"].startswith("UnauthorizedOperation: ")
    assert "gaap:DescribeHTTPSListeners" in by_proxy["link-0006"]["status"]
    assert by_proxy["link-0007"]["status"].startswith("FailedOperation.NotSupportOldVersionProxy: ")
    assert [(by_proxy[p]["proxy_name"], by_proxy[p]["proxy_status"]) for p in sorted(unreadable)] == [
        ("proxy 6", "RUNNING"),
        ("proxy 7", "RUNNING"),
    ]
    assert all(not line["listener_id"] and not line["certificate_id"] for line in holes)

    book = openpyxl.load_workbook(out / "inventory.xlsx", read_only=True)
    sheet = list(book["Inventory"].iter_rows(values_only=True))
    rows = [dict(zip(sheet[0], r, strict=True)) for r in sheet[1:]]
    assert {(r["scope"], r["proxy_id"], r["status"]) for r in rows if r["scope"] == "proxy"} == {
        ("proxy", p, by_proxy[p]["status"]) for p in unreadable
    }
    assert len(rows) == len(lines)

    for proxy in unreadable:
        assert f"not searched: proxy {proxy}" in done.stderr, done.stderr
    assert "UnauthorizedOperation" in done.stderr and "FailedOperation.NotSupportOldVersionProxy" in done.stderr
    assert "gaap:DescribeHTTPSListeners" in done.stderr
    [summary] = [ln for ln in done.stdout.splitlines() if ln.startswith("To replace:")]
    assert "not searched: proxy link-0006, proxy link-0007" in summary, summary

    mapping = Counter(tuple(r[c] for c in ROTATION_KEY) for r in read_csv(out / "mapping.csv"))
    assert mapping == expected_rotation(data, unreadable)
    assert not [r for r in mapping if r[1] in unreadable]
    assert not emulator_of(server).ledger


def test_a_group_refused_and_a_listener_whose_domains_are_denied(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path
) -> None:
    """A group whose listing answers FailedOperation.NotSupportProxyGroup is a `group` line; a proxy whose listeners
    may be listed but whose rules may not gives its listener's own place and a line naming the listener; the result
    names both, in listing order."""
    data = estate()
    data["groups"]["lg-0002"]["refused_actions"] = {"DescribeHTTPSListeners": "FailedOperation.NotSupportProxyGroup"}
    with_proxy(data, "link-0006", denied_actions=["DescribeRules"])
    server = threaded_emulator(emu.World.from_dict(data))
    flags = SettingFlags(endpoint=server.base_url, rate_per_s=RATE)
    found = take_inventory(InventoryRequest(out=tmp_path / "inv", settings=flags, replace=(f"{OLD}={NEW}",)))
    heard = list(found.not_searched)
    assert [(h.scope, h.connection_id, h.listener_id, h.action, h.code) for h in heard] == [
        ("group", "lg-0002", "", "DescribeHTTPSListeners", "FailedOperation.NotSupportProxyGroup"),
        ("proxy", "link-0006", "listener-u6", "DescribeRules", "UnauthorizedOperation"),
    ]
    assert found.rotation is not None and found.rotation.not_searched == tuple(heard)
    lines = read_csv(tmp_path / "inv" / "inventory.csv")
    expected = expected_places(data, {"lg-0002"}) - Counter(
        {k: 1 for k in expected_places(data) if k[3] == "listener-u6" and k[0] == "domain"}
    )
    assert keyed(lines) == expected
    group_line = next(line for line in lines if line["scope"] == "group")
    assert (group_line["group_id"], group_line["proxy_id"], group_line["proxy_name"]) == ("lg-0002", "", "group 2")
    rules_line = next(line for line in lines if line["scope"] == "proxy")
    assert (rules_line["proxy_id"], rules_line["listener_id"]) == ("link-0006", "listener-u6")
    assert rules_line["status"].startswith("UnauthorizedOperation: ") and "gaap:DescribeRules" in rules_line["status"]


@pytest.mark.parametrize(
    ("how", "action"),
    [
        ("account", "DescribeHTTPSListeners"),  # the credential has no gaap:DescribeHTTPSListeners at all
        ("every connection", "DescribeHTTPSListeners"),  # refused on each connection, one by one
        ("account", "DescribeProxies"),
        ("account", "DescribeProxyGroupList"),
        ("account", "DescribeRules"),
    ],
)
def test_a_whole_action_refused_stops_with_the_permission_to_grant(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path, how: str, action: str
) -> None:
    data = estate()
    if how == "account":
        data["denied_actions"] = [action]
    else:
        for spec in [*data["proxies"].values(), *data["groups"].values()]:
            spec["denied_actions"] = [action]
    server = threaded_emulator(emu.World.from_dict(data))
    out = tmp_path / "inv"
    done = run_cli(server, tmp_path, out, "--replace", f"{OLD}={NEW}")
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"grant it gaap:{action}" in done.stderr, done.stderr
    assert "--endpoint" not in done.stderr and "Traceback" not in done.stderr
    assert "not searched" not in done.stderr, "a refusal everywhere is not a list of holes"
    assert not out.exists() or not any(out.iterdir())


def test_a_failure_that_is_not_about_one_connection_stops(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path
) -> None:
    """A listing answer that is about the request, not the connection (InvalidParameter), stops the inventory: it
    is not written down as a connection that could not be searched."""
    data = with_proxy(estate(), "link-0006", refused_actions={"DescribeHTTPSListeners": "InvalidParameter"})
    server = threaded_emulator(emu.World.from_dict(data))
    with pytest.raises(InventoryError, match="DescribeHTTPSListeners of link-0006 answered InvalidParameter"):
        inventory(server, tmp_path / "inv")
    assert not (tmp_path / "inv").exists()


# ------------------------------------------------------------------------------- 3. listener writes on stopped ones
def test_listener_writes_on_a_connection_that_is_not_running_are_refused(
    threaded_emulator: Callable[..., ThreadedEmulator],
) -> None:
    """ModifyHTTPSListenerAttribute on a listener of a stopped proxy answers FailedOperation.InstanceStatusNotInRuning
    (of a stopped group: GroupStatusNotInRuning); ModifyCertificate answers ProxyStatusNotInRuning; nothing is
    applied, and the listener still lists, with its connection's status."""
    data = estate()
    data["groups"]["lg-0001"]["status"] = "CLOSED"
    server = threaded_emulator(emu.World.from_dict(data))
    client = sdk(server)
    listener = {"ListenerId": "listener-closed", "ProxyId": "link-0005", "CertificateId": NEW}
    assert (
        error_code(lambda: call(client, "ModifyHTTPSListenerAttribute", **listener))
        == "FailedOperation.InstanceStatusNotInRuning"
    )
    grouped = {"ListenerId": "listener-g1", "CertificateId": NEW}
    assert (
        error_code(lambda: call(client, "ModifyHTTPSListenerAttribute", **grouped))
        == "FailedOperation.GroupStatusNotInRuning"
    )
    domain = {"ListenerId": "listener-closed", "Domain": "closed.example.com", "CertificateId": NEW}
    assert error_code(lambda: call(client, "ModifyCertificate", **domain)) == "FailedOperation.ProxyStatusNotInRuning"
    assert not emulator_of(server).ledger
    [listed] = call(client, "DescribeHTTPSListeners", ProxyId="link-0005").ListenerSet
    assert listed.ListenerId == "listener-closed"
    [proxy] = call(client, "DescribeProxies", ProxyIds=["link-0005"]).ProxySet
    assert proxy.Status == "CLOSED"


def test_a_connection_refusal_reaches_the_actions_on_its_listeners(
    threaded_emulator: Callable[..., ThreadedEmulator],
) -> None:
    """A proxy's `refused_actions`/`denied_actions` answer for the listing by ProxyId and for actions on listeners
    that sit on it (by ListenerId); other connections are not touched."""
    data = with_proxy(estate(), "link-0006", denied_actions=["DescribeHTTPSListeners", "DescribeRules"])
    data["groups"]["lg-0002"]["refused_actions"] = {"ModifyCertificate": "FailedOperation.NotSupportProxyGroup"}
    client = sdk(threaded_emulator(emu.World.from_dict(data)))
    assert error_code(lambda: call(client, "DescribeHTTPSListeners", ProxyId="link-0006")) == "UnauthorizedOperation"
    assert error_code(lambda: call(client, "DescribeHTTPSListeners", ListenerId="listener-u6")) == (
        "UnauthorizedOperation"
    )
    assert error_code(lambda: call(client, "DescribeRules", ListenerId="listener-u6")) == "UnauthorizedOperation"
    change = {"ListenerId": "listener-g2", "Domain": "g2a.example.com", "CertificateId": NEW}
    assert error_code(lambda: call(client, "ModifyCertificate", **change)) == "FailedOperation.NotSupportProxyGroup"
    assert call(client, "DescribeHTTPSListeners", ProxyId="link-0007").TotalCount == 1
    assert call(client, "DescribeRules", ListenerId="listener-u7").TotalCount == 1


# -------------------------------------------------------------------------------------- 7. the world's latency
def test_latency_is_set_per_world_and_can_change_while_serving(
    threaded_emulator: Callable[..., ThreadedEmulator],
) -> None:
    world = emu.World.from_dict(estate(latency_ms=[150, 150]))
    assert world.latency_ms == (150.0, 150.0)
    server = threaded_emulator(world)
    client = sdk(server)
    started = time.monotonic()
    call(client, "DescribeProxyGroupList", ProjectId=-1)
    assert time.monotonic() - started >= 0.15
    world.latency_ms = (0.0, 0.0)
    started = time.monotonic()
    call(client, "DescribeProxyGroupList", ProjectId=-1)
    assert time.monotonic() - started < 0.15
    assert emu.world_for_rows([], latency_ms=(50, 300)).latency_ms == (50.0, 300.0)
    for bad in (-1, [300, 50]):
        with pytest.raises(WorldError, match="latency_ms"):
            emu.World.from_dict(estate(latency_ms=bad))


def test_the_new_world_keys_round_trip_and_are_checked() -> None:
    data = with_proxy(estate(), "link-0006", denied_actions=["DescribeHTTPSListeners"])
    data["groups"]["lg-0002"]["refused_actions"] = {"DescribeHTTPSListeners": "FailedOperation.NotSupportProxyGroup"}
    data["listing_quirks"] = {"DescribeProxies": {"instance_set_only": True, "empty_from_offset": 100}}
    world = emu.World.from_dict(data)
    written = world.to_dict()
    assert written["proxies"]["link-0006"]["refused_actions"] == {"DescribeHTTPSListeners": "UnauthorizedOperation"}
    assert written["groups"]["lg-0007"]["project_id"] == 7
    assert emu.World.from_dict(json.loads(json.dumps(written))).to_dict() == written
    bad: list[dict[str, Any]] = [
        {"groups": {"lg-x": {"project_id": -2}}},
        {"groups": {"lg-x": {"project_id": "7"}}},
        {"proxies": {"link-x": {"refused_actions": {"DescribeRules": 3}}}},
        {"listing_quirks": {"DescribeRules": {"empty_from_offset": 1}}},
        {"listing_quirks": {"DescribeProxyGroupList": {"instance_set_only": True}}},
        {"listing_quirks": {"DescribeProxies": {"empty_page": 1}}},
    ]
    for override in bad:
        with pytest.raises(WorldError):
            emu.World.from_dict(estate(**override))
