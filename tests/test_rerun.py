"""Rerun, report, interruption and crashes: nothing resent that was done, nothing forgotten that was not."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from batchcert.errors import JournalError
from batchcert.journal import create_journal, open_journal
from batchcert.model import Outcome
from batchcert.settings import SettingFlags
from batchcert.workflow import Preview, RerunRequest, RunRequest, rerun_run, run_mapping, write_run_reports
from tests.conftest import ThreadedEmulator, read_stderr_until, run_against, write_mapping
from tests.worlds import QUICK_RETRIES, SECRET_ID, SECRET_KEY, batch_world, migration_world

ROOT = Path(__file__).resolve().parent.parent
#: the ceiling of the tests about stopping and crashing: the pace is not what they are about (a run still lasts long
#: enough to be stopped mid-way), so it is a few times the API's 20/s
FAST_RATE = 80
pytestmark = pytest.mark.usefixtures("credentials_env")


def outcomes(run_dir: Path) -> dict[str, tuple[str, str]]:
    with (run_dir / "report.csv").open(encoding="utf-8-sig") as fh:
        return {r["row"]: (r["outcome"], r["error_code"]) for r in csv.DictReader(fh)}


def cli(*args: str, env: dict[str, str], cwd: Path = ROOT) -> subprocess.Popen[str]:
    """`batchcert ARGS` as a process, its output piped, no stdin (a prompt would see end of input)."""
    return subprocess.Popen(
        [sys.executable, "-m", "batchcert", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=cwd,
    )


def wait_for_attempts(run_dir: Path, at_least: int, timeout_s: float = 60) -> None:
    """Poll the journal (read-only) until `at_least` ModifyCertificate attempts were recorded."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            # closed at once: an open connection would keep the killed run's -shm mapped in this process
            with contextlib.closing(sqlite3.connect(f"file:{run_dir / 'journal.sqlite3'}?mode=ro", uri=True)) as db:
                (n,) = db.execute("SELECT COUNT(*) FROM attempts WHERE action = 'ModifyCertificate'").fetchone()
            if n >= at_least:
                return
        except sqlite3.OperationalError:
            pass  # not created yet
        time.sleep(0.02)
    raise AssertionError(f"fewer than {at_least} attempts after {timeout_s} s")


def cli_env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "HOME": str(tmp_path),
        "TENCENTCLOUD_SECRET_ID": SECRET_ID,
        "TENCENTCLOUD_SECRET_KEY": SECRET_KEY,
    }


