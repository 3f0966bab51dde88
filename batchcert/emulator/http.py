"""The emulator's aiohttp web server: `POST /` answers API requests (the latency, the signature, then the service;
HTTP 200 with `Content-Type: application/json` exactly for API errors, non-API pages and dropped connections for the
transport faults), the test hooks under `/_emulator/` (never part of the real API: ledger, world, stats, release, the
TLS edge's address), and `run_site`, which serves an app on a loopback port. It serves one account
(`service.Emulator`) or several (`accounts.EstateEmulator`) alike: both are `Served`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import struct
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from email.utils import formatdate
from typing import Any, Protocol

from aiohttp import web

from batchcert.emulator.admission import claimed_secret_id
from batchcert.emulator.outcomes import ApiError, ConnectionAborted, HttpFault
from batchcert.emulator.writes import LedgerEntry


class Served(Protocol):
    """What the web server needs of the emulator it serves (`service.Emulator`, `accounts.EstateEmulator`). Latency
    and the server's clock are asked for by the SecretId the request names (`claimed_secret_id`), before it is
    verified: with several accounts each has its own, and the account that answers a request is the one it names."""

    def world_dict(self) -> dict[str, Any]: ...

    @property
    def ledger(self) -> Sequence[LedgerEntry]: ...

    @property
    def stats(self) -> Counter[str]: ...

    @property
    def edge_address(self) -> tuple[str, int] | None: ...

    def release(self, listener_id: str | None = None) -> None: ...

    def draw_latency_s(self, secret_id: str = "") -> float: ...

    def server_time(self, secret_id: str = "") -> float: ...

    def authenticate(self, headers: Mapping[str, str], body: bytes) -> str: ...

    async def answer(self, secret_id: str, action: str, body: bytes, request_id: str) -> dict[str, Any]: ...


def build_app(served: Served) -> web.Application:
    """The aiohttp application of an emulator: the API at `/` and the test hooks under `/_emulator/`."""
    front = _Front(served)
    app = web.Application()
    app.router.add_post("/", front.handle)
    app.router.add_get("/_emulator/ledger", front.get_ledger)
    app.router.add_get("/_emulator/world", front.get_world)
    app.router.add_get("/_emulator/stats", front.get_stats)
    app.router.add_post("/_emulator/release", front.post_release)
    app.router.add_get("/_emulator/edge", front.get_edge)
    return app


@contextlib.asynccontextmanager
async def run_site(
    app: web.Application, host: str, port: int, ssl_context: ssl.SSLContext | None
) -> AsyncIterator[str]:
    """Serve `app` on `host:port` (0 = any free port) for the duration of the block; https when an `ssl_context`
    is given. Yields the base URL, such as `http://127.0.0.1:40123`. Pending handlers are cancelled on exit."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    await site.start()
    bound = runner.addresses[0]
    scheme = "https" if ssl_context else "http"
    try:
        yield f"{scheme}://{host}:{bound[1]}"
    finally:
        await runner.cleanup()


class _Front:
    """The request handlers of one served emulator."""

    def __init__(self, served: Served) -> None:
        self.served = served

    async def get_ledger(self, _: web.Request) -> web.Response:
        return _json(200, [e.__dict__ for e in self.served.ledger])

    async def get_world(self, _: web.Request) -> web.Response:
        return _json(200, self.served.world_dict())

    async def get_stats(self, _: web.Request) -> web.Response:
        return _json(200, dict(self.served.stats))

    async def get_edge(self, _: web.Request) -> web.Response:
        """Where the TLS edge listens: {"host": …, "port": …}, both null when none runs."""
        address = self.served.edge_address
        host, port = address if address is not None else (None, None)
        return _json(200, {"host": host, "port": port})

    async def post_release(self, request: web.Request) -> web.Response:
        self.served.release(request.query.get("listener"))
        return _json(200, {"released": True})

    async def handle(self, request: web.Request) -> web.StreamResponse:
        served = self.served
        body = await request.read()
        # the account the request names answers it, refusals included: its latency, later its clock
        named = claimed_secret_id(request.headers)
        latency_s = served.draw_latency_s(named)
        await asyncio.sleep(latency_s / 2)
        request_id = str(uuid.uuid4())
        try:
            secret_id = served.authenticate(request.headers, body)
            payload = await served.answer(secret_id, request.headers.get("X-TC-Action", ""), body, request_id)
        except ApiError as err:
            payload = {"Error": {"Code": err.code, "Message": err.message}}
        except HttpFault as fault:
            return web.Response(status=fault.status, text=fault.text, content_type="text/html")
        except ConnectionAborted:
            _reset(request)
            return web.Response(status=500)
        await asyncio.sleep(latency_s / 2)
        payload["RequestId"] = request_id
        response = _json(200, {"Response": payload})
        # the server's clock, skew included (several accounts: the named account's `clock_offset_s`)
        response.headers["Date"] = formatdate(served.server_time(named), usegmt=True)
        return response


def _json(status: int, payload: Any) -> web.Response:
    # The real service answers `application/json` with no charset; the SDK reads errors only under that exact type.
    return web.Response(
        status=status, body=json.dumps(payload).encode("utf-8"), headers={"Content-Type": "application/json"}
    )


def _reset(request: web.Request) -> None:
    """Abort the TCP connection with RST (SO_LINGER 0), so the client sees a connection reset."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
