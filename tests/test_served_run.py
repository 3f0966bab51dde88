"""Proving a change where clients see it, end to end against the emulator's TLS edge (issue 23; README "What the
edge serves"): every changed domain `served` true with the target's leaf SHA-256, a domain whose edge never changes
`served` false (exit 1, listed in summary.md), an edge that lags probed until it serves, an unreachable access point
`unreachable` at once, a rerun that probes again without resending, and the canary against a stuck edge."""

from __future__ import annotations

import csv
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from batchcert import emulator as emu
from batchcert.emulator import pki
from batchcert.errors import ExitCode
from batchcert.runner import RunnerConfig
from batchcert.workflow import RerunRequest, rerun_run
from tests.conftest import ThreadedEmulator, run_against, write_mapping
from tests.worlds import migration_world

QUICK = RunnerConfig(backoff_initial_s=0.05, backoff_jitter_s=0.02, backoff_max_s=0.2, listener_task_s=0.05)


def leaf_sha256(server: ThreadedEmulator, certificate_id: str) -> str:
    """The SHA-256 of the leaf DescribeCertificateDetail answers for `certificate_id`."""
    assert server.emulator is not None
    certificate = server.emulator.world.certificates[certificate_id]
    content = pki.certificate_content(certificate_id, certificate, server.emulator.epoch)
    leaf = x509.load_pem_x509_certificates(content.encode())[0]
    return hashlib.sha256(leaf.public_bytes(Encoding.DER)).hexdigest()


def report_of(run_dir: Path) -> dict[str, dict[str, str]]:
    lines = csv.DictReader((run_dir / "report.csv").read_text("utf-8-sig").splitlines())
    return {line["domain"]: line for line in lines}


def estate(domains: int = 3, **domain_fields: Any) -> tuple[dict[str, Any], list[tuple[str, str, str]]]:
    """One listener with `domains` domains moving cert-old → cert-new; `domain_fields` set on the first domain."""
    data, rows = migration_world({"listener-e1": domains}, task_seconds=0.05, latency_ms=1, edge=True)
    first = rows[0][1]
    data["listeners"]["listener-e1"]["domains"][first].update(domain_fields)
    return data, rows


def test_every_changed_domain_is_served_with_the_targets_leaf(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path, credentials_env: None
) -> None:
    data, rows = estate()
    world = emu.World.from_dict(data)
    server = threaded_emulator(world)
    summary = run_against(server, write_mapping(tmp_path / "m.csv", rows), tmp_path / "run", runner=QUICK)
    assert summary.exit_code == ExitCode.OK
    report = report_of(tmp_path / "run")
    want = leaf_sha256(server, "cert-new")
    assert {d: (r["served"], r["served_certificate_sha256"]) for d, r in report.items()} == {
        d: ("true", want) for _, d, _ in rows
    }
    assert all(r["served_not_after"] and r["served_subject"] for r in report.values())
    served = json.loads((tmp_path / "run" / "summary.json").read_text("utf-8"))["served"]
    assert (served["true"], served["false"], served["unreachable"]) == (3, 0, 0)


def test_a_domain_whose_edge_never_changes_is_not_served_exits_1_and_a_rerun_probes_it_again(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path, credentials_env: None
) -> None:
    data, rows = estate(edge_stuck=True)
    world = emu.World.from_dict(data)
    server = threaded_emulator(world)
    run_dir = tmp_path / "run"
    quick = replace(QUICK, probe_wait_s=0.5)
    summary = run_against(server, write_mapping(tmp_path / "m.csv", rows), run_dir, runner=quick)
    assert summary.exit_code == ExitCode.ROWS_NOT_DONE
    report = report_of(run_dir)
    stuck = rows[0][1]
    assert report[stuck]["outcome"] == "succeeded" and report[stuck]["served"] == "false"
    assert report[stuck]["served_certificate_sha256"] == leaf_sha256(server, "cert-old")
    assert {report[d]["served"] for _, d, _ in rows[1:]} == {"true"}
    markdown = (run_dir / "summary.md").read_text("utf-8")
    assert "still served another certificate" in markdown and stuck in markdown
    writes = len(server.emulator.ledger) if server.emulator else 0
    # the edge is fixed: the rerun probes the row again and sends nothing
    world.listeners["listener-e1"].domains[stuck].edge_stuck = False
    again = rerun_run(RerunRequest(run_dir=run_dir, runner=quick, settings=replace_endpoint(server)))
    assert again.exit_code == ExitCode.OK
    assert report_of(run_dir)[stuck]["served"] == "true"
    assert server.emulator is not None and len(server.emulator.ledger) == writes


def replace_endpoint(server: ThreadedEmulator) -> Any:
    from batchcert.settings import SettingFlags

    return SettingFlags(endpoint=server.base_url)


def test_an_edge_that_lags_is_probed_until_it_serves(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path, credentials_env: None
) -> None:
    data, rows = estate(domains=1, edge_lag_s=2.5)
    server = threaded_emulator(emu.World.from_dict(data))
    started = time.monotonic()
    summary = run_against(server, write_mapping(tmp_path / "m.csv", rows), tmp_path / "run", runner=QUICK)
    assert summary.exit_code == ExitCode.OK and report_of(tmp_path / "run")[rows[0][1]]["served"] == "true"
    assert time.monotonic() - started >= 2.5  # it waited for the edge, not a fixed sleep: and not 120 s either


def test_without_an_edge_every_domain_is_unreachable_at_once_and_the_run_succeeds(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path, credentials_env: None
) -> None:
    data, rows = estate()
    data["edge"] = False
    server = threaded_emulator(emu.World.from_dict(data))
    started = time.monotonic()
    summary = run_against(server, write_mapping(tmp_path / "m.csv", rows), tmp_path / "run", runner=QUICK)
    assert summary.exit_code == ExitCode.OK and time.monotonic() - started < 30
    assert {r["served"] for r in report_of(tmp_path / "run").values()} == {"unreachable"}


def test_no_probe_leaves_served_empty(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path, credentials_env: None
) -> None:
    data, rows = estate()
    server = threaded_emulator(emu.World.from_dict(data))
    run_against(server, write_mapping(tmp_path / "m.csv", rows), tmp_path / "run", runner=replace(QUICK, probe=False))
    assert {r["served"] for r in report_of(tmp_path / "run").values()} == {""}


def test_a_canary_against_an_edge_that_never_changes_stops_after_it(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path, credentials_env: None
) -> None:
    data, rows = migration_world({f"listener-k{i}": 1 for i in range(8)}, task_seconds=0.05, latency_ms=1, edge=True)
    for spec in data["listeners"].values():
        for domain in spec["domains"].values():
            domain["edge_stuck"] = True
    server = threaded_emulator(emu.World.from_dict(data))
    run_dir = tmp_path / "run"
    quick = replace(QUICK, canary=3, probe_wait_s=0.3)
    summary = run_against(server, write_mapping(tmp_path / "m.csv", rows), run_dir, runner=quick)
    assert summary.exit_code == ExitCode.ROWS_NOT_DONE
    assert server.emulator is not None and len(server.emulator.ledger) <= 3
    outcomes = [r["outcome"] for r in report_of(run_dir).values()]
    assert outcomes.count("not_attempted") == 5
    assert "canary of 3" in (run_dir / "summary.md").read_text("utf-8")
