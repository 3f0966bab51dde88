"""Frozen settings of a run and the credentials it signs with. Stdlib only.

Credential lookup follows the Tencent Cloud ecosystem (docs/gaap-api.md, "Credentials"): env `TENCENTCLOUD_SECRET_ID` /
`TENCENTCLOUD_SECRET_KEY` with a session token from `TENCENTCLOUD_SESSION_TOKEN` (SDK), `TENCENTCLOUD_TOKEN` (tccli)
or `TENCENTCLOUD_SECURITY_TOKEN` (Terraform); then the INI file `~/.tencentcloud/credentials`; then tccli's
`~/.tccli/<profile>.credential` (JSON). The secret key is never part of a repr, a log line or a journal. The role
providers (instance role, assumed role, OIDC) and the refresh of their temporary keys are `batchcert.api.credentials`'.
"""

from __future__ import annotations

import configparser
import ipaddress
import json
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from batchcert.errors import CredentialsError, SettingsError

DEFAULT_ENDPOINT = "https://gaap.tencentcloudapi.com"
#: the international site's endpoint (same API, same signing)
INTERNATIONAL_ENDPOINT = "https://gaap.intl.tencentcloudapi.com"
DEFAULT_RATE_PER_S = 20.0
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MAX_ATTEMPTS = 6
#: how long a row waits out a busy listener or a changing domain (Terraform waits minutes for GAAP listeners)
DEFAULT_LISTENER_WAIT_S = 300.0
#: a target certificate expiring sooner than this many days is a warning (plan, confirmation, summary)
DEFAULT_MIN_VALIDITY_DAYS = 30.0
#: how long a changed domain is probed again while its edge serves another certificate (`--probe-wait`)
DEFAULT_PROBE_WAIT_S = 120.0

ENV_SECRET_ID = "TENCENTCLOUD_SECRET_ID"  # noqa: S105 - a variable name
ENV_SECRET_KEY = "TENCENTCLOUD_SECRET_KEY"  # noqa: S105 - a variable name
#: Session-token variable names, in lookup order: SDK, tccli, Terraform (docs/gaap-api.md, "Credentials").
ENV_TOKENS = ("TENCENTCLOUD_SESSION_TOKEN", "TENCENTCLOUD_TOKEN", "TENCENTCLOUD_SECURITY_TOKEN")


def mask_secret_id(secret_id: str) -> str:
    """Show only the first 4 and last 4 characters of a SecretId (all stars when it is 8 characters or fewer)."""
    if len(secret_id) <= 8:
        return "*" * len(secret_id)
    return f"{secret_id[:4]}{'*' * (len(secret_id) - 8)}{secret_id[-4:]}"


@dataclass(frozen=True)
class Credentials:
    """A SecretId/SecretKey pair with an optional session token. `source` says where it was found (the provider that
    signed: "environment", a profile, "instance role …", "assumed role …", "OIDC role …").

    Temporary keys from a role provider (`batchcert.api.credentials`) carry when they were issued and when they
    expire (unix seconds); static keys carry neither and are never refreshed."""

    secret_id: str
    secret_key: str = field(repr=False)
    token: str = field(default="", repr=False)
    source: str = ""
    expires_at: float | None = None
    issued_at: float | None = None

    @property
    def masked_id(self) -> str:
        return mask_secret_id(self.secret_id)


@dataclass(frozen=True)
class Endpoint:
    """Where requests go. `host` is the URL's host[:port], exactly what is sent and signed as `Host`."""

    url: str
    scheme: str
    host: str

    @property
    def is_loopback(self) -> bool:
        return _is_loopback(urlsplit(self.url).hostname or "")


