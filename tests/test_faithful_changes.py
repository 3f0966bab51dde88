"""Never change something other than what the file says (issue 21), with the emulator's ledger as the oracle:
compare-and-swap columns, the service's spelling of a domain, a change the service reverted, a rehearsal rerun
that keeps its faults and denials, a listener row naming another proxy."""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from batchcert import emulator as emu
from batchcert.model import (
    CHANGE_REVERTED,
    PRECONDITION_MISMATCH,
    PRECONDITION_WRONG_PROXY,
    Outcome,
)
from batchcert.settings import SettingFlags
from batchcert.workflow import PlanRequest, RerunRequest, RunRequest, plan_mapping, rerun_run, run_mapping
from tests.conftest import ThreadedEmulator, run_against, write_mapping
from tests.worlds import QUICK_TASKS, SECRET_ID, SECRET_KEY, migration_world

L1 = "listener-aaaa0001"


def report_rows(run_dir: Path) -> dict[str, dict[str, str]]:
    """report.csv by row number."""
    with (run_dir / "report.csv").open(encoding="utf-8-sig", newline="") as fh:
        return {line["row"]: line for line in csv.DictReader(fh)}


def applied(server: ThreadedEmulator) -> Counter[str]:
    """Changes the emulator applied, by domain (its ledger: what really happened)."""
    assert server.emulator is not None
    return Counter(entry.domain for entry in server.emulator.ledger)


def three_domains(**overrides: Any) -> dict[str, Any]:
    """a and b on cert-old, c already on cert-new, d moved meanwhile to cert-third; fast tasks. The compare-and-swap
    tests' own: a migration world whose places are not all where the file expects."""
    data, _ = migration_world(
        {L1: ["a.example.com", "b.example.com", "c.example.com", "d.example.com"]},
        task_seconds=0.05,
        latency_ms=5,
        **overrides,
    )
    data["certificates"]["cert-third"] = {"type": 2, "domains": ["*.example.com"]}
    data["listeners"][L1]["domains"]["c.example.com"]["certificate_id"] = "cert-new"
    data["listeners"][L1]["domains"]["d.example.com"]["certificate_id"] = "cert-third"
    return data


CAS_HEADERS = [
    ("ListenerId", "Domain", "CertificateId", "NewCertificateId"),
    ("监听器ID", "域名", "证书ID", "新证书ID"),
    ("ListenerId", "Domain", "CurrentCertificateId", "TargetCertificateId"),
    ("监听器ID", "域名", "当前证书ID", "目标证书ID"),
]


@pytest.mark.parametrize("header", CAS_HEADERS, ids=["en", "zh", "en-current", "zh-current"])
@pytest.mark.parametrize("preflight", [True, False], ids=["preflight", "no-preflight"])
def test_current_to_new_changes_only_places_still_at_the_current_certificate(
    tmp_path: Path,
    threaded_emulator: Callable[..., ThreadedEmulator],
    credentials_env: None,
    header: tuple[str, ...],
    preflight: bool,
) -> None:
    """A compare-and-swap mapping moves a place only when it still holds the expected current certificate: the
    place that moved to a third certificate meanwhile is never sent (terminal, both ids named) — even with
    --no-preflight, the row is read before it is sent; one already at its target is unchanged."""
    server = threaded_emulator(emu.World.from_dict(three_domains()))
    rows = [(L1, f"{d}.example.com", "cert-old", "cert-new") for d in "abcd"]
    mapping = write_mapping(tmp_path / "m.csv", rows, header)
    run_dir = tmp_path / "run"
    summary = run_against(server, mapping, run_dir, runner=replace(QUICK_TASKS, preflight=preflight))
    assert applied(server) == Counter({"a.example.com": 1, "b.example.com": 1})
    lines = report_rows(run_dir)
    assert [lines[n]["outcome"] for n in "2345"] == ["succeeded", "succeeded", "unchanged", "terminal"]
    moved = lines["5"]
    assert moved["error_code"] == PRECONDITION_MISMATCH
    assert "cert-third" in moved["error_message"] and "cert-old" in moved["error_message"]
    assert moved["attempts"] == "0"
    assert summary.exit_code == 1
    assert server.world.listeners[L1].domains["d.example.com"].certificate_id == "cert-third"


