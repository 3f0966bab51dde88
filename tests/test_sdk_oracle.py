"""The official SDK, pointed at the emulator, sees the behaviours of the real service (issue 2, part 4)."""

from __future__ import annotations

import concurrent.futures
import json
from collections.abc import Callable
from typing import Any

import pytest
from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.gaap.v20180529 import gaap_client, models

from tests.conftest import ThreadedEmulator
from tests.worlds import SECRET_ID, SECRET_KEY, small_world


def sdk(server: ThreadedEmulator, secret_id: str = SECRET_ID, secret_key: str = SECRET_KEY) -> gaap_client.GaapClient:
    http = HttpProfile(protocol="http", endpoint=server.base_url.removeprefix("http://"), reqTimeout=10)
    return gaap_client.GaapClient(credential.Credential(secret_id, secret_key), "", ClientProfile(httpProfile=http))


def modify(client: gaap_client.GaapClient, **params: Any) -> models.ModifyCertificateResponse:
    request = models.ModifyCertificateRequest()
    request.from_json_string(json.dumps(params))
    return client.ModifyCertificate(request)


def rules(client: gaap_client.GaapClient, listener_id: str) -> dict[str, models.DomainRuleSet]:
    request = models.DescribeRulesRequest()
    request.ListenerId = listener_id
    return {r.Domain: r for r in client.DescribeRules(request).DomainRuleSet}


def error_code(call: Callable[[], object]) -> str:
    with pytest.raises(TencentCloudSDKException) as info:
        call()
    return str(info.value.get_code())


def test_change_succeeds_with_request_id_and_shows_in_describe_rules(
    threaded_emulator: Callable[..., ThreadedEmulator],
) -> None:
    """A valid change answers a RequestId, lands in the ledger, and DescribeRules shows the new id and a changing status."""
    server = threaded_emulator()
    client = sdk(server)
    resp = modify(client, ListenerId="listener-aaaa0001", Domain="www.example.com", CertificateId="cert-wild0001")
    assert resp.RequestId
    assert server.emulator is not None
    [entry] = server.emulator.ledger
    assert (entry.listener_id, entry.domain, entry.request_id) == (
        "listener-aaaa0001",
        "www.example.com",
        resp.RequestId,
    )
    assert entry.before["certificate_id"] == "cert-old00001" and entry.after["certificate_id"] == "cert-wild0001"
    seen = rules(client, "listener-aaaa0001")
    assert seen["www.example.com"].CertificateId == "cert-wild0001"
    assert seen["www.example.com"].DomainStatus == 1
    assert seen["api.example.com"].CertificateId == "default"


def test_second_immediate_change_on_listener_gets_listener_has_task(
    threaded_emulator: Callable[..., ThreadedEmulator],
) -> None:
    """A change while the listener's task runs is refused with ListenerHasTask and applies nothing."""
    server = threaded_emulator(small_world(task_seconds=5))
    client = sdk(server)
    modify(client, ListenerId="listener-aaaa0001", Domain="www.example.com", CertificateId="cert-wild0001")
    code = error_code(
        lambda: modify(client, ListenerId="listener-aaaa0001", Domain="api.example.com", CertificateId="cert-wild0001")
    )
    assert code == "FailedOperation.ListenerHasTask"
    assert server.emulator is not None and len(server.emulator.ledger) == 1


