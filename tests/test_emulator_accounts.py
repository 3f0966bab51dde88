"""The emulator knows accounts (issue 25, point 3): a world file of several accounts (`batchcert.emulator.accounts`)
loads, round-trips and refuses what it must; served on one endpoint, each account's listeners exist for its own
credential only, each account has its own rate limit, clock and edge, the ledger names the SecretId and account of
every change, and temporary keys expire per account as in one."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.gaap.v20180529 import gaap_client, models

from batchcert import classify
from batchcert import emulator as emu
from batchcert.api.client import GaapClient, create_session
from batchcert.errors import WorldError
from batchcert.model import CallResult
from batchcert.settings import Credentials, parse_endpoint
from tests.worlds import SECRET_ID, SECRET_KEY, account_keys, accounts_world, migration_world

ALPHA, BETA = "alpha", "beta corp"  # a name with a space: printable, so an account name
SHARED = "listener-shared"  # a listener id both accounts have: two different listeners


def two_accounts(**knobs: Any) -> dict[str, Any]:
    """alpha and beta, each with listener-shared (a.example.com in alpha, b.example.com in beta) and a listener only
    it has (listener-alpha, listener-beta, one domain each: d0-listener-….example.com); no latency, short tasks."""
    data, _ = accounts_world(
        {
            ALPHA: {SHARED: ["a.example.com"], "listener-alpha": 1},
            BETA: {SHARED: ["b.example.com"], "listener-beta": 1},
        },
        **({"latency_ms": 0, "task_seconds": 0.05} | knobs),
    )
    return data


def creds(account: str) -> Credentials:
    secret_id, secret_key = account_keys(account)
    return Credentials(secret_id, secret_key)


#: sends one request signed with the given keys: (credentials, action, params) → what the client saw
Send = Callable[[Credentials, str, dict[str, Any]], Awaitable[CallResult]]


@contextlib.asynccontextmanager
async def served(data: dict[str, Any], **kwargs: Any) -> AsyncIterator[tuple[str, emu.EstateEmulator, Send]]:
    """The estate of `data` on loopback, and a sender through batchcert's own client (one session)."""
    async with emu.serve_estate(emu.Estate.from_dict(data), **kwargs) as (url, estate):
        endpoint = parse_endpoint(url)
        async with create_session(endpoint) as session:

            async def send(keys: Credentials, action: str, params: dict[str, Any]) -> CallResult:
                return await GaapClient(session, endpoint, keys, timeout_s=10).send(action, params)

            yield url, estate, send


def rules_of(result: CallResult) -> set[str]:
    assert result.ok, result
    return {rule["Domain"] for rule in result.response["DomainRuleSet"]}


# -- the world file


def test_an_estate_round_trips_and_keeps_same_named_listeners_apart(tmp_path: Path) -> None:
    """to_dict reproduces the contract (reloaded, it writes the same again); the same listener id is a listener of
    each account; load_estate reads this form as an Estate and a one-account file as a World."""
    data = two_accounts()
    estate = emu.Estate.from_dict(data)
    assert estate.accounts.keys() == {ALPHA, BETA} and list(estate.accounts) == [ALPHA, BETA]
    assert list(estate.accounts[ALPHA].listeners[SHARED].domains) == ["a.example.com"]
    assert list(estate.accounts[BETA].listeners[SHARED].domains) == ["b.example.com"]
    written = estate.to_dict()
    assert list(written) == ["accounts"] and list(written["accounts"]) == [ALPHA, BETA]
    assert written["accounts"][BETA]["credentials"] == dict([account_keys(BETA)])
    assert emu.Estate.from_dict(json.loads(json.dumps(written))).to_dict() == written

    path = tmp_path / "estate.json"
    path.write_text(json.dumps(data))
    loaded = emu.load_estate(path)
    assert isinstance(loaded, emu.Estate) and loaded.to_dict() == written
    one, _ = migration_world({"listener-x": ["x.example.com"]})
    path.write_text(json.dumps(one))
    assert isinstance(emu.load_estate(path), emu.World)
    assert emu.load_world(path).credentials == {SECRET_ID: SECRET_KEY}


