"""Reconciliation against the live state: pre-flight, ambiguous answers, post-run verification, rollback, plan."""

from __future__ import annotations

import asyncio
import csv
import json
import random
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from batchcert import emulator as emu
from batchcert.api.signing import sign_request
from batchcert.errors import ExitCode
from batchcert.live.reader import LiveReader
from batchcert.live.state import LiveDomain, PlanAction, PlanLine, Verdict, is_at_target, judge, rollback_for
from batchcert.model import Row
from batchcert.runner import RunnerConfig, plan_rows
from batchcert.schedule import Quota, Sleeper
from batchcert.settings import RunSettings, SettingFlags
from batchcert.workflow import PlanRequest, RunRequest, plan_mapping, run_mapping
from tests.conftest import ThreadedEmulator, run_against, write_mapping
from tests.fake_api import EmulatorApi, max_in_window
from tests.virtual_time import run_virtual
from tests.worlds import QUICK_RETRIES, SECRET_ID, SECRET_KEY

pytestmark = pytest.mark.usefixtures("credentials_env")
HEADER = ("ListenerId", "Domain", "CertificateId", "ClientCertificateId", "PolyClientCertificateIds")


def world(**overrides: Any) -> emu.World:
    """Two listeners on their own certificate cert-lst; on the first, one domain of each case reconciliation tells
    apart (on cert-old, on `default`, already at the target, with one and with two client CAs); four plain domains on
    the second. This file's own: ROWS and its expected outcomes are written against it."""
    data: dict[str, Any] = {
        "credentials": {SECRET_ID: SECRET_KEY},
        "rate_limit": 50,
        "task_seconds": 0.1,
        "latency_ms": 5,
        "listeners": {
            "listener-aaaa0001": {
                "certificate_id": "cert-lst",
                "domains": {
                    "a.example.com": {"certificate_id": "cert-old"},
                    "b.example.com": {"certificate_id": "default"},
                    "c.example.com": {"certificate_id": "cert-new"},
                    "d.example.com": {
                        "certificate_id": "cert-old",
                        "client_certificate_id": "cert-ca1",
                        "poly_client_certificate_ids": ["cert-ca1"],
                    },
                    "e.example.com": {
                        "certificate_id": "cert-old",
                        "client_certificate_id": "cert-ca1",
                        "poly_client_certificate_ids": ["cert-ca1", "cert-ca2"],
                    },
                },
            },
            "listener-bbbb0001": {
                "certificate_id": "cert-lst",
                "domains": {f"x{i}.example.com": {"certificate_id": "cert-old"} for i in range(4)},
            },
        },
        "certificates": {
            "cert-old": {"type": 2, "domains": ["*.example.com"]},
            "cert-new": {"type": 2, "domains": ["*.example.com"]},
            "cert-lst": {"type": 2, "domains": ["*.example.com"]},
            "cert-ca1": {"type": 1},
            "cert-ca2": {"type": 1},
        },
    }
    data.update(overrides)
    return emu.World.from_dict(data)


ROWS = [
    ("listener-aaaa0001", "a.example.com", "cert-new", "", ""),
    ("listener-aaaa0001", "b.example.com", "cert-new", "", ""),
    ("listener-aaaa0001", "c.example.com", "cert-new", "", ""),  # already there
    ("listener-aaaa0001", "d.example.com", "cert-new", "cert-ca2", ""),
    ("listener-aaaa0001", "e.example.com", "default", "", "cert-ca2"),
    ("listener-aaaa0001", "nope.example.com", "cert-new", "", ""),
    ("listener-gone0001", "a.example.com", "cert-new", "", ""),
]


def report(run_dir: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((run_dir / "report.csv").read_text(encoding="utf-8-sig").splitlines()))


