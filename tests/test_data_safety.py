"""Data safety on virtual time: a change is never resent blind, a run-level stop does not blame its row, and a rerun
finishes what a bad network or a revoked key left — each change applied exactly once (the emulator's ledger)."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from batchcert import emulator as emu
from batchcert.api.vocabulary import ACTION_MODIFY
from batchcert.journal import Journal
from batchcert.model import RERUN_OUTCOMES, Api, CallResult, Outcome
from batchcert.report import report_records
from batchcert.runner import OUTCOME_UNKNOWN, OUTCOME_UNKNOWN_MESSAGE, Runner, RunnerConfig
from batchcert.schedule import Quota
from batchcert.settings import RunSettings
from tests.fake_api import EmulatorApi
from tests.runs import new_journal, rows_of
from tests.virtual_time import run_virtual
from tests.worlds import QUICK_RETRIES, migration_world, one_row_listeners

#: a short request timeout (how long an ambiguous answer's request may still arrive) and listener wait
SHORT = RunSettings(timeout_s=3, listener_wait_s=30)


async def run_and_rerun(journal: Journal, first: Api, second: Api, triples: list[tuple[str, str, str]]) -> Runner:
    """A run through `first`, then a `rerun` (the journal's retryable and not_attempted rows) through `second`."""
    rows = rows_of(triples)
    await Runner(first, Quota(20), journal, QUICK_RETRIES, rng=random.Random(1), settings=SHORT).run(rows)
    runner = Runner(second, Quota(20), journal, QUICK_RETRIES, rng=random.Random(2), settings=SHORT)
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
    world, triples = migration_world(one_row_listeners(12, width=4))
    journal = new_journal(tmp_path, rows_of(triples))

    async def main() -> EmulatorApi:
        inner = EmulatorApi(emu.World.from_dict(world))
        proxy = LateAnswersBrokenReads(inner, timeout_s=3)
        await Runner(proxy, Quota(20), journal, QUICK_RETRIES, rng=random.Random(1), settings=SHORT).run(
            rows_of(triples)
        )
        assert applied(inner) == Counter({(lid, dom): 1 for lid, dom, _ in triples})
        assert outcomes(journal) == Counter({"retryable": 12})
        records = list(report_records(journal))
        assert {r.error_code for r in records} == {OUTCOME_UNKNOWN}
        assert all(OUTCOME_UNKNOWN_MESSAGE in r.error_message for r in records)
        proxy.reads_broken = False
        await Runner(proxy, Quota(20), journal, QUICK_RETRIES, rng=random.Random(2), settings=SHORT).run(
            journal.rows(RERUN_OUTCOMES)
        )
        return inner

    inner = run_virtual(main())
    assert applied(inner) == Counter({(lid, dom): 1 for lid, dom, _ in triples})
    assert outcomes(journal) == Counter({"succeeded": 12})


def test_latency_above_the_timeout_never_applies_twice(tmp_path: Path) -> None:
    """2–5 s of latency against a 3 s timeout: many answers time out after the change was applied; reads settle
    each one before anything is resent, so no change is applied twice, and a rerun finishes the rest."""
    world, triples = migration_world(one_row_listeners(40, width=4), latency_ms=[2000, 5000], faults={"seed": 4})
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
    world, triples = migration_world(one_row_listeners(30, width=4))
    journal = new_journal(tmp_path, rows_of(triples))

    async def main() -> EmulatorApi:
        inner = EmulatorApi(emu.World.from_dict(world))
        key = RevokedKey(inner, good=10)
        await Runner(key, Quota(20), journal, QUICK_RETRIES, rng=random.Random(1), settings=SHORT).run(rows_of(triples))
        blamed = [r for r in report_records(journal) if r.error_code == "AuthFailure.SecretIdNotFound"]
        assert blamed and all(r.outcome == Outcome.RETRYABLE for r in blamed)
        assert "the run stopped here" in blamed[0].error_message
        assert outcomes(journal)["terminal"] == 0
        key.restored = True
        await Runner(key, Quota(20), journal, QUICK_RETRIES, rng=random.Random(2), settings=SHORT).run(
            journal.rows(RERUN_OUTCOMES)
        )
        return inner

    inner = run_virtual(main())
    assert outcomes(journal) == Counter({"succeeded": 30})
    assert applied(inner) == Counter({(lid, dom): 1 for lid, dom, _ in triples})


def test_rows_left_unverified_are_verified_by_the_rerun(tmp_path: Path) -> None:
    """A session that stopped before its verification reads (a kill, Ctrl-C) leaves succeeded rows with `verified`
    blank; the rerun — with nothing left to send — reads those listeners and records the result."""
    world, triples = migration_world(one_row_listeners(8, width=4))
    journal = new_journal(tmp_path, rows_of(triples))

    async def main() -> None:
        api = EmulatorApi(emu.World.from_dict(world))
        no_verify = RunnerConfig(verify=False)
        await Runner(api, Quota(20), journal, no_verify, rng=random.Random(1), settings=SHORT).run(rows_of(triples))
        assert {r.verified for r in report_records(journal)} == {""}
        assert len(journal.unverified_listeners()) == 8
        rerun = Runner(api, Quota(20), journal, QUICK_RETRIES, rng=random.Random(2), settings=SHORT)
        await rerun.run(journal.rows(RERUN_OUTCOMES), journal.unverified_listeners())
        assert len(api.sends[ACTION_MODIFY]) == 8  # nothing was sent again

    run_virtual(main())
    assert {r.verified for r in report_records(journal)} == {"true"}
    assert journal.unverified_listeners() == frozenset()


def test_a_lost_journal_tail_does_not_turn_applied_changes_into_unchanged(tmp_path: Path) -> None:
    """The journal loses its last records (the attempts and outcomes of a session, as a power cut truncating the
    WAL does) but keeps the states read before the run: the rerun finds the targets live, and reports those rows
    succeeded — confirmed by read-back — not `unchanged`, with a rollback line and a warning in the summary."""
    from batchcert.live.state import CONFIRMED_BY_READ_BACK
    from batchcert.report import write_reports

    world, triples = migration_world(one_row_listeners(6, width=4))
    journal = new_journal(tmp_path, rows_of(triples))

    async def main() -> None:
        api = EmulatorApi(emu.World.from_dict(world))
        await Runner(api, Quota(20), journal, QUICK_RETRIES, rng=random.Random(1), settings=SHORT).run(rows_of(triples))
        journal.commit()
        with journal.store.tx() as db:  # the lost tail
            db.execute("DELETE FROM attempts WHERE action = 'ModifyCertificate'")
            db.execute("UPDATE rows SET outcome = 'not_attempted', verified = '', error_message = ''")
        await Runner(api, Quota(20), journal, QUICK_RETRIES, rng=random.Random(2), settings=SHORT).run(
            journal.rows(RERUN_OUTCOMES)
        )
        assert len(api.sends[ACTION_MODIFY]) == 6  # nothing sent again

    run_virtual(main())
    records = list(report_records(journal))
    assert {(r.outcome, r.error_message) for r in records} == {("succeeded", CONFIRMED_BY_READ_BACK)}
    reports = write_reports(journal)
    rollback = (tmp_path / "run" / "rollback.csv").read_text(encoding="utf-8-sig").splitlines()
    assert len(rollback) == 1 + 6 and all(",cert-old," in line for line in rollback[1:])
    assert "the journal lost records" in (tmp_path / "run" / "summary.md").read_text(encoding="utf-8")
    assert reports.counts[Outcome.SUCCEEDED] == 6


def test_every_change_is_on_disk_before_it_is_sent(tmp_path: Path) -> None:
    """When a change leaves, its own attempt is committed in the journal (another connection sees it) and its line in
    intents.jsonl — with the state read before it — is written. Changes that leave within one flush window share a
    commit (the journal's group commit), so fewer commits than changes are made."""
    import json
    import sqlite3

    from batchcert.journal import INTENTS_NAME, JOURNAL_NAME

    world, triples = migration_world(one_row_listeners(30, width=4))
    api = EmulatorApi(emu.World.from_dict(world))
    row_of = {(lid, domain): n for n, (lid, domain, _) in enumerate(triples, start=2)}
    sent: list[int] = []
    committed_counts: set[int] = set()

    class Witness:
        async def send(self, action: str, params: dict[str, Any]) -> CallResult:
            if action == ACTION_MODIFY:
                row = row_of[(params["ListenerId"], params["Domain"])]
                db = sqlite3.connect(tmp_path / "run" / JOURNAL_NAME)
                committed = {
                    n for (n,) in db.execute("SELECT row_number FROM attempts WHERE action = 'ModifyCertificate'")
                }
                db.close()
                intents = [
                    json.loads(line)
                    for line in (tmp_path / "run" / INTENTS_NAME).read_text(encoding="utf-8").splitlines()
                ]
                assert row in committed, f"row {row} sent before its attempt was committed"
                mine = [i for i in intents if i["row"] == row]
                assert len(mine) == 1 and mine[0]["previous"][0] == "cert-old"
                sent.append(row)
                committed_counts.add(len(committed))
            return await api.send(action, params)

    journal = new_journal(tmp_path, rows_of(triples))
    run_virtual(
        Runner(Witness(), Quota(1000), journal, QUICK_RETRIES, rng=random.Random(1), settings=SHORT).run(
            rows_of(triples)
        )
    )
    assert sorted(sent) == list(range(2, 32))
    assert len(committed_counts) < 30  # some changes shared a flush
    assert sum(applied(api).values()) == 30


def test_changes_within_a_flush_window_share_one_fsync_and_after_a_quiet_one_flush_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The journal's group commit: a change after a quiet window is committed in the same turn of the event loop —
    no time passes — and shares that fsync with the other changes of the turn (a gate admits a timer tick's worth at
    once); changes within FLUSH_WINDOW_S of the last flush wait for the next one and share its fsync."""
    import os
    import sqlite3

    from batchcert.journal import JOURNAL_NAME

    synced: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)  # the `os` module batchcert.journal.intents imports and calls
    journal = new_journal(tmp_path, rows_of(migration_world(one_row_listeners(6, width=4))[1]))
    window = journal.FLUSH_WINDOW_S

    async def main() -> tuple[int, float, list[float], int, list[float], int]:
        loop = asyncio.get_running_loop()
        before = len(synced)
        journal.begin_attempt(2, ACTION_MODIFY)
        start = loop.time()
        await journal.durable()
        at_once = loop.time() - start

        async def change(row: int) -> float:
            journal.begin_attempt(row, ACTION_MODIFY)
            await journal.durable()
            return loop.time() - start

        together = list(await asyncio.gather(change(3), change(4)))
        shared = len(synced) - before
        await asyncio.sleep(2 * window)
        asked, quiet_before = loop.time() - start, len(synced)
        quiet = [t - asked for t in await asyncio.gather(change(5), change(6), change(7))]
        return len(synced) - before, at_once, together, shared, quiet, len(synced) - quiet_before

    fsyncs, at_once, together, shared, quiet, quiet_fsyncs = run_virtual(main())
    # no time passes (the virtual loop's own nanoseconds per turn aside): committed in the same turn
    assert at_once == pytest.approx(0, abs=1e-6) and quiet == [pytest.approx(0, abs=1e-6)] * 3
    assert quiet_fsyncs == 1  # the three changes of one turn after a quiet window share one fsync
    assert together == [pytest.approx(window, abs=1e-6)] * 2
    assert (shared, fsyncs) == (2, 3)  # rows 3 and 4 shared one fsync
    db = sqlite3.connect(tmp_path / "run" / JOURNAL_NAME)
    assert db.execute("SELECT COUNT(*) FROM attempts").fetchone() == (6,)
    db.close()


def test_a_cancelled_wait_leaves_the_flush_to_the_others_and_a_refused_flush_fails_every_waiter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    from batchcert.errors import JournalError
    from batchcert.journal import JOURNAL_NAME

    journal = new_journal(tmp_path, rows_of(migration_world(one_row_listeners(4, width=4))[1]))

    def refuse() -> None:
        raise JournalError("cannot write the journal: disk full")

    async def main() -> list[BaseException | None]:
        journal.begin_attempt(2, ACTION_MODIFY)
        await journal.durable()  # opens a window
        journal.begin_attempt(3, ACTION_MODIFY)
        gone, kept = asyncio.ensure_future(journal.durable()), asyncio.ensure_future(journal.durable())
        await asyncio.sleep(0)
        gone.cancel()
        await kept
        monkeypatch.setattr(journal.store, "commit", refuse)  # the next flush fails: the disk filled up
        journal.begin_attempt(4, ACTION_MODIFY)
        waits = await asyncio.gather(journal.durable(), journal.durable(), return_exceptions=True)
        return list(waits)

    waits = run_virtual(main())
    assert all(isinstance(w, JournalError) for w in waits)
    db = sqlite3.connect(tmp_path / "run" / JOURNAL_NAME)
    assert {n for (n,) in db.execute("SELECT row_number FROM attempts")} == {2, 3}
    db.close()
