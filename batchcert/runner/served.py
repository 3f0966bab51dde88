"""Proving a change where clients see it (README, "What the edge serves"): once a listener's read-back shows a
succeeded row at its target, the row's domains are probed at the edge — its connection's access point, the
listener's port, SNI = the domain (`batchcert.live.probe`) — until the edge serves the target's leaf or the wait
ends; `rows.served` records what was found. Probes run beside the run, outside the API quota, a bounded number at
once; the reads they need (the access point, the target's content) go through the quota like every read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from batchcert.live.access import AccessPoints
from batchcert.live.probe import AccessPoint, ProbeResult, probe_domain
from batchcert.live.reader import ContentReads, LiveReader, Reading
from batchcert.live.state import LISTENER_KEY
from batchcert.model import DEFAULT_CERTIFICATE, SCOPE_LISTENER, ProbeTarget, Row, Served, ServedCheck
from batchcert.runner.state import RunContext
from batchcert.schedule import Clock, Sleeper

#: probes at once: each holds a socket for at most a handshake and sleeps between tries
PROBE_CONCURRENCY = 32


@dataclass(frozen=True)
class _Place:
    """A domain to probe for a row, and the certificate it must serve."""

    domain: str
    certificate_id: str


class _Prober:
    """Probes one domain for the certificate it must serve: the leaf read once per certificate (`ContentReads`),
    `PROBE_CONCURRENCY` probes at once, each again until it matches or `wait_s` passes."""

    def __init__(self, contents: ContentReads, wait_s: float, sleeper: Sleeper, clock: Clock) -> None:
        self._contents = contents
        self._wait_s = wait_s
        self._sleeper = sleeper
        self._clock = clock
        self._slots = asyncio.Semaphore(PROBE_CONCURRENCY)
        #: access points no handshake reached, and why: their other domains are `unreachable` at once, so an edge
        #: that drops connections costs one handshake timeout, not one per domain
        self._dead: dict[tuple[tuple[str, ...], int | None], str] = {}

    async def probe(self, point: AccessPoint, domain: str, certificate_id: str) -> ProbeResult:
        want = await self._leaf_of(certificate_id)
        if not want:
            return ProbeResult(Served.NOT_PROBED, error=f"the content of {certificate_id or '?'} could not be read")
        async with self._slots:
            where = (point.hosts, point.port)
            if where in self._dead:
                return ProbeResult(Served.UNREACHABLE, error=self._dead[where])
            result = await probe_domain(
                point, domain, want, self._wait_s, sleep=self._sleeper.sleep, now_s=self._clock.now
            )
        if result.served is Served.UNREACHABLE:
            self._dead[where] = result.error
        return result

    async def _leaf_of(self, certificate_id: str) -> str:
        """The SHA-256 of the leaf of `certificate_id` ("" when its content cannot be read), read once."""
        if not certificate_id or certificate_id == DEFAULT_CERTIFICATE:
            return ""
        index = await asyncio.shield(self._contents.soon(certificate_id))
        content = index.contents.get(certificate_id)
        return content.leaf_sha256 if content is not None else ""


class ServedProofs:
    """Starts the probes of each listener read back (`start`), and waits for them (`wait`) or stops them (`cancel`).
    `wait_s`: how long a domain is probed again while it serves another certificate (`--probe-wait`)."""

    def __init__(
        self,
        ctx: RunContext,
        reader: LiveReader,
        contents: ContentReads,
        wait_s: float,
        *,
        enabled: bool = True,
        on_not_served: Callable[[Row, ServedCheck], None] = lambda _row, _check: None,
    ) -> None:
        self._ctx = ctx
        self._contents = contents
        self._on_not_served = on_not_served
        self.enabled = enabled
        self._points = AccessPoints(reader)
        self._prober = _Prober(contents, wait_s, ctx.sleeper, ctx.clock)
        self._running: set[asyncio.Task[None]] = set()

    def prepare(self, listener_id: str, rows: list[Row]) -> None:
        """Read what probing `rows` will need — the listener's access point, their targets' leaves — while the
        listener's changes go out, so that the probe after its read-back adds no read to the run's end."""
        if not self.enabled or not rows:
            return
        self._points.read_soon(listener_id)
        for row in rows:
            if row.certificate_id and row.certificate_id != DEFAULT_CERTIFICATE:
                self._contents.soon(row.certificate_id)

    def start(self, listener_id: str, rows: list[Row], reading: Reading) -> None:
        """Probe those of `rows` (read back on `listener_id` in `reading`) that succeeded and were not yet seen
        served: in the background, so the listener's lane goes on."""
        if not self.enabled:
            return
        unproven = self._ctx.journal.unproven_rows([row.row_number for row in rows])
        wanted = [row for row in rows if row.row_number in unproven]
        if wanted:
            task = asyncio.ensure_future(self._prove(listener_id, wanted, reading))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def wait(self) -> None:
        """Until every probe started has ended."""
        while self._running:
            await asyncio.gather(*self._running)

    async def cancel(self) -> None:
        """Stop every probe and read still going (the run stopped): their rows keep `served` empty."""
        tasks: list[asyncio.Future[Any]] = [*self._running]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._points.close()

    async def _prove(self, listener_id: str, rows: list[Row], reading: Reading) -> None:
        point = await self._points.of(listener_id)
        checks = await asyncio.gather(*(self._check(row, point, reading) for row in rows))
        self._ctx.journal.record_served(list(checks))
        for row, check in zip(rows, checks, strict=True):
            if check.served is Served.FALSE:
                self._on_not_served(row, check)

    async def _check(self, row: Row, point: AccessPoint, reading: Reading) -> ServedCheck:
        """Probe every domain `row` changed: its own, or for a listener row each domain on the listener's `default`
        certificate; the row is `true` when all serve the target, `false` when one serves another certificate,
        `unreachable` when none could be reached."""
        places = _places_of(row, point, reading)
        if not places:
            return ServedCheck(row.row_number, Served.NOT_PROBED, note="no domain of the row to probe")
        results = await asyncio.gather(*(self._prober.probe(point, p.domain, p.certificate_id) for p in places))
        return _verdict(row.row_number, results, self._points.why.get(row.listener_id, ""))


