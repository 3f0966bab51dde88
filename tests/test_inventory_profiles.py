"""`batchcert inventory` over several accounts (issue 25): `--profile` given more than once reads every account's
estate, each with its own credential, into one inventory.csv/xlsx with a `profile` column on every line, and with
`--replace` one mapping.csv with a `Profile` column that `batchcert run` sends line by line in its account. A profile
that does not exist stops it before anything is read or written; one profile writes exactly what it always wrote.
The accounts are a world file of several accounts (a rehearsal) or one emulator endpoint telling them apart by
SecretId (live, the profiles being sections of a credentials file)."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from typer.testing import CliRunner, Result

from batchcert import emulator as emu
from batchcert.cli import app
from batchcert.inventory import Estate, InventoryError, Replacement, plan_account_rotations
from batchcert.live.certificates import CertificateInfo
from batchcert.mapping import is_inventory, read_inventory_targets
from batchcert.model import Place, ProbeTarget
from batchcert.report import REHEARSAL_WORLD_NAME
from batchcert.workflow.rehearsal import load_accounts
from tests.conftest import ThreadedEmulator, credentials_file
from tests.worlds import accounts_world

OLD, NEW = "cert-old", "cert-new"
#: fixed ends, so the Certificates sheet's order does not hang on when each account's emulator started
END_SOON, END_OLD, END_NEW = 1861920000, 1893456000, 1924992000  # 2029-01-01, 2030-01-01, 2031-01-01 (UTC)


def two_accounts(*, denied_proxy: bool = False, edge: bool = False) -> dict[str, Any]:
    """Accounts `a` (listener-aaaa0001: x and y, and a certificate of its own, cert-aonly, ending first) and `b`
    (listener-bbbb0001: z; with `denied_proxy`, also a proxy whose listeners it may not list), every place on OLD,
    NEW in both accounts; with `edge`, each account's TLS edge serves what its places use."""
    data, _ = accounts_world(
        {"a": {"listener-aaaa0001": ["x.example.com", "y.example.com"]}, "b": {"listener-bbbb0001": ["z.example.com"]}},
        task_seconds=0.02,
        latency_ms=1,
        edge=edge,
    )
    for world in data["accounts"].values():
        world["certificates"][OLD]["end_time"] = END_OLD
        world["certificates"][NEW]["end_time"] = END_NEW
    data["accounts"]["a"]["certificates"]["cert-aonly"] = {
        "type": 2,
        "domains": ["*.example.com"],
        "end_time": END_SOON,
    }
    if denied_proxy:
        b = data["accounts"]["b"]
        b["proxies"] = {"link-bdeny": {"name": "denied", "denied_actions": ["DescribeHTTPSListeners"]}}
        b["listeners"]["listener-bdeny"] = {
            "proxy_id": "link-bdeny",
            "certificate_id": OLD,
            "domains": {"hidden.example.com": {"certificate_id": OLD}},
        }
    return data


