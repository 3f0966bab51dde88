"""A journal that can prove what it holds: a run directory copied without its -wal, a damaged -wal or an empty
journal is refused (exit 2, saying what to bring back) and left byte-identical; a finished run's journal.sqlite3 is
complete on its own; a run directory that cannot be written is the user's error (exit 2 naming the path)."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import sqlite3
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from batchcert.cli import app
from batchcert.journal import MARKER_NAME, WAL_NAME
from batchcert.journal import db as journal_db
from batchcert.settings import SettingFlags
from tests.conftest import ThreadedEmulator, run_against, write_mapping
from tests.test_rerun import cli, cli_env, wait_for_attempts
from tests.worlds import batch_world


def fingerprint(directory: Path) -> dict[str, str]:
    """Every file in `directory` by name, with its sha256."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir()) if p.is_file()}


def kill_a_run(server: ThreadedEmulator, rows: list[tuple[str, str, str]], tmp_path: Path, after: int) -> Path:
    """Run `rows` in a batchcert process and kill it (-9) after `after` changes: its records live in the -wal."""
    run_dir = tmp_path / "run"
    command = ["run", str(write_mapping(tmp_path / "m.csv", rows)), "--endpoint", server.base_url]
    with cli(*command, "--out", str(run_dir), env=cli_env(tmp_path)) as proc:
        wait_for_attempts(run_dir, after)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    server.settle()  # the requests it had sent are applied (or not) before a test counts the ledger
    assert (run_dir / WAL_NAME).stat().st_size > 0 and (run_dir / MARKER_NAME).is_file()
    return run_dir


@pytest.fixture
def killed_run(threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path) -> Path:
    """A run directory whose process was killed (-9) mid-run."""
    world, rows = batch_world(30, latency_ms=60)
    return kill_a_run(threaded_emulator(world), rows, tmp_path, 8)


def copy_run(run_dir: Path, to: Path, *, wal: bool) -> Path:
    to.mkdir()
    for path in run_dir.iterdir():
        if path.is_file() and (wal or path.name != WAL_NAME) and not path.name.endswith("-shm"):
            shutil.copyfile(path, to / path.name)
    return to


def refused(run_dir: Path, env_home: Path, *expected: str) -> None:
    """`report` and `rerun` both exit 2 with every `expected` text, and change no file of `run_dir`."""
    before = fingerprint(run_dir)
    runner = CliRunner()
    for args in (["report", str(run_dir)], ["rerun", str(run_dir), "--yes"]):
        result = runner.invoke(app, args, env={"HOME": str(env_home)})
        assert result.exit_code == 2, result.output
        assert isinstance(result.exception, SystemExit)
        for text in expected:
            assert text in result.output, result.output
    assert fingerprint(run_dir) == before


def test_copied_without_its_wal_is_damaged_not_empty(killed_run: Path, tmp_path: Path) -> None:
    copy = copy_run(killed_run, tmp_path / "copy", wal=False)
    refused(copy, tmp_path, "damaged", "bring back", WAL_NAME, "Nothing in")


def test_a_damaged_wal_is_refused_and_kept(killed_run: Path, tmp_path: Path) -> None:
    copy = copy_run(killed_run, tmp_path / "copy", wal=True)
    wal = copy / WAL_NAME
    data = bytearray(wal.read_bytes())
    data[:32] = b"\xff" * 32  # the WAL header: SQLite would ignore, then reset, every record behind it
    wal.write_bytes(bytes(data))
    refused(copy, tmp_path, "damaged", WAL_NAME)


def test_an_empty_journal_is_refused(killed_run: Path, tmp_path: Path) -> None:
    copy = copy_run(killed_run, tmp_path / "copy", wal=False)
    (copy / "journal.sqlite3").write_bytes(b"")
    refused(copy, tmp_path, "damaged", "is empty")


def test_the_whole_killed_directory_reports_without_being_changed(killed_run: Path, tmp_path: Path) -> None:
    """`report` reads a copy: the killed run's in-flight rows show as interrupted, and no file in the run directory
    changes — the journal is settled only by `rerun`."""
    before = fingerprint(killed_run)
    result = CliRunner().invoke(app, ["report", str(killed_run), "--out", str(tmp_path / "elsewhere")])
    assert result.exit_code == 0, result.output
    assert fingerprint(killed_run) == before
    assert (tmp_path / "elsewhere" / "report.csv").is_file()


