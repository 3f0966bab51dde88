"""The change record (issue 13): summary.md, summary.json and report.xlsx carry every fact a change manager signs
off on, and each "What to do next" command, run verbatim after doing what its step says, does what it says."""

from __future__ import annotations

import concurrent.futures
import csv
import getpass
import hashlib
import json
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import openpyxl
import pytest

import batchcert
from batchcert import emulator as emu
from tests.conftest import ThreadedEmulator, read_stderr_until
from tests.test_rerun import cli, cli_env, wait_for_attempts
from tests.worlds import SECRET_ID, SECRET_KEY, migration_world

pytestmark = pytest.mark.usefixtures("credentials_env")

BOM = b"\xef\xbb\xbf"
SHEET = "迁移"
MASKED_ID = f"{SECRET_ID[:4]}{'*' * (len(SECRET_ID) - 8)}{SECRET_ID[-4:]}"  # first 4 and last 4 shown
UTC_STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z"
#: no proxy listens here: a command that would leave the machine (the live API) fails at once instead
NOWHERE = "http://127.0.0.1:9"

# (listener, domain, certificate) in mapping order; spreadsheet rows 2..8
ROWS: list[tuple[str, str, str | None]] = [
    ("listener-chg00001", "ok1.example.com", "cert-new"),  # 2 succeeded
    ("listener-chg00001", "ok2.example.com", "cert-new"),  # 3 succeeded after one transient ResourceUnavailable
    ("listener-chg00002", "same.example.com", "cert-new"),  # 4 unchanged: already at the target
    ("listener-chg00002", "retry.example.com", "cert-new"),  # 5 retryable: ResourceUnavailable outlasts 2 attempts
    ("listener-chg00003", "t.example.com", "cert-narrow"),  # 6 terminal at pre-flight: its names miss the domain
    ("listener-chg00003", "later.example.com", "cert-later"),  # 7 terminal at pre-flight: certificate not uploaded
    ("listener-chg00004", "inv.example.com", None),  # 8 invalid: empty CertificateId
]
EXPECTED = {
    "2": "succeeded",
    "3": "succeeded",
    "4": "unchanged",
    "5": "retryable",
    "6": "terminal",
    "7": "terminal",
    "8": "invalid",
}


def change_world() -> emu.World:
    """The world of ROWS, whose rows end in every outcome (no shared builder has it): same.example.com already at
    its target, a certificate that does not cover its domain, and scripted ResourceUnavailable answers: one a retry
    gets past, two that use up --max-attempts 2."""
    domains: dict[str, dict[str, Any]] = {}
    for lid, dom, _ in ROWS:
        domains.setdefault(lid, {})[dom] = {"certificate_id": "cert-new" if dom.startswith("same.") else "cert-old"}
    return emu.World.from_dict(
        {
            "credentials": {SECRET_ID: SECRET_KEY},
            "rate_limit": 200,
            "task_seconds": 0.05,
            "latency_ms": 2,
            "listeners": {lid: {"certificate_id": "cert-old", "domains": d} for lid, d in domains.items()},
            "certificates": {
                "cert-old": {"type": 2, "domains": ["*.example.com"]},
                "cert-new": {"type": 2, "domains": ["*.example.com"]},
                "cert-narrow": {"type": 2, "domains": ["narrow.example.org"]},
            },
            "faults": {
                "domains": {
                    "ok2.example.com": [{"kind": "code", "code": "ResourceUnavailable", "times": 1}],
                    # exactly --max-attempts: the run gives up on it, the fault is spent before the rerun
                    "retry.example.com": [{"kind": "code", "code": "ResourceUnavailable", "times": 2}],
                }
            },
        }
    )


def write_workbook(path: Path) -> Path:
    book = openpyxl.Workbook()
    ws = book.active
    assert ws is not None
    ws.title = SHEET
    ws.append(["ListenerId", "Domain", "CertificateId"])
    for row in ROWS:
        ws.append(list(row))
    book.save(path)
    return path


