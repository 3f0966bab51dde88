"""Hostile networks, secrets, TLS and spreadsheet safety (issue "Hardening")."""

from __future__ import annotations

import csv
import os
import ssl
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import trustme

from batchcert import emulator as emu
from batchcert.api.client import create_session
from batchcert.mapping import read_mapping
from batchcert.settings import SettingFlags, parse_endpoint
from batchcert.workflow import RunRequest, run_mapping
from tests.conftest import ThreadedEmulator, run_against, write_mapping
from tests.worlds import QUICK_RETRIES, SECRET_ID, SECRET_KEY, migration_world, one_row_listeners

ROOT = Path(__file__).resolve().parent.parent
#: a fast world: neither the limit nor the listener tasks are what these tests are about
FAST_WORLD: dict[str, Any] = {"rate_limit": 100, "task_seconds": 0.05, "latency_ms": 2}


@pytest.mark.usefixtures("credentials_env")
def test_combined_network_faults_lose_nothing(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path
) -> None:
    """120 rows through ~10% each of InternalError, 502, reset, hang and apply-then-hang, a throttling storm and a
    server clock 10 minutes ahead: every row ends succeeded, each change applied exactly once, nothing lost."""
    faults = {
        "seed": 5,
        "hang_seconds": 1.0,
        "storms": [[1.0, 1.0]],
        "probabilities": {"InternalError": 0.1, "http502": 0.1, "reset": 0.1, "hang": 0.1, "apply_then_hang": 0.1},
    }
    data, rows = migration_world(one_row_listeners(120, "n"), **FAST_WORLD, faults=faults, clock_offset_s=600)
    server = threaded_emulator(emu.World.from_dict(data))
    # about half the answers fail: the retry budget's floor raised from its 5/s to 20/s for them
    config = replace(QUICK_RETRIES, retry_budget_min_per_s=20)
    summary = run_mapping(
        RunRequest(
            mapping=write_mapping(tmp_path / "m.csv", rows),
            out=tmp_path / "run",
            settings=SettingFlags(endpoint=server.base_url, rate_per_s=100, timeout_s=0.5, max_attempts=15),
            runner=config,
        )
    )
    report = list(csv.DictReader((tmp_path / "run" / "report.csv").read_text(encoding="utf-8-sig").splitlines()))
    assert len(report) == 120
    assert Counter(r["outcome"] for r in report) == Counter({"succeeded": 120}), summary.stop_reason
    assert all(r["verified"] == "true" for r in report)
    assert server.emulator is not None
    assert Counter((e.listener_id, e.domain) for e in server.emulator.ledger) == Counter(
        {(lid, d): 1 for lid, d, _ in rows}
    )
    stats = server.emulator.stats
    assert stats["AuthFailure.SignatureExpire"] >= 1 and stats["RequestLimitExceeded"] >= 1
    assert stats["InternalError"] > 0 and stats["fault:502"] > 0 and stats["fault:abort"] > 0
    assert any("verified after an ambiguous response" in r["error_message"] for r in report)