def test_plan_shows_a_place_that_moved_since_the_file_was_made(
    tmp_path: Path, threaded_emulator: Callable[..., ThreadedEmulator], credentials_env: None
) -> None:
    """`plan` says which compare-and-swap rows would be refused, exits 1 for them, and its count line adds up."""
    server = threaded_emulator(emu.World.from_dict(three_domains()))
    rows = [(L1, f"{d}.example.com", "cert-old", "cert-new") for d in "abcd"]
    mapping = write_mapping(tmp_path / "m.csv", rows, CAS_HEADERS[1])
    result = plan_mapping(
        PlanRequest(mapping=mapping, out=tmp_path / "plan", settings=SettingFlags(endpoint=server.base_url))
    )
    actions = [line.action for line in result.lines]
    assert actions == ["change", "change", "unchanged", "mismatch"]
    assert "cert-third" in result.lines[3].reason
    assert result.exit_code == 1
    assert applied(server) == Counter()


def test_a_domain_typed_in_mixed_case_is_sent_as_the_service_spells_it(
    tmp_path: Path, threaded_emulator: Callable[..., ThreadedEmulator], credentials_env: None
) -> None:
    """`WWW.Example.com` is matched to the live `www.example.com` and sent in its spelling (the emulator, like the
    service, refuses another spelling); its correctly typed twin is its duplicate: applied once, both succeeded."""
    data, _ = migration_world({L1: ["www.example.com", "api.example.com"]}, task_seconds=0.05, latency_ms=5)
    server = threaded_emulator(emu.World.from_dict(data))
    rows = [
        (L1, "WWW.Example.com", "cert-new"),
        (L1, "www.example.com", "cert-new"),
        (L1, "API.EXAMPLE.COM", "cert-new"),
    ]
    run_dir = tmp_path / "run"
    summary = run_against(server, write_mapping(tmp_path / "m.csv", rows), run_dir, runner=QUICK_TASKS)
    assert applied(server) == Counter({"www.example.com": 1, "api.example.com": 1})
    lines = report_rows(run_dir)
    assert [lines[n]["outcome"] for n in "234"] == ["succeeded", "succeeded", "succeeded"]
    assert lines["3"]["duplicate_of"] == "2"
    assert "www.example.com" in lines["2"]["error_message"]  # says how it was sent
    assert summary.exit_code == 0


def test_a_reverted_change_is_not_a_success_and_rerun_heals_it(
    tmp_path: Path, threaded_emulator: Callable[..., ThreadedEmulator], credentials_env: None
) -> None:
    """The service accepts a change, its task fails and the old certificate comes back: the row ends retryable
    (Verification.ChangeReverted), the run exits 1, failed.csv lists it — and `rerun` reads it and sends it again."""
    data, rows = migration_world({L1: ["a.example.com", "b.example.com"]}, task_seconds=0.1, latency_ms=5)
    data["faults"] = {"domains": {"a.example.com": [{"kind": "task_fail"}]}}
    server = threaded_emulator(emu.World.from_dict(data))
    run_dir = tmp_path / "run"
    first = run_against(server, write_mapping(tmp_path / "m.csv", rows), run_dir, runner=QUICK_TASKS)
    assert first.exit_code == 1
    lines = report_rows(run_dir)
    assert lines["2"]["outcome"] == "retryable" and lines["2"]["error_code"] == CHANGE_REVERTED
    assert "reverted" in lines["2"]["error_message"]
    assert lines["3"]["outcome"] == "succeeded"
    with (run_dir / "failed.csv").open(encoding="utf-8-sig", newline="") as fh:
        assert [line["Domain"] for line in csv.DictReader(fh)] == ["a.example.com"]
    assert server.world.listeners[L1].domains["a.example.com"].certificate_id == "cert-old"

    second = rerun_run(
        RerunRequest(run_dir=run_dir, settings=SettingFlags(endpoint=server.base_url), runner=QUICK_TASKS)
    )
    assert second.exit_code == 0
    assert report_rows(run_dir)["2"]["outcome"] == "succeeded"
    assert applied(server) == Counter({"a.example.com": 2, "b.example.com": 1})  # a: the reverted one, then the fix
    assert server.world.listeners[L1].domains["a.example.com"].certificate_id == "cert-new"