def write_world(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def batchcert(*args: str | Path) -> Result:
    return CliRunner().invoke(app, [str(arg) for arg in args])


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def sheet(path: Path, name: str) -> list[tuple[Any, ...]]:
    book = openpyxl.load_workbook(path, read_only=True)
    try:
        return [tuple(line) for line in book[name].iter_rows(values_only=True)]
    finally:
        book.close()


def test_two_profiles_write_one_inventory_with_the_profile_of_every_line(tmp_path: Path) -> None:
    world = write_world(tmp_path / "world.json", two_accounts(denied_proxy=True))
    out = tmp_path / "inv"
    done = batchcert("inventory", "--world", world, "--profile", "a", "--profile", "b", "--out", out)
    assert done.exit_code == 1, done.output  # b's denied proxy was not searched
    assert "2 HTTPS listener(s), 3 domain(s), 5 certificate(s) in 2 accounts (a, b)" in done.output
    assert "not searched: proxy link-bdeny of profile b 'denied'" in done.output
    header, lines = read_csv(out / "inventory.csv")
    assert header[:3] == ["profile", "scope", "proxy_id"]
    # what could not be searched first (with its account), then every account's places in the order given
    assert [(ln["profile"], ln["scope"], ln["proxy_id"], ln["listener_id"], ln["domain"]) for ln in lines] == [
        ("b", "proxy", "link-bdeny", "", ""),
        ("a", "listener", "link-aaaa0001", "listener-aaaa0001", ""),
        ("a", "domain", "link-aaaa0001", "listener-aaaa0001", "x.example.com"),
        ("a", "domain", "link-aaaa0001", "listener-aaaa0001", "y.example.com"),
        ("b", "listener", "link-bbbb0001", "listener-bbbb0001", ""),
        ("b", "domain", "link-bbbb0001", "listener-bbbb0001", "z.example.com"),
    ]
    assert lines[0]["status"].startswith("UnauthorizedOperation")
    # each place joined with its own account's certificate (an id is an account's own)
    assert {ln["certificate_end_time"] for ln in lines[1:]} == {"2030-01-01T00:00:00Z"}
    inventory = sheet(out / "inventory.xlsx", "Inventory")
    assert inventory[0][:2] == ("profile", "scope")
    assert [line[0] for line in inventory[1:]] == [ln["profile"] for ln in lines]
    # every account's certificates by end, each counting the places of its own account that use it
    certificates = sheet(out / "inventory.xlsx", "Certificates")
    assert certificates[0] == (
        "profile",
        "certificate_id",
        "alias",
        "type",
        "subject_cn",
        "end_time",
        "days_to_expiry",
        "places",
    )
    assert [(line[0], line[1], line[-1]) for line in certificates[1:]] == [
        ("a", "cert-aonly", 0),
        ("a", OLD, 3),
        ("b", OLD, 2),
        ("a", NEW, 0),
        ("b", NEW, 0),
    ]


def test_the_rotation_of_two_profiles_runs_each_line_in_its_account(tmp_path: Path) -> None:
    world = write_world(tmp_path / "world.json", two_accounts())
    out = tmp_path / "inv"
    done = batchcert(
        "inventory", "--world", world, "--profile", "a", "--profile", "b", "--out", out, "--replace", f"{OLD}={NEW}"
    )
    assert done.exit_code == 0, done.output
    assert "To replace: 3 domain server certificate(s), 2 listener server certificate(s), 0 client CA list(s)" in (
        done.output
    )
    assert "— 5 mapping row(s)" in done.output
    # the mapping names each line's account: the next commands need no --profile
    next_line = next(line for line in done.output.splitlines() if line.startswith("Next:"))
    assert "--profile" not in next_line and f"--world {world}" in next_line
    header, lines = read_csv(out / "mapping.csv")
    assert header[:3] == ["Profile", "Scope", "ProxyId"]
    assert [
        (ln["Profile"], ln["ListenerId"], ln["Domain"], ln["CertificateId"], ln["NewCertificateId"]) for ln in lines
    ] == [
        ("a", "listener-aaaa0001", "", OLD, NEW),
        ("a", "listener-aaaa0001", "x.example.com", OLD, NEW),
        ("a", "listener-aaaa0001", "y.example.com", OLD, NEW),
        ("b", "listener-bbbb0001", "", OLD, NEW),
        ("b", "listener-bbbb0001", "z.example.com", OLD, NEW),
    ]
    run = batchcert("run", out / "mapping.csv", "--world", world, "--yes", "--out", tmp_path / "run")
    assert run.exit_code == 0, run.output
    _, report = read_csv(tmp_path / "run" / "report.csv")
    assert Counter((ln["profile"], ln["outcome"]) for ln in report) == {("a", "succeeded"): 3, ("b", "succeeded"): 2}
    # each account's own places moved, in its own world
    after = load_accounts(tmp_path / "run" / REHEARSAL_WORLD_NAME)
    for account, listener in (("a", "listener-aaaa0001"), ("b", "listener-bbbb0001")):
        moved = after[account].to_dict()["listeners"][listener]
        assert moved["certificate_id"] == NEW
        assert {d["certificate_id"] for d in moved["domains"].values()} == {NEW}


def test_one_profile_writes_what_an_inventory_of_one_account_writes(tmp_path: Path) -> None:
    data = two_accounts()
    several = write_world(tmp_path / "several.json", data)
    alone = write_world(tmp_path / "alone.json", data["accounts"]["a"])
    replace = ("--replace", f"{OLD}={NEW}")
    picked = batchcert("inventory", "--world", several, "--profile", "a", "--out", tmp_path / "picked", *replace)
    assert picked.exit_code == 0, picked.output
    plain = batchcert("inventory", "--world", alone, "--out", tmp_path / "plain", *replace)
    assert plain.exit_code == 0, plain.output
    for name in ("inventory.csv", "mapping.csv"):
        assert (tmp_path / "picked" / name).read_bytes() == (tmp_path / "plain" / name).read_bytes(), name
    assert read_csv(tmp_path / "picked" / "inventory.csv")[0][0] == "scope"
    assert sheet(tmp_path / "picked" / "inventory.xlsx", "Certificates")[0][0] == "certificate_id"
    assert "in 2 accounts" not in picked.output
    # one account's mapping has no Profile column: the next commands keep the profile
    assert f"--profile a, then batchcert run {tmp_path / 'picked' / 'mapping.csv'}" in picked.output
    # the same profile twice is one profile
    twice = batchcert("inventory", "--world", several, "--profile", "a", "--profile", "a", "--out", tmp_path / "twice")
    assert twice.exit_code == 0, twice.output
    assert (tmp_path / "twice" / "inventory.csv").read_bytes() == (tmp_path / "plain" / "inventory.csv").read_bytes()


def test_a_profile_the_world_file_does_not_have_stops_before_anything_is_written(tmp_path: Path) -> None:
    data = two_accounts()
    world = write_world(tmp_path / "world.json", data)
    out = tmp_path / "inv"
    done = batchcert(
        "inventory", "--world", world, "--profile", "yy", "--profile", "a", "--profile", "zz", "--out", out
    )
    assert done.exit_code == 2, done.output
    # every profile it lacks is named at once
    assert "no account 'yy'" in done.output and "no account 'zz'" in done.output
    assert "its accounts: 'a', 'b'" in done.output
    assert not out.exists()
    # a world file of one account reads one profile, not several
    alone = write_world(tmp_path / "alone.json", data["accounts"]["a"])
    done = batchcert("inventory", "--world", alone, "--profile", "a", "--profile", "b", "--out", out)
    assert done.exit_code == 2, done.output
    assert "holds one account" in done.output and "`accounts`" in done.output
    # and a world file of several accounts needs to be told which to read
    done = batchcert("inventory", "--world", world, "--out", out)
    assert done.exit_code == 2, done.output
    assert "no --profile was given" in done.output
    assert not out.exists()


def test_an_account_whose_estate_cannot_be_read_stops_the_inventory_naming_it(tmp_path: Path) -> None:
    data = two_accounts()
    data["accounts"]["b"]["denied_actions"] = ["DescribeProxies"]
    world = write_world(tmp_path / "world.json", data)
    out = tmp_path / "inv"
    done = batchcert("inventory", "--world", world, "--profile", "a", "--profile", "b", "--out", out)
    assert done.exit_code == 2, done.output
    assert "profile b: DescribeProxies answered UnauthorizedOperation" in done.output
    assert not out.exists()


def live_estate(home: Path) -> emu.Estate:
    """The two accounts behind one endpoint, and ~/.tencentcloud/credentials with a section for each (owner-only)."""
    estate = emu.Estate.from_dict(two_accounts())
    credentials_file(
        home, {name: (c.secret_id, c.secret_key) for name in estate.accounts if (c := estate.credentials_of(name))}
    )
    return estate


def test_live_profiles_are_each_read_with_their_own_credential(tmp_path: Path, home: Path) -> None:
    with ThreadedEmulator(live_estate(home)) as server:
        out = tmp_path / "inv"
        done = batchcert("inventory", "--endpoint", server.base_url, "--profile", "b", "--profile", "a", "--out", out)
    assert done.exit_code == 0, done.output
    _, lines = read_csv(out / "inventory.csv")
    # an account's credential sees its own account only: each profile's lines are that account's listeners
    assert [(ln["profile"], ln["listener_id"], ln["domain"]) for ln in lines] == [
        ("b", "listener-bbbb0001", ""),
        ("b", "listener-bbbb0001", "z.example.com"),
        ("a", "listener-aaaa0001", ""),
        ("a", "listener-aaaa0001", "x.example.com"),
        ("a", "listener-aaaa0001", "y.example.com"),
    ]


def test_a_live_profile_that_does_not_exist_stops_before_anything_is_read(tmp_path: Path, home: Path) -> None:
    with ThreadedEmulator(live_estate(home)) as server:
        out = tmp_path / "inv"
        done = batchcert("inventory", "--endpoint", server.base_url, "--profile", "a", "--profile", "zz", "--out", out)
        assert server.estate_emulator is not None
        asked = sum(server.estate_emulator.requests.values())
    assert done.exit_code == 2, done.output
    assert "no profile 'zz' in ~/.tencentcloud/credentials or ~/.tccli/zz.credential" in done.output
    assert "--profile" in done.output and "cell" not in done.output
    assert asked == 0
    assert not out.exists()


def estate_of(certificates: dict[str, int], *uses: str) -> Estate:
    """An estate whose certificates are `certificates` (id → type) and with a listener place per id in `uses`."""
    places = tuple(
        Place("listener", "link-1", "", f"listener-{n}", "", cert, (), cert, "", 443, 0, "", "RUNNING")
        for n, cert in enumerate(uses)
    )
    return Estate(places, {c: CertificateInfo(c, t, END_OLD) for c, t in certificates.items()})


def test_each_replacement_is_checked_in_the_accounts_that_hold_its_old_certificate() -> None:
    both = {"a": estate_of({OLD: 2, NEW: 2}, OLD), "b": estate_of({OLD: 2}, OLD)}
    with pytest.raises(InventoryError, match=r"profile b holds cert-old but cert-new is not among its certificates"):
        plan_account_rotations(both, [Replacement(OLD, NEW)])
    mixed = {"a": estate_of({OLD: 2, "cert-ca": 1}, OLD), "b": estate_of({"cert-ca": 1})}
    with pytest.raises(InventoryError, match=r"in profile a: cert-old is a .* certificate and cert-ca a"):
        plan_account_rotations(mixed, [Replacement(OLD, "cert-ca")])
    # an account that does not hold OLD is not asked for NEW, and gets no line
    one = {"a": estate_of({OLD: 2, NEW: 2}, OLD, NEW), "b": estate_of({"cert-b": 2}, "cert-b")}
    rotations = plan_account_rotations(one, [Replacement(OLD, NEW)])
    assert [len(r.lines) for r in rotations.values()] == [1, 0]
    assert rotations["a"].lines[0].current_certificate_id == OLD


def test_an_old_certificate_no_account_holds_is_taken_as_one_account_takes_it() -> None:
    estates = {"a": estate_of({NEW: 2}), "b": estate_of({"cert-b": 2})}
    with pytest.raises(InventoryError, match=r"cert-nowhere is not among the certificates of profiles a, b"):
        plan_account_rotations(estates, [Replacement("cert-gone", "cert-nowhere")])
    # NEW exists somewhere and no place uses OLD: nothing to change (as for one account)
    rotations = plan_account_rotations(estates, [Replacement("cert-gone", NEW)])
    assert [r.lines for r in rotations.values()] == [(), ()]
    # a place still using an OLD that is not listed changes where NEW is in its account, and nowhere else
    used = {"a": estate_of({NEW: 2}, "cert-gone"), "b": estate_of({"cert-b": 2}, "cert-gone")}
    with pytest.raises(InventoryError, match=r"profile b has places using cert-gone but cert-new is not among"):
        plan_account_rotations(used, [Replacement("cert-gone", NEW)])


def test_probe_reads_an_inventory_with_a_profile_column(tmp_path: Path) -> None:
    world = write_world(tmp_path / "world.json", two_accounts())
    done = batchcert("inventory", "--world", world, "--profile", "a", "--profile", "b", "--out", tmp_path / "inv")
    assert done.exit_code == 0, done.output
    path = tmp_path / "inv" / "inventory.csv"
    assert is_inventory(path)
    # each place is probed with its account's credential (its access point is read through it)
    assert read_inventory_targets(path) == [
        ProbeTarget(3, "listener-aaaa0001", "x.example.com", OLD, "a"),
        ProbeTarget(4, "listener-aaaa0001", "y.example.com", OLD, "a"),
        ProbeTarget(6, "listener-bbbb0001", "z.example.com", OLD, "b"),
    ]


def test_a_probe_rehearsal_reads_each_place_in_its_account_and_never_guesses_one(tmp_path: Path) -> None:
    """A probe's rehearsal picks each profile's world as a run's rehearsal does: the places of an inventory that
    names two profiles are read in a two-account world file, each in its own account, and refused (exit 2, nothing
    written) in a one-account file, which stands for one profile only; a mapping without a Profile column is read in
    the account --profile names, and refused without one."""
    data = two_accounts(edge=True)
    world = write_world(tmp_path / "world.json", data)
    done = batchcert("inventory", "--world", world, "--profile", "a", "--profile", "b", "--out", tmp_path / "inv")
    assert done.exit_code == 0, done.output
    inventory = tmp_path / "inv" / "inventory.csv"

    # each place's access point is read in its own account, and its edge serves what the place uses
    done = batchcert("probe", inventory, "--world", world, "--out", tmp_path / "probed")
    assert done.exit_code == 0, done.output
    _, lines = read_csv(tmp_path / "probed" / "probe.csv")
    assert {line["domain"]: line["served"] for line in lines} == {
        "x.example.com": "true",
        "y.example.com": "true",
        "z.example.com": "true",
    }

    one = write_world(tmp_path / "one.json", data["accounts"]["a"])
    done = batchcert("probe", inventory, "--world", one, "--out", tmp_path / "guessed")
    assert done.exit_code == 2, done.output
    assert "holds one account" in done.output and "`accounts`" in done.output
    assert not (tmp_path / "guessed").exists()

    mapping = tmp_path / "b.csv"
    mapping.write_text("ListenerId,Domain,CertificateId\nlistener-bbbb0001,z.example.com,cert-old\n", encoding="utf-8")
    done = batchcert("probe", mapping, "--world", world, "--out", tmp_path / "nameless")
    assert done.exit_code == 2, done.output
    assert "holds several accounts" in done.output and "--profile" in done.output
    done = batchcert("probe", mapping, "--world", world, "--profile", "b", "--out", tmp_path / "in-b")
    assert done.exit_code == 0, done.output
    _, lines = read_csv(tmp_path / "in-b" / "probe.csv")
    assert [(line["domain"], line["served"]) for line in lines] == [("z.example.com", "true")]
