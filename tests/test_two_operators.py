"""Two operators, an old run directory, a dropped terminal (issue 26): never twice, never a false word.

- two `run`s of one mapping on one machine: the second refuses, naming the first (batchcert.claims);
- with --force or from another machine: a busy listener this run did not cause is read before anything is resent,
  and a row someone else brought to its target is `unchanged`, never this run's success;
- a journal without run.json and -wal: refused, never "nothing was sent"; `rerun --reread` rebuilds from the live
  state;
- the journal's schema version is read; a missing mapping is said; temp files of a killed write are removed.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from tencentcloud.common import credential
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.gaap.v20180529 import gaap_client, models
from typer.testing import CliRunner

from batchcert import emulator as emu
from batchcert.claims import ClaimError, claim_places, place_digests
from batchcert.cli import app
from batchcert.journal import JOURNAL_NAME, MARKER_NAME, SCHEMA_VERSION, WAL_NAME, create_journal, open_journal
from batchcert.live.state import CONFIRMED_BY_READ_BACK
from batchcert.mapping import read_mapping
from batchcert.model import Basis, Outcome, SessionKind, SessionStatus
from batchcert.runner import CHANGED_MEANWHILE_MESSAGE, REREAD_MESSAGE
from tests.conftest import ThreadedEmulator, run_against, write_mapping
from tests.test_journal_safety import fingerprint, kill_a_run
from tests.test_rerun import cli, cli_env, wait_for_attempts
from tests.worlds import QUICK_RETRIES, SECRET_ID, SECRET_KEY, batch_world, migration_world

L1 = "listener-aaaa0001"


def report_rows(run_dir: Path) -> dict[str, dict[str, str]]:
    with (run_dir / "report.csv").open(encoding="utf-8-sig", newline="") as fh:
        return {line["row"]: line for line in csv.DictReader(fh)}


def ledger(server: ThreadedEmulator) -> Counter[tuple[str, str]]:
    assert server.emulator is not None
    return Counter((entry.listener_id, entry.domain) for entry in server.emulator.ledger)


# ---------------------------------------------------------------------------------------------- 1. one machine
def test_a_second_run_of_the_same_changes_is_refused_naming_the_first(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path
) -> None:
    """Two `run`s of one mapping by one user (different --out): the second exits 2 naming the first run (directory,
    pid), creates nothing and sends nothing; the first applies every row exactly once."""
    world, rows = batch_world(0, hot=10)
    rows = rows[:-2]
    server = threaded_emulator(world)
    mapping, first_dir, second_dir = write_mapping(tmp_path / "m.csv", rows), tmp_path / "a", tmp_path / "b"
    env = cli_env(tmp_path)
    with cli("run", str(mapping), "--endpoint", server.base_url, "--out", str(first_dir), env=env) as first:
        wait_for_attempts(first_dir, 2)
        second = subprocess.run(
            [sys.executable, "-m", "batchcert", "run", str(mapping), "--endpoint", server.base_url, "--out",
             str(second_dir)],
            capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=60,
        )  # fmt: skip
        out, err = first.communicate(timeout=120)
    assert second.returncode == 2, second.stderr
    assert str(first_dir.resolve()) in second.stderr and f"pid {first.pid}" in second.stderr
    assert "--force" in second.stderr
    assert not second_dir.exists()
    assert first.returncode == 0, out + err
    assert ledger(server) == Counter({(lid, d): 1 for lid, d, _ in rows})


def test_claims_overlap_force_and_stale_claims(tmp_path: Path) -> None:
    """A live claim refuses an overlapping one (naming it), not a disjoint one; --force passes; a claim whose
    process is gone (its lock free) is removed; a claim ends with its block."""
    a = place_digests([(L1, "a.example.com"), (L1, "b.example.com")])
    b = place_digests([(L1, "B.example.com")])  # case-insensitive: the same place
    elsewhere = place_digests([(L1, "c.example.com"), ("listener-bbbb0001", "a.example.com")])
    with claim_places(tmp_path / "run-a", a):
        with pytest.raises(ClaimError, match=r"run-a.*pid \d+.*--force"), claim_places(tmp_path / "run-b", b):
            pass
        with claim_places(tmp_path / "run-c", elsewhere):  # other places: no conflict
            pass
        with claim_places(tmp_path / "run-d", b, force=True):
            pass
    with claim_places(tmp_path / "run-b", b):  # the first run ended: free
        pass
    folder = Path(os.environ["BATCHCERT_STATE_DIR"]) / "claims"
    stale = folder / "dead.json"
    stale.write_text(json.dumps({"run_dir": "gone", "pid": 1, "places": sorted(b)}), encoding="utf-8")
    with claim_places(tmp_path / "run-e", b):
        assert not stale.exists()


# ---------------------------------------------------------------------------------------------- 2. two machines
def change_with_the_sdk(server: ThreadedEmulator, domain: str, certificate_id: str) -> None:
    """Another operator's change of `domain` (the official SDK, as another tool would send it)."""
    profile = ClientProfile(httpProfile=HttpProfile(protocol="http", endpoint=server.base_url.split("://")[1]))
    client = gaap_client.GaapClient(credential.Credential(SECRET_ID, SECRET_KEY), "", profile)
    request = models.ModifyCertificateRequest()
    request.ListenerId, request.Domain, request.CertificateId = L1, domain, certificate_id
    client.ModifyCertificate(request)


