"""TC3-HMAC-SHA256: known-answer vectors from the reference and agreement with the official SDK's signer."""

from __future__ import annotations

import json
from typing import Any
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st
from tencentcloud.common import credential
from tencentcloud.common.http.request import RequestInternal
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.gaap.v20180529 import gaap_client

from batchcert.api import signing

CVM_BODY = b'{"Limit": 1, "Filters": [{"Values": ["\\u672a\\u547d\\u540d"], "Name": "instance-name"}]}'
GAAP_BODY = b'{"ListenerId": "listener-xxx", "Domain": "www.test.com", "CertificateId": "cert-12345678"}'


def test_cvm_documentation_vector() -> None:
    """The doc example (CVM DescribeInstances) gives the documented body hash, canonical hash and signature."""
    assert signing.sha256_hex(CVM_BODY) == "35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
    canonical = signing.canonical_request(CVM_BODY, "application/json; charset=utf-8", "cvm.tencentcloudapi.com")
    assert signing.sha256_hex(canonical.encode()) == "5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031"
    to_sign = signing.string_to_sign(canonical, 1551113065, "cvm")
    assert (
        signing.signature("Gu5t9xGARNpq86cd98joQYCN3EXAMPLE", 1551113065, "cvm", to_sign)
        == "72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
    )


def test_gaap_vector_full_authorization_header() -> None:
    """The GAAP vector gives the documented body hash and signature in a well-formed Authorization header."""
    assert signing.sha256_hex(GAAP_BODY) == "e8c6bc188c3a392f98c84abff1ce7cb6078e24bc832d324be6f5ac341f32fecb"
    signed = signing.sign_request(
        secret_id="AKIDEXAMPLE",
        secret_key="secretEXAMPLE",
        service="gaap",
        host="gaap.tencentcloudapi.com",
        action="ModifyCertificate",
        version="2018-05-29",
        body=GAAP_BODY,
        timestamp=1551113065,
    )
    assert signed.headers["Authorization"] == (
        "TC3-HMAC-SHA256 Credential=AKIDEXAMPLE/2019-02-25/gaap/tc3_request, SignedHeaders=content-type;host, "
        "Signature=f140b478a8170d0746b83115fe333060d4e36648501ffd45917882639da82b51"
    )
    assert signed.headers["Content-Type"] == "application/json"
    assert signed.headers["X-TC-Timestamp"] == "1551113065"


def test_date_is_utc_not_local() -> None:
    """One second before and after UTC midnight fall on different credential dates, whatever the local zone."""
    assert signing.utc_date(1551139199) == "2019-02-25"
    assert signing.utc_date(1551139200) == "2019-02-26"


def test_parse_authorization_round_trip_and_rejects_malformed() -> None:
    """A header we build parses back; truncated or foreign headers parse to None."""
    signed = signing.sign_request(
        secret_id="AKIDx",
        secret_key="k",
        service="gaap",
        host="h",
        action="A",
        version="v",
        body=b"{}",
        timestamp=1,
    )
    parsed = signing.parse_authorization(signed.headers["Authorization"])
    assert parsed is not None and parsed.secret_id == "AKIDx" and parsed.signed_headers == ("content-type", "host")
    for bad in (
        "",
        "Basic abc",
        "TC3-HMAC-SHA256 Credential=a/b/c",
        "TC3-HMAC-SHA256 Credential=a/b/c/tc3_request, SignedHeaders=, Signature=x",
    ):
        assert signing.parse_authorization(bad) is None


def sdk_authorization(
    params: dict[str, Any], host: str, secret_id: str, secret_key: str, timestamp: int
) -> tuple[str, bytes]:
    """The Authorization header and body the official SDK builds for these params at this (patched) clock."""
    client = gaap_client.GaapClient(
        credential.Credential(secret_id, secret_key),
        "",
        ClientProfile(httpProfile=HttpProfile(endpoint=host)),
    )
    req = RequestInternal(host, "POST", "/", header={})
    with mock.patch("tencentcloud.common.abstract_client.time.time", return_value=float(timestamp)):
        client._build_req_with_tc3_signature("ModifyCertificate", params, req)
    body = req.data.encode("utf-8") if isinstance(req.data, str) else req.data
    return req.header["Authorization"], body


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)
hosts = st.builds(
    lambda name, port: name if port is None else f"{name}:{port}",
    st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z0-9]{1,10}){0,3}", fullmatch=True),
    st.none() | st.integers(1, 65535),
)
# timestamps spread over decades plus a dense band around UTC midnights
timestamps = st.integers(0, 2**32) | st.builds(
    lambda day, off: day * 86400 + off, st.integers(0, 30000), st.integers(-3, 3)
)


@settings(max_examples=250, deadline=None)
@given(
    params=st.dictionaries(st.text(min_size=1, max_size=12), json_values, max_size=5),
    host=hosts,
    secret_id=st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=40),
    # the SDK refuses keys with surrounding white space, as credential files strip it anyway
    secret_key=st.text(min_size=1, max_size=40).filter(lambda k: k.strip() == k),
    timestamp=timestamps,
)
def test_matches_official_sdk(
    params: dict[str, Any], host: str, secret_id: str, secret_key: str, timestamp: int
) -> None:
    """For random bodies (unicode included), hosts with ports, keys and timestamps, our header equals the SDK's."""
    expected, body = sdk_authorization(params, host, secret_id, secret_key, timestamp)
    assert body == json.dumps(params).encode("utf-8")
    ours = signing.sign_request(
        secret_id=secret_id,
        secret_key=secret_key,
        service="gaap",
        host=host,
        action="ModifyCertificate",
        version="2018-05-29",
        body=body,
        timestamp=timestamp,
    )
    assert ours.headers["Authorization"] == expected
