"""Error-code policy: one table saying, for every code in docs/gaap-api.md ("Error codes"), whether a row is retried, ends, or stops
the whole run, and whether the change may have been applied although the answer was an error. Pure.

Lookup walks up the dotted code: `RequestLimitExceeded.Foo` falls back to `RequestLimitExceeded`; a code with no
entry on its path is terminal (an unknown code is never retried blindly). Sources for the choices:
docs/gaap-api.md, "Error codes" (the official SDK's retryer, Terraform's GAAP service, the per-action lists in
https://github.com/TencentCloud/tencentcloud-sdk-go/blob/master/tencentcloud/gaap/v20180529/errors.go).
"""

from __future__ import annotations

from dataclasses import dataclass

from batchcert.model import Disposition

R, T, S = Disposition.RETRYABLE, Disposition.TERMINAL, Disposition.STOP_RUN

# Transport codes produced by the client for failures that are not API answers.
TRANSPORT_TIMEOUT = "Transport.Timeout"
TRANSPORT_RESET = "Transport.ConnectionReset"
TRANSPORT_CONNECT = "Transport.ConnectionError"
TRANSPORT_INVALID = "Transport.InvalidResponse"
TRANSPORT_CLIENT = "Transport.ClientError"
TRANSPORT_CERTIFICATE = "Transport.CertificateError"
TRANSPORT_TLS = "Transport.TLSError"
#: SignatureExpire answered while our clock was off: the client corrected its offset from the Date header
CLOCK_CORRECTED = "Transport.ClockCorrected"
#: an ambiguous answer no read could settle (batchcert's own code, never the service's)
OUTCOME_UNKNOWN = "Batchcert.OutcomeUnknown"


def transport_http(status: int) -> str:
    """The code for a non-200 HTTP answer, e.g. `Transport.HTTP502`."""
    return f"Transport.HTTP{status}"


@dataclass(frozen=True)
class Policy:
    """What a code means. `maybe_applied`: the change may have taken effect (ambiguous answer)."""

    disposition: Disposition
    maybe_applied: bool
    advice: str


_CREDENTIALS = "check the credentials (SecretId/SecretKey/token) and the system clock, then rerun"
_PERMISSION = "grant the sub-account gaap:ModifyCertificate and gaap:Describe* (CAM), then rerun"