@pytest.mark.usefixtures("credentials_env")
def test_a_busy_listener_this_run_did_not_cause_is_read_before_anything_is_resent(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path
) -> None:
    """Someone else changes x (a 1 s task) just before this run sends x and y, unread (--no-preflight, as if the
    two read the listener at the same moment): x is refused as busy, read, found at its target — `unchanged`,
    "changed by someone else", not sent again; y, refused as busy too, is read, found at its old certificate and
    applied once the task is over. The ledger: x once (theirs), y once (ours)."""
    data, _ = migration_world({L1: ["x.example.com", "y.example.com"]}, task_seconds=1.0, latency_ms=5)
    server = threaded_emulator(emu.World.from_dict(data))
    change_with_the_sdk(server, "x.example.com", "cert-new")
    rows = [(L1, "x.example.com", "cert-new"), (L1, "y.example.com", "cert-new")]
    run_dir = tmp_path / "run"
    summary = run_against(
        server,
        write_mapping(tmp_path / "m.csv", rows),
        run_dir,
        runner=replace(QUICK_RETRIES, preflight=False),
        force=True,
    )
    assert ledger(server) == Counter({(L1, "x.example.com"): 1, (L1, "y.example.com"): 1})
    lines = report_rows(run_dir)
    assert lines["2"]["outcome"] == "unchanged" and lines["2"]["error_message"] == CHANGED_MEANWHILE_MESSAGE
    assert lines["2"]["attempts"] == "1"  # the busy answer; nothing after the read
    assert lines["3"]["outcome"] == "succeeded"
    assert summary.exit_code == 0
    rollback = (run_dir / "rollback.csv").read_text(encoding="utf-8-sig")
    assert "x.example.com" not in rollback and "y.example.com" in rollback  # never undoes someone else's change


# ---------------------------------------------------------------------------------------------- 3. old journals
def invoke(*args: str, home: Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env={"HOME": str(home)})
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, result.output


def test_a_journal_copied_alone_after_30_changes_is_never_nothing_was_sent(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path
) -> None:
    """A run killed after 30 changes, journal.sqlite3 copied alone (no run.json, no -wal): `report` and `rerun`
    exit 2, never say nothing was sent, change no file and send nothing."""
    world, rows = batch_world(60, latency_ms=20)
    server = threaded_emulator(world)
    run_dir = kill_a_run(server, rows, tmp_path, 30)
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copyfile(run_dir / JOURNAL_NAME, alone / JOURNAL_NAME)
    applied = sum(ledger(server).values())
    before = fingerprint(alone)
    for args in (("report", str(alone)), ("rerun", str(alone), "--yes")):
        code, output = invoke(*args, home=tmp_path)
        assert code == 2, output
        assert "nothing was sent" not in output and "damaged" in output and WAL_NAME in output
    assert fingerprint(alone) == before
    assert sum(ledger(server).values()) == applied


