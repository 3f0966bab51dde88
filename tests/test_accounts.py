"""Many accounts in one run (issue 25, point 2; README "Many accounts in one run"): a `Profile` column names each row's
credential profile; each account is sent with its own credential, at its own ceiling, with its own stop; the journal,
report, rollback, rerun and summary carry the profile of every row. The accounts are served by one emulator endpoint
that tells them apart by SecretId (`batchcert.emulator.accounts`), the profiles are sections of a credentials file."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from batchcert import emulator as emu
from batchcert.errors import CredentialsError
from batchcert.model import Outcome
from batchcert.settings import SettingFlags
from batchcert.workflow import RerunRequest, RunRequest, rerun_run, run_mapping
from tests.conftest import ThreadedEmulator, credentials_file, write_mapping
from tests.worlds import accounts_world, one_row_listeners

HEADER = ("ListenerId", "Domain", "CertificateId", "Profile")
#: each account's ceiling here: what these tests are about is which credential sends what, not the pace (the bench
#: runs the accounts at the API's 20/s)
FAST_RATE = 100


def two_accounts(rows_each: int, edge: bool = False) -> tuple[emu.Estate, list[tuple[str, str, str, str]]]:
    data, rows = accounts_world(
        {"prod": one_row_listeners(rows_each, "p"), "staging": one_row_listeners(rows_each, "s")},
        task_seconds=0.02,
        latency_ms=1,
        edge=edge,
        rate_limit=FAST_RATE,
    )
    return emu.Estate.from_dict(data), rows


def sections_of(estate: emu.Estate) -> dict[str, tuple[str, str]]:
    return {name: (c.secret_id, c.secret_key) for name in estate.accounts if (c := estate.credentials_of(name))}


def report(run_dir: Path, name: str = "report.csv") -> list[dict[str, str]]:
    with (run_dir / name).open(encoding="utf-8-sig") as fh:
        return list(csv.DictReader(fh))


def run(server: ThreadedEmulator, mapping: Path, out: Path, **request: Any) -> Any:
    flags = SettingFlags(endpoint=server.base_url, timeout_s=2, rate_per_s=FAST_RATE)
    return run_mapping(RunRequest(mapping=mapping, out=out, settings=flags, **request))


def test_each_account_is_changed_with_its_own_credential_and_the_outputs_say_which(tmp_path: Path, home: Path) -> None:
    estate, rows = two_accounts(6)
    credentials_file(home, sections_of(estate))
    mapping = write_mapping(tmp_path / "m.csv", rows, HEADER)
    with ThreadedEmulator(estate) as server:
        summary = run(server, mapping, tmp_path / "run")
        assert server.estate_emulator is not None
        ledger = server.estate_emulator.ledger
    assert summary.counts[Outcome.SUCCEEDED] == 12
    # every change applied once, in its own account, signed with that account's SecretId
    assert Counter(e.account for e in ledger) == {"prod": 6, "staging": 6}
    for entry in ledger:
        assert entry.secret_id == estate.credentials_of(entry.account).secret_id
    lines = report(tmp_path / "run")
    assert [line["profile"] for line in lines] == [r[3] for r in rows]
    assert all(line["outcome"] == "succeeded" for line in lines)
    rollback = report(tmp_path / "run", "rollback.csv")
    assert [line["Profile"] for line in rollback] == [r[3] for r in rows]
    accounts = json.loads((tmp_path / "run" / "summary.json").read_text())["accounts"]
    assert [(a["profile"], a["counts"]["succeeded"], a["all_done"]) for a in accounts] == [
        ("prod", 6, True),
        ("staging", 6, True),
    ]
    assert {a["profile"]: a["secret_id"][-4:] for a in accounts} == {
        name: estate.credentials_of(name).secret_id[-4:] for name in ("prod", "staging")
    }
    assert "## Accounts" in (tmp_path / "run" / "summary.md").read_text()
    # the workbook's Summary sheet has the same table
    import openpyxl

    book = openpyxl.load_workbook(tmp_path / "run" / "report.xlsx", read_only=True)
    cells = [tuple(line) for line in book["Summary"].iter_rows(values_only=True)]
    book.close()
    title = next(n for n, line in enumerate(cells) if line[0] == "Accounts")
    assert cells[title + 1][:3] == ("profile", "rows", "succeeded")
    assert [line[:3] for line in cells[title + 2 : title + 4]] == [("prod", 6, 6), ("staging", 6, 6)]


def test_the_rollback_of_several_accounts_restores_each_in_its_own_account(tmp_path: Path, home: Path) -> None:
    estate, rows = two_accounts(3)
    credentials_file(home, sections_of(estate))
    before = {name: json.dumps(world.to_dict()["listeners"], sort_keys=True) for name, world in estate.accounts.items()}
    mapping = write_mapping(tmp_path / "m.csv", rows, HEADER)
    with ThreadedEmulator(estate) as server:
        run(server, mapping, tmp_path / "run")
        changed = run(server, tmp_path / "run" / "rollback.csv", tmp_path / "undo")
    assert changed.counts[Outcome.SUCCEEDED] == 6
    after = {name: json.dumps(world.to_dict()["listeners"], sort_keys=True) for name, world in estate.accounts.items()}
    assert after == before


def test_a_revoked_key_stops_its_account_and_not_the_other_and_a_rerun_finishes_it(tmp_path: Path, home: Path) -> None:
    estate, rows = two_accounts(5)
    sections = sections_of(estate)
    good = sections["staging"]
    credentials_file(home, sections | {"staging": ("AKIDrevoked000000000000000000000000", "not-a-key")})
    mapping = write_mapping(tmp_path / "m.csv", rows, HEADER)
    with ThreadedEmulator(estate) as server:
        summary = run(server, mapping, tmp_path / "run")
        lines = report(tmp_path / "run")
        by_profile: dict[str, Counter[str]] = {"prod": Counter(), "staging": Counter()}
        for line in lines:
            by_profile[line["profile"]][line["outcome"]] += 1
        assert by_profile["prod"] == {"succeeded": 5}
        assert by_profile["staging"]["succeeded"] == 0
        assert set(by_profile["staging"]) <= {"retryable", "not_attempted"}
        assert "account staging" in summary.stop_reason and "prod" not in summary.stop_reason
        # the key is fixed: the rerun sends only the stopped account's rows
        credentials_file(home, sections | {"staging": good})
        again = rerun_run(RerunRequest(run_dir=tmp_path / "run"))
        assert server.estate_emulator is not None
        ledger = server.estate_emulator.ledger
    assert again.counts[Outcome.SUCCEEDED] == 10
    assert Counter(e.account for e in ledger) == {"prod": 5, "staging": 5}


def test_a_row_naming_a_profile_that_does_not_exist_is_invalid_and_the_others_are_sent(
    tmp_path: Path, home: Path
) -> None:
    estate, rows = two_accounts(2)
    credentials_file(home, {"prod": sections_of(estate)["prod"]})
    mapping = write_mapping(tmp_path / "m.csv", [r for r in rows if r[3] == "prod"] + [rows[-1]], HEADER)
    with ThreadedEmulator(estate) as server:
        run(server, mapping, tmp_path / "run")
    lines = report(tmp_path / "run")
    assert [line["outcome"] for line in lines] == ["succeeded", "succeeded", "invalid"]
    assert "no profile 'staging'" in lines[-1]["error_message"]
    assert "row 4: Profile" in lines[-1]["error_message"]


def test_rows_without_a_profile_use_the_run_profile_and_a_listener_in_two_profiles_is_refused(
    tmp_path: Path, home: Path
) -> None:
    estate, rows = two_accounts(2)
    credentials_file(home, sections_of(estate))
    # row 2 names no profile (→ --profile prod); rows 4 and 5 put one listener in two accounts
    mapped = [
        (rows[0][0], rows[0][1], rows[0][2], ""),
        rows[1],
        (rows[2][0], rows[2][1], rows[2][2], "staging"),
        ("listener-shared0001", "x.example.com", rows[0][2], "prod"),
        ("listener-shared0001", "y.example.com", rows[0][2], "staging"),
    ]
    mapping = write_mapping(tmp_path / "m.csv", mapped, ("ListenerId", "Domain", "CertificateId", "账号"))
    with ThreadedEmulator(estate) as server:
        run(server, mapping, tmp_path / "run", profile="prod")
    lines = report(tmp_path / "run")
    assert [line["profile"] for line in lines] == ["prod", "prod", "staging", "prod", "staging"]
    assert [line["outcome"] for line in lines[:3]] == ["succeeded"] * 3
    for line in lines[3:]:
        assert line["outcome"] == "invalid"
        assert "listener-shared0001 is named under more than one 账号" in line["error_message"]


def test_a_rerun_without_credentials_for_an_account_stops_before_sending(tmp_path: Path, home: Path) -> None:
    estate, rows = two_accounts(2)
    prod = sections_of(estate)["prod"]
    credentials_file(home, {"prod": prod, "staging": ("AKIDrevoked000000000000000000000000", "not-a-key")})
    mapping = write_mapping(tmp_path / "m.csv", rows, HEADER)
    with ThreadedEmulator(estate) as server:
        run(server, mapping, tmp_path / "run")
        credentials_file(home, {"prod": prod})  # the staging profile is gone
        with pytest.raises(CredentialsError, match="profile 'staging' not found"):
            rerun_run(RerunRequest(run_dir=tmp_path / "run"))
        assert server.estate_emulator is not None
        assert Counter(e.account for e in server.estate_emulator.ledger) == {"prod": 2}


def test_a_rehearsal_builds_a_world_per_account_and_its_rollback_runs_in_the_saved_worlds(tmp_path: Path) -> None:
    rows = [
        ("listener-aaaa0001", "a.example.com", "cert-aaaa0001", "prod"),
        ("listener-bbbb0001", "b.example.com", "cert-bbbb0001", "staging"),
    ]
    mapping = write_mapping(tmp_path / "m.csv", rows, HEADER)
    flags = SettingFlags(timeout_s=2)
    summary = run_mapping(RunRequest(mapping=mapping, out=tmp_path / "run", settings=flags, rehearsal=True))
    assert summary.counts[Outcome.SUCCEEDED] == 2
    saved = json.loads((tmp_path / "run" / "rehearsal-world.json").read_text())
    assert sorted(saved["accounts"]) == ["prod", "staging"]
    assert all("credentials" not in world for world in saved["accounts"].values())
    undo = run_mapping(
        RunRequest(
            mapping=tmp_path / "run" / "rollback.csv",
            out=tmp_path / "undo",
            settings=flags,
            world=tmp_path / "run" / "rehearsal-world.json",
        )
    )
    assert undo.counts[Outcome.SUCCEEDED] == 2


def test_a_profile_that_names_a_role_signs_its_rows_with_the_role_keys(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from batchcert.api import credentials as creds
    from tests.test_credentials_refresh import BASE_ID, BASE_KEY, ROLE_ARN, FakeRoleServices

    estate, rows = two_accounts(3)
    sts = FakeRoleServices(estate.accounts["staging"])  # the role's keys belong to the staging account
    monkeypatch.setattr(creds, "ENDPOINTS", sts.endpoints)
    try:
        credentials_file(home, {"prod": sections_of(estate)["prod"], "staging": (BASE_ID, BASE_KEY)})
        ini = home / ".tencentcloud" / "credentials"
        ini.write_text(
            ini.read_text().replace(
                f"secret_key = {BASE_KEY}\n",
                f"secret_key = {BASE_KEY}\nrole_arn = {ROLE_ARN}\nrole_session_name = msp\n",
            )
        )
        mapping = write_mapping(tmp_path / "m.csv", rows, HEADER)
        with ThreadedEmulator(estate) as server:
            summary = run(server, mapping, tmp_path / "run")
            assert server.estate_emulator is not None
            ledger = server.estate_emulator.ledger
    finally:
        sts.close()
    assert summary.counts[Outcome.SUCCEEDED] == 6
    minted = {secret_id for secret_id, _, _ in sts.minted}
    assert {e.secret_id for e in ledger if e.account == "staging"} <= minted
    assert {e.secret_id for e in ledger if e.account == "prod"} == {estate.credentials_of("prod").secret_id}
    assume = [body for action, body in sts.calls if action == "AssumeRole"]
    assert assume and all(b["RoleArn"] == ROLE_ARN and b["RoleSessionName"] == "msp" for b in assume)
    accounts = json.loads((tmp_path / "run" / "summary.json").read_text())["accounts"]
    assert "assumed role" in next(a for a in accounts if a["profile"] == "staging")["credentials"]


def test_a_profile_section_may_name_the_instance_role_or_oidc_without_keys(home: Path) -> None:
    from batchcert.api import credentials as creds
    from batchcert.settings import ProfileRole, find_static_credentials

    folder = home / ".tencentcloud"
    folder.mkdir(parents=True)
    (folder / "credentials").write_text("[ops]\ncam_role_name = batchcert-ops\n")
    (folder / "credentials").chmod(0o600)
    found = find_static_credentials("ops", environ={}, home=home)
    assert found is not None and found.role == ProfileRole(cam_role_name="batchcert-ops")
    provider = creds.role_provider(found, {}, creds.RoleEndpoints("http://127.0.0.1:9", "http://127.0.0.1:9/"))
    assert isinstance(provider, creds.InstanceRole)
    (folder / "credentials").write_text("[ops]\nrole_arn = qcs::cam::uin/1:roleName/x\n")
    with pytest.raises(CredentialsError, match="base keys role_arn is assumed with"):
        find_static_credentials("ops", environ={}, home=home)
    # OIDC web identity by profile settings: no keys either
    (folder / "credentials").write_text(
        "[ci]\nrole_arn = qcs::cam::uin/1:roleName/ci\nweb_identity_token_file = ~/token\nprovider_id = p\n"
        "region = ap-guangzhou\n"
    )
    found = find_static_credentials("ci", environ={}, home=home)
    assert found is not None and found.role is not None and found.role.web_identity_token_file == "~/token"
    oidc = creds.role_provider(found, {}, creds.RoleEndpoints("http://127.0.0.1:9", "http://127.0.0.1:9/"))
    assert isinstance(oidc, creds.OidcRole) and "qcs::cam::uin/1:roleName/ci" in oidc.label
    (folder / "credentials").write_text("[ci]\nrole_arn = qcs::cam::uin/1:roleName/ci\nprovider_id = p\n")
    with pytest.raises(CredentialsError, match="OIDC web identity needs web_identity_token_file, region too"):
        find_static_credentials("ci", environ={}, home=home)


def test_the_emulator_command_serves_an_account_per_profile_of_a_mapping(tmp_path: Path) -> None:
    from batchcert.model import MappingSource
    from batchcert.workflow import emulator_credentials, world_from_mapping

    rows = [
        ("listener-aaaa0001", "a.example.com", "cert-aaaa0001", "prod"),
        ("listener-bbbb0001", "b.example.com", "cert-bbbb0001", ""),
    ]
    built = world_from_mapping(MappingSource(write_mapping(tmp_path / "m.csv", rows, HEADER)))
    assert isinstance(built, emu.Estate)
    assert list(built.accounts) == ["prod", "default"]
    assert list(built.accounts["prod"].listeners) == ["listener-aaaa0001"]
    keys = emulator_credentials(built)
    assert list(keys) == ["prod", "default"] and keys["prod"][0] != keys["default"][0]
    one = world_from_mapping(MappingSource(write_mapping(tmp_path / "one.csv", [r[:3] for r in rows])))
    assert isinstance(one, emu.World) and list(emulator_credentials(one)) == [""]


def test_the_two_account_demo_mapping_rehearses_each_account(tmp_path: Path) -> None:
    """README: `batchcert run inputs/demo-accounts.csv --emulator --yes` (its column headed 账号)."""
    demo = Path(__file__).resolve().parent.parent / "inputs" / "demo-accounts.csv"
    summary = run_mapping(
        RunRequest(mapping=demo, out=tmp_path / "run", settings=SettingFlags(timeout_s=2), rehearsal=True)
    )
    assert summary.counts[Outcome.SUCCEEDED] == 6
    accounts = json.loads((tmp_path / "run" / "summary.json").read_text())["accounts"]
    assert [(a["profile"], a["counts"]["succeeded"]) for a in accounts] == [("customer-a", 3), ("customer-b", 3)]


def test_probe_reads_each_account_of_a_run_with_its_own_credential(tmp_path: Path, home: Path) -> None:
    """`batchcert probe RUN_DIR` of a run over two accounts: each place's access point is read with its row's
    profile (with one credential the other account's listeners would be missing: `unreachable`)."""
    from batchcert.workflow import ProbeRequest, probe_places

    estate, rows = two_accounts(2, edge=True)
    credentials_file(home, sections_of(estate))
    mapping = write_mapping(tmp_path / "m.csv", rows, HEADER)
    with ThreadedEmulator(estate) as server:
        summary = run(server, mapping, tmp_path / "run")
        assert summary.counts[Outcome.SUCCEEDED] == 4
        probed = probe_places(
            ProbeRequest(
                source=tmp_path / "run", out=tmp_path / "probe", settings=SettingFlags(endpoint=server.base_url)
            )
        )
    assert probed.counts == {"true": 4}, probed.counts


def test_the_estimate_of_several_accounts_is_the_longest_account_not_the_sum() -> None:
    from batchcert.model import Row
    from batchcert.runner import estimate_run_s

    prod = [Row(n, f"listener-p{n:07d}", "a.example.com", "cert-new", profile="prod") for n in range(2, 42)]
    staging = [Row(n, f"listener-s{n:07d}", "a.example.com", "cert-new", profile="staging") for n in range(42, 62)]
    assert estimate_run_s(prod + staging, 20) == estimate_run_s(prod, 20) == 4.0  # 80 reads of prod's at 20/s
    assert estimate_run_s([], 20) == 0.0