def test_preflight_settles_unchanged_and_absent_rows_without_changes(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path
) -> None:
    """Rows at target end unchanged and absent listeners/domains terminal, with no ModifyCertificate for them; the
    report carries previous ids and a verified flag on every done row."""
    server = threaded_emulator(world())
    run_against(server, write_mapping(tmp_path / "m.csv", ROWS, HEADER), tmp_path / "run")
    rows = {r["domain"] + "@" + r["listener_id"]: r for r in report(tmp_path / "run")}
    assert rows["c.example.com@listener-aaaa0001"]["outcome"] == "unchanged"
    assert rows["nope.example.com@listener-aaaa0001"]["outcome"] == "terminal"
    assert rows["nope.example.com@listener-aaaa0001"]["error_code"] == "ResourceNotFound"
    assert rows["a.example.com@listener-gone0001"]["error_code"] == "ResourceNotFound"
    assert server.emulator is not None
    assert {(e.listener_id, e.domain) for e in server.emulator.ledger} == {
        ("listener-aaaa0001", d) for d in ("a.example.com", "b.example.com", "d.example.com", "e.example.com")
    }
    # one write per change: a ListenerHasTask refusal (the pacer probing, a slow machine) is the only extra allowed
    assert server.emulator.requests["ModifyCertificate"] - server.emulator.stats["FailedOperation.ListenerHasTask"] == 4
    assert rows["b.example.com@listener-aaaa0001"]["previous_certificate_id"] == "default"
    assert rows["e.example.com@listener-aaaa0001"]["previous_client_certificate_ids"] == "cert-ca1;cert-ca2"
    done = [r for r in rows.values() if r["outcome"] in ("succeeded", "unchanged")]
    assert len(done) == 5 and all(r["verified"] == "true" for r in done)
    assert rows["e.example.com@listener-aaaa0001"]["verified_certificate_id"] == "default"


def test_apply_then_hang_is_verified_not_resent(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path
) -> None:
    """A change applied whose answer never came ends succeeded after a read, with exactly one applied change."""
    faults = {"hang_seconds": 5, "domains": {f"x{i}.example.com": [{"kind": "apply_then_hang"}] for i in range(3)}}
    server = threaded_emulator(world(faults=faults))
    rows = [("listener-bbbb0001", f"x{i}.example.com", "cert-new", "", "") for i in range(4)]
    summary = run_mapping(
        RunRequest(
            mapping=write_mapping(tmp_path / "m.csv", rows, HEADER),
            out=tmp_path / "run",
            settings=SettingFlags(endpoint=server.base_url, timeout_s=0.5),
        )
    )
    assert summary.exit_code == 0
    assert server.emulator is not None
    assert Counter(e.domain for e in server.emulator.ledger) == Counter({f"x{i}.example.com": 1 for i in range(4)})
    # nothing resent: every write but a ListenerHasTask refusal is one of the four changes
    assert server.emulator.requests["ModifyCertificate"] - server.emulator.stats["FailedOperation.ListenerHasTask"] == 4
    by_domain = {r["domain"]: r for r in report(tmp_path / "run")}
    for i in range(3):
        assert by_domain[f"x{i}.example.com"]["outcome"] == "succeeded"
        assert "verified after an ambiguous response" in by_domain[f"x{i}.example.com"]["error_message"]
        assert by_domain[f"x{i}.example.com"]["verified"] == "true"


def test_rollback_restores_the_world_exactly(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path
) -> None:
    """Running rollback.csv as a mapping brings the emulator's state back to what it was before the run."""
    server = threaded_emulator(world())
    assert server.emulator is not None
    before = json.dumps(server.emulator.world.to_dict(), sort_keys=True)
    rows = [r for r in ROWS if "nope" not in r[1] and "gone" not in r[0]]
    run_against(server, write_mapping(tmp_path / "m.csv", rows, HEADER), tmp_path / "run")
    assert json.dumps(server.emulator.world.to_dict(), sort_keys=True) != before
    rollback = list(csv.DictReader((tmp_path / "run" / "rollback.csv").read_text(encoding="utf-8-sig").splitlines()))
    assert {r["Domain"] for r in rollback} == {"a.example.com", "b.example.com", "d.example.com", "e.example.com"}
    # compare-and-swap: CertificateId is what the run set (the state expected now), NewCertificateId what restores
    b_line = next(r for r in rollback if r["Domain"] == "b.example.com")
    assert (b_line["CertificateId"], b_line["NewCertificateId"]) == ("cert-new", "default")
    undo = run_against(server, tmp_path / "run" / "rollback.csv", tmp_path / "undo")
    assert undo.exit_code == 0
    assert json.dumps(server.emulator.world.to_dict(), sort_keys=True) == before


