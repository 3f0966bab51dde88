"""`make bench`: batchcert against the emulator at the API's limit, next to what a user would write with the SDK.

Scenarios (issue "Performance"), each against a fresh `batchcert emulator` process with latency 20–80 ms and a
0.3 s listener task:
  (a) a clean 400-row mapping over skewed listeners (a third of the rows on three listeners);
  (b) the same with 10% injected faults;
  (c) the official SDK's async client, StandardRetryer, `asyncio.gather` under a semaphore of 20, on (a);
  (d) (a) while a competing client spends half of the quota;
  (e) a short write-bound run (220 rows, 22 listeners, 50 ms, an 11 s API bound): what start-up and the tail cost;
  (f) 30 rows on stopped connections and 20 healthy rows each meeting two InternalErrors, at 50 and 300 ms: every
      healthy row must succeed (the retry budget is a rate, not a pot);
  (g) (e) whose edge serves each change 2 s after it was applied, probed and with --no-probe: what the probe adds.
Every scenario's emulator has its TLS edge, so each run probes what it changed (README, "What the edge serves").
Then client overhead (CPU per row against a 2,000/s emulator with no latency, --no-probe), whole runs of 30,000
(median of three) and 100,000 rows against a fast emulator process (peak RSS and CPU per row of the client), peak RSS
validating a 100,000-row mapping, and `batchcert --help` start-up time; before and after it all, the CPU a fixed
piece of work takes (`REFERENCE_WORK`: how fast this shared machine is that hour). Prints one table and the targets,
and exits 1 if a target is missed.
`BENCH_SCALE_ROWS=30000` (comma-separated) changes the sizes of the whole runs.

Two bounds (docs/scheduling.md, "The bound"): the API bound max(writes / rate, reads / rate, longest listener chain
x task) — nothing can finish sooner, reads included — and the older max(rows / rate, longest x (task + latency)).
"""

from __future__ import annotations

import asyncio
import compileall
import contextlib
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
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tests.worlds import account_keys, accounts_world, migration_world

ROOT = Path(__file__).resolve().parent.parent
BATCHCERT = [sys.executable, "-m", "batchcert"]
RATE = 20
TASK_S = 0.3
LATENCY_MS = [20, 80]
MEAN_LATENCY_S = sum(LATENCY_MS) / 2 / 1000
#: whole runs of at most this many rows are run three times (their CPU per row is a checked figure)
SCALE_REPEATED_ROWS = 30_000


def skewed_listeners(rows: int) -> dict[str, list[str]]:
    """Domains per listener: a third of the rows on three listeners, the rest on one listener each."""
    hot = rows // 3
    listeners: dict[str, list[str]] = {f"listener-hot{i:05d}": [] for i in range(3)}
    for i in range(hot):
        listeners[f"listener-hot{i % 3:05d}"].append(f"h{i}.example.com")
    for i in range(rows - hot):
        listeners[f"listener-one{i:06d}"] = [f"o{i}.example.com"]
    return listeners


def skewed(rows: int = 400) -> tuple[dict[str, Any], list[tuple[str, str, str]]]:
    """The scenarios' world and mapping at the API's limit (see `skewed_listeners`)."""
    return migration_world(
        skewed_listeners(rows), rate_limit=RATE, task_seconds=TASK_S, latency_ms=LATENCY_MS, edge=True
    )


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
    process_s: float  # the whole process as the user waits for it: start-up to exit
    api_bound_s: float  # writes and reads at the rate, and the longest listener chain
    requests: int
    throttled: int
    listener_has_task: int
    applied: int
    reported_right: int
    #: rows whose edge served their target (`served` true)
    served: int = 0

    @property
    def efficiency(self) -> float:
        """bound / time until every row's outcome is known (the verification reads may come after)."""
        return self.bound_s / self.decided_s if self.decided_s else 0.0

    @property
    def process_efficiency(self) -> float:
        """API bound / the whole process, start-up to exit."""
        return self.api_bound_s / self.process_s if self.process_s else 0.0


def bound_s(mapping: list[tuple[str, str, str]], rate: float) -> float:
    longest = max(Counter(lid for lid, _, _ in mapping).values())
    return max(len(mapping) / rate, longest * (TASK_S + MEAN_LATENCY_S))


def api_bound_s(mapping: list[tuple[str, str, str]], rate: float, reads_per_listener: int) -> float:
    """What the API allows at best: every write and every read at `rate` per action, each listener's changes one
    task apart."""
    per_listener = Counter(lid for lid, _, _ in mapping)
    reads = reads_per_listener * len(per_listener)
    return max(len(mapping) / rate, reads / rate, max(per_listener.values()) * TASK_S)


