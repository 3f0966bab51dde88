"""The certificate pre-flight (issue 14, part 4): every target certificate is looked up once per run
(DescribeCertificates, paged); missing, wrong-type and expired targets are refused unsent with a Preflight code;
targets expiring soon are warnings in plan, in the confirmation and in the summary; a target whose SubjectAltName
does not cover the domain is refused (issue 23), an incomplete chain is a warning, and a SubjectCN that does not name
the domain is a plan warning only when the names could not be read; report.csv carries target_certificate_end_time; --no-preflight sends without the
check; a denied DescribeCertificates skips the check and the summary says so."""

from __future__ import annotations

import csv
import json
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from batchcert import emulator as emu
from batchcert.live.certificates import CertificateInfo, check_targets, expiring_targets
from batchcert.live.state import PlanAction
from batchcert.model import (
    PREFLIGHT_EXPIRED,
    PREFLIGHT_NOT_FOUND,
    PREFLIGHT_SAN_MISMATCH,
    PREFLIGHT_TYPE_MISMATCH,
    Row,
)
from batchcert.runner import RunnerConfig
from batchcert.settings import SettingFlags
from batchcert.workflow import Declined, PlanRequest, Preview, RunRequest, RunSummary, plan_mapping, run_mapping
from tests.conftest import ThreadedEmulator, write_mapping
from tests.worlds import QUICK_TASKS, SECRET_ID, SECRET_KEY

HEADER = ("ListenerId", "Domain", "CertificateId", "ClientCertificateId", "PolyClientCertificateIds")
DAY_S = 86400
#: listed before the targets, so that every target is on the second DescribeCertificates page (the page max is 50)
FILLERS = 55
GOOD_END = "2035-06-30T12:00:00Z"

A, B = "listener-aaaa0001", "listener-bbbb0001"
R_OK = (A, "ok.example.com", "cert-good", "", "")
R_SOON = (A, "soon.example.com", "cert-soon", "", "")
R_CN = (A, "cn.example.com", "cert-cn", "", "")
R_MISSING = (A, "missing.example.com", "cert-nope", "", "")
R_WRONGTYPE = (A, "wrongtype.example.com", "cert-ca", "", "")
R_EXPIRED = (A, "expired.example.com", "cert-expired", "", "")
R_BADCLIENT = (B, "badclient.example.com", "cert-good", "cert-good", "")
R_BADPOLY = (B, "badpoly.example.com", "cert-good", "", "cert-ca;cert-good")
R_MISSINGCA = (B, "missingca.example.com", "cert-good", "cert-gone", "")
R_DEFAULT = (B, "dflt.example.com", "default", "cert-ca", "")
R_POLYOK = (B, "polyok.example.com", "cert-good", "", "cert-ca;cert-ca2")
R_SAN = (A, "san.example.com", "cert-san", "", "")
R_CHAIN = (A, "chain.example.com", "cert-chain", "", "")
ROWS: list[tuple[str, ...]] = [
    R_OK,
    R_SOON,
    R_CN,
    R_MISSING,
    R_WRONGTYPE,
    R_EXPIRED,
    R_BADCLIENT,
    R_BADPOLY,
    R_MISSINGCA,
    R_DEFAULT,
    R_POLYOK,
    R_SAN,
    R_CHAIN,
]
SENDABLE: list[tuple[str, ...]] = [R_OK, R_SOON, R_CN, R_DEFAULT, R_POLYOK, R_CHAIN]
OK_SOON_EXPIRED: list[tuple[str, ...]] = [R_OK, R_SOON, R_EXPIRED]
REFUSED: dict[tuple[str, ...], str] = {
    R_MISSING: PREFLIGHT_NOT_FOUND,
    R_WRONGTYPE: PREFLIGHT_TYPE_MISMATCH,
    R_EXPIRED: PREFLIGHT_EXPIRED,
    R_BADCLIENT: PREFLIGHT_TYPE_MISMATCH,
    R_BADPOLY: PREFLIGHT_TYPE_MISMATCH,
    R_MISSINGCA: PREFLIGHT_NOT_FOUND,
    R_SAN: PREFLIGHT_SAN_MISMATCH,
}