@pytest.mark.parametrize(
    ("stop", "code", "singles"), [(signal.SIGINT, 130, 60), (signal.SIGHUP, 129, 40)], ids=["SIGINT", "SIGHUP"]
)
def test_a_stop_signal_stops_gracefully_then_rerun_completes(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path, stop: signal.Signals, code: int, singles: int
) -> None:
    """SIGINT (or SIGHUP: an ssh session dropped) mid-run: exit 130 (129), reports written with unsent rows
    not_attempted, the exact rerun command printed; the rerun then finishes with exit 0 and every row applied
    exactly once."""
    # the stop, not the pace, is what this is about: a quicker ceiling (the rerun keeps the run's --rate)
    world, rows = batch_world(singles, rate_limit=FAST_RATE)
    rows = rows[:-2]  # a clean world: every row can succeed
    server = threaded_emulator(world)
    mapping, run_dir = write_mapping(tmp_path / "m.csv", rows), tmp_path / "run"
    env = cli_env(tmp_path)
    command = ["run", str(mapping), "--endpoint", server.base_url, "--out", str(run_dir), "--rate", str(FAST_RATE)]
    with cli(*command, env=env) as proc:
        wait_for_attempts(run_dir, singles // 6)
        proc.send_signal(stop)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert f"batchcert rerun {run_dir}" in out
    first = Counter(o for o, _ in outcomes(run_dir).values())
    assert first["not_attempted"] > 0 and first["succeeded"] >= singles // 6 and sum(first.values()) == singles
    assert (run_dir / "report.xlsx").is_file() and (run_dir / "failed.csv").is_file()
    with cli("rerun", str(run_dir), env=env) as proc:
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    assert server.emulator is not None
    assert Counter((e.listener_id, e.domain) for e in server.emulator.ledger) == Counter(
        {(lid, d): 1 for lid, d, _ in rows}
    )
    with (run_dir / "report.csv").open(encoding="utf-8-sig") as fh:
        assert {r["outcome"] for r in csv.DictReader(fh)} == {"succeeded"}


def test_kill_9_at_several_points_then_rerun_matches_an_uninterrupted_run(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path
) -> None:
    """kill -9 three times at different depths; reruns complete the run: every valid row applied, nothing applied
    twice except rows in flight at a kill, final outcomes equal to those of an uninterrupted run."""
    world, rows = batch_world(40, hot=6, latency_ms=60, rate_limit=FAST_RATE)
    # the uninterrupted reference: the same world at a higher rate limit (the pace is not what decides outcomes)
    reference = threaded_emulator(batch_world(40, hot=6, latency_ms=60, rate_limit=200)[0])
    mapping = write_mapping(tmp_path / "m.csv", rows)
    fast = SettingFlags(endpoint=reference.base_url, rate_per_s=200)
    run_mapping(RunRequest(mapping=mapping, out=tmp_path / "reference", settings=fast, runner=QUICK_RETRIES))
    expected = outcomes(tmp_path / "reference")

    server = threaded_emulator(world)
    run_dir, env = tmp_path / "run", cli_env(tmp_path)
    in_flight: set[str] = set()
    command = ["run", str(mapping), "--endpoint", server.base_url, "--out", str(run_dir), "--rate", str(FAST_RATE)]
    for kill_after in (3, 15, 30):
        with cli(*command, env=env) as proc:
            wait_for_attempts(run_dir, kill_after)
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=30)
        killed = write_run_reports(run_dir).counts  # `batchcert report` after a crash shows it settled, read-only
        assert sum(killed.values()) == len(rows) and (run_dir / "report.xlsx").is_file()
        with open_journal(run_dir) as journal:  # attempts a kill left open: this one's, or settled by a rerun
            records = journal.attempt_records()
            interrupted = {
                str(a["row_number"])
                for a in records
                if a["action"] == "ModifyCertificate"
                and (a["finished_at"] is None or a["code"] == "Transport.Interrupted")
            }
        # a kill between an intent's fsync and the journal's commit of its attempt: the intent is the only record of
        # a request that may have left (the report restores it from intents.jsonl, `journal.recovery`)
        known = {a["id"] for a in records}
        with (run_dir / "intents.jsonl").open(encoding="utf-8") as fh:
            intents = [json.loads(line) for line in fh if line.strip()]
        interrupted |= {str(i["row"]) for i in intents if i["id"] not in known and i["action"] == "ModifyCertificate"}
        assert {r for r, (o, c) in outcomes(run_dir).items() if c == "Transport.Interrupted"} <= interrupted
        in_flight |= interrupted
        command = ["rerun", str(run_dir)]
    with cli(*command, env=env) as proc:
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, out + err  # the two terminal rows
    assert outcomes(run_dir) == expected
    assert in_flight, "no kill caught a request in flight: the test proves less than it claims"
    assert server.emulator is not None
    applied = Counter((e.listener_id, e.domain) for e in server.emulator.ledger)
    by_row = {str(n): (lid, dom) for n, (lid, dom, _) in enumerate(rows, start=2)}
    for row, key in by_row.items():
        if expected[row][0] == "succeeded":
            assert 1 <= applied[key] <= (2 if row in in_flight else 1), (row, applied[key])


def test_rows_left_retryable_succeed_after_the_listener_is_freed(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path
) -> None:
    """A listener kept busy past --listener-wait leaves its rows retryable (exit 1); freed, a rerun ends exit 0."""
    world, rows = batch_world(
        3, hot=2, faults={"domains": {"h0.example.com": [{"kind": "ListenerHasTask", "seconds": -1}]}}
    )
    rows = rows[:-2]
    server = threaded_emulator(world)
    run_dir = tmp_path / "run"
    first = run_mapping(
        RunRequest(
            mapping=write_mapping(tmp_path / "m.csv", rows),
            out=run_dir,
            settings=SettingFlags(endpoint=server.base_url, max_attempts=3, listener_wait_s=2),
            runner=QUICK_RETRIES,
        )
    )
    assert first.exit_code == 1 and first.counts[Outcome.RETRYABLE] == 2
    assert {v for k, v in outcomes(run_dir).items() if v[0] == "retryable"} == {
        ("retryable", "FailedOperation.ListenerHasTask")
    }
    assert server.emulator is not None
    server.loop.call_soon_threadsafe(server.emulator.release)
    second = rerun_run(RerunRequest(run_dir=run_dir, runner=QUICK_RETRIES))
    assert second.exit_code == 0
    report = list(csv.DictReader((run_dir / "report.csv").read_text(encoding="utf-8-sig").splitlines()))
    hot = next(r for r in report if r["domain"] == "h0.example.com")
    # refused while busy (waited out by time, not counted against --max-attempts 3), then applied — across runs
    assert int(hot["attempts"]) > 3 + 1 and len(hot["request_ids"].split(";")) == int(hot["attempts"])
    assert Counter((e.listener_id, e.domain) for e in server.emulator.ledger) == Counter(
        {(lid, d): 1 for lid, d, _ in rows}
    )


