"""Rotating a certificate out of the whole estate (issue 14, "Done when"): the inventory lists every HTTPS listener and
domain once, `--replace OLD=NEW` writes one mapping row per place OLD is used, running it leaves OLD used nowhere and
changes nothing else, its rollback restores the world exactly, listener rows rerun, and bad replacements and bad
scopes are refused."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from batchcert import emulator as emu
from batchcert.model import MappingSource, Outcome
from batchcert.settings import SettingFlags
from batchcert.workflow import (
    InventoryRequest,
    RerunRequest,
    RunRequest,
    rerun_run,
    run_mapping,
    take_inventory,
    validate_mapping,
)
from tests.conftest import ThreadedEmulator, write_mapping
from tests.worlds import QUICK_TASKS, SECRET_ID, SECRET_KEY

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.usefixtures("credentials_env")

OLD, NEW = "cert-old", "cert-new"
OLD2, NEW2 = "cert-caold", "cert-canew"
OTHER_CA = "cert-caother"
INVENTORY_FIRST = [
    "scope",
    "proxy_id",
    "listener_id",
    "domain",
    "certificate_id",
    "client_certificate_ids",
    "effective_certificate_id",
    "certificate_end_time",
]
#: compare-and-swap: the current ids (as the inventory read them), then what they move to
ROTATION_HEADER = [
    "Scope",
    "ProxyId",
    "ListenerId",
    "Domain",
    "CertificateId",
    "PolyClientCertificateIds",
    "NewCertificateId",
    "NewPolyClientCertificateIds",
]
RATE = 500
N_PROXIES = 105  # > 100: DescribeProxies pages at 100
N_BULK = 55  # HTTPS listeners on link-0003 (> 50: DescribeHTTPSListeners pages at 50)
N_SERVER_CERTS = 55  # + 5 below: 60 certificates (> 50: DescribeCertificates pages at 50)


def estate_data(**overrides: Any) -> dict[str, Any]:
    """An estate with more of everything than one page holds: 105 proxies (three in group lg-0000, with no
    listeners of their own), 55 HTTPS listeners + 3 HTTP + 1 TCP on link-0003, group listeners (HTTPS and HTTP), a
    mutual-TLS listener whose domains use OLD2 in every shape, and 60 certificates. This file's own: a rotation
    must find OLD and OLD2 in every place an estate can hold them."""
    proxies: dict[str, Any] = {
        f"link-{i:04d}": {"name": f"proxy {i}", "group_id": "lg-0000" if i < 3 else None} for i in range(N_PROXIES)
    }
    groups = {"lg-0000": {"name": "api-global"}, "lg-0001": {"name": "empty group"}}
    listeners: dict[str, Any] = {}
    for i in range(N_BULK):
        domains: dict[str, Any] = {}
        if i % 3 == 0:
            domains[f"b{i}a.example.com"] = {"certificate_id": OLD}
            domains[f"b{i}b.example.com"] = {"certificate_id": "default"}
        else:
            domains[f"b{i}a.example.com"] = {"certificate_id": f"cert-s{i % 50:03d}"}
        listeners[f"listener-bulk{i:03d}"] = {
            "proxy_id": "link-0003",
            "port": 1000 + i,
            "certificate_id": OLD if i % 6 == 0 else f"cert-s{i % 50:03d}",
            "domains": domains,
        }
    listeners |= {
        f"listener-http{i}": {
            "proxy_id": "link-0003",
            "protocol": "HTTP",
            "port": 80 + i,
            "domains": {f"h{i}.example.com": {"certificate_id": "default"}},
        }
        for i in range(3)
    }
    listeners["listener-tcp0"] = {"proxy_id": "link-0003", "protocol": "TCP", "port": 22}
    listeners["listener-grp0"] = {
        "group_id": "lg-0000",
        "certificate_id": OLD,
        "domains": {"g0a.example.com": {"certificate_id": OLD}, "g0b.example.com": {"certificate_id": "default"}},
    }
    listeners["listener-grp1"] = {
        "group_id": "lg-0000",
        "port": 444,
        "certificate_id": "cert-s001",
        "domains": {"g1a.example.com": {"certificate_id": "cert-s001"}},
    }
    listeners["listener-grphttp"] = {
        "group_id": "lg-0000",
        "protocol": "HTTP",
        "port": 80,
        "domains": {"gh.example.com": {"certificate_id": "default"}},
    }
    listeners["listener-mtls"] = {
        "proxy_id": "link-0010",
        "name": "api",
        "auth_type": 1,
        "certificate_id": OLD,
        "client_certificate_ids": [OLD2, OTHER_CA],
        "domains": {
            # server OLD, client CAs the listener's
            "m1.example.com": {"certificate_id": OLD},
            # client CA OLD2 alone (the emulator's shape after a write naming one: client id = first of the list)
            "m2.example.com": {
                "certificate_id": "cert-s002",
                "client_certificate_id": OLD2,
                "poly_client_certificate_ids": [OLD2],
            },
            # both
            "m3.example.com": {
                "certificate_id": OLD,
                "client_certificate_id": OTHER_CA,
                "poly_client_certificate_ids": [OTHER_CA, OLD2],
            },
            # both on default: follows the listener, no row
            "m4.example.com": {"certificate_id": "default"},
            # server on default, but a client CA list of its own with OLD2: a client row keeping `default`
            "m5.example.com": {
                "certificate_id": "default",
                "client_certificate_id": OLD2,
                "poly_client_certificate_ids": [OLD2],
            },
        },
    }
    listeners["listener-oneway"] = {
        "proxy_id": "link-0011",
        "certificate_id": "cert-s003",
        "domains": {"o1.example.com": {"certificate_id": OLD}, "o2.example.com": {"certificate_id": "default"}},
    }
    certificates: dict[str, Any] = {
        f"cert-s{i:03d}": {"type": 2, "domains": ["*.example.com"], "expires_in_days": 20 + (i * 37) % 700}
        for i in range(N_SERVER_CERTS)
    }
    certificates |= {
        OLD: {"type": 2, "domains": ["*.example.com", "example.com"], "name": "wild 2025", "expires_in_days": 12},
        NEW: {"type": 2, "domains": ["*.example.com", "example.com"], "name": "wild 2026", "expires_in_days": 400},
        OLD2: {"type": 1, "domains": [], "name": "partner CA 2025", "expires_in_days": 15},
        NEW2: {"type": 1, "domains": [], "name": "partner CA 2026", "expires_in_days": 900},
        OTHER_CA: {"type": 1, "domains": [], "name": "other CA"},
    }
    data = {
        "credentials": {SECRET_ID: SECRET_KEY},
        "rate_limit": RATE,
        "task_seconds": 0.02,
        "latency_ms": 0,
        "proxies": proxies,
        "groups": groups,
        "listeners": listeners,
        "certificates": certificates,
    }
    return data | overrides


def https_listeners(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {lid: spec for lid, spec in data["listeners"].items() if spec.get("protocol", "HTTPS") == "HTTPS"}


def expected_rotation(data: dict[str, Any]) -> Counter[tuple[str, ...]]:
    """The mapping rows `--replace OLD=NEW --replace OLD2=NEW2` must write, from the world data (the test's oracle)."""
    swaps = {OLD: NEW, OLD2: NEW2}
    rows: Counter[tuple[str, ...]] = Counter()
    for lid, spec in https_listeners(data).items():
        proxy = spec.get("proxy_id") or ""
        places = [("listener", "", spec.get("certificate_id", ""), spec)]
        places += [("domain", name, d.get("certificate_id", "default"), d) for name, d in spec["domains"].items()]
        for scope, domain, server, own in places:
            clients = list(own.get("client_certificate_ids") or own.get("poly_client_certificate_ids") or [])
            server_hit, client_hit = server in swaps, any(c in swaps for c in clients)
            if server_hit or client_hit:
                now = ";".join(clients) if client_hit else ""
                poly = ";".join(swaps.get(c, c) for c in clients) if client_hit else ""
                rows[(scope, proxy, lid, domain, server, now, swaps.get(server, server), poly)] += 1
    return rows


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def settings(server: ThreadedEmulator, **more: Any) -> SettingFlags:
    return SettingFlags(endpoint=server.base_url, rate_per_s=RATE, **more)


def emulator_of(server: ThreadedEmulator) -> emu.Emulator:
    assert server.emulator is not None
    return server.emulator


ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


# ------------------------------------------------------------------------------------------------ 1. the inventory
def test_inventory_lists_every_https_listener_and_domain_once(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path
) -> None:
    data = estate_data()
    server = threaded_emulator(emu.World.from_dict(data))
    out = tmp_path / "inventory"
    steps: list[tuple[str, int, int]] = []
    found = take_inventory(InventoryRequest(out=out, settings=settings(server)), lambda *step: steps.append(step))

    https = https_listeners(data)
    all_domains = {(lid, d) for lid, spec in https.items() for d in spec.get("domains", {})}
    assert (found.listeners, found.domains, found.certificates) == (len(https), len(all_domains), 60)
    # progress as it goes: each phase counted up to its total
    listener_steps = [done for what, done, total in steps if what == "listeners"]
    assert listener_steps == list(range(1, len(https) + 1)) and steps[-1] == ("listeners", len(https), len(https))
    requests = emulator_of(server).requests
    assert requests["DescribeProxies"] >= 2 and requests["DescribeCertificates"] >= 2  # paged, every page read

    raw = (out / "inventory.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf"), "inventory.csv must start with a UTF-8 BOM"
    header, lines = read_csv(out / "inventory.csv")
    assert header[: len(INVENTORY_FIRST)] == INVENTORY_FIRST

    listener_lines = [ln for ln in lines if ln["scope"] == "listener"]
    domain_lines = [ln for ln in lines if ln["scope"] == "domain"]
    assert len(listener_lines) + len(domain_lines) == len(lines), {ln["scope"] for ln in lines}
    assert Counter(ln["listener_id"] for ln in listener_lines) == Counter(set(https)), "each HTTPS listener once"
    assert all(ln["domain"] == "" for ln in listener_lines)
    assert Counter((ln["listener_id"], ln["domain"]) for ln in domain_lines) == Counter(all_domains)
    not_https = set(data["listeners"]) - set(https)
    assert len(not_https) == 5 and not [ln for ln in lines if ln["listener_id"] in not_https]
    http_domains = {d for lid in not_https for d in data["listeners"][lid].get("domains", {})}
    assert len(http_domains) == 4 and not [ln for ln in lines if ln["domain"] in http_domains]

    by_listener = {ln["listener_id"]: ln for ln in listener_lines}
    assert by_listener["listener-bulk000"]["proxy_id"] == "link-0003"
    assert by_listener["listener-grp0"]["proxy_id"] == "" and by_listener["listener-grp0"]["group_id"] == "lg-0000"
    assert by_listener["listener-mtls"]["client_certificate_ids"] == f"{OLD2};{OTHER_CA}"
    world = emulator_of(server).world
    for ln in lines:
        spec = https[ln["listener_id"]]
        if ln["scope"] == "domain" and spec["domains"][ln["domain"]].get("certificate_id") == "default":
            assert ln["certificate_id"] == "default"
            assert ln["effective_certificate_id"] == spec["certificate_id"], ln
        else:
            assert ln["effective_certificate_id"] == ln["certificate_id"], ln
        assert ISO_UTC.match(ln["certificate_end_time"]), ln["certificate_end_time"]
        end = datetime.fromisoformat(ln["certificate_end_time"].replace("Z", "+00:00")).timestamp()
        expected_end = world.certificates[ln["effective_certificate_id"]].validity(emulator_of(server).epoch)[1]
        assert end == expected_end, ln

    book = openpyxl.load_workbook(out / "inventory.xlsx", read_only=True)
    assert "Certificates" in book.sheetnames, book.sheetnames
    sheet = list(book["Certificates"].iter_rows(values_only=True))
    cert_header, cert_rows = list(sheet[0]), [dict(zip(sheet[0], r, strict=True)) for r in sheet[1:]]
    assert "places" in cert_header and "certificate_id" in cert_header, cert_header
    assert len(cert_rows) == 60
    ends = [world.certificates[str(r["certificate_id"])].validity(emulator_of(server).epoch)[1] for r in cert_rows]
    assert ends == sorted(ends), "the Certificates sheet is sorted by expiry"
    places = {str(r["certificate_id"]): int(r["places"] or 0) for r in cert_rows}
    old_places = sum(1 for ln in lines if ln["effective_certificate_id"] == OLD)
    assert places[OLD] == old_places and old_places > 30
    assert places[OLD2] == 4  # listener-mtls's own list, m2, m3, m5 (m1 and m4 follow the listener: `default`)
    assert places[NEW] == 0 and places[NEW2] == 0


# ------------------------------------------------------------------------------ 2. + 3. the rotation and its rollback
def rotate(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path, **overrides: Any
) -> tuple[dict[str, Any], ThreadedEmulator, Path]:
    data = estate_data(**overrides)
    server = threaded_emulator(emu.World.from_dict(data))
    found = take_inventory(
        InventoryRequest(
            out=tmp_path / "inventory", settings=settings(server), replace=(f"{OLD}={NEW}", f"{OLD2}={NEW2}")
        )
    )
    assert found.rotation is not None
    return data, server, tmp_path / "inventory" / "mapping.csv"


def test_rotation_mapping_and_run_leave_old_used_nowhere(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path
) -> None:
    data, server, mapping = rotate(threaded_emulator, tmp_path)
    header, rows = read_csv(mapping)
    assert header == ROTATION_HEADER
    written = Counter(tuple(r[c] for c in ROTATION_HEADER) for r in rows)
    expected = expected_rotation(data)
    assert written == expected, (
        f"missing {sorted((expected - written).elements())}, extra {sorted((written - expected).elements())}"
    )
    assert all(v == 1 for v in written.values())
    on_default = [r for r in rows if r["NewCertificateId"] == "default" and not r["NewPolyClientCertificateIds"]]
    assert not on_default, "a domain on `default` gets no row unless its own client list changes"
    assert {r["Scope"] for r in rows} == {"listener", "domain"}
    emulator = emulator_of(server)
    assert not emulator.ledger, "the inventory changed something"

    summary = run_mapping(
        RunRequest(mapping=mapping, out=tmp_path / "run", settings=settings(server), runner=QUICK_TASKS)
    )
    assert summary.counts[Outcome.SUCCEEDED] == len(rows), summary.counts
    assert summary.exit_code == 0

    world = emulator.world
    for lid, listener in world.listeners.items():
        assert listener.certificate_id != OLD, lid
        assert OLD2 not in listener.client_certificate_ids, lid
        for name, domain in listener.domains.items():
            assert domain.certificate_id != OLD, (lid, name)
            assert domain.client_certificate_id != OLD2 and OLD2 not in domain.poly_client_certificate_ids, (lid, name)
            if listener.protocol == "HTTPS":
                server_cert, clients = world.effective_certificates(lid, name)
                assert server_cert != OLD and OLD2 not in clients, (lid, name)
    assert world.listeners["listener-mtls"].client_certificate_ids == [NEW2, OTHER_CA]
    assert world.listeners["listener-mtls"].domains["m3.example.com"].poly_client_certificate_ids == [OTHER_CA, NEW2]

    applied = Counter((e.scope, e.listener_id, e.domain) for e in emulator.ledger)
    assert applied == Counter((r["Scope"], r["ListenerId"], r["Domain"]) for r in rows), "one change per row, no other"

    report_header, report = read_csv(tmp_path / "run" / "report.csv")
    assert "scope" in report_header
    assert {r["scope"] for r in report} == {"listener", "domain"}
    by_place = {(r["scope"], r["listener_id"], r["domain"]): r for r in report}
    for r in rows:
        line = by_place[(r["Scope"], r["ListenerId"], r["Domain"])]
        assert line["outcome"] == "succeeded", line
        assert line["verified"] == "true", line
        was_old = data["listeners"][r["ListenerId"]]["certificate_id"] if r["Scope"] == "listener" else None
        if was_old == OLD:
            assert line["previous_certificate_id"] == OLD, line
    listener_lines = [r for r in report if r["scope"] == "listener"]
    assert len(listener_lines) == sum(1 for r in rows if r["Scope"] == "listener") == 12
    assert by_place[("listener", "listener-mtls", "")]["previous_client_certificate_ids"] == f"{OLD2};{OTHER_CA}"


def test_rollback_restores_the_world_exactly(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path
) -> None:
    _, server, mapping = rotate(threaded_emulator, tmp_path)
    emulator = emulator_of(server)
    before = emulator.world.to_dict()
    summary = run_mapping(
        RunRequest(mapping=mapping, out=tmp_path / "run", settings=settings(server), runner=QUICK_TASKS)
    )
    assert summary.exit_code == 0, summary.counts
    rows = len(read_csv(mapping)[1])
    assert emulator.world.to_dict() != before

    rollback = tmp_path / "run" / "rollback.csv"
    header, undo = read_csv(rollback)
    assert header[:2] == ["Scope", "ProxyId"], header
    assert len(undo) == rows
    assert not [u for u in undo if u["note"]], [u["note"] for u in undo if u["note"]]
    back = run_mapping(
        RunRequest(mapping=rollback, out=tmp_path / "rollback", settings=settings(server), runner=QUICK_TASKS)
    )
    assert back.counts[Outcome.SUCCEEDED] == rows, back.counts
    # nothing excluded: to_dict already leaves out busy timers and faults, and credentials/knobs never change
    after = emulator.world.to_dict()
    differs = {
        lid: after["listeners"].get(lid)
        for lid, spec in before["listeners"].items()
        if after["listeners"].get(lid) != spec
    }
    assert not differs, f"not restored: {differs}"
    assert after == before
    assert len(emulator.ledger) == 2 * rows


# --------------------------------------------------------------------------------------------- 4. rerun a listener row
def test_rerun_sends_a_failed_listener_row_once(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path
) -> None:
    faults = {"listeners": {"listener-mtls": [{"kind": "code", "code": "ResourceUnavailable", "times": 2}]}}
    _, server, mapping = rotate(threaded_emulator, tmp_path, faults=faults)
    rows = read_csv(mapping)[1]
    run_dir = tmp_path / "run"
    first = run_mapping(
        RunRequest(mapping=mapping, out=run_dir, settings=settings(server, max_attempts=2), runner=QUICK_TASKS)
    )
    assert first.counts[Outcome.RETRYABLE] == 1 and first.counts[Outcome.SUCCEEDED] == len(rows) - 1, first.counts
    report = read_csv(run_dir / "report.csv")[1]
    failed = [r for r in report if r["outcome"] != "succeeded"]
    assert [(r["scope"], r["listener_id"], r["error_code"]) for r in failed] == [
        ("listener", "listener-mtls", "ResourceUnavailable")
    ]
    emulator = emulator_of(server)
    assert not [e for e in emulator.ledger if e.scope == "listener" and e.listener_id == "listener-mtls"]

    again = rerun_run(RerunRequest(run_dir=run_dir, runner=QUICK_TASKS))
    assert again.exit_code == 0 and again.counts[Outcome.SUCCEEDED] == len(rows), again.counts
    lines = read_csv(run_dir / "report.csv")[1]
    line = next(r for r in lines if (r["scope"], r["listener_id"]) == ("listener", "listener-mtls"))
    assert (line["outcome"], line["verified"], line["previous_certificate_id"]) == ("succeeded", "true", OLD), line
    applied = Counter((e.scope, e.listener_id, e.domain) for e in emulator.ledger)
    assert applied[("listener", "listener-mtls", "")] == 1
    assert applied == Counter((r["Scope"], r["ListenerId"], r["Domain"]) for r in rows), "every row applied once"
    listener = emulator.world.listeners["listener-mtls"]
    assert (listener.certificate_id, listener.client_certificate_ids) == (NEW, [NEW2, OTHER_CA])


# ------------------------------------------------------------------------------------ 5. a replacement that cannot be
@pytest.mark.parametrize(
    ("replace", "says"),
    [
        (f"{OLD}=cert-missing", "cert-missing"),  # NEW does not exist
        (f"{OLD}={NEW2}", NEW2),  # a client CA for a server certificate
        (f"{OLD2}={NEW}", NEW),  # a server certificate for a client CA
    ],
)
def test_inventory_refuses_a_replacement_that_cannot_be(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path, replace: str, says: str
) -> None:
    server = threaded_emulator(emu.World.from_dict(estate_data()))
    out = tmp_path / "inventory"
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "TENCENTCLOUD_SECRET_ID": SECRET_ID,
        "TENCENTCLOUD_SECRET_KEY": SECRET_KEY,
    }
    for name in ("TENCENTCLOUD_SESSION_TOKEN", "TENCENTCLOUD_TOKEN", "TENCENTCLOUD_SECURITY_TOKEN"):
        env.pop(name, None)
    good = f"{OLD}={NEW}" if replace.startswith(OLD2) else f"{OLD2}={NEW2}"  # with a valid one beside it
    command = [sys.executable, "-m", "batchcert", "inventory", "--endpoint", server.base_url, "--rate", str(RATE)]
    command += ["--out", str(out), "--replace", good, "--replace", replace]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert says in done.stdout + done.stderr, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists() or not any(out.iterdir()), sorted(out.iterdir())
    assert not (tmp_path / "reports").exists()
    assert not emulator_of(server).ledger


