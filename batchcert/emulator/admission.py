"""Whether a request is let in before its action runs: the TC3-HMAC-SHA256 signature (docs/gaap-api.md, "Signing"),
the per-(SecretId, action) rate limit in a sliding 1 s window of admitted requests with the real throttle message
(every action, reads included; docs/gaap-api.md, "Rate limit"), throttling storms and a competing client spending part
of the limit, and actions CAM denies account-wide."""

from __future__ import annotations

import hmac
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from batchcert.api.signing import canonical_request, parse_authorization, signature, string_to_sign, utc_date
from batchcert.api.vocabulary import API_VERSION, SERVICE
from batchcert.emulator.clock import monotonic_s
from batchcert.emulator.outcomes import ApiError

if TYPE_CHECKING:  # world.py imports this module's credential contract
    from batchcert.emulator.world import World

SIGNATURE_WINDOW_S = 300  # docs/gaap-api.md, "Signing": timestamp skew > 5 min → AuthFailure.SignatureExpire


#: the service's answer to a temporary key past its expiry or sent with a wrong token: "Token verification failed.
#: Please check your Token is correct." (seen after a temporary token timed out:
#: https://github.com/tencentcloudstack/pulumi-tencentcloud/pull/25); the common error code list documents
#: AuthFailure.TokenFailure as "token 错误" (token error): docs/gaap-api.md, "Error codes" and "Credentials"
TOKEN_FAILURE = "AuthFailure.TokenFailure"  # noqa: S105 - an error code


@dataclass(frozen=True)
class TemporaryCredential:
    """What temporary keys carry besides the key (world contract, "Credentials"): the session token they must be
    sent with ("" none), and when they expire (unix seconds on the emulator's clock; None never)."""

    token: str = ""
    expires_at: float | None = None


def credentials_from_dict(spec: Any) -> tuple[dict[str, str], dict[str, TemporaryCredential]]:
    """The credentials of a world file (world contract, "Credentials"): keys by SecretId, and what temporary ones
    carry besides. Raises ValueError naming the SecretId of a malformed entry."""
    credentials: dict[str, str] = {}
    temporary: dict[str, TemporaryCredential] = {}
    for secret_id, value in dict(spec).items():
        if isinstance(value, str):
            credentials[str(secret_id)] = value
            continue
        if not isinstance(value, dict) or not isinstance(value.get("key"), str):
            raise ValueError(f"credentials[{secret_id!r}] must be a key, or an object with a string key")
        token, expires_at = value.get("token", ""), value.get("expires_at")
        if not isinstance(token, str) or not (expires_at is None or isinstance(expires_at, int | float)):
            raise ValueError(f"credentials[{secret_id!r}]: token must be a string, expires_at unix seconds")
        credentials[str(secret_id)] = value["key"]
        if token or expires_at is not None:
            temporary[str(secret_id)] = TemporaryCredential(token, None if expires_at is None else float(expires_at))
    return credentials, temporary


def credentials_to_dict(credentials: dict[str, str], temporary: dict[str, TemporaryCredential]) -> dict[str, Any]:
    """`credentials_from_dict` reversed: the object form only for keys with a token or an expiry."""
    out: dict[str, Any] = {}
    for secret_id, key in credentials.items():
        extra = temporary.get(secret_id)
        if extra is None:
            out[secret_id] = key
            continue
        entry: dict[str, Any] = {"key": key}
        if extra.token:
            entry["token"] = extra.token
        if extra.expires_at is not None:
            entry["expires_at"] = extra.expires_at
        out[secret_id] = entry
    return out


def secret_id_not_found() -> ApiError:
    """The service's answer to a SecretId no account has (with several accounts: none of them)."""
    return ApiError(
        "AuthFailure.SecretIdNotFound", "The SecretId is not found, please ensure that your SecretId is correct."
    )


def claimed_secret_id(headers: Mapping[str, str]) -> str:
    """The SecretId a request's Authorization header names, not yet verified ("" when it names none): which account
    answers the request (latency, clock, and `Admission.authenticate` of that account's world)."""
    auth = parse_authorization(headers.get("Authorization", ""))
    return auth.secret_id if auth is not None else ""


def max_in_window(times: list[float], window_s: float = 1.0) -> int:
    """The most of `times` that fall within any half-open window of `window_s` (the service's sliding second)."""
    ordered = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(ordered):
        while t - ordered[lo] >= window_s:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