@pytest.mark.parametrize(
    ("secret_id", "secret_key", "params", "expected"),
    [
        (
            SECRET_ID,
            "wrong-key",
            {
                "ListenerId": "listener-aaaa0001",
                "Domain": "www.example.com",
                "CertificateId": "cert-wild0001",
            },
            "AuthFailure.SignatureFailure",
        ),
        (
            "AKIDunknown000000000000000000000000",
            SECRET_KEY,
            {
                "ListenerId": "listener-aaaa0001",
                "Domain": "www.example.com",
                "CertificateId": "cert-wild0001",
            },
            "AuthFailure.SecretIdNotFound",
        ),
        (
            SECRET_ID,
            SECRET_KEY,
            {
                "ListenerId": "listener-nope0000",
                "Domain": "www.example.com",
                "CertificateId": "cert-wild0001",
            },
            "ResourceNotFound",
        ),
        (
            SECRET_ID,
            SECRET_KEY,
            {
                "ListenerId": "listener-aaaa0001",
                "Domain": "missing.example.com",
                "CertificateId": "cert-wild0001",
            },
            "ResourceNotFound",
        ),
        (
            SECRET_ID,
            SECRET_KEY,
            {"ListenerId": "listener-aaaa0001", "Domain": "shop.other.org", "CertificateId": "cert-wild0001"},
            "InvalidParameterValue.CertificateNotMatchDomain",
        ),
        (
            SECRET_ID,
            SECRET_KEY,
            {
                "ListenerId": "listener-aaaa0001",
                "Domain": "api.example.com",
                "CertificateId": "cert-exact001",
            },
            "InvalidParameterValue.CertificateNotMatchDomain",
        ),
        (
            SECRET_ID,
            SECRET_KEY,
            {
                "ListenerId": "listener-old00001",
                "Domain": "www.example.com",
                "CertificateId": "cert-wild0001",
            },
            "FailedOperation.ProxyVersionNotSupport",
        ),
        (
            SECRET_ID,
            SECRET_KEY,
            {"ListenerId": "listener-aaaa0001", "Domain": "www.example.com"},
            "MissingParameter",
        ),
        (
            SECRET_ID,
            SECRET_KEY,
            {
                "ListenerId": "listener-aaaa0001",
                "Domain": "www.example.com",
                "CertificateId": "cert-client01",
            },
            "InvalidParameterValue",
        ),
        (
            SECRET_ID,
            SECRET_KEY,
            {
                "ListenerId": "listener-aaaa0001",
                "Domain": "www.example.com",
                "CertificateId": "cert-wild0001",
                "ClientCertificateId": "cert-wild0001",
            },
            "InvalidParameterValue",
        ),
        (
            SECRET_ID,
            SECRET_KEY,
            {
                "ListenerId": "listener-aaaa0001",
                "Domain": "www.example.com",
                "CertificateId": "cert-nothere1",
            },
            "InvalidParameterValue",
        ),
    ],
)
def test_sdk_sees_the_service_error_codes(
    threaded_emulator: Callable[..., ThreadedEmulator],
    secret_id: str,
    secret_key: str,
    params: dict[str, Any],
    expected: str,
) -> None:
    """Each invalid request gets the service's error code through the official SDK, and nothing is applied."""
    server = threaded_emulator()
    assert error_code(lambda: modify(sdk(server, secret_id, secret_key), **params)) == expected
    assert server.emulator is not None and server.emulator.ledger == []


def test_unknown_parameter_is_refused(threaded_emulator: Callable[..., ThreadedEmulator]) -> None:
    """A parameter the API does not know gets UnknownParameter (sent through the SDK's generic call)."""
    server = threaded_emulator()
    client = sdk(server)
    params = {
        "ListenerId": "listener-aaaa0001",
        "Domain": "www.example.com",
        "CertificateId": "cert-wild0001",
        "Colour": "red",
    }
    assert error_code(lambda: client.call_json("ModifyCertificate", params)) == "UnknownParameter"


def test_forty_simultaneous_calls_admit_at_most_the_limit(
    threaded_emulator: Callable[..., ThreadedEmulator],
) -> None:
    """40 simultaneous DescribeRules calls: each answers OK or RequestLimitExceeded, as the emulator decided, and the
    throttled ones come as the SDK's RequestLimitExceeded. How many of the 40 fall within one second depends on how
    busy the machine is; that exactly 20 are admitted and 20 throttled when they arrive at once is
    tests/test_emulator.py's, on virtual time."""
    server = threaded_emulator(small_world(latency_ms=0))
    client = sdk(server)

    def call(_: int) -> str:
        try:
            rules(client, "listener-aaaa0002")
            return "OK"
        except TencentCloudSDKException as exc:
            return str(exc.get_code())

    with concurrent.futures.ThreadPoolExecutor(40) as pool:
        codes = list(pool.map(call, range(40)))
    admitted, throttled = codes.count("OK"), codes.count("RequestLimitExceeded")
    assert admitted + throttled == 40
    assert server.emulator is not None
    assert (admitted, throttled) == (server.emulator.stats["OK"], server.emulator.stats["RequestLimitExceeded"])
    # the calls leave together: 21 of them landing within one second is all this needs (they took 0.13–0.23 s beside
    # two busy processes on two cores)
    assert throttled >= 1
    assert server.emulator.max_admitted_in_window("DescribeRules") <= 20


