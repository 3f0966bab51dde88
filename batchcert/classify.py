"""Error-code policy: one table saying, for every code in docs/gaap-api.md ("Error codes"), whether a row is retried, ends, or stops
the whole run, and whether the change may have been applied although the answer was an error. Pure.

Lookup walks up the dotted code: `RequestLimitExceeded.Foo` falls back to `RequestLimitExceeded`; a code with no
entry on its path is terminal (an unknown code is never retried blindly). Sources for the choices:
docs/gaap-api.md, "Error codes" (the official SDK's retryer, Terraform's GAAP service, the per-action lists in
https://github.com/TencentCloud/tencentcloud-sdk-go/blob/master/tencentcloud/gaap/v20180529/errors.go).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from batchcert.model import (
    CHANGE_REVERTED,
    PRECONDITION_MISMATCH,
    PRECONDITION_WRONG_PROXY,
    PREFLIGHT_EXPIRED,
    PREFLIGHT_NOT_FOUND,
    PREFLIGHT_TYPE_MISMATCH,
    Disposition,
)

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
#: a request in flight when the process stopped (killed, or abandoned at a second Ctrl-C): no answer was read
TRANSPORT_INTERRUPTED = "Transport.Interrupted"
#: an ambiguous answer no read could settle (batchcert's own code, never the service's)
OUTCOME_UNKNOWN = "Batchcert.OutcomeUnknown"
#: a row that had to be read before it was sent (after a busy answer, a compare-and-swap row after a wait) and could
#: not be: nothing was sent (batchcert's own code)
NOT_SENT_UNREAD = "Batchcert.NotSentUnread"


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
_PERMISSION = (
    "the sub-account may not change this listener — grant it gaap:ModifyCertificate and gaap:DescribeRules on the "
    "listener's connection (CAM), then `batchcert rerun RUN_DIR --include-terminal`"
)

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
    "AuthFailure.UnauthorizedOperation": (T, False, _PERMISSION),
    "AuthFailure.NotEnterpriseAuthorization": (S, False, "GAAP needs an enterprise-verified account"),
    "UnauthorizedOperation": (T, False, _PERMISSION),
    "FailedOperation.UserNotConfirmProtocol": (S, False, "accept the GAAP service agreement in the console"),
    "FailedOperation.UserNotAuthenticated": (
        S,
        False,
        "the account is not identity-verified — verify it in the console",
    ),
    "FailedOperation.UserNotInWhitelist": (S, False, "the account is not allowed this GAAP feature — ask support"),
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
    "UnauthorizedOperation.CrossBorderInIsolating": (
        R,
        False,
        "the connection is isolated (cross-border compliance) — rerun when it is released",
    ),
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
    # transient states named in the GAAP per-action error lists (tencentcloud-sdk-go gaap/v20180529/errors.go)
    "FailedOperation.ListenerStatusError": (R, False, "the listener is not in a state to change — rerun later"),
    "FailedOperation.InstanceStatusNotInRuning": (R, False, "the instance is not running — rerun when it is"),
    "FailedOperation.ResourceUpgrading": (R, False, "the resource is being upgraded — rerun later"),
    "FailedOperation.Migration": (
        R,
        False,
        "the connection is being upgraded and takes no changes — rerun later (a ticket if it lasts)",
    ),
    # not a GAAP code (errors.go above) but seen from the SSL certificate API: a rate limit by another name
    "LimitExceeded.RateLimitExceeded": (R, False, "an API rate limit was hit — lower --rate or stop other tools"),
    "InternalError": (R, True, "the service failed internally — rerun; the report shows whether it applied"),
    "ServiceUnavailable": (R, True, "the service is unavailable — rerun later"),
    "ResourceInUse": (R, False, "the resource is in use — rerun later"),
    "ResourceUnavailable": (R, False, "the resource is unavailable right now — rerun later"),
    # batchcert's own transport codes (batchcert/client.py): no answer came from the service, so the request may
    # still have reached it — never resent before a read settles it (docs/scheduling.md). `Transport.HTTP<status>`
    # (a gateway's page, `transport_http`) takes the family line.
    "Transport": (R, True, "the network failed — rerun; the report shows whether it applied"),
    TRANSPORT_TIMEOUT: (R, True, "no answer in time — rerun; the report shows whether it applied"),
    TRANSPORT_RESET: (R, True, "the connection was dropped — rerun; the report shows whether it applied"),
    TRANSPORT_INVALID: (R, True, "the answer was not the API's — rerun; the report shows whether it applied"),
    TRANSPORT_CLIENT: (R, True, "the request failed on the way — rerun; the report shows whether it applied"),
    TRANSPORT_INTERRUPTED: (
        R,
        True,
        "the process stopped while the request was in flight — `batchcert rerun` reads the listener first",
    ),
    TRANSPORT_CONNECT: (
        R,
        False,
        "could not connect to the endpoint — check the network or proxy, then rerun",
    ),
    CLOCK_CORRECTED: (R, False, "this machine's clock is off; batchcert corrected it from the server's Date header"),
    NOT_SENT_UNREAD: (
        R,
        False,
        "the row could not be read before it was sent again, so it was not sent — rerun; it is read first",
    ),
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
    # ModifyHTTPSListenerAttribute's own refusals (its error list in the go-sdk client.go, docs/gaap-api.md
    # "Inventory and listener certificates"): the connection's kind, not a passing state
    "FailedOperation.NotSupportOldVersionProxy": (
        T,
        False,
        "the listener's connection is an old version — upgrade it in the console",
    ),
    "FailedOperation.NotSupportProxyGroup": (
        T,
        False,
        "this connection group does not take listener certificate changes — change it in the console",
    ),
    "FailedOperation.NonStandardProxy": (
        T,
        False,
        "the connection is non-standard — change it in the console",
    ),
    "InvalidParameterValue.InvalidCertificateId": (T, False, "the certificate is not usable — pick another id"),
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
    # --- batchcert's own certificate pre-flight (never sent): the target looked up with DescribeCertificates
    # (docs/gaap-api.md, "Inventory and listener certificates"; the `Certificate` model in https://github.com/TencentCloud/
    # tencentcloud-sdk-python/blob/master/tencentcloud/gaap/v20180529/models.py: CertificateType, EndTime) ---
    PREFLIGHT_NOT_FOUND: (T, False, "no certificate with this id in the account — upload it or fix the id"),
    PREFLIGHT_TYPE_MISMATCH: (
        T,
        False,
        "the certificate has the wrong type — a server certificate must be type 2 (SSL), a client CA type 1",
    ),
    PREFLIGHT_EXPIRED: (T, False, "the certificate has expired — upload a valid one and map to its id"),
    # --- batchcert's own compare-and-swap and read-back verdicts (README, "Current → new"; never the service's) ---
    PRECONDITION_MISMATCH: (
        T,
        False,
        "the place no longer uses the certificate the file expects (changed since the file was made) — check who "
        "changed it; update the current-certificate column, then run the row again",
    ),
    PRECONDITION_WRONG_PROXY: (
        T,
        False,
        "the listener is not on the proxy the row names — fix ProxyId (or empty it: batchcert reads the listener's)",
    ),
    CHANGE_REVERTED: (
        R,
        False,
        "the service accepted the change, then its task failed and the old certificates came back — "
        "`batchcert rerun RUN_DIR` reads the row again and sends it again",
    ),
}

_UNKNOWN = Policy(T, False, "an unknown error code — see the message, fix the cause, rerun with --include-terminal")


class Scope(enum.StrEnum):
    """What an answer says about a whole listener, beyond the row that got it."""

    #: the sub-account may not change this listener (CAM is resource-level and tag-based: other listeners may be
    #: fine) — its other rows are not sent, they end terminal with the same reason
    DENIED = "denied"
    #: the listener's connection (proxy) or group is not running; CLOSED or ISOLATED lasts days — its other rows are
    #: not sent in this run, they end retryable, and none of it spends the retry budget of healthy rows
    CLOSED = "closed"


#: code → what it means for the listener (docs/gaap-api.md, "Error codes"; CAM for GAAP is resource-level:
#: https://www.tencentcloud.com/document/product/598/10588). One line per code.
LISTENER_SCOPE: dict[str, Scope] = {
    "AuthFailure.UnauthorizedOperation": Scope.DENIED,
    "UnauthorizedOperation": Scope.DENIED,
    "UnauthorizedOperation.CrossBorderInIsolating": Scope.CLOSED,
    "FailedOperation.ProxyStatusNotInRuning": Scope.CLOSED,
    "FailedOperation.GroupStatusNotInRuning": Scope.CLOSED,
}

#: answers waited out by time (up to --listener-wait), not counted as attempts nor charged to the retry budget: the
#: listener or domain is busy with a task, which may take minutes (Terraform waits up to 5 minutes for
#: ListenerHasTask; docs/gaap-api.md, "Listener tasks")
WAITED_OUT = frozenset(
    {
        "FailedOperation.ListenerHasTask",
        "FailedOperation.DomainStatusNotInRunning",
        "FailedOperation.ActionIsDoing",
    }
)

#: a permission denial is taken as account-wide — and stops the run — when the first this many distinct listeners
#: were all denied and no change has succeeded yet
ACCOUNT_WIDE_DENIALS = 5


def listener_scope(code: str) -> Scope | None:
    """What `code` means for the whole listener, if anything (dotted parents apply, as for the policy)."""
    probe = code
    while probe:
        if probe in LISTENER_SCOPE:
            return LISTENER_SCOPE[probe]
        probe = probe.rpartition(".")[0]
    return None


#: `InvalidParameter` answers that say the listener does not exist ("ListenerId(listener-…) Not Exist."), which the
#: Terraform provider treats as gone (docs/gaap-api.md, "Error codes")
_ABSENT_LISTENER = re.compile(r"listenerid\W*\(?\s*listener-[0-9a-z]+\s*\)?\W*not\s*exist", re.IGNORECASE)


def says_listener_absent(code: str, message: str) -> bool:
    """True for an answer meaning the listener does not exist: ResourceNotFound, or InvalidParameter naming the
    ListenerId as not existing."""
    return code == "ResourceNotFound" or (code == "InvalidParameter" and bool(_ABSENT_LISTENER.search(message)))


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


def in_table(code: str) -> bool:
    """True when the code has its own line in the policy table (else a parent's, or the unknown policy, applies)."""
    return code in TABLE


def disposition_of(code: str) -> Disposition:
    return policy_for(code).disposition