# ------------------------------------------------------------------------------------------- 6. the Scope column
def test_scope_column_validation(tmp_path: Path) -> None:
    mapping = write_mapping(
        tmp_path / "scoped.csv",
        [
            ("listener", "link-0003", "listener-bulk000", "", NEW),  # row 2: fine
            ("listener", "link-0003", "listener-bulk001", "b1a.example.com", NEW),  # row 3: listener with a domain
            ("proxy", "link-0003", "listener-bulk002", "b2a.example.com", NEW),  # row 4: unknown scope
            ("domain", "", "listener-bulk003", "b3a.example.com", NEW),  # row 5: fine
            ("", "", "listener-bulk004", "b4a.example.com", NEW),  # row 6: empty scope is a domain row
            ("LISTENER", "", "listener-grp0", "", NEW),  # row 7: fine (case-insensitive, group: no proxy)
        ],
        header=("Scope", "ProxyId", "ListenerId", "Domain", "CertificateId"),
    )
    checked = validate_mapping(MappingSource(mapping))
    assert sorted(checked.problems) == [3, 4], checked.problems
    assert "listener" in checked.problems[3] and "b1a.example.com" in checked.problems[3], checked.problems[3]
    assert "proxy" in checked.problems[4], checked.problems[4]
    scopes = {row.row_number: (row.scope, row.proxy_id, row.action) for row in checked.rows}
    assert scopes[2] == ("listener", "link-0003", "ModifyHTTPSListenerAttribute")
    assert scopes[5][0] == scopes[6][0] == "domain" and scopes[5][2] == "ModifyCertificate"
    assert scopes[7][0] == "listener"

    plain = write_mapping(
        tmp_path / "plain.csv",
        [("listener-bulk003", "b3a.example.com", NEW), ("listener-grp0", "g0a.example.com", NEW)],
    )
    unscoped = validate_mapping(MappingSource(plain))
    assert not unscoped.problems, unscoped.problems
    assert [(r.scope, r.action) for r in unscoped.rows] == [("domain", "ModifyCertificate")] * 2
