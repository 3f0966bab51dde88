"""The target's names, as a client checks them (issue 23, part 2–3): the content DescribeCertificateDetail answers is
read with `cryptography` (`live/x509.py`); a server certificate whose SubjectAltName does not cover the row's domain
is refused before sending (`Preflight.CertificateNotMatchDomain`), an incomplete chain is a warning, and the key
material the answer carries is dropped by the client as it parses the answer."""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from batchcert.api.client import _parse_answer
from batchcert.api.vocabulary import ACTION_DESCRIBE_CERTIFICATE_DETAIL
from batchcert.emulator.pki import FAKE_KEY_MARKER
from batchcert.live.certificates import CertificateInfo, check_targets
from batchcert.live.x509 import CertificateContent, UnreadableContent, read_content
from batchcert.model import PREFLIGHT_SAN_MISMATCH, Row
from tests.conftest import ThreadedEmulator, run_against, write_mapping
from tests.virtual_time import run_virtual
from tests.worlds import SECRET_ID, SECRET_KEY, batch_world

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_pem(names: list[str], chain: str = "complete", cn: str = "leaf") -> str:
    """A leaf for `names` signed by a CA, followed by the CA (complete), alone (leaf_only) or signing itself."""
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("Test CA"))
        .issuer_name(_name("Test CA"))
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    self_signed = chain == "self_signed"
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn) if self_signed else ca.subject)
        .public_key(leaf_key.public_key())
        .serial_number(2)
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=90))
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
    leaf = builder.sign(leaf_key if self_signed else ca_key, hashes.SHA256())
    pems = [leaf] if chain != "complete" else [leaf, ca]
    return "".join(c.public_bytes(Encoding.PEM).decode() for c in pems)


