"""Emulator behaviours seen on the wire: content type, signatures, limit message, faults, ledger, world contract."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from batchcert import emulator as emu
from batchcert.api.signing import canonical_request, sign_request, signature, string_to_sign, utc_date
from batchcert.errors import WorldError
from batchcert.live.certificates import domain_covered
from batchcert.model import Row
from tests.fake_api import EmulatorApi
from tests.virtual_time import run_virtual
from tests.worlds import SECRET_ID, SECRET_KEY, small_world

CHANGE = {"ListenerId": "listener-aaaa0001", "Domain": "www.example.com", "CertificateId": "cert-wild0001"}


async def post(
    url: str,
    action: str,
    params: dict[str, Any],
    *,
    timestamp: int | None = None,
    key: str = SECRET_KEY,
    content_type: str = "application/json",
    timeout_s: float = 5,
) -> tuple[int, dict[str, str], bytes]:
    body = json.dumps(params).encode()
    host = url.removeprefix("http://")
    signed = sign_request(
        secret_id=SECRET_ID,
        secret_key=key,
        service="gaap",
        host=host,
        action=action,
        version="2018-05-29",
        body=body,
        timestamp=timestamp or int(time.time()),
    )
    headers = dict(signed.headers)
    headers["Content-Type"] = content_type
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + "/", data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp,
    ):
        return resp.status, dict(resp.headers), await resp.read()


def error_of(raw: bytes) -> str | None:
    error = json.loads(raw)["Response"].get("Error")
    return error["Code"] if error else None


async def test_answers_exact_json_content_type_with_http_200_for_errors(served: tuple[str, emu.Emulator]) -> None:
    """Success and API errors both come as HTTP 200 with Content-Type exactly application/json and a RequestId."""
    url, _ = served
    for params in (CHANGE, {**CHANGE, "ListenerId": "listener-nope0000"}):
        status, headers, raw = await post(url, "ModifyCertificate", params)
        assert status == 200 and headers["Content-Type"] == "application/json"
        assert json.loads(raw)["Response"]["RequestId"]


async def test_signed_charset_mismatch_is_a_signature_failure(served: tuple[str, emu.Emulator]) -> None:
    """A body sent as 'application/json; charset=utf-8' but signed as 'application/json' fails the signature."""
    url, em = served
    _, _, raw = await post(url, "ModifyCertificate", CHANGE, content_type="application/json; charset=utf-8")
    assert error_of(raw) == "AuthFailure.SignatureFailure"
    assert em.ledger == []


async def test_expired_timestamp_is_signature_expire(served: tuple[str, emu.Emulator]) -> None:
    """A timestamp more than 300 s off the server clock gets AuthFailure.SignatureExpire; 290 s passes."""
    url, _ = served
    _, _, raw = await post(url, "DescribeRules", {"ListenerId": "listener-aaaa0001"}, timestamp=int(time.time()) - 400)
    assert error_of(raw) == "AuthFailure.SignatureExpire"
    _, _, raw = await post(url, "DescribeRules", {"ListenerId": "listener-aaaa0001"}, timestamp=int(time.time()) - 290)
    assert error_of(raw) is None


async def test_any_signed_header_list_with_content_type_and_host_is_accepted(served: tuple[str, emu.Emulator]) -> None:
    """SignedHeaders may list more headers (here x-tc-action) as long as content-type and host are among them."""
    url, _ = served
    host, ts, body = (
        url.removeprefix("http://"),
        int(time.time()),
        json.dumps({"ListenerId": "listener-aaaa0001"}).encode(),
    )
    signed = (("content-type", "application/json"), ("host", host), ("x-tc-action", "DescribeRules"))
    sig = signature(SECRET_KEY, ts, "gaap", string_to_sign(canonical_request(body, "", "", signed), ts, "gaap"))
    auth = f"TC3-HMAC-SHA256 Credential={SECRET_ID}/{utc_date(ts)}/gaap/tc3_request, SignedHeaders=content-type;host;x-tc-action, Signature={sig}"
    headers = {
        "Authorization": auth,
        "Content-Type": "application/json",
        "Host": host,
        "X-TC-Action": "DescribeRules",
        "X-TC-Version": "2018-05-29",
        "X-TC-Timestamp": str(ts),
    }
    async with aiohttp.ClientSession() as session, session.post(url + "/", data=body, headers=headers) as resp:
        assert error_of(await resp.read()) is None
    headers["Authorization"] = auth.replace("content-type;host;x-tc-action", "host;x-tc-action")
    async with aiohttp.ClientSession() as session, session.post(url + "/", data=body, headers=headers) as resp:
        assert error_of(await resp.read()) == "AuthFailure.SignatureFailure"


async def test_throttle_uses_the_real_message_and_counts_admitted_requests() -> None:
    """Past the limit in one second the answer is RequestLimitExceeded with the service's message format."""
    async with emu.serve(small_world(rate_limit=3, latency_ms=0)) as (url, em):
        answers = await asyncio.gather(
            *(post(url, "DescribeRules", {"ListenerId": "listener-aaaa0001"}) for _ in range(5))
        )
    errors = [json.loads(raw)["Response"].get("Error") for _, _, raw in answers]
    throttled = [e for e in errors if e]
    assert len(throttled) == 2 and em.max_admitted_in_window("DescribeRules") == 3
    assert throttled[0]["Message"] == (
        "Your current request times equals to `4` in a second, which exceeds the frequency limit `3` for a second."
    )


