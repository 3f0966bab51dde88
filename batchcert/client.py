"""The GAAP API client: a rate gate per action and signed async calls over aiohttp.

Every call goes through `Quota` (one `RateGate` per action), so no caller can forget the ceiling — retries and reads
included. Every failure becomes a `CallResult` with a code; this module never raises for a per-call problem.
"""

from __future__ import annotations

import asyncio
import errno
import heapq
import itertools
import json
import ssl
import time
from collections.abc import Callable
from dataclasses import replace
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiolimiter import AsyncLimiter

from batchcert import classify
from batchcert.model import API_VERSION, SERVICE, CallResult
from batchcert.settings import Credentials, Endpoint
from batchcert.signing import sign_request

#: Share of the ceiling the gate actually uses. The service counts by *arrival* time; requests spaced exactly
#: 1/rate apart land rate+1 in some 1 s window once arrival jitter shifts them by a few ms (reference, "Rate limiter
#: fact"). At 0.96 the 21st request trails the 1st by 1.04 s: 40 ms of jitter are absorbed.
RATE_MARGIN = 0.96
THROTTLED = "RequestLimitExceeded"
SIGNATURE_EXPIRE = "AuthFailure.SignatureExpire"


class GateClosed(Exception):
    """The gate was closed (the run is stopping): the call was not sent."""


class RateGate:
    """Admits callers one at a time, never more than `ceiling_per_s × RATE_MARGIN` per second on this clock.

    Pacing is aiolimiter's leaky bucket with a capacity of one (no bursts: `AsyncLimiter(rate, 1)` admits a burst of
    `rate` after every idle second, up to 2×rate in a sliding window), plus strict spacing from the moment the
    previous call actually went on the wire (`mark_sent`), so a stalled event loop cannot bunch two sends. Among waiting callers the one with the
    highest `priority` goes first (ties: first come), so long listener queues are not starved by short ones.

    Adaptive for a shared quota (console, other tools on the same sub-account): a throttled answer although we kept
    the ceiling means someone else spends part of it, so `rate_per_s` drops by 30% — once per round of feedback:
    throttles of calls granted before the last cut are already accounted for — and climbs back by
    `RECOVERY_SHARE` of the ceiling per success, never above it: the AIMD shape of botocore's adaptive retry mode,
    without its CUBIC curve. A cut also holds new grants for `HOLD_S`: the service counts a sliding second, so
    once it is full every further request is refused until old ones leave the window.
    """

    DECREASE = 0.7
    RECOVERY_SHARE = 0.0025
    MIN_RATE_PER_S = 0.5
    HOLD_S = 0.5

    def __init__(self, rate_per_s: float) -> None:
        self.ceiling_per_s = rate_per_s
        self.rate_per_s = rate_per_s
        self._limiter = AsyncLimiter(1, 1 / (rate_per_s * RATE_MARGIN))
        self._waiters: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._pump: asyncio.Task[None] | None = None
        self._last_grant = float("-inf")
        self._last_cut = float("-inf")  # monotonic, as loop.time()
        self._hold_until = float("-inf")
        self.closed = False

    async def acquire(self, priority: float = 0.0) -> float:
        """Wait for this caller's turn; returns the grant time (monotonic s) to pass to `throttled`. Raises
        GateClosed once `close` was called, also for callers already waiting. Cancellation while waiting gives up the
        turn without using a slot."""
        if self.closed:
            raise GateClosed
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (-priority, next(self._order), fut))
        if self._pump is None or self._pump.done():
            self._pump = asyncio.create_task(self._run_pump())
        try:
            await fut
        except asyncio.CancelledError:
            fut.cancel()
            raise
        return time.monotonic()

    async def _run_pump(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiters:
            await self._limiter.acquire()
            # Strict spacing from the last *send* (see `mark_sent`), re-checked after every wait: the leaky bucket
            # alone lets a grant catch up after an event-loop stall (a journal commit before a send), and two sends
            # closer than 1/rate would land rate+1 in some second at the service. Also honours the adaptive rate
            # and the hold after a throttle.
            while (wait := self._next_grant_at() - loop.time()) > 0:  # noqa: ASYNC110 - a moving deadline, not polling
                await asyncio.sleep(wait)
            while self._waiters and self._waiters[0][2].done():
                heapq.heappop(self._waiters)
            if self._waiters:
                heapq.heappop(self._waiters)[2].set_result(None)
                self._last_grant = loop.time()

    def _next_grant_at(self) -> float:
        """The earliest monotonic time for the next grant: one interval after the last send, and after any hold."""
        return max(self._last_grant + 1 / (self.rate_per_s * RATE_MARGIN), self._hold_until)

    def mark_sent(self) -> None:
        """The granted call is going on the wire now: later grants are spaced from this moment."""
        self._last_grant = max(self._last_grant, time.monotonic())

    def throttled(self, granted_at: float) -> None:
        """The service answered RequestLimitExceeded to a call this gate granted at `granted_at` (monotonic s)."""
        if granted_at > self._last_cut:
            self._last_cut = time.monotonic()
            self._hold_until = self._last_cut + self.HOLD_S
            self.rate_per_s = max(self.MIN_RATE_PER_S, self.rate_per_s * self.DECREASE)

    def succeeded(self) -> None:
        """A call this gate admitted was not throttled."""
        self.rate_per_s = min(self.ceiling_per_s, self.rate_per_s + self.RECOVERY_SHARE * self.ceiling_per_s)

    def close(self) -> None:
        """Admit no one any more: every waiter, and every later caller, gets GateClosed."""
        self.closed = True
        for _, _, fut in self._waiters:
            if not fut.done():
                fut.set_exception(GateClosed())
        self._waiters.clear()
        if self._pump is not None:
            self._pump.cancel()


class Quota:
    """One `RateGate` per action, all at the same ceiling (the service counts per API + sub-account)."""

    def __init__(self, rate_per_s: float) -> None:
        self.rate_per_s = rate_per_s
        self._gates: dict[str, RateGate] = {}
        self.closed = False

    def gate(self, action: str) -> RateGate:
        if action not in self._gates:
            self._gates[action] = RateGate(self.rate_per_s)
            self._gates[action].closed = self.closed
        return self._gates[action]

    def close(self) -> None:
        """Close every gate (see `RateGate.close`); gates made later are closed too."""
        self.closed = True
        for gate in self._gates.values():
            gate.close()


def create_session(
    endpoint: Endpoint, ca_bundle: Path | None = None, max_connections: int = 100
) -> aiohttp.ClientSession:
    """An aiohttp session for `endpoint`. TLS verification is always on for https (`ca_bundle` adds trusted CAs);
    proxy variables (HTTPS_PROXY) are honoured except for loopback endpoints. Must be called inside a running loop."""
    ssl_context: ssl.SSLContext | bool = False
    if endpoint.scheme == "https":
        ssl_context = ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle else None)
    connector = aiohttp.TCPConnector(limit=max_connections, ssl=ssl_context)
    return aiohttp.ClientSession(connector=connector, trust_env=not endpoint.is_loopback)