@pytest.mark.usefixtures("credentials_env")
def test_a_finished_run_journal_is_complete_on_its_own(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path
) -> None:
    """After a run, journal.sqlite3 holds everything (the -wal is folded in): copied alone it reports the same."""
    world, rows = batch_world(5)
    server = threaded_emulator(world)
    run_dir = tmp_path / "run"
    run_against(server, write_mapping(tmp_path / "m.csv", rows), run_dir)
    copy = copy_run(run_dir, tmp_path / "copy", wal=False)
    (copy / "report.csv").unlink()
    result = CliRunner().invoke(app, ["report", str(copy)])
    assert result.exit_code == 0, result.output
    assert (copy / "report.csv").read_text(encoding="utf-8-sig") == (run_dir / "report.csv").read_text(
        encoding="utf-8-sig"
    )


def test_a_full_disk_during_the_run_is_the_users_error(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The journal cannot grow (a full disk): exit 2 naming the run directory and the cause, no traceback."""
    connect = journal_db.connect

    def small(path: Path) -> sqlite3.Connection:
        db = connect(path)
        db.execute("PRAGMA max_page_count = 12")  # a disk that fills up a few records into the run
        return db

    monkeypatch.setattr(journal_db, "connect", small)
    world, rows = batch_world(60)
    server = threaded_emulator(world)
    mapping = write_mapping(tmp_path / "m.csv", rows)
    result = CliRunner().invoke(
        app,
        ["run", str(mapping), "--endpoint", server.base_url, "--yes", "--out", str(tmp_path / "run")],
        env={"HOME": str(tmp_path), "TENCENTCLOUD_SECRET_ID": "x", "TENCENTCLOUD_SECRET_KEY": "y"},
    )
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert "cannot write the journal in" in result.output and "full" in result.output


@pytest.mark.usefixtures("credentials_env")
def test_reports_that_cannot_be_written_name_the_path(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run directory that refuses new files (read-only): `report` exits 2 naming it and `--out`; with `--out`
    elsewhere it works."""
    world, rows = batch_world(3)
    server = threaded_emulator(world)
    run_dir = tmp_path / "run"
    run_against(server, write_mapping(tmp_path / "m.csv", rows), run_dir)
    import tempfile

    real_mkstemp = tempfile.mkstemp

    def read_only(
        suffix: str | None = None,
        prefix: str | None = None,
        dir: str | os.PathLike[str] | None = None,
        text: bool = False,
    ) -> tuple[int, str]:
        if dir is not None and str(dir) == str(run_dir):
            raise OSError(30, "Read-only file system", str(run_dir))
        return real_mkstemp(suffix, prefix, dir, text)

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    result = CliRunner().invoke(app, ["report", str(run_dir)])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    assert str(run_dir) in result.output and "Read-only file system" in result.output and "--out" in result.output
    elsewhere = CliRunner().invoke(app, ["report", str(run_dir), "--out", str(tmp_path / "out")])
    assert elsewhere.exit_code == 0 and (tmp_path / "out" / "summary.md").is_file()


# --- signals and paths ---------------------------------------------------------------------------------------------


def test_an_early_interrupt_or_sigterm_exits_130_without_a_traceback(tmp_path: Path) -> None:
    """Ctrl-C while the command line is still loading, and SIGTERM before anything is sent, both end with exit 130
    and one line — never a traceback, never death by signal."""
    import os
    import subprocess
    import sys
    import time

    mapping = write_mapping(tmp_path / "m.csv", [("listener-aaaa0001", "www.example.com", "cert-new")])
    interrupted = 0
    for sig, delay_s in ((signal.SIGINT, 0.3), (signal.SIGTERM, 0.4), (signal.SIGTERM, 0.8)):
        proc = subprocess.Popen(
            [sys.executable, "-m", "batchcert", "run", str(mapping), "--emulator"],
            stdin=subprocess.PIPE,  # not a terminal, no --yes: the run would go ahead
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "HOME": str(tmp_path)},
            cwd=tmp_path,
        )
        time.sleep(delay_s)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
        if proc.returncode == 0:
            continue  # the rehearsal finished before the signal came: nothing to prove this round
        assert proc.returncode == 130, (sig, delay_s, proc.returncode, err)
        assert "Traceback" not in err and "interrupted" in (out + err)
        interrupted += 1
    assert interrupted >= 2