@pytest.mark.usefixtures("credentials_env")
def test_an_unproven_journal_is_refused_and_reread_rebuilds_it(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path
) -> None:
    """A journal whose records were folded in but whose run.json and -wal are gone (an earlier batchcert's run
    directory) is refused with the --reread advice; `rerun --reread` reads every row not done before sending it:
    every row applied exactly once in all, and the summary says the journal was rebuilt."""
    world, rows = batch_world(16, latency_ms=20)
    server = threaded_emulator(world)
    run_dir = kill_a_run(server, rows, tmp_path, 8)
    db = sqlite3.connect(run_dir / JOURNAL_NAME)
    try:  # lose the records of five applied changes, as a journal copied without its -wal does
        lost = [n for (n,) in db.execute("SELECT row_number FROM rows WHERE outcome = 'succeeded' LIMIT 5")]
        assert len(lost) == 5
        marks = ",".join("?" * len(lost))
        db.execute(f"DELETE FROM attempts WHERE row_number IN ({marks})", lost)  # noqa: S608 - placeholders only
        db.execute(f"UPDATE rows SET outcome = 'not_attempted' WHERE row_number IN ({marks})", lost)  # noqa: S608
        db.commit()
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # all in the main file, as an older batchcert left it
    finally:
        db.close()
    (run_dir / WAL_NAME).unlink(missing_ok=True)
    (run_dir / f"{JOURNAL_NAME}-shm").unlink(missing_ok=True)
    (run_dir / MARKER_NAME).unlink()
    code, output = invoke("rerun", str(run_dir), "--yes", home=tmp_path)
    assert code == 2 and "--reread" in output, output
    code, output = invoke("rerun", str(run_dir), "--yes", "--reread", home=tmp_path)
    assert code == 1, output  # the world's two terminal rows
    assert set(ledger(server).values()) == {1}
    assert len(ledger(server)) == len(rows) - 2
    assert "--reread" in (run_dir / "summary.md").read_text(encoding="utf-8")
    lines = report_rows(run_dir)
    assert {line["outcome"] for line in lines.values()} == {"succeeded", "terminal"}
    # found at their target, not sent again, and said so: whether this run put them there is not known
    assert {lines[str(n)]["error_message"] for n in lost} == {REREAD_MESSAGE}
    code, output = invoke("report", str(run_dir), home=tmp_path)  # whole again: run.json written by the rerun
    assert code == 0, output
    assert "--reread" in (run_dir / "summary.md").read_text(encoding="utf-8")