def short_write_bound() -> tuple[dict[str, Any], list[tuple[str, str, str]]]:
    """(e) a short run bound by its writes: 220 rows on 22 listeners (10 each), 50 ms latency, 0.3 s tasks — an 11 s
    API bound (220 writes at 20/s; 44 reads and a 3 s chain are shorter), where start-up and the tail show."""
    listeners = {f"listener-w{i:04d}": [f"d{j}-w{i}.example.com" for j in range(10)] for i in range(22)}
    return migration_world(listeners, rate_limit=RATE, task_seconds=TASK_S, latency_ms=[50, 50], edge=True)


#: scenario (g): how long every domain's edge keeps serving the old certificate after a change
EDGE_LAG_S = 2.0


def lagging_edge(lag_s: float) -> tuple[dict[str, Any], list[tuple[str, str, str]]]:
    """(g) scenario (e) whose edge serves each change `lag_s` after it was applied: the probe waits for it."""
    world, mapping = short_write_bound()
    return {**world, "edge_lag_s": lag_s}, mapping


def closed_and_flaky(latency_ms: int) -> tuple[dict[str, Any], list[tuple[str, str, str]]]:
    """(f) 30 rows on stopped connections (one listener each) and 20 healthy rows each answered two InternalErrors
    before it succeeds — the scenario in which a pot of retries emptied before the first success came back."""
    listeners = {f"listener-shut{i:03d}": [f"s{i}.example.com"] for i in range(30)}
    listeners |= {f"listener-flak{i:03d}": [f"f{i}.example.com"] for i in range(20)}
    world, mapping = migration_world(
        listeners, rate_limit=RATE, task_seconds=TASK_S, latency_ms=[latency_ms] * 2, edge=True
    )
    for lid, spec in world["listeners"].items():
        if "shut" in lid:
            spec["proxy_status"] = "STOPPED"
    world["faults"] = {
        "domains": {d: [{"kind": "InternalError", "times": 2}] for lid, d, _ in mapping if "flak" in lid}
    }
    return world, mapping


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
    process_s: float,
    reads_per_listener: int,
) -> Result:
    """A scenario's row of the table; request counts come from the emulator's stats."""
    stats = emulator.get("stats")
    return Result(
        name,
        len(mapping),
        wall_s,
        decided_s,
        bound_s(mapping, rate),
        process_s,
        api_bound_s(mapping, rate, reads_per_listener),
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
        started = time.monotonic()
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
        process_s = time.monotonic() - started
        summary = json.loads((out / "summary.json").read_text())
        with sqlite3.connect(out / "journal.sqlite3") as db:
            session_start, decided = db.execute(
                "SELECT MIN(s.started_at), MAX(r.finished_at) FROM sessions s, rows r"
            ).fetchone()

        applied = applied_rows(emulator, mapping)
        with (out / "report.csv").open(encoding="utf-8-sig") as fh:
            report = {(r["listener_id"], r["domain"]): r["outcome"] for r in csv.DictReader(fh)}
        right = sum(1 for key, outcome in report.items() if (outcome == "succeeded") == (key in applied))
        reads = 1 if "--no-verify" in (extra or []) else 2
        result = _result(
            name,
            mapping,
            summary["duration_s"],
            decided - session_start,
            rate,
            emulator,
            len(applied),
            right,
            process_s,
            reads,
        )
        return replace(result, served=int(summary.get("served", {}).get("true", 0)))
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
        return _result(name, mapping, wall, wall, RATE, emulator, len(applied), right, wall, 0)
    finally:
        emulator.close()


@dataclass
class Accounts:
    """One run over `accounts` accounts of ACCOUNT_ROWS rows each (issue 25): the whole process, the client's CPU per
    request, and whether every row was applied under its own account's credential."""

    accounts: int
    rows: int
    process_s: float
    cpu_ms_per_request: float
    cpu_s: float
    requests: int
    throttled: int
    applied_by_own_credential: int
    applied_by_another: int


#: rows per account in the accounts scenario: the issue's "two accounts, 100 rows each"
ACCOUNT_ROWS = 100


def accounts_run(workdir: Path, accounts: int) -> Accounts:
    """`batchcert run` of a mapping whose rows name `accounts` profiles (ACCOUNT_ROWS each, each account shaped as
    (a): a third of its rows on three listeners, the rest one per listener), against one emulator endpoint serving the
    accounts at the API's limit each (20–80 ms latency, 0.3 s tasks), the profiles in a credentials file."""
    names = [f"acct{i:02d}" for i in range(accounts)]
    listeners = {
        name: {
            lid.replace("listener-", f"listener-{name}"): domains
            for lid, domains in skewed_listeners(ACCOUNT_ROWS).items()
        }
        for name in names
    }
    world, rows = accounts_world(listeners, rate_limit=RATE, task_seconds=TASK_S, latency_ms=LATENCY_MS, edge=True)
    home = workdir / f"home-{accounts}"
    (home / ".tencentcloud").mkdir(parents=True)
    ini = home / ".tencentcloud" / "credentials"
    ini.write_text(
        "".join(f"[{n}]\nsecret_id = {account_keys(n)[0]}\nsecret_key = {account_keys(n)[1]}\n" for n in names)
    )
    ini.chmod(0o600)
    emulator = Emulator(world, workdir)
    try:
        mapping_path = workdir / f"accounts-{accounts}.csv"
        with mapping_path.open("w", newline="") as fh:
            csv.writer(fh).writerows([("ListenerId", "Domain", "CertificateId", "Profile"), *rows])
        env = {k: v for k, v in os.environ.items() if not k.startswith("TENCENTCLOUD_")} | {"HOME": str(home)}
        out = workdir / f"accounts-run-{accounts}"
        started = time.monotonic()
        cpu_s, _ = cpu_of(
            [*BATCHCERT, "run", str(mapping_path), "--endpoint", emulator.url, "--out", str(out), "--yes"], env
        )
        process_s = time.monotonic() - started
        stats = emulator.get("stats")
        ledger = emulator.get("ledger")
        own = sum(1 for e in ledger if e["secret_id"] == account_keys(e["account"])[0])
        requests = sum(stats.values())
        return Accounts(
            accounts,
            len(rows),
            process_s,
            cpu_s / requests * 1000 if requests else 0.0,
            cpu_s,
            requests,
            stats.get("RequestLimitExceeded", 0),
            own,
            len(ledger) - own,
        )
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
    `repeats` fresh worlds of (CPU of an N-row run - CPU of a one-row run) / (N - 1). A one-row run, not a zero-row
    one, carries every fixed cost (imports done on a thread during a run, the certificate read, the journal, the
    reports), which a zero-row mapping — refused before any of that — does not."""
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
            for n in (1, rows):
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
                        "--no-probe",  # the client's own work per row; scenario (g) measures the probe
                        "--yes",
                        "--out",
                        str(workdir / f"cpu-run-{rep}-{n}"),
                    ],
                    env,
                )
            samples.append((cpu[rows] - cpu[1]) / (rows - 1) * 1000)
        finally:
            emulator.close()
    return statistics.median(samples)


@dataclass
class Scale:
    rows: int
    process_s: float
    cpu_ms_per_row: float
    rss_mb: float
    all_succeeded: bool


def scale_run(workdir: Path, rows: int, repeats: int = 1) -> Scale:
    """Whole `batchcert run`s of `rows` rows (a third on three listeners, the rest one per listener), each against a
    fresh separate emulator process with no task time, no latency and a high rate: the client's CPU per row (start-up,
    reading the mapping, pre-flight, sending, verification and reports included) and process time as the median of
    `repeats` runs — like the 2,000-row figure: one run on this shared VM varied from 1.0 to 1.5 ms a row within an hour
    (README, "Performance") — and the highest peak RSS of them."""
    runs = [_scale_run_once(workdir, rows, rep) for rep in range(repeats)]
    return Scale(
        rows,
        statistics.median(r.process_s for r in runs),
        statistics.median(r.cpu_ms_per_row for r in runs),
        max(r.rss_mb for r in runs),
        all(r.all_succeeded for r in runs),
    )


def _scale_run_once(workdir: Path, rows: int, rep: int) -> Scale:
    with fast_world(workdir, rows, f"scale-{rows}-{rep}.csv") as (emulator, path, env):
        out = workdir / f"scale-run-{rows}-{rep}"
        started = time.monotonic()
        # --no-probe: the client's own work per row, comparable with earlier releases; (g) measures the probe
        args = [*BATCHCERT, "run", str(path), "--endpoint", emulator.url, "--rate", "10000", "--no-probe"]
        cpu, rss_kib = cpu_of([*args, "--yes", "--out", str(out)], env)
        process_s = time.monotonic() - started
        counts = json.loads((out / "summary.json").read_text())["counts"]
        return Scale(rows, process_s, cpu / rows * 1000, rss_kib / 1024, counts["succeeded"] == rows)


@contextlib.contextmanager
def fast_world(workdir: Path, rows: int, name: str) -> Iterator[tuple[Emulator, Path, dict[str, str]]]:
    """The whole runs' world: an emulator process with no task time, no latency and a high rate, the mapping of `rows`
    rows over `skewed_listeners` written to `workdir / name`, and an environment holding the emulator's credentials."""
    world, mapping = migration_world(skewed_listeners(rows), rate_limit=10_000, task_seconds=0, latency_ms=0)
    emulator = Emulator(world, workdir)
    try:
        path = workdir / name
        with path.open("w", newline="") as fh:
            csv.writer(fh).writerows([("ListenerId", "Domain", "CertificateId"), *mapping])
        env = {
            **os.environ,
            "TENCENTCLOUD_SECRET_ID": emulator.secret_id,
            "TENCENTCLOUD_SECRET_KEY": emulator.secret_key,
        }
        yield emulator, path, env
    finally:
        emulator.close()


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


