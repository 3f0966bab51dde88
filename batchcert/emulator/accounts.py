"""Several Tencent Cloud accounts behind one emulator endpoint, as a managed-service provider runs GAAP: the world file
of several accounts (`Estate`, the contract below), reading either form of world file from disk (`load_world`,
`load_estate`), and `EstateEmulator`, one `service.Emulator` per account answering each request as the account its
SecretId belongs to, with `serve_estate` to put it on a loopback port.

The world file of several accounts (the one-account contract is `batchcert.emulator.world`'s docstring):
```
{"accounts": {"<account name>": <world object>,
              "<another account>": <world object>, ...}}
```
- Each value is a complete world object of the one-account contract: its own `credentials`, `rate_limit`,
  `latency_ms`, `clock_offset_s`, `proxies`, `groups`, `listeners`, `certificates`, `faults`, `edge`… Nothing else is
  at the top level: a file with `accounts` and any other key is refused, naming the other keys (which account would
  they be for?). An account's world holds no `accounts` of its own.
- Account names are non-empty, printable and without surrounding whitespace; the file's order is the accounts' order
  (the first answers what belongs to no account). At least one account.
- A SecretId belongs to one account: a SecretId in two accounts is refused on load, naming both.
- An account whose world has no `credentials` gets a credential of its own, derived from its name
  (`account_credential`: `AKIDbatchcert<name>…`, distinct for distinct names) — never the one-account demo id, which
  two accounts would share. `Estate.credentials_of` says what any account signs with; to_dict writes the derived
  credential out, so a saved estate reloads with the same keys.
- Ids are an account's own: the same listener (proxy, group, certificate) id in two accounts is two resources. A
  request signed with one account's credential sees its account only: another account's listener answers as a
  missing one does (`ResourceNotFound`, or the account's `missing_listener_code`), its writes change nothing there.
- Each account has its own rate-limit windows (per SecretId and action, as in one account: 20/s per action is each
  account credential's), latency, server clock, faults, ledger and TLS edge (its listings report its own edge). An
  unknown SecretId is answered `AuthFailure.SecretIdNotFound`, as one account answers it.
- Every ledger entry names the SecretId that signed the applied request and the account (`writes.LedgerEntry`).

`to_dict` writes this form back (each account's world as `World.to_dict` writes it), so a saved estate round-trips.
The test hooks (`batchcert.emulator.http`) serve the estate whole: `/_emulator/world` this form, `/_emulator/ledger`
every account's entries, `/_emulator/stats` the sums, `/_emulator/release` frees the listener in every account that
has it, `/_emulator/edge` is the first account's edge.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import ssl
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from batchcert.emulator import http
from batchcert.emulator.admission import claimed_secret_id, secret_id_not_found
from batchcert.emulator.faults import Faults
from batchcert.emulator.service import Emulator
from batchcert.emulator.world import World
from batchcert.emulator.writes import LedgerEntry
from batchcert.errors import WorldError
from batchcert.settings import Credentials

#: the one top-level key of a world file of several accounts
ACCOUNTS_KEY = "accounts"


def account_credential(account: str) -> tuple[str, str]:
    """(SecretId, SecretKey) of an account whose world gives none: derived from its name, so a file loads with the
    same keys every time, and distinct names get distinct keys (a SHA-256 of the name; the name's ASCII letters and
    digits only make the id readable)."""
    digest = hashlib.sha256(account.encode("utf-8")).hexdigest()
    readable = "".join(c for c in account if c.isascii() and c.isalnum())[:16]
    return f"AKIDbatchcert{readable}{digest[:20]}", f"batchcert-emulator-{digest[20:52]}"


@dataclass(frozen=True)
class Estate:
    """The worlds of several accounts, by account name in the world file's order (the contract in the module
    docstring). Each world stays mutable as any `World` is; the estate only says which account is which. Raises
    WorldError on construction for a bad account name or a SecretId in two accounts."""

    accounts: dict[str, World]

    def __post_init__(self) -> None:
        if not self.accounts:
            raise WorldError(f"`{ACCOUNTS_KEY}` names no account: give at least one, name → world")
        owner: dict[str, str] = {}
        for name, world in self.accounts.items():
            _check_name(name)
            for secret_id in world.credentials:
                if secret_id in owner:
                    raise WorldError(
                        f"SecretId {secret_id} is in the credentials of accounts {owner[secret_id]!r} and {name!r}: "
                        "a SecretId belongs to one account — give each account its own"
                    )
                owner[secret_id] = name

    @classmethod
    def from_dict(cls, data: Any) -> Estate:
        """The estate of a world file of several accounts. Raises WorldError saying what is wrong (and in which
        account)."""
        if not isinstance(data, dict) or ACCOUNTS_KEY not in data:
            raise WorldError(f'a world file of several accounts is {{"{ACCOUNTS_KEY}": {{"<name>": <world>, …}}}}')
        others = sorted(str(key) for key in data if key != ACCOUNTS_KEY)
        if others:
            raise WorldError(
                f"a world file with `{ACCOUNTS_KEY}` holds nothing else, but this one also has {', '.join(others)}: "
                "move them into the world of each account they are for — see batchcert.emulator.accounts"
            )
        spec = data[ACCOUNTS_KEY]
        if not isinstance(spec, dict):
            raise WorldError(f"`{ACCOUNTS_KEY}` must be an object: account name → world")
        worlds: dict[str, World] = {}
        for name, world_spec in spec.items():
            _check_name(name)
            if not isinstance(world_spec, dict):
                raise WorldError(f"account {name!r}: its world must be a JSON object (the world contract)")
            if not world_spec.get("credentials"):  # not the demo credential World.from_dict would give every account
                secret_id, secret_key = account_credential(name)
                world_spec = {**world_spec, "credentials": {secret_id: secret_key}}
            try:
                worlds[name] = World.from_dict(world_spec)
            except WorldError as exc:
                raise WorldError(f"account {name!r}: {exc}") from None
        return cls(worlds)

    def to_dict(self) -> dict[str, Any]:
        """The contract's JSON shape: every account's world as `World.to_dict` writes it."""
        return {ACCOUNTS_KEY: {name: world.to_dict() for name, world in self.accounts.items()}}

    def account_of(self, secret_id: str) -> str | None:
        """The account `secret_id` belongs to (None: no account's). Looked up in the worlds' current credentials,
        so keys a test adds while serving (`World.add_credential`) count; were one added to two accounts, the first
        in order would own it."""
        return next((name for name, world in self.accounts.items() if secret_id in world.credentials), None)

    def credentials_of(self, account: str) -> Credentials:
        """What `account` signs with: its world's first credential, with its token and expiry when temporary. Raises
        KeyError for an account the estate does not have."""
        world = self.accounts[account]
        secret_id, secret_key = next(iter(world.credentials.items()))
        temporary = world.temporary_credentials.get(secret_id)
        return Credentials(
            secret_id,
            secret_key,
            temporary.token if temporary else "",
            source=f"emulator account {account}",
            expires_at=temporary.expires_at if temporary else None,
        )


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not name or not name.isprintable() or name != name.strip():
        raise WorldError(
            f"account name {name!r} is not one: names are non-empty, printable, without surrounding whitespace"
        )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WorldError(f"cannot read world file {path}: {exc} — check the path and that it is JSON") from None


def load_world(path: Path) -> World:
    """Read a world file of one account. Raises WorldError when it is unreadable or off-contract — a file of several
    accounts included (`load_estate` reads either form)."""
    return World.from_dict(_read_json(path))


def load_estate(path: Path) -> World | Estate:
    """Read a world file of either form: a `World` for one account, an `Estate` for several (`accounts`). Raises
    WorldError when it is unreadable or off-contract."""
    data = _read_json(path)
    if isinstance(data, dict) and ACCOUNTS_KEY in data:
        return Estate.from_dict(data)
    return World.from_dict(data)


class EstateEmulator:
    """The emulated service of several accounts behind one endpoint: one `Emulator` per account of `estate` (each
    with its own admission windows, faults, ledger and edge), answering each request as the account whose credential
    signed it. It is what `http.build_app` serves (`http.Served`), as one `Emulator` is.

    A request naming no account's SecretId is refused by the first account's emulator, exactly as one account
    refuses it (`AuthFailure.SecretIdNotFound`; counted in that account's stats)."""

    def __init__(self, estate: Estate, wall_clock: Callable[[], float] = time.time) -> None:
        self.estate = estate
        self.emulators = {name: Emulator(world, wall_clock, account=name) for name, world in estate.accounts.items()}
        self._first = next(iter(self.emulators.values()))

    # -- which account
    @property
    def accounts(self) -> tuple[str, ...]:
        """The account names, in the world file's order."""
        return tuple(self.emulators)

    def account_of(self, secret_id: str) -> str | None:
        """The account `secret_id` belongs to (None: none)."""
        return self.estate.account_of(secret_id)

    def emulator_of(self, account: str) -> Emulator:
        """The emulator of one account: its world, ledger, stats, windows, edge. Raises KeyError for an unknown one."""
        return self.emulators[account]

    def _answering(self, secret_id: str) -> Emulator:
        """The emulator that answers a request naming `secret_id`: its account's, else the first (which refuses it)."""
        account = self.account_of(secret_id)
        return self.emulators[account] if account is not None else self._first

    # -- http.Served
    def world_dict(self) -> dict[str, Any]:
        return self.estate.to_dict()

    @property
    def ledger(self) -> list[LedgerEntry]:
        """Every account's applied changes: account by account in the estate's order, each in the order applied
        (the entries' `account` and `secret_id` say whose)."""
        return [entry for emulator in self.emulators.values() for entry in emulator.ledger]

    @property
    def stats(self) -> Counter[str]:
        """Answers given by every account, by code, summed (an account's own: `emulator_of(account).stats`)."""
        return sum((emulator.stats for emulator in self.emulators.values()), Counter())

    @property
    def requests(self) -> Counter[str]:
        """Requests received by every account, by action, summed."""
        return sum((emulator.requests for emulator in self.emulators.values()), Counter())

    @property
    def edge_address(self) -> tuple[str, int] | None:
        """The first account's TLS edge (each account's listings report its own: `emulator_of(a).edge_address`)."""
        return self._first.edge_address

    def release(self, listener_id: str | None = None) -> None:
        """Free pinned-busy listeners in every account (a listener id may be in several)."""
        for emulator in self.emulators.values():
            emulator.release(listener_id)

    def draw_latency_s(self, secret_id: str = "") -> float:
        return self._answering(secret_id).draw_latency_s()

    def server_time(self, secret_id: str = "") -> float:
        return self._answering(secret_id).server_time()

    def authenticate(self, headers: Mapping[str, str], body: bytes) -> str:
        """The SecretId of a request correctly signed for the account it names (that account's checks: signature,
        clock, token, expiry); a refusal is counted in that account's stats."""
        return self._answering(claimed_secret_id(headers)).authenticate(headers, body)

    async def answer(self, secret_id: str, action: str, body: bytes, request_id: str) -> dict[str, Any]:
        """Process an authenticated request as its account: that account's rate limit, listeners and ledger (see
        `Emulator.answer`). A SecretId of no account is refused — never answered as some account's."""
        account = self.account_of(secret_id)
        if account is None:
            refusal = secret_id_not_found()
            self._first.stats[refusal.code] += 1
            raise refusal
        return await self.emulators[account].answer(secret_id, action, body, request_id)

    # -- helpers for tests and tools
    def app(self) -> web.Application:
        return http.build_app(self)

    def max_admitted_in_window(self, action: str, window_s: float = 1.0, *, account: str) -> int:
        """The most requests of `action` one account admitted within any `window_s` (its credentials summed)."""
        return self.emulators[account].max_admitted_in_window(action, window_s)

    def remaining_faults(self) -> dict[str, Faults]:
        """Each account's faults with what its emulator has not consumed yet (`Emulator.remaining_faults`)."""
        return {name: emulator.remaining_faults() for name, emulator in self.emulators.items()}

    @contextlib.asynccontextmanager
    async def serving_edges(self) -> AsyncIterator[None]:
        """Run the TLS edge of every account whose world has one, for the duration of the block."""
        async with contextlib.AsyncExitStack() as stack:
            for emulator in self.emulators.values():
                await stack.enter_async_context(emulator.serving_edge())
            yield


@contextlib.asynccontextmanager
async def serve_estate(
    estate: Estate, host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None, **kwargs: Any
) -> AsyncIterator[tuple[str, EstateEmulator]]:
    """Serve the accounts of `estate` on one `host:port` (0 = any free port) for the duration of the block; https
    when an `ssl_context` is given. Each account whose world's `edge` is true has its TLS edge on a loopback port of
    its own meanwhile. `kwargs` go to `EstateEmulator` (`wall_clock`).

    Yields (base URL such as `http://127.0.0.1:40123`, the EstateEmulator); every account is reached at that URL with
    its own credential (`Estate.credentials_of`). Pending handlers are cancelled on exit."""
    served = EstateEmulator(estate, **kwargs)
    async with http.run_site(served.app(), host, port, ssl_context) as url, served.serving_edges():
        yield url, served