pytestmark = pytest.mark.usefixtures("credentials_env")


def world(**overrides: Any) -> emu.World:
    """The pre-flight's own world (no shared builder has it): 55 filler certificates listed before the targets, so
    that every target is on the second DescribeCertificates page, and a target of each kind the check tells apart —
    good, expiring soon, expired, a SubjectCN naming another domain, client CAs."""
    certificates: dict[str, Any] = {
        f"cert-fill{i:03d}": {"type": 2, "domains": ["x.example.net"]} for i in range(FILLERS)
    }
    certificates |= {
        "cert-old": {"type": 2, "domains": ["*.example.com"]},
        "cert-good": {"type": 2, "domains": ["*.example.com"], "end_time": GOOD_END},
        "cert-soon": {"type": 2, "domains": ["*.example.com"], "expires_in_days": 10},
        "cert-expired": {"type": 2, "domains": ["*.example.com"], "expires_in_days": -1},
        # covers the domain by its alternative names, not by its SubjectCN: the service accepts it, and so do clients
        "cert-cn": {"type": 2, "domains": ["*.example.com"], "subject_cn": "www.other.org"},
        # names another domain only: refused before sending
        "cert-san": {"type": 2, "domains": ["*.other.org"]},
        # covers the domain, but its content lacks its issuer: a warning
        "cert-chain": {"type": 2, "domains": ["*.example.com"], "chain": "leaf_only"},
        "cert-ca": {"type": 1, "domains": []},
        "cert-ca2": {"type": 1, "domains": []},
    }
    data: dict[str, Any] = {
        "credentials": {SECRET_ID: SECRET_KEY},
        "rate_limit": 1000,
        "task_seconds": 0.05,
        "latency_ms": 2,
        "listeners": {
            lid: {
                "certificate_id": "cert-old",
                "domains": {r[1]: {"certificate_id": "cert-old"} for r in ROWS if r[0] == lid},
            }
            for lid in (A, B)
        },
        "certificates": certificates,
    }
    data.update(overrides)
    return emu.World.from_dict(data)


def pages(server: ThreadedEmulator) -> int:
    """DescribeCertificates pages one full read of the world's certificates takes."""
    assert server.emulator is not None
    return math.ceil(len(server.emulator.world.certificates) / 50)


def read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.read_text(encoding="utf-8-sig").splitlines()))


def by_domain(path: Path) -> dict[str, dict[str, str]]:
    return {r["domain"]: r for r in read_csv(path)}


def capture(previews: list[Preview], *, answer: bool) -> Callable[[Preview], bool]:
    """A `confirm` callback that keeps the Preview it is shown and answers `answer`."""

    def confirm(preview: Preview) -> bool:
        previews.append(preview)
        return answer

    return confirm


def settings(server: ThreadedEmulator, **flags: Any) -> SettingFlags:
    return SettingFlags(endpoint=server.base_url, rate_per_s=200, **flags)


def run_previewed(
    previews: list[Preview],
    server: ThreadedEmulator,
    rows: list[tuple[str, ...]],
    tmp_path: Path,
    *,
    answer: bool = True,
    runner: RunnerConfig = QUICK_TASKS,
    **flags: Any,
) -> RunSummary:
    """`run_mapping` of `rows` against `server`, keeping in `previews` the Preview the prompt shows (answered
    `answer`; a declined run raises Declined)."""
    return run_mapping(
        RunRequest(
            mapping=write_mapping(tmp_path / "m.csv", rows, HEADER),
            out=tmp_path / "run",
            settings=settings(server, **flags),
            runner=runner,
        ),
        confirm=capture(previews, answer=answer),
    )


# ------------------------------------------------------------------------------------------------------- run


