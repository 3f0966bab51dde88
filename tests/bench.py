"""`make bench`: batchcert against the emulator at the API's limit, next to what a user would write with the SDK.

Scenarios (issue "Performance"), each against a fresh `batchcert emulator` process with latency 20–80 ms and a
0.3 s listener task:
  (a) a clean 400-row mapping over skewed listeners (a third of the rows on three listeners);
  (b) the same with 10% injected faults;
  (c) the official SDK's async client, StandardRetryer, `asyncio.gather` under a semaphore of 20, on (a);
  (d) (a) while a competing client spends half of the quota.
Then client overhead (CPU per row against a 2,000/s emulator with no latency), peak RSS validating a 100,000-row
mapping, and `batchcert --help` start-up time. Prints one table and the targets, and exits 1 if a target is missed.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import migration_world

ROOT = Path(__file__).resolve().parent.parent
BATCHCERT = [sys.executable, "-m", "batchcert"]
RATE = 20
TASK_S = 0.3
LATENCY_MS = [20, 80]
MEAN_LATENCY_S = sum(LATENCY_MS) / 2 / 1000


def skewed(rows: int = 400) -> tuple[dict[str, Any], list[tuple[str, str, str]]]:
    """A world and mapping: a third of the rows on three listeners, the rest on one listener each."""
    hot = rows // 3
    listeners: dict[str, list[str]] = {f"listener-hot{i:05d}": [] for i in range(3)}
    for i in range(hot):
        listeners[f"listener-hot{i % 3:05d}"].append(f"h{i}.example.com")
    for i in range(rows - hot):
        listeners[f"listener-one{i:05d}"] = [f"o{i}.example.com"]
    return migration_world(listeners, rate_limit=RATE, task_seconds=TASK_S, latency_ms=LATENCY_MS)


class Emulator:
    """A `batchcert emulator` subprocess serving a world file; its ledger and stats over HTTP."""

    def __init__(self, world: dict[str, Any], workdir: Path) -> None:
        path = workdir / f"world-{time.monotonic_ns()}.json"
        path.write_text(json.dumps(world))
        self.proc = subprocess.Popen(
            [*BATCHCERT, "emulator", "--port", "0", "--world", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
        )
        assert self.proc.stdout is not None
        self.url = re.search(r"listening on (\S+)", self.proc.stdout.readline()).group(1)  # type: ignore[union-attr]
        creds = re.search(r"SECRET_ID=(\S+) TENCENTCLOUD_SECRET_KEY=(\S+)", self.proc.stdout.readline())
        assert creds
        self.secret_id, self.secret_key = creds.group(1), creds.group(2)

    def get(self, what: str) -> Any:
        with urllib.request.urlopen(f"{self.url}/_emulator/{what}") as resp:  # noqa: S310 - loopback emulator
            return json.loads(resp.read())

    def close(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        self.proc.communicate(timeout=10)


@dataclass
class Result:
    name: str
    rows: int
    wall_s: float  # the whole run, verification included
    decided_s: float  # until the last row's outcome was known
    bound_s: float
    requests: int
    throttled: int
    listener_has_task: int
    applied: int
    reported_right: int

    @property
    def efficiency(self) -> float:
        """bound / time until every row's outcome is known (the post-run verification reads come after)."""
        return self.bound_s / self.decided_s if self.decided_s else 0.0


def bound_s(mapping: list[tuple[str, str, str]], rate: float) -> float:
    longest = max(Counter(lid for lid, _, _ in mapping).values())
    return max(len(mapping) / rate, longest * (TASK_S + MEAN_LATENCY_S))


def applied_rows(emulator: Emulator, mapping: list[tuple[str, str, str]]) -> set[tuple[str, str]]:
    """Rows whose domain now shows the target certificate."""
    world = emulator.get("world")["listeners"]
    return {(lid, d) for lid, d, cert in mapping if world[lid]["domains"][d]["certificate_id"] == cert}


def _result(
    name: str,
    mapping: list[tuple[str, str, str]],
    wall_s: float,
    decided_s: float,
    rate: float,
    emulator: Emulator,
    applied: int,
    reported_right: int,
) -> Result:
    """A scenario's row of the table; request counts come from the emulator's stats."""
    stats = emulator.get("stats")
    return Result(
        name,
        len(mapping),
        wall_s,
        decided_s,
        bound_s(mapping, rate),
        sum(stats.values()),
        stats.get("RequestLimitExceeded", 0),
        stats.get("FailedOperation.ListenerHasTask", 0),
        applied,
        reported_right,
    )


