"""The rate gate: pacing under the ceiling, priority, closing, and adaptive backoff for a shared quota."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from batchcert import emulator as emu
from batchcert.client import GateClosed, RateGate
from batchcert.runner import RunnerConfig
from batchcert.workflow import RunRequest, run_mapping
from tests.conftest import ThreadedEmulator, migration_world, write_mapping


async def test_grants_are_spaced_under_the_ceiling_and_by_priority() -> None:
    """Grants come at most rate × margin per second, and the highest-priority waiter goes first."""
    gate = RateGate(50)
    order: list[int] = []
    stamps: list[float] = []

    async def take(priority: int) -> None:
        await gate.acquire(priority)
        order.append(priority)
        stamps.append(time.monotonic())

    first = asyncio.create_task(take(0))
    await asyncio.sleep(0)
    await asyncio.gather(first, *(take(p) for p in (1, 5, 3)))
    assert order == [0, 5, 3, 1]
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert min(gaps) >= 1 / 50 * 0.95
    gate.close()


async def test_closing_fails_waiters_and_later_callers() -> None:
    """After close, waiting and new callers get GateClosed (the run is stopping: nothing more is sent)."""
    gate = RateGate(1)
    await gate.acquire()
    waiter = asyncio.create_task(gate.acquire())
    await asyncio.sleep(0.01)
    gate.close()
    with pytest.raises(GateClosed):
        await waiter
    with pytest.raises(GateClosed):
        await gate.acquire()


def test_adaptive_rate_backs_off_and_recovers_but_never_above_the_ceiling() -> None:
    """A throttle cuts the rate by 30%; throttles of calls granted before that cut do not cut again; successes bring
    it back, never above the ceiling."""
    gate = RateGate(20)
    granted_before = time.monotonic()
    gate.throttled(granted_before)
    assert gate.rate_per_s == pytest.approx(14)
    gate.throttled(granted_before)  # same round of feedback: no second cut
    assert gate.rate_per_s == pytest.approx(14)
    gate.throttled(time.monotonic() + 1)  # a call granted after the cut was throttled too: cut again
    assert gate.rate_per_s == pytest.approx(9.8)
    for _ in range(10):
        gate.succeeded()
    assert gate.rate_per_s == pytest.approx(10.3)
    for _ in range(1000):
        gate.succeeded()
    assert gate.rate_per_s == 20


@pytest.mark.usefixtures("credentials_env")
def test_shared_quota_run_is_rarely_throttled_and_complete(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path
) -> None:
    """With another client spending half the limit, the run adapts: under 5% throttled, every row applied once."""
    listeners = {f"listener-q{i:07d}": [f"q{i}.example.com"] for i in range(150)}
    data, rows = migration_world(listeners, rate_limit=60, competing_rate=30, task_seconds=0.1, latency_ms=10)
    world = emu.World.from_dict(data)
    server = threaded_emulator(world)
    summary = run_mapping(
        RunRequest(
            mapping=write_mapping(tmp_path / "m.csv", rows),
            out=tmp_path / "run",
            endpoint=server.base_url,
            rate_per_s=60,
            runner=RunnerConfig(preflight=False, verify=False),
        )
    )
    assert summary.exit_code == 0
    assert server.emulator is not None
    assert server.emulator.stats["RequestLimitExceeded"] < 0.05 * sum(server.emulator.stats.values())
    assert len(server.emulator.ledger) == 150
