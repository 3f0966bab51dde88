"""Data safety on virtual time: a change is never resent blind, a run-level stop does not blame its row, and a rerun
finishes what a bad network or a revoked key left — each change applied exactly once (the emulator's ledger)."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from pathlib import Path
from typing import Any

from batchcert import emulator as emu
from batchcert.journal import Journal
from batchcert.model import ACTION_MODIFY, RERUN_OUTCOMES, Api, CallResult, Outcome
from batchcert.runner import OUTCOME_UNKNOWN, OUTCOME_UNKNOWN_MESSAGE, Runner, RunnerConfig
from batchcert.schedule import Quota
from batchcert.settings import RunSettings
from tests.conftest import migration_world
from tests.fake_api import EmulatorApi
from tests.test_schedule import new_journal, rows_of
from tests.virtual_time import run_virtual

QUICK = RunnerConfig(backoff_initial_s=0.2, backoff_jitter_s=0.1, backoff_max_s=2.0)
#: a short request timeout (how long an ambiguous answer's request may still arrive) and listener wait
SHORT = RunSettings(timeout_s=3, listener_wait_s=30)


def one_row_listeners(n: int, **overrides: Any) -> tuple[dict[str, Any], list[tuple[str, str, str]]]:
    return migration_world({f"listener-s{i:04d}": [f"s{i}.example.com"] for i in range(n)}, **overrides)


async def run_and_rerun(journal: Journal, first: Api, second: Api, triples: list[tuple[str, str, str]]) -> Runner:
    """A run through `first`, then a `rerun` (the journal's retryable and not_attempted rows) through `second`."""
    rows = rows_of(triples)
    await Runner(first, Quota(20), journal, QUICK, rng=random.Random(1), settings=SHORT).run(rows)
    runner = Runner(second, Quota(20), journal, QUICK, rng=random.Random(2), settings=SHORT)
    await runner.run(journal.rows(RERUN_OUTCOMES))
    return runner


def outcomes(journal: Journal) -> Counter[str]:
    return Counter(o.value for o in journal.row_outcomes().values())


def applied(api: EmulatorApi) -> Counter[tuple[str, str]]:
    return Counter((e.listener_id, e.domain) for e in api.emulator.ledger)


class LateAnswersBrokenReads:
    """A proxy in front of the service that passes changes on (they are applied) but answers them only after the
    client gave up, and fails every read with a 502 while `reads_broken`."""

    def __init__(self, inner: EmulatorApi, timeout_s: float) -> None:
        self.inner, self.timeout_s, self.reads_broken = inner, timeout_s, True

    async def send(self, action: str, params: dict[str, Any]) -> CallResult:
        started = asyncio.get_running_loop().time()
        if action == ACTION_MODIFY:
            await self.inner.send(action, params)
            await asyncio.sleep(max(0.0, started + self.timeout_s - asyncio.get_running_loop().time()))
            return CallResult("Transport.Timeout", "no answer", latency_s=self.timeout_s, sent_at_s=started)
        if self.reads_broken:
            await asyncio.sleep(0.05)
            return CallResult("Transport.HTTP502", "bad gateway", http_status=502, latency_s=0.05, sent_at_s=started)
        return await self.inner.send(action, params)


def test_applied_late_and_unreadable_is_never_resent_then_rerun_completes(tmp_path: Path) -> None:
    """Every change is applied but answered too late, and reads fail: nothing is sent twice — the rows end
    retryable with "outcome unknown" — and once reads work the rerun settles every row from a read, applying
    nothing again."""
    world, triples = one_row_listeners(12)
    journal = new_journal(tmp_path, rows_of(triples))

    async def main() -> EmulatorApi:
        inner = EmulatorApi(emu.World.from_dict(world))
        proxy = LateAnswersBrokenReads(inner, timeout_s=3)
        await Runner(proxy, Quota(20), journal, QUICK, rng=random.Random(1), settings=SHORT).run(rows_of(triples))
        assert applied(inner) == Counter({(lid, dom): 1 for lid, dom, _ in triples})
        assert outcomes(journal) == Counter({"retryable": 12})
        records = list(journal.report_records())
        assert {r.error_code for r in records} == {OUTCOME_UNKNOWN}
        assert all(OUTCOME_UNKNOWN_MESSAGE in r.error_message for r in records)
        proxy.reads_broken = False
        await Runner(proxy, Quota(20), journal, QUICK, rng=random.Random(2), settings=SHORT).run(
            journal.rows(RERUN_OUTCOMES)
        )
        return inner

    inner = run_virtual(main())
    assert applied(inner) == Counter({(lid, dom): 1 for lid, dom, _ in triples})
    assert outcomes(journal) == Counter({"succeeded": 12})


def test_latency_above_the_timeout_never_applies_twice(tmp_path: Path) -> None:
    """2–5 s of latency against a 3 s timeout: many answers time out after the change was applied; reads settle
    each one before anything is resent, so no change is applied twice, and a rerun finishes the rest."""
    world, triples = one_row_listeners(40, latency_ms=[2000, 5000], faults={"seed": 4})
    journal = new_journal(tmp_path, rows_of(triples))

    async def main() -> EmulatorApi:
        api = EmulatorApi(emu.World.from_dict(world), timeout_s=3)
        await run_and_rerun(journal, api, api, triples)
        return api

    api = run_virtual(main())
    timeouts = [a for a in journal.attempt_records() if a["code"] == "Transport.Timeout"]
    assert len(timeouts) >= 10  # the test proves something only if many answers were lost
    assert max(applied(api).values()) == 1
    assert outcomes(journal)["succeeded"] == 40


class RevokedKey:
    """The credential is revoked after `good` changes and restored when `restored` is set."""

    def __init__(self, inner: EmulatorApi, good: int) -> None:
        self.inner, self.good, self.restored = inner, good, False

    async def send(self, action: str, params: dict[str, Any]) -> CallResult:
        if action == ACTION_MODIFY and not self.restored:
            if self.good <= 0:
                await asyncio.sleep(0.02)
                return CallResult("AuthFailure.SecretIdNotFound", "revoked", request_id="r", http_status=200)
            self.good -= 1
        return await self.inner.send(action, params)


def test_a_key_revoked_mid_run_strands_no_row(tmp_path: Path) -> None:
    """The row that met the revocation is retryable, not terminal ("the run stopped here"), so the plain rerun —
    after the key is restored — completes every valid row, each applied once."""
    world, triples = one_row_listeners(30)
    journal = new_journal(tmp_path, rows_of(triples))

    async def main() -> EmulatorApi:
        inner = EmulatorApi(emu.World.from_dict(world))
        key = RevokedKey(inner, good=10)
        await Runner(key, Quota(20), journal, QUICK, rng=random.Random(1), settings=SHORT).run(rows_of(triples))
        blamed = [r for r in journal.report_records() if r.error_code == "AuthFailure.SecretIdNotFound"]
        assert blamed and all(r.outcome == Outcome.RETRYABLE for r in blamed)
        assert "the run stopped here" in blamed[0].error_message
        assert outcomes(journal)["terminal"] == 0
        key.restored = True
        await Runner(key, Quota(20), journal, QUICK, rng=random.Random(2), settings=SHORT).run(
            journal.rows(RERUN_OUTCOMES)
        )
        return inner

    inner = run_virtual(main())
    assert outcomes(journal) == Counter({"succeeded": 30})
    assert applied(inner) == Counter({(lid, dom): 1 for lid, dom, _ in triples})


def test_rows_left_unverified_are_verified_by_the_rerun(tmp_path: Path) -> None:
    """A session that stopped before its verification reads (a kill, Ctrl-C) leaves succeeded rows with `verified`
    blank; the rerun — with nothing left to send — reads those listeners and records the result."""
    world, triples = one_row_listeners(8)
    journal = new_journal(tmp_path, rows_of(triples))

    async def main() -> None:
        api = EmulatorApi(emu.World.from_dict(world))
        no_verify = RunnerConfig(verify=False)
        await Runner(api, Quota(20), journal, no_verify, rng=random.Random(1), settings=SHORT).run(rows_of(triples))
        assert {r.verified for r in journal.report_records()} == {""}
        assert len(journal.unverified_listeners()) == 8
        rerun = Runner(api, Quota(20), journal, QUICK, rng=random.Random(2), settings=SHORT)
        await rerun.run(journal.rows(RERUN_OUTCOMES), journal.unverified_listeners())
        assert len(api.sends[ACTION_MODIFY]) == 8  # nothing was sent again

    run_virtual(main())
    assert {r.verified for r in journal.report_records()} == {"true"}
    assert journal.unverified_listeners() == frozenset()


def test_a_lost_journal_tail_does_not_turn_applied_changes_into_unchanged(tmp_path: Path) -> None:
    """The journal loses its last records (the attempts and outcomes of a session, as a power cut truncating the
    WAL does) but keeps the states read before the run: the rerun finds the targets live, and reports those rows
    succeeded — confirmed by read-back — not `unchanged`, with a rollback line and a warning in the summary."""
    from batchcert.reconcile import CONFIRMED_BY_READ_BACK
    from batchcert.report import write_reports

    world, triples = one_row_listeners(6)
    journal = new_journal(tmp_path, rows_of(triples))

    async def main() -> None:
        api = EmulatorApi(emu.World.from_dict(world))
        await Runner(api, Quota(20), journal, QUICK, rng=random.Random(1), settings=SHORT).run(rows_of(triples))
        journal.commit()
        with journal._tx() as db:  # the lost tail
            db.execute("DELETE FROM attempts WHERE action = 'ModifyCertificate'")
            db.execute("UPDATE rows SET outcome = 'not_attempted', verified = '', error_message = ''")
        await Runner(api, Quota(20), journal, QUICK, rng=random.Random(2), settings=SHORT).run(
            journal.rows(RERUN_OUTCOMES)
        )
        assert len(api.sends[ACTION_MODIFY]) == 6  # nothing sent again

    run_virtual(main())
    records = list(journal.report_records())
    assert {(r.outcome, r.error_message) for r in records} == {("succeeded", CONFIRMED_BY_READ_BACK)}
    reports = write_reports(journal)
    rollback = (tmp_path / "run" / "rollback.csv").read_text(encoding="utf-8-sig").splitlines()
    assert len(rollback) == 1 + 6 and all(",cert-old," in line for line in rollback[1:])
    assert "the journal lost records" in (tmp_path / "run" / "summary.md").read_text(encoding="utf-8")
    assert reports.counts[Outcome.SUCCEEDED] == 6


def test_every_change_is_on_disk_before_it_is_sent(tmp_path: Path) -> None:
    """When a change leaves, its intent is committed in the journal (another connection sees it) and its line in
    intents.jsonl — with the state read before it — is written."""
    import json
    import sqlite3

    from batchcert.journal import INTENTS_NAME, JOURNAL_NAME

    world, triples = one_row_listeners(30)
    api = EmulatorApi(emu.World.from_dict(world))
    seen: list[tuple[int, int]] = []

    class Witness:
        async def send(self, action: str, params: dict[str, Any]) -> CallResult:
            if action == ACTION_MODIFY:
                db = sqlite3.connect(tmp_path / "run" / JOURNAL_NAME)
                (committed,) = db.execute("SELECT COUNT(*) FROM attempts WHERE action = 'ModifyCertificate'").fetchone()
                db.close()
                lines = (tmp_path / "run" / INTENTS_NAME).read_text(encoding="utf-8").splitlines()
                seen.append((committed, len(lines)))
                assert json.loads(lines[-1])["previous"][0] == "cert-old"
            return await api.send(action, params)

    journal = new_journal(tmp_path, rows_of(triples))
    run_virtual(
        Runner(Witness(), Quota(1000), journal, QUICK, rng=random.Random(1), settings=SHORT).run(rows_of(triples))
    )
    assert [n for n, _ in seen] == [n for _, n in seen] == list(range(1, 31))
    assert sum(applied(api).values()) == 30
