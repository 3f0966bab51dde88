"""`batchcert probe MAPPING|RUN_DIR|inventory.csv` (issue 23; README "What the edge serves"): what every domain's edge
serves now against the certificate the file expects — a baseline before a change, a proof after it — written to
probe.csv; exit 1 when an edge serves another certificate. Against the emulator's TLS edge."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

from typer.testing import CliRunner

from batchcert import emulator as emu
from batchcert.cli import app
from batchcert.errors import ExitCode
from batchcert.model import Served
from batchcert.settings import SettingFlags
from batchcert.workflow import InventoryRequest, ProbeRequest, probe_places, take_inventory
from tests.conftest import ThreadedEmulator, run_against, write_mapping
from tests.worlds import migration_world


def probe_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.read_text("utf-8-sig").splitlines()))


def test_a_baseline_before_the_change_and_a_proof_after_it(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path, credentials_env: None
) -> None:
    data, rows = migration_world({"listener-p1": 2, "listener-p2": 1}, task_seconds=0.05, latency_ms=1, edge=True)
    server = threaded_emulator(emu.World.from_dict(data))
    mapping = write_mapping(tmp_path / "m.csv", rows)
    flags = SettingFlags(endpoint=server.base_url)

    before = probe_places(ProbeRequest(source=mapping, out=tmp_path / "before", settings=flags))
    assert before.exit_code == ExitCode.ROWS_NOT_DONE and before.counts == {Served.FALSE: 3}
    lines = probe_csv(before.path)
    assert [(line["row"], line["domain"], line["served"]) for line in lines] == [
        ("2", rows[0][1], "false"),
        ("3", rows[1][1], "false"),
        ("4", rows[2][1], "false"),
    ]
    assert all(len(line["served_certificate_sha256"]) == 64 and line["served_not_after"] for line in lines)

    run_against(server, mapping, tmp_path / "run")
    writes = len(server.emulator.ledger) if server.emulator else 0
    after = probe_places(ProbeRequest(source=tmp_path / "run", out=tmp_path / "after", settings=flags))
    assert after.exit_code == ExitCode.OK and after.counts == {Served.TRUE: 3}
    assert server.emulator is not None and len(server.emulator.ledger) == writes  # a probe sends no change


def test_an_inventory_is_probed_for_what_each_place_uses(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path, credentials_env: None
) -> None:
    data, _ = migration_world({"listener-i1": 2}, latency_ms=1, edge=True)
    server = threaded_emulator(emu.World.from_dict(data))
    flags = SettingFlags(endpoint=server.base_url)
    found = take_inventory(InventoryRequest(out=tmp_path / "inv", settings=flags))
    inventory = next(path for path in found.files if path.name == "inventory.csv")
    probed = probe_places(ProbeRequest(source=inventory, out=tmp_path / "probe", settings=flags))
    assert probed.exit_code == ExitCode.OK and probed.counts == {Served.TRUE: 2}
    assert {line["certificate_id"] for line in probe_csv(probed.path)} == {"cert-old"}


def test_the_command_line_says_what_is_served_and_exits_1_on_another_certificate(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path, credentials_env: None
) -> None:
    data, rows = migration_world({"listener-c1": 1}, latency_ms=1, edge=True)
    server = threaded_emulator(emu.World.from_dict(data))
    mapping = write_mapping(tmp_path / "m.csv", rows)
    done = CliRunner().invoke(app, ["probe", str(mapping), "--endpoint", server.base_url, "--out", str(tmp_path / "p")])
    assert done.exit_code == ExitCode.ROWS_NOT_DONE, done.output
    assert "Served: not probed 0, true 0, false 1, unreachable 0" in done.output
    assert (tmp_path / "p" / "probe.csv").exists()


def test_without_an_edge_every_domain_is_unreachable_and_that_is_not_a_failure(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path, credentials_env: None
) -> None:
    data, rows = migration_world({"listener-u1": 2}, latency_ms=1)
    data["edge"] = False
    server = threaded_emulator(emu.World.from_dict(data))
    flags = SettingFlags(endpoint=server.base_url)
    probed = probe_places(ProbeRequest(source=write_mapping(tmp_path / "m.csv", rows), settings=flags, out=tmp_path))
    assert probed.exit_code == ExitCode.OK and probed.counts == {Served.UNREACHABLE: 2}
    assert all(line["note"] for line in probe_csv(probed.path))