def test_a_rehearsal_rerun_keeps_the_worlds_denials_and_faults(tmp_path: Path) -> None:
    """A rehearsal's rerun runs in the world as the rehearsal left it, denials and remaining faults included: a
    denied listener stays denied ("fixed" by nothing), a fault script goes on where it stopped."""
    data, rows = migration_world(
        {L1: ["a.example.com"], "listener-bbbb0001": ["b.example.com"]}, task_seconds=0.05, latency_ms=5
    )
    data["listeners"]["listener-bbbb0001"]["denied_actions"] = ["ModifyCertificate"]
    data["faults"] = {"domains": {"a.example.com": [{"kind": "code", "code": "ResourceUnavailable", "times": 3}]}}
    world_path = tmp_path / "world.json"
    world_path.write_text(json.dumps(data), encoding="utf-8")
    run_dir = tmp_path / "run"
    first = run_mapping(
        RunRequest(
            mapping=write_mapping(tmp_path / "m.csv", rows),
            out=run_dir,
            settings=SettingFlags(max_attempts=2),
            rehearsal=True,
            world=world_path,
            runner=QUICK_TASKS,
        )
    )
    assert first.counts[Outcome.TERMINAL] == 1 and first.counts[Outcome.RETRYABLE] == 1
    second = rerun_run(RerunRequest(run_dir=run_dir, include_terminal=True, runner=QUICK_TASKS))
    lines = report_rows(run_dir)
    assert lines["3"]["outcome"] == "terminal"  # still denied: nothing was fixed
    assert "UnauthorizedOperation" in lines["3"]["error_code"]
    # the third refusal of the script was left for the rerun: it meets it, then succeeds
    assert lines["2"]["outcome"] == "succeeded" and lines["2"]["attempts"] == "4"
    assert second.counts[Outcome.SUCCEEDED] == 1


def test_a_listener_row_naming_another_proxy_is_refused_unsent(
    tmp_path: Path, threaded_emulator: Callable[..., ThreadedEmulator], credentials_env: None
) -> None:
    """A listener row whose ProxyId does not own the listener is refused by plan and run with that reason."""
    data: dict[str, Any] = {
        "credentials": {SECRET_ID: SECRET_KEY},
        "task_seconds": 0.05,
        "latency_ms": 5,
        "proxies": {
            "link-aaaa0001": {"status": "RUNNING", "version": "3.0"},
            "link-bbbb0001": {"status": "RUNNING", "version": "3.0"},
        },
        "listeners": {
            L1: {"proxy_id": "link-aaaa0001", "certificate_id": "cert-old", "domains": {}},
        },
        "certificates": {
            "cert-old": {"type": 2, "domains": ["*.example.com"]},
            "cert-new": {"type": 2, "domains": ["*.example.com"]},
        },
    }
    server = threaded_emulator(emu.World.from_dict(data))
    mapping = write_mapping(
        tmp_path / "m.csv",
        [("listener", "link-bbbb0001", L1, "", "cert-new")],
        ("Scope", "ProxyId", "ListenerId", "Domain", "CertificateId"),
    )
    planned = plan_mapping(
        PlanRequest(mapping=mapping, out=tmp_path / "plan", settings=SettingFlags(endpoint=server.base_url))
    )
    assert planned.lines[0].action == "wrong_proxy" and "link-aaaa0001" in planned.lines[0].reason
    assert planned.exit_code == 1
    run_dir = tmp_path / "run"
    run_against(server, mapping, run_dir, runner=QUICK_TASKS)
    line = report_rows(run_dir)["2"]
    assert line["outcome"] == "terminal" and line["error_code"] == PRECONDITION_WRONG_PROXY
    assert "link-aaaa0001" in line["error_message"] and "certificate ids" not in line["error_message"]
    assert applied(server) == Counter()


def test_an_edited_failed_csv_survives_report_and_rerun(tmp_path: Path) -> None:
    """The user fixes failed.csv by hand; `batchcert report` and `batchcert rerun` leave it byte for byte and write
    theirs beside it, saying so."""
    from typer.testing import CliRunner

    from batchcert.cli import app

    data, rows = migration_world({L1: ["a.example.com", "b.example.com"]}, task_seconds=0.05, latency_ms=1)
    data["faults"] = {"domains": {"b.example.com": [{"kind": "code", "code": "ResourceUnavailable", "times": 1}]}}
    world = tmp_path / "world.json"
    world.write_text(json.dumps(data), encoding="utf-8")
    mapping, run_dir = write_mapping(tmp_path / "m.csv", [*rows, (L1, "c.example.com", "")]), tmp_path / "run"
    runner = CliRunner()
    ran = runner.invoke(
        app, ["run", str(mapping), "--world", str(world), "--yes", "--out", str(run_dir), "--max-attempts", "1"]
    )
    assert ran.exit_code == 1, ran.output
    failed = run_dir / "failed.csv"
    edited = failed.read_bytes().replace(b"c.example.com,,", b"c.example.com,cert-new,")
    assert edited != failed.read_bytes()
    failed.write_bytes(edited)
    for args in (["report", str(run_dir)], ["rerun", str(run_dir), "--yes"]):
        done = runner.invoke(app, args)
        assert done.exit_code in (0, 1), done.output
        assert failed.read_bytes() == edited
        assert "failed.csv is not the file batchcert last wrote there" in done.output
    assert (run_dir / "failed-2.csv").is_file()


