"""The GAAP API client: signed async calls over aiohttp, one request per `send`.

It only sends: when to send is `batchcert.schedule`'s business (its `Quota.send` is the way every request goes
out, so no caller can forget the ceiling). Every failure becomes a `CallResult` with a code — `failure_of` is the
one map from what ended a request (an exception, an HTTP status other than 200) to its code; this module never
raises for a per-call problem. It implements `batchcert.model.Api`, so the runner can be driven by a fake.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import aiohttp

from batchcert import classify
from batchcert.api.credentials import CredentialSource
from batchcert.api.signing import sign_request
from batchcert.api.vocabulary import API_VERSION, SECRET_BEARING_ACTIONS, SECRET_FIELDS, SERVICE
from batchcert.errors import CredentialsError
from batchcert.model import CallResult
from batchcert.settings import Credentials, Endpoint

# the name the log has always had (a --verbose line shows it)
log = logging.getLogger("batchcert.client")

SIGNATURE_EXPIRE = "AuthFailure.SignatureExpire"
#: the code of a request never sent because its temporary keys could not be refreshed: a code that stops the run
#: (classify: STOP_RUN), so the row ends `retryable`, rows not yet sent `not_attempted`, and nothing raises through
#: the runner. The service's own word for an expired or wrong token ("Token verification failed":
#: https://github.com/tencentcloudstack/pulumi-tencentcloud/pull/25; docs/gaap-api.md, "Credentials"); the message
#: names the provider that failed
CREDENTIALS_UNAVAILABLE = "AuthFailure.TokenFailure"
#: connections the session keeps at most: as many as the runner works listeners at once (`runner.run.MAX_LANES`),
#: each with one change or read in flight. With fewer, a request the rate gate granted waits in aiohttp's connector
#: queue after the gate logged it as sent, and every wait costs a future and a wake-up: 19,973 waits in a 10,000-row
#: run against the fast emulator at 100 connections, 0 at 256 (docs/scheduling.md, "CPU"). At the API's 20/s a few
#: are open at a time; the rest are opened only on demand.
MAX_CONNECTIONS = 256


def create_session(
    endpoint: Endpoint, ca_bundle: Path | None = None, max_connections: int = MAX_CONNECTIONS
) -> aiohttp.ClientSession:
    """An aiohttp session for `endpoint`. TLS verification is always on for https (`ca_bundle` adds trusted CAs);
    proxy variables (HTTPS_PROXY) are honoured except for loopback endpoints. Must be called inside a running loop."""
    ssl_context: ssl.SSLContext | bool = False
    if endpoint.scheme == "https":
        ssl_context = ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle else None)
    connector = aiohttp.TCPConnector(limit=max_connections, ssl=ssl_context)
    # the per-request bound is `GaapClient`'s own asyncio.timeout, so aiohttp keeps no timers of its own; the API
    # sets no cookies (a jar would only cost time per request)
    return aiohttp.ClientSession(
        connector=connector,
        trust_env=not endpoint.is_loopback,
        timeout=aiohttp.ClientTimeout(total=None),
        cookie_jar=aiohttp.DummyCookieJar(),
    )


class GaapClient:
    """Signed calls to one endpoint with one credential: fixed keys, or a `CredentialSource` asked for its current
    keys before each request is signed (temporary keys refreshed before they expire). Owns no session (the caller
    closes it). `clock` is the wall clock the signature's timestamp comes from."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        endpoint: Endpoint,
        credentials: Credentials | CredentialSource,
        timeout_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._session = session
        self._endpoint = endpoint
        self._credentials = credentials if isinstance(credentials, CredentialSource) else CredentialSource(credentials)
        self._timeout_s = timeout_s
        self._clock = clock
        #: seconds to add to the local clock when signing; set once from the server's Date header after SignatureExpire
        self.clock_offset_s = 0.0
        self._clock_corrected = False

    async def send(self, action: str, params: dict[str, Any]) -> CallResult:
        """Sign afresh, send now, and classify the answer into a `CallResult`. Never raises for network or API
        problems; bounded by the timeout."""
        credentials = self._credentials.ready()
        if credentials is None:  # temporary keys due for refresh: wait for the one refresh under way
            try:
                credentials = await self._credentials.current()
            except CredentialsError as exc:
                log.error("not sent: %s", exc)
                return _failure(TransportFailure(CREDENTIALS_UNAVAILABLE, f"not sent: {exc}", sent=False), _now())
        body = json.dumps(params, ensure_ascii=False).encode("utf-8")
        offset_used = self.clock_offset_s
        signed = sign_request(
            secret_id=credentials.secret_id,
            secret_key=credentials.secret_key,
            token=credentials.token,
            service=SERVICE,
            host=self._endpoint.host,
            action=action,
            version=API_VERSION,
            body=body,
            timestamp=int(self._clock() + offset_used),
        )
        started = asyncio.get_running_loop().time()
        try:
            async with asyncio.timeout(self._timeout_s):
                async with self._session.post(
                    self._endpoint.url + "/", data=signed.body, headers=signed.headers
                ) as resp:
                    raw = await resp.read()
                    status, date_header = resp.status, resp.headers.get("Date", "")
        except (TimeoutError, aiohttp.ClientError) as exc:
            return _failure(failure_of(exc, timeout_s=self._timeout_s), started)
        result = _parse_answer(status, raw, started, secret_bearing=action in SECRET_BEARING_ACTIONS)
        del raw  # a DescribeCertificateDetail answer carries a private key: keep no copy of the bytes
        if result.code == SIGNATURE_EXPIRE and self._clock_was_off(offset_used, date_header):
            # our clock was off: the caller retries, re-signed with the corrected offset (policy table)
            log.warning(
                "the local clock is %+.0f s off the server's: signing with the server's time", self.clock_offset_s
            )
            result = replace(
                result,
                code=classify.CLOCK_CORRECTED,
                message=f"{SIGNATURE_EXPIRE}: {result.message} (clock offset now {self.clock_offset_s:+.0f} s)",
            )
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


