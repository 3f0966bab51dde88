"""DescribeCertificateDetail in the emulator: real X.509 content made from the world's certificates (SANs, the three
chain forms, CA certificates), the same PEM in every emulator, a fake key for SSL certificates only, the documented
error codes, and admission (CAM denial, the per-action rate limit) as for every action."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from batchcert import emulator as emu
from batchcert.api.vocabulary import ACTION_DESCRIBE_CERTIFICATE_DETAIL, ACTION_DESCRIBE_CERTIFICATES
from batchcert.emulator import pki
from batchcert.errors import WorldError
from tests.worlds import SECRET_ID, SECRET_KEY

BEGIN, END = 1735689600, 1767225600  # 2025-01-01, 2026-01-01 (UTC)


def world_data(**certificates: dict[str, Any]) -> dict[str, Any]:
    """A world with no listeners and the given certificates, beside a dated wildcard server certificate `cert-wild`,
    its two chain variants and a client CA. This file's own: only these tests need certificates of every chain."""
    dated = {"begin_time": BEGIN, "end_time": END, "issuer_cn": "Example Issuing CA"}
    return {
        "credentials": {SECRET_ID: SECRET_KEY},
        "latency_ms": 0,
        "listeners": {},
        "certificates": {
            "cert-wild": {"type": 2, "domains": ["*.example.com", "example.com"], "name": "wild"} | dated,
            "cert-leafonly": {"type": 2, "domains": ["www.example.com"], "chain": "leaf_only"} | dated,
            "cert-self": {"type": 2, "domains": ["self.example.org"], "chain": "self_signed"} | dated,
            "cert-ca": {"type": 1, "domains": [], "subject_cn": "Example Client CA"} | dated,
            **certificates,
        },
    }


def emulator(data: dict[str, Any] | None = None) -> emu.Emulator:
    return emu.Emulator(emu.World.from_dict(data or world_data()))


async def detail(em: emu.Emulator, params: dict[str, Any]) -> dict[str, Any]:
    """The CertificateDetail the emulator answers (through admission, as a signed request would go)."""
    payload = await em.answer(SECRET_ID, ACTION_DESCRIBE_CERTIFICATE_DETAIL, json.dumps(params).encode(), "req-1")
    answer: dict[str, Any] = payload["CertificateDetail"]
    return answer


async def error(em: emu.Emulator, params: dict[str, Any], action: str = ACTION_DESCRIBE_CERTIFICATE_DETAIL) -> str:
    with pytest.raises(emu.ApiError) as info:
        await em.answer(SECRET_ID, action, json.dumps(params).encode(), "req-1")
    return info.value.code


def chain(content: str) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(content.encode())


def cn(name: x509.Name) -> str:
    [attribute] = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attribute.value)


def sans(cert: x509.Certificate) -> list[str]:
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)


def is_ca(cert: x509.Certificate) -> bool:
    return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


async def test_a_server_certificate_answers_every_field_of_the_model_with_its_domains_as_sans() -> None:
    """Every CertificateDetail field (py-sdk models.py) with its documented type; the leaf's SANs are the world's
    domains, wildcards included, and its CN, validity and issuer are what the other fields say."""
    got = await detail(emulator(), {"CertificateId": "cert-wild"})
    assert set(got) == {
        "CertificateId",
        "CertificateType",
        "CertificateAlias",
        "CertificateContent",
        "CertificateKey",
        "CreateTime",
        "BeginTime",
        "EndTime",
        "IssuerCN",
        "SubjectCN",
    }
    assert (got["CertificateId"], got["CertificateType"], got["CertificateAlias"]) == ("cert-wild", 2, "wild")
    assert (got["BeginTime"], got["EndTime"], got["CreateTime"]) == (BEGIN, END, BEGIN)
    assert (got["SubjectCN"], got["IssuerCN"]) == ("*.example.com", "Example Issuing CA")
    leaf = chain(got["CertificateContent"])[0]
    assert sans(leaf) == ["*.example.com", "example.com"]
    assert cn(leaf.subject) == "*.example.com" and cn(leaf.issuer) == "Example Issuing CA"
    assert leaf.not_valid_before_utc == datetime.fromtimestamp(BEGIN, UTC)
    assert leaf.not_valid_after_utc == datetime.fromtimestamp(END, UTC)
    assert not is_ca(leaf)


async def test_a_complete_chain_is_the_leaf_then_its_issuer_which_signed_it() -> None:
    leaf, issuer = chain((await detail(emulator(), {"CertificateId": "cert-wild"}))["CertificateContent"])
    assert leaf.issuer == issuer.subject
    leaf.verify_directly_issued_by(issuer)
    assert is_ca(issuer) and cn(issuer.subject) == "Example Issuing CA"


async def test_leaf_only_leaves_the_issuer_out() -> None:
    got = await detail(emulator(), {"CertificateId": "cert-leafonly"})
    [leaf] = chain(got["CertificateContent"])
    assert cn(leaf.issuer) == got["IssuerCN"] == "Example Issuing CA"
    assert leaf.issuer != leaf.subject  # an incomplete chain: the issuer named but not carried