def _is_loopback(hostname: str) -> bool:
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def parse_endpoint(url: str) -> Endpoint:
    """Check an endpoint URL and return it parsed.

    Raises SettingsError unless it is `https://host[:port]` or, for loopback hosts only, `http://host[:port]`.
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise SettingsError(f"--endpoint {url!r} is not an http(s) URL — use e.g. {DEFAULT_ENDPOINT}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise SettingsError(f"--endpoint {url!r} must not carry a path or query — give only scheme://host[:port]")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise SettingsError(
            f"--endpoint {url!r}: plain http is allowed only for loopback hosts (an emulator) — use https"
        )
    # the Host header is signed as sent, and the service's canonical form is lower case (docs/gaap-api.md, "Signing"):
    # an --endpoint typed with capitals must not sign differently
    netloc = parts.netloc.lower()
    return Endpoint(url=f"{parts.scheme}://{netloc}", scheme=parts.scheme, host=netloc)


#: what a rehearsal's sessions record as their endpoint (it has none: the emulator is in process)
REHEARSAL_ENDPOINT = "embedded emulator (rehearsal)"


@dataclass(frozen=True)
class RunSettings:
    """How a command sends and waits: the endpoint (None: a rehearsal against the embedded emulator), the per-action
    ceiling (requests/s), the per-request timeout (s), attempts per row, how long a row waits out a busy listener or
    a changing domain (s), and extra trusted CAs. Built by `resolve_settings` only, so every command resolves the
    same way."""

    endpoint: Endpoint | None = None
    rate_per_s: float = DEFAULT_RATE_PER_S
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    listener_wait_s: float = DEFAULT_LISTENER_WAIT_S
    ca_bundle: Path | None = None
    min_validity_days: float = DEFAULT_MIN_VALIDITY_DAYS

    def __post_init__(self) -> None:
        if not 0 < self.rate_per_s <= 10000:
            raise SettingsError(f"--rate {self.rate_per_s} is out of range — give requests per second in (0, 10000]")
        if not 0 < self.timeout_s <= 600:
            raise SettingsError(f"--timeout {self.timeout_s} is out of range — give seconds in (0, 600]")
        if not 1 <= self.max_attempts <= 100:
            raise SettingsError(f"--max-attempts {self.max_attempts} is out of range — give 1 to 100")
        if not 0 <= self.listener_wait_s <= 86400:
            raise SettingsError(f"--listener-wait {self.listener_wait_s} is out of range — give seconds in [0, 86400]")
        if self.ca_bundle is not None and not self.ca_bundle.is_file():
            raise SettingsError(
                f"--ca-bundle {self.ca_bundle} is not a file — give a PEM file of trusted CA certificates"
            )
        if not 0 <= self.min_validity_days <= 3650:
            raise SettingsError(f"--min-validity-days {self.min_validity_days} is out of range — give 0 to 3650")

    @property
    def rehearsal(self) -> bool:
        return self.endpoint is None

    @property
    def endpoint_label(self) -> str:
        return REHEARSAL_ENDPOINT if self.endpoint is None else self.endpoint.url

    def to_record(self) -> dict[str, str | float | int]:
        """What a session records, so that a rerun resolves to the same settings (never a secret)."""
        return {
            "endpoint": self.endpoint_label,
            "rate_per_s": self.rate_per_s,
            "timeout_s": self.timeout_s,
            "max_attempts": self.max_attempts,
            "listener_wait_s": self.listener_wait_s,
            "min_validity_days": self.min_validity_days,
        }


@dataclass(frozen=True)
class SettingFlags:
    """What the command line gave; None means not given (then what the run recorded, then the default)."""

    endpoint: str | None = None
    rate_per_s: float | None = None
    timeout_s: float | None = None
    max_attempts: int | None = None
    listener_wait_s: float | None = None
    ca_bundle: Path | None = None
    min_validity_days: float | None = None


def resolve_settings(
    flags: SettingFlags, rehearsal: bool = False, recorded: Mapping[str, object] | None = None
) -> RunSettings:
    """The one settings resolution of every command: a flag wins over what an earlier session of the run recorded,
    which wins over the default. A rehearsal has no endpoint (an `--endpoint` given with it is an error).
    Raises SettingsError naming the flag when a value is out of range."""
    recorded = recorded or {}

    def number(given: float | None, name: str, default: float) -> float:
        if given is not None:
            return given
        value = recorded.get(name)
        if value is None or value == "":
            return default
        try:
            return float(str(value))
        except ValueError:
            flag = "--" + name.removesuffix("_per_s").removesuffix("_s").replace("_", "-")
            raise SettingsError(f"the run recorded {name} = {value!r}, not a number — give {flag} explicitly") from None

    if rehearsal and flags.endpoint is not None:
        raise SettingsError("--endpoint cannot be combined with a rehearsal (--emulator/--world) — drop one of them")
    endpoint_text = flags.endpoint or str(recorded.get("endpoint") or DEFAULT_ENDPOINT)
    return RunSettings(
        endpoint=None if rehearsal else parse_endpoint(endpoint_text),
        rate_per_s=number(flags.rate_per_s, "rate_per_s", DEFAULT_RATE_PER_S),
        timeout_s=number(flags.timeout_s, "timeout_s", DEFAULT_TIMEOUT_S),
        max_attempts=int(number(flags.max_attempts, "max_attempts", DEFAULT_MAX_ATTEMPTS)),
        listener_wait_s=number(flags.listener_wait_s, "listener_wait_s", DEFAULT_LISTENER_WAIT_S),
        ca_bundle=flags.ca_bundle,
        min_validity_days=number(flags.min_validity_days, "min_validity_days", DEFAULT_MIN_VALIDITY_DAYS),
    )


@dataclass(frozen=True)
class ProfileRole:
    """A role a profile of `~/.tencentcloud/credentials` signs with instead of its own keys (README, "Credentials"):
    `role_arn` (with `role_session_name`) is assumed with the section's keys as the base — one base key reaching a
    role in each customer account — or, with `web_identity_token_file`, `provider_id` and `region`, through OIDC web
    identity (no keys); `cam_role_name` is the instance role (no keys; "auto" asks the metadata service for the
    role's name)."""

    role_arn: str = ""
    session_name: str = ""
    cam_role_name: str = ""
    web_identity_token_file: str = ""
    provider_id: str = ""
    region: str = ""

    @property
    def needs_keys(self) -> bool:
        """Only an assumed role signs its STS call with the section's keys."""
        return bool(self.role_arn) and not self.web_identity_token_file


@dataclass(frozen=True)
class CredentialLookup:
    """What `load_credentials` found, with warnings to show (e.g. a credential file readable by others), and the
    role its profile names (None: it signs with the keys found). A profile naming only an instance role has no keys
    of its own: `credentials` then has an empty SecretId and is never signed with."""

    credentials: Credentials
    warnings: tuple[str, ...] = ()
    role: ProfileRole | None = None


def _token_from(environ: Mapping[str, str]) -> str:
    return next((environ[name] for name in ENV_TOKENS if environ.get(name)), "")


def _permission_warning(path: Path) -> tuple[str, ...]:
    mode = path.stat().st_mode
    if mode & (stat.S_IRGRP | stat.S_IROTH | stat.S_IWGRP | stat.S_IWOTH):
        return (f"{path} is readable by other users — run: chmod 600 {path}",)
    return ()


def _from_ini(path: Path, profile: str) -> tuple[Credentials, ProfileRole | None] | None:
    if not path.is_file():
        return None
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except configparser.Error as exc:
        raise CredentialsError(
            f"{path} is not a valid INI file ({exc.__class__.__name__}) — fix or remove it"
        ) from None
    if not parser.has_section(profile):
        return None
    section = parser[profile]
    secret_id, secret_key = section.get("secret_id", "").strip(), section.get("secret_key", "").strip()
    role = ProfileRole(*(section.get(key, "").strip() for key in _ROLE_KEYS))
    if role.cam_role_name and (role.role_arn or role.web_identity_token_file):
        raise CredentialsError(f"{path} [{profile}] names cam_role_name and another role — keep the one it signs with")
    oidc = {
        "role_arn": role.role_arn,
        "web_identity_token_file": role.web_identity_token_file,
        "provider_id": role.provider_id,
        "region": role.region,
    }
    if role.web_identity_token_file or role.provider_id or role.region:
        missing = [key for key, value in oidc.items() if not value]
        if missing:
            raise CredentialsError(f"{path} [{profile}]: OIDC web identity needs {', '.join(missing)} too — add them")
    source = f"{path} [{profile}]"
    named = role if role.role_arn or role.cam_role_name else None
    if named is not None and not role.needs_keys and not (secret_id or secret_key):
        return Credentials("", "", source=source), named
    if not secret_id or not secret_key:
        needs = " (the base keys role_arn is assumed with)" if role.needs_keys else ""
        raise CredentialsError(f"{path} [{profile}] lacks secret_id or secret_key{needs} — add both")
    return Credentials(secret_id, secret_key, section.get("token", "").strip(), source=source), named


#: the keys of a credentials-file section that name a role, in `ProfileRole`'s order
_ROLE_KEYS = ("role_arn", "role_session_name", "cam_role_name", "web_identity_token_file", "provider_id", "region")


def _from_tccli(path: Path) -> Credentials | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise CredentialsError(f"{path} is not valid JSON — fix it or run `tccli configure`") from None
    secret_id, secret_key = str(data.get("secretId", "")).strip(), str(data.get("secretKey", "")).strip()
    if not secret_id or not secret_key:
        raise CredentialsError(f"{path} lacks secretId or secretKey — run `tccli configure`")
    return Credentials(secret_id, secret_key, str(data.get("token", "") or ""), source=str(path))


def load_credentials(
    profile: str | None = None, environ: Mapping[str, str] | None = None, home: Path | None = None
) -> CredentialLookup:
    """Find credentials: env first (unless a profile is named), then the INI file, then tccli's file.

    Reads env and files only. Raises CredentialsError naming the variables and files to set when nothing is found.
    (The role providers — instance role, assumed role, OIDC — come on top of these in
    `batchcert.api.credentials.find_credentials`.)
    """
    found = find_static_credentials(profile, environ, home)
    if found is not None:
        return found
    if profile is not None:
        raise CredentialsError(
            f"profile {profile!r} not found in ~/.tencentcloud/credentials or ~/.tccli/{profile}.credential — "
            "add it there, or drop --profile and set the environment variables"
        )
    raise CredentialsError(
        f"no credentials: set {ENV_SECRET_ID} and {ENV_SECRET_KEY} (and a session token in "
        f"{ENV_TOKENS[0]} if you use temporary keys), or pass --profile NAME"
    )


def find_static_credentials(
    profile: str | None = None, environ: Mapping[str, str] | None = None, home: Path | None = None
) -> CredentialLookup | None:
    """`load_credentials` without its error for nothing found: None then. Still raises CredentialsError for a
    credential file that is there but unreadable or incomplete."""
    environ = os.environ if environ is None else environ
    home = Path.home() if home is None else home
    if profile is None:
        secret_id, secret_key = (
            environ.get(ENV_SECRET_ID, "").strip(),
            environ.get(ENV_SECRET_KEY, "").strip(),
        )
        if secret_id and secret_key:
            return CredentialLookup(Credentials(secret_id, secret_key, _token_from(environ), source="environment"))
    name = profile or "default"
    ini = home / ".tencentcloud" / "credentials"
    found = _from_ini(ini, name)
    if found is not None:
        return CredentialLookup(found[0], _permission_warning(ini), found[1])
    tccli = home / ".tccli" / f"{name}.credential"
    keys = _from_tccli(tccli)
    if keys is not None:
        return CredentialLookup(keys, _permission_warning(tccli))
    return None