def test_secret_key_never_leaves_the_process(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path
) -> None:
    """A recognizable key appears in no output, log, journal or report — in a good run, a failed run and a rerun;
    the full SecretId never appears either (only its masked form); a world-readable credential file warns."""
    canary_key = "CANARY-SECRET-7f3a9e21d4"
    canary_id = "AKIDcanary00000000000000000000000042"
    server = threaded_emulator(
        emu.World.from_dict(
            {
                "credentials": {canary_id: canary_key},
                "rate_limit": 100,
                "task_seconds": 0,
                "latency_ms": 1,
                "listeners": {
                    "listener-aaaa0001": {
                        "certificate_id": "cert-old",
                        "domains": {"a.example.com": {"certificate_id": "cert-old"}},
                    }
                },
                "certificates": {"cert-old": {"type": 2, "domains": ["*.example.com"]}},
            }
        )
    )
    home = tmp_path / "home"
    (home / ".tencentcloud").mkdir(parents=True)
    ini = home / ".tencentcloud" / "credentials"
    ini.write_text(f"[ops]\nsecret_id = {canary_id}\nsecret_key = {canary_key}\n")
    ini.chmod(0o644)
    mapping = write_mapping(
        tmp_path / "m.csv",
        [("listener-aaaa0001", "a.example.com", "cert-old"), ("listener-aaaa0001", "b.example.com", "cert-missing")],
    )
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TENCENTCLOUD_")}, "HOME": str(home)}
    outputs = []
    for args in (
        [
            "run",
            str(mapping),
            "--profile",
            "ops",
            "--endpoint",
            server.base_url,
            "--out",
            str(tmp_path / "run"),
            "--yes",
        ],
        ["rerun", str(tmp_path / "run"), "--profile", "ops", "--include-terminal", "--yes"],
        ["report", str(tmp_path / "run")],
    ):
        result = subprocess.run(
            [sys.executable, "-m", "batchcert", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=120,
            check=False,
        )
        outputs.append(result.stdout + result.stderr)
    wrong = subprocess.run(
        [
            sys.executable,
            "-m",
            "batchcert",
            "run",
            str(mapping),
            "--endpoint",
            server.base_url,
            "--out",
            str(tmp_path / "wrong"),
            "--yes",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
        env={**env, "TENCENTCLOUD_SECRET_ID": canary_id, "TENCENTCLOUD_SECRET_KEY": canary_key + "x"},
    )
    outputs.append(wrong.stdout + wrong.stderr)
    assert "chmod 600" in outputs[0]
    assert "AKID" + "*" * 28 + "0042" in (tmp_path / "run" / "summary.md").read_text()
    for text in outputs:
        assert canary_key not in text and canary_id not in text
    for path in [*(tmp_path / "run").rglob("*"), *(tmp_path / "wrong").rglob("*")]:
        if path.is_file():
            data = path.read_bytes()
            assert canary_key.encode() not in data and canary_id.encode() not in data, path


def test_tls_verification_and_ca_bundle(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An https endpoint with an untrusted certificate stops the run with advice to pass --ca-bundle; with the CA
    given, the same run succeeds. Verification is never switched off."""
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    data, rows = migration_world(one_row_listeners(5, "n"), **FAST_WORLD)
    server = threaded_emulator(emu.World.from_dict(data), ssl_context=server_context)
    assert server.base_url.startswith("https://")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("TENCENTCLOUD_SECRET_ID", SECRET_ID)
    monkeypatch.setenv("TENCENTCLOUD_SECRET_KEY", SECRET_KEY)
    mapping = write_mapping(tmp_path / "m.csv", rows)
    untrusted = run_against(server, mapping, tmp_path / "untrusted")
    assert untrusted.exit_code == 1 and "--ca-bundle" in untrusted.stop_reason
    assert server.emulator is not None and server.emulator.ledger == []
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    trusted = run_mapping(
        RunRequest(
            mapping=mapping, out=tmp_path / "trusted", settings=SettingFlags(endpoint=server.base_url, ca_bundle=bundle)
        )
    )
    assert trusted.exit_code == 0 and len(server.emulator.ledger) == 5


async def test_proxy_variables_are_honoured_for_remote_endpoints_only() -> None:
    """HTTPS_PROXY applies to real endpoints (trust_env) but never to a loopback emulator."""
    remote = create_session(parse_endpoint("https://gaap.tencentcloudapi.com"))
    local = create_session(parse_endpoint("http://127.0.0.1:8765"))
    try:
        assert remote.trust_env and not local.trust_env
    finally:
        await remote.close()
        await local.close()


@pytest.mark.usefixtures("credentials_env")
def test_report_files_neutralize_formulas_and_feed_back_as_mappings(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path
) -> None:
    """Cells starting with = + - @ tab CR are neutralized in report.csv, failed.csv and rollback.csv; failed.csv and
    rollback.csv read back as mappings with the original values."""
    dangerous = ["=cmd|' /C calc'!A0", "+1+1", "-2", "@SUM(A1)", "\tx", "\rx"]
    world = emu.World.from_dict(
        {
            "credentials": {SECRET_ID: SECRET_KEY},
            "rate_limit": 100,
            "task_seconds": 0,
            "latency_ms": 1,
            "listeners": {
                "listener-aaaa0001": {
                    "certificate_id": "cert-old",
                    "domains": {"a.example.com": {"certificate_id": '=HYPERLINK("http://evil")'}},
                }
            },
            "certificates": {"cert-new": {"type": 2, "domains": ["*.example.com"]}},
        }
    )
    server = threaded_emulator(world)
    rows = [("listener-aaaa0001", "a.example.com", "cert-new", dangerous[0])]
    rows += [("listener-aaaa0001", f"bad{i}.example.com", "", note) for i, note in enumerate(dangerous[1:])]
    mapping = write_mapping(tmp_path / "m.csv", rows, ("ListenerId", "Domain", "CertificateId", "Note"))
    run_against(server, mapping, tmp_path / "run")
    for name in ("report.csv", "failed.csv", "rollback.csv"):
        with (tmp_path / "run" / name).open(encoding="utf-8", newline="") as fh:
            cells = [cell for line in csv.reader(fh) for cell in line]
        assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in cells), name
    failed = read_mapping(tmp_path / "run" / "failed.csv")
    assert [dict(r.extra)["Note"] for r in failed.rows] == dangerous[1:]
    rollback = read_mapping(tmp_path / "run" / "rollback.csv")
    assert rollback.rows[0].certificate_id == '=HYPERLINK("http://evil")'