async def test_self_signed_signs_itself_and_both_listings_say_so() -> None:
    em = emulator()
    got = await detail(em, {"CertificateId": "cert-self"})
    [leaf] = chain(got["CertificateContent"])
    assert leaf.issuer == leaf.subject
    leaf.verify_directly_issued_by(leaf)
    assert got["IssuerCN"] == got["SubjectCN"] == "self.example.org"
    listed = await em.answer(SECRET_ID, ACTION_DESCRIBE_CERTIFICATES, b"{}", "req-2")
    [item] = [c for c in listed["CertificateSet"] if c["CertificateId"] == "cert-self"]
    assert item["IssuerCN"] == "self.example.org"


async def test_a_client_ca_is_one_ca_certificate_without_a_key() -> None:
    got = await detail(emulator(), {"CertificateId": "cert-ca"})
    [ca] = chain(got["CertificateContent"])
    assert is_ca(ca) and cn(ca.subject) == got["SubjectCN"] == "Example Client CA"
    assert got["CertificateKey"] is None


async def test_the_content_is_the_same_in_every_emulator() -> None:
    """Keys derive from the id and signatures are deterministic: a second emulator, with nothing cached, answers the
    same PEM, and so does a later run."""
    first = [(await detail(emulator(), {"CertificateId": c}))["CertificateContent"] for c in ("cert-wild", "cert-ca")]
    pki.clear_caches()
    second = [(await detail(emulator(), {"CertificateId": c}))["CertificateContent"] for c in ("cert-wild", "cert-ca")]
    assert first == second


async def test_a_server_certificate_carries_a_fake_key_and_never_a_real_one() -> None:
    em = emulator()
    key = (await detail(em, {"CertificateId": "cert-wild"}))["CertificateKey"]
    assert isinstance(key, str) and f"{pki.FAKE_KEY_MARKER}-cert-wild-" in key
    assert key.startswith("-----BEGIN PRIVATE KEY-----\n") and key.rstrip().endswith("-----END PRIVATE KEY-----")
    with pytest.raises(ValueError):
        serialization.load_pem_private_key(key.encode(), password=None)
    for other in ("cert-ca",):
        assert (await detail(em, {"CertificateId": other}))["CertificateKey"] is None
    assert pki.FAKE_KEY_MARKER not in (await detail(em, {"CertificateId": "cert-wild"}))["CertificateContent"]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({}, "MissingParameter"),
        ({"CertificateId": ""}, "MissingParameter"),
        ({"CertificateId": "cert-nope"}, "ResourceNotFound"),
        ({"CertificateId": 7}, "InvalidParameter"),
        ({"CertificateId": "cert-wild", "CertificateType": 2}, "UnknownParameter"),
    ],
)
async def test_the_documented_codes_for_a_bad_request(params: dict[str, Any], code: str) -> None:
    assert await error(emulator(), params) == code


async def test_cam_denies_the_action_account_wide_while_the_listing_answers() -> None:
    data = world_data() | {"denied_actions": [ACTION_DESCRIBE_CERTIFICATE_DETAIL]}
    em = emulator(data)
    assert await error(em, {"CertificateId": "cert-wild"}) == "UnauthorizedOperation"
    assert (await em.answer(SECRET_ID, ACTION_DESCRIBE_CERTIFICATES, b"{}", "req-2"))["TotalCount"] == 4


async def test_the_action_has_its_own_rate_limit_window() -> None:
    em = emulator(world_data() | {"rate_limit": 3})
    for _ in range(3):
        await detail(em, {"CertificateId": "cert-wild"})
    assert await error(em, {"CertificateId": "cert-wild"}) == "RequestLimitExceeded"
    await em.answer(SECRET_ID, ACTION_DESCRIBE_CERTIFICATES, b"{}", "req-2")  # another action's window is untouched


def test_chain_round_trips_and_other_values_are_refused() -> None:
    data = world_data()
    written = emu.World.from_dict(data).to_dict()["certificates"]
    assert written["cert-leafonly"]["chain"] == "leaf_only" and written["cert-self"]["chain"] == "self_signed"
    assert "chain" not in written["cert-wild"]  # the default is not written: older worlds round-trip unchanged
    assert emu.World.from_dict(emu.World.from_dict(data).to_dict()).to_dict()["certificates"] == written
    data["certificates"]["cert-wild"]["chain"] = "partial"
    with pytest.raises(WorldError, match="chain must be one of complete, leaf_only, self_signed"):
        emu.World.from_dict(data)


async def test_certificates_without_dates_or_names_still_make_content() -> None:
    """A certificate as `world_for_rows` makes it (no domains, no dates) and a basic-auth one answer content too: a
    leaf without SANs (which a client's name check refuses), and an htpasswd line."""
    em = emulator(world_data(**{"cert-bare": {"type": 2, "domains": []}, "cert-basic": {"type": 0, "domains": []}}))
    bare = await detail(em, {"CertificateId": "cert-bare"})
    leaf = chain(bare["CertificateContent"])[0]
    with pytest.raises(x509.ExtensionNotFound):
        sans(leaf)
    assert cn(leaf.subject) == "cert-bare"
    assert leaf.not_valid_after_utc == datetime.fromtimestamp(bare["EndTime"], UTC)
    basic = await detail(em, {"CertificateId": "cert-basic"})
    assert basic["CertificateContent"].startswith("emulator:{SHA}") and basic["CertificateKey"] is None
