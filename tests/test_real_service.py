"""Behaving right against the real service (its adversarial readings, modelled by the emulator): scoped denials,
slow tasks, changes that fail and revert, closed connections, transient codes, missing listeners answered as
InvalidParameter, mutual TLS, and the real `default` read shapes. On virtual time, with the emulator in process."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from batchcert.api.vocabulary import ACTION_MODIFY
from batchcert.report import report_records
from batchcert.runner import RunnerConfig
from tests.runs import simulate
from tests.worlds import QUICK_RETRIES, migration_world


def test_one_denied_listener_ends_its_rows_and_the_others_go_on(tmp_path: Path) -> None:
    listeners = {"listener-denied": 3} | {f"listener-ok{i:03d}": 1 for i in range(20)}
    world, triples = migration_world(listeners)
    world["listeners"]["listener-denied"]["denied_actions"] = ["ModifyCertificate"]
    ran = simulate(tmp_path, world, triples)
    records = {r.domain: r for r in report_records(ran.journal)}
    denied = [r for r in records.values() if r.listener_id == "listener-denied"]
    assert {(r.outcome, r.error_code) for r in denied} == {("terminal", "AuthFailure.UnauthorizedOperation")}
    assert all(
        "listener-denied" in r.error_message or "may not change this listener" in r.error_message for r in denied
    )
    assert sum(r.attempts for r in denied) == 1  # one refusal, then its other rows are not sent
    assert Counter(r.outcome for r in records.values() if r.listener_id != "listener-denied") == {"succeeded": 20}


def test_denials_everywhere_stop_the_run_as_account_wide(tmp_path: Path) -> None:
    listeners = {f"listener-den{i:03d}": 1 for i in range(12)}
    world, triples = migration_world(listeners)
    for spec in world["listeners"].values():
        spec["denied_actions"] = ["ModifyCertificate"]
    ran = simulate(tmp_path, world, triples)
    assert "account-wide" in ran.runner.stop_reason
    assert ran.api.emulator.stats["AuthFailure.UnauthorizedOperation"] <= 8  # the first five, and those in flight
    assert ran.outcomes()["not_attempted"] >= 4


def test_a_four_second_task_loses_no_row(tmp_path: Path) -> None:
    """Eight rows on a listener whose task takes 4 s: waited out by time, not by attempts — all succeed."""
    world, triples = migration_world({"listener-slow": 8}, latency_ms=20)
    world["listeners"]["listener-slow"]["task_seconds"] = 4.0
    ran = simulate(tmp_path, world, triples, RunnerConfig())
    assert ran.outcomes() == Counter({"succeeded": 8})
    assert {r.verified for r in report_records(ran.journal)} == {"true"}


def test_a_change_accepted_then_reverted_is_never_verified(tmp_path: Path) -> None:
    """The service accepts the change, its task fails and rolls it back: verification waits for the domain to be
    idle, so the row is never reported verified at its target."""
    world, triples = migration_world({"listener-tf": 3}, task_seconds=3.0)
    reverted = triples[1][1]
    world["faults"] = {"domains": {reverted: [{"kind": "task_fail"}]}}
    ran = simulate(tmp_path, world, triples)
    record = next(r for r in report_records(ran.journal) if r.domain == reverted)
    assert ran.api.emulator.reverted == [("listener-tf", reverted)]
    assert not (record.outcome == "succeeded" and record.verified == "true")
    assert record.verified == "false" and record.verified_certificate_id == "cert-old"


def test_a_closed_connection_spends_nothing_of_the_healthy_rows(tmp_path: Path) -> None:
    """30 rows on three listeners of a closed connection and 20 healthy rows that meet two InternalErrors each: every
    healthy row succeeds; at most three writes go to each closed listener; the closed rows end retryable."""
    closed = {f"listener-closed{i}": 10 for i in range(3)}
    healthy = {f"listener-h{i:03d}": 1 for i in range(20)}
    world, triples = migration_world(closed | healthy)
    for lid in closed:
        world["listeners"][lid]["proxy_status"] = "CLOSED"
    world["faults"] = {
        "domains": {dom: [{"kind": "InternalError", "times": 2}] for lid, dom, _ in triples if lid in healthy}
    }
    ran = simulate(tmp_path, world, triples)
    records = list(report_records(ran.journal))
    assert Counter(r.outcome for r in records if r.listener_id in healthy) == {"succeeded": 20}
    assert {r.outcome for r in records if r.listener_id in closed} == {"retryable"}
    for lid in closed:
        assert sum(r.attempts for r in records if r.listener_id == lid) <= 3


@pytest.mark.parametrize(
    "code",
    [
        "FailedOperation.ListenerStatusError",
        "FailedOperation.ResourceUpgrading",
        "FailedOperation.ActionIsDoing",
        "FailedOperation.ActionOperateTooQuickly",
        "FailedOperation.Migration",
        "LimitExceeded.RateLimitExceeded",
    ],
)
def test_transient_codes_are_retried_to_success(tmp_path: Path, code: str) -> None:
    world, triples = migration_world({"listener-tr": 2})
    world["faults"] = {"domains": {dom: [{"kind": "code", "code": code, "times": 2}] for _, dom, _ in triples}}
    ran = simulate(tmp_path, world, triples)
    assert ran.outcomes() == Counter({"succeeded": 2})
    assert ran.ledger == Counter({(lid, dom): 1 for lid, dom, _ in triples})


def test_a_listener_answered_as_invalid_parameter_is_absent_and_gets_no_write(tmp_path: Path) -> None:
    world, triples = migration_world({"listener-real": 1}, missing_listener_code="InvalidParameter")
    triples.append(("listener-gone00", "x.example.com", "cert-new"))
    ran = simulate(tmp_path, world, triples)
    gone = next(r for r in report_records(ran.journal) if r.listener_id == "listener-gone00")
    assert gone.outcome == "terminal" and gone.attempts == 0
    assert len(ran.api.sends[ACTION_MODIFY]) == 1  # only the real listener's row


def mutual_world(**overrides: Any) -> tuple[dict[str, Any], list[tuple[str, str, str]]]:
    """Two domains on cert-old in the shape the service reads after a write naming client CAs cert-ca1 and cert-ca2
    (client id the first of the list): a migration world made mutual-TLS, which only the test below needs."""
    world, triples = migration_world({"listener-mtls": ["a.example.com", "b.example.com"]}, **overrides)
    world["certificates"] |= {"cert-ca1": {"type": 1, "domains": []}, "cert-ca2": {"type": 1, "domains": []}}
    for domain in world["listeners"]["listener-mtls"]["domains"].values():
        domain["client_certificate_id"] = "cert-ca1"
        domain["poly_client_certificate_ids"] = ["cert-ca1", "cert-ca2"]
    return world, triples


def test_server_only_rows_keep_the_client_cas_of_a_mutual_tls_domain(tmp_path: Path) -> None:
    """Rows naming only a server certificate on mutual-TLS domains carry the live client CAs (the emulator resets
    them otherwise): afterwards the domains still have both client CAs, verification compared them, the report says
    so."""
    world, triples = mutual_world()
    ran = simulate(tmp_path, world, triples)
    state = ran.api.emulator.world.listeners["listener-mtls"].domains
    assert all(d.certificate_id == "cert-new" for d in state.values())
    assert all(d.poly_client_certificate_ids == ["cert-ca1", "cert-ca2"] for d in state.values())
    records = list(report_records(ran.journal))
    assert {(r.outcome, r.verified) for r in records} == {("succeeded", "true")}
    assert all("client CAs kept as they were: cert-ca1;cert-ca2" in r.error_message for r in records)


def test_rows_at_target_under_the_real_default_shapes_are_unchanged(tmp_path: Path) -> None:
    """Domains on their listener's client CA read `ClientCertificateId: "default"` and a `default` alias: rows already
    at their server target (one naming `default` as its client CA too) end unchanged, nothing sent."""
    world, triples = migration_world({"listener-dflt": ["a.example.com", "b.example.com"]})
    triples = [("listener-dflt", "a.example.com", "cert-old"), ("listener-dflt", "b.example.com", "cert-old")]
    ran = simulate(tmp_path, world, triples, QUICK_RETRIES)
    assert ran.outcomes() == Counter({"unchanged": 2})
    assert not ran.api.sends[ACTION_MODIFY]
    rules = ran.api.emulator.reads.describe_rules({"ListenerId": "listener-dflt"})["DomainRuleSet"]
    assert rules[0]["ClientCertificateId"] == "default"
    assert rules[0]["PolyClientCertificateAliasInfo"] == [{"CertificateId": "default", "CertificateAlias": "默认证书"}]
