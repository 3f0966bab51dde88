"""The emulator worlds and quick runner configurations tests share: one builder per kind of world, keyword options for
what varies. A world is the emulator's world file as a dict (the contract in `batchcert/emulator/world.py`), so a
test can edit it, write it out for a rehearsal, or load it with `emu.World.from_dict`.

- `migration_world`: listeners whose domains all sit on cert-old, and the mapping rows moving every domain to
  cert-new (both cover *.example.com) — the world most tests run in; `one_row_listeners` makes its listeners of one
  domain each.
- `batch_world`: a migration world of one-row listeners, optionally a hot listener, and two rows that end terminal —
  what the rerun, journal and two-operator tests run, interrupt and resume.
- `small_world`: two 3.0 listeners and a 2.0 one, wildcard and exact certificates, client CAs — for the emulator's
  own tests and single calls through the official SDK.
- `accounts_world`: several accounts (`{"accounts": …}`), each a migration world signed with its own credential
  (`account_keys`), and the rows with the account as a fourth column (Profile).

A test keeps a builder of its own only for a world nothing else needs (an estate of every connection kind, the
rows of one scenario); its docstring says what is specific about it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from batchcert import emulator as emu
from batchcert.runner import RunnerConfig

SECRET_ID = "AKIDtestsuite00000000000000000000001"
SECRET_KEY = "test-secret-key-0123456789abcdef"

#: mapping rows: (ListenerId, Domain, CertificateId)
Triples = list[tuple[str, str, str]]

#: retries a test does not wait for (the defaults start at 0.25 s and double to 8 s): for tests about what is retried,
#: not about when
QUICK_RETRIES = RunnerConfig(backoff_initial_s=0.05, backoff_jitter_s=0.02, backoff_max_s=0.2)
#: quick retries, and a first guess of a listener's task near the fast worlds' (task_seconds 0.02–0.1): the pacer does
#: not start by waiting the default 0.5 s between a listener's changes
QUICK_TASKS = replace(QUICK_RETRIES, listener_task_s=0.05)


def migration_world(
    listeners: Mapping[str, Sequence[str] | int],
    *,
    domain_format: str = "d{i}-{listener}.example.com",
    **overrides: Any,
) -> tuple[dict[str, Any], Triples]:
    """World data (test credentials, 20/s, 0.3 s tasks, 20 ms latency, no TLS edge) where each listener's domains sit
    on cert-old, and the mapping rows moving every domain to cert-new; both certificates cover *.example.com.

    `listeners` maps each listener id to its domains, or to how many it has: then they are named by `domain_format`
    from the domain's index `i`, the `listener` id and its `name` (the id without "listener-"). `overrides` set
    rate_limit, task_seconds, faults, … (any key of the world file)."""
    domains_of = {
        lid: [domain_format.format(i=i, listener=lid, name=lid.removeprefix("listener-")) for i in range(spec)]
        if isinstance(spec, int)
        else list(spec)
        for lid, spec in listeners.items()
    }
    world: dict[str, Any] = {
        "credentials": {SECRET_ID: SECRET_KEY},
        "rate_limit": 20,
        "task_seconds": 0.3,
        "latency_ms": 20,
        "listeners": {
            lid: {"certificate_id": "cert-old", "domains": {d: {"certificate_id": "cert-old"} for d in domains}}
            for lid, domains in domains_of.items()
        },
        "certificates": {
            "cert-old": {"type": 2, "domains": ["*.example.com"]},
            "cert-new": {"type": 2, "domains": ["*.example.com"]},
        },
        # no TLS edge unless a test is about what it serves (edge=True): the suite's runs then probe nothing and
        # stay fast (each finds its domains `unreachable` at once: no access address)
        "edge": False,
        **overrides,
    }
    return world, [(lid, d, "cert-new") for lid, domains in domains_of.items() for d in domains]


def one_row_listeners(n: int, prefix: str = "s", width: int = 7) -> dict[str, list[str]]:
    """`n` listeners of one domain each, for `migration_world`: listener-{prefix}{i, `width` digits} holding
    {prefix}{i}.example.com."""
    return {f"listener-{prefix}{i:0{width}d}": [f"{prefix}{i}.example.com"] for i in range(n)}


def batch_world(singles: int, hot: int = 0, latency_ms: float = 20, **overrides: Any) -> tuple[emu.World, Triples]:
    """`singles` one-row listeners, one listener (listener-hot00001) with `hot` rows, plus two rows that end terminal:
    t.other.org, which cert-new does not cover, and gone.example.com, which listener-term0001 does not have.
    0.2 s tasks; `overrides` as for `migration_world`."""
    listeners: dict[str, Sequence[str] | int] = dict(one_row_listeners(singles))
    if hot:
        listeners["listener-hot00001"] = [f"h{i}.example.com" for i in range(hot)]
    listeners["listener-term0001"] = ["t.other.org"]
    data, rows = migration_world(listeners, task_seconds=0.2, latency_ms=latency_ms, **overrides)
    data["certificates"]["cert-old"]["domains"].append("t.other.org")
    return emu.World.from_dict(data), [*rows, ("listener-term0001", "gone.example.com", "cert-new")]


def small_world(**overrides: Any) -> emu.World:
    """A small world: two 3.0 listeners (one with 50 domains), a 2.0 listener, wildcard and exact server certificates,
    client CAs. `overrides` as for `migration_world`."""
    data: dict[str, Any] = {
        "credentials": {SECRET_ID: SECRET_KEY},
        "rate_limit": 20,
        "task_seconds": 0.3,
        "latency_ms": 5,
        "listeners": {
            "listener-aaaa0001": {
                "certificate_id": "cert-listener1",
                "domains": {
                    "www.example.com": {"certificate_id": "cert-old00001"},
                    "api.example.com": {"certificate_id": "default"},
                    "shop.other.org": {"certificate_id": "cert-old00001"},
                },
            },
            "listener-aaaa0002": {
                "certificate_id": "cert-listener1",
                "domains": {f"d{i}.example.com": {"certificate_id": "cert-old00001"} for i in range(50)},
            },
            "listener-old00001": {
                "proxy_version": "2.0",
                "domains": {"www.example.com": {"certificate_id": "cert-old00001"}},
            },
        },
        "certificates": {
            "cert-old00001": {"type": 2, "domains": ["*.example.com", "shop.other.org"]},
            "cert-listener1": {"type": 2, "domains": ["*.example.com"]},
            "cert-wild0001": {"type": 2, "domains": ["*.example.com", "example.com"]},
            "cert-exact001": {"type": 2, "domains": ["www.example.com"]},
            "cert-client01": {"type": 1, "domains": []},
            "cert-client02": {"type": 1, "domains": []},
        },
    }
    data.update(overrides)
    return emu.World.from_dict(data)


def account_keys(account: str) -> tuple[str, str]:
    """The test credential (SecretId, SecretKey) of `account` in `accounts_world`: distinct for distinct names, the
    same every run, and none of them the one-account worlds' SECRET_ID."""
    digest = hashlib.sha256(account.encode("utf-8")).hexdigest()
    return f"AKIDtestacct{digest[:24]}", f"test-key-{digest[24:56]}"


def accounts_world(
    accounts: Mapping[str, Mapping[str, Sequence[str] | int]], **knobs: Any
) -> tuple[dict[str, Any], list[tuple[str, str, str, str]]]:
    """A world file of several accounts (`{"accounts": …}`, the contract in `batchcert/emulator/accounts.py`): each
    account's world built as `migration_world` builds one from its listeners (`knobs` for every account, as its
    `overrides`), signed with the account's own credential (`account_keys`); and the mapping rows with the
    account as a fourth column (Profile): (ListenerId, Domain, CertificateId, account)."""
    worlds: dict[str, Any] = {}
    rows: list[tuple[str, str, str, str]] = []
    for account, listeners in accounts.items():
        secret_id, secret_key = account_keys(account)
        world, triples = migration_world(listeners, **knobs)
        worlds[account] = world | {"credentials": {secret_id: secret_key}}
        rows += [(lid, domain, cert, account) for lid, domain, cert in triples]
    return {"accounts": worlds}, rows