def test_rerun_skips_done_rows_and_include_terminal_resends(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path
) -> None:
    """Rerun never resends succeeded or invalid rows; terminal rows only with include_terminal."""
    world, rows = batch_world(2)
    server = threaded_emulator(world)
    run_dir = tmp_path / "run"
    run_against(server, write_mapping(tmp_path / "m.csv", rows), run_dir)
    assert server.emulator is not None
    sent = server.emulator.requests["ModifyCertificate"]
    assert rerun_run(RerunRequest(run_dir=run_dir)).exit_code == 1
    assert server.emulator.requests["ModifyCertificate"] == sent  # nothing to resend
    details = server.emulator.requests["DescribeCertificateDetail"]
    rerun_run(RerunRequest(run_dir=run_dir, include_terminal=True))
    # the terminal rows are judged again, not resent blindly: the target's names are read again and still miss the
    # mismatching row's domain (refused before sending), the absent domain is settled by the pre-flight read
    assert server.emulator.requests["DescribeCertificateDetail"] > details
    assert server.emulator.requests["ModifyCertificate"] == sent


def test_changed_mapping_is_noted_and_the_journal_rows_are_used(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path
) -> None:
    """If the mapping file changed since the run, rerun says so, uses the journal's rows, and the summary notes it."""
    world, rows = batch_world(2)
    server = threaded_emulator(world)
    run_dir, mapping = tmp_path / "run", write_mapping(tmp_path / "m.csv", rows)
    run_against(server, mapping, run_dir)
    write_mapping(mapping, [("listener-new00001", "x.example.com", "cert-new")])
    seen: list[tuple[str, ...]] = []

    def confirm(preview: Preview) -> bool:
        seen.append(preview.warnings)
        return True

    rerun_run(RerunRequest(run_dir=run_dir, include_terminal=True), confirm=confirm)
    assert seen and "changed since the run" in seen[0][0]
    assert "changed since the run" in (run_dir / "summary.md").read_text()
    assert len(outcomes(run_dir)) == 4


def test_second_process_on_a_run_directory_is_refused(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path
) -> None:
    """While one process holds a run directory, a second rerun exits 2 naming the lock; `report` reads beside it
    (it never writes the journal) and says a process is working on the run."""
    world, rows = batch_world(1)
    server = threaded_emulator(world)
    run_dir = tmp_path / "run"
    run_against(server, write_mapping(tmp_path / "m.csv", rows), run_dir)
    with open_journal(run_dir):
        with cli("rerun", str(run_dir), "--yes", env=cli_env(tmp_path)) as proc:
            _, err = proc.communicate(timeout=60)
        assert proc.returncode == 2 and "another batchcert process" in err
        with cli("report", str(run_dir), env=cli_env(tmp_path)) as proc:
            _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "a batchcert process is working on this run now" in (run_dir / "summary.md").read_text()


def test_journal_cut_off_in_setup_is_refused(tmp_path: Path) -> None:
    """A journal killed before its rows were recorded is refused with advice (nothing was sent); no journal, no report."""
    half = create_journal(tmp_path / "half", {"mapping": "m.csv"})
    half.close()
    with pytest.raises(JournalError, match="cut off while the run was being set up"):
        open_journal(tmp_path / "half")
    with pytest.raises(JournalError, match=r"holds no journal\.sqlite3"):
        write_run_reports(tmp_path / "nothing")


