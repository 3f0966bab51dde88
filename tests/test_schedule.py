"""The scheduling core on virtual time: a whole run against the emulator's logic in-process (`tests/fake_api.py`) on a
loop whose clock jumps (`tests/virtual_time.py`). Minutes of schedule take milliseconds and repeat exactly."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiolimiter import AsyncLimiter

from batchcert.api.vocabulary import ACTION_DESCRIBE_CERTIFICATE_DETAIL, ACTION_DESCRIBE_RULES, ACTION_MODIFY
from batchcert.model import PREFLIGHT_SAN_MISMATCH, CallResult, Row
from batchcert.report import report_records
from batchcert.runner import VERIFIED_MESSAGE, Runner, RunnerConfig
from batchcert.runner import lanes as runner_lanes
from batchcert.runner.config import Bursts, plan_bursts
from batchcert.schedule import (
    BURST_S,
    BURST_SPACING_S,
    MIN_LAG_S,
    POLL_FLOOR_S,
    RECOUNT_S,
    TIMER_LATENESS_S,
    WARM_UP_S,
    Decision,
    GateClosed,
    GaveUp,
    ListenerPacer,
    LoopClock,
    Quota,
    RateGate,
    RetryBudget,
    RetryPolicy,
    Sleeper,
    TaskTimer,
    retry_call,
)
from tests.fake_api import EmulatorApi, max_in_window
from tests.runs import Ran, rows_of, simulate
from tests.virtual_time import START_S, run_virtual, spend
from tests.worlds import migration_world

SKEWED = {"listener-hot": 40, "listener-warm": 25, "listener-mild": 15} | {
    f"listener-one{i:03d}": 1 for i in range(160)
}
#: the shortest a send counts in its gate's window once its action was answered: the service's second and the least
#: lag (`gate.MIN_LAG_S`), less the rounding the gate forgives at the window's end (`gate.EPSILON_S`): on virtual
#: time a send may leave exactly one window after the one 20 before it, give or take a float's last digit
GATE_WINDOW_S = 1 + MIN_LAG_S - 1e-6
#: the bench's scenario (a): 400 rows, a third on three listeners, the rest one per listener
READ_BOUND = {f"listener-big{i}": 45 for i in range(3)} | {f"listener-one{i:03d}": 1 for i in range(265)}


# --------------------------------------------------------------------------------------------- the whole run


def test_the_names_are_read_beside_the_first_listener_reads_and_still_refuse_before_the_read_judges(
    tmp_path: Path,
) -> None:
    """At 50 ms latency the target's content (DescribeCertificateDetail) and the first listener reads leave
    together, so the first change leaves one latency after them, not two (docs/scheduling.md, "Start-up"). A
    row whose target does not cover its domain is still refused, even where the domain already shows that
    certificate (the name check comes before the read's verdict), and its listener is read but never written."""
    world, triples = migration_world({"listener-a": 3, "listener-b": 3}, latency_ms=[50, 50])
    world["certificates"]["cert-narrow"] = {"type": 2, "domains": ["only.example.org"]}
    world["listeners"]["listener-b"]["domains"]["d0-listener-b.example.com"]["certificate_id"] = "cert-narrow"
    triples = [(lid, d, "cert-narrow" if lid == "listener-b" else cert) for lid, d, cert in triples]
    ran = simulate(tmp_path, world, triples)
    sends = ran.api.sends
    assert sends[ACTION_DESCRIBE_CERTIFICATE_DETAIL][0] == pytest.approx(sends[ACTION_DESCRIBE_RULES][0], abs=0.002)
    # the run read the certificate list first (50 ms); the first change waits for one read, not for two in a row
    assert sends[ACTION_MODIFY][0] - sends[ACTION_DESCRIBE_RULES][0] == pytest.approx(0.05, abs=0.01)
    assert ran.outcomes() == Counter({"succeeded": 3, "terminal": 3})
    refused = {row.domain: row.error_code for row in report_records(ran.journal) if row.outcome == "terminal"}
    assert refused == dict.fromkeys(
        ("d0-listener-b.example.com", "d1-listener-b.example.com", "d2-listener-b.example.com"),
        PREFLIGHT_SAN_MISMATCH,
    )
    assert {lid for lid, _ in ran.ledger} == {"listener-a"}


def test_never_over_the_ceiling_in_any_second_and_each_change_applied_once(tmp_path: Path) -> None:
    """240 rows at the real limit: writes and reads each ≤ 20 in every sliding second (as sent and as the service
    counts them), no throttled answer, every row applied exactly once and verified."""
    world, triples = migration_world(SKEWED, latency_ms=50, task_seconds=0.3)
    ran = simulate(tmp_path, world, triples)
    for action in (ACTION_MODIFY, ACTION_DESCRIBE_RULES):
        assert max_in_window(ran.api.sends[action]) <= 20
        assert ran.api.emulator.max_admitted_in_window(action) <= 20
    assert ran.api.emulator.stats["RequestLimitExceeded"] == 0
    assert ran.ledger == Counter({(lid, dom): 1 for lid, dom, _ in triples})
    assert ran.outcomes() == Counter({"succeeded": 240})
    assert {r.verified for r in report_records(ran.journal)} == {"true"}


def test_aiolimiter_is_what_spreads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The skewed run is bound by its listeners' chains, so its gates spread their grants: no two writes closer than
    the limiter's interval. With `AsyncLimiter.acquire` made a no-op nothing else spreads them — writes bunch up at
    the start of each window and the long listeners, which wait for the next window after every change, make the
    run far longer (the window of sends still keeps every second under the ceiling)."""
    world, triples = migration_world(SKEWED, latency_ms=50, task_seconds=0.3)
    spread = simulate(tmp_path / "spread", copy.deepcopy(world), triples)
    interval_s = 1 / (20 * 0.96) - TIMER_LATENESS_S
    gaps = [b - a for a, b in itertools.pairwise(sorted(spread.api.sends[ACTION_MODIFY]))]
    assert min(gaps) >= interval_s - 1e-6

    async def no_op(self: AsyncLimiter, amount: float = 1) -> None:
        return None

    monkeypatch.setattr(AsyncLimiter, "acquire", no_op)
    bunched = simulate(tmp_path / "bunched", world, triples)
    gaps = [b - a for a, b in itertools.pairwise(sorted(bunched.api.sends[ACTION_MODIFY]))]
    assert sum(gap < interval_s / 2 for gap in gaps) > len(gaps) / 4
    assert max_in_window(bunched.api.sends[ACTION_MODIFY], GATE_WINDOW_S) <= 20
    assert bunched.elapsed_s > 1.2 * spread.elapsed_s


def test_whole_run_is_near_the_bound(tmp_path: Path) -> None:
    """The skewed run (pre-flight and verification included) ends within 10% of what the API allows: every listener
    read twice and every row written once at 20/s per action, and the longest listener's chain of tasks."""
    world, triples = migration_world(SKEWED, latency_ms=50, task_seconds=0.3)
    ran = simulate(tmp_path, world, triples)
    listeners = len(SKEWED)
    bound_s = max(len(triples) / 20, 2 * listeners / 20, max(SKEWED.values()) * 0.3)
    assert ran.elapsed_s <= 1.10 * bound_s, (ran.elapsed_s, bound_s)
    # 5 of 240 (4 before every busy answer was read before its resend, README "Two operators": the read moves the
    # listener's later sends by its latency)
    assert ran.api.emulator.stats["FailedOperation.ListenerHasTask"] <= 0.025 * len(triples)


def test_a_run_whose_listeners_all_end_together_reads_each_back_once_its_task_is_over(tmp_path: Path) -> None:
    """220 rows on 22 listeners (10 each), 50 ms latency, 0.3 s tasks: the gate interleaves the listeners, so every
    listener gets its last change in the run's final second. The read-back after each waits for the task time the
    run measured after one of its first changes: the run ends about one task and one read after its last change
    (it took 0.74 s more when the first read-back went at once and then waited a retry backoff), and each listener
    is read back about once."""
    world, triples = migration_world({f"listener-w{i:02d}": 10 for i in range(22)}, latency_ms=50, task_seconds=0.3)
    ran = simulate(tmp_path, world, triples, RunnerConfig())
    assert ran.outcomes() == Counter({"succeeded": 220})
    assert {r.verified for r in report_records(ran.journal)} == {"true"}
    last_change_s = max(ran.api.sends[ACTION_MODIFY])
    # the change arrives 25 ms after it is sent, its task runs 0.3 s, the read needs 25 ms to arrive and 25 ms back
    assert ran.ended_s - last_change_s <= 0.3 + 0.05 + 0.1, ran.ended_s - last_change_s
    assert ran.runner.task_timer.measured and 0.25 <= ran.runner.task_timer.estimate_s <= 0.4
    # a pre-flight read and a read-back per listener, the reads following the first change, a few polls
    assert len(ran.api.sends[ACTION_DESCRIBE_RULES]) <= 2 * 22 + 12
    # no listener's chain can bind (10 changes, 11 windows of writes), so the run sends in bursts: the whole run,
    # reads and tail included, within its API bound of 220 writes at 20/s and the last burst's 0.1 s (20 requests
    # BURST_SPACING_S apart) — never over the ceiling, never throttled
    assert ran.api.emulator.stats["RequestLimitExceeded"] == 0
    for action in (ACTION_MODIFY, ACTION_DESCRIBE_RULES):
        assert max_in_window(ran.api.sends[action], GATE_WINDOW_S) <= 20
        assert ran.api.emulator.max_admitted_in_window(action) <= 20
    assert ran.elapsed_s <= 220 / 20 + 20 * BURST_SPACING_S, ran.elapsed_s


def test_a_long_task_is_measured_early_and_waited_for_at_every_listener_end(tmp_path: Path) -> None:
    """Tasks of 2 s against a first guess of 0.5 s: the reads following the first change measure it, so later
    read-backs wait about 2 s before their first read instead of polling from 0.5 s on."""
    world, triples = migration_world({f"listener-l{i:02d}": 2 for i in range(8)}, latency_ms=50, task_seconds=2.0)
    ran = simulate(tmp_path, world, triples, RunnerConfig())
    assert ran.outcomes() == Counter({"succeeded": 16})
    assert {r.verified for r in report_records(ran.journal)} == {"true"}
    assert ran.runner.task_timer.measured and 1.5 <= ran.runner.task_timer.estimate_s <= 2.6
    # pre-flight + read-back per listener, about twenty reads following the first task (a quarter of the time so
    # far apart), a few polls of read-backs that went before the estimate was known
    assert len(ran.api.sends[ACTION_DESCRIBE_RULES]) <= 2 * 8 + 20 + 12


def test_a_run_sends_in_bursts_only_where_no_listener_chain_can_bind() -> None:
    """Bursts give a listener one change per window: fine for 10 changes among 220 (11 windows of writes), not for
    the skewed run's 40 among 240 (12 windows), nor for 10 among 220 when each task outlasts two windows. The reads
    alone burst where they outlast the longest chain of spread changes by three windows."""

    def rows(per_listener: dict[str, int]) -> list[Row]:
        return rows_of([(lid, f"d{j}.{lid}", "c") for lid, n in per_listener.items() for j in range(n)])

    even = rows({f"listener-w{i:02d}": 10 for i in range(22)})
    assert plan_bursts(even, 20, 0.5) is Bursts.ALL
    assert plan_bursts(even, 20, 2.0) is Bursts.NONE
    assert plan_bursts(rows(SKEWED), 20, 0.5) is Bursts.NONE  # 326 reads: 17 windows; the chain 20 s
    assert plan_bursts(rows(READ_BOUND), 20, 0.5) is Bursts.READS  # 540 reads: 28 s; the chain 22.5 s
    assert plan_bursts(rows(READ_BOUND), 20, 0.5, reads_per_listener=1) is Bursts.NONE
    assert plan_bursts(rows({f"listener-one{i:03d}": 1 for i in range(5)}), 20, 0.5) is Bursts.ALL
    assert plan_bursts([], 20, 0.5) is Bursts.NONE


def test_a_run_bound_by_its_reads_sends_them_in_bursts_and_spreads_its_changes(tmp_path: Path) -> None:
    """The bench's skewed shape (400 rows, 270 listeners, 45 rows on each of three): 540 reads at 20/s are the
    longer pole. The reads go in bursts, the changes stay spread (their long chains need a slot within an
    interval), and the whole run ends within a window of what the 4% margin allows — never over the ceiling, never
    throttled."""
    world, triples = migration_world(READ_BOUND, latency_ms=50, task_seconds=0.3)
    ran = simulate(tmp_path, world, triples)
    assert ran.outcomes() == Counter({"succeeded": 400})
    assert ran.api.emulator.stats["RequestLimitExceeded"] == 0
    for action in (ACTION_MODIFY, ACTION_DESCRIBE_RULES):
        assert max_in_window(ran.api.sends[action], GATE_WINDOW_S) <= 20
    # bursts: a window's reads leave 5 ms apart (BURST_SPACING_S), where spreading sends two in 0.1 s
    assert max_in_window(ran.api.sends[ACTION_DESCRIBE_RULES], 0.1) >= 15
    writes = sorted(ran.api.sends[ACTION_MODIFY])
    assert min(b - a for a, b in itertools.pairwise(writes)) >= 1 / (20 * 0.96) - TIMER_LATENESS_S - 1e-6
    bound_s = max(len(triples) / 20, 2 * len(READ_BOUND) / 20, max(READ_BOUND.values()) * 0.3)
    assert ran.elapsed_s <= bound_s / 0.96 + 1 / 0.96, (ran.elapsed_s, bound_s)


def test_task_timer_learns_from_read_backs() -> None:
    timer = TaskTimer(0.5)
    assert timer.poll_s(1) == 0.1 and timer.poll_s(3) == 0.4  # a fifth of the estimate, doubling per read
    timer.observed(None, 0.5)  # first read idle at the estimate: maybe earlier would have done
    assert timer.estimate_s == pytest.approx(0.45) and not timer.measured
    timer.observed(None, 0.6)  # a read sent late (at an older estimate, or held at the gate) says nothing
    assert timer.estimate_s == pytest.approx(0.45)
    timer.observed(0.3, 0.36)  # running at 0.3 s, idle at 0.36 s
    assert timer.estimate_s == 0.36 and timer.measured
    for _ in range(10):
        timer.observed(None, timer.estimate_s)
    assert timer.estimate_s == 0.3  # comes down, never below a time a read saw the task still running
    assert TaskTimer(0.01).poll_s(1) == POLL_FLOOR_S
    assert TaskTimer.follow_s(0.0) == POLL_FLOOR_S and TaskTimer.follow_s(2.0) == 0.5


def test_more_listeners_than_lanes(tmp_path: Path) -> None:
    """300 one-row listeners and a hot one — more than the 256 lanes run at once: every row done once, near the
    bound (lanes are reused as listeners finish; the hot one starts first)."""
    listeners = {"listener-hot": 30} | {f"listener-one{i:03d}": 1 for i in range(300)}
    world, triples = migration_world(listeners, latency_ms=50, task_seconds=0.3)
    ran = simulate(tmp_path, world, triples)
    assert ran.outcomes() == Counter({"succeeded": 330})
    assert ran.ledger == Counter({(lid, dom): 1 for lid, dom, _ in triples})
    bound_s = max(330 / 20, 2 * len(listeners) / 20, 30 * 0.3)
    assert ran.elapsed_s <= 1.10 * bound_s, (ran.elapsed_s, bound_s)


def test_long_listener_queues_start_first(tmp_path: Path) -> None:
    """The mapping lists 60 one-row listeners before a 30-row one: the long queue still gets the first writes,
    since its chain of tasks is what bounds the run."""
    listeners = {f"listener-one{i:03d}": 1 for i in range(60)} | {"listener-long": 30}
    world, triples = migration_world(listeners, latency_ms=20, task_seconds=0.5)
    ran = simulate(tmp_path, world, triples)
    first_writes = [e.listener_id for e in ran.api.emulator.ledger[:3]]
    assert "listener-long" in first_writes
    assert ran.elapsed_s <= 1.15 * 30 * 0.5


def test_listener_tasks_are_learned_and_refusals_stay_rare(tmp_path: Path) -> None:
    """One listener, 20 rows, a 0.8 s task but a first guess of 0.1 s: the pacer learns the task in a few refusals
    (doubling), every row succeeds, and ListenerHasTask answers stay few."""
    world, triples = migration_world({"listener-slow": 20}, latency_ms=20, task_seconds=0.8)
    ran = simulate(tmp_path, world, triples, RunnerConfig(listener_task_s=0.1, backoff_initial_s=0.1))
    assert ran.outcomes() == Counter({"succeeded": 20})
    assert ran.api.emulator.stats["FailedOperation.ListenerHasTask"] <= 5
    assert ran.runner.pacer.busy_s is not None and ran.runner.pacer.gap_s >= 0.8


def test_an_unlucky_pair_of_refusals_does_not_slow_a_long_listener_for_good(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One 100-row listener, a 0.3 s task and 20–80 ms of latency: the run stays near the chain's bound (it took
    twice as long while a doubled estimate lasted for hundreds of changes). Since a busy answer is read before its
    resend (README, "Two operators"), the resend comes a read's latency later and no longer meets a second refusal
    in these draws (seed 13, nor any of seeds 1–39): if a doubling happens, it must come down again — the pacer's way
    down after a doubling is `test_pacer_learns_from_refusals_and_follows_a_faster_service`."""
    estimates: list[tuple[float | None, float | None]] = []
    refused = ListenerPacer.refused

    def recording_refused(pacer: ListenerPacer, gap_s: float) -> None:
        before = pacer.busy_s
        refused(pacer, gap_s)
        estimates.append((before, pacer.busy_s))

    monkeypatch.setattr(ListenerPacer, "refused", recording_refused)
    world, triples = migration_world({"listener-big": 100}, latency_ms=[20, 80], task_seconds=0.3, faults={"seed": 13})
    ran = simulate(tmp_path, world, triples, RunnerConfig())
    doubled = [(b, a) for b, a in estimates if b is not None and a is not None and a >= 2 * b]
    assert len(doubled) <= 1  # never two doublings: the estimate came down in between, or never went up
    assert ran.outcomes() == Counter({"succeeded": 100})
    assert ran.elapsed_s <= 1.25 * 100 * 0.3, ran.elapsed_s
    assert ran.api.emulator.stats["FailedOperation.ListenerHasTask"] <= 5


def test_an_outage_is_bounded_by_the_retry_budget(tmp_path: Path) -> None:
    """Every write fails: the run-wide budget caps the retries (40 rows + 10 retries in the run's few seconds — one
    window of the budget at 1/s — not 40 × 6)."""
    listeners = {f"listener-out{i:03d}": 1 for i in range(40)}
    world, triples = migration_world(listeners, faults={"probabilities": {"InternalError": 1.0}})
    ran = simulate(tmp_path, world, triples, RunnerConfig(retry_budget_min_per_s=1.0, backoff_initial_s=0.05))
    assert 40 <= ran.api.emulator.stats["InternalError"] <= 50
    assert ran.outcomes() == Counter({"retryable": 40})
    messages = [r.error_message for r in report_records(ran.journal)]
    assert sum("retry budget exhausted" in m for m in messages) >= 30


class RefusingApi:
    """Answers every write with one code, and passes reads through."""

    def __init__(self, inner: EmulatorApi, code: str) -> None:
        self.inner, self.code, self.writes = inner, code, 0

    async def send(self, action: str, params: dict[str, Any]) -> CallResult:
        if action != ACTION_MODIFY:
            return await self.inner.send(action, params)
        self.writes += 1
        await asyncio.sleep(0.02)
        return CallResult(self.code, "refused", request_id="r", http_status=200)


def test_a_bad_credential_stops_the_run(tmp_path: Path) -> None:
    """A credential-level code stops dispatching at once: a handful of writes, every other row not_attempted with
    the reason."""
    world, triples = migration_world({f"listener-one{i:03d}": 1 for i in range(50)})
    apis: list[RefusingApi] = []

    def wrap(api: EmulatorApi) -> RefusingApi:
        apis.append(RefusingApi(api, "AuthFailure.SecretIdNotFound"))
        return apis[0]

    ran = simulate(tmp_path, world, triples, wrap=wrap)
    assert apis[0].writes <= 2
    assert "check the credentials" in ran.runner.stop_reason
    outcomes = ran.outcomes()
    assert outcomes["not_attempted"] >= 48 and outcomes["succeeded"] == 0


def test_an_ambiguous_answer_is_read_back_before_anything_is_resent(tmp_path: Path) -> None:
    """A change applied but never answered (timeout) is found by reading the listener: succeeded, applied once."""
    world, triples = migration_world({"listener-amb": 3}, faults={"hang_seconds": 30})
    domain = triples[1][1]
    world["faults"]["domains"] = {domain: [{"kind": "apply_then_hang"}]}
    ran = simulate(tmp_path, world, triples, timeout_s=2.0)
    assert ran.ledger == Counter({(lid, dom): 1 for lid, dom, _ in triples})
    record = next(r for r in report_records(ran.journal) if r.domain == domain)
    assert record.outcome == "succeeded" and record.error_message == VERIFIED_MESSAGE
    assert record.attempts == 1


@dataclass(frozen=True)
class Write:
    domain: str
    sent_s: float
    answered_s: float
    code: str | None


class RecordingApi:
    """Passes every call through and keeps each write: its domain, when it was sent and answered, its code (the
    send times of reads are in the emulator API's own `sends`)."""

    def __init__(self, inner: EmulatorApi) -> None:
        self.inner = inner
        self.writes: list[Write] = []

    async def send(self, action: str, params: dict[str, Any]) -> CallResult:
        result = await self.inner.send(action, params)
        if action == ACTION_MODIFY:
            answered_s = asyncio.get_running_loop().time()
            self.writes.append(Write(params["Domain"], result.sent_at_s, answered_s, result.code))
        return result


def simulate_recorded(
    path: Path, world: dict[str, Any], triples: list[tuple[str, str, str]], **kw: Any
) -> tuple[Ran, RecordingApi]:
    """`simulate` into its own directory `path`, with every write recorded."""
    path.mkdir()
    recorded: list[RecordingApi] = []

    def wrap(api: EmulatorApi) -> RecordingApi:
        recorded.append(RecordingApi(api))
        return recorded[0]

    return simulate(path, copy.deepcopy(world), triples, wrap=wrap, **kw), recorded[0]


def one_change_in_flight(writes: list[Write]) -> bool:
    """True when every write was sent after the one before it was answered."""
    return all(later.sent_s >= earlier.answered_s for earlier, later in itertools.pairwise(writes))


def test_a_row_waiting_to_retry_does_not_stall_its_listener(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One listener, 12 rows, the third answered 502: its request may still arrive, so it is resent only after a
    read sent the timeout (2 s) later. Meanwhile the rows after it go on, still one change of ours in flight at a
    time and first attempts in mapping order; the run ends well before the same run whose waiting row holds the
    lane (MAX_PARKED_PER_LANE = 0, as before), and every row is applied once."""
    world, triples = migration_world({"listener-chain": 12}, latency_ms=20, task_seconds=0.3)
    faulty = triples[2][1]
    world["faults"] = {"domains": {faulty: [{"kind": "http502"}]}}
    ran, api = simulate_recorded(tmp_path / "parked", world, triples, timeout_s=2.0)
    assert ran.ledger == Counter({(lid, dom): 1 for lid, dom, _ in triples})
    assert ran.outcomes() == Counter({"succeeded": 12})
    first, resent = (w.sent_s for w in api.writes if w.domain == faulty)
    assert resent - first >= 2.0
    assert len([w for w in api.writes if first < w.sent_s < resent]) >= 4
    assert one_change_in_flight(api.writes)
    assert list(dict.fromkeys(w.domain for w in api.writes)) == [dom for _, dom, _ in triples]

    monkeypatch.setattr(runner_lanes, "MAX_PARKED_PER_LANE", 0)
    held, held_api = simulate_recorded(tmp_path / "held", world, triples, timeout_s=2.0)
    assert held.ledger == ran.ledger
    first, resent = (w.sent_s for w in held_api.writes if w.domain == faulty)
    assert not [w for w in held_api.writes if first < w.sent_s < resent]
    assert held.elapsed_s >= ran.elapsed_s + 1.5, (held.elapsed_s, ran.elapsed_s)


def test_rows_waiting_aside_are_bounded_per_listener(tmp_path: Path) -> None:
    """An outage on one listener with retry budget to spare: rows wait aside for their retries, but never more than
    MAX_PARKED_PER_LANE of them at once beside the one taking the lane, and one change is in flight at a time."""
    world, triples = migration_world({"listener-down": 30}, latency_ms=20, task_seconds=0.3)
    world["faults"] = {"probabilities": {"InternalError": 1.0}}
    config = RunnerConfig(retry_budget_min_per_s=100, backoff_initial_s=1.0, backoff_jitter_s=0.1)
    ran, api = simulate_recorded(tmp_path / "down", world, triples, config=config, timeout_s=2.0)
    assert ran.outcomes() == Counter({"retryable": 30})
    spans: dict[str, list[float]] = {}
    for w in api.writes:
        spans.setdefault(w.domain, [w.sent_s, w.answered_s])[1] = w.answered_s
    edges = sorted([(start, 1) for start, _ in spans.values()] + [(end, -1) for _, end in spans.values()])
    open_rows = max(itertools.accumulate(step for _, step in edges))
    assert open_rows == runner_lanes.MAX_PARKED_PER_LANE + 1 > 1
    assert one_change_in_flight(api.writes)
    assert Counter(w.domain for w in api.writes) == Counter({dom: 6 for _, dom, _ in triples})


def test_a_transport_failure_is_read_back_at_once_and_resent_after_both_the_timeout_and_the_backoff(
    tmp_path: Path,
) -> None:
    """A change applied but unanswered (timeout) is found by a read right after the timeout, not a backoff later; a
    502 is read at once too, but resent only after the request timeout (it may still arrive) and the backoff
    (3 s here, longer than the timeout) have both passed since the answer."""
    world, triples = migration_world({"listener-amb": 3}, latency_ms=20, faults={"hang_seconds": 30})
    hung, failed = triples[0][1], triples[1][1]
    world["faults"]["domains"] = {hung: [{"kind": "apply_then_hang"}], failed: [{"kind": "http502"}]}
    config = RunnerConfig(backoff_initial_s=3.0, backoff_jitter_s=0.0)
    ran, api = simulate_recorded(tmp_path / "amb", world, triples, config=config, timeout_s=2.0)
    reads_s = ran.api.sends[ACTION_DESCRIBE_RULES]
    assert ran.ledger == Counter({(lid, dom): 1 for lid, dom, _ in triples})
    timed_out = next(w for w in api.writes if w.domain == hung)
    assert min(t for t in reads_s if t >= timed_out.answered_s) - timed_out.answered_s < 0.1
    record = next(r for r in report_records(ran.journal) if r.domain == hung)
    assert (record.outcome, record.error_message, record.attempts) == ("succeeded", VERIFIED_MESSAGE, 1)
    first, resent = (w for w in api.writes if w.domain == failed)
    assert first.code == "Transport.HTTP502" and resent.code is None
    assert min(t for t in reads_s if t >= first.answered_s) - first.answered_s < 0.1
    assert resent.sent_s - first.answered_s >= 3.0
    assert any(first.answered_s + 2.0 <= t <= resent.sent_s for t in reads_s)


class Boom(Exception):
    """A run-level failure raised from inside a send."""


def test_a_failure_in_a_task_taking_the_lane_on_ends_the_run_with_that_failure(tmp_path: Path) -> None:
    """The second row waits aside after a 502, so a new task takes the lane on; a run-level failure there (here
    from the API itself) is what the run raises — not a group of failures, not lost in a task nobody awaits."""
    world, triples = migration_world({"listener-chain": 8}, latency_ms=20, task_seconds=0.3)
    world["faults"] = {"domains": {triples[1][1]: [{"kind": "http502"}]}}
    doomed = triples[4][1]

    class BreakingApi(RecordingApi):
        async def send(self, action: str, params: dict[str, Any]) -> CallResult:
            if params.get("Domain") == doomed:
                raise Boom(doomed)
            return await super().send(action, params)

    with pytest.raises(Boom, match=doomed):
        simulate(tmp_path, world, triples, wrap=BreakingApi, timeout_s=2.0)


def test_a_stop_lets_requests_in_flight_finish_and_sends_nothing_after(tmp_path: Path) -> None:
    """Ctrl-C's path: `stop` at 3 s — requests already sent are answered and journaled, nothing is sent after the
    stop, every other row is not_attempted, and no attempt is left open."""
    world, triples = migration_world({f"listener-one{i:03d}": 1 for i in range(200)}, latency_ms=400)
    stopped_at: list[float] = []

    async def interrupt(runner: Runner) -> None:
        await asyncio.sleep(3.0)
        stopped_at.append(asyncio.get_running_loop().time())
        runner.stop("interrupted by the operator")

    ran = simulate(tmp_path, world, triples, during=interrupt)
    sends = ran.api.sends[ACTION_MODIFY] + ran.api.sends[ACTION_DESCRIBE_RULES]
    assert max(sends) <= stopped_at[0]
    outcomes = ran.outcomes()
    assert outcomes["succeeded"] == len(ran.ledger) > 0
    assert outcomes["not_attempted"] == 200 - outcomes["succeeded"]
    assert all(a["finished_at"] is not None for a in ran.journal.attempt_records())


def test_a_shared_quota_is_rarely_throttled(tmp_path: Path) -> None:
    """Another client spends half the limit: the gates adapt, few requests are throttled, every row lands once."""
    world, triples = migration_world({f"listener-one{i:03d}": 1 for i in range(150)}, competing_rate=10, latency_ms=20)
    ran = simulate(tmp_path, world, triples)
    throttled = ran.api.emulator.stats["RequestLimitExceeded"]
    assert throttled <= 0.05 * sum(ran.api.emulator.stats.values())
    assert ran.ledger == Counter({(lid, dom): 1 for lid, dom, _ in triples})


# --------------------------------------------------------------------------------------------- the parts


def test_gate_grants_by_priority_and_spaced_under_the_ceiling() -> None:
    async def main() -> tuple[list[int], list[float]]:
        gate = RateGate(50, Quota(50).clock)
        order: list[int] = []
        stamps: list[float] = []

        async def take(priority: int) -> None:
            stamps.append(await gate.acquire(priority))
            order.append(priority)

        first = asyncio.ensure_future(take(0))
        await asyncio.sleep(0)
        await asyncio.gather(first, *(take(p) for p in (1, 5, 3)))
        gate.close()
        return order, stamps

    order, stamps = run_virtual(main())
    assert order == [0, 5, 3, 1]
    # the limiter's period: the margin's interval, less the event loop's timer lateness it makes up for
    period = 1 / (50 * 0.96) - min(TIMER_LATENESS_S, 0.02 / (50 * 0.96))
    assert [round(b - a, 6) for a, b in itertools.pairwise(stamps)] == [round(period, 6)] * 3
    assert period >= 1 / (50 * 0.98)  # never closer than 0.98 of the ceiling, whatever the loop's timers


def test_an_uncontended_caller_is_granted_at_once_and_the_next_one_is_still_paced() -> None:
    """Nobody waiting and room in the limiter's bucket: the grant comes without a pump task or a turn of the event
    loop (virtual time does not move); a caller right after it waits the limiter's interval all the same."""

    async def main() -> tuple[float, float, float, int]:
        loop = asyncio.get_running_loop()
        gate = RateGate(10, Quota(10).clock)
        asked = loop.time()
        first = await gate.acquire()
        tasks = len(asyncio.all_tasks())
        second = await gate.acquire()
        gate.close()
        return asked, first, second, tasks

    asked, first, second, tasks = run_virtual(main())
    assert first == asked and tasks == 1
    assert second - first == pytest.approx(1 / (10 * 0.96) - TIMER_LATENESS_S, abs=1e-6)


def test_a_fast_gate_admits_a_timer_tick_of_callers_per_late_turn_and_keeps_the_ceiling() -> None:
    """Grants closer together than the event loop's 1 ms timer tick cannot be timed: at 5,000/s the bucket holds one
    tick's worth (5 grants), so a turn of the loop that comes late — the loop busy 2 ms a turn with other work —
    admits the callers the ceiling allowed meanwhile instead of one per turn; over any second the ceiling holds."""
    rate = 5000

    async def main() -> list[float]:
        gate = RateGate(rate, Quota(rate).clock)
        stamps: list[float] = []

        async def take() -> None:
            stamps.append(await gate.acquire())
            gate.mark_sent()

        async def other_work() -> None:
            while len(stamps) < 2 * rate:
                spend(0.002)
                await asyncio.sleep(0)

        await asyncio.gather(other_work(), *(take() for _ in range(2 * rate)))
        gate.close()
        return stamps

    stamps = run_virtual(main())
    per_turn = Counter(stamps)
    assert max(per_turn.values()) == int(rate * BURST_S) == 5
    assert len(per_turn) < len(stamps) / 4  # most turns admit several callers
    assert max_in_window(stamps) <= rate


class Stamp:
    """An API that answers at once and notes when each call went on the wire (and for which priority)."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, float]] = []

    def for_priority(self, priority: float) -> Any:
        outer = self

        class One:
            async def send(self, action: str, params: dict[str, Any]) -> CallResult:
                outer.sent.append((asyncio.get_running_loop().time(), priority))
                return CallResult(None, http_status=200)

        return One()


class Timed:
    """An API that answers each call after the next of `rtts_s` (seconds) and notes when each went on the wire."""

    def __init__(self, rtts_s: list[float]) -> None:
        self.sent: list[float] = []
        self._rtts_s = iter(rtts_s)

    async def send(self, action: str, params: dict[str, Any]) -> CallResult:
        self.sent.append(asyncio.get_running_loop().time())
        rtt_s = next(self._rtts_s)
        await asyncio.sleep(rtt_s)
        return CallResult(None, http_status=200, latency_s=rtt_s)


def test_gate_grants_a_window_at_once_by_priority_and_the_next_when_the_oldest_leaves() -> None:
    """At 2/s a bursting gate sends two calls 5 ms apart (BURST_SPACING_S); the rest wait until the oldest send has
    left the window (answered at once, in the gate's warm-up: the margin's 1 / 0.96 s), highest priority first."""

    async def main() -> tuple[list[tuple[float, float]], float]:
        quota = Quota(2)
        quota.send_in_bursts()
        api = Stamp()
        started = asyncio.get_running_loop().time()
        await quota.send(api.for_priority(0), "A", {}, priority=0)
        await asyncio.gather(*(quota.send(api.for_priority(p), "A", {}, priority=p) for p in (1, 5, 3, 7)))
        quota.close()
        return api.sent, started

    sent, started = run_virtual(main())
    window_s, gap_s = 1 / 0.96, BURST_SPACING_S
    assert [p for _, p in sent] == [0, 7, 5, 3, 1]
    offsets = [round(t - started, 6) for t, _ in sent]
    assert offsets == [round(x, 6) for x in (0, gap_s, window_s, window_s + gap_s, 2 * window_s)]


def test_a_bursting_gate_grants_a_window_5_ms_apart_then_waits_for_the_oldest_send() -> None:
    """At 10/s, once the action was answered without an error: the first caller is granted without a pump task or
    a turn of the event loop (virtual time does not move), the next nine 5 ms apart, and the eleventh when the first
    send leaves the window."""

    async def main() -> tuple[float, list[float], float, int]:
        loop = asyncio.get_running_loop()
        gate = RateGate(10, Quota(10).clock, bursts=True)
        gate.succeeded(ok=True)  # bursts begin once the action was answered without an error
        asked = loop.time()
        first = await gate.acquire()
        tasks = len(asyncio.all_tasks())
        gate.mark_sent()
        grants = [first]
        for _ in range(10):
            grants.append(await gate.acquire())
            gate.mark_sent()
        gate.close()
        return asked, grants, first, tasks

    asked, grants, first, tasks = run_virtual(main())
    assert first == asked and tasks == 1
    assert [round(g - asked, 6) for g in grants[:10]] == [round(i * BURST_SPACING_S, 6) for i in range(10)]
    assert grants[10] - asked == pytest.approx(1 / 0.96, abs=1e-6)


@pytest.mark.parametrize("bursts", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_no_window_ever_holds_more_than_the_ceiling_whatever_the_callers_do(seed: int, bursts: bool) -> None:
    """Callers arrive at random, some go on the wire late (a slow journal write), some give up after their grant
    (the run stops): in every window of 1 / 0.96 s at most the ceiling's worth of requests leave, and the gate
    keeps up — a saturated stretch moves at the ceiling's pace."""
    rng = random.Random(seed)
    rate = rng.choice([1, 3, 20, 200])

    async def main() -> tuple[list[float], float]:
        quota = Quota(rate)
        if bursts:
            quota.send_in_bursts()
        wire = Stamp()
        stalled_s: list[float] = []

        def before_send() -> None:
            roll = rng.random()
            if roll < 0.1:
                raise GateClosed
            if roll < 0.3:
                stalled_s.append(rng.uniform(0, 0.2))
                asyncio.get_running_loop()._fast_forward.now += stalled_s[-1]  # type: ignore[attr-defined]

        async def caller(delay_s: float) -> None:
            await asyncio.sleep(delay_s)
            with contextlib.suppress(GateClosed):
                await quota.send(wire.for_priority(0), "A", {}, priority=rng.random(), before_send=before_send)

        calls = 4 * rate + 10
        await asyncio.gather(*(caller(rng.uniform(0, 2)) for _ in range(calls)))
        quota.close()
        return [t for t, _ in wire.sent], sum(stalled_s)

    sent, stalled_s = run_virtual(main())
    assert max_in_window(sent, GATE_WINDOW_S) <= rate
    # never slower than the ceiling needs: a window per ceiling's worth of sends, the callers' 2 s of arrivals, and
    # the stalls (each moves the whole virtual clock)
    assert max(sent) - min(sent) <= (len(sent) / rate + 1) / 0.96 + 2 + stalled_s


@pytest.mark.parametrize("bursts", [False, True])
def test_a_slow_answer_keeps_its_request_counting_longer(bursts: bool) -> None:
    """At 1/s: the first answer comes after 20 ms (the shortest round trip), the second after 120 ms — 100 ms of it
    may have been spent on the way, so the service may have counted it that late. The third request waits until the
    second's second at the service can have ended (1 s + 100 ms after it left), not the margin's 1 / 0.96 s."""

    async def main() -> list[float]:
        quota = Quota(1)
        if bursts:
            quota.send_in_bursts()
        api = Timed([0.02, 0.12, 0.02])
        await quota.send(api, "A", {})
        await asyncio.gather(quota.send(api, "A", {}), quota.send(api, "A", {}))
        quota.close()
        return api.sent

    first, second, third = run_virtual(main())
    assert second - first >= 1 + MIN_LAG_S - 1e-6
    assert third - second == pytest.approx(1 + 0.1, abs=1e-6)


def test_round_trips_that_shorten_a_little_at_a_time_still_lengthen_what_counts() -> None:
    """At 20/s in bursts, past the gate's warm-up: the first answer of a burst takes 50 ms (the shortest so far),
    each of the next nineteen 0.9 ms less than the one before — each fall under RECOUNT_S, 17.1 ms in all. The
    burst's first request may have been counted 17.1 ms later than the fastest, so the 21st waits for that first
    one's second at the service and that lag (less RECOUNT_S at most), not for the lag taken against the shortest
    round trip it was answered with."""

    async def main() -> list[float]:
        quota = Quota(20)
        quota.send_in_bursts()
        api = Timed([0.05] + [0.05 - 0.0009 * i for i in range(20)] + [0.03])
        await quota.send(api, "A", {})
        await asyncio.sleep(WARM_UP_S + 1)
        await asyncio.gather(*(quota.send(api, "A", {}) for _ in range(21)))
        quota.close()
        return api.sent[1:]

    sent = run_virtual(main())
    assert sent[20] - sent[0] >= 1 + 19 * 0.0009 - RECOUNT_S, sent[20] - sent[0]


def test_in_its_warm_up_a_gate_counts_each_send_for_the_margins_window() -> None:
    """At 20/s in bursts, every answer at once (round trips all alike): in the gate's first WARM_UP_S a send counts
    1 / 0.96 s — the shortest round trip is known from few answers, slowed by the run's start — so the 21st and the
    41st request leave that long after the 1st and the 21st; the 41st left after the warm-up, so the 61st leaves one
    second and MIN_LAG_S after it."""

    async def main() -> list[float]:
        quota = Quota(20)
        quota.send_in_bursts()
        api = Stamp()
        await quota.send(api.for_priority(0), "A", {})
        await asyncio.gather(*(quota.send(api.for_priority(0), "A", {}) for _ in range(60)))
        quota.close()
        return [t for t, _ in api.sent]

    sent = run_virtual(main())
    assert sent[40] > sent[0] + WARM_UP_S
    assert sent[20] - sent[0] == pytest.approx(1 / 0.96, abs=1e-6)
    assert sent[40] - sent[20] == pytest.approx(1 / 0.96, abs=1e-6)
    assert sent[60] - sent[40] == pytest.approx(1 + MIN_LAG_S, abs=1e-6)


def test_at_widely_varying_latency_the_service_never_counts_more_than_the_ceiling(tmp_path: Path) -> None:
    """Round trips of 20–200 ms, half of each spent before the service counts the request: a request may be counted
    up to 90 ms later than another sent with it — more than the margin's 40 ms. The gates keep every second at the
    service at the ceiling anyway (no throttle), because each request counts for its own round trip."""
    world, triples = migration_world(READ_BOUND, latency_ms=[20, 200], task_seconds=0.3)
    ran = simulate(tmp_path, world, triples)
    assert ran.outcomes() == Counter({"succeeded": 400})
    assert ran.api.emulator.stats["RequestLimitExceeded"] == 0
    for action in (ACTION_MODIFY, ACTION_DESCRIBE_RULES):
        assert ran.api.emulator.max_admitted_in_window(action) <= 20


def test_a_late_send_moves_the_window() -> None:
    """A call that goes on the wire 0.3 s after its grant (a busy event loop, a slow disk) counts from when it left:
    the next one at 1/s leaves a whole window after it, never closer at the service."""

    async def main() -> list[float]:
        quota = Quota(1)
        wire = Stamp()

        def stall() -> None:
            if not wire.sent:
                asyncio.get_running_loop()._fast_forward.now += 0.3  # type: ignore[attr-defined]

        await asyncio.gather(*(quota.send(wire.for_priority(0), "A", {}, before_send=stall) for _ in range(3)))
        quota.close()
        return [t for t, _ in wire.sent]

    sent = run_virtual(main())
    # the first answer came at once (its round trip the shortest): from then on a send counts its second and
    # MIN_LAG_S, so the next leaves at least that long after it — and no later than the limiter's spacing of the
    # margin's 1 / 0.96 s, which aiolimiter 1.1 (the floor) keeps after a stall and later releases do not
    for gap in (b - a for a, b in itertools.pairwise(sent)):
        assert 1 + MIN_LAG_S - 1e-6 <= gap <= 1 / 0.96 + 1e-6, gap


def test_a_grant_not_used_gives_its_room_back() -> None:
    """A call whose journal write failed after its grant was never sent: in a bursting gate at 2/s, after one call
    went out, the next call goes one burst spacing later, not a window later."""

    async def main() -> tuple[float, float]:
        quota = Quota(2)
        quota.send_in_bursts()
        loop = asyncio.get_running_loop()
        await quota.send(Stamp().for_priority(0), "A", {})
        started = loop.time()

        def fail() -> None:
            raise OSError("disk full")

        with pytest.raises(OSError):
            await quota.send(Stamp().for_priority(0), "A", {}, before_send=fail)
        api = Stamp()
        await quota.send(api.for_priority(0), "A", {})
        quota.close()
        return started, api.sent[0][0]

    started, sent_at = run_virtual(main())
    assert sent_at - started == pytest.approx(2 * BURST_SPACING_S)


def test_the_loop_clock_follows_a_new_loop_once_the_old_one_is_closed() -> None:
    clock = LoopClock()

    async def after(seconds: float) -> float:
        await asyncio.sleep(seconds)
        return clock.now()

    assert run_virtual(after(50)) == pytest.approx(START_S + 50)
    assert run_virtual(after(1)) == pytest.approx(START_S + 1)


def test_closing_the_gate_fails_waiters_and_later_callers() -> None:
    async def main() -> None:
        gate = RateGate(1, Quota(1).clock)
        await gate.acquire()
        waiter = asyncio.ensure_future(gate.acquire())
        await asyncio.sleep(0.01)
        gate.close()
        with pytest.raises(GateClosed):
            await waiter
        with pytest.raises(GateClosed):
            await gate.acquire()

    run_virtual(main())


def test_adaptive_rate_backs_off_once_per_round_and_recovers_to_the_ceiling() -> None:
    async def main() -> None:
        gate = RateGate(20, Quota(20).clock)
        granted = await gate.acquire()
        gate.throttled(granted)
        assert gate.rate_per_s == pytest.approx(14)
        gate.throttled(granted)  # the same round of feedback: no second cut
        assert gate.rate_per_s == pytest.approx(14)
        await asyncio.sleep(1)
        gate.throttled(await gate.acquire())  # granted after the cut, throttled too: cut again
        assert gate.rate_per_s == pytest.approx(9.8)
        for _ in range(10):
            gate.succeeded()
        assert gate.rate_per_s == pytest.approx(10.3)
        for _ in range(1000):
            gate.succeeded()
        assert gate.rate_per_s == 20
        gate.close()

    run_virtual(main())


def test_pacer_learns_from_refusals_and_follows_a_faster_service() -> None:
    pacer = ListenerPacer(0.5)
    pacer.accepted(0.5)
    assert pacer.gap_s == pytest.approx(0.45)  # probing downward until the first refusal
    pacer.refused(0.45)
    assert pacer.gap_s == pytest.approx(0.45 * 1.1 + 0.01)
    pacer.refused(0.3)  # an earlier send's refusal at a shorter gap teaches nothing new
    assert pacer.busy_s == pytest.approx(0.45)
    pacer.refused(pacer.gap_s)  # refused again although the pacer's gap was kept: the task is much longer — double
    proven = 0.45 * 1.1 + 0.01
    assert pacer.busy_s == pytest.approx(proven * 2)
    pacer.accepted(pacer.gap_s)  # a doubling is a guess: down 10% per accepted change …
    assert pacer.busy_s == pytest.approx(proven * 2 * 0.9)
    for _ in range(10):
        pacer.accepted(pacer.gap_s)
    assert pacer.busy_s == pytest.approx(proven)  # … never below the gap a refusal proved too short
    for _ in range(20):
        pacer.accepted(pacer.gap_s)
    assert pacer.busy_s == pytest.approx(proven * 0.95)  # then the slow way: 5% every 20 accepted changes
    pacer.busy_s = 0.45
    pacer.accepted(0.6)
    pacer.refused(pacer.gap_s)  # one refusal after acceptances: the end of a probe, no doubling
    assert pacer.busy_s == pytest.approx(0.45 * 1.1 + 0.01)
    pacer.busy_s = 0.45
    for _ in range(19):
        pacer.accepted(0.6)
    assert pacer.busy_s == pytest.approx(0.45 * 0.95)


def test_retry_call_stops_on_attempts_budget_and_stop() -> None:
    failure = CallResult("InternalError", "boom")
    policy = RetryPolicy(max_attempts=3, backoff_initial_s=1, backoff_jitter_s=0)

    async def main() -> None:
        calls: list[CallResult | None] = []

        async def always_fail(previous: CallResult | None) -> CallResult:
            calls.append(previous)
            return failure

        rng = random.Random(1)
        tries = await retry_call(always_fail, policy=policy, sleeper=Sleeper(), rng=rng)
        assert (len(tries.results), tries.gave_up, calls) == (3, GaveUp.ATTEMPTS, [None, failure, failure])
        budget = RetryBudget(LoopClock(), min_per_s=0.1, window_s=10)  # one retry in any 10 s
        tries = await retry_call(always_fail, policy=policy, sleeper=Sleeper(), rng=rng, budget=budget)
        assert (len(tries.results), tries.gave_up) == (2, GaveUp.BUDGET)
        sleeper = Sleeper()
        asyncio.get_running_loop().call_later(0.5, sleeper.wake_all)
        started = asyncio.get_running_loop().time()
        tries = await retry_call(always_fail, policy=policy, sleeper=sleeper, rng=rng)
        assert (len(tries.results), tries.gave_up) == (1, GaveUp.STOPPED)
        assert asyncio.get_running_loop().time() - started == pytest.approx(0.5)  # woken, not the full backoff

    run_virtual(main())


def test_retry_call_asks_one_decision_per_answer() -> None:
    """`decide` alone says what an answer leads to: answers waited out cost no attempt until the patience is spent,
    a chosen wait replaces the backoff (stretched by at most its jitter ratio), and a stop lets the answer stand."""
    busy, failure = CallResult("FailedOperation.ListenerHasTask", "busy"), CallResult("InternalError", "boom")
    policy = RetryPolicy(max_attempts=2, backoff_initial_s=1, backoff_max_s=8, backoff_jitter_s=0)

    async def main() -> None:
        loop = asyncio.get_running_loop()

        async def call(answers: list[CallResult], decide: Callable[[CallResult, int], Decision]) -> list[float]:
            sent: list[float] = []

            async def attempt(_previous: CallResult | None) -> CallResult:
                sent.append(loop.time())
                return answers[len(sent) - 1]

            tries = await retry_call(attempt, policy=policy, sleeper=Sleeper(), rng=random.Random(1), decide=decide)
            assert tries.results == tuple(answers)
            gave_up.append(tries.gave_up)
            return [b - a for a, b in itertools.pairwise(sent)]

        gave_up: list[GaveUp] = []
        asked: list[int] = []

        def wait_out_busy(result: CallResult, retry_number: int) -> Decision:
            asked.append(retry_number)
            return Decision.wait_out(10, wait_s=2, jitter_ratio=0.5) if result is busy else Decision.retry()

        gaps = await call([busy, busy, busy, failure, failure], wait_out_busy)
        assert asked == [1, 2, 3, 4, 5]  # the retry number counts the answers waited out
        assert all(2 <= gap <= 3.01 for gap in gaps[:3])
        assert gaps[3] == pytest.approx(8)  # the 4th retry's backoff: 1 × 2³
        gaps = await call([busy, busy, busy], lambda _r, _n: Decision.wait_out(3, wait_s=2))
        assert gaps == pytest.approx([2, 2])
        await call([failure], lambda _r, _n: Decision.stop())
        assert gave_up == [GaveUp.ATTEMPTS, GaveUp.PATIENCE, GaveUp.NOTHING]

    run_virtual(main())


def test_backoff_doubles_up_to_its_cap_with_bounded_jitter() -> None:
    policy = RetryPolicy(backoff_initial_s=0.25, backoff_max_s=2.0, backoff_jitter_s=0.1)
    rng = random.Random(3)
    waits = [policy.backoff_s(n, rng) for n in range(1, 7)]
    for wait, base in zip(waits, [0.25, 0.5, 1.0, 2.0, 2.0, 2.0], strict=True):
        assert base <= wait <= base + 0.1


def test_scheduling_decisions_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    """`batchcert -v` shows rate cuts, pacer changes and budget exhaustion as they happen."""

    async def main() -> None:
        gate = RateGate(20, Quota(20).clock, "ModifyCertificate")
        gate.throttled(await gate.acquire())
        gate.close()

    with caplog.at_level("INFO", logger="batchcert"):
        run_virtual(main())
        pacer = ListenerPacer(0.5)
        pacer.accepted(0.5)
        pacer.refused(0.4)
        budget = RetryBudget(FixedClock(), min_per_s=0.1, window_s=10)
        assert budget.take() and not budget.take()
    text = caplog.text
    assert "ModifyCertificate throttled: rate cut to 14.00/s" in text
    assert "listener tasks take over 0.400 s" in text
    assert "retry budget exhausted after 1 retries" in text


class FixedClock:
    """A clock that never moves (for the budget outside a loop)."""

    def now(self) -> float:
        return 0.0

    async def sleep(self, seconds: float) -> None:
        return None


def closed_and_flaky(latency_ms: int, task_s: float) -> tuple[dict[str, Any], list[tuple[str, str, str]]]:
    """30 rows on 30 listeners of a stopped connection, and 20 healthy rows (20 listeners) each answered two
    InternalErrors before it succeeds — the scenario that emptied the old pot of 20 retries before the first
    success came back."""
    listeners = {f"listener-shut{i:03d}": 1 for i in range(30)} | {f"listener-flak{i:03d}": 1 for i in range(20)}
    world, triples = migration_world(listeners, latency_ms=latency_ms, task_seconds=task_s)
    for lid in world["listeners"]:
        if "shut" in lid:
            world["listeners"][lid]["proxy_status"] = "STOPPED"
    world["faults"] = {
        "domains": {d: [{"kind": "InternalError", "times": 2}] for lid, d, _ in triples if "flak" in lid}
    }
    return world, triples


@pytest.mark.parametrize("task_s", [0.3, 2.0])
@pytest.mark.parametrize("latency_ms", [50, 150, 300])
def test_the_retry_budget_is_a_rate_that_a_slow_network_does_not_empty(
    tmp_path: Path, latency_ms: int, task_s: float
) -> None:
    """Closed connections and two InternalErrors per healthy row, at 50–300 ms and with short or long tasks: every
    healthy row succeeds (its retries come at the budget's floor rate, whenever its successes come back), every row
    of the stopped connection ends retryable without retries."""
    world, triples = closed_and_flaky(latency_ms, task_s)
    ran = simulate(tmp_path, world, triples, RunnerConfig())
    outcomes = {r.domain: r.outcome for r in report_records(ran.journal)}
    assert {outcomes[d] for lid, d, _ in triples if "flak" in lid} == {"succeeded"}
    assert {outcomes[d] for lid, d, _ in triples if "shut" in lid} == {"retryable"}
    assert ran.api.emulator.stats["InternalError"] == 40  # two each, never more
    assert ran.runner.budget.spent == 40


def test_a_long_outage_costs_at_most_the_floor_rate_in_retries(tmp_path: Path) -> None:
    """Every write fails for the whole run — 700 rows, 35 s of first attempts at 20/s: the retries stay within the
    budget's floor (5/s over a 10 s window: 50 in any 10 s), whatever the rows' attempts would allow."""
    listeners = {f"listener-down{i:04d}": 1 for i in range(700)}
    world, triples = migration_world(listeners, latency_ms=20, faults={"probabilities": {"InternalError": 1.0}})
    config = RunnerConfig(backoff_initial_s=0.05, backoff_jitter_s=0.05, backoff_max_s=0.5)
    ran, api = simulate_recorded(tmp_path / "down", world, triples, config=config)
    assert ran.outcomes() == Counter({"retryable": 700})
    assert ran.elapsed_s >= 33  # the outage lasted 35 s of first attempts
    firsts: set[str] = set()
    retries = []
    for w in sorted(api.writes, key=lambda w: w.sent_s):
        if w.domain in firsts:
            retries.append(w.sent_s)
        firsts.add(w.domain)
    # the budget counts a retry when it allows it, after the failed answer; the retry leaves after its backoff (at most
    # 0.55 s here) and its wait at the gate (at most a window, 1 / 0.96 s): a send-time window may also hold what the
    # floor allowed in the 1.6 s just before it
    assert max_in_window(retries, 10.0) <= 5 * (10 + 0.55 + 1 / 0.96)
    assert len(retries) <= 5 * ran.elapsed_s + 50
    assert len(retries) > 5 * 10 * 5  # the floor renews with time (the old pot allowed 20 in all)


@pytest.mark.parametrize(
    ("code", "cut"),
    [("RequestLimitExceeded", True), ("LimitExceeded.RateLimitExceeded", True), ("LimitExceeded", False)],
)
def test_a_rate_limit_by_either_name_slows_the_gate(code: str, cut: bool) -> None:
    """`LimitExceeded.RateLimitExceeded` (a request rate, classify.THROTTLED) cuts the gate's rate like
    `RequestLimitExceeded`; a bare `LimitExceeded` (a quota) does not."""

    class Answering:
        async def send(self, action: str, params: dict[str, Any]) -> CallResult:
            return CallResult(code, "limit", http_status=200)

    async def main() -> float:
        quota = Quota(20)
        await quota.send(Answering(), "ModifyCertificate", {})
        rate = quota.gate("ModifyCertificate").rate_per_s
        quota.close()
        return rate

    assert (run_virtual(main()) < 20) is cut