#: code → (disposition, maybe applied, what the operator should do). One line per code.
TABLE: dict[str, tuple[Disposition, bool, str]] = {
    # --- account- and credential-level: every further row would fail the same way -----------------------------
    "AuthFailure": (S, False, _CREDENTIALS),
    "AuthFailure.InvalidAuthorization": (S, False, _CREDENTIALS),
    "AuthFailure.InvalidSecretId": (S, False, _CREDENTIALS),
    "AuthFailure.MFAFailure": (S, False, "complete MFA for this account, then rerun"),
    "AuthFailure.SecretIdNotFound": (S, False, _CREDENTIALS),
    "AuthFailure.SignatureExpire": (
        S,
        False,
        "sync the system clock (NTP) and check the credentials, then rerun",
    ),
    "AuthFailure.SignatureFailure": (S, False, _CREDENTIALS),
    "AuthFailure.TokenFailure": (
        S,
        False,
        "the session token is invalid or expired — get a fresh one, then rerun",
    ),
    "AuthFailure.UnauthorizedOperation": (S, False, _PERMISSION),
    "AuthFailure.NotEnterpriseAuthorization": (S, False, "GAAP needs an enterprise-verified account"),
    "UnauthorizedOperation": (S, False, _PERMISSION),
    "FailedOperation.UserNotConfirmProtocol": (S, False, "accept the GAAP service agreement in the console"),
    "ResourceUnavailable.AccountViolation": (
        S,
        False,
        "the account is restricted — contact Tencent Cloud support",
    ),
    "IpInBlacklist": (S, False, "this machine's IP is blocked for the account — run from an allowed network"),
    "IpNotInWhitelist": (S, False, "add this machine's IP to the account's API allow-list"),
    "InvalidAction": (S, False, "the endpoint does not serve GAAP actions — check --endpoint"),
    "ActionOffline": (S, False, "the action is retired — upgrade batchcert"),
    "NoSuchProduct": (S, False, "the endpoint does not serve GAAP — check --endpoint"),
    "NoSuchVersion": (S, False, "the endpoint does not serve API version 2018-05-29 — check --endpoint"),
    "UnsupportedProtocol": (S, False, "use https for the endpoint"),
    "UnsupportedRegion": (S, False, "GAAP takes no region — check --endpoint"),
    # --- transient: retry with backoff --------------------------------------------------------------------------
    "RequestLimitExceeded": (
        R,
        False,
        "the account's API rate limit was hit — lower --rate or stop other tools",
    ),
    "FailedOperation.ListenerHasTask": (
        R,
        False,
        "the listener was busy with an earlier change — rerun later",
    ),
    "FailedOperation.DomainStatusNotInRunning": (R, False, "the domain is being changed — rerun later"),
    "FailedOperation.ActionIsDoing": (R, False, "an earlier operation is still running — rerun later"),
    "FailedOperation.ActionOperateTooQuickly": (R, False, "operations came too quickly — rerun later"),
    "FailedOperation.GroupStatusNotInRuning": (
        R,
        False,
        "the connection group is not running — rerun when it is",
    ),
    "FailedOperation.ProxyStatusNotInRuning": (R, False, "the connection is not running — rerun when it is"),
    "InternalError": (R, True, "the service failed internally — rerun; the report shows whether it applied"),
    "ServiceUnavailable": (R, True, "the service is unavailable — rerun later"),
    "ResourceInUse": (R, False, "the resource is in use — rerun later"),
    "ResourceUnavailable": (R, False, "the resource is unavailable right now — rerun later"),
    "Transport": (R, True, "the network failed — rerun; the report shows whether it applied"),
    TRANSPORT_CONNECT: (
        R,
        False,
        "could not connect to the endpoint — check the network or proxy, then rerun",
    ),
    CLOCK_CORRECTED: (R, False, "this machine's clock is off; batchcert corrected it from the server's Date header"),
    OUTCOME_UNKNOWN: (
        R,
        True,
        "the change may have been applied and no read could tell — `batchcert rerun` reads the listener first",
    ),
    TRANSPORT_CERTIFICATE: (
        S,
        False,
        "the endpoint's TLS certificate is not trusted — behind a corporate TLS proxy pass --ca-bundle FILE",
    ),
    TRANSPORT_TLS: (S, False, "the TLS handshake failed — check the endpoint, the proxy and --ca-bundle"),
    # --- terminal: the request itself is wrong; fix the row -----------------------------------------------------
    "FailedOperation": (T, False, "the service refused the change — see the message"),
    "FailedOperation.ProxyVersionNotSupport": (
        T,
        False,
        "the listener is not on a 3.0 connection — change it in the console",
    ),
    "FailedOperation.NonStandardProxy": (
        T,
        False,
        "the connection is non-standard — change it in the console",
    ),
    "FailedOperation.InvalidCertificateId": (T, False, "fix the certificate id in the mapping"),
    "InvalidParameter": (T, False, "fix the row's values in the mapping"),
    "InvalidParameterValue": (T, False, "fix the row's certificate ids (server type 2, client type 1)"),
    "InvalidParameterValue.CertificateNotMatchDomain": (
        T,
        False,
        "the certificate does not cover the domain — pick one that does",
    ),
    "MissingParameter": (T, False, "fill the empty field in the mapping"),
    "UnknownParameter": (T, False, "batchcert sent a parameter the API does not know — report this bug"),
    "ResourceNotFound": (T, False, "the listener or domain does not exist — fix the ids in the mapping"),
    "ResourceInsufficient": (T, False, "a quota is exhausted — raise it, then rerun"),
    "LimitExceeded": (T, False, "a quota is exceeded — raise it, then rerun"),
    "RequestSizeLimitExceeded": (T, False, "the request is too large — shorten the row"),
    "InvalidRequest": (T, False, "the request was malformed — report this bug"),
    "DryRunOperation": (T, False, "a dry run was requested — nothing changed"),
    "UnsupportedOperation": (T, False, "the service does not support this change — see the message"),
}

_UNKNOWN = Policy(T, False, "an unknown error code — see the message, fix the cause, rerun with --include-terminal")


def policy_for(code: str) -> Policy:
    """The policy for an error code: its own table line, else its nearest dotted parent's, else terminal."""
    probe = code
    while probe:
        entry = TABLE.get(probe)
        if entry is not None:
            return Policy(*entry)
        probe = probe.rpartition(".")[0]
    return _UNKNOWN


#: answers after which the request itself may still reach the service (no answer came from the service: a timeout,
#: a reset, a gateway's error page), so a read shows "not applied" only some time later; an API answer such as
#: InternalError comes from the service, which has already handled the request
STILL_IN_FLIGHT_FAMILIES = ("Transport.",)


def may_still_arrive(code: str) -> bool:
    return code.startswith(STILL_IN_FLIGHT_FAMILIES) and policy_for(code).maybe_applied


def disposition_of(code: str) -> Disposition:
    return policy_for(code).disposition
