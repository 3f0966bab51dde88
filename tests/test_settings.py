"""Credentials lookup (env, INI profile, tccli file), masking, endpoint rules, setting ranges."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from batchcert.errors import CredentialsError, SettingsError
from batchcert.settings import RunSettings, load_credentials, mask_secret_id, parse_endpoint


def test_environment_first_with_each_token_variable(tmp_path: Path) -> None:
    """Env credentials win; the session token is read from any of the three ecosystem variable names."""
    for token_var in ("TENCENTCLOUD_SESSION_TOKEN", "TENCENTCLOUD_TOKEN", "TENCENTCLOUD_SECURITY_TOKEN"):
        env = {"TENCENTCLOUD_SECRET_ID": "AKIDenv", "TENCENTCLOUD_SECRET_KEY": "k", token_var: "tok"}
        found = load_credentials(environ=env, home=tmp_path).credentials
        assert (found.secret_id, found.secret_key, found.token, found.source) == ("AKIDenv", "k", "tok", "environment")


def test_ini_profile_and_permission_warning(tmp_path: Path) -> None:
    """--profile reads ~/.tencentcloud/credentials; a file readable by others produces a chmod warning."""
    path = tmp_path / ".tencentcloud" / "credentials"
    path.parent.mkdir()
    path.write_text("[default]\nsecret_id = AKIDdef\nsecret_key = kd\n[prod]\nsecret_id = AKIDprod\nsecret_key = kp\n")
    path.chmod(0o644)
    found = load_credentials(
        "prod", environ={"TENCENTCLOUD_SECRET_ID": "AKIDenv", "TENCENTCLOUD_SECRET_KEY": "k"}, home=tmp_path
    )
    assert found.credentials.secret_id == "AKIDprod"
    assert found.warnings and "chmod 600" in found.warnings[0]
    path.chmod(0o600)
    assert load_credentials(environ={}, home=tmp_path).warnings == ()
    assert load_credentials(environ={}, home=tmp_path).credentials.secret_id == "AKIDdef"


def test_tccli_credential_file(tmp_path: Path) -> None:
    """A tccli profile file (~/.tccli/NAME.credential, JSON) is found by --profile."""
    path = tmp_path / ".tccli" / "ops.credential"
    path.parent.mkdir()
    path.write_text(json.dumps({"secretId": "AKIDtccli", "secretKey": "kt", "token": "t"}))
    path.chmod(0o600)
    found = load_credentials("ops", environ={}, home=tmp_path).credentials
    assert (found.secret_id, found.token) == ("AKIDtccli", "t")


def test_missing_credentials_name_the_variables(tmp_path: Path) -> None:
    """With nothing configured the error names the environment variables and --profile."""
    with pytest.raises(CredentialsError, match="TENCENTCLOUD_SECRET_ID and TENCENTCLOUD_SECRET_KEY"):
        load_credentials(environ={}, home=tmp_path)
    with pytest.raises(CredentialsError, match="profile 'nope' not found"):
        load_credentials("nope", environ={}, home=tmp_path)


def test_secret_key_is_not_in_repr() -> None:
    """The key never shows in a repr; the SecretId is masked to its first and last four characters."""
    found = load_credentials(
        environ={"TENCENTCLOUD_SECRET_ID": "AKIDabcdefgh1234", "TENCENTCLOUD_SECRET_KEY": "s3cr3t-value"},
        home=Path("/nonexistent"),
    )
    assert "s3cr3t-value" not in repr(found)
    assert mask_secret_id("AKIDabcdefgh1234") == "AKID********1234"
    assert mask_secret_id("short") == "*****"


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://gaap.tencentcloudapi.com", "gaap.tencentcloudapi.com"),
        ("http://127.0.0.1:8765", "127.0.0.1:8765"),
        ("http://localhost:80/", "localhost:80"),
        ("https://proxy.corp:8443", "proxy.corp:8443"),
    ],
)
def test_endpoint_signed_host_is_host_and_port(url: str, host: str) -> None:
    """The signed Host is the URL's host[:port]."""
    assert parse_endpoint(url).host == host


@pytest.mark.parametrize(
    "url", ["http://gaap.tencentcloudapi.com", "ftp://x", "https://x/path", "gaap.tencentcloudapi.com"]
)
def test_bad_endpoints_are_refused(url: str) -> None:
    """Plain http to a non-loopback host, other schemes and paths are refused with advice."""
    with pytest.raises(SettingsError):
        parse_endpoint(url)


@pytest.mark.parametrize(
    ("field", "value"), [("rate_per_s", 0), ("timeout_s", -1), ("max_attempts", 0), ("listener_wait_s", -1)]
)
def test_settings_ranges(field: str, value: float) -> None:
    """Out-of-range rate, timeout and attempts are refused."""
    out_of_range: dict[str, Any] = {field: value}  # the field is named at run time: its type varies with it
    with pytest.raises(SettingsError):
        RunSettings(endpoint=parse_endpoint("https://gaap.tencentcloudapi.com"), **out_of_range)


def test_endpoint_host_is_signed_in_lower_case() -> None:
    """An endpoint typed with capitals sends and signs the canonical lower-case host."""
    from batchcert.settings import parse_endpoint

    endpoint = parse_endpoint("https://GAAP.Intl.TencentCloudAPI.com")
    assert endpoint.host == "gaap.intl.tencentcloudapi.com"
    assert endpoint.url == "https://gaap.intl.tencentcloudapi.com"


def test_settings_resolve_flag_then_recorded_then_default() -> None:
    """Every command resolves one way: a flag wins over what the run recorded, which wins over the default; a
    rehearsal has no endpoint and refuses one."""
    from batchcert.settings import DEFAULT_LISTENER_WAIT_S, DEFAULT_MAX_ATTEMPTS, SettingFlags, resolve_settings

    recorded = RunSettings(parse_endpoint("https://gaap.intl.tencentcloudapi.com"), 7, 3, 4, 60).to_record()
    again = resolve_settings(SettingFlags(), recorded=recorded)
    assert again.to_record() == recorded  # a rerun with no flags sends as the run did
    flagged = resolve_settings(SettingFlags(rate_per_s=2, listener_wait_s=5), recorded=recorded)
    assert (flagged.rate_per_s, flagged.timeout_s, flagged.listener_wait_s) == (2, 3, 5)
    assert flagged.endpoint is not None and flagged.endpoint.host == "gaap.intl.tencentcloudapi.com"
    fresh = resolve_settings(SettingFlags())
    assert (fresh.max_attempts, fresh.listener_wait_s) == (DEFAULT_MAX_ATTEMPTS, DEFAULT_LISTENER_WAIT_S)
    assert fresh.endpoint is not None and fresh.endpoint.url == "https://gaap.tencentcloudapi.com"
    rehearsal = resolve_settings(SettingFlags(), rehearsal=True, recorded={"endpoint": "embedded emulator (rehearsal)"})
    assert rehearsal.endpoint is None and rehearsal.to_record()["endpoint"] == "embedded emulator (rehearsal)"
    with pytest.raises(SettingsError, match="--endpoint"):
        resolve_settings(SettingFlags(endpoint="http://127.0.0.1:1"), rehearsal=True)
    with pytest.raises(SettingsError, match="--rate"):
        resolve_settings(SettingFlags(), recorded={"rate_per_s": "fast"})
