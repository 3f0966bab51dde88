"""Credential providers with refresh (issue 25, point 1; README "Credentials"; `batchcert.api.credentials`): an
assumed role, the instance role and OIDC web identity through the official SDK's providers, aimed at a fake STS and
a fake metadata service on 127.0.0.1 that hand out keys living about 2 s and register them in a running emulator.
A run outlasting its keys is refreshed and completes, none of its requests signed with expired keys; a refresh that
fails stops the run cleanly (rows `retryable` / `not_attempted`, the provider named); static keys behave as before;
no secret key or token reaches any output, log or file of the run."""

from __future__ import annotations

import asyncio
import csv
import itertools
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from batchcert import emulator as emu
from batchcert.api import credentials as creds
from batchcert.api.client import CREDENTIALS_UNAVAILABLE, GaapClient, create_session
from batchcert.errors import CredentialsError, ExitCode
from batchcert.model import Outcome
from batchcert.settings import Credentials, find_static_credentials, load_credentials, parse_endpoint
from tests.conftest import ThreadedEmulator, run_against, write_mapping
from tests.worlds import QUICK_TASKS, SECRET_ID, SECRET_KEY, migration_world, one_row_listeners

ROLE_ARN = "qcs::cam::uin/100000000001:roleName/batchcert-ci"
CAM_ROLE = "batchcert-ops"
#: the long-term base keys the role is assumed with: unknown to the emulator, so a request signed with them would fail
BASE_ID, BASE_KEY = "AKIDbasekeys0000000000000000000000001", "base-secret-key-never-shown-0001"
#: how long the fakes' keys live: a run of a few seconds outlasts several of them
LIFETIME_S = 2


class FakeRoleServices:
    """A fake STS (AssumeRole, AssumeRoleWithWebIdentity) and a fake CVM metadata service on one loopback port. Each
    answer mints fresh keys expiring in LIFETIME_S (the service's ExpiredTime is whole seconds) and registers them
    in `world`; `failing` makes STS answer an error from then on."""

    def __init__(self, world: emu.World) -> None:
        self.world = world
        self.minted: list[tuple[str, str, str]] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.failing = False
        self._lock = threading.Lock()
        self._counter = itertools.count(1)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
                action = self.headers.get("X-TC-Action", "")
                fake.calls.append((action, body))
                if fake.failing:
                    self._send(
                        {"Response": {"Error": {"Code": "InternalError", "Message": "sts is down"}, "RequestId": "r"}}
                    )
                    return
                secret_id, secret_key, token, expires = fake.mint()
                credentials = {"TmpSecretId": secret_id, "TmpSecretKey": secret_key, "Token": token}
                self._send({"Response": {"Credentials": credentials, "ExpiredTime": expires, "RequestId": "r"}})

            def do_GET(self) -> None:
                fake.calls.append(("metadata", {"path": self.path}))
                prefix = "/latest/meta-data/cam/security-credentials/"
                if self.path == prefix:
                    self._send(CAM_ROLE, "text/plain")
                    return
                if self.path != prefix + CAM_ROLE or fake.failing:
                    self.send_error(404)
                    return
                secret_id, secret_key, token, expires = fake.mint()
                self._send(
                    {
                        "Code": "Success",
                        "TmpSecretId": secret_id,
                        "TmpSecretKey": secret_key,
                        "Token": token,
                        "ExpiredTime": expires,
                    }
                )

            def _send(self, payload: Any, content_type: str = "application/json") -> None:
                data = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def mint(self) -> tuple[str, str, str, int]:
        with self._lock:
            n = next(self._counter)
            secret_id = f"AKIDtemporary{n:06d}000000000000000"
            secret_key, token = f"tmpkey-{secrets.token_hex(12)}", f"tmptoken-{secrets.token_hex(20)}"
            expires = int(time.time()) + LIFETIME_S
            self.world.add_credential(secret_id, secret_key, token, expires)
            self.minted.append((secret_id, secret_key, token))
            return secret_id, secret_key, token, expires

    @property
    def endpoints(self) -> creds.RoleEndpoints:
        return creds.RoleEndpoints(sts=self.url, metadata=self.url + "/latest/meta-data/")

    def secrets(self) -> list[str]:
        return [value for _, key, token in self.minted for value in (key, token)]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@pytest.fixture(autouse=True)
