"""Instructions per row of a whole `batchcert run`, counted by valgrind's callgrind: the shape of the bench's
30,000-row run (a third of the rows on three listeners, the rest one per listener; a fast emulator process;
--no-probe), smaller. Unlike CPU time, which this shared VM moves by a third from one hour to the next (README,
"Performance"), the count repeats within about 1%, so two trees can be compared in a few runs each — runs that sent
as many requests (a retry costs instructions too; a machine loaded enough to time requests out makes retries).

    python -m tests.instructions [ROWS [TREE]]

ROWS defaults to 1,300; TREE (default: this checkout) is the batchcert source tree to count — a worktree of an older
release, say. Needs valgrind on PATH. Slow: about 80 ms of wall clock a row, 40 s of start-up. Prints the
instructions of a one-row run (start-up, reports of one row) and, per row beyond it, of a ROWS-row run, with the
requests that run sent.
"""

from __future__ import annotations

import compileall
import contextlib
import json
import re
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.bench import fast_world


def instructions_of_run(tree: Path, rows: int, workdir: Path) -> tuple[int, int]:
    """The instructions (callgrind's `Collected`) one `batchcert run` of `rows` rows from `tree` executes, and the
    requests it sent (a retry costs instructions too: compare runs that sent as many)."""
    with fast_world(workdir, rows, f"mapping-{rows}.csv") as (emulator, path, run_env):
        env = {**run_env, "PYTHONPATH": str(tree)}
        batchcert = [sys.executable, "-m", "batchcert"]
        help_text = subprocess.run([*batchcert, "run", "--help"], cwd=tree, env=env, capture_output=True, text=True)
        # releases before the probe have no --no-probe; --force: a count of another tree may run beside this one on
        # the same listener names (README, "Two operators")
        flags = [flag for flag in ("--no-probe", "--force") if flag in help_text.stdout]
        log, out = workdir / f"callgrind-{rows}.log", workdir / f"run-{rows}"
        run = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--callgrind-out-file=/dev/null",
                f"--log-file={log}",
                *batchcert,
                "run",
                str(path),
                "--endpoint",
                emulator.url,
                "--rate",
                "10000",
                "--timeout",  # a request valgrind slows 50-fold must not time out
                "60",
                *flags,
                "--yes",
                "--out",
                str(out),
            ],
            cwd=tree,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
        summary = out / "summary.json"
        succeeded = json.loads(summary.read_text())["counts"]["succeeded"] if summary.is_file() else 0
        if succeeded != rows:
            raise SystemExit(f"{tree}: {succeeded} of {rows} rows succeeded; nothing to count:\n{run.stderr[-2000:]}")
        found = re.search(r"Collected : (\d+)", log.read_text())
        if found is None:
            raise SystemExit(f"no instruction count in {log}")
        with contextlib.closing(sqlite3.connect(out / "journal.sqlite3")) as db:
            requests = int(db.execute("SELECT COUNT(*) FROM attempts").fetchone()[0])
        return int(found.group(1)), requests


def main() -> int:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1300
    tree = Path(sys.argv[2]).resolve() if len(sys.argv) > 2 else Path(__file__).resolve().parent.parent
    # bytecode as an installed batchcert has it: compiling the sources is not the run's work
    compileall.compile_dir(tree / "batchcert", quiet=1)
    with tempfile.TemporaryDirectory(prefix="batchcert-instructions-") as workdir:
        one, _ = instructions_of_run(tree, 1, Path(workdir))
        many, requests = instructions_of_run(tree, rows, Path(workdir))
    print(
        f"{tree}: a one-row run {one / 1e9:.3f} G instructions; {(many - one) / (rows - 1) / 1e6:.3f} M a row beyond "
        f"({requests} requests for {rows} rows)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