@dataclass(frozen=True)
class TransportFailure:
    """A request that got no API answer: the code its `CallResult` carries, the message, whether the request may
    have reached the service, and the HTTP status when one came back."""

    code: str
    message: str
    sent: bool = True
    http_status: int | None = None


def failure_of(problem: BaseException | int, *, timeout_s: float = 0.0, body: bytes = b"") -> TransportFailure:
    """The exception map: what ended a request without an API answer — an exception from the request, or an HTTP
    status other than 200 (`body` is what came with it) — as its code (`classify`'s `Transport.*`). First match wins:
    aiohttp's exceptions nest (a certificate error is a TLS error is a connection error is an OS error), and its
    socket timeouts are TimeoutErrors too. A failure to connect was never sent."""
    if isinstance(problem, int):
        return TransportFailure(
            classify.transport_http(problem), f"HTTP {problem}: {_snippet(body)}", http_status=problem
        )
    if isinstance(problem, TimeoutError):
        return TransportFailure(classify.TRANSPORT_TIMEOUT, f"no answer within {timeout_s:g} s")
    if isinstance(problem, aiohttp.ClientConnectorCertificateError):
        return TransportFailure(classify.TRANSPORT_CERTIFICATE, str(problem), sent=False)
    if isinstance(problem, aiohttp.ClientConnectorSSLError):
        return TransportFailure(classify.TRANSPORT_TLS, str(problem), sent=False)
    if isinstance(problem, aiohttp.ClientConnectorError):
        return TransportFailure(classify.TRANSPORT_CONNECT, str(problem), sent=False)
    if isinstance(problem, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return TransportFailure(classify.TRANSPORT_RESET, str(problem) or type(problem).__name__)
    if isinstance(problem, aiohttp.ClientOSError):
        reset = problem.errno in (errno.ECONNRESET, errno.EPIPE)
        return TransportFailure(classify.TRANSPORT_RESET if reset else classify.TRANSPORT_CLIENT, str(problem))
    return TransportFailure(classify.TRANSPORT_CLIENT, f"{type(problem).__name__}: {problem}")


def _now() -> float:
    return asyncio.get_running_loop().time()


def _snippet(body: bytes) -> str:
    """The start of an answer that was not the API's, for the message."""
    return body[:200].decode("utf-8", "replace").strip()


def _failure(failure: TransportFailure, started: float) -> CallResult:
    latency = asyncio.get_running_loop().time() - started
    return CallResult(
        code=failure.code,
        message=failure.message,
        http_status=failure.http_status,
        latency_s=latency,
        sent=failure.sent,
        sent_at_s=started,
    )


def _parse_answer(status: int, raw: bytes, started: float, *, secret_bearing: bool = False) -> CallResult:
    """Read `Response.Error` whatever the Content-Type: the service answers errors with HTTP 200, and a gateway may
    send another type (docs/gaap-api.md, "Answers"). For a `secret_bearing` action the key material is dropped here,
    and an answer that cannot be read is never quoted."""
    if status != 200:
        return _failure(failure_of(status, body=b"" if secret_bearing else raw), started)
    latency = asyncio.get_running_loop().time() - started
    try:
        data = json.loads(raw)
        response = data["Response"]
        if not isinstance(response, dict):
            raise TypeError("Response is not an object")
    except (ValueError, KeyError, TypeError):
        return CallResult(
            classify.TRANSPORT_INVALID,
            "not an API answer" + ("" if secret_bearing else f": {_snippet(raw)}"),
            http_status=status,
            latency_s=latency,
            sent_at_s=started,
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
            sent_at_s=started,
        )
    if secret_bearing:
        response = drop_secrets(response)
    return CallResult(
        code=None, request_id=request_id, http_status=status, latency_s=latency, response=response, sent_at_s=started
    )


def drop_secrets(value: Any) -> Any:
    """`value` without any `SECRET_FIELDS` key at any depth (docs/gaap-api.md, "Certificate content")."""
    if isinstance(value, dict):
        return {k: drop_secrets(v) for k, v in value.items() if k not in SECRET_FIELDS}
    if isinstance(value, list):
        return [drop_secrets(v) for v in value]
    return value