class Admission:
    """The checks before an action: `authenticate` (signature), `admit` (rate window), `check_allowed` (CAM).

    `wall_clock` is the server's clock the signature's timestamp is checked against; `started_s` the monotonic time
    the emulator started, which `faults.storms` count from."""

    def __init__(self, world: World, wall_clock: Callable[[], float], started_s: float) -> None:
        self.world = world
        self.wall_clock = wall_clock
        self.started_s = started_s
        #: monotonic arrival times of admitted requests per (SecretId, action)
        self.admitted: dict[tuple[str, str], deque[float]] = {}

    def authenticate(self, headers: Mapping[str, str], body: bytes) -> str:
        """The SecretId of a correctly signed request (`headers` looked up case-insensitively, as aiohttp's are)."""
        auth = parse_authorization(headers.get("Authorization", ""))
        if auth is None or not {"content-type", "host"} <= set(auth.signed_headers):
            raise ApiError("AuthFailure.SignatureFailure", "The provided credentials could not be validated.")
        secret_key = self.world.credentials.get(auth.secret_id)
        if secret_key is None:
            raise secret_id_not_found()
        raw_ts = headers.get("X-TC-Timestamp", "")
        if not raw_ts.isdigit():
            raise ApiError("MissingParameter", "The request is missing a valid X-TC-Timestamp header.")
        timestamp = int(raw_ts)
        if abs(self.wall_clock() - timestamp) > SIGNATURE_WINDOW_S:
            raise ApiError(
                "AuthFailure.SignatureExpire",
                f"Signature expired. Timestamp {timestamp} is more than {SIGNATURE_WINDOW_S}s from server time.",
            )
        if headers.get("X-TC-Version", "") != API_VERSION:
            raise ApiError(
                "NoSuchVersion",
                f"The API version `{headers.get('X-TC-Version', '')}` does not exist.",
            )
        signed = tuple((name, headers.get(name, "").strip()) for name in auth.signed_headers)
        canonical = canonical_request(body, "", "", signed_headers=signed)
        expected = signature(secret_key, timestamp, SERVICE, string_to_sign(canonical, timestamp, SERVICE))
        scope_ok = auth.date == utc_date(timestamp) and auth.service == SERVICE
        if not scope_ok or not hmac.compare_digest(expected, auth.signature):
            raise ApiError("AuthFailure.SignatureFailure", "The provided credentials could not be validated.")
        self._check_token(auth.secret_id, headers.get("X-TC-Token", ""))
        return auth.secret_id

    def _check_token(self, secret_id: str, token: str) -> None:
        """Temporary keys must come with their token and before their expiry (TOKEN_FAILURE); a token sent with
        long-term keys is not checked."""
        temporary = self.world.temporary_credentials.get(secret_id)
        if temporary is None:
            return
        if temporary.expires_at is not None and self.wall_clock() >= temporary.expires_at:
            raise ApiError(TOKEN_FAILURE, "Token verification failed. The temporary credential has expired.")
        if not hmac.compare_digest(temporary.token.encode(), token.encode()):
            raise ApiError(TOKEN_FAILURE, "Token verification failed. Please check your Token is correct.")

    def admit(self, secret_id: str, action: str) -> None:
        """Count the request in its window, or answer RequestLimitExceeded (a storm, or the window is full)."""
        now = monotonic_s()
        since_start = now - self.started_s
        if any(start <= since_start < start + length for start, length in self.world.faults.storms):
            raise ApiError(
                "RequestLimitExceeded",
                f"Your current request times equals to `{self.world.rate_limit + 1}` in a second, which exceeds the "
                f"frequency limit `{self.world.rate_limit}` for a second.",
            )
        window = self.admitted.setdefault((secret_id, action), deque())
        while window and window[0] <= now - 1.0:
            window.popleft()
        used = len(window) + self._competing_in_window(now)
        if used >= self.world.rate_limit:
            raise ApiError(
                "RequestLimitExceeded",
                f"Your current request times equals to `{used + 1}` in a second, which exceeds the frequency "
                f"limit `{self.world.rate_limit}` for a second.",
            )
        window.append(now)

    def check_allowed(self, action: str) -> None:
        """Answer UnauthorizedOperation for an action the world's CAM denies account-wide (`denied_actions`)."""
        if action in self.world.denied_actions:
            raise ApiError(
                "UnauthorizedOperation",
                f"You are not authorized to perform operation (gaap:{action}) on resource (qcs::gaap::uin/"
                "100000000001:*).",
            )

    def max_admitted_in_window(self, action: str, window_s: float = 1.0) -> int:
        """The most requests of `action` admitted within any `window_s` (all credentials summed)."""
        return max_in_window([t for (_, act), q in self.admitted.items() if act == action for t in q], window_s)

    def _competing_in_window(self, now: float) -> int:
        """Requests another client of the same account admitted in the last second, evenly spread."""
        if not self.world.competing_rate:
            return 0
        period = 1.0 / self.world.competing_rate
        # their requests land at k × period; count those in (now-1, now]
        return int(now // period) - int((now - 1.0) // period)
