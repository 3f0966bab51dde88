"""Running the runner on virtual time against the in-process emulator (`tests/fake_api.py`): `simulate` and what it
returns (`Ran`), shared by the scheduling, canary and failure-threshold tests."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchcert import emulator as emu
from batchcert.journal import Journal, create_journal
from batchcert.model import Mapping, Row, SessionKind
from batchcert.runner import Runner, RunnerConfig
from batchcert.schedule import Quota
from batchcert.settings import RunSettings
from tests.fake_api import EmulatorApi
from tests.virtual_time import run_virtual
from tests.worlds import QUICK_RETRIES


def rows_of(triples: list[tuple[str, str, str]]) -> list[Row]:
    return [Row(n, lid, dom, cert) for n, (lid, dom, cert) in enumerate(triples, start=2)]


def new_journal(path: Path, rows: list[Row]) -> Journal:
    mapping = Mapping(
        path=path / "m.csv",
        sha256="0" * 64,
        columns=("ListenerId", "Domain", "CertificateId"),
        column_of={c: c for c in ("ListenerId", "Domain", "CertificateId")},
        rows=tuple(rows),
        cells={r.row_number: (r.listener_id, r.domain, r.certificate_id) for r in rows},
    )
    journal = create_journal(path / "run", {"mapping_sha256": mapping.sha256})
    journal.record_mapping(mapping)
    journal.begin_session(SessionKind.RUN, {})
    return journal


@dataclass
class Ran:
    runner: Runner
    api: EmulatorApi
    journal: Journal
    started_s: float
    ended_s: float

    @property
    def elapsed_s(self) -> float:
        return self.ended_s - self.started_s

    @property
    def ledger(self) -> Counter[tuple[str, str]]:
        return Counter((e.listener_id, e.domain) for e in self.api.emulator.ledger)

    def outcomes(self) -> Counter[str]:
        return Counter(o.value for o in self.journal.row_outcomes().values())


def simulate(
    tmp_path: Path,
    world: dict[str, Any],
    triples: list[tuple[str, str, str]],
    config: RunnerConfig = QUICK_RETRIES,
    *,
    rate_per_s: float = 20,
    timeout_s: float = 10.0,
    wrap: Callable[[EmulatorApi], Any] | None = None,
    during: Callable[[Runner], Any] | None = None,
) -> Ran:
    """Run `triples` against `world` on virtual time, the client's requests timing out after `timeout_s`.
    `wrap(api)` may put a fake in front of the emulator; `during(runner)` runs beside the run (to stop it, say)."""
    rows = rows_of(triples)
    journal = new_journal(tmp_path, rows)

    async def main() -> Ran:
        api = EmulatorApi(emu.World.from_dict(world), timeout_s=timeout_s)
        runner = Runner(
            wrap(api) if wrap else api,
            Quota(rate_per_s),
            journal,
            config,
            rng=random.Random(7),
            settings=RunSettings(timeout_s=timeout_s),
        )
        loop = asyncio.get_running_loop()
        started = loop.time()
        side = asyncio.ensure_future(during(runner)) if during else None
        await runner.run(rows)
        if side is not None:
            await side
        return Ran(runner, api, journal, started, loop.time())

    return run_virtual(main())