def test_run_refuses_unusable_targets_unsent_and_warns_of_expiring_ones(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path
) -> None:
    server = threaded_emulator(world())
    assert server.emulator is not None
    assert pages(server) == 2 and list(server.emulator.world.certificates).index("cert-good") >= 50
    previews: list[Preview] = []
    summary = run_previewed(previews, server, ROWS, tmp_path)
    # one round of pages for the whole run (read before asking, reused by the runner)
    assert server.emulator.requests["DescribeCertificates"] == pages(server) == 2
    # refused rows were never sent: each sendable row was applied once, and every ModifyCertificate the service
    # received is an attempt of a sendable row (refused rows have none, below)
    assert Counter((e.listener_id, e.domain) for e in server.emulator.ledger) == Counter((r[0], r[1]) for r in SENDABLE)
    rows = by_domain(tmp_path / "run" / "report.csv")
    assert server.emulator.requests["ModifyCertificate"] == sum(int(rows[r[1]]["attempts"]) for r in SENDABLE)
    # every answer was OK, but for ListenerHasTask: the listener pacer probes its gap down until the service
    # refuses one (docs/scheduling.md), and on a loaded machine the emulator can start a task late enough for that
    extra = server.emulator.requests["ModifyCertificate"] - len(SENDABLE)
    assert set(server.emulator.stats) <= {"OK", "FailedOperation.ListenerHasTask"}, server.emulator.stats
    assert server.emulator.stats["FailedOperation.ListenerHasTask"] == extra, server.emulator.stats
    assert summary.exit_code == 1

    for row, code in REFUSED.items():
        line = rows[row[1]]
        assert (line["outcome"], line["error_code"], line["attempts"]) == ("terminal", code, "0"), line
        assert "not sent" in line["error_message"]
    for row in SENDABLE:
        assert rows[row[1]]["outcome"] == "succeeded", rows[row[1]]
    assert "cert-good" in rows["badpoly.example.com"]["error_message"]  # the poly id of the wrong type is named
    assert "cert-gone" in rows["missingca.example.com"]["error_message"]

    # target_certificate_end_time: ISO 8601 UTC for rows whose server certificate is known
    assert rows["ok.example.com"]["target_certificate_end_time"] == GOOD_END
    assert rows["polyok.example.com"]["target_certificate_end_time"] == GOOD_END
    soon_end = server.emulator.world.certificates["cert-soon"].validity(server.emulator.epoch)[1]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", rows["soon.example.com"]["target_certificate_end_time"])
    assert rows["soon.example.com"]["target_certificate_end_time"] == datetime.fromtimestamp(soon_end, tz=UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    assert rows["dflt.example.com"]["target_certificate_end_time"] == ""  # `default`: the listener's own
    assert rows["missing.example.com"]["target_certificate_end_time"] == ""

    # the expiring target is a warning in the confirmation and in the summary, the incomplete chain in the summary;
    # nothing else is
    assert len(previews) == 1
    expiring = [w for w in previews[0].warnings if "expires on" in w]
    assert len(expiring) == 1 and expiring[0].startswith("cert-soon ") and "1 row(s)" in expiring[0]
    data = json.loads((tmp_path / "run" / "summary.json").read_text(encoding="utf-8"))
    chain = "certificate chain: cert-chain's content lacks the certificate of its issuer (an incomplete chain)"
    assert data["certificate_warnings"] == [*expiring, chain]
    assert "cert-soon" in (tmp_path / "run" / "summary.md").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("min_days", "warned"),
    [(5, set()), (30, {"cert-soon"}), (400, {"cert-soon", "cert-cn", "cert-ca", "cert-ca2", "cert-san", "cert-chain"})],
)
def test_min_validity_days_sets_what_the_confirmation_warns_of(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path, min_days: int, warned: set[str]
) -> None:
    """Declined at the prompt: the certificates were read (one round), nothing else was sent."""
    server = threaded_emulator(world())
    previews: list[Preview] = []
    with pytest.raises(Declined):
        run_previewed(previews, server, ROWS, tmp_path, answer=False, min_validity_days=min_days)
    assert {w.split()[0] for w in previews[0].warnings if "expires on" in w} == warned
    assert server.emulator is not None
    assert dict(server.emulator.requests) == {"DescribeCertificates": pages(server)}