def test_the_real_services_harder_readings_as_the_sdk_sees_them(
    threaded_emulator: Callable[..., ThreadedEmulator],
) -> None:
    """Per-listener CAM denial, a missing listener answered as InvalidParameter, a transient code as a fault, the
    `default` client-CA shapes, a change that is accepted then rolled back, and the client-CA reset of a change that
    names none — each as the official SDK parses it."""
    import time

    world = small_world(task_seconds=0.3, missing_listener_code="InvalidParameter")
    world.listeners["listener-aaaa0002"].denied_actions = ["ModifyCertificate"]
    world.faults.domains = {
        "www.example.com": [{"kind": "code", "code": "FailedOperation.ResourceUpgrading"}],
        "api.example.com": [{"kind": "task_fail"}],
    }
    domain = world.listeners["listener-aaaa0001"].domains["shop.other.org"]
    domain.client_certificate_id, domain.poly_client_certificate_ids = "cert-client01", ["cert-client01"]
    server = threaded_emulator(world)
    client = sdk(server)

    def change(listener_id: str, domain: str) -> Callable[[], object]:
        return lambda: modify(client, ListenerId=listener_id, Domain=domain, CertificateId="cert-wild0001")

    assert error_code(change("listener-aaaa0002", "d1.example.com")) == "AuthFailure.UnauthorizedOperation"
    assert error_code(lambda: rules(client, "listener-gone0001")) == "InvalidParameter"
    assert error_code(change("listener-aaaa0001", "www.example.com")) == "FailedOperation.ResourceUpgrading"
    seen = rules(client, "listener-aaaa0001")
    assert seen["www.example.com"].ClientCertificateId == "default"
    assert [(p.CertificateId, p.CertificateAlias) for p in seen["www.example.com"].PolyClientCertificateAliasInfo] == [
        ("default", "默认证书")
    ]
    modify(client, ListenerId="listener-aaaa0001", Domain="api.example.com", CertificateId="cert-wild0001")
    assert rules(client, "listener-aaaa0001")["api.example.com"].DomainStatus == 1
    time.sleep(0.6)
    after = rules(client, "listener-aaaa0001")["api.example.com"]
    assert (after.CertificateId, after.DomainStatus) == ("default", 0)  # rolled back when the task failed
    modify(client, ListenerId="listener-aaaa0001", Domain="shop.other.org", CertificateId="cert-old00001")
    assert rules(client, "listener-aaaa0001")["shop.other.org"].ClientCertificateId == "default"  # CAs were reset


def test_closed_connections_and_per_listener_task_times_as_the_sdk_sees_them(
    threaded_emulator: Callable[..., ThreadedEmulator],
) -> None:
    """A listener on a closed connection answers ProxyStatusNotInRuning; a listener with its own long task time
    refuses a second change with ListenerHasTask while another listener's short task has ended."""
    import time

    world = small_world(task_seconds=0.05)
    world.listeners["listener-aaaa0001"].proxy_status = "CLOSED"
    world.listeners["listener-aaaa0002"].task_seconds = 5.0
    server = threaded_emulator(world)
    client = sdk(server)

    def change(listener_id: str, domain: str) -> Callable[[], object]:
        return lambda: modify(client, ListenerId=listener_id, Domain=domain, CertificateId="cert-wild0001")

    assert error_code(change("listener-aaaa0001", "www.example.com")) == "FailedOperation.ProxyStatusNotInRuning"
    change("listener-aaaa0002", "d1.example.com")()
    time.sleep(0.2)
    assert error_code(change("listener-aaaa0002", "d2.example.com")) == "FailedOperation.ListenerHasTask"


def test_certificate_detail_parses_into_the_sdk_model_with_real_x509_content(
    threaded_emulator: Callable[..., ThreadedEmulator],
) -> None:
    """DescribeCertificateDetail as the official SDK parses it: a CertificateDetail whose content is PEM the SANs of
    which are the world's domains, a fake key for a server certificate, none for a client CA, and the documented
    codes for a missing and an unknown id."""
    from cryptography import x509

    from batchcert.emulator.pki import FAKE_KEY_MARKER

    client = sdk(threaded_emulator())

    def describe(certificate_id: str | None) -> models.DescribeCertificateDetailResponse:
        request = models.DescribeCertificateDetailRequest()
        if certificate_id is not None:
            request.CertificateId = certificate_id
        return client.DescribeCertificateDetail(request)

    resp = describe("cert-wild0001")
    assert resp.RequestId
    detail = resp.CertificateDetail
    assert isinstance(detail, models.CertificateDetail)
    assert (detail.CertificateId, detail.CertificateType, detail.SubjectCN) == ("cert-wild0001", 2, "*.example.com")
    assert all(isinstance(t, int) for t in (detail.CreateTime, detail.BeginTime, detail.EndTime))
    leaf, issuer = x509.load_pem_x509_certificates(detail.CertificateContent.encode())
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["*.example.com", "example.com"]
    leaf.verify_directly_issued_by(issuer)
    assert FAKE_KEY_MARKER in detail.CertificateKey
    assert describe("cert-client01").CertificateDetail.CertificateKey is None
    assert error_code(lambda: describe(None)) == "MissingParameter"
    assert error_code(lambda: describe("cert-nope0001")) == "ResourceNotFound"