def mutual_tls_world() -> dict[str, Any]:
    """a and b on cert-old with client CA cert-ca0 (its list only); client CAs cert-ca1 and cert-ca2 uploaded. The
    client-CA column tests' own: a mapping moves these domains to CAs they do not have yet."""
    data, _ = migration_world({L1: ["a.example.com", "b.example.com"]}, task_seconds=0.05, latency_ms=5)
    data["certificates"] |= {f"cert-ca{i}": {"type": 1, "domains": []} for i in range(3)}
    for domain in data["listeners"][L1]["domains"].values():
        domain["poly_client_certificate_ids"] = ["cert-ca0"]
    return data


@pytest.mark.usefixtures("credentials_env")
def test_an_unknown_client_ca_column_stops_the_run_before_anything_is_sent(
    tmp_path: Path, threaded_emulator: Callable[..., ThreadedEmulator]
) -> None:
    """`CA列表` is no name batchcert knows: the run refuses the file (exit 2) and the service sees no change."""
    from batchcert.errors import MappingError

    server = threaded_emulator(emu.World.from_dict(mutual_tls_world()))
    mapping = write_mapping(
        tmp_path / "m.csv",
        [(L1, "a.example.com", "cert-new", "rotation 2026", "cert-ca1;cert-ca2")],
        ("ListenerId", "Domain", "CertificateId", "备注", "CA列表"),
    )
    with pytest.raises(MappingError, match=r"'CA列表' \(column E\)"):
        run_against(server, mapping, tmp_path / "run", runner=QUICK_TASKS)
    assert applied(server) == Counter() and not (tmp_path / "run").exists()


@pytest.mark.usefixtures("credentials_env")
def test_ids_spilled_into_a_note_column_are_never_sent_as_a_shorter_list(
    tmp_path: Path, threaded_emulator: Callable[..., ThreadedEmulator]
) -> None:
    """`cert-ca1,cert-ca2` unquoted in a CSV spills cert-ca2 into the note column: that row is invalid and not sent
    (its CA list would shrink to one); the other row is sent with both of its CAs."""
    server = threaded_emulator(emu.World.from_dict(mutual_tls_world()))
    mapping = tmp_path / "m.csv"
    mapping.write_text(
        "ListenerId,Domain,CertificateId,PolyClientCertificateIds,备注\n"
        f"{L1},a.example.com,cert-new,cert-ca1,cert-ca2\n"
        f'{L1},b.example.com,cert-new,"cert-ca1,cert-ca2",ok\n',
        encoding="utf-8",
    )
    run_dir = tmp_path / "run"
    summary = run_against(server, mapping, run_dir, runner=QUICK_TASKS)
    assert applied(server) == Counter({"b.example.com": 1})
    lines = report_rows(run_dir)
    assert lines["2"]["outcome"] == "invalid" and "spilled" in lines["2"]["error_message"]
    assert lines["3"]["outcome"] == "succeeded"
    assert server.world.listeners[L1].domains["b.example.com"].poly_client_certificate_ids == ["cert-ca1", "cert-ca2"]
    assert summary.exit_code == 1


@pytest.mark.usefixtures("credentials_env")
def test_a_two_level_merged_header_sends_the_client_cas_under_it(
    tmp_path: Path, threaded_emulator: Callable[..., ThreadedEmulator]
) -> None:
    """`证书` merged over `服务器证书ID | 客户端CA证书ID`: the client CA column counts (it used to be `column D`,
    silently dropped, and the row "succeeded" with its old CAs)."""
    import openpyxl

    server = threaded_emulator(emu.World.from_dict(mutual_tls_world()))
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["监听器ID", "域名", "证书", None])
    sheet.append([None, None, "服务器证书ID", "客户端CA证书ID"])
    sheet.append([L1, "a.example.com", "cert-new", "cert-ca2"])
    for merged in ("A1:A2", "B1:B2", "C1:D1"):
        sheet.merge_cells(merged)
    mapping = tmp_path / "m.xlsx"
    book.save(mapping)
    run_against(server, mapping, tmp_path / "run", runner=QUICK_TASKS)
    assert applied(server) == Counter({"a.example.com": 1})
    domain = server.world.listeners[L1].domains["a.example.com"]
    assert (domain.certificate_id, domain.poly_client_certificate_ids) == ("cert-new", ["cert-ca2"])