def small_journal(tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    mapping = write_mapping(tmp_path / "m.csv", [(L1, "a.example.com", "cert-new")])
    journal = create_journal(run_dir, {"mapping": str(mapping)})
    with journal:
        journal.record_mapping(read_mapping(mapping))
        journal.begin_session(SessionKind.RUN, {})
        journal.end_session(SessionStatus.FINISHED)
    return run_dir


def test_a_journal_of_a_newer_batchcert_is_refused_naming_both_versions(tmp_path: Path) -> None:
    run_dir = small_journal(tmp_path)
    with sqlite3.connect(run_dir / JOURNAL_NAME) as db:
        db.execute("UPDATE facts SET value = '99' WHERE key = 'schema_version'")
    before = fingerprint(run_dir)
    for args in (("report", str(run_dir)), ("rerun", str(run_dir), "--yes")):
        code, output = invoke(*args, home=tmp_path)
        assert code == 2 and "schema version 99" in output and f"schema version {SCHEMA_VERSION}" in output, output
    assert fingerprint(run_dir) == before


def test_a_journal_of_schema_1_is_brought_up_to_date(tmp_path: Path) -> None:
    """A journal as the first release wrote it (no rows.expected, no sessions' operator) opens, gains the columns
    and the current schema version, and keeps its rows."""
    run_dir = small_journal(tmp_path)
    with sqlite3.connect(run_dir / JOURNAL_NAME) as db:
        db.execute("ALTER TABLE rows DROP COLUMN expected")
        db.execute("ALTER TABLE sessions DROP COLUMN operator")
        db.execute("ALTER TABLE sessions DROP COLUMN secret_id_masked")
        db.execute("UPDATE facts SET value = '1' WHERE key = 'schema_version'")
    with open_journal(run_dir) as journal:
        assert journal.facts()["schema_version"] == SCHEMA_VERSION == "5"
        assert [row.domain for row in journal.rows()] == ["a.example.com"]
        assert journal.rows()[0].expected is None
        assert journal.sessions()[0]["operator"] == ""


def test_a_journal_of_schema_4_gains_the_rows_profile_and_the_session_accounts(tmp_path: Path) -> None:
    """Schema 5 stores each row's profile and the accounts each session signed for: a journal written before it
    opens with every row of the default credentials ("") and its sessions without accounts, and `report` reads it."""
    run_dir = small_journal(tmp_path)
    with sqlite3.connect(run_dir / JOURNAL_NAME) as db:
        db.execute("ALTER TABLE rows DROP COLUMN profile")
        db.execute("DROP TABLE session_accounts")
        db.execute("UPDATE facts SET value = '4' WHERE key = 'schema_version'")
    code, output = invoke("report", str(run_dir), home=tmp_path)
    assert code == 0, output
    with open_journal(run_dir) as journal:
        assert journal.facts()["schema_version"] == SCHEMA_VERSION
        assert [row.profile for row in journal.rows()] == [""]
        assert journal.sessions()[0]["accounts"] == []
        assert journal.unverified_listeners("") == journal.unverified_listeners()


def test_a_journal_of_schema_2_keeps_its_rows_confirmed_by_read_back(tmp_path: Path) -> None:
    """Schema 2 knew a row confirmed by read-back only by its message; schema 3 stores it (`rows.basis`): the
    migration carries it over, in the journal `rerun` opens and in the copy `report` reads, and the summary still
    counts the row."""
    run_dir = small_journal(tmp_path)
    with sqlite3.connect(run_dir / JOURNAL_NAME) as db:
        db.execute("ALTER TABLE rows DROP COLUMN basis")
        db.execute("UPDATE rows SET outcome = 'succeeded', error_message = ?", (CONFIRMED_BY_READ_BACK,))
        db.execute("UPDATE facts SET value = '2' WHERE key = 'schema_version'")
    code, output = invoke("report", str(run_dir), home=tmp_path)
    assert code == 0, output
    summary = json.loads((run_dir / "summary.json").read_text("utf-8"))
    assert summary["journal_lost_records"] == [2], summary
    with open_journal(run_dir) as journal:
        assert journal.facts()["schema_version"] == SCHEMA_VERSION
        assert journal.outcome_records(next(journal.row_ranges(10)))["basis"] == [Basis.READ_BACK]


def test_a_rerun_says_its_mapping_is_gone_and_uses_the_journals_rows(tmp_path: Path) -> None:
    data, rows = migration_world({L1: ["a.example.com"]}, task_seconds=0.05, latency_ms=1)
    data["faults"] = {"domains": {"a.example.com": [{"kind": "code", "code": "ResourceUnavailable", "times": 1}]}}
    world = tmp_path / "world.json"
    world.write_text(json.dumps(data), encoding="utf-8")
    mapping, run_dir = write_mapping(tmp_path / "m.csv", rows), tmp_path / "run"
    code, output = invoke(
        "run", str(mapping), "--world", str(world), "--out", str(run_dir), "--max-attempts", "1", home=tmp_path
    )
    assert code == 1, output
    mapping.unlink()
    code, output = invoke("rerun", str(run_dir), "--yes", home=tmp_path)
    assert code == 0, output
    assert "is no longer there" in output
    assert report_rows(run_dir)["2"]["outcome"] == Outcome.SUCCEEDED
    with open_journal(run_dir) as journal:
        assert "is no longer there" in journal.facts()["mapping_changed"]


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temp_files_of_a_killed_write_are_removed_by_the_next_report(tmp_path: Path) -> None:
    """A report write killed between its temp file and the rename leaves `.failed.csv.<pid>.<random>`: the next
    `report` removes it (its process is gone), and an earlier batchcert's pid-less one once it is old — never a
    temp file of a write still going on."""
    run_dir = small_journal(tmp_path)
    killed = run_dir / f".failed.csv.{dead_pid()}.abcd1234"
    killed_numbered = run_dir / f".failed-2.csv.{dead_pid()}.abcd1234"
    old_style = run_dir / ".summary.md.k2j3h4g5"
    going_on = run_dir / f".report.xlsx.{os.getpid()}.zzzz9999"
    backup = run_dir / ".failed.csv.bak"  # the user's, whatever its age
    marker_write = run_dir / ".run.json.q1w2e3r4"  # a killed run's marker write (nobody holds the run now)
    for path in (killed, killed_numbered, old_style, going_on, backup, marker_write):
        path.write_text("half", encoding="utf-8")
    long_ago = time.time() - 3600
    os.utime(old_style, (long_ago, long_ago))
    os.utime(backup, (long_ago, long_ago))
    code, output = invoke("report", str(run_dir), home=tmp_path)
    assert code == 0, output
    assert not killed.exists() and not killed_numbered.exists() and not old_style.exists()
    assert not marker_write.exists()
    assert going_on.exists() and backup.exists()
    assert (run_dir / "failed.csv").is_file()


def test_a_rerun_of_a_copied_run_directory_warns_that_the_original_must_not_be_rerun(tmp_path: Path) -> None:
    """A run directory records where it was made; rerun at another path (a copy), it says so before sending."""
    data, rows = migration_world({L1: ["a.example.com"]}, task_seconds=0.05, latency_ms=1)
    data["faults"] = {"domains": {"a.example.com": [{"kind": "code", "code": "ResourceUnavailable", "times": 1}]}}
    world = tmp_path / "world.json"
    world.write_text(json.dumps(data), encoding="utf-8")
    run_dir = tmp_path / "run"
    code, output = invoke(
        "run", str(write_mapping(tmp_path / "m.csv", rows)), "--world", str(world), "--out", str(run_dir),
        "--max-attempts", "1", home=tmp_path,
    )  # fmt: skip
    assert code == 1, output
    code, output = invoke("rerun", str(run_dir), "--yes", home=tmp_path)
    assert "is rerun at" not in output  # where it was made: no warning
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    code, output = invoke("rerun", str(copy), "--yes", home=tmp_path)
    assert code == 0, output
    assert f"made at {run_dir.resolve()}" in output and f"rerun at {copy.resolve()}" in output