class GaapClient:
    """Signed calls to one endpoint with one credential. Owns no session (the caller closes it)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        endpoint: Endpoint,
        credentials: Credentials,
        quota: Quota,
        timeout_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._session = session
        self._endpoint = endpoint
        self._credentials = credentials
        self.quota = quota
        self._timeout_s = timeout_s
        self._clock = clock
        #: seconds to add to the local clock when signing; set once from the server's Date header after SignatureExpire
        self.clock_offset_s = 0.0
        self._clock_corrected = False

    async def call(
        self,
        action: str,
        params: dict[str, Any],
        *,
        priority: float = 0.0,
        before_send: Callable[[], None] | None = None,
    ) -> CallResult:
        """Wait for the action's rate gate, sign afresh, send, and classify the answer into a `CallResult`.

        `before_send` runs after the gate admits the call and just before it goes on the wire (journal it there).
        Never raises for network or API problems; bounded by the timeout once sent.
        """
        gate = self.quota.gate(action)
        granted_at = await gate.acquire(priority)
        body = json.dumps(params, ensure_ascii=False).encode("utf-8")
        offset_used = self.clock_offset_s
        signed = sign_request(
            secret_id=self._credentials.secret_id,
            secret_key=self._credentials.secret_key,
            token=self._credentials.token,
            service=SERVICE,
            host=self._endpoint.host,
            action=action,
            version=API_VERSION,
            body=body,
            timestamp=int(self._clock() + offset_used),
        )
        if before_send is not None:
            before_send()
        gate.mark_sent()
        started = time.monotonic()
        try:
            async with asyncio.timeout(self._timeout_s):
                async with self._session.post(
                    self._endpoint.url + "/", data=signed.body, headers=signed.headers
                ) as resp:
                    raw = await resp.read()
                    status, date_header = resp.status, resp.headers.get("Date", "")
        except TimeoutError:
            return _failure(classify.TRANSPORT_TIMEOUT, f"no answer within {self._timeout_s:g} s", started)
        except aiohttp.ClientConnectorCertificateError as exc:
            return _failure(classify.TRANSPORT_CERTIFICATE, str(exc), started, sent=False)
        except aiohttp.ClientConnectorSSLError as exc:
            return _failure(classify.TRANSPORT_TLS, str(exc), started, sent=False)
        except aiohttp.ClientConnectorError as exc:
            return _failure(classify.TRANSPORT_CONNECT, str(exc), started, sent=False)
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as exc:
            return _failure(classify.TRANSPORT_RESET, str(exc) or type(exc).__name__, started)
        except aiohttp.ClientOSError as exc:
            code = (
                classify.TRANSPORT_RESET if exc.errno in (errno.ECONNRESET, errno.EPIPE) else classify.TRANSPORT_CLIENT
            )
            return _failure(code, str(exc), started)
        except aiohttp.ClientError as exc:
            return _failure(classify.TRANSPORT_CLIENT, f"{type(exc).__name__}: {exc}", started)
        result = _parse_answer(status, raw, started)
        if result.code == SIGNATURE_EXPIRE and self._clock_was_off(offset_used, date_header):
            # our clock was off: the caller retries, re-signed with the corrected offset (policy table)
            result = replace(
                result,
                code=classify.CLOCK_CORRECTED,
                message=f"{SIGNATURE_EXPIRE}: {result.message} (clock offset now {self.clock_offset_s:+.0f} s)",
            )
        if (result.code or "").startswith(THROTTLED):
            gate.throttled(granted_at)
        elif result.http_status == 200:
            gate.succeeded()
        return result

    def _clock_was_off(self, offset_used: float, date_header: str) -> bool:
        """After SignatureExpire: correct the offset from the server's Date header — once per client — and say
        whether this request was signed with a wrong clock (before or at that correction). A SignatureExpire for a
        request signed after the correction is real (credentials, or a clock still off)."""
        if not self._clock_corrected:
            self._clock_corrected = self._learn_clock_offset(date_header)
            return self._clock_corrected
        return offset_used != self.clock_offset_s

    def _learn_clock_offset(self, date_header: str) -> bool:
        """Set the signing offset from the server's Date header; False when the header is missing or unreadable."""
        try:
            server_now = parsedate_to_datetime(date_header).timestamp()
        except (TypeError, ValueError, IndexError):
            return False
        self.clock_offset_s = server_now - self._clock()
        return True