def test_changing_domain_is_waited_for_not_refused(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path
) -> None:
    """A domain another operator is changing (DomainStatus 1) is sent only once it runs again: no refusal."""
    server = threaded_emulator(world(task_seconds=1.0))
    assert server.emulator is not None
    asyncio.run(other_operator_changes(server.base_url, "listener-aaaa0001", "a.example.com"))
    summary = run_against(
        server,
        write_mapping(tmp_path / "m.csv", [ROWS[0]], HEADER),
        tmp_path / "run",
        runner=QUICK_RETRIES,
    )
    assert summary.exit_code == 0
    assert server.emulator.stats["FailedOperation.DomainStatusNotInRunning"] == 0
    assert server.emulator.stats["FailedOperation.ListenerHasTask"] == 0
    assert [e.after["certificate_id"] for e in server.emulator.ledger] == ["cert-old", "cert-new"]


async def other_operator_changes(base_url: str, listener_id: str, domain: str) -> None:
    """Another tool changes a domain (starting its task) just before our run."""
    import aiohttp

    body = json.dumps({"ListenerId": listener_id, "Domain": domain, "CertificateId": "cert-old"}).encode()
    signed = sign_request(
        secret_id=SECRET_ID,
        secret_key=SECRET_KEY,
        service="gaap",
        host=base_url.removeprefix("http://"),
        action="ModifyCertificate",
        version="2018-05-29",
        body=body,
        timestamp=int(time.time()),
    )
    async with (
        aiohttp.ClientSession() as session,
        session.post(base_url + "/", data=body, headers=signed.headers) as resp,
    ):
        assert "Error" not in (await resp.json())["Response"]


def plan_listeners() -> dict[str, Any]:
    """60 listeners of one domain each, p{i}.example.com on cert-old: what the plan tests read."""
    return {
        f"listener-p{i:07d}": {
            "certificate_id": "cert-lst",
            "domains": {f"p{i}.example.com": {"certificate_id": "cert-old"}},
        }
        for i in range(60)
    }


def test_plan_counts_exit_codes_and_read_pacing(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path
) -> None:
    """plan reports the right counts and exit codes (2 pending, 0 nothing to do, 1 errors) and reads each listener
    once: 60 listeners read at --rate 20 against a service allowing 1000. That the reads stay under the ceiling is
    the next test's, on virtual time: over sockets a loaded machine can deliver paced reads in bunches."""
    listeners = plan_listeners()
    server = threaded_emulator(world(rate_limit=1000, listeners=listeners))
    rows = [(lid, f"p{i}.example.com", "cert-new", "", "") for i, lid in enumerate(listeners)]
    mapping = write_mapping(tmp_path / "m.csv", rows, HEADER)
    pending = plan_mapping(
        PlanRequest(mapping=mapping, out=tmp_path / "plan1", settings=SettingFlags(endpoint=server.base_url))
    )
    assert pending.exit_code == ExitCode.CHANGES_PENDING and ExitCode.CHANGES_PENDING.value == 4
    assert pending.counts[PlanAction.CHANGE] == 60
    assert server.emulator is not None
    # exact however busy the machine: a read is sent again only after a throttled answer (the service allows 1000/s)
    # or a timeout (10 s)
    assert server.emulator.requests == Counter(
        {"DescribeRules": 60, "DescribeCertificates": 1, "DescribeCertificateDetail": 1}
    )
    fast = SettingFlags(endpoint=server.base_url, rate_per_s=200.0)  # the ceiling itself is not what the rest is about
    run_mapping(RunRequest(mapping=mapping, out=tmp_path / "run", settings=fast))
    done = plan_mapping(PlanRequest(mapping=mapping, out=tmp_path / "plan2", settings=fast))
    assert done.exit_code == 0 and done.counts[PlanAction.UNCHANGED] == 60
    broken = write_mapping(
        tmp_path / "b.csv",
        [*rows[:2], ("listener-zzzz0000", "q.example.com", "cert-new", "", ""), ("bad", "", "", "", "")],
        HEADER,
    )
    errors = plan_mapping(PlanRequest(mapping=broken, out=tmp_path / "plan3", settings=fast))
    assert errors.exit_code == 1
    assert (
        errors.counts[PlanAction.UNCHANGED],
        errors.counts[PlanAction.NOT_FOUND],
        errors.counts[PlanAction.INVALID],
    ) == (2, 1, 1)
    lines = list(csv.DictReader((tmp_path / "plan3" / "plan.csv").read_text(encoding="utf-8-sig").splitlines()))
    assert [line["action"] for line in lines] == ["unchanged", "unchanged", "not_found", "invalid"]