def test_no_preflight_sends_without_the_check(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path
) -> None:
    server = threaded_emulator(world())
    rows: list[tuple[str, ...]] = [R_OK, R_EXPIRED, R_MISSING]
    previews: list[Preview] = []
    run_previewed(
        previews,
        server,
        rows,
        tmp_path,
        runner=replace(QUICK_TASKS, preflight=False),
    )
    assert server.emulator is not None
    assert server.emulator.requests["DescribeCertificates"] == 0
    assert {e.domain for e in server.emulator.ledger} == {"ok.example.com", "expired.example.com"}
    report = by_domain(tmp_path / "run" / "report.csv")
    # every row sent, the expired and the missing one too (a ListenerHasTask refusal is one more attempt)
    assert all(int(report[r[1]]["attempts"]) >= 1 for r in rows)
    assert server.emulator.requests["ModifyCertificate"] == sum(int(report[r[1]]["attempts"]) for r in rows)
    assert not any(r["error_code"].startswith("Preflight.") for r in report.values())
    assert report["missing.example.com"]["error_code"] == "InvalidParameterValue"  # the service refused it
    assert previews[0].warnings == ()
    data = json.loads((tmp_path / "run" / "summary.json").read_text(encoding="utf-8"))
    assert data["certificate_warnings"] == []


def test_denied_describe_certificates_skips_the_check_and_says_so(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path
) -> None:
    """A credential without gaap:DescribeCertificates (the world's account-wide `denied_actions`): the check is
    skipped, said so before sending and in the summary, and the rows are sent."""
    server = threaded_emulator(world(denied_actions=["DescribeCertificates"]))
    assert server.emulator is not None
    previews: list[Preview] = []
    summary = run_previewed(previews, server, OK_SOON_EXPIRED, tmp_path)
    assert server.emulator.requests["DescribeCertificates"] == 1  # a denial is not retried, and not read again
    # the run went on: every row sent (unchecked, so the expired one too)
    assert {e.domain for e in server.emulator.ledger} == {"ok.example.com", "soon.example.com", "expired.example.com"}
    assert summary.exit_code == 0
    assert any("could not be checked" in w and "UnauthorizedOperation" in w for w in previews[0].warnings)
    data = json.loads((tmp_path / "run" / "summary.json").read_text(encoding="utf-8"))
    assert any("skipped" in w and "UnauthorizedOperation" in w for w in data["certificate_warnings"]), data
    assert "skipped" in (tmp_path / "run" / "summary.md").read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------------------------ plan


def test_plan_shows_refused_rows_and_warnings(
    threaded_emulator: Callable[..., ThreadedEmulator], tmp_path: Path
) -> None:
    server = threaded_emulator(world())
    assert server.emulator is not None
    mapping = write_mapping(tmp_path / "m.csv", ROWS, HEADER)
    result = plan_mapping(PlanRequest(mapping=mapping, out=tmp_path / "plan", settings=settings(server)))
    assert result.exit_code == 1
    assert result.counts[PlanAction.REFUSED] == len(REFUSED) and result.counts[PlanAction.CHANGE] == len(SENDABLE)
    assert server.emulator.requests["DescribeCertificates"] == pages(server)
    assert server.emulator.requests["ModifyCertificate"] == 0 and not server.emulator.ledger

    lines = by_domain(result.path)
    for row, code in REFUSED.items():
        assert lines[row[1]]["action"] == "refused", lines[row[1]]
        assert lines[row[1]]["reason"].startswith(code), lines[row[1]]
    assert "warning" in lines["soon.example.com"]["reason"] and "cert-soon" in lines["soon.example.com"]["reason"]
    assert "incomplete chain" in lines["chain.example.com"]["reason"]
    # the content of each server certificate a domain row installs is read once; its SubjectAltName covers
    # cn.example.com, so the SubjectCN naming another domain is no warning (clients go by the SANs)
    assert server.emulator.requests["DescribeCertificateDetail"] == 6
    for quiet in ("ok.example.com", "dflt.example.com", "polyok.example.com", "cn.example.com"):
        assert "warning" not in lines[quiet]["reason"], lines[quiet]

    # --min-validity-days 5: cert-soon (10 days) is no longer a warning; one more round of pages, no more
    relaxed = plan_mapping(
        PlanRequest(mapping=mapping, out=tmp_path / "plan5", settings=settings(server, min_validity_days=5))
    )
    assert "warning" not in by_domain(relaxed.path)["soon.example.com"]["reason"]
    assert server.emulator.requests["DescribeCertificates"] == 2 * pages(server)