def _failure(code: str, message: str, started: float, *, sent: bool = True) -> CallResult:
    return CallResult(code=code, message=message, latency_s=time.monotonic() - started, sent=sent)


def _parse_answer(status: int, raw: bytes, started: float) -> CallResult:
    """Read `Response.Error` whatever the Content-Type (reference: "Always read Response.Error")."""
    latency = time.monotonic() - started
    if status != 200:
        snippet = raw[:200].decode("utf-8", "replace").strip()
        return CallResult(
            classify.transport_http(status),
            f"HTTP {status}: {snippet}",
            http_status=status,
            latency_s=latency,
        )
    try:
        data = json.loads(raw)
        response = data["Response"]
        if not isinstance(response, dict):
            raise TypeError("Response is not an object")
    except (ValueError, KeyError, TypeError):
        snippet = raw[:200].decode("utf-8", "replace").strip()
        return CallResult(
            classify.TRANSPORT_INVALID, f"not an API answer: {snippet}", http_status=status, latency_s=latency
        )
    request_id = str(response.get("RequestId", ""))
    error = response.get("Error")
    if isinstance(error, dict):
        return CallResult(
            code=str(error.get("Code", "InternalError")),
            message=str(error.get("Message", "")),
            request_id=request_id,
            http_status=status,
            latency_s=latency,
        )
    return CallResult(code=None, request_id=request_id, http_status=status, latency_s=latency, response=response)