def test_accounts_without_credentials_get_their_own_distinct_derived_ones() -> None:
    """No `credentials`: each account a credential of its own from its name — the same on every load, never the
    demo id (which two accounts would then share), written out by to_dict."""
    data: dict[str, Any] = {"accounts": {n: {"listeners": {}, "certificates": {}} for n in ("one", "two", "x y")}}
    estate = emu.Estate.from_dict(data)
    ids = [next(iter(world.credentials)) for world in estate.accounts.values()]
    assert len(set(ids)) == 3 and emu.DEMO_SECRET_ID not in ids
    assert all(secret_id.startswith("AKIDbatchcert") for secret_id in ids)
    assert ids == [next(iter(w.credentials)) for w in emu.Estate.from_dict(data).accounts.values()]
    assert estate.credentials_of("x y").secret_id == ids[2] == emu.account_credential("x y")[0]
    assert emu.Estate.from_dict(estate.to_dict()).to_dict() == estate.to_dict()


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ({"accounts": {"a": {}}, "rate_limit": 5, "edge": False}, "edge, rate_limit"),
        ({"accounts": {}}, "names no account"),
        ({"accounts": []}, "must be an object"),
        ({"accounts": {"": {}}}, "account name ''"),
        ({"accounts": {" a": {}}}, "account name ' a'"),
        ({"accounts": {"a\tb": {}}}, "account name 'a\\tb'"),
        ({"accounts": {"a": []}}, "account 'a': its world must be a JSON object"),
        ({"accounts": {"a": {"accounts": {"b": {}}}}}, "account 'a': world file does not follow"),
        ({"accounts": {"a": {"latency_ms": -1}}}, "account 'a': world file does not follow"),
        (
            {"accounts": {"a": {"credentials": {"AKIDsame": "k1"}}, "b": {"credentials": {"AKIDsame": "k2"}}}},
            "SecretId AKIDsame is in the credentials of accounts 'a' and 'b'",
        ),
    ],
)
def test_off_contract_estates_are_refused_saying_what(data: dict[str, Any], says: str) -> None:
    with pytest.raises(WorldError) as info:
        emu.Estate.from_dict(data)
    assert says in str(info.value)


def test_a_one_account_loader_refuses_a_file_of_several_accounts(tmp_path: Path) -> None:
    """load_world (and World.from_dict) do not read `accounts` as an empty world with the demo credential."""
    path = tmp_path / "estate.json"
    path.write_text(json.dumps(two_accounts()))
    with pytest.raises(WorldError, match="load_estate"):
        emu.load_world(path)


# -- served


async def test_a_listener_belongs_to_its_account_only() -> None:
    """Read and changed with its account's credential it works; with the other account's it answers as missing
    (the official SDK sees the same); the same id in each account is a listener of each; the ledger — in process
    and at /_emulator/ledger — names the SecretId and the account of the change."""
    alpha, beta = creds(ALPHA), creds(BETA)
    change = {"ListenerId": "listener-beta", "Domain": "d0-listener-beta.example.com", "CertificateId": "cert-new"}
    async with served(two_accounts()) as (url, estate, send):
        assert rules_of(await send(alpha, "DescribeRules", {"ListenerId": SHARED})) == {"a.example.com"}
        assert rules_of(await send(beta, "DescribeRules", {"ListenerId": SHARED})) == {"b.example.com"}
        assert (await send(alpha, "DescribeRules", {"ListenerId": "listener-beta"})).code == "ResourceNotFound"
        assert (await send(alpha, "ModifyCertificate", change)).code == "ResourceNotFound"
        assert await asyncio.to_thread(sdk_modify_code, url, alpha, change) == "ResourceNotFound"
        assert estate.ledger == []
        assert (await send(beta, "ModifyCertificate", change)).ok
        async with aiohttp.ClientSession() as session, session.get(f"{url}/_emulator/ledger") as resp:
            hooked = await resp.json()
        async with aiohttp.ClientSession() as session, session.get(f"{url}/_emulator/world") as resp:
            world = await resp.json()
    [entry] = estate.ledger
    assert (entry.account, entry.secret_id, entry.listener_id) == (BETA, beta.secret_id, "listener-beta")
    assert estate.emulator_of(ALPHA).ledger == [] and estate.emulator_of(BETA).ledger == [entry]
    assert [(e["account"], e["secret_id"], e["domain"]) for e in hooked] == [(BETA, beta.secret_id, change["Domain"])]
    assert list(world["accounts"]) == [ALPHA, BETA]
    assert world["accounts"][BETA]["listeners"]["listener-beta"]["domains"][change["Domain"]]["certificate_id"] == (
        "cert-new"
    )
    assert estate.account_of(beta.secret_id) == BETA and estate.account_of("AKIDnobody") is None


def sdk_modify_code(url: str, keys: Credentials, change: dict[str, str]) -> str:
    """The error code the official SDK raises for a ModifyCertificate signed with `keys`."""
    http = HttpProfile(protocol="http", endpoint=url.removeprefix("http://"), reqTimeout=10)
    client = gaap_client.GaapClient(
        credential.Credential(keys.secret_id, keys.secret_key), "", ClientProfile(httpProfile=http)
    )
    request = models.ModifyCertificateRequest()
    request.from_json_string(json.dumps(change))
    with pytest.raises(TencentCloudSDKException) as info:
        client.ModifyCertificate(request)
    return str(info.value.get_code())