def test_plan_reads_stay_under_the_ceiling() -> None:
    """plan's reads of 60 listeners at --rate 20 against a service allowing 1000: never more than 20 DescribeRules
    sent in any sliding second, each listener read once. On virtual time with the emulator in process
    (tests/fake_api.py), where this is exact."""
    listeners = plan_listeners()
    rows = [Row(n, lid, f"p{n - 2}.example.com", "cert-new") for n, lid in enumerate(listeners, start=2)]

    async def plan() -> tuple[EmulatorApi, list[PlanLine]]:
        api = EmulatorApi(world(rate_limit=1000, listeners=listeners))
        # the reader `batchcert plan --rate 20` reads through (batchcert/workflow/target.py, build_reader)
        settings = RunSettings(rate_per_s=20)
        policy = RunnerConfig().retry_policy(settings.max_attempts)
        reader = LiveReader(api, Quota(settings.rate_per_s), policy, Sleeper(), random.Random(1))
        certificates = await reader.certificates()
        return api, await plan_rows(reader, rows, certificates, settings.min_validity_days)

    api, lines = run_virtual(plan())
    assert [line.action for line in lines] == [PlanAction.CHANGE] * 60
    assert len(api.sends["DescribeRules"]) == 60
    assert max_in_window(api.sends["DescribeRules"]) <= 20


@pytest.mark.parametrize(
    ("row", "live", "at_target"),
    [
        (Row(2, "l", "d", "cert-n"), LiveDomain("d", "cert-n", ("cert-ca",), 0), True),  # client side untouched
        (Row(2, "l", "d", "cert-n", "cert-ca"), LiveDomain("d", "cert-n", ("cert-ca",), 0), True),
        (Row(2, "l", "d", "cert-n", "cert-ca"), LiveDomain("d", "cert-n", ("cert-ca", "cert-x"), 0), False),
        (
            Row(2, "l", "d", "cert-n", "", ("cert-b", "cert-a")),
            LiveDomain("d", "cert-n", ("cert-a", "cert-b"), 0),
            True,
        ),
        (Row(2, "l", "d", "default"), LiveDomain("d", "default", (), 0), True),
        (Row(2, "l", "d", "cert-n"), LiveDomain("d", "default", (), 0), False),
    ],
)
def test_is_at_target(row: Row, live: LiveDomain, at_target: bool) -> None:
    """A row is at target when the server id matches and, where the row names client CAs, they match as a set."""
    assert is_at_target(row, live) is at_target


def test_judge_and_rollback_rules() -> None:
    """Absent listener/domain → not found; status ≠ 0 → changing; a rollback cannot remove client CAs and says so."""
    row = Row(2, "l", "d.example.com", "cert-n", "cert-ca")
    assert judge(row, None)[0] is Verdict.NOT_FOUND
    assert judge(row, {})[0] is Verdict.NOT_FOUND
    assert judge(row, {"d.example.com": LiveDomain("d.example.com", "cert-o", (), 1)})[0] is Verdict.CHANGING
    undo = rollback_for(row, "cert-o", ())
    assert undo.certificate_id == "cert-o" and "cannot remove" in undo.note
    assert rollback_for(row, "default", ("cert-a", "cert-b")).poly_client_certificate_ids == "cert-a;cert-b"