def test_second_sigint_abandons_in_flight_requests_but_keeps_the_journal(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path
) -> None:
    """A second SIGINT stops at once although requests hang; their rows end retryable (Transport.Interrupted), exit 130."""
    world, rows = batch_world(6, faults={"hang_seconds": 60, "probabilities": {"hang": 1.0}})
    server = threaded_emulator(world)
    run_dir = tmp_path / "run"
    command = [
        "run",
        str(write_mapping(tmp_path / "m.csv", rows[:-2])),
        "--endpoint",
        server.base_url,
        "--out",
        str(run_dir),
        "--timeout",
        "50",
    ]
    with cli(*command, env=cli_env(tmp_path)) as proc:
        wait_for_attempts(run_dir, 6)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)
        assert proc.poll() is None  # the first interrupt waits for the hanging requests
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert time.monotonic() - started < 10
    assert proc.returncode == 130, err
    assert set(outcomes(run_dir).values()) == {("retryable", "Transport.Interrupted")}
    assert f"batchcert rerun {run_dir}" in out


def test_a_rehearsal_rerun_continues_in_the_world_the_rehearsal_left(tmp_path: Path) -> None:
    """A rehearsal's rerun starts from the emulator state its run left (saved in the run directory without any
    credential), so rows the run changed verify as changed — no false "live state differs" alarm."""
    import json

    from batchcert.report import REHEARSAL_WORLD_NAME

    world, _ = migration_world({"listener-aaaa0001": ["a.example.com", "b.example.com"]}, task_seconds=0.05)
    # two refusals: the run's two attempts meet both, the rerun meets what is left of the script (nothing)
    world["faults"] = {"domains": {"b.example.com": [{"kind": "code", "code": "ResourceUnavailable", "times": 2}]}}
    world_path = tmp_path / "world.json"
    world_path.write_text(json.dumps(world), encoding="utf-8")
    rows = [("listener-aaaa0001", d, "cert-new") for d in ("a.example.com", "b.example.com")]
    run_dir = tmp_path / "run"
    first = run_mapping(
        RunRequest(
            mapping=write_mapping(tmp_path / "m.csv", rows),
            out=run_dir,
            settings=SettingFlags(max_attempts=2),
            rehearsal=True,
            world=world_path,
            runner=QUICK_RETRIES,
        )
    )
    assert first.counts[Outcome.SUCCEEDED] == 1 and first.counts[Outcome.RETRYABLE] == 1
    saved = json.loads((run_dir / REHEARSAL_WORLD_NAME).read_text(encoding="utf-8"))
    assert "credentials" not in saved and SECRET_KEY not in json.dumps(saved)
    second = rerun_run(RerunRequest(run_dir=run_dir, runner=QUICK_RETRIES))
    assert second.counts[Outcome.SUCCEEDED] == 2
    assert not second.reports.live_state_differs
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    assert summary["verification"]["succeeded_but_live_state_differs"] == []


def test_ctrl_c_is_acknowledged_at_once_and_the_drain_is_bounded_by_the_timeout(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path
) -> None:
    """Ctrl-C while requests hang: within 1 s the run says it is stopping and how many requests are in flight; it
    then waits no longer than the request timeout for them (no second Ctrl-C) and exits 130 with its reports; the
    progress lines off a terminal carry a UTC timestamp, done/total, rate and ETA."""
    import re

    world, rows = batch_world(6, faults={"hang_seconds": 60, "probabilities": {"hang": 1.0}})
    server = threaded_emulator(world)
    run_dir = tmp_path / "run"
    mapping = write_mapping(tmp_path / "m.csv", rows[:-2])
    command = ["run", str(mapping), "--endpoint", server.base_url, "--out", str(run_dir), "--timeout", "3"]
    with cli(*command, env=cli_env(tmp_path)) as proc:
        wait_for_attempts(run_dir, 6)
        proc.send_signal(signal.SIGINT)
        signalled = time.monotonic()
        early, acknowledged_at = read_stderr_until(proc, lambda line: line.startswith("stopping:"), 5.0)
        acknowledgement = next((ln for ln in early.splitlines() if ln.startswith("stopping:")), "")
        assert acknowledgement.startswith("stopping: 6 request(s) in flight"), early
        assert acknowledged_at is not None and acknowledged_at - signalled < 1.0, acknowledged_at
        _out, rest = proc.communicate(timeout=30)
    err = early + rest
    assert time.monotonic() - signalled < 3 + 1 + 3  # the timeout, the bound's second, and the reports
    assert proc.returncode == 130, err
    assert (run_dir / "report.csv").is_file() and (run_dir / "summary.md").is_file()
    progress = [line for line in err.splitlines() if re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ  ", line)]
    assert progress, err
    assert re.search(r"  \d+/6 rows \(\d+\.\d%\)  \d+\.\d rows/s  ETA ", progress[-1]), progress[-1]