async def test_each_account_has_its_own_rate_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """alpha (5/s) sent twice its limit and beta (8/s) its limit, all at once: alpha admitted 5 and was throttled
    for the rest, beta throttled for none of its 8. The rate window's clock stands still (every request in the
    same instant), so the counts hold however slowly a loaded machine sends them."""
    data = two_accounts(rate_limit=5)
    data["accounts"][BETA]["rate_limit"] = 8
    now = emu.monotonic_s()
    monkeypatch.setattr("batchcert.emulator.admission.monotonic_s", lambda: now)
    alpha, beta = creds(ALPHA), creds(BETA)
    read = {"ListenerId": SHARED}
    async with served(data) as (_, estate, send):
        answers = await asyncio.gather(
            *(send(alpha, "DescribeRules", read) for _ in range(10)),
            *(send(beta, "DescribeRules", read) for _ in range(8)),
        )
    assert Counter(a.code for a in answers[:10]) == {None: 5, "RequestLimitExceeded": 5}
    assert Counter(a.code for a in answers[10:]) == {None: 8}
    assert estate.max_admitted_in_window("DescribeRules", account=ALPHA) == 5
    assert estate.max_admitted_in_window("DescribeRules", account=BETA) == 8
    assert estate.stats == {"OK": 13, "RequestLimitExceeded": 5}


async def test_expired_temporary_keys_and_unknown_ids_are_refused_in_an_estate() -> None:
    """Temporary keys of beta past their expiry answer AuthFailure.TokenFailure, its live ones with their token
    work; a SecretId of no account is AuthFailure.SecretIdNotFound, as one account answers it."""
    now = time.time()
    data = two_accounts()
    data["accounts"][BETA]["credentials"] = {
        "AKIDbetaExpired": {"key": "expired-key", "token": "t1", "expires_at": now - 60},
        "AKIDbetaLive": {"key": "live-key", "token": "t2", "expires_at": now + 600},
    }
    read = {"ListenerId": SHARED}
    async with served(data) as (_, estate, send):
        expired = await send(Credentials("AKIDbetaExpired", "expired-key", "t1"), "DescribeRules", read)
        live = await send(Credentials("AKIDbetaLive", "live-key", "t2"), "DescribeRules", read)
        unknown = await send(Credentials("AKIDnobody", "some-key"), "DescribeRules", read)
        alpha = await send(creds(ALPHA), "DescribeRules", read)
    assert expired.code == "AuthFailure.TokenFailure"
    assert rules_of(live) == {"b.example.com"} and rules_of(alpha) == {"a.example.com"}
    assert unknown.code == "AuthFailure.SecretIdNotFound"
    assert estate.emulator_of(BETA).stats["AuthFailure.TokenFailure"] == 1
    first = estate.estate.credentials_of(BETA)  # what beta signs with: its first key, token and expiry included
    assert (first.secret_id, first.token, first.expires_at) == ("AKIDbetaExpired", "t1", now - 60)


async def test_a_one_account_ledger_names_the_signing_secret_id_and_the_default_account() -> None:
    """The one-account emulator records the SecretId too, under the account name DEFAULT_ACCOUNT ("")."""
    data, [(listener_id, domain, certificate_id)] = migration_world({"listener-x": ["x.example.com"]})
    em = emu.Emulator(emu.World.from_dict(data))
    params = {"ListenerId": listener_id, "Domain": domain, "CertificateId": certificate_id}
    await em.answer(SECRET_ID, "ModifyCertificate", json.dumps(params).encode(), "req-1")
    [entry] = em.ledger
    assert (entry.secret_id, entry.account, entry.request_id) == (SECRET_ID, emu.DEFAULT_ACCOUNT, "req-1")


async def test_each_account_has_its_own_clock_and_edge() -> None:
    """beta's server clock runs an hour ahead: its answers' Date header says so (a client signing with the real
    clock learns +1 h from it and then succeeds) while alpha's does not; each account's TLS edge is its own, and
    its listings report its own port."""
    data = two_accounts(edge=True)
    data["accounts"][BETA]["clock_offset_s"] = 3600
    read = {"ListenerId": SHARED}
    async with served(data) as (url, estate, send):
        alpha = await send(creds(ALPHA), "DescribeHTTPSListeners", read)
        endpoint = parse_endpoint(url)
        async with create_session(endpoint) as session:
            beta_client = GaapClient(session, endpoint, creds(BETA), timeout_s=10)
            first = await beta_client.send("DescribeRules", read)
            beta = await beta_client.send("DescribeHTTPSListeners", read)
        edges = {account: estate.emulator_of(account).edge_address for account in (ALPHA, BETA)}
        first_edge = estate.edge_address
    assert alpha.ok and beta.ok, (alpha, beta)
    assert first.code == classify.CLOCK_CORRECTED and 3500 < beta_client.clock_offset_s < 3700
    ports = {ALPHA: alpha.response["ListenerSet"][0]["Port"], BETA: beta.response["ListenerSet"][0]["Port"]}
    assert ports == {account: edge[1] for account, edge in edges.items() if edge} and len(set(ports.values())) == 2
    assert first_edge == edges[ALPHA]