def test_forty_simultaneous_requests_admit_exactly_the_limit() -> None:
    """40 DescribeRules at once against the 20/s limit: exactly 20 admitted and 20 RequestLimitExceeded; a second
    later the window has room for 20 again. On virtual time with the emulator in process (tests/fake_api.py), where
    "at once" is exact; tests/test_sdk_oracle.py shows the official SDK the same over sockets."""

    async def burst(n: int) -> Counter[str | None]:
        answers = await asyncio.gather(
            *(api.send("DescribeRules", {"ListenerId": "listener-aaaa0002"}) for _ in range(n))
        )
        return Counter(a.code for a in answers)

    async def main() -> tuple[Counter[str | None], Counter[str | None]]:
        first = await burst(40)
        await asyncio.sleep(1.0)
        return first, await burst(21)

    api = EmulatorApi(small_world(latency_ms=0))
    first, later = run_virtual(main())
    assert first == Counter({None: 20, "RequestLimitExceeded": 20})
    assert later == Counter({None: 20, "RequestLimitExceeded": 1})
    assert api.emulator.max_admitted_in_window("DescribeRules") == 20


async def test_body_and_parameter_validation() -> None:
    """Non-JSON bodies and wrong types are InvalidParameter; both client id kinds at once are refused."""
    async with emu.serve(small_world()) as (url, _):
        _, _, raw = await post(url, "ModifyCertificate", {**CHANGE, "Domain": 7})
        assert error_of(raw) == "InvalidParameter"
        _, _, raw = await post(
            url,
            "ModifyCertificate",
            {**CHANGE, "ClientCertificateId": "cert-client01", "PolyClientCertificateIds": ["cert-client02"]},
        )
        assert error_of(raw) == "InvalidParameter"
        _, _, raw = await post(url, "Nonsense", {})
        assert error_of(raw) == "InvalidAction"


async def test_mutual_tls_change_and_describe_listeners() -> None:
    """Poly client CAs are applied and shown by DescribeRules; DescribeHTTPSListeners shows the listener busy."""
    async with emu.serve(small_world(task_seconds=5)) as (url, em):
        _, _, raw = await post(
            url, "ModifyCertificate", {**CHANGE, "PolyClientCertificateIds": ["cert-client01", "cert-client02"]}
        )
        assert error_of(raw) is None
        _, _, raw = await post(url, "DescribeRules", {"ListenerId": "listener-aaaa0001"})
        rule = next(r for r in json.loads(raw)["Response"]["DomainRuleSet"] if r["Domain"] == "www.example.com")
        assert [p["CertificateId"] for p in rule["PolyClientCertificateAliasInfo"]] == [
            "cert-client01",
            "cert-client02",
        ]
        _, _, raw = await post(url, "DescribeHTTPSListeners", {"ListenerId": "listener-aaaa0001"})
        listener = json.loads(raw)["Response"]["ListenerSet"][0]
        assert listener["ListenerStatus"] == 4 and listener["CertificateId"] == "cert-listener1"
        assert em.ledger[0].after["poly_client_certificate_ids"] == ["cert-client01", "cert-client02"]