def run_batchcert(
    name: str,
    world: dict[str, Any],
    mapping: list[tuple[str, str, str]],
    workdir: Path,
    rate: float,
    extra: list[str] | None = None,
) -> Result:
    emulator = Emulator(world, workdir)
    try:
        mapping_path = workdir / f"{name}.csv"
        with mapping_path.open("w", newline="") as fh:
            csv.writer(fh).writerows([("ListenerId", "Domain", "CertificateId"), *mapping])
        out = workdir / f"run-{name}"
        env = {
            **os.environ,
            "TENCENTCLOUD_SECRET_ID": emulator.secret_id,
            "TENCENTCLOUD_SECRET_KEY": emulator.secret_key,
        }
        subprocess.run(
            [
                *BATCHCERT,
                "run",
                str(mapping_path),
                "--endpoint",
                emulator.url,
                "--out",
                str(out),
                "--yes",
                *(extra or []),
            ],
            env=env,
            cwd=ROOT,
            capture_output=True,
            check=False,
        )
        summary = json.loads((out / "summary.json").read_text())
        with sqlite3.connect(out / "journal.sqlite3") as db:
            started, decided = db.execute(
                "SELECT MIN(s.started_at), MAX(r.finished_at) FROM sessions s, rows r"
            ).fetchone()

        applied = applied_rows(emulator, mapping)
        with (out / "report.csv").open() as fh:
            report = {(r["listener_id"], r["domain"]): r["outcome"] for r in csv.DictReader(fh)}
        right = sum(1 for key, outcome in report.items() if (outcome == "succeeded") == (key in applied))
        return _result(name, mapping, summary["duration_s"], decided - started, rate, emulator, len(applied), right)
    finally:
        emulator.close()


def run_sdk(name: str, world: dict[str, Any], mapping: list[tuple[str, str, str]], workdir: Path) -> Result:
    """What a user would write: the SDK's async client, StandardRetryer, gather under a semaphore of 20."""
    from tencentcloud.common import credential
    from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
    from tencentcloud.common.profile.client_profile import ClientProfile
    from tencentcloud.common.profile.http_profile import HttpProfile
    from tencentcloud.common.retry_async import StandardRetryer
    from tencentcloud.gaap.v20180529 import gaap_client_async, models

    emulator = Emulator(world, workdir)
    try:
        profile = ClientProfile(
            httpProfile=HttpProfile(protocol="http", endpoint=emulator.url.removeprefix("http://")),
            retryer=StandardRetryer(),
        )
        client = gaap_client_async.GaapClient(
            credential.Credential(emulator.secret_id, emulator.secret_key), "", profile
        )
        gate = asyncio.Semaphore(20)

        async def change(lid: str, domain: str, cert: str) -> bool:
            async with gate:
                request = models.ModifyCertificateRequest()
                request.ListenerId, request.Domain, request.CertificateId = lid, domain, cert
                try:
                    await client.ModifyCertificate(request)
                    return True
                except TencentCloudSDKException:
                    return False

        async def main() -> list[bool]:
            try:
                return await asyncio.gather(*(change(*row) for row in mapping))
            finally:
                await client.close()

        started = time.monotonic()
        said = asyncio.run(main())
        wall = time.monotonic() - started
        applied = applied_rows(emulator, mapping)
        right = sum(1 for (lid, d, _), ok in zip(mapping, said, strict=True) if ok == ((lid, d) in applied))
        return _result(name, mapping, wall, wall, RATE, emulator, len(applied), right)
    finally:
        emulator.close()


def cpu_of(args: list[str], env: dict[str, str]) -> tuple[float, int]:
    """CPU seconds (user + sys) and peak RSS (KiB) of one batchcert process."""
    proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, _, usage = os.wait4(proc.pid, 0)
    proc.returncode = 0
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss


