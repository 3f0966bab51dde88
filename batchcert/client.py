"""The GAAP API client: signed async calls over aiohttp, one request per `send`.

It only sends: when to send is `batchcert.schedule`'s business (its `Quota.send` is the way every request goes
out, so no caller can forget the ceiling). Every failure becomes a `CallResult` with a code; this module never
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
from dataclasses import replace
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import aiohttp

from batchcert import classify
from batchcert.model import API_VERSION, SERVICE, CallResult
from batchcert.settings import Credentials, Endpoint
from batchcert.signing import sign_request

log = logging.getLogger("batchcert.client")

SIGNATURE_EXPIRE = "AuthFailure.SignatureExpire"


def create_session(
    endpoint: Endpoint, ca_bundle: Path | None = None, max_connections: int = 100
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
    """Signed calls to one endpoint with one credential. Owns no session (the caller closes it).
    `clock` is the wall clock the signature's timestamp comes from."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        endpoint: Endpoint,
        credentials: Credentials,
        timeout_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._session = session
        self._endpoint = endpoint
        self._credentials = credentials
        self._timeout_s = timeout_s
        self._clock = clock
        #: seconds to add to the local clock when signing; set once from the server's Date header after SignatureExpire
        self.clock_offset_s = 0.0
        self._clock_corrected = False

    async def send(self, action: str, params: dict[str, Any]) -> CallResult:
        """Sign afresh, send now, and classify the answer into a `CallResult`. Never raises for network or API
        problems; bounded by the timeout."""
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
        started = asyncio.get_running_loop().time()
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


def _failure(code: str, message: str, started: float, *, sent: bool = True) -> CallResult:
    latency = asyncio.get_running_loop().time() - started
    return CallResult(code=code, message=message, latency_s=latency, sent=sent, sent_at_s=started)


def _parse_answer(status: int, raw: bytes, started: float) -> CallResult:
    """Read `Response.Error` whatever the Content-Type: the service answers errors with HTTP 200, and a gateway may
    send another type (docs/gaap-api.md, "Answers")."""
    latency = asyncio.get_running_loop().time() - started
    if status != 200:
        snippet = raw[:200].decode("utf-8", "replace").strip()
        return CallResult(
            classify.transport_http(status),
            f"HTTP {status}: {snippet}",
            http_status=status,
            latency_s=latency,
            sent_at_s=started,
        )
    try:
        data = json.loads(raw)
        response = data["Response"]
        if not isinstance(response, dict):
            raise TypeError("Response is not an object")
    except (ValueError, KeyError, TypeError):
        snippet = raw[:200].decode("utf-8", "replace").strip()
        return CallResult(
            classify.TRANSPORT_INVALID,
            f"not an API answer: {snippet}",
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
    return CallResult(
        code=None, request_id=request_id, http_status=status, latency_s=latency, response=response, sent_at_s=started
    )