async def test_scripted_faults_per_domain() -> None:
    """InternalError, 502 with HTML, reset, hang and apply-then-hang happen in order for the scripted domain."""
    faults = {
        "hang_seconds": 1.0,
        "domains": {
            "www.example.com": [
                {"kind": "InternalError"},
                {"kind": "http502"},
                {"kind": "reset"},
                {"kind": "hang"},
                {"kind": "apply_then_hang"},
            ]
        },
    }
    async with emu.serve(small_world(faults=faults, task_seconds=0)) as (url, em):
        _, _, raw = await post(url, "ModifyCertificate", CHANGE)
        assert error_of(raw) == "InternalError"
        status, headers, raw = await post(url, "ModifyCertificate", CHANGE)
        assert status == 502 and headers["Content-Type"].startswith("text/html")
        with pytest.raises(aiohttp.ClientError):
            await post(url, "ModifyCertificate", CHANGE)
        with pytest.raises(TimeoutError):
            await post(url, "ModifyCertificate", CHANGE, timeout_s=0.3)
        assert em.ledger == []
        with pytest.raises(TimeoutError):
            await post(url, "ModifyCertificate", CHANGE, timeout_s=0.3)
        assert len(em.ledger) == 1  # applied, though no answer came
        _, _, raw = await post(url, "ModifyCertificate", CHANGE)
        assert error_of(raw) is None and len(em.ledger) == 2


async def test_changing_domain_and_pinned_busy_listener() -> None:
    """A 'changing' fault holds the domain at DomainStatus 1; a pinned ListenerHasTask holds until released."""
    faults = {
        "domains": {
            "www.example.com": [{"kind": "changing", "seconds": 0.5}],
            "api.example.com": [{"kind": "ListenerHasTask", "seconds": -1}],
        }
    }
    async with emu.serve(small_world(faults=faults, task_seconds=0)) as (url, _):
        _, _, raw = await post(url, "ModifyCertificate", CHANGE)
        assert error_of(raw) == "FailedOperation.DomainStatusNotInRunning"
        await asyncio.sleep(0.6)
        _, _, raw = await post(url, "ModifyCertificate", CHANGE)
        assert error_of(raw) is None
        api = {**CHANGE, "Domain": "api.example.com"}
        for _ in range(2):
            _, _, raw = await post(url, "ModifyCertificate", api)
            assert error_of(raw) == "FailedOperation.ListenerHasTask"
        async with aiohttp.ClientSession() as session, session.post(url + "/_emulator/release") as resp:
            assert resp.status == 200
        _, _, raw = await post(url, "ModifyCertificate", api)
        assert error_of(raw) is None


def test_world_contract_round_trip_and_errors(tmp_path: Path) -> None:
    """A world written by to_dict loads back equal; off-contract files raise WorldError naming the problem."""
    world = small_world()
    again = emu.World.from_dict(json.loads(json.dumps(world.to_dict())))
    assert again.to_dict() == world.to_dict()
    with pytest.raises(WorldError, match="unknown fault kind"):
        emu.World.from_dict({"faults": {"probabilities": {"meteor": 0.1}}})
    (tmp_path / "w.json").write_text("{nope")
    with pytest.raises(WorldError, match="cannot read world file"):
        emu.load_world(tmp_path / "w.json")


def test_world_for_rows_makes_every_row_succeedable() -> None:
    """A world built from rows has each listener, domain and certificate of the right type, names covering the domain."""
    rows = [
        Row(2, "listener-x1", "a.example.com", "cert-s1", "cert-c1"),
        Row(3, "listener-x1", "b.example.com", "default", "", ("cert-c2",)),
    ]
    world = emu.world_for_rows(rows)
    assert set(world.listeners["listener-x1"].domains) == {"a.example.com", "b.example.com"}
    assert world.certificates["cert-s1"].type == 2 and domain_covered(
        world.certificates["cert-s1"].domains, "a.example.com"
    )
    assert world.certificates["cert-c1"].type == 1 and world.certificates["cert-c2"].type == 1


@pytest.mark.parametrize(
    ("names", "domain", "covered"),
    [
        (["*.example.com"], "www.example.com", True),
        (["*.example.com"], "example.com", False),
        (["*.example.com"], "a.b.example.com", False),
        (["www.example.com"], "WWW.Example.com", True),
        (["*.example.com"], "*.example.com", True),
        (["www.example.com"], "*.example.com", False),
    ],
)
def test_certificate_name_matching(names: list[str], domain: str, covered: bool) -> None:
    """Wildcards cover exactly one leftmost label; names compare case-insensitively."""
    assert domain_covered(names, domain) is covered
