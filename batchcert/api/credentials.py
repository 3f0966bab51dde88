"""Where the keys a request is signed with come from, and keeping temporary ones fresh (docs/gaap-api.md,
"Credentials"; README, "Credentials").

Lookup order (`find_credentials`), first match wins:

1. `--profile NAME` (or a row's Profile cell): that profile (`~/.tencentcloud/credentials [NAME]`, else
   `~/.tccli/NAME.credential`). Without a profile: `TENCENTCLOUD_SECRET_ID` / `TENCENTCLOUD_SECRET_KEY` (+ a session
   token), else the `[default]` profile, else tccli's `default` (`batchcert.settings.find_static_credentials`). A
   section of the INI file may name a role instead of signing with its keys (`batchcert.settings.ProfileRole`):
   `role_arn` (+ `role_session_name`), assumed with the section's keys, or with `web_identity_token_file`,
   `provider_id` and `region` through OIDC; or `cam_role_name`, the instance role.
2. An assumed role: when `TENCENTCLOUD_ROLE_ARN` is set, the keys of 1 are only the base that STS `AssumeRole` is
   called with (session name `TENCENTCLOUD_ROLE_SESSION_NAME`, default "batchcert"); requests are signed with the
   role's temporary keys — the variable names tccli documents (https://github.com/TencentCloud/tencentcloud-cli,
   README.md, its credentials section).
3. The instance role (CVM metadata service), when nothing of 1 is found and `TENCENTCLOUD_CAM_ROLE_NAME` is set
   (Terraform provider's variable for the same thing; the value "auto" asks the metadata service for the role's name).
   Opt-in, unlike the SDK's `DefaultCredentialProvider`: probing the metadata address on every machine without
   credentials would make "no credentials" slow, and reach an address the user never named.
4. OIDC web identity (TKE / CI), when nothing above is found and `TKE_REGION`, `TKE_PROVIDER_ID`,
   `TKE_WEB_IDENTITY_TOKEN_FILE` and `TKE_ROLE_ARN` are set — the SDK's `DefaultTkeOIDCRoleArnProvider` names
   (tencentcloud-sdk-python-common `tencentcloud/common/credential.py`, `OIDCRoleArnCredential._init_from_tke`).
   The token file is read again at every refresh (Kubernetes rotates it).

Static keys (1 alone) are never refreshed: exactly today's behaviour. The role flows themselves are the official
SDK's (`CVMRoleCredential`, `STSAssumeRoleCredential`, `OIDCRoleArnCredential`), imported only when a role is used
(start-up time); they are synchronous, so `CredentialSource` calls them in a thread. Signing and transport stay ours.
Secrets never appear in a label, a message or a repr.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from batchcert.errors import CredentialsError
from batchcert.settings import (
    ENV_SECRET_ID,
    ENV_SECRET_KEY,
    ENV_TOKENS,
    CredentialLookup,
    Credentials,
    find_static_credentials,
)

log = logging.getLogger("batchcert.credentials")

ENV_ROLE_ARN = "TENCENTCLOUD_ROLE_ARN"
ENV_ROLE_SESSION_NAME = "TENCENTCLOUD_ROLE_SESSION_NAME"
ENV_CAM_ROLE_NAME = "TENCENTCLOUD_CAM_ROLE_NAME"
#: the SDK's TKE web identity variables, in the order its `_init_from_tke` reads them
ENV_OIDC = ("TKE_REGION", "TKE_PROVIDER_ID", "TKE_WEB_IDENTITY_TOKEN_FILE", "TKE_ROLE_ARN")
#: every variable that asks for a role: they are for the run's own credential, not for each row's profile
ROLE_VARIABLES = frozenset((ENV_ROLE_ARN, ENV_ROLE_SESSION_NAME, ENV_CAM_ROLE_NAME, *ENV_OIDC))
DEFAULT_SESSION_NAME = "batchcert"
#: asked of STS (the SDK's default; STS maximum 43,200): https://cloud.tencent.com/document/api/1312/26013
ROLE_DURATION_S = 7200
#: refresh when less than this remains, or a tenth of the keys' lifetime if that is less: a signature is checked
#: against the key when it arrives, and the SDK's own CVM provider keeps the same 300 s margin
#: (`CVMRoleCredential._expired_timeout`)
MAX_MARGIN_S = 300.0
#: how long one refresh may take before the run stops (the SDK's STS client gives up after 60 s: HttpProfile.reqTimeout)
REFRESH_TIMEOUT_S = 65.0


@dataclass(frozen=True)
class RoleEndpoints:
    """Where the role providers go: None keeps the SDK's own (`sts.tencentcloudapi.com`; the metadata service
    `http://metadata.tencentyun.com/latest/meta-data/`). Tests point them at loopback fakes."""

    sts: str | None = None
    metadata: str | None = None


#: the endpoints `find_credentials` uses unless told otherwise (a test replaces it with loopback fakes)
ENDPOINTS = RoleEndpoints()


class TemporaryKeys(Protocol):
    """A provider of temporary keys. `fetch` is synchronous (it is run in a thread), always asks anew, and returns
    keys with `token`, `issued_at` and `expires_at` set, or raises CredentialsError naming the provider."""

    label: str

    def fetch(self) -> Credentials: ...


#: the SDK's logger: at DEBUG it prints whole STS answers — temporary secret key and token included
#: (tencentcloud/common/abstract_client.py, `call_json`: logger.debug("GetResponse: …"))
SDK_LOGGER = "tencentcloud_sdk_common"


def _sdk() -> Any:
    """The SDK's credential module, imported now (lazily: only a role run pays for it), its logger kept above DEBUG
    so that no verbose or test log configuration can make it print keys."""
    from tencentcloud.common import credential

    logging.getLogger(SDK_LOGGER).setLevel(logging.WARNING)
    return credential


def _clean(text: str, *secrets: str) -> str:
    """An error text without any of `secrets` (a provider's message is shown and journaled)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text[:300]


def _failure(label: str, exc: BaseException, *secrets: str) -> CredentialsError:
    code = getattr(exc, "code", None)
    message = getattr(exc, "message", None) or str(exc)
    what = f"{code}: {message}" if code else f"{type(exc).__name__}: {message}"
    return CredentialsError(f"{label}: could not get temporary keys ({_clean(what, *secrets)})")


def _sts_keys(cred: Any, kept_share: float, label: str, issued_at: float) -> Credentials:
    """The temporary keys an SDK STS credential (`STSAssumeRoleCredential`, `OIDCRoleArnCredential`) holds after a
    fetch. The SDK keeps `ExpiredTime - kept_share × duration` instead of the expiry: recover it (`_lifetime_bound`)."""
    recovered = cred._expired_time + ROLE_DURATION_S * kept_share
    return Credentials(
        str(cred._tmp_secret_id),
        str(cred._tmp_secret_key),
        str(cred._token),
        source=label,
        expires_at=float(_lifetime_bound(recovered, issued_at, ROLE_DURATION_S)),
        issued_at=issued_at,
    )


def _lifetime_bound(recovered: float, issued_at: float, duration_s: int) -> float:
    """The expiry the SDK keeps only in a shifted form (its refresh point), recovered, and never later than the
    lifetime asked for — STS never grants more, so a change of the SDK's shift can only make us refresh early."""
    return min(recovered, issued_at + duration_s)


class InstanceRole:
    """The CVM instance role, by the SDK's `CVMRoleCredential` (metadata `cam/security-credentials/<role>`).
    `role_name` None asks the metadata service for it."""

    def __init__(self, role_name: str | None, metadata_url: str | None = None) -> None:
        sdk = _sdk()
        self.label = f"instance role {role_name}" if role_name else "instance role"
        self._sdk: Any = sdk.CVMRoleCredential(role_name)
        if metadata_url is not None:
            # the SDK reads its endpoints from these attributes (class defaults), so an instance value redirects it
            self._sdk._metadata_endpoint = metadata_url
            self._sdk._role_endpoint = metadata_url + "cam/security-credentials/"
        self._url = str(self._sdk._role_endpoint)

    def fetch(self) -> Credentials:
        issued_at = time.time()
        cred = self._sdk
        cred._expired_ts = 0  # the SDK refreshes only when its own margin says so: ask anew now
        cred.update_credential()  # the SDK swallows every error here: an unchanged expiry is how a failure shows
        if not cred._expired_ts or not (cred._secret_id and cred._secret_key and cred._token):
            raise CredentialsError(
                f"{self.label}: the metadata service ({self._url}) gave no temporary keys — is a CAM role bound to "
                "this instance?"
            )
        if cred.role and self.label == "instance role":
            self.label = f"instance role {cred.role}"
        return Credentials(
            str(cred._secret_id),
            str(cred._secret_key),
            str(cred._token),
            source=self.label,
            expires_at=float(cred._expired_ts),
            issued_at=issued_at,
        )


class AssumedRole:
    """A role assumed with STS `AssumeRole` from a base credential, by the SDK's `STSAssumeRoleCredential`. The base
    must be long-term keys: the SDK signs the AssumeRole call without a session token."""

    def __init__(self, base: Credentials, role_arn: str, session_name: str, endpoint: str | None = None) -> None:
        self.label = f"assumed role {role_arn} (session {session_name}, from {base.source})"
        self._base, self._role_arn, self._session_name, self._endpoint = base, role_arn, session_name, endpoint

    def fetch(self) -> Credentials:
        sdk = _sdk()
        issued_at = time.time()
        base = self._base
        try:
            cred: Any = sdk.STSAssumeRoleCredential(
                base.secret_id, base.secret_key, self._role_arn, self._session_name, ROLE_DURATION_S, self._endpoint
            )
            cred.get_sts_tmp_role_arn()  # always asks STS (the properties ask only when the SDK thinks it due)
            # the SDK keeps `ExpiredTime - 0.9 × duration` (credential.py, get_sts_tmp_role_arn)
            return _sts_keys(cred, 0.9, self.label, issued_at)
        except Exception as exc:  # the SDK raises its own exception, requests' or a KeyError on an odd answer
            raise _failure(self.label, exc, base.secret_key, base.token) from None


class OidcRole:
    """A role assumed with STS `AssumeRoleWithWebIdentity` from an OIDC token file, by the SDK's
    `OIDCRoleArnCredential` (unsigned call: the token is the proof)."""

    def __init__(
        self, region: str, provider_id: str, token_file: Path, role_arn: str, session_name: str, endpoint: str | None
    ) -> None:
        self.label = f"OIDC role {role_arn} (provider {provider_id})"
        self._region, self._provider_id, self._token_file = region, provider_id, token_file
        self._role_arn, self._session_name, self._endpoint = role_arn, session_name, endpoint

    def fetch(self) -> Credentials:
        sdk = _sdk()
        issued_at = time.time()
        identity = ""
        try:
            identity = self._token_file.read_text(encoding="utf-8").strip()  # rotated by the cluster: read each time
            cred: Any = sdk.OIDCRoleArnCredential(
                self._region,
                self._provider_id,
                identity,
                self._role_arn,
                self._session_name,
                ROLE_DURATION_S,
                self._endpoint,
            )
            cred.refresh()
            # the SDK keeps `ExpiredTime - 0.1 × duration` (credential.py, OIDCRoleArnCredential.refresh)
            return _sts_keys(cred, 0.1, self.label, issued_at)
        except Exception as exc:  # an unreadable token file, the SDK's exception, requests', a KeyError
            raise _failure(self.label, exc, identity) from None


def refresh_margin_s(credentials: Credentials) -> float:
    """How long before `expires_at` the keys are refreshed: 5 minutes, or a tenth of their lifetime if less."""
    if credentials.expires_at is None:
        return 0.0
    issued = credentials.issued_at if credentials.issued_at is not None else credentials.expires_at - ROLE_DURATION_S
    return min(MAX_MARGIN_S, max(0.0, credentials.expires_at - issued) / 10)


def _due(credentials: Credentials, now: float) -> bool:
    expires_at = credentials.expires_at
    return expires_at is not None and now >= expires_at - refresh_margin_s(credentials)


async def _in_thread(fn: Callable[[], Credentials]) -> Credentials:
    """`fn()` in a daemon thread: like asyncio.to_thread, except that a request that never returns (the SDK's
    metadata call has no timeout) cannot hold the process at exit — asyncio.run joins its default executor."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Credentials] = loop.create_future()

    def settle(outcome: Credentials | BaseException) -> None:
        if done.done():
            return
        if isinstance(outcome, BaseException):
            done.set_exception(outcome)
        else:
            done.set_result(outcome)

    def work() -> None:
        try:
            outcome: Credentials | BaseException = fn()
        except BaseException as exc:  # handed to the awaiting task, never lost in the thread
            outcome = exc
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits any more
            loop.call_soon_threadsafe(settle, outcome)

    threading.Thread(target=work, name="batchcert-credentials", daemon=True).start()
    return await done


class CredentialSource:
    """The credentials to sign the next request with. Static keys (no provider) are returned as they are, for ever.
    Temporary keys are refreshed before they expire (`refresh_margin_s`), one refresh at a time however many requests
    ask; a request waits only while keys due for refresh are being replaced. Keys handed out are never expired nor
    due. A refresh that fails is kept: every later request gets the same CredentialsError (the run stops; a rerun
    starts a fresh lookup)."""

    def __init__(
        self,
        initial: Credentials,
        provider: TemporaryKeys | None = None,
        clock: Callable[[], float] = time.time,
        timeout_s: float = REFRESH_TIMEOUT_S,
    ) -> None:
        self._held = initial
        self._provider = provider
        self._clock = clock
        self._timeout_s = timeout_s
        self._lock = asyncio.Lock()
        self._failed: CredentialsError | None = None
        #: refreshes made (for tests and the log)
        self.refreshes = 0

    @property
    def label(self) -> str:
        """The provider the current keys came from (`Credentials.source`)."""
        return self._held.source

    def ready(self) -> Credentials | None:
        """The current keys when they can be used without waiting; None when `current` must be awaited."""
        if self._failed is None and (self._provider is None or not _due(self._held, self._clock())):
            return self._held
        return None

    async def current(self) -> Credentials:
        """The keys to sign with now, refreshed first when due. Raises CredentialsError naming the provider when
        they cannot be refreshed."""
        held = self.ready()
        if held is not None:
            return held
        async with self._lock:
            if self._failed is not None:
                raise self._failed
            if self._provider is not None and _due(self._held, self._clock()):
                self._held = await self._refresh(self._provider)
            return self._held

    async def _refresh(self, provider: TemporaryKeys) -> Credentials:
        try:
            async with asyncio.timeout(self._timeout_s):
                fresh = await _in_thread(provider.fetch)
        except CredentialsError as exc:
            self._failed = exc
            raise
        except TimeoutError:
            self._failed = CredentialsError(f"{provider.label}: no temporary keys within {self._timeout_s:g} s")
            raise self._failed from None
        if fresh.issued_at is None:
            fresh = replace(fresh, issued_at=self._clock())
        if _due(fresh, self._clock()):
            self._failed = CredentialsError(f"{provider.label}: gave keys that have (nearly) expired already")
            raise self._failed
        self.refreshes += 1
        log.info(
            "new temporary keys from %s: SecretId %s, valid %.0f s more",
            provider.label,
            fresh.masked_id,
            (fresh.expires_at or 0) - self._clock(),
        )
        return fresh


@dataclass(frozen=True)
class FoundCredentials:
    """What the lookup found: the first keys (already fetched for a role), the provider that refreshes them (None:
    static keys), and warnings to show (a credential file readable by others)."""

    credentials: Credentials
    provider: TemporaryKeys | None = None
    warnings: tuple[str, ...] = ()

    def source(self) -> CredentialSource:
        """A source starting from these keys (each connection block gets its own)."""
        return CredentialSource(self.credentials, self.provider)


def role_provider(
    static: CredentialLookup | None,
    environ: Mapping[str, str],
    endpoints: RoleEndpoints,
) -> TemporaryKeys | None:
    """The role provider the profile's settings or the environment ask for (lookup order: the module docstring), or
    None for static keys. Raises CredentialsError when a role is asked for but cannot be set up."""
    session_name = environ.get(ENV_ROLE_SESSION_NAME, "").strip() or DEFAULT_SESSION_NAME
    if static is not None and static.role is not None:  # the profile's own role: cam_role_name, OIDC or role_arn
        role = static.role
        if role.cam_role_name:
            return InstanceRole(None if role.cam_role_name == "auto" else role.cam_role_name, endpoints.metadata)
        if role.web_identity_token_file:
            return OidcRole(
                role.region,
                role.provider_id,
                Path(role.web_identity_token_file).expanduser(),
                role.role_arn,
                role.session_name or session_name,
                endpoints.sts,
            )
        if static.credentials.token:
            raise CredentialsError(
                f"{static.credentials.source}: role_arn needs long-term base keys, but the profile has a session token "
                "(the SDK's AssumeRole signs without one) — use long-term keys, or remove the token"
            )
        return AssumedRole(static.credentials, role.role_arn, role.session_name or session_name, endpoints.sts)
    role_arn = environ.get(ENV_ROLE_ARN, "").strip()
    if role_arn:
        if static is None:
            raise CredentialsError(
                f"{ENV_ROLE_ARN} is set but there is no base credential to assume it with: set {ENV_SECRET_ID} and "
                f"{ENV_SECRET_KEY}, or pass --profile NAME"
            )
        if static.credentials.token:
            raise CredentialsError(
                f"{ENV_ROLE_ARN} needs long-term base keys, but {static.credentials.source} has a session token "
                "(the SDK's AssumeRole signs without one) — use long-term keys, or unset the role"
            )
        return AssumedRole(static.credentials, role_arn, session_name, endpoints.sts)
    if static is not None:
        return None
    cam_role = environ.get(ENV_CAM_ROLE_NAME, "").strip()
    if cam_role:
        return InstanceRole(None if cam_role == "auto" else cam_role, endpoints.metadata)
    oidc = {name: environ.get(name, "").strip() for name in ENV_OIDC}
    if any(oidc.values()):
        missing = [name for name, value in oidc.items() if not value]
        if missing:
            raise CredentialsError(f"OIDC web identity needs {', '.join(missing)} too — set them, or unset the rest")
        region, provider_id, token_file, oidc_arn = oidc.values()
        return OidcRole(region, provider_id, Path(token_file), oidc_arn, session_name, endpoints.sts)
    return None


def find_credentials(
    profile: str | None = None,
    environ: Mapping[str, str] | None = None,
    home: Path | None = None,
    endpoints: RoleEndpoints | None = None,
) -> FoundCredentials:
    """Find the credentials a live run signs with, in the lookup order of the module docstring; for a role, fetch
    its first keys now (synchronously: called before any event loop runs), so a misconfigured role stops the
    command before anything is sent. Raises CredentialsError naming what to set."""
    env: Mapping[str, str] = os.environ if environ is None else environ
    static = find_static_credentials(profile, env, home)
    provider = role_provider(static, env, ENDPOINTS if endpoints is None else endpoints)
    if provider is not None:
        warnings = static.warnings if static is not None else ()
        return FoundCredentials(provider.fetch(), provider, warnings)
    if static is not None:
        return FoundCredentials(static.credentials, None, static.warnings)
    if profile is not None:
        raise CredentialsError(
            f"profile {profile!r} not found in ~/.tencentcloud/credentials or ~/.tccli/{profile}.credential — "
            "add it there, or drop --profile and set the environment variables"
        )
    raise CredentialsError(
        f"no credentials: set {ENV_SECRET_ID} and {ENV_SECRET_KEY} (and a session token in {ENV_TOKENS[0]} if you "
        f"use temporary keys; {ENV_ROLE_ARN} to assume a role with them), or pass --profile NAME, or set "
        f"{ENV_CAM_ROLE_NAME} (instance role) or {', '.join(ENV_OIDC)} (OIDC web identity)"
    )