def batchcert_cmd(*args: str, env: dict[str, str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "batchcert", *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )


def printed_command(step: str) -> list[str]:
    """The command of a next step ("… run `batchcert …`"), split as a shell would, `batchcert` made runnable."""
    match = re.search(r"run `(batchcert [^`]+)`", step)
    assert match, step
    argv = shlex.split(match.group(1))
    assert argv[0] == "batchcert", argv
    return argv


def run_printed(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a printed command exactly as printed (no --yes: stdin is not a terminal, so nothing prompts)."""
    return batchcert_cmd(*argv[1:], env=env, cwd=cwd)


def report_rows(run_dir: Path) -> dict[str, dict[str, str]]:
    with (run_dir / "report.csv").open(encoding="utf-8-sig", newline="") as fh:
        return {r["row"]: r for r in csv.DictReader(fh)}


def on_loop(server: ThreadedEmulator, fn: Callable[[], Any]) -> Any:
    """Call `fn` on the emulator's own loop (its world is only touched from there) and wait for it."""
    done: concurrent.futures.Future[Any] = concurrent.futures.Future()

    def call() -> None:
        try:
            done.set_result(fn())
        except BaseException as exc:  # handed back to the test thread
            done.set_exception(exc)

    server.loop.call_soon_threadsafe(call)
    return done.result(5)


def md_table(md: str, first_header: str) -> dict[str, int]:
    """A two-column markdown table of summary.md (`| name | n |`) under the header line `| first_header | rows |`."""
    lines = md.splitlines()
    start = lines.index(f"| {first_header} | rows |")
    table: dict[str, int] = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        name, n = (cell.strip() for cell in line.strip("|").split("|"))
        table[name] = int(n)
    return table


def sheet_lines(ws: Any) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in ws.iter_rows(values_only=True)]


def assert_no_secret(directory: Path) -> None:
    for path in directory.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert SECRET_KEY.encode() not in data, f"the secret key is in {path}"
            if path.suffix in (".md", ".json", ".csv", ".xlsx"):
                assert SECRET_ID.encode() not in data, f"the unmasked SecretId is in {path}"


def check_first_run_record(run_dir: Path, mapping: Path, endpoint: str, before: float, after: float) -> list[str]:
    """Every fact of the first run in summary.md, summary.json and report.xlsx; returns the next steps (markdown)."""
    md = (run_dir / "summary.md").read_text(encoding="utf-8")
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    operator = f"{getpass.getuser()}@{socket.gethostname()}"
    sha = hashlib.sha256(mapping.read_bytes()).hexdigest()

    # title: the mapping's name and the run's UTC window, equal to summary.json's
    title = md.splitlines()[0]
    m = re.fullmatch(rf"# batchcert: {re.escape(mapping.name)}, ({UTC_STAMP}) – ({UTC_STAMP})", title)
    assert m, title
    assert (m.group(1), m.group(2)) == (summary["started_at"], summary["finished_at"])
    start, end = (datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() for s in m.groups())
    assert before - 1 <= start <= end <= after + 1, (title, before, after)
    assert "interrupted" not in md.lower() and summary["interrupted"] is False

    # who, version, mapping, settings, endpoint, masked SecretId
    assert f"- Run by {operator} with batchcert {batchcert.__version__}" in md
    assert summary["operator"] == operator and summary["batchcert_version"] == batchcert.__version__
    assert f"- Mapping: `{mapping}` (sha256 `{sha}`, sheet {SHEET})" in md
    assert summary["mapping"] == str(mapping) and summary["mapping_sha256"] == sha and summary["sheet"] == SHEET
    assert "encoding" in summary  # a workbook has no text encoding: checked on the CSV run below
    settings_line = next(line for line in md.splitlines() if line.startswith("- Settings: "))
    for fact in ("rate_per_s 50.0", "timeout_s 5.0", "max_attempts 2"):
        assert fact in settings_line, settings_line
    assert {k: summary["settings"][k] for k in ("rate_per_s", "timeout_s", "max_attempts")} == {
        "rate_per_s": 50.0,
        "timeout_s": 5.0,
        "max_attempts": 2,
    }
    assert f"- Endpoint: {endpoint}  ·  SecretId: `{MASKED_ID}`" in md
    assert summary["endpoint"] == endpoint and summary["secret_id"] == MASKED_ID

    # outcome table, final errors only, transient errors apart
    counts = {"succeeded": 2, "unchanged": 1, "retryable": 1, "terminal": 2, "invalid": 1, "not_attempted": 0}
    assert md_table(md, "outcome") == counts and summary["counts"] == counts
    # final: each row not done counted once by the code it ended with — the retryable row's last answer was
    # ResourceUnavailable (twice sent, counted once); row 3's ResourceUnavailable was got past, so it is not here
    finals = {
        "ResourceUnavailable": 1,
        "Preflight.CertificateNotMatchDomain": 1,
        "Preflight.CertificateNotFound": 1,
    }
    assert md_table(md, "error code") == finals and summary["error_codes"] == finals
    assert summary["transient_errors"] == {"ResourceUnavailable": 1}
    assert "Transient errors the run got past (retried; not in the table above): ResourceUnavailable 1" in md

    # what to do next: grouped by what to do, each with the exact command on the real run directory
    where, failed = shlex.quote(str(run_dir)), shlex.quote(str(run_dir / "failed.csv"))
    assert where != str(run_dir), "the test's run directory should need quoting"
    steps = [line[2:] for line in md.split("## What to do next", 1)[1].splitlines() if line.startswith("- ")]
    assert steps == summary["next_steps"] and len(steps) == 3, steps
    retry_step, terminal_step, invalid_step = steps
    assert retry_step.startswith("1 retryable") and f"`batchcert rerun {where}`" in retry_step
    assert terminal_step.startswith("2 terminal") and f"`batchcert rerun {where} --include-terminal`" in terminal_step
    # aimed where the run went: the endpoint is not the default one, so it is named
    assert (
        invalid_step.startswith("1 invalid") and f"`batchcert run {failed} --endpoint http://127.0.0.1:" in invalid_step
    )
    assert printed_command(retry_step) == ["batchcert", "rerun", str(run_dir)]
    assert printed_command(terminal_step) == ["batchcert", "rerun", str(run_dir), "--include-terminal"]
    assert printed_command(invalid_step)[:4] == ["batchcert", "run", str(run_dir / "failed.csv"), "--endpoint"]

    # report.xlsx
    book = openpyxl.load_workbook(run_dir / "report.xlsx")
    facts: dict[str, list[Any]] = {}
    for key, value, *_ in sheet_lines(book["Summary"]):
        facts.setdefault(key, []).append(value)
    assert facts["Run by"] == [f"{operator} with batchcert {batchcert.__version__}"]
    assert facts["Sheet"] == [SHEET] and facts["Mapping sha256"] == [sha]
    assert "rate_per_s 50.0" in facts["Settings"][0] and "max_attempts 2" in facts["Settings"][0]
    assert facts["Endpoint"] == [endpoint] and facts["SecretId"] == [MASKED_ID]
    assert facts["Next step"] == steps

    rows_ws = book["Rows"]
    header = [c.value for c in rows_ws[1]]
    assert rows_ws.freeze_panes == "A2"
    assert rows_ws.auto_filter.ref and rows_ws.auto_filter.ref.startswith("A1:"), rows_ws.auto_filter.ref
    assert rows_ws.auto_filter.ref.endswith(str(len(ROWS) + 1)), rows_ws.auto_filter.ref
    letter = openpyxl.utils.get_column_letter(header.index("listener_id") + 1)
    assert (rows_ws.column_dimensions[letter].width or 0) > 14
    verified_col, row_col = header.index("verified"), header.index("row")
    by_row = {str(r[row_col]): r for r in rows_ws.iter_rows(min_row=2, values_only=True)}
    csv_rows = report_rows(run_dir)
    assert {r: v["outcome"] for r, v in csv_rows.items()} == EXPECTED
    for n, line in csv_rows.items():
        if line["verified"] in ("true", "false"):
            assert by_row[n][verified_col] is (line["verified"] == "true"), (n, by_row[n][verified_col])
    assert by_row["2"][verified_col] is True and by_row["6"][verified_col] is None  # never sent: nothing to verify

    errors_ws = book["Errors"]
    assert errors_ws.freeze_panes == "A2" and errors_ws.auto_filter.ref, errors_ws.auto_filter.ref
    errors = sheet_lines(errors_ws)
    assert errors[0][:2] == ("kind", "row")
    kinds = [(kind, str(row), code) for kind, row, _action, _at, code, *_ in errors[1:]]
    not_done = [n for n, o in EXPECTED.items() if o not in ("succeeded", "unchanged")]
    first = kinds[: len(not_done)]
    assert all(kind.startswith("final") for kind, _, _ in first), kinds
    assert [row for _, row, _ in first] == not_done  # each row not done once, with its final error
    assert ("final", "5", "ResourceUnavailable") in first
    assert ("final (pre-flight)", "6", "Preflight.CertificateNotMatchDomain") in first
    assert ("final (pre-flight)", "7", "Preflight.CertificateNotFound") in first
    assert ("pre-flight", "4", "unchanged") in kinds
    assert ("transient", "3", "ResourceUnavailable") in kinds
    assert not any(kind == "transient" and row == "5" for kind, row, _ in kinds)  # not got past: not transient
    assert not any(kind.startswith("final") for kind, _, _ in kinds[len(not_done) :]), kinds

    for name in ("report.csv", "failed.csv", "rollback.csv"):
        assert (run_dir / name).read_bytes().startswith(BOM), name
    return steps


def test_change_record_and_each_next_step_runs_verbatim(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path
) -> None:
    """One run from a named sheet ends with every outcome; its record holds every fact; each next step, done as it
    says and its command run verbatim, brings its rows home — every valid row applied exactly once."""
    server = threaded_emulator(change_world())
    assert server.emulator is not None
    emulator = server.emulator
    mapping = write_workbook(tmp_path / "证书迁移.xlsx").resolve()
    run_dir = tmp_path.resolve() / "change record's run"
    env = cli_env(tmp_path)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    gaps: list[str] = []

    before = time.time()
    first = batchcert_cmd(
        "run",
        str(mapping),
        "--sheet",
        SHEET,
        "--endpoint",
        server.base_url,
        "--out",
        str(run_dir),
        "--yes",
        "--rate",
        "50",
        "--timeout",
        "5",
        "--max-attempts",
        "2",
        env=env,
        cwd=cwd,
    )
    after = time.time()
    assert first.returncode == 1, first.stdout + first.stderr
    steps = check_first_run_record(run_dir, mapping, server.base_url, before, after)
    assert emulator.stats["ResourceUnavailable"] == 3  # both scripted faults are spent
    retry_step, terminal_step, invalid_step = (printed_command(s) for s in steps)

    # (a) retryable: the cause has passed (the fault is exhausted) → the printed rerun brings the row home
    rerun = run_printed(retry_step, env, cwd)
    assert rerun.returncode == 1, rerun.stdout + rerun.stderr  # terminal and invalid rows remain
    rows = report_rows(run_dir)
    assert rows["5"]["outcome"] == "succeeded" and rows["5"]["verified"] == "true", rows["5"]
    assert {n: rows[n]["outcome"] for n in ("6", "7", "8")} == {"6": "terminal", "7": "terminal", "8": "invalid"}

    # (b) terminal: fix the causes in the account (the certificate covers the domain; the missing one uploaded)
    on_loop(server, lambda: emulator.world.certificates["cert-narrow"].domains.append("t.example.com"))
    on_loop(
        server,
        lambda: emulator.world.certificates.__setitem__(
            "cert-later", emu.Certificate(type=2, domains=["*.example.com"])
        ),
    )
    rerun = run_printed(terminal_step, env, cwd)
    assert rerun.returncode == 1, rerun.stdout + rerun.stderr  # the invalid row remains
    rows = report_rows(run_dir)
    assert {n: rows[n]["outcome"] for n in ("6", "7")} == {"6": "succeeded", "7": "succeeded"}, rows
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    assert summary["counts"]["invalid"] == 1 and len(summary["next_steps"]) == 1, summary["next_steps"]
    assert printed_command(summary["next_steps"][0]) == invalid_step  # the same command, still to do

    # (c) invalid: fill the empty CertificateId in failed.csv (kept UTF-8 with BOM), validate, run the printed command
    failed_csv = run_dir / "failed.csv"
    raw = failed_csv.read_bytes()
    assert raw.startswith(BOM)
    lines = list(csv.reader(raw.decode("utf-8-sig").splitlines()))
    head, body = lines[0], lines[1:]
    assert [(r[head.index("Domain")], r[head.index("CertificateId")]) for r in body] == [("inv.example.com", "")]
    body[0][head.index("CertificateId")] = "cert-new"
    with failed_csv.open("w", encoding="utf-8-sig", newline="") as fh:
        csv.writer(fh).writerows([head, *body])
    assert failed_csv.read_bytes().startswith(BOM)
    check = batchcert_cmd("validate", str(failed_csv), env=env, cwd=cwd)
    assert check.returncode == 0, check.stdout + check.stderr

    applied_before = len(emulator.ledger)
    verbatim_dir = run_verbatim_guarded(invalid_step, nowhere_env(env), cwd)
    if verbatim_dir is None or not verbatim_dir.startswith(server.base_url):
        gaps.append(
            f"the printed invalid-row command `{shlex.join(invalid_step)}` does not run verbatim: it targets "
            f"{verbatim_dir!r}, not the run's endpoint {server.base_url!r} (it needs --endpoint)"
        )
        assert len(emulator.ledger) == applied_before
        fix_dir = tmp_path / "fix run"
        fixed = batchcert_cmd(*invalid_step[1:], "--endpoint", server.base_url, "--out", str(fix_dir), env=env, cwd=cwd)
    else:
        fix_dirs = sorted((cwd / "reports").iterdir())
        assert len(fix_dirs) == 1, fix_dirs
        fix_dir = fix_dirs[0]
        fixed = subprocess.CompletedProcess([], 0, "", "")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    fix_rows = report_rows(fix_dir)
    assert [(r["domain"], r["outcome"]) for r in fix_rows.values()] == [("inv.example.com", "succeeded")]
    fix_summary = json.loads((fix_dir / "summary.json").read_text(encoding="utf-8"))
    assert fix_summary["encoding"], fix_summary  # a CSV mapping: its encoding is on the record
    assert f"encoding {fix_summary['encoding']}" in (fix_dir / "summary.md").read_text(encoding="utf-8")

    # every valid row applied exactly once over all of this; the row at its target never
    applied = Counter((e.listener_id, e.domain) for e in emulator.ledger)
    assert applied == Counter({(lid, d): 1 for lid, d, _ in ROWS if not d.startswith("same.")}), applied
    for directory in (run_dir, fix_dir):
        assert_no_secret(directory)
    assert not gaps, "\n".join(gaps)


def nowhere_env(env: dict[str, str]) -> dict[str, str]:
    """`env` with every proxy variable pointing nowhere and no proxy exemption: nothing can reach the live API."""
    names = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY")
    return {
        **env,
        **{n: NOWHERE for name in names for n in (name, name.lower())},
        "NO_PROXY": "",
        "no_proxy": "",
    }


def run_verbatim_guarded(argv: list[str], env: dict[str, str], cwd: Path) -> str | None:
    """Run a printed `batchcert run …` verbatim; returns the endpoint its confirmation names. When that endpoint is
    not loopback (the live API) the run is interrupted before it can send anything (proxies point nowhere too)."""
    with cli(*argv[1:], env=env, cwd=cwd) as proc:
        assert proc.stderr is not None
        early, _ = read_stderr_until(proc, lambda line: line.startswith("Endpoint:"), 20.0)
        named = [ln.split(":", 1)[1].strip() for ln in early.splitlines() if ln.startswith("Endpoint:")]
        endpoint = named[0] if named else None
        if endpoint is None or not endpoint.startswith("http://127.0.0.1"):
            proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    return endpoint


def test_an_interrupted_run_says_so_at_the_top(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path
) -> None:
    """SIGINT mid-run: exit 130; summary.md says "interrupted" in its first lines, summary.json `interrupted` true."""
    listeners = {f"listener-int{i:05d}": [f"d{i}-{j}.example.com" for j in range(5)] for i in range(8)}
    data, rows = migration_world(listeners, rate_limit=200)
    server = threaded_emulator(emu.World.from_dict(data))
    mapping = tmp_path / "m.csv"
    with mapping.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows([["ListenerId", "Domain", "CertificateId"], *rows])
    run_dir = tmp_path / "run"
    command = ["run", str(mapping), "--endpoint", server.base_url, "--out", str(run_dir), "--rate", "50", "--yes"]
    with cli(*command, env=cli_env(tmp_path)) as proc:
        wait_for_attempts(run_dir, 10, timeout_s=20)
        proc.send_signal(signal.SIGINT)
        out_text, err_text = proc.communicate(timeout=30)
    assert proc.returncode == 130, out_text + err_text
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    assert summary["interrupted"] is True
    assert 0 < summary["counts"]["not_attempted"] < 40, summary["counts"]
    top = (run_dir / "summary.md").read_text(encoding="utf-8").splitlines()[:5]
    assert any("interrupted" in line.lower() for line in top), top
    book = openpyxl.load_workbook(run_dir / "report.xlsx")
    assert book["Summary"]["A1"].value == "INTERRUPTED"


def test_the_invalid_rows_command_goes_where_the_run_went(tmp_path: Path) -> None:
    """A rehearsal's fix stays a rehearsal (same world, or the emulator), a run on another endpoint names it, and a
    run on the default endpoint needs nothing more."""
    from batchcert.report import failed_run_command

    run_dir = tmp_path / "a run"
    failed = shlex.quote(str(run_dir / "failed.csv"))
    world = {"rehearsal": "true", "world": "/w/my world.json"}
    assert failed_run_command(run_dir, world) == f"batchcert run {failed} --world '/w/my world.json'"
    assert failed_run_command(run_dir, {"rehearsal": "true"}) == f"batchcert run {failed} --emulator"
    intl = {"rehearsal": "false", "endpoint": "https://gaap.intl.tencentcloudapi.com"}
    assert (
        failed_run_command(run_dir, intl) == f"batchcert run {failed} --endpoint https://gaap.intl.tencentcloudapi.com"
    )
    default = {"rehearsal": "false", "endpoint": "https://gaap.tencentcloudapi.com"}
    assert failed_run_command(run_dir, default) == f"batchcert run {failed}"


def test_progress_goes_out_at_display_speed_and_always_for_the_last_row(monkeypatch: pytest.MonkeyPatch) -> None:
    """The run tells the display at most every 0.1 s (no display redraws faster), never once per row, and always
    when the last row settles; the counts it tells add up to `done`."""
    from batchcert.model import Outcome, Progress, Row
    from batchcert.workflow.progress import ProgressTracker

    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])  # the `time` module batchcert.workflow.progress calls
    told: list[Progress] = []
    rows = [Row(n, f"listener-{n}", f"d{n}.example.com", "cert-new") for n in range(2, 302)]
    tracker = ProgressTracker(rows, {}, told.append)
    for row in rows:
        now[0] += 0.001  # a row every millisecond: 300 rows in 0.3 s
        tracker.row_done(row, Outcome.SUCCEEDED)
    assert 2 <= len(told) <= 4
    assert told[-1].done == told[-1].total == 300
    assert all(sum(p.counts.values()) == p.done for p in told)
