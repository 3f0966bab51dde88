"""A canary and a failure threshold (issue 23, part 4; README "Canary and failure threshold"): `--canary N` sends,
reads back and probes N changes on N listeners before any other and stops the run when one fails; `--max-failures
N|P%` stops sending once that many changes failed. On virtual time against the in-process emulator."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from batchcert.model import Outcome
from batchcert.runner import FailureLimit
from batchcert.runner.guard import pick_canary
from tests.runs import rows_of, simulate
from tests.worlds import QUICK_RETRIES, migration_world

CODE = "InvalidParameterValue.CertificateNotMatchDomain"  # terminal (batchcert.classify)


def world_with_failures(listeners: int, failing: set[int]) -> tuple[dict[str, Any], list[tuple[str, str, str]]]:
    """`listeners` one-row listeners; the writes of those numbered in `failing` are refused with a terminal code."""
    world, triples = migration_world({f"listener-c{i:03d}": 1 for i in range(listeners)}, latency_ms=20)
    world["faults"] = {
        "domains": {
            domain: [{"kind": "code", "code": CODE, "times": 10}]
            for n, (_, domain, _) in enumerate(triples)
            if n in failing
        }
    }
    return world, triples


def test_a_failing_canary_stops_the_run_before_anything_else_is_sent(tmp_path: Path) -> None:
    world, triples = world_with_failures(20, {1})
    ran = simulate(tmp_path, world, triples, replace(QUICK_RETRIES, canary=3))
    assert set(ran.ledger) <= {(lid, domain) for lid, domain, _ in triples[:3]}
    assert ran.outcomes() == Counter({"not_attempted": 17, "succeeded": 2, "terminal": 1})
    reason = ran.runner.stop_reason
    assert "canary of 3" in reason and "row 3 ended terminal" in reason and "batchcert rerun" in reason


def test_a_healthy_canary_lets_the_run_go_on_to_every_row(tmp_path: Path) -> None:
    world, triples = world_with_failures(20, set())
    ran = simulate(tmp_path, world, triples, replace(QUICK_RETRIES, canary=3))
    assert ran.outcomes() == Counter({"succeeded": 20})
    assert len(ran.ledger) == 20 and not ran.runner.stop_reason


def test_the_canary_takes_the_first_rows_each_on_a_listener_of_its_own() -> None:
    rows = rows_of([("l1", "a", "c"), ("l1", "b", "c"), ("l2", "c", "c"), ("l3", "d", "c"), ("l4", "e", "c")])
    assert [row.domain for row in pick_canary(rows, 3)] == ["a", "c", "d"]
    assert [row.domain for row in pick_canary(rows, 9)] == ["a", "c", "d", "e"]


def test_sending_stops_at_the_failure_threshold(tmp_path: Path) -> None:
    world, triples = world_with_failures(30, set(range(0, 30, 3)))
    ran = simulate(tmp_path, world, triples, replace(QUICK_RETRIES, max_failures=FailureLimit.parse("2")))
    outcomes = ran.outcomes()
    # the second failure stops the run; requests already on the wire still end
    assert 2 <= outcomes["terminal"] <= 4 and outcomes["not_attempted"] > 10
    assert "stopped after 2 failed change(s) (--max-failures 2)" in ran.runner.stop_reason
    not_sent = {n for n, o in ran.journal.row_outcomes().items() if o is Outcome.NOT_ATTEMPTED}
    assert not {(lid, d) for n, (lid, d, _) in enumerate(triples, start=2) if n in not_sent} & set(ran.ledger)


def test_a_share_of_failures_counts_against_the_rows_sent(tmp_path: Path) -> None:
    world, triples = world_with_failures(20, set(range(20)))
    ran = simulate(tmp_path, world, triples, replace(QUICK_RETRIES, max_failures=FailureLimit.parse("10%")))
    assert "(--max-failures 10%)" in ran.runner.stop_reason and ran.outcomes()["not_attempted"] > 0
    assert FailureLimit.parse("10%").threshold(20) == 2 and FailureLimit.parse("1%").threshold(20) == 1


@pytest.mark.parametrize("text", ["0", "-1", "1.5", "abc", "0%", "101%", "%", ""])
def test_a_threshold_it_cannot_take_is_refused_naming_what_it_takes(text: str) -> None:
    with pytest.raises(ValueError, match=r"a number of failed changes \(5\) or a share of the rows sent \(10%\)"):
        FailureLimit.parse(text)
