"""Listener rows on a stopped connection (issue 22, point 3): ModifyHTTPSListenerAttribute answers
`FailedOperation.InstanceStatusNotInRuning`, which closes the listener like a stopped proxy — at most three writes per
listener, the rest of its rows not sent, all `retryable` with the reason — and the healthy rows go on."""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from batchcert import emulator as emu
from tests.conftest import ThreadedEmulator, run_against, write_mapping
from tests.worlds import QUICK_TASKS, SECRET_ID, SECRET_KEY


def world() -> dict[str, Any]:
    """Four listeners on a stopped proxy, two on a running one; each with its own certificate and two domains. This
    file's own: `migration_world` puts every listener on a running proxy of its own."""
    listeners: dict[str, Any] = {}
    for i in range(6):
        proxy = "link-stop0001" if i < 4 else "link-good0001"
        listeners[f"listener-l{i:07d}"] = {
            "proxy_id": proxy,
            "certificate_id": "cert-old",
            "domains": {f"d{j}-{i}.example.com": {"certificate_id": "cert-old"} for j in range(2)},
        }
    return {
        "credentials": {SECRET_ID: SECRET_KEY},
        "task_seconds": 0.05,
        "latency_ms": 5,
        "proxies": {
            "link-stop0001": {"status": "STOPPED", "version": "3.0"},
            "link-good0001": {"status": "RUNNING", "version": "3.0"},
        },
        "listeners": listeners,
        "certificates": {
            "cert-old": {"type": 2, "domains": ["*.example.com"]},
            "cert-new": {"type": 2, "domains": ["*.example.com"]},
        },
    }


@pytest.mark.usefixtures("credentials_env")
def test_listener_rows_on_a_stopped_proxy_cost_at_most_three_writes_each(
    tmp_path: Path, threaded_emulator: Callable[..., ThreadedEmulator]
) -> None:
    data = world()
    server = threaded_emulator(emu.World.from_dict(data))
    rows = []
    for lid, spec in data["listeners"].items():
        rows.append(("listener", lid, "", "cert-new"))  # the listener's own certificate first
        rows += [("domain", lid, domain, "cert-new") for domain in spec["domains"]]
    mapping = write_mapping(tmp_path / "m.csv", rows, ("Scope", "ListenerId", "Domain", "CertificateId"))
    run_dir = tmp_path / "run"
    run_against(server, mapping, run_dir, runner=QUICK_TASKS)
    assert server.emulator is not None
    stats = server.emulator.stats
    assert stats["FailedOperation.InstanceStatusNotInRuning"] >= 1
    with (run_dir / "report.csv").open(encoding="utf-8-sig", newline="") as fh:
        report = list(csv.DictReader(fh))
    stopped = [r for r in report if r["listener_id"] < "listener-l0000004"]
    healthy = [r for r in report if r["listener_id"] >= "listener-l0000004"]
    writes = Counter(r["listener_id"] for r in stopped for _ in range(int(r["attempts"])))
    assert writes and max(writes.values()) <= 3
    assert {r["outcome"] for r in stopped} == {"retryable"}
    assert all("not running" in r["error_message"] for r in stopped)
    assert {r["outcome"] for r in healthy} == {"succeeded"}
    applied = Counter(entry.listener_id for entry in server.emulator.ledger)
    assert set(applied) == {"listener-l0000004", "listener-l0000005"}
