"""The command line's small promises: every flag the README shows is real, -v works after the command, plan's
count line adds up, the exit codes are one table, inventory's "Next:" line reads the same estate."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from batchcert.cli import plan_count_line
from batchcert.errors import ExitCode
from batchcert.live.state import PLAN_ACTIONS, PlanAction
from tests.conftest import write_mapping
from tests.worlds import migration_world

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = ("validate", "run", "plan", "rerun", "report", "inventory", "emulator")
_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z-]*")


def batchcert(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENCENTCLOUD_")}
    return subprocess.run(
        [sys.executable, "-m", "batchcert", *args],
        capture_output=True,
        text=True,
        env={**env, "COLUMNS": "200"},
        cwd=cwd,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def readme_flags() -> dict[str, set[str]]:
    """Every `--flag` the README shows for a command: in the Usage block (with its continuation lines), in code
    blocks (`batchcert CMD …`, with `\\` continuations) and in inline code spans."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    found: dict[str, set[str]] = {c: set() for c in COMMANDS}
    command = ""
    in_block = False
    for line in text.splitlines():
        if line.startswith("```"):
            in_block, command = not in_block, ""
            continue
        if in_block:
            head = re.match(r"\s*(?:#\s*)?batchcert (\w+)", line)
            if head and head.group(1) in COMMANDS:
                command = head.group(1)
            elif not (command and (line.startswith(" ") or line.startswith("\t"))):
                command = ""
            if command:
                found[command] |= set(_FLAG.findall(line.split("#")[0] if "batchcert" not in line else line))
            continue
        for span in re.findall(r"`batchcert (\w+)([^`]*)`", line):
            if span[0] in COMMANDS:
                found[span[0]] |= set(_FLAG.findall(span[1]))
    return found


def test_the_readme_shows_flags_for_every_command() -> None:
    """The parser itself finds what it should (else the next test would pass on nothing)."""
    flags = readme_flags()
    assert {"--min-validity-days", "--ignore-column", "--no-preflight"} <= flags["run"]
    assert {"--min-validity-days", "--include-terminal"} <= flags["rerun"]
    assert {"--min-validity-days", "--ignore-column"} <= flags["plan"]
    assert "--replace" in flags["inventory"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_flag_the_readme_shows_is_in_the_commands_help(command: str) -> None:
    shown = batchcert(command, "--help")
    assert shown.returncode == 0, shown.stderr
    missing = {flag for flag in readme_flags()[command] if flag not in shown.stdout}
    assert not missing, f"README shows {sorted(missing)} for `batchcert {command}`, its --help does not"


def test_verbose_works_after_the_command_too(tmp_path: Path) -> None:
    """-v before or after the command turns the decision log on (a denied listener is logged), and without it the
    log stays off."""
    data, rows = migration_world({"listener-aaaa0001": ["a.example.com"]}, task_seconds=0.05, latency_ms=1)
    data["listeners"]["listener-aaaa0001"]["denied_actions"] = ["ModifyCertificate"]
    world = tmp_path / "world.json"
    world.write_text(json.dumps(data), encoding="utf-8")
    mapping = write_mapping(tmp_path / "m.csv", rows)
    logged = "batchcert.runner: listener listener-aaaa0001 is denied"
    for n, flags in enumerate((["-v", "run"], ["run", "-v"], ["run"])):
        args = [*flags, str(mapping), "--world", str(world), "--yes", "--out", str(tmp_path / f"run{n}")]
        done = batchcert(*args)
        assert done.returncode == 1, (args, done.stderr)
        assert (logged in done.stderr) is (len(flags) == 2), (args, done.stderr)


def test_changes_pending_is_not_the_could_not_start_code() -> None:
    """A script must tell `plan`'s "changes pending" from a usage error: every exit code is distinct."""
    codes = [code.value for code in ExitCode]
    assert len(codes) == len(set(codes))
    assert ExitCode.CHANGES_PENDING not in (ExitCode.CANNOT_START, ExitCode.ROWS_NOT_DONE, ExitCode.OK)


def test_plan_count_line_accounts_for_every_row() -> None:
    counts = dict.fromkeys(PLAN_ACTIONS, 0)
    counts |= {PlanAction(a): n for a, n in (("change", 3), ("changing", 1), ("unchanged", 2), ("refused", 1))}
    counts |= {PlanAction(a): n for a, n in (("mismatch", 2), ("invalid", 1), ("unknown", 1), ("not_found", 1))}
    counts |= {PlanAction.WRONG_PROXY: 1}
    line = plan_count_line(counts, sum(counts.values()), duplicates=2)
    numbers = [int(n) for n in re.findall(r"(\d+) (?!row)", line.split(" — ")[0])]
    assert sum(numbers) == sum(counts.values()) == 13
    assert "4 to change" in line and "1 refused" in line and "2 moved since the file was made" in line
    assert "13 row(s), 2 of them identical duplicates" in line


def test_plan_exits_4_for_changes_and_counts_duplicates_and_refusals(tmp_path: Path) -> None:
    data, _ = migration_world({"listener-aaaa0001": ["a.example.com", "b.example.com"]}, latency_ms=1)
    world = tmp_path / "world.json"
    world.write_text(json.dumps(data), encoding="utf-8")
    rows = [
        ("listener-aaaa0001", "a.example.com", "cert-new"),
        ("listener-aaaa0001", "a.example.com", "cert-new"),  # identical duplicate
        ("listener-aaaa0001", "b.example.com", "cert-new"),
    ]
    planned = batchcert(
        "plan", str(write_mapping(tmp_path / "m.csv", rows)), "--world", str(world), "--out", str(tmp_path / "p")
    )
    assert planned.returncode == ExitCode.CHANGES_PENDING, planned.stderr
    assert "3 to change, 0 unchanged — 3 row(s), 1 of them identical duplicates" in planned.stdout
    refused = [*rows, ("listener-aaaa0001", "c.example.com", "cert-missing")]
    planned = batchcert(
        "plan", str(write_mapping(tmp_path / "r.csv", refused)), "--world", str(world), "--out", str(tmp_path / "q")
    )
    assert planned.returncode == ExitCode.ROWS_NOT_DONE
    assert "1 refused by the certificate pre-flight" in planned.stdout and "— 4 row(s)" in planned.stdout


def test_inventory_next_line_reads_the_same_estate(tmp_path: Path) -> None:
    """The commands inventory suggests next keep its --world (a rehearsal) — never silently the live endpoint."""
    world = ROOT / "inputs" / "rotation-world.json"
    done = batchcert(
        "inventory", "--world", str(world), "--out", str(tmp_path / "inv"), "--replace", "cert-wild2025=cert-wild2026"
    )
    assert done.returncode == 0, done.stderr
    next_line = next(line for line in done.stdout.splitlines() if line.startswith("Next:"))
    assert next_line.count(f"--world {world}") == 2, next_line
