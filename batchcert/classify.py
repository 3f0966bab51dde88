"""Error-code policy: one table saying, for every code in docs/gaap-api.md ("Error codes"), whether a row is retried, ends, or stops
the whole run, and whether the change may have been applied although the answer was an error. Pure.

Lookup walks up the dotted code: `RequestLimitExceeded.Foo` falls back to `RequestLimitExceeded`; a code with no
entry on its path is terminal (an unknown code is never retried blindly). Sources for the choices:
docs/gaap-api.md, "Error codes" (the official SDK's retryer, Terraform's GAAP service), and the official SDKs' GAAP
error lists — every code documented for an action batchcert calls has its own line below, tagged with the actions
that document it: the comment above each action in
https://github.com/TencentCloud/tencentcloud-sdk-go/blob/master/tencentcloud/gaap/v20180529/client.go, the meanings in
https://github.com/TencentCloud/tencentcloud-sdk-go/blob/master/tencentcloud/gaap/v20180529/errors.go and
https://github.com/TencentCloud/tencentcloud-sdk-python/blob/master/tencentcloud/gaap/v20180529/errorcodes.py
(read at go-sdk v1.3.166, commit 144f6c8d39e410da77a70472f1416e9903740593).
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
    PREFLIGHT_SAN_MISMATCH,
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
    "the sub-account may not change this listener — grant it gaap:ModifyCertificate, "
    "gaap:ModifyHTTPSListenerAttribute, gaap:DescribeRules and gaap:DescribeHTTPSListeners on the listener's "
    "connection (CAM), then `batchcert rerun RUN_DIR --include-terminal`"
)
_NOT_RUNNING = "the listener's connection is not running (stopped, closed or isolated) — rerun when it runs again"

#: code → (disposition, maybe applied, what the operator should do). One line per code.
#:
#: The first section holds every code the official SDK documents for an action batchcert calls, each tagged with the
#: actions whose error list names it (the comment above each action in go-sdk
#: https://github.com/TencentCloud/tencentcloud-sdk-go/blob/master/tencentcloud/gaap/v20180529/client.go) and its
#: meaning (go-sdk errors.go, py-sdk errorcodes.py; module docstring): MC ModifyCertificate, ML
#: ModifyHTTPSListenerAttribute, DR DescribeRules, DL DescribeHTTPSListeners, DC DescribeCertificates, DP
#: DescribeProxies, DG DescribeProxyGroupList, DD DescribeCertificateDetail (a target's content);
#: "all" is all eight. tests/test_classify.py holds the same lists (`DOCUMENTED`) and checks each has its own line.
TABLE: dict[str, tuple[Disposition, bool, str]] = {
    # --- documented by the GAAP actions batchcert calls ------------------------------------------------------------
    # [all] "CAM签名/鉴权错误" — a CAM signature or authorization error. A bad signature or credential has its own
    # common AuthFailure.* sub-codes below (each stops the run), so a bare AuthFailure reads as GAAP's answer after its
    # CAM check (an inference: docs/gaap-api.md, "Error codes"), and CAM for GAAP is resource-level, so it may concern
    # this listener's connection only: terminal and listener-scoped like AuthFailure.UnauthorizedOperation
    # (LISTENER_SCOPE); the runner still stops the run when the first ACCOUNT_WIDE_DENIALS listeners all get it
    "AuthFailure": (
        T,
        False,
        "CAM refused this request (signature or permission) — check the sub-account's CAM policy for the listener's "
        "connection, and the credentials and clock if every listener fails, then `batchcert rerun RUN_DIR "
        "--include-terminal`",
    ),
    # [all] "非企业认证客户" — not an enterprise-verified account: the account's, for every row
    "AuthFailure.NotEnterpriseAuthorization": (S, False, "GAAP needs an enterprise-verified account"),
    # [all] "子账户未授权操作" — the sub-account is not authorized: resource-level, scoped to the listener
    "AuthFailure.UnauthorizedOperation": (T, False, _PERMISSION),
    # [ML DR DL DC DG DD] "未授权操作" — not authorized: as above
    "UnauthorizedOperation": (T, False, _PERMISSION),
    # [all] "未开通协议" — the GAAP service agreement is not accepted: the account's
    "FailedOperation.UserNotConfirmProtocol": (S, False, "accept the GAAP service agreement in the console"),
    # [all] "账号下存在违规资源" — the account holds violating resources: the account's
    "ResourceUnavailable.AccountViolation": (
        S,
        False,
        "the account is restricted — contact Tencent Cloud support",
    ),
    # [MC ML] "监听器正在操作中，请勿重复操作" — the listener is busy with a task: waited out (WAITED_OUT)
    "FailedOperation.ListenerHasTask": (
        R,
        False,
        "the listener was busy with an earlier change — rerun later",
    ),
    # [ML] "监听器当前状态无法支持该操作" — the listener's state (ListenerStatus: creating, adjusting origins,
    # configuration changing; docs/gaap-api.md, "Listener tasks") does not take the change now: waited out like a task
    "FailedOperation.ListenerStatusError": (R, False, "the listener is not in a state to change — rerun later"),
    # [MC] "域名状态为非运行状态" — the domain is mid-change: waited out (WAITED_OUT)
    "FailedOperation.DomainStatusNotInRunning": (R, False, "the domain is being changed — rerun later"),
    # [MC] "通道处于非运行状态" — the connection (proxy) is not running: the closed-connection circuit (LISTENER_SCOPE)
    "FailedOperation.ProxyStatusNotInRuning": (R, False, _NOT_RUNNING),
    # [ML] "通道状态为非运行状态，无法操作" — the connection is not running (ModifyHTTPSListenerAttribute's answer on a
    # stopped proxy): the closed-connection circuit (LISTENER_SCOPE)
    "FailedOperation.InstanceStatusNotInRuning": (R, False, _NOT_RUNNING),
    # [MC ML] "通道组状态为非运行状态" — the connection group is not running: the closed-connection circuit
    "FailedOperation.GroupStatusNotInRuning": (
        R,
        False,
        "the listener's connection group is not running — rerun when it runs again",
    ),
    # [all] "内部错误" — the service failed after taking the request: it may have applied (a read settles it)
    "InternalError": (R, True, "the service failed internally — rerun; the report shows whether it applied"),
    # [MC DP DG] "资源不可用" — unavailable for now (Terraform retries ResourceUnavailable*: docs/gaap-api.md)
    "ResourceUnavailable": (R, False, "the resource is unavailable right now — rerun later"),
    # [MC ML DR DL DC DP DG] "操作失败" — a refusal with no named cause: the message says why
    "FailedOperation": (T, False, "the service refused the request — see the message"),
    # [MC] "不支持该版本通道" — ModifyCertificate works on 3.0 connections only: the connection's kind
    "FailedOperation.ProxyVersionNotSupport": (
        T,
        False,
        "the listener is not on a 3.0 connection — change it in the console",
    ),
    # [ML DL] "仅支持Version2.0的通道" — an old (1.0) connection: the connection's kind, not a passing state
    "FailedOperation.NotSupportOldVersionProxy": (
        T,
        False,
        "the listener's connection is an old version — upgrade it in the console",
    ),
    # [DL] "该操作不支持通道组" — the action does not take a connection group: the group's kind
    "FailedOperation.NotSupportProxyGroup": (
        T,
        False,
        "this connection group does not take listener certificate changes — change it in the console",
    ),
    # [ML] "该通道为非标通道，限制所有写操作" — a non-standard connection refuses every write
    "FailedOperation.NonStandardProxy": (
        T,
        False,
        "the connection is non-standard — change it in the console",
    ),
    # [all] "参数错误" — a wrong value (also "ListenerId(…) Not Exist.": `says_listener_absent`)
    "InvalidParameter": (T, False, "fix the row's values in the mapping"),
    # [all] "参数取值错误"
    "InvalidParameterValue": (T, False, "fix the row's certificate ids (server type 2, client type 1)"),
    # [MC] "Https证书与域名不匹配" — the certificate does not cover the domain
    "InvalidParameterValue.CertificateNotMatchDomain": (
        T,
        False,
        "the certificate does not cover the domain — pick one that does",
    ),
    # [all] "缺少参数错误"
    "MissingParameter": (T, False, "fill the empty field in the mapping"),
    # [MC DC DP DG DD] "未知参数错误" — a parameter the API does not know: our bug
    "UnknownParameter": (T, False, "batchcert sent a parameter the API does not know — report this bug"),
    # [MC ML DR DL DP DG DD] "资源不存在"
    "ResourceNotFound": (T, False, "the listener or domain does not exist — fix the ids in the mapping"),
    # [DC DD] "操作不支持"
    "UnsupportedOperation": (T, False, "the service does not support this request — see the message"),
    # --- other GAAP codes (go-sdk errors.go, no action of ours lists them) -----------------------------------------
    "FailedOperation.UserNotAuthenticated": (
        S,
        False,
        "the account is not identity-verified — verify it in the console",
    ),
    "FailedOperation.UserNotInWhitelist": (S, False, "the account is not allowed this GAAP feature — ask support"),
    # "跨境通道的联通带宽处于隔离中" — the cross-border connection is isolating: the closed-connection circuit
    "UnauthorizedOperation.CrossBorderInIsolating": (
        R,
        False,
        "the connection is isolated (cross-border compliance) — rerun when it is released",
    ),
    # "操作正在执行中，请勿重复操作" — an earlier operation is still running: waited out (WAITED_OUT)
    "FailedOperation.ActionIsDoing": (R, False, "an earlier operation is still running — rerun later"),
    # "接口操作太频繁，请稍后重试" — operating too often, retry later
    "FailedOperation.ActionOperateTooQuickly": (R, False, "operations came too quickly — rerun later"),
    # "资源升级中" — the resource (unnamed) is being upgraded
    "FailedOperation.ResourceUpgrading": (R, False, "the resource is being upgraded — rerun later"),
    # "加速通道在升级中，暂不支持配置变更，请提工单申请" — the connection is being upgraded and takes no changes; not
    # "not running", so retried with backoff rather than cut off
    "FailedOperation.Migration": (
        R,
        False,
        "the connection is being upgraded and takes no changes — rerun later (a ticket if it lasts)",
    ),
    # "证书不可用" — the certificate is not usable
    "InvalidParameterValue.InvalidCertificateId": (T, False, "the certificate is not usable — pick another id"),
    # --- common codes, any action (docs/gaap-api.md, "Error codes"): credentials and the endpoint are the run's ------
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
    "IpInBlacklist": (S, False, "this machine's IP is blocked for the account — run from an allowed network"),
    "IpNotInWhitelist": (S, False, "add this machine's IP to the account's API allow-list"),
    "InvalidAction": (S, False, "the endpoint does not serve GAAP actions — check --endpoint"),
    "ActionOffline": (S, False, "the action is retired — upgrade batchcert"),
    "NoSuchProduct": (S, False, "the endpoint does not serve GAAP — check --endpoint"),
    "NoSuchVersion": (S, False, "the endpoint does not serve API version 2018-05-29 — check --endpoint"),
    "UnsupportedProtocol": (S, False, "use https for the endpoint"),
    "UnsupportedRegion": (S, False, "GAAP takes no region — check --endpoint"),
    # a throttle (and its .GlobalRegionUinLimitExceeded, .IPLimitExceeded, .UinLimitExceeded sub-codes): the rate
    # gate slows down (THROTTLED)
    "RequestLimitExceeded": (
        R,
        False,
        "the account's API rate limit was hit — lower --rate or stop other tools",
    ),
    # not a GAAP code, but "单位时间内接口请求频率达到限制" (the request rate limit per unit of time was reached) in
    # go-sdk tencentcloud/ssl/v20191205/errors.go and teo/v20220901/errors.go: a throttle by another name (THROTTLED)
    "LimitExceeded.RateLimitExceeded": (R, False, "an API rate limit was hit — lower --rate or stop other tools"),
    "ServiceUnavailable": (R, True, "the service is unavailable — rerun later"),
    "ResourceInUse": (R, False, "the resource is in use — rerun later"),
    "ResourceInsufficient": (T, False, "a quota is exhausted — raise it, then rerun"),
    "LimitExceeded": (T, False, "a quota is exceeded — raise it, then rerun"),
    "RequestSizeLimitExceeded": (T, False, "the request is too large — shorten the row"),
    "InvalidRequest": (T, False, "the request was malformed — report this bug"),
    "DryRunOperation": (T, False, "a dry run was requested — nothing changed"),
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
    # the target's content read with DescribeCertificateDetail (`CertificateDetail.CertificateContent` in the models.py
    # above); names checked as browsers do (RFC 6125 §6.4: SubjectAltName DNS names, a wildcard covering one label)
    PREFLIGHT_SAN_MISMATCH: (
        T,
        False,
        "the certificate's names (SubjectAltName) do not cover the domain — map the domain to a certificate that "
        "names it",
    ),
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
#: https://www.tencentcloud.com/document/product/598/10588). One line per code; a code that stops the run
#: (`Disposition.STOP_RUN`) concerns the run, never one listener, even below a scoped parent (`listener_scope`).
#: CLOSED holds every code go-sdk errors.go documents for a connection or group that is not running (or isolated):
#: see each code's TABLE line for its meaning and the actions that answer it.
LISTENER_SCOPE: dict[str, Scope] = {
    "AuthFailure": Scope.DENIED,
    "AuthFailure.UnauthorizedOperation": Scope.DENIED,
    "UnauthorizedOperation": Scope.DENIED,
    "UnauthorizedOperation.CrossBorderInIsolating": Scope.CLOSED,
    "FailedOperation.ProxyStatusNotInRuning": Scope.CLOSED,
    "FailedOperation.InstanceStatusNotInRuning": Scope.CLOSED,
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
        # ModifyHTTPSListenerAttribute's word for a listener whose ListenerStatus is not 0 (a task under way)
        "FailedOperation.ListenerStatusError",
    }
)

#: answers that mean "too many requests": the rate gate slows down (batchcert/schedule.py). The code or a dotted
#: parent: `RequestLimitExceeded` and its common sub-codes (docs/gaap-api.md, "Error codes" and "Rate limit"), and
#: `LimitExceeded.RateLimitExceeded` ("单位时间内接口请求频率达到限制", the request rate limit per unit of time was
#: reached: https://github.com/TencentCloud/tencentcloud-sdk-go/blob/master/tencentcloud/ssl/v20191205/errors.go) —
#: but not a bare `LimitExceeded`, which is a quota
THROTTLED = frozenset({"RequestLimitExceeded", "LimitExceeded.RateLimitExceeded"})

#: a permission denial is taken as account-wide — and stops the run — when the first this many distinct listeners
#: were all denied and no change has succeeded yet
ACCOUNT_WIDE_DENIALS = 5


def is_throttling(code: str) -> bool:
    """True when `code` (or a dotted parent) says the request rate was too high (THROTTLED)."""
    probe = code
    while probe:
        if probe in THROTTLED:
            return True
        probe = probe.rpartition(".")[0]
    return False


def listener_scope(code: str) -> Scope | None:
    """What `code` means for the whole listener, if anything (dotted parents apply, as for the policy). None for a
    code that stops the run: `AuthFailure.SignatureFailure` is the credential's, not the listener's, although its
    parent `AuthFailure` is listener-scoped."""
    if disposition_of(code) is Disposition.STOP_RUN:
        return None
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