@pytest.mark.usefixtures("credentials_env")
def test_a_run_directory_with_a_space_gets_a_command_that_works_pasted(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path
) -> None:
    """The printed rerun command quotes the run directory: pasted verbatim into a shell, it runs."""
    import os
    import subprocess
    import sys

    world, rows = batch_world(2, faults={"probabilities": {"InternalError": 1.0}})
    server = threaded_emulator(world)
    run_dir = tmp_path / "my runs" / "run 1"
    mapping = write_mapping(tmp_path / "m.csv", rows)
    result = CliRunner().invoke(
        app,
        ["run", str(mapping), "--endpoint", server.base_url, "--yes", "--out", str(run_dir), "--max-attempts", "1"],
        env={"HOME": str(tmp_path)},
    )
    line = next(x for x in result.output.splitlines() if x.startswith("To continue: "))
    command = line.removeprefix("To continue: ")
    assert "'" in command
    bin_dir = Path(sys.executable).parent
    pasted = subprocess.run(
        ["bash", "-c", f"{command} --yes --max-attempts 1"],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path)},
        timeout=120,
        check=False,
    )
    assert pasted.returncode == 1, pasted.stderr  # it ran: the rows still meet InternalError
    assert "Rows:" in pasted.stdout


@pytest.mark.usefixtures("credentials_env")
def test_a_truncated_wal_never_turns_this_runs_changes_into_unchanged(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path
) -> None:
    """The -wal of a killed run loses its tail (40% cut off, mid-record): `report` does not call any row this run
    changed `unchanged`, and after `rerun` every one of them is `succeeded` (confirmed by reading it back), applied
    once, and covered by rollback.csv — also rows whose every journal record was in the lost tail (their intents
    are restored from intents.jsonl, written and fsynced before each request left)."""
    import csv
    import sqlite3 as sql

    from batchcert.journal import INTENTS_NAME
    from batchcert.workflow import RerunRequest, rerun_run

    # the killed run goes at the default 20/s; the emulator allows 100/s so that the rerun need not (its pace is not
    # what this is about)
    world, rows = batch_world(60, latency_ms=40, rate_limit=100)
    server = threaded_emulator(world)
    run_dir = kill_a_run(server, rows, tmp_path, 40)
    wal = run_dir / WAL_NAME
    wal.write_bytes(wal.read_bytes()[: int(wal.stat().st_size * 0.6)])
    assert server.emulator is not None
    applied = Counter((e.listener_id, e.domain) for e in server.emulator.ledger)
    assert (run_dir / INTENTS_NAME).is_file()
    db = sql.connect(copy_run(run_dir, tmp_path / "survivors", wal=True) / "journal.sqlite3")
    journalled = {
        n for (n,) in db.execute("SELECT DISTINCT row_number FROM attempts WHERE action = 'ModifyCertificate'")
    }
    db.close()
    domains = {(r[0], r[1]): n for n, r in enumerate(rows, start=2)}
    assert {domains[k] for k in applied} - journalled  # the cut took every record of some applied rows

    def report_of(directory: Path) -> dict[tuple[str, str], dict[str, str]]:
        with (directory / "report.csv").open(encoding="utf-8-sig") as fh:
            return {(r["listener_id"], r["domain"]): r for r in csv.DictReader(fh)}

    assert CliRunner().invoke(app, ["report", str(run_dir), "--out", str(tmp_path / "read")]).exit_code == 0
    before_rerun = report_of(tmp_path / "read")
    assert all(before_rerun[k]["outcome"] != "unchanged" for k in applied)
    rerun_run(RerunRequest(run_dir=run_dir, settings=SettingFlags(rate_per_s=100)))
    report = report_of(run_dir)
    wrong = {
        k: (report[k]["outcome"], report[k]["error_message"]) for k in applied if report[k]["outcome"] != "succeeded"
    }
    assert not wrong
    assert all(n == 1 for n in Counter((e.listener_id, e.domain) for e in server.emulator.ledger).values())
    with (run_dir / "rollback.csv").open(encoding="utf-8-sig") as fh:
        rolled = {(r["ListenerId"], r["Domain"]) for r in csv.DictReader(fh)}
    assert set(applied) <= rolled
    assert f"restored from {INTENTS_NAME}" in (run_dir / "summary.md").read_text(encoding="utf-8")