#: a fixed piece of CPU work like a request's own (a JSON body, its SHA-256, an HMAC), run in a fresh process: the
#: bench's CPU figures are only comparable between runs of the bench whose reference work took about the same time
REFERENCE_WORK = (
    "import hashlib, hmac, json, time\n"
    "t = time.process_time()\n"
    "for i in range(200_000):\n"
    "    body = json.dumps({'ListenerId': f'listener-{i}', 'Domain': f'd{i}.example.com'}).encode()\n"
    "    hmac.new(b'k' * 32, hashlib.sha256(body).hexdigest().encode(), hashlib.sha256).hexdigest()\n"
    "print(time.process_time() - t)\n"
)


def reference_cpu_s() -> float:
    """The CPU seconds REFERENCE_WORK takes on this machine now (the least of three)."""
    runs = [
        subprocess.run([sys.executable, "-c", REFERENCE_WORK], capture_output=True, text=True, check=True)
        for _ in range(3)
    ]
    return min(float(r.stdout) for r in runs)


def main() -> int:
    # A user's `pip install batchcert` writes the package's bytecode; this editable checkout has none where
    # PYTHONDONTWRITEBYTECODE is set (as on this project's machines), and every process start would then compile
    # batchcert's sources again — 0.15 s of each whole-process time that no user pays.
    compileall.compile_dir(ROOT / "batchcert", quiet=1)
    workdir = Path(tempfile.mkdtemp(prefix="batchcert-bench-"))
    reference_before_s = reference_cpu_s()
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
            run_batchcert("(e) short, write-bound", *short_write_bound(), workdir, RATE),
            run_batchcert("(f) closed + faults, 50 ms", *closed_and_flaky(50), workdir, RATE),
            run_batchcert("(f) closed + faults, 300 ms", *closed_and_flaky(300), workdir, RATE),
            run_batchcert("(g) (e) whose edge lags 2 s, probed", *lagging_edge(EDGE_LAG_S), workdir, RATE),
            run_batchcert("(g') the same, --no-probe", *lagging_edge(EDGE_LAG_S), workdir, RATE, ["--no-probe"]),
        ]
        spread = [accounts_run(workdir, n) for n in (1, 2, 10)]
        cpu_ms = overhead_ms_per_row(workdir)
        sizes = [int(n) for n in os.environ.get("BENCH_SCALE_ROWS", "30000,100000").split(",") if n]
        # the 30,000-row figure is checked: a median of three runs; the 100,000-row run (2–3 min) is there for its RSS
        scales = [scale_run(workdir, n, repeats=3 if n <= SCALE_REPEATED_ROWS else 1) for n in sizes]
        rss_mb = validate_rss_mb(workdir)
        help_s = help_seconds()
        reference_after_s = reference_cpu_s()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print(
        "| scenario | process s | API bound s | process efficiency | run s | outcomes known s | bound s | efficiency "
        "| requests | throttled | ListenerHasTask | rows applied | rows reported correctly |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r.name} | {r.process_s:.1f} | {r.api_bound_s:.1f} | {r.process_efficiency:.2f} | {r.wall_s:.1f} | "
            f"{r.decided_s:.1f} | {r.bound_s:.1f} | {r.efficiency:.2f} | {r.requests} | {r.throttled} | "
            f"{r.listener_has_task} | {r.applied}/{r.rows} | {r.reported_right}/{r.rows} |"
        )
    print()
    print(
        "process: the whole process, start-up to exit; API bound = max(writes / rate, reads / rate, longest listener "
        "queue x task), reads = one pre-flight and one verification read per listener (one with --no-verify); run: "
        "the journal's session; outcomes known: until the last row's outcome was decided; efficiency = bound / "
        "outcomes known, bound = max(rows / rate, longest listener queue x (task + latency)); rate = the quota left "
        "to batchcert."
    )
    print()
    print("| whole run, fast emulator | process s | client CPU per row | client peak RSS | all succeeded |")
    print("|---|---:|---:|---:|---|")
    for sc in scales:
        print(
            f"| {sc.rows:,} rows | {sc.process_s:.1f} | {sc.cpu_ms_per_row:.2f} ms | {sc.rss_mb:.0f} MB | "
            f"{'yes' if sc.all_succeeded else 'NO'} |"
        )
    print()
    print(
        f"client CPU per row: {cpu_ms:.2f} ms · peak RSS validating 100,000 rows: {rss_mb:.0f} MB · "
        f"`batchcert --help`: {help_s:.2f} s"
    )
    print(
        f"this machine's speed: a fixed piece of CPU work (tests/bench.py, REFERENCE_WORK) took "
        f"{reference_before_s:.2f} s before the scenarios and {reference_after_s:.2f} s after them"
    )
    a, a_noverify, b, _, d, e, f50, f300, g, g_off = results
    print(
        f"\n(g): the probe added {g.process_s - g_off.process_s:.2f} s to a run whose edge lags {EDGE_LAG_S:g} s; "
        f"{g.served}/{g.rows} rows served their target (with --no-probe: {g_off.served})"
    )
    print()
    print(
        "| accounts (100 rows each) | rows | process s | x one account | client CPU per request | CPU per request "
        "beyond one account's | requests | throttled | applied with own credential | with another's |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    one = spread[0]
    for acc in spread:
        # what each request beyond one account's costs: start-up and the reports' fixed cost taken out
        extra = (acc.cpu_s - one.cpu_s) / (acc.requests - one.requests) * 1000 if acc.requests > one.requests else 0.0
        print(
            f"| {acc.accounts} | {acc.rows} | {acc.process_s:.1f} | {acc.process_s / one.process_s:.2f} | "
            f"{acc.cpu_ms_per_request:.2f} ms | {f'{extra:.2f} ms' if extra else ''} | {acc.requests} | "
            f"{acc.throttled} | {acc.applied_by_own_credential} | {acc.applied_by_another} |"
        )
    by_rows = {sc.rows: sc for sc in scales}
    checks = {
        "(a) whole process >= 0.92 of the API bound": a.process_efficiency >= 0.92,
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
        "whole runs: every row succeeded": all(sc.all_succeeded for sc in scales),
        "30,000 rows: client CPU <= 1 ms per row, peak RSS <= 250 MB": 30_000 not in by_rows
        or (by_rows[30_000].cpu_ms_per_row <= 1.0 and by_rows[30_000].rss_mb <= 250),
        "100,000 rows: client peak RSS <= 400 MB": 100_000 not in by_rows or by_rows[100_000].rss_mb <= 400,
        "peak RSS <= 300 MB": rss_mb <= 300,
        "--help < 0.5 s": help_s < 0.5,
        # issue 22: the healthy rows of (f) all succeed (20 of its 50 rows: 30 sit on stopped connections)
        "(f) every healthy row succeeded, at 50 and 300 ms": f50.applied == 20 and f300.applied == 20,
        "(e) whole process >= 0.92 of the API bound (a short write-bound run)": e.process_efficiency >= 0.92,
        # issue 23: a reachable edge is probed at no cost but its own lag; every changed domain served its target
        "(e) every changed domain served its target": e.served == e.rows,
        "(g) the probe adds at most the edge's lag (and 0.5 s)": g.process_s - g_off.process_s <= EDGE_LAG_S + 0.5
        and g.served == g.rows,
        # issue 25: accounts proceed at once, each at its own ceiling, each row under its own account's credential
        "accounts: 2 and 10 accounts take <= 1.3x one account's time": all(
            acc.process_s <= 1.3 * one.process_s for acc in spread[1:]
        ),
        "accounts: every row applied under its own credential, none throttled": all(
            acc.applied_by_own_credential == acc.rows and acc.applied_by_another == 0 and acc.throttled == 0
            for acc in spread
        ),
    }
    print()
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
