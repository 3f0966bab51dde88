"""The emulated service as a whole: the handler table (action name → handler) and the `Emulator` composed of the
parts — admission, faults, reads, writes — that answers one request, plus `serve`, which puts an emulator on a
loopback port for the duration of a block, with its TLS edge (`edge`) when the world has one."""

from __future__ import annotations

import contextlib
import random
import ssl
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from batchcert.api.vocabulary import (
    ACTION_DESCRIBE_CERTIFICATE_DETAIL,
    ACTION_DESCRIBE_CERTIFICATES,
    ACTION_DESCRIBE_GROUPS,
    ACTION_DESCRIBE_HTTP_LISTENERS,
    ACTION_DESCRIBE_LISTENERS,
    ACTION_DESCRIBE_PROXIES,
    ACTION_DESCRIBE_RULES,
    ACTION_MODIFY,
    ACTION_MODIFY_LISTENER,
)
from batchcert.emulator import http
from batchcert.emulator.admission import Admission
from batchcert.emulator.clock import monotonic_s
from batchcert.emulator.edge import run_edge
from batchcert.emulator.faults import FaultInjector, Faults
from batchcert.emulator.outcomes import ApiError, ConnectionAborted, HttpFault
from batchcert.emulator.params import parse_body
from batchcert.emulator.reads import Reads
from batchcert.emulator.world import World
from batchcert.emulator.writes import DEFAULT_ACCOUNT, LedgerEntry, Writes

#: one action's handler: (parameters, RequestId, the SecretId that signed) → the `Response` payload (without RequestId)
Handler = Callable[[dict[str, Any], str, str], Awaitable[dict[str, Any]]]


def handler_table(reads: Reads, writes: Writes) -> dict[str, Handler]:
    """Every action the emulator answers, by name (any other is InvalidAction)."""

    def read(describe: Callable[[dict[str, Any]], dict[str, Any]]) -> Handler:
        async def handle(params: dict[str, Any], _request_id: str, _secret_id: str) -> dict[str, Any]:
            return describe(params)

        return handle

    return {
        ACTION_MODIFY: writes.modify_certificate,
        ACTION_DESCRIBE_RULES: read(reads.describe_rules),
        ACTION_DESCRIBE_LISTENERS: read(reads.describe_https_listeners),
        ACTION_DESCRIBE_HTTP_LISTENERS: read(reads.describe_http_listeners),
        ACTION_MODIFY_LISTENER: writes.modify_listener,
        ACTION_DESCRIBE_PROXIES: read(reads.describe_proxies),
        ACTION_DESCRIBE_GROUPS: read(reads.describe_groups),
        ACTION_DESCRIBE_CERTIFICATES: read(reads.describe_certificates),
        ACTION_DESCRIBE_CERTIFICATE_DETAIL: read(reads.describe_certificate_detail),
    }