def test_the_content_gives_the_leafs_names_fingerprint_expiry_and_chain() -> None:
    content = read_content(make_pem(["*.example.com", "example.com"]))
    assert content.names == ("*.example.com", "example.com")
    assert len(content.leaf_sha256) == 64 and content.subject == "CN=leaf"
    assert content.not_after_s == int((NOW + dt.timedelta(days=90)).timestamp())
    assert content.chain_complete
    assert not read_content(make_pem(["a.example.com"], chain="leaf_only")).chain_complete
    assert read_content(make_pem(["a.example.com"], chain="self_signed")).chain_complete
    assert read_content(make_pem([])).names == ()
    with pytest.raises(UnreadableContent):
        read_content("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    with pytest.raises(UnreadableContent):
        read_content("")


INFO = {"cert-new": CertificateInfo("cert-new", 2, int((NOW + dt.timedelta(days=90)).timestamp()), "leaf")}


def check(domain: str, content: CertificateContent, scope: str = "domain") -> tuple[str, str, str]:
    row = Row(2, "listener-1", domain if scope == "domain" else "", "cert-new", scope=scope)
    result = check_targets(row, INFO, NOW.timestamp(), 30, {"cert-new": content})
    return result.code, result.message, result.chain_incomplete


@pytest.mark.parametrize(
    ("domain", "covered"),
    [
        ("www.example.com", True),
        ("WWW.Example.com.", True),  # case and a trailing dot do not matter
        ("example.com", True),
        ("a.b.example.com", False),  # a wildcard covers exactly one label
        ("www.example.org", False),
        ("wwwexample.com", False),
    ],
)
def test_a_target_whose_names_do_not_cover_the_domain_is_refused(domain: str, covered: bool) -> None:
    code, message, _ = check(domain, read_content(make_pem(["*.example.com", "example.com"])))
    assert (code == "") is covered
    if not covered:
        assert code == PREFLIGHT_SAN_MISMATCH
        assert message == f"cert-new names *.example.com, example.com — not {domain}"


def test_the_cn_alone_does_not_cover_and_a_listener_row_has_no_domain_to_check() -> None:
    no_san = read_content(make_pem([], cn="www.example.com"))
    assert check("www.example.com", no_san)[0] == PREFLIGHT_SAN_MISMATCH
    assert "no domain (it has no SubjectAltName)" in check("www.example.com", no_san)[1]
    assert check("", no_san, scope="listener")[0] == ""


def test_an_incomplete_chain_is_a_warning_not_a_refusal() -> None:
    code, _, warning = check("a.example.com", read_content(make_pem(["a.example.com"], chain="leaf_only")))
    assert code == "" and warning == "cert-new's content lacks the certificate of its issuer (an incomplete chain)"


def test_the_client_drops_the_key_material_and_never_quotes_such_an_answer() -> None:
    secret = "-----BEGIN PRIVATE KEY-----\nSECRET-KEY-MATERIAL\n-----END PRIVATE KEY-----"
    body = {
        "Response": {"CertificateDetail": {"CertificateContent": "pem", "CertificateKey": secret}, "RequestId": "r"}
    }

    async def parse(raw: bytes, status: int = 200) -> str:
        result = _parse_answer(status, raw, 0.0, secret_bearing=True)
        return repr(result)

    seen = run_virtual(parse(json.dumps(body).encode()))
    assert "SECRET-KEY-MATERIAL" not in seen and "CertificateContent" in seen
    assert "SECRET-KEY-MATERIAL" not in run_virtual(parse(b"<html>" + secret.encode()))
    assert "SECRET-KEY-MATERIAL" not in run_virtual(parse(secret.encode(), status=502))


def _everything_in(run_dir: Path) -> str:
    """Every file of a run directory as text, the workbooks' XML parts included."""
    text = []
    for path in sorted(p for p in run_dir.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as book:
                data += b"".join(book.read(name) for name in book.namelist())
        text.append(data.decode("utf-8", "replace"))
    return "\n".join(text)


def test_the_key_the_service_returns_is_nowhere_in_output_journal_or_reports(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path
) -> None:
    """`plan` and `run` with --verbose read every target's content (its key material with it) and refuse the row its
    names do not cover: the emulator's fake key appears in no output, log, journal or report."""
    world, rows = batch_world(3)
    server = threaded_emulator(world)
    mapping = write_mapping(tmp_path / "m.csv", rows)
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "TENCENTCLOUD_SECRET_ID": SECRET_ID,
        "TENCENTCLOUD_SECRET_KEY": SECRET_KEY,
    }
    seen = []
    for args in (
        ["-v", "plan", str(mapping), "--endpoint", server.base_url, "--out", str(tmp_path / "plan")],
        ["-v", "run", str(mapping), "--endpoint", server.base_url, "--yes", "--out", str(tmp_path / "run")],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "batchcert", *args], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 1, done.stdout + done.stderr  # the terminal rows
        seen += [done.stdout, done.stderr]
    assert server.emulator is not None and server.emulator.requests["DescribeCertificateDetail"] == 2
    seen += [_everything_in(tmp_path / "plan"), _everything_in(tmp_path / "run")]
    assert "t.other.org" in seen[-1] and PREFLIGHT_SAN_MISMATCH in seen[-1]
    for text in seen:
        assert FAKE_KEY_MARKER not in text and "PRIVATE KEY" not in text


def test_without_permission_to_read_the_content_the_names_are_not_checked_and_the_summary_says_so(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path, credentials_env: None
) -> None:
    """A credential without gaap:DescribeCertificateDetail: nothing is guessed — the row the names would refuse is
    sent (the service answers it), and the summary names the skipped check."""
    world, rows = batch_world(2)
    world.denied_actions = [ACTION_DESCRIBE_CERTIFICATE_DETAIL]
    server = threaded_emulator(world)
    run_dir = tmp_path / "run"
    run_against(server, write_mapping(tmp_path / "m.csv", rows), run_dir)
    report = {r["domain"]: r for r in csv.DictReader((run_dir / "report.csv").read_text("utf-8-sig").splitlines())}
    assert report["t.other.org"]["error_code"] == "InvalidParameterValue.CertificateNotMatchDomain"
    warnings = json.loads((run_dir / "summary.json").read_text("utf-8"))["certificate_warnings"]
    assert any("name check skipped" in w and "UnauthorizedOperation" in w for w in warnings), warnings