def overhead_ms_per_row(workdir: Path, rows: int = 2000, repeats: int = 3) -> float:
    """CPU per row of `batchcert run` against a 2,000/s emulator with no latency and no task time: the median over
    `repeats` fresh worlds of (CPU of an N-row run - CPU of a zero-row run) / N."""
    listeners = {f"listener-c{i:07d}": [f"c{i}-{j}.example.com" for j in range(rows // 200)] for i in range(200)}
    world, all_rows = migration_world(listeners, rate_limit=2000, task_seconds=0, latency_ms=0)
    samples = []
    for rep in range(repeats):
        emulator = Emulator(world, workdir)  # fresh: every row still needs its change
        try:
            env = {
                **os.environ,
                "TENCENTCLOUD_SECRET_ID": emulator.secret_id,
                "TENCENTCLOUD_SECRET_KEY": emulator.secret_key,
            }
            cpu = {}
            for n in (0, rows):
                mapping = workdir / f"cpu-{rep}-{n}.csv"
                with mapping.open("w", newline="") as fh:
                    csv.writer(fh).writerows([("ListenerId", "Domain", "CertificateId"), *all_rows[:n]])
                cpu[n], _ = cpu_of(
                    [
                        *BATCHCERT,
                        "run",
                        str(mapping),
                        "--endpoint",
                        emulator.url,
                        "--rate",
                        "2000",
                        "--yes",
                        "--out",
                        str(workdir / f"cpu-run-{rep}-{n}"),
                    ],
                    env,
                )
            samples.append((cpu[rows] - cpu[0]) / rows * 1000)
        finally:
            emulator.close()
    return statistics.median(samples)


def validate_rss_mb(workdir: Path, rows: int = 100_000) -> float:
    path = workdir / "big.csv"
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(("ListenerId", "Domain", "CertificateId", "Note"))
        out.writerows(
            (f"listener-b{i // 50:07d}", f"d{i}.example.com", f"cert-{i % 97:05d}", "x" * 20) for i in range(rows)
        )
    _, rss_kib = cpu_of([*BATCHCERT, "validate", str(path)], dict(os.environ))
    return rss_kib / 1024


def help_seconds() -> float:
    times = []
    for _ in range(5):
        started = time.monotonic()
        subprocess.run([*BATCHCERT, "--help"], cwd=ROOT, capture_output=True, check=True)
        times.append(time.monotonic() - started)
    return min(times)


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="batchcert-bench-"))
    try:
        world, mapping = skewed()
        faulty = {
            **world,
            "faults": {
                "seed": 11,
                "hang_seconds": 3,
                "probabilities": {"InternalError": 0.03, "http502": 0.03, "reset": 0.02, "apply_then_hang": 0.02},
            },
        }
        results = [
            run_batchcert("(a) batchcert, clean", world, mapping, workdir, RATE),
            run_batchcert("(a') batchcert, clean, --no-verify", world, mapping, workdir, RATE, ["--no-verify"]),
            run_batchcert("(b) batchcert, 10% faults", faulty, mapping, workdir, RATE, ["--timeout", "1.0"]),
            run_sdk("(c) SDK + gather(20)", world, mapping, workdir),
            run_batchcert(
                "(d) batchcert, shared quota", {**world, "competing_rate": RATE / 2}, mapping, workdir, RATE / 2
            ),
        ]
        cpu_ms = overhead_ms_per_row(workdir)
        rss_mb = validate_rss_mb(workdir)
        help_s = help_seconds()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print(
        "| scenario | wall s | outcomes known s | bound s | efficiency | requests | throttled | ListenerHasTask "
        "| rows applied | rows reported correctly |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r.name} | {r.wall_s:.1f} | {r.decided_s:.1f} | {r.bound_s:.1f} | {r.efficiency:.2f} | {r.requests} | "
            f"{r.throttled} | {r.listener_has_task} | {r.applied}/{r.rows} | {r.reported_right}/{r.rows} |"
        )
    print()
    print(
        "wall: the whole run; outcomes known: until the last row's outcome was decided — after that the post-run "
        "verification reads every touched listener once more at 20/s (with many single-row listeners that read pass "
        "is the longer pole). efficiency = bound / outcomes known; bound = max(rows / rate, longest listener queue x "
        "(task + latency)), with rate = the quota left to batchcert."
    )
    print()
    print(
        f"client CPU per row: {cpu_ms:.2f} ms · peak RSS validating 100,000 rows: {rss_mb:.0f} MB · "
        f"`batchcert --help`: {help_s:.2f} s"
    )
    a, a_noverify, b, _, d = results
    checks = {
        "(a) efficiency >= 0.92": a.efficiency >= 0.92,
        "(a') without verification, wall-clock efficiency >= 0.92": a_noverify.bound_s / a_noverify.wall_s >= 0.92,
        "(b) efficiency >= 0.80": b.efficiency >= 0.80,
        "(a)(b) 0 throttled": a.throttled == 0 and b.throttled == 0,
        "(a) ListenerHasTask <= 5% of requests": a.listener_has_task <= 0.05 * a.requests,
        "(d) throttled < 5% of requests": d.throttled < 0.05 * d.requests,
        "(a)(b)(d) every row applied and reported correctly": all(
            r.applied == r.rows and r.reported_right == r.rows for r in (a, b, d)
        ),
        "CPU per row <= 1 ms": cpu_ms <= 1.0,
        "peak RSS <= 300 MB": rss_mb <= 300,
        "--help < 0.5 s": help_s < 0.5,
    }
    print()
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