class Emulator:
    """The emulated service. `app()` gives the aiohttp application; `ledger` and `stats` are for tests.

    `wall_clock` is the server's clock for signature checks (patch it to emulate skew); windows, tasks and
    latency use the monotonic clock. `account` names the account in the ledger (one of several:
    `batchcert.emulator.accounts`).
    """

    def __init__(
        self, world: World, wall_clock: Callable[[], float] = time.time, account: str = DEFAULT_ACCOUNT
    ) -> None:
        self.world = world
        self.account = account
        self.wall_clock: Callable[[], float] = (
            (lambda: wall_clock() + world.clock_offset_s) if world.clock_offset_s else wall_clock
        )
        self.started = monotonic_s()
        #: answers given, by code ("OK" for success) — e.g. stats["RequestLimitExceeded"]
        self.stats: Counter[str] = Counter()
        #: requests received, by X-TC-Action
        self.requests: Counter[str] = Counter()
        self.admission = Admission(world, self._wall_time, self.started)
        #: one generator for latencies and fault draws, seeded by the world
        self._rng = random.Random(world.faults.seed)
        self.faults = FaultInjector(world, self._rng)
        self.writes = Writes(world, self.faults, self._wall_time, account)
        #: the wall time certificates without dates are placed around (the `world` docstring, "Certificates")
        self.epoch = self.wall_clock()
        self.reads = Reads(world, self.epoch)
        self.handlers = handler_table(self.reads, self.writes)
        world.attach_all()

    @property
    def ledger(self) -> list[LedgerEntry]:
        """The changes applied, in order."""
        return self.writes.ledger

    @property
    def reverted(self) -> list[tuple[str, str]]:
        """(listener, domain) of changes whose task failed and were rolled back (fault `task_fail`)."""
        return self.writes.reverted

    @property
    def edge_address(self) -> tuple[str, int] | None:
        """(host, port) of the TLS edge while `serve` runs it, else None (the world's `edge` is false, or the emulator
        is used in process): the listings report it as the connections' access point (`reads`)."""
        return self.reads.edge_address

    @property
    def admitted(self) -> dict[tuple[str, str], deque[float]]:
        """Monotonic arrival times of admitted requests per (SecretId, action)."""
        return self.admission.admitted

    # -- public helpers for tests and tools
    def app(self) -> web.Application:
        return http.build_app(self)

    def release(self, listener_id: str | None = None) -> None:
        """Free pinned-busy listeners (all, or one) — the fault `ListenerHasTask` with `seconds` < 0 pins them."""
        for lid, listener in self.world.listeners.items():
            if listener_id in (None, lid):
                listener.pinned_busy = False
                listener.busy_until = 0.0

    def max_admitted_in_window(self, action: str, window_s: float = 1.0) -> int:
        """The most requests of `action` admitted within any `window_s` (all credentials summed)."""
        return self.admission.max_admitted_in_window(action, window_s)

    def remaining_faults(self) -> Faults:
        """The world's faults with the scripted ones this emulator has not consumed yet: what a world saved after a
        rehearsal keeps, so its rerun meets what is left, not the whole script again."""
        return self.faults.remaining()

    def draw_latency_s(self, secret_id: str = "") -> float:
        """This request's latency, half spent before processing and half after (`secret_id`, which signed it, says
        whose with several accounts; one account has one latency)."""
        return self._rng.uniform(*self.world.latency_ms) / 1000

    def server_time(self, secret_id: str = "") -> float:
        """The server's wall clock (skew included) as an answer to `secret_id` reads it in its `Date` header."""
        return self.wall_clock()

    def world_dict(self) -> dict[str, Any]:
        """The world's current state in the world contract (the `/_emulator/world` hook)."""
        return self.world.to_dict()

    @contextlib.asynccontextmanager
    async def serving_edge(self) -> AsyncIterator[None]:
        """Run the world's TLS edge (when its `edge` is true) for the duration of the block: the listings report its
        address meanwhile (`edge_address`)."""
        if not self.world.edge:
            yield
            return
        async with run_edge(self.world, self.epoch) as edge:
            self.reads.edge_address = edge.address
            try:
                yield
            finally:
                self.reads.edge_address = None

    def authenticate(self, headers: Mapping[str, str], body: bytes) -> str:
        """The SecretId of a correctly signed request; a refusal is counted in `stats` (not in `requests`)."""
        try:
            return self.admission.authenticate(headers, body)
        except ApiError as err:
            self.stats[err.code] += 1
            raise

    async def answer(self, secret_id: str, action: str, body: bytes, request_id: str) -> dict[str, Any]:
        """Process an authenticated request — the rate limit, then the action — and return the `Response` payload
        (without RequestId). Raises ApiError for an API error answer, HttpFault / ConnectionAborted for the
        transport faults. Counted in `requests` and `stats`. The HTTP handler and in-process test fakes share it."""
        self.requests[action] += 1
        try:
            self.admission.admit(secret_id, action)
            params = parse_body(body)
            self.admission.check_allowed(action)
            handler = self.handlers.get(action)
            if handler is None:
                raise ApiError("InvalidAction", f"The action `{action}` is not supported by gaap.")
            payload = await handler(params, request_id, secret_id)
        except ApiError as err:
            self.stats[err.code] += 1
            raise
        except HttpFault as fault:
            self.stats[f"fault:{fault.status}"] += 1
            raise
        except ConnectionAborted:
            self.stats["fault:abort"] += 1
            raise
        self.stats["OK"] += 1
        return payload

    def _wall_time(self) -> float:
        """`wall_clock` as it is when called (tests may replace it after construction)."""
        return self.wall_clock()


@contextlib.asynccontextmanager
async def serve(
    world: World, host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None, **kwargs: Any
) -> AsyncIterator[tuple[str, Emulator]]:
    """Serve an emulator on `host:port` (0 = any free port) for the duration of the block; https when an
    `ssl_context` is given. When the world's `edge` is true, its TLS edge runs on another loopback port meanwhile
    (`Emulator.edge_address`; the `world` docstring, "The TLS edge").

    Yields (base URL such as `http://127.0.0.1:40123`, the Emulator). Pending handlers are cancelled on exit.
    """
    emulator = Emulator(world, **kwargs)
    async with http.run_site(emulator.app(), host, port, ssl_context) as url, emulator.serving_edge():
        yield url, emulator
