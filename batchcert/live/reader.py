"""Reading through the quota: `LiveReader` reads a listener's live state (`DescribeRules`, with
`DescribeHTTPSListeners` for its own certificates) as a `Reading`, and the account's certificates
(`DescribeCertificates`, paged) as a `CertificateIndex`, with the content of the certificates rows install
(`DescribeCertificateDetail`, `with_contents`) — each action its own ceiling, with the run's retries. Shared
by `runner` (pre-flight, verification, settling doubts), `inventory` and the `plan` command (through `workflow`) — a
layer of its own below them, so that they stay siblings.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from batchcert import classify
from batchcert.api.vocabulary import (
    ACTION_DESCRIBE_CERTIFICATE_DETAIL,
    ACTION_DESCRIBE_CERTIFICATES,
    ACTION_DESCRIBE_LISTENERS,
    ACTION_DESCRIBE_RULES,
    PAGE_LIMIT,
)
from batchcert.live.certificates import CertificateInfo, certificates_in
from batchcert.live.state import LISTENER_KEY, LiveDomain, live_domains, live_listener
from batchcert.live.x509 import CertificateContent, UnreadableContent, read_content
from batchcert.model import NOT_SENT, Api, CallResult, Disposition
from batchcert.schedule import GateClosed, Quota, RetryPolicy, Sleeper, backoff_if_retryable, retry_call

#: gate priority of a read that a listener lane is blocked on (ambiguous answer, changing domain)
URGENT = 1e9


@dataclass(frozen=True)
class Reading:
    """A listener's live state: `domains` by lower-cased name (None when the listener does not exist), or `failed`
    with the code of the last answer."""

    domains: dict[str, LiveDomain] | None
    request_id: str = ""
    failed: bool = False
    code: str = ""
    #: when the read of the domains went on the wire (the event loop's clock, s; 0 when it was not sent)
    sent_at_s: float = 0.0
    #: the failed answer's message (what a stopped run quotes)
    message: str = ""


@dataclass(frozen=True)
class CertificateIndex:
    """The account's certificates by id, as the certificate pre-flight read them; `failed` names the code when
    they could not be read (the check is then skipped, never guessed)."""

    by_id: dict[str, CertificateInfo]
    failed: str = ""
    #: the content of the certificates rows install, by id (`LiveReader.with_contents`); a certificate whose content
    #: could not be read is in `contents_skipped` with why, and its names are not checked (never guessed)
    contents: dict[str, CertificateContent] = field(default_factory=dict)
    contents_skipped: dict[str, str] = field(default_factory=dict)

    @property
    def worth_reading_again(self) -> bool:
        """The read failed for a reason that may pass (a network error, throttling) — not a denial."""
        return bool(self.failed) and classify.disposition_of(self.failed) is not Disposition.TERMINAL


class ContentReads:
    """The content of each certificate, read once per run however many ask (`soon`): the names the pre-flight
    checks and the leaf the edge must serve come from the same `DescribeCertificateDetail` answer."""

    def __init__(self, reader: LiveReader) -> None:
        self._reader = reader
        self._reads: dict[str, asyncio.Future[CertificateIndex]] = {}

    def soon(self, certificate_id: str) -> asyncio.Future[CertificateIndex]:
        """The read of `certificate_id`'s content (an index holding it, or why it was skipped), started now unless
        it was already."""
        if certificate_id not in self._reads:
            read = self._reader.with_contents(CertificateIndex({}), [certificate_id])
            self._reads[certificate_id] = asyncio.ensure_future(read)
        return self._reads[certificate_id]

    async def close(self) -> None:
        """Stop the reads still going (the run stopped)."""
        for read in self._reads.values():
            read.cancel()
        await asyncio.gather(*self._reads.values(), return_exceptions=True)


@dataclass(frozen=True)
class Listing:
    """A paged listing as read (`LiveReader.listing`): its items; the last answer (for a failed listing the error
    answer, or None: nothing was sent, the run stopped); `failed` when a page failed; `short_of` the TotalCount a
    listing promised when a page came back empty before it (None: it ended as announced)."""

    items: list[dict[str, Any]]
    answer: CallResult | None
    failed: bool = False
    short_of: int | None = None


class LiveReader:
    """Reads listeners with DescribeRules (and the account's certificates with DescribeCertificates) through the
    quota (each action its own budget), retrying transient failures with backoff. `on_read(listener_id, result,
    sent_at_wall_s, row_number, action)` is called for every answer."""

    def __init__(
        self,
        api: Api,
        quota: Quota,
        policy: RetryPolicy,
        sleeper: Sleeper,
        rng: random.Random,
        on_read: Callable[[str, CallResult, float, int | None, str], None] | None = None,
    ) -> None:
        self._api = api
        self._quota = quota
        self._policy = policy
        self._sleeper = sleeper
        self._rng = rng
        self._on_read = on_read

    async def read(
        self, listener_id: str, row_number: int | None = None, priority: float = URGENT, *, own: bool = False
    ) -> Reading:
        """The listener's live domains — and with `own` its own certificates too (DescribeHTTPSListeners, under
        LISTENER_KEY), for listener rows. Never raises for API or network problems (a failed Reading instead).
        `priority` orders reads at the gate: URGENT for a read a lane is blocked on, rows waiting for a pre-flight
        read, 0 for verification (it must not delay reads that gate changes)."""
        where = {"ListenerId": listener_id}
        if own:
            rules, mine = await asyncio.gather(
                self.call(ACTION_DESCRIBE_RULES, where, priority, listener_id, row_number),
                self.call(ACTION_DESCRIBE_LISTENERS, where, priority, listener_id, row_number),
            )
        else:
            rules, mine = await self.call(ACTION_DESCRIBE_RULES, where, priority, listener_id, row_number), None
        reading = _reading_of(rules)
        if not own or reading.failed or reading.domains is None:
            return reading
        if mine is None or not mine.ok:
            code = NOT_SENT if mine is None else mine.code or ""
            return Reading(None, mine.request_id if mine else "", failed=True, code=code)
        listener = live_listener(mine.response)
        if listener is None:
            return Reading(None, mine.request_id)
        return Reading({**reading.domains, LISTENER_KEY: listener}, reading.request_id, sent_at_s=reading.sent_at_s)

    async def certificates(self) -> CertificateIndex:
        """Every certificate of the account, page by page (one lookup per run). Never raises."""
        listing = await self.listing(ACTION_DESCRIBE_CERTIFICATES, {}, ("CertificateSet",), priority=URGENT)
        found = {c.certificate_id: c for c in certificates_in({"CertificateSet": listing.items})}
        if listing.failed:
            answer = listing.answer
            return CertificateIndex(found, failed=(answer.code or "failed") if answer is not None else NOT_SENT)
        if listing.short_of is not None:  # an index with a hole would refuse rows whose target is in it: skip the check
            read = len(listing.items)
            return CertificateIndex(
                found, failed=f"an empty page at Offset {read} before its TotalCount {listing.short_of}"
            )
        return CertificateIndex(found)

    async def listing(
        self, action: str, params: dict[str, Any], keys: Sequence[str], where: str = "", priority: float = 0.0
    ) -> Listing:
        """Every item of a paged listing (`Offset`/`Limit`, at most the action's PAGE_LIMIT a page): page after page
        until it holds `TotalCount` items (the latest page's). The items are under the first of `keys` a page fills
        (DescribeProxies: `ProxySet`, else the older `InstanceSet`); an answer without TotalCount ends with its first
        short page (as the Terraform provider reads). A failed page ends it `failed`, an empty page before TotalCount
        `short_of` that count: never a silent end — the caller says what each means for it. Never raises."""
        items: list[dict[str, Any]] = []
        limit = PAGE_LIMIT[action]
        while True:
            page = {**params, "Offset": len(items), "Limit": limit}
            result = await self.call(action, page, priority, where, None)
            if result is None or not result.ok:
                return Listing(items, result, failed=True)
            listed: list[dict[str, Any]] = next((list(result.response[k]) for k in keys if result.response.get(k)), [])
            items += listed
            total = result.response.get("TotalCount")
            if total is None:
                if len(listed) < limit:
                    return Listing(items, result)
                continue
            if len(items) >= int(total):
                return Listing(items, result)
            if not listed:
                return Listing(items, result, short_of=int(total))

    async def with_contents(self, index: CertificateIndex, certificate_ids: list[str]) -> CertificateIndex:
        """`index` with the content of `certificate_ids` (DescribeCertificateDetail, one each, concurrently under
        the action's gate); the key material the answer carries was dropped by the client. Never raises."""
        wanted = [c for c in dict.fromkeys(certificate_ids) if c not in index.contents]
        answers = await asyncio.gather(
            *(self.call(ACTION_DESCRIBE_CERTIFICATE_DETAIL, {"CertificateId": c}, URGENT, "", None) for c in wanted)
        )
        contents, skipped = dict(index.contents), dict(index.contents_skipped)
        for cert_id, result in zip(wanted, answers, strict=True):
            if result is None or not result.ok:
                skipped[cert_id] = f"DescribeCertificateDetail answered {result.code if result else NOT_SENT}"
                continue
            detail = result.response.get("CertificateDetail") or {}
            try:
                contents[cert_id] = read_content(str(detail.get("CertificateContent") or ""))
            except UnreadableContent as exc:
                skipped[cert_id] = f"its content could not be read ({exc})"
        return replace(index, contents=contents, contents_skipped=skipped)

    async def call(
        self, action: str, params: dict[str, Any], priority: float, listener_id: str, row_number: int | None
    ) -> CallResult | None:
        """One read with retries (the answer recorded through `on_read`); None when the run stopped before it was
        sent."""

        async def once(_previous: CallResult | None) -> CallResult | None:
            sent_at: list[float] = []
            try:
                result = await self._quota.send(
                    self._api, action, params, priority=priority, before_send=lambda: sent_at.append(time.time())
                )
            except GateClosed:
                return None
            if self._on_read is not None:
                self._on_read(listener_id, result, sent_at[0], row_number, action)
            return result

        tries = await retry_call(
            once, policy=self._policy, sleeper=self._sleeper, rng=self._rng, decide=backoff_if_retryable
        )
        return tries.last or (tries.results[-1] if tries.results else None)


def _reading_of(result: CallResult | None) -> Reading:
    """A DescribeRules answer as a Reading: the domains, an absent listener (None), or a failure."""
    if result is None:
        return Reading(None, failed=True, code=NOT_SENT)
    if result.ok:
        return Reading(live_domains(result.response), result.request_id, sent_at_s=result.sent_at_s)
    if classify.says_listener_absent(result.code or "", result.message):
        return Reading(None, result.request_id, sent_at_s=result.sent_at_s)
    code, message = result.code or "", result.message
    return Reading(None, result.request_id, failed=True, code=code, sent_at_s=result.sent_at_s, message=message)