# ------------------------------------------------------------------------------------------------ check_targets
NOW = 1_800_000_000.0
CERTS = {
    "srv": CertificateInfo("srv", 2, int(NOW + 365 * DAY_S), "*.example.com"),
    "srv2": CertificateInfo("srv2", 2, int(NOW + 365 * DAY_S), "www.example.com"),
    "ca1": CertificateInfo("ca1", 1, int(NOW + 365 * DAY_S)),
    "ca2": CertificateInfo("ca2", 1, int(NOW + 5 * DAY_S)),
}


def test_default_ids_are_not_checked() -> None:
    check = check_targets(Row(2, "l", "a.example.com", "default", "default"), {}, NOW, 30)
    assert check.code == "" and check.expiring == () and check.end_time_s is None


@pytest.mark.parametrize(
    ("client", "poly", "code"),
    [
        ("", ("ca1", "ca2"), ""),
        ("", ("ca1", "srv"), PREFLIGHT_TYPE_MISMATCH),
        ("", ("ca1", "nope"), PREFLIGHT_NOT_FOUND),
        ("srv", (), PREFLIGHT_TYPE_MISMATCH),
        ("ca1", (), ""),
    ],
)
def test_client_ids_are_checked_as_client_cas(client: str, poly: tuple[str, ...], code: str) -> None:
    check = check_targets(Row(2, "l", "a.example.com", "srv", client, poly), CERTS, NOW, 30)
    assert check.code == code, check
    if code:
        assert (poly[-1] if poly else client) in check.message


def test_server_id_must_be_a_server_certificate() -> None:
    assert check_targets(Row(2, "l", "a.example.com", "ca1"), CERTS, NOW, 30).code == PREFLIGHT_TYPE_MISMATCH
    assert check_targets(Row(2, "l", "a.example.com", "gone"), CERTS, NOW, 30).code == PREFLIGHT_NOT_FOUND
    ok = check_targets(Row(2, "l", "a.example.com", "srv"), CERTS, NOW, 30)
    assert (ok.code, ok.end_time_s, ok.name_mismatch) == ("", CERTS["srv"].end_time_s, "")


@pytest.mark.parametrize(
    ("ends_in_s", "min_days", "code", "expiring"),
    [
        (-1, 30, PREFLIGHT_EXPIRED, False),
        (0, 30, PREFLIGHT_EXPIRED, False),  # ending now is expired
        (1, 30, "", True),
        (1, 0, "", False),
        (30 * DAY_S - 1, 30, "", True),
        (30 * DAY_S, 30, "", False),  # exactly the minimum validity left is enough
    ],
)
def test_expiry_boundary(ends_in_s: int, min_days: int, code: str, expiring: bool) -> None:
    certs = {"srv": CertificateInfo("srv", 2, int(NOW) + ends_in_s, "*.example.com")}
    check = check_targets(Row(2, "l", "a.example.com", "srv"), certs, NOW, min_days)
    assert check.code == code
    assert bool(check.expiring) is expiring


def test_expiring_client_ca_and_subject_cn_warnings() -> None:
    check = check_targets(Row(2, "l", "a.b.example.com", "srv2", "", ("ca1", "ca2")), CERTS, NOW, 30)
    assert check.code == ""
    assert len(check.expiring) == 1 and check.expiring[0].startswith("ca2 ")
    assert "www.example.com" in check.name_mismatch  # a wildcard would not cover a.b.example.com either
    wildcard = check_targets(Row(2, "l", "a.b.example.com", "srv"), CERTS, NOW, 30)
    assert wildcard.name_mismatch  # *.example.com names one label only


def test_expiring_targets_counts_rows_once_per_certificate() -> None:
    rows = [Row(n, "l", f"d{n}.example.com", "srv", "ca2") for n in (2, 3)] + [Row(4, "l", "x.example.com", "gone")]
    warnings = expiring_targets(rows, CERTS, NOW, 30)
    assert len(warnings) == 1 and warnings[0].startswith("ca2 ") and warnings[0].endswith("2 row(s) install it")
