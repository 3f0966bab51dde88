"""What is settled before anything is sent: the certificate pre-flight (rows whose target certificate is missing, of
the wrong type or expired, or whose names do not cover the domain, end `terminal` with a `Preflight.*` code, never
sent), the pre-flight read of each listener
before its first change (`DescribeRules`; rows at target end `unchanged`, absent ones `terminal`), and `plan_rows`,
the pre-flight alone (`batchcert plan`)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from batchcert import classify
from batchcert.live.certificates import check_names, check_targets, content_targets, incomplete_chain
from batchcert.live.reader import CertificateIndex, ContentReads, LiveReader
from batchcert.live.state import PlanAction, PlanLine, Verdict, judge
from batchcert.model import SCOPE_LISTENER, Outcome, Row
from batchcert.runner.outcomes import UNREAD_MESSAGE, conclude_by_read, verdict_outcome
from batchcert.runner.readback import ListenerReads
from batchcert.runner.state import EarlierSessions, RowForms, RunContext


def needs_read(row: Row) -> bool:
    """A row that may only be sent after its listener was read, even with --no-preflight: a compare-and-swap row
    (its expected current state is checked) and a domain not written in lower case (it is sent as the service spells
    it, README "Current → new")."""
    return row.expected is not None or row.domain != row.domain.lower()


async def plan_rows(
    reader: LiveReader, rows: list[Row], certificates: CertificateIndex, min_validity_days: float
) -> list[PlanLine]:
    """Read each distinct listener once and judge every row against it and its target certificates against the
    account's (`batchcert plan`): a row `run` would refuse is `refused` with its Preflight code; expiry and
    SubjectCN warnings go into the reason."""
    if not certificates.failed:
        certificates = await reader.with_contents(certificates, content_targets(rows, certificates.by_id))
    listeners = list(dict.fromkeys(r.listener_id for r in rows))
    own = {r.listener_id for r in rows if r.scope == SCOPE_LISTENER}
    reads = [reader.read(lid, own=lid in own) for lid in listeners]
    readings = dict(zip(listeners, await asyncio.gather(*reads), strict=True))
    now_s, lines = time.time(), []
    for row in rows:
        check = None
        if not certificates.failed:
            check = check_targets(row, certificates.by_id, now_s, min_validity_days, certificates.contents)
        if check is not None and check.code:
            lines.append(PlanLine(row, PlanAction.REFUSED, None, f"{check.code}: {check.message}"))
            continue
        reading = readings[row.listener_id]
        if reading.failed:
            lines.append(PlanLine(row, PlanAction.UNKNOWN, None, f"could not read the listener: {reading.code}"))
            continue
        verdict, live = judge(row, reading.domains)
        settled = verdict_outcome(row, verdict, live)
        notes = [settled.message] if settled and settled.message else []
        if check is not None:
            notes += [f"warning: {w}" for w in (*check.expiring, check.name_mismatch, check.chain_incomplete) if w]
            skipped = certificates.contents_skipped.get(row.certificate_id)
            if skipped:
                notes.append(f"warning: the names of {row.certificate_id} were not checked: {skipped}")
        lines.append(PlanLine(row, PlanAction.of(verdict), live, "; ".join(notes)))
    return lines


@dataclass(frozen=True)
class Sendable:
    """A listener's rows left to send after its pre-flight read, in mapping order, and those among them whose
    domain was changing (they wait for it before they are sent). `refused`: the names of their targets refused
    every row (nothing of this run is on the listener to read back)."""

    rows: tuple[Row, ...]
    changing: frozenset[int] = frozenset()
    refused: bool = False


class Preflight:
    """The run's pre-flight: the certificate check of every row, and each listener's read before its first change.
    `certificates` are the account's, when the workflow read them before asking (None: read here)."""

    def __init__(
        self,
        ctx: RunContext,
        reads: ListenerReads,
        reader: LiveReader,
        forms: RowForms,
        earlier: EarlierSessions,
        certificates: CertificateIndex | None,
        contents: ContentReads,
    ) -> None:
        self._ctx = ctx
        self._contents = contents
        self._reads = reads
        self._reader = reader
        self._forms = forms
        self._earlier = earlier
        self._certificates = certificates
        #: the content of each target server certificate, being read (`refuse_unusable_targets`); none: not checked
        self._names: dict[str, asyncio.Future[CertificateIndex]] = {}
        self._names_noted: asyncio.Future[None] | None = None

    async def refuse_unusable_targets(self, rows: list[Row]) -> list[Row]:
        """The certificate pre-flight: rows whose target certificate is missing, of the wrong type or expired end
        `terminal` with a `Preflight.*` code and are never sent; the rest go on. Skipped (with a journal note) when
        the certificates cannot be read. The names each server certificate covers are read meanwhile
        (`DescribeCertificateDetail`, beside the listeners' pre-flight reads rather than before them: one latency
        less before the first change); `read_listener` refuses a row they do not cover before it judges the row."""
        journal = self._ctx.journal
        if self._certificates is None:
            self._certificates = await self._reader.certificates()
            journal.record_certificates(self._certificates.by_id.values())
        certificates = self._certificates
        if certificates.failed:
            journal.set_facts(certificate_check=f"skipped: DescribeCertificates answered {certificates.failed}")
            return rows
        now_s, keep = time.time(), []
        for row in rows:
            check = check_targets(row, certificates.by_id, now_s, self._ctx.settings.min_validity_days)
            if check.code:
                self._refuse(row, check.code, check.message)
            else:
                keep.append(row)
        self._names = {c: self._contents.soon(c) for c in content_targets(keep, certificates.by_id)}
        self._names_noted = asyncio.ensure_future(self._note_names())
        return keep

    async def _note_names(self) -> None:
        """Once every name is read: the journal notes the certificates whose names could not be read, and those
        whose content lacks its issuer (an incomplete chain)."""
        found = await asyncio.gather(*(asyncio.shield(reading) for reading in self._names.values()))
        skipped = {c: why for index in found for c, why in index.contents_skipped.items()}
        if skipped:
            why = "; ".join(f"{c}: {reason}" for c, reason in skipped.items())
            self._ctx.journal.set_facts(name_check=f"skipped for {len(skipped)} certificate(s) ({why})")
        incomplete = {
            incomplete_chain(c)
            for index in found
            for c, content in index.contents.items()
            if not content.chain_complete
        }
        if incomplete:
            self._ctx.journal.set_facts(chain_check="; ".join(sorted(incomplete)))

    async def refuse_misnamed(self, rows: list[Row]) -> list[Row]:
        """`rows` without those whose server certificate does not cover their domain (ended `terminal`, never
        sent), once the names of their own targets are read (`refuse_unusable_targets` started reading them)."""
        wanted = dict.fromkeys(r.certificate_id for r in rows if r.certificate_id in self._names)
        if not wanted:
            return rows
        found = await asyncio.gather(*(asyncio.shield(self._names[c]) for c in wanted))
        contents = {c: content for index in found for c, content in index.contents.items()}
        keep = []
        for row in rows:
            content = contents.get(row.certificate_id)
            refused = check_names(row.domain, row.certificate_id, content) if content and row.domain else None
            if refused is not None:
                self._refuse(row, refused.code, refused.message)
            else:
                keep.append(row)
        return keep

    async def close(self) -> None:
        """Let the journal note what was read of the names (the reads themselves are the run's to stop)."""
        if self._names_noted is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._names_noted

    def _refuse(self, row: Row, code: str, message: str) -> None:
        advice = classify.policy_for(code).advice
        self._ctx.journal.finish_row(row.row_number, Outcome.TERMINAL, code, f"{message} — {advice}; not sent")
        self._ctx.on_row_done(row, Outcome.TERMINAL)

    async def read_listener(self, listener_id: str, rows: list[Row]) -> Sendable:
        """Read the listener once; settle rows already at target or absent; return the rows to send."""
        journal, on_row_done = self._ctx.journal, self._ctx.on_row_done
        reading = await self._reads.read(listener_id, priority=len(rows))
        rows = await self.refuse_misnamed(rows)
        if not rows:
            return Sendable((), refused=True)
        if reading.failed:
            # unknown state: send, and let the answers decide — except rows that must not be sent unread
            sendable = []
            for row in rows:
                if not needs_read(row):
                    sendable.append(row)
                    continue
                journal.finish_row(
                    row.row_number, Outcome.RETRYABLE, reading.code, UNREAD_MESSAGE.format(code=reading.code)
                )
                on_row_done(row, Outcome.RETRYABLE)
            return Sendable(tuple(sendable))
        self._earlier.read_since.update(row.row_number for row in rows)
        judged = [(row, *judge(row, reading.domains)) for row in rows]
        for row, _, live in judged:
            self._forms.learn_from(row, live)
        journal.record_previous(
            [(row.row_number, live.certificate_id, live.client_ids) for row, _, live in judged if live is not None]
        )
        pending, changing = [], set()
        for row, verdict, live in judged:
            ended = conclude_by_read(row, verdict, live, self._earlier, journal.unproven)
            if ended is not None:
                journal.finish_row(
                    row.row_number, ended.outcome, ended.code, ended.message, reading.request_id, ended.basis
                )
                on_row_done(row, ended.outcome)
                continue
            if verdict is Verdict.CHANGING:
                changing.add(row.row_number)
            pending.append(row)
        return Sendable(tuple(pending), frozenset(changing))