def no_real_role_endpoints(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reaches a real STS or metadata address: by default the providers are aimed at a closed loopback port,
    and the role variables of the machine running the tests are cleared."""
    monkeypatch.setattr(creds, "ENDPOINTS", creds.RoleEndpoints("http://127.0.0.1:9", "http://127.0.0.1:9/"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in (
        "TENCENTCLOUD_SECRET_ID",
        "TENCENTCLOUD_SECRET_KEY",
        "TENCENTCLOUD_SESSION_TOKEN",
        "TENCENTCLOUD_TOKEN",
        "TENCENTCLOUD_SECURITY_TOKEN",
        creds.ENV_ROLE_ARN,
        creds.ENV_ROLE_SESSION_NAME,
        creds.ENV_CAM_ROLE_NAME,
        *creds.ENV_OIDC,
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def role_world() -> Callable[..., tuple[emu.World, list[tuple[str, str, str]]]]:
    def build(listeners: int) -> tuple[emu.World, list[tuple[str, str, str]]]:
        data, rows = migration_world(one_row_listeners(listeners), task_seconds=0.05, latency_ms=2)
        return emu.World.from_dict(data), rows

    return build


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[emu.World], FakeRoleServices]]:
    started: list[FakeRoleServices] = []

    def start(world: emu.World) -> FakeRoleServices:
        fake = FakeRoleServices(world)
        started.append(fake)
        monkeypatch.setattr(creds, "ENDPOINTS", fake.endpoints)
        return fake

    yield start
    for fake in started:
        fake.close()


def assumed_role_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENCENTCLOUD_SECRET_ID", BASE_ID)
    monkeypatch.setenv("TENCENTCLOUD_SECRET_KEY", BASE_KEY)
    monkeypatch.setenv(creds.ENV_ROLE_ARN, ROLE_ARN)
    monkeypatch.setenv(creds.ENV_ROLE_SESSION_NAME, "ci-42")


def report_rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "report.csv").open(encoding="utf-8-sig") as fh:
        return list(csv.DictReader(fh))


def assert_no_secret_anywhere(run_dir: Path, texts: list[str], secret_values: list[str]) -> None:
    """No secret key or token in any file of the run directory, nor in captured output and logs."""
    assert secret_values
    for path in run_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            leaked = [s for s in secret_values if s.encode() in data]
            assert not leaked, f"{path.name} holds a secret"
    for text in texts:
        assert not [s for s in secret_values if s in text]


def auth_refusals(server: ThreadedEmulator) -> dict[str, int]:
    assert server.emulator is not None
    return {code: n for code, n in server.emulator.stats.items() if code.startswith("AuthFailure")}


def test_assumed_role_keys_expiring_mid_run_are_refreshed_and_every_row_succeeds(
    threaded_emulator: Callable[..., ThreadedEmulator],
    role_world: Callable[..., tuple[emu.World, list[tuple[str, str, str]]]],
    fakes: Callable[[emu.World], FakeRoleServices],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    world, rows = role_world(50)
    server = threaded_emulator(world)
    fake = fakes(world)
    assumed_role_env(monkeypatch)
    started = time.monotonic()
    summary = run_against(server, write_mapping(tmp_path / "m.csv", rows), tmp_path / "run", runner=QUICK_TASKS)
    took_s = time.monotonic() - started
    assert summary.exit_code == ExitCode.OK, summary.stop_reason
    assert {r["outcome"] for r in report_rows(tmp_path / "run")} == {"succeeded"}
    # the run outlasted its first keys, and was refreshed — one refresh per lifetime, not one per request
    assert took_s > LIFETIME_S
    assert 2 <= len(fake.minted) <= took_s / (LIFETIME_S / 2) + 2
    assert [action for action, _ in fake.calls] == ["AssumeRole"] * len(fake.minted)
    assert {body["RoleArn"] for _, body in fake.calls} == {ROLE_ARN}
    assert {body["RoleSessionName"] for _, body in fake.calls} == {"ci-42"}
    # no request was signed with expired keys (nor with the base keys): the emulator refused none
    assert auth_refusals(server) == {}
    assert server.emulator is not None
    used_ids = {secret_id for secret_id, _ in server.emulator.admitted}
    assert len(used_ids) >= 2 and used_ids <= {secret_id for secret_id, _, _ in fake.minted}
    captured = capsys.readouterr()
    assert_no_secret_anywhere(tmp_path / "run", [captured.out, captured.err, caplog.text], [*fake.secrets(), BASE_KEY])
    # the change record says which provider signed the session
    [session] = json.loads((tmp_path / "run" / "summary.json").read_text("utf-8"))["sessions"]
    assert session["credentials"].startswith(f"assumed role {ROLE_ARN}")
    assert f"assumed role {ROLE_ARN}" in (tmp_path / "run" / "summary.md").read_text("utf-8")


def run_with_failing_sts(
    threaded_emulator: Callable[..., ThreadedEmulator],
    role_world: Callable[..., tuple[emu.World, list[tuple[str, str, str]]]],
    fakes: Callable[[emu.World], FakeRoleServices],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> tuple[Any, FakeRoleServices, ThreadedEmulator, int]:
    """A run whose STS hands out two sets of keys and then fails: (summary, fake, server, rows)."""
    world, rows = role_world(150)
    server = threaded_emulator(world)
    fake = fakes(world)
    assumed_role_env(monkeypatch)
    original_mint = fake.mint

    def mint_twice() -> tuple[str, str, str, int]:
        minted = original_mint()
        fake.failing = len(fake.minted) >= 2  # two sets of keys are handed out; every later AssumeRole fails
        return minted

    monkeypatch.setattr(fake, "mint", mint_twice)
    summary = run_against(server, write_mapping(tmp_path / "m.csv", rows), tmp_path / "run", runner=QUICK_TASKS)
    return summary, fake, server, len(rows)


def test_a_refresh_that_fails_mid_run_stops_it_cleanly(
    threaded_emulator: Callable[..., ThreadedEmulator],
    role_world: Callable[..., tuple[emu.World, list[tuple[str, str, str]]]],
    fakes: Callable[[emu.World], FakeRoleServices],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The run stops at the failed refresh, whatever request needed the keys (a change, or a read): rows sent end
    `succeeded`, a change that needed the keys `retryable` with the provider in its message, the others
    `not_attempted`; the journal keeps the provider's error, and the log names it."""
    caplog.set_level(logging.DEBUG)
    summary, fake, server, rows = run_with_failing_sts(threaded_emulator, role_world, fakes, monkeypatch, tmp_path)
    assert summary.exit_code == ExitCode.ROWS_NOT_DONE
    assert CREDENTIALS_UNAVAILABLE in summary.stop_reason
    report = report_rows(tmp_path / "run")
    assert {r["outcome"] for r in report} <= {"succeeded", "retryable", "not_attempted"}
    assert 0 < summary.counts[Outcome.SUCCEEDED] < rows
    assert summary.counts[Outcome.RETRYABLE] + summary.counts[Outcome.NOT_ATTEMPTED] > 0
    named = f"assumed role {ROLE_ARN} (session ci-42, from environment): could not get temporary keys (InternalError: "
    for row in report:
        if row["outcome"] == "retryable":
            assert row["error_code"] == CREDENTIALS_UNAVAILABLE and named in row["error_message"]
        elif row["outcome"] == "not_attempted":
            assert CREDENTIALS_UNAVAILABLE in row["error_message"]
    assert named.encode() in (tmp_path / "run" / "journal.sqlite3").read_bytes()
    assert named in caplog.text
    # the keys ran out but no request went out with them: the emulator refused none
    assert auth_refusals(server) == {}
    assert len(fake.minted) == 2 and len(fake.calls) >= 3
    captured = capsys.readouterr()
    assert_no_secret_anywhere(tmp_path / "run", [captured.out, captured.err, caplog.text], [*fake.secrets(), BASE_KEY])


def test_the_stop_reason_names_the_provider(
    threaded_emulator: Callable[..., ThreadedEmulator],
    role_world: Callable[..., tuple[emu.World, list[tuple[str, str, str]]]],
    fakes: Callable[[emu.World], FakeRoleServices],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    summary, _, _, _ = run_with_failing_sts(threaded_emulator, role_world, fakes, monkeypatch, tmp_path)
    assert f"assumed role {ROLE_ARN}" in summary.stop_reason


def test_instance_role_signs_and_names_the_role(
    threaded_emulator: Callable[..., ThreadedEmulator],
    role_world: Callable[..., tuple[emu.World, list[tuple[str, str, str]]]],
    fakes: Callable[[emu.World], FakeRoleServices],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    world, rows = role_world(3)
    server = threaded_emulator(world)
    fake = fakes(world)
    monkeypatch.setenv(creds.ENV_CAM_ROLE_NAME, "auto")
    found = creds.find_credentials()
    assert found.credentials.source == f"instance role {CAM_ROLE}"
    assert found.credentials.token and found.credentials.expires_at is not None
    assert repr(found.credentials).count(found.credentials.secret_key) == 0
    summary = run_against(server, write_mapping(tmp_path / "m.csv", rows), tmp_path / "run", runner=QUICK_TASKS)
    assert summary.exit_code == ExitCode.OK
    assert auth_refusals(server) == {}
    assert all(action == "metadata" for action, _ in fake.calls)


def test_instance_role_without_metadata_is_a_credentials_error(
    fakes: Callable[[emu.World], FakeRoleServices], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = fakes(emu.World.from_dict(migration_world({"listener-x": 1})[0]))
    fake.failing = True
    monkeypatch.setenv(creds.ENV_CAM_ROLE_NAME, CAM_ROLE)
    with pytest.raises(CredentialsError, match=f"instance role {CAM_ROLE}: the metadata service"):
        creds.find_credentials()


def test_oidc_web_identity_reads_the_token_file_at_each_refresh(
    threaded_emulator: Callable[..., ThreadedEmulator],
    role_world: Callable[..., tuple[emu.World, list[tuple[str, str, str]]]],
    fakes: Callable[[emu.World], FakeRoleServices],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    world, rows = role_world(3)
    server = threaded_emulator(world)
    fake = fakes(world)
    token_file = tmp_path / "identity-token"
    token_file.write_text("oidc-token-1\n", encoding="utf-8")
    for name, value in zip(
        creds.ENV_OIDC, ("ap-guangzhou", "github-ci", str(token_file), ROLE_ARN + "-oidc"), strict=True
    ):
        monkeypatch.setenv(name, value)
    found = creds.find_credentials()
    assert found.credentials.source == f"OIDC role {ROLE_ARN}-oidc (provider github-ci)"
    assert found.provider is not None
    token_file.write_text("oidc-token-2", encoding="utf-8")  # the cluster rotates it
    found.provider.fetch()
    assert [(a, b["WebIdentityToken"], b["ProviderId"]) for a, b in fake.calls] == [
        ("AssumeRoleWithWebIdentity", "oidc-token-1", "github-ci"),
        ("AssumeRoleWithWebIdentity", "oidc-token-2", "github-ci"),
    ]
    summary = run_against(server, write_mapping(tmp_path / "m.csv", rows), tmp_path / "run", runner=QUICK_TASKS)
    assert summary.exit_code == ExitCode.OK
    assert auth_refusals(server) == {}


def test_oidc_with_some_variables_missing_names_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TKE_REGION", "ap-guangzhou")
    with pytest.raises(CredentialsError, match="TKE_PROVIDER_ID, TKE_WEB_IDENTITY_TOKEN_FILE, TKE_ROLE_ARN"):
        creds.find_credentials()


def test_a_role_arn_needs_long_term_base_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(creds.ENV_ROLE_ARN, ROLE_ARN)
    with pytest.raises(CredentialsError, match="no base credential"):
        creds.find_credentials()
    assumed_role_env(monkeypatch)
    monkeypatch.setenv("TENCENTCLOUD_TOKEN", "a-session-token")
    with pytest.raises(CredentialsError, match="long-term base keys"):
        creds.find_credentials()


def test_static_environment_keys_are_found_as_before_and_never_refreshed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TENCENTCLOUD_SECRET_ID", SECRET_ID)
    monkeypatch.setenv("TENCENTCLOUD_SECRET_KEY", SECRET_KEY)
    monkeypatch.setenv("TENCENTCLOUD_SESSION_TOKEN", "tok")
    found = creds.find_credentials()
    assert found.provider is None
    assert found.credentials == load_credentials().credentials
    assert found.credentials == Credentials(SECRET_ID, SECRET_KEY, "tok", source="environment")
    source = found.source()
    assert source.ready() is found.credentials and source.label == "environment"
    assert find_static_credentials(environ={}, home=tmp_path) is None


def test_nothing_found_names_every_source(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(CredentialsError) as caught:
        creds.find_credentials()
    for name in ("TENCENTCLOUD_SECRET_ID", creds.ENV_ROLE_ARN, creds.ENV_CAM_ROLE_NAME, "TKE_WEB_IDENTITY_TOKEN_FILE"):
        assert name in str(caught.value)


class CountingProvider:
    """A provider whose fetch takes `delay_s` and counts its calls (from any thread)."""

    label = "test provider"

    def __init__(self, lifetime_s: float = 60.0, delay_s: float = 0.1, fail: bool = False) -> None:
        self.calls = 0
        self.lifetime_s, self.delay_s, self.fail = lifetime_s, delay_s, fail
        self.concurrent, self.most_concurrent = 0, 0
        self._lock = threading.Lock()

    def fetch(self) -> Credentials:
        with self._lock:
            self.calls += 1
            self.concurrent += 1
            self.most_concurrent = max(self.most_concurrent, self.concurrent)
        time.sleep(self.delay_s)
        with self._lock:
            self.concurrent -= 1
        if self.fail:
            raise CredentialsError(f"{self.label}: could not get temporary keys (refused)")
        now = time.time()
        return Credentials(f"AKIDfresh{self.calls}", "fresh-key", "fresh-token", self.label, now + self.lifetime_s, now)


def expiring(in_s: float, lifetime_s: float = 100.0) -> Credentials:
    now = time.time()
    return Credentials("AKIDold", "old-key", "old-token", "test provider", now + in_s, now + in_s - lifetime_s)


async def test_hundreds_of_requests_wait_for_one_refresh_only_when_keys_are_due() -> None:
    provider = CountingProvider()
    fresh_for_long = creds.CredentialSource(expiring(50.0), provider)
    assert fresh_for_long.ready() is not None  # 50 s left of 100: not due, no wait, no fetch
    assert provider.calls == 0
    # 5 s left of a 100 s lifetime: inside the tenth-of-lifetime margin, so refreshed before use
    source = creds.CredentialSource(expiring(5.0), provider)
    assert source.ready() is None
    got = await asyncio.gather(*(source.current() for _ in range(300)))
    assert provider.calls == 1 and provider.most_concurrent == 1 and source.refreshes == 1
    assert {c.secret_id for c in got} == {"AKIDfresh1"}
    assert all(c.expires_at is not None and c.expires_at > time.time() for c in got)
    assert source.ready() is got[0]


def test_the_margin_is_five_minutes_or_a_tenth_of_the_lifetime() -> None:
    assert creds.refresh_margin_s(expiring(7200.0, 7200.0)) == 300.0
    assert creds.refresh_margin_s(expiring(2.0, 2.0)) == pytest.approx(0.2)
    assert creds.refresh_margin_s(Credentials("AKIDstatic", "k")) == 0.0


async def test_a_failed_refresh_is_kept_and_never_hands_out_expired_keys() -> None:
    provider = CountingProvider(fail=True, delay_s=0.0)
    source = creds.CredentialSource(expiring(-1.0), provider)
    for _ in range(3):
        with pytest.raises(CredentialsError, match="test provider"):
            await source.current()
    assert provider.calls == 1
    assert source.ready() is None


async def test_keys_that_come_back_already_expired_are_refused() -> None:
    provider = CountingProvider(lifetime_s=-5.0, delay_s=0.0)
    source = creds.CredentialSource(expiring(-1.0), provider)
    with pytest.raises(CredentialsError, match="expired already"):
        await source.current()


async def test_the_client_answers_a_failed_refresh_with_a_run_stopping_code_and_sends_nothing() -> None:
    from batchcert import classify
    from batchcert.model import Disposition

    world = emu.World.from_dict(migration_world({"listener-x": 1})[0])
    async with emu.serve(world) as (url, served):
        endpoint = parse_endpoint(url)
        async with create_session(endpoint) as session:
            source = creds.CredentialSource(expiring(-1.0), CountingProvider(fail=True, delay_s=0.0))
            client = GaapClient(session, endpoint, source, 5.0)
            result = await client.send("DescribeCertificates", {})
    assert result.code == CREDENTIALS_UNAVAILABLE and not result.sent
    assert result.message.startswith("not sent: test provider")
    assert classify.disposition_of(CREDENTIALS_UNAVAILABLE) is Disposition.STOP_RUN
    assert sum(served.requests.values()) == 0 and served.stats == {}


async def test_emulator_refuses_expired_and_wrong_tokens_and_keeps_plain_keys() -> None:
    now = time.time()
    data, _ = migration_world({"listener-x": 1})
    data["credentials"] = {
        SECRET_ID: SECRET_KEY,
        "AKIDlive": {"key": "live-key", "token": "live-token", "expires_at": now + 60},
        "AKIDgone": {"key": "gone-key", "token": "gone-token", "expires_at": now - 1},
    }
    world = emu.World.from_dict(data)
    assert world.to_dict()["credentials"] == data["credentials"]
    answers: dict[str, str | None] = {}
    async with emu.serve(world) as (url, served):
        endpoint = parse_endpoint(url)
        async with create_session(endpoint) as session:
            for name, credentials in {
                "plain": Credentials(SECRET_ID, SECRET_KEY),
                "live": Credentials("AKIDlive", "live-key", "live-token"),
                "wrong token": Credentials("AKIDlive", "live-key", "other-token"),
                "no token": Credentials("AKIDlive", "live-key"),
                "expired": Credentials("AKIDgone", "gone-key", "gone-token"),
            }.items():
                result = await GaapClient(session, endpoint, credentials, 5.0).send("DescribeCertificates", {})
                answers[name] = result.code
    assert answers == {
        "plain": None,
        "live": None,
        "wrong token": "AuthFailure.TokenFailure",
        "no token": "AuthFailure.TokenFailure",
        "expired": "AuthFailure.TokenFailure",
    }
    assert served.stats["AuthFailure.TokenFailure"] == 3


def test_world_file_refuses_a_malformed_temporary_credential() -> None:
    from batchcert.errors import WorldError

    data, _ = migration_world({"listener-x": 1})
    data["credentials"] = {"AKIDbad": {"token": "t"}}
    with pytest.raises(WorldError, match="AKIDbad"):
        emu.World.from_dict(data)