async def probe_targets(
    reader: LiveReader, targets: Sequence[ProbeTarget], wait_s: float, sleeper: Sleeper, clock: Clock
) -> list[ServedCheck]:
    """What each target's edge serves now (`batchcert probe`): its access point and the leaf it should serve read
    through the quota, then probed — again until it matches or `wait_s` passes — `PROBE_CONCURRENCY` at once."""
    points, contents = AccessPoints(reader), ContentReads(reader)
    prober = _Prober(contents, wait_s, sleeper, clock)

    async def probe(target: ProbeTarget) -> ServedCheck:
        point = await points.of(target.listener_id)
        certificate_id = point.certificate_id if target.certificate_id == DEFAULT_CERTIFICATE else target.certificate_id
        result = await prober.probe(point, target.domain, certificate_id)
        return _verdict(target.row_number, [result], points.why.get(target.listener_id, ""))

    try:
        return list(await asyncio.gather(*(probe(target) for target in targets)))
    finally:
        await points.close()
        await contents.close()


def _places_of(row: Row, point: AccessPoint, reading: Reading) -> list[_Place]:
    """The domains a row's change reaches and the certificate each must serve."""
    if row.scope == SCOPE_LISTENER:
        domains = reading.domains or {}
        on_default = [
            d for key, d in domains.items() if key != LISTENER_KEY and d.certificate_id == DEFAULT_CERTIFICATE
        ]
        return [_Place(d.domain, row.certificate_id) for d in on_default]
    if row.certificate_id != DEFAULT_CERTIFICATE:
        return [_Place(row.domain, row.certificate_id)]
    # the listener's certificate as the read-back saw it (a listener row of this run may have changed it), else as
    # its listing said when the probe began
    own = (reading.domains or {}).get(LISTENER_KEY)
    return [_Place(row.domain, own.certificate_id if own is not None else point.certificate_id)]


def _verdict(row_number: int, results: list[ProbeResult], why: str) -> ServedCheck:
    """One row's check from its domains' probes: a `false` first (with the leaf served instead), then an
    unreadable target, then `unreachable`, else `true`."""
    by_kind = {result.served: result for result in reversed(results)}
    for served in (Served.FALSE, Served.NOT_PROBED, Served.UNREACHABLE, Served.TRUE):
        found = by_kind.get(served)
        if found is None:
            continue
        leaf = found.leaf
        note = found.error if served is not Served.UNREACHABLE else "; ".join(filter(None, (why, found.error)))
        return ServedCheck(
            row_number,
            served,
            leaf.sha256 if leaf else "",
            leaf.subject if leaf else "",
            leaf.not_after_s if leaf else None,
            note,
        )
    raise AssertionError("a row with places has a probe result")
