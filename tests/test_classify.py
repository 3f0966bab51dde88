"""Error-code policy: every code in the reference has the right disposition; unknown codes are terminal."""

from __future__ import annotations

import inspect
import re

import pytest

from batchcert import classify
from batchcert.model import Disposition

R, T, S = Disposition.RETRYABLE, Disposition.TERMINAL, Disposition.STOP_RUN

#: The error list of each action batchcert calls, as the official Go SDK documents it in the comment above the
#: action (https://github.com/TencentCloud/tencentcloud-sdk-go/blob/master/tencentcloud/gaap/v20180529/client.go,
#: read at v1.3.166, commit 144f6c8d39e410da77a70472f1416e9903740593; the meanings are in errors.go beside it and in
#: the Python SDK's tencentcloud/gaap/v20180529/errorcodes.py). DescribeCertificateDetail is never called
#: (docs/gaap-api.md) but listed, so a future use finds its codes decided.
DOCUMENTED: dict[str, tuple[str, ...]] = {
    "ModifyCertificate": (
        "AuthFailure",
        "AuthFailure.NotEnterpriseAuthorization",
        "AuthFailure.UnauthorizedOperation",
        "FailedOperation",
        "FailedOperation.DomainStatusNotInRunning",
        "FailedOperation.GroupStatusNotInRuning",
        "FailedOperation.ListenerHasTask",
        "FailedOperation.ProxyStatusNotInRuning",
        "FailedOperation.ProxyVersionNotSupport",
        "FailedOperation.UserNotConfirmProtocol",
        "InternalError",
        "InvalidParameter",
        "InvalidParameterValue",
        "InvalidParameterValue.CertificateNotMatchDomain",
        "MissingParameter",
        "ResourceNotFound",
        "ResourceUnavailable",
        "ResourceUnavailable.AccountViolation",
        "UnknownParameter",
    ),
    "ModifyHTTPSListenerAttribute": (
        "AuthFailure",
        "AuthFailure.NotEnterpriseAuthorization",
        "AuthFailure.UnauthorizedOperation",
        "FailedOperation",
        "FailedOperation.GroupStatusNotInRuning",
        "FailedOperation.InstanceStatusNotInRuning",
        "FailedOperation.ListenerHasTask",
        "FailedOperation.ListenerStatusError",
        "FailedOperation.NonStandardProxy",
        "FailedOperation.NotSupportOldVersionProxy",
        "FailedOperation.UserNotConfirmProtocol",
        "InternalError",
        "InvalidParameter",
        "InvalidParameterValue",
        "MissingParameter",
        "ResourceNotFound",
        "ResourceUnavailable.AccountViolation",
        "UnauthorizedOperation",
    ),
    "DescribeRules": (
        "AuthFailure",
        "AuthFailure.NotEnterpriseAuthorization",
        "AuthFailure.UnauthorizedOperation",
        "FailedOperation",
        "FailedOperation.UserNotConfirmProtocol",
        "InternalError",
        "InvalidParameter",
        "InvalidParameterValue",
        "MissingParameter",
        "ResourceNotFound",
        "ResourceUnavailable.AccountViolation",
        "UnauthorizedOperation",
    ),
    "DescribeHTTPSListeners": (
        "AuthFailure",
        "AuthFailure.NotEnterpriseAuthorization",
        "AuthFailure.UnauthorizedOperation",
        "FailedOperation",
        "FailedOperation.NotSupportOldVersionProxy",
        "FailedOperation.NotSupportProxyGroup",
        "FailedOperation.UserNotConfirmProtocol",
        "InternalError",
        "InvalidParameter",
        "InvalidParameterValue",
        "MissingParameter",
        "ResourceNotFound",
        "ResourceUnavailable.AccountViolation",
        "UnauthorizedOperation",
    ),
    "DescribeCertificates": (
        "AuthFailure",
        "AuthFailure.NotEnterpriseAuthorization",
        "AuthFailure.UnauthorizedOperation",
        "FailedOperation",
        "FailedOperation.UserNotConfirmProtocol",
        "InternalError",
        "InvalidParameter",
        "InvalidParameterValue",
        "MissingParameter",
        "ResourceUnavailable.AccountViolation",
        "UnauthorizedOperation",
        "UnknownParameter",
        "UnsupportedOperation",
    ),
    "DescribeProxies": (
        "AuthFailure",
        "AuthFailure.NotEnterpriseAuthorization",
        "AuthFailure.UnauthorizedOperation",
        "FailedOperation",
        "FailedOperation.UserNotConfirmProtocol",
        "InternalError",
        "InvalidParameter",
        "InvalidParameterValue",
        "MissingParameter",
        "ResourceNotFound",
        "ResourceUnavailable",
        "ResourceUnavailable.AccountViolation",
        "UnknownParameter",
    ),
    "DescribeProxyGroupList": (
        "AuthFailure",
        "AuthFailure.NotEnterpriseAuthorization",
        "AuthFailure.UnauthorizedOperation",
        "FailedOperation",
        "FailedOperation.UserNotConfirmProtocol",
        "InternalError",
        "InvalidParameter",
        "InvalidParameterValue",
        "MissingParameter",
        "ResourceNotFound",
        "ResourceUnavailable",
        "ResourceUnavailable.AccountViolation",
        "UnauthorizedOperation",
        "UnknownParameter",
    ),
    "DescribeCertificateDetail": (
        "AuthFailure",
        "AuthFailure.NotEnterpriseAuthorization",
        "AuthFailure.UnauthorizedOperation",
        "FailedOperation.UserNotConfirmProtocol",
        "InternalError",
        "InvalidParameter",
        "InvalidParameterValue",
        "MissingParameter",
        "ResourceNotFound",
        "ResourceUnavailable.AccountViolation",
        "UnauthorizedOperation",
        "UnknownParameter",
        "UnsupportedOperation",
    ),
}

#: the tags classify.TABLE's comments use for the actions above
TAGS = {
    "MC": "ModifyCertificate",
    "ML": "ModifyHTTPSListenerAttribute",
    "DR": "DescribeRules",
    "DL": "DescribeHTTPSListeners",
    "DC": "DescribeCertificates",
    "DP": "DescribeProxies",
    "DG": "DescribeProxyGroupList",
    "DD": "DescribeCertificateDetail",
}

CASES = [
    # codes documented for the actions above (DOCUMENTED): ModifyCertificate's
    ("AuthFailure", T),  # CAM signature/authorization, resource-level: scoped to the listener (LISTENER_SCOPE)
    ("AuthFailure.NotEnterpriseAuthorization", S),
    ("AuthFailure.UnauthorizedOperation", T),  # scoped to the listener (classify.LISTENER_SCOPE)
    ("FailedOperation", T),
    ("FailedOperation.DomainStatusNotInRunning", R),
    ("FailedOperation.GroupStatusNotInRuning", R),
    ("FailedOperation.ListenerHasTask", R),
    ("FailedOperation.ProxyStatusNotInRuning", R),
    ("FailedOperation.ProxyVersionNotSupport", T),
    ("FailedOperation.UserNotConfirmProtocol", S),
    ("InternalError", R),
    ("InvalidParameter", T),
    ("InvalidParameterValue", T),
    ("InvalidParameterValue.CertificateNotMatchDomain", T),
    ("MissingParameter", T),
    ("ResourceNotFound", T),
    ("ResourceUnavailable", R),
    ("ResourceUnavailable.AccountViolation", S),
    ("UnknownParameter", T),
    # ... and the other actions' (ModifyHTTPSListenerAttribute, DescribeHTTPSListeners, DescribeCertificates)
    ("FailedOperation.InstanceStatusNotInRuning", R),  # a stopped connection: closed-connection circuit
    ("FailedOperation.ListenerStatusError", R),  # waited out like a task (WAITED_OUT)
    ("FailedOperation.NonStandardProxy", T),
    ("FailedOperation.NotSupportOldVersionProxy", T),
    ("FailedOperation.NotSupportProxyGroup", T),
    ("UnauthorizedOperation", T),  # scoped to the listener (classify.LISTENER_SCOPE)
    ("UnsupportedOperation", T),
    # other GAAP codes seen
    ("FailedOperation.ActionIsDoing", R),
    ("FailedOperation.ActionOperateTooQuickly", R),
    ("Preflight.CertificateNotFound", T),
    ("Preflight.CertificateTypeMismatch", T),
    ("Preflight.CertificateExpired", T),
    ("Preflight.CertificateNotMatchDomain", T),
    ("InvalidParameterValue.InvalidCertificateId", T),
    # common codes
    ("AuthFailure.InvalidAuthorization", S),
    ("AuthFailure.InvalidSecretId", S),
    ("AuthFailure.MFAFailure", S),
    ("AuthFailure.SecretIdNotFound", S),
    ("AuthFailure.SignatureExpire", S),
    ("AuthFailure.SignatureFailure", S),
    ("AuthFailure.TokenFailure", S),
    ("ActionOffline", S),
    ("DryRunOperation", T),
    ("InvalidAction", S),
    ("InvalidRequest", T),
    ("IpInBlacklist", S),
    ("IpNotInWhitelist", S),
    ("LimitExceeded", T),
    ("NoSuchProduct", S),
    ("NoSuchVersion", S),
    ("RequestLimitExceeded", R),
    ("RequestLimitExceeded.GlobalRegionUinLimitExceeded", R),
    ("RequestLimitExceeded.IPLimitExceeded", R),
    ("RequestLimitExceeded.UinLimitExceeded", R),
    ("RequestSizeLimitExceeded", T),
    ("ResourceInUse", R),
    ("ResourceInsufficient", T),
    ("ServiceUnavailable", R),
    ("UnauthorizedOperation.CrossBorderInIsolating", R),
    ("FailedOperation.UserNotAuthenticated", S),
    ("FailedOperation.UserNotInWhitelist", S),
    ("FailedOperation.ResourceUpgrading", R),
    ("FailedOperation.Migration", R),
    ("LimitExceeded.RateLimitExceeded", R),
    ("UnsupportedProtocol", S),
    ("UnsupportedRegion", S),
    # transport failures made by the client
    ("Transport", R),
    ("Transport.Timeout", R),
    ("Transport.ConnectionReset", R),
    ("Transport.ConnectionError", R),
    ("Transport.HTTP502", R),
    ("Transport.InvalidResponse", R),
    ("Transport.Interrupted", R),
    ("Transport.ClockCorrected", R),
    ("Transport.ClientError", R),
    ("Transport.CertificateError", S),
    ("Transport.TLSError", S),
    # batchcert's own: an ambiguous answer no read could settle (rerun reads first)
    ("Batchcert.OutcomeUnknown", R),
    ("Batchcert.NotSentUnread", R),  # nothing was sent: retried, and read before
    # batchcert's own: a compare-and-swap row whose place moved meanwhile; a change the service reverted
    ("Precondition.CurrentCertificateMismatch", T),
    ("Verification.ChangeReverted", R),
    ("Precondition.ListenerNotOnProxy", T),
    # sub-codes fall back to their parent; unknown codes are terminal
    ("ResourceInUse.Listener", R),
    ("AuthFailure.SomethingNew", T),  # a bare AuthFailure's, not a credential's (those have their own lines)
    ("LimitExceeded.SomethingNew", T),  # a quota's, not a throttle's
    ("InvalidParameterValue.SomethingNew", T),
    ("TotallyNewCode", T),
    ("", T),
]


@pytest.mark.parametrize(("code", "expected"), CASES)
def test_disposition(code: str, expected: Disposition) -> None:
    """Each code is retried, terminal or stops the run as the policy table says."""
    assert classify.disposition_of(code) is expected


@pytest.mark.parametrize(
    ("code", "maybe_applied"),
    [
        ("InternalError", True),
        ("Transport.Timeout", True),
        ("Transport.ConnectionReset", True),
        ("Transport.HTTP502", True),
        ("Batchcert.OutcomeUnknown", True),
        ("Transport.ConnectionError", False),
        ("Verification.ChangeReverted", False),  # the read-back proved the old state is live
        ("Precondition.CurrentCertificateMismatch", False),
        ("FailedOperation.ListenerHasTask", False),
        ("RequestLimitExceeded", False),
        ("InvalidParameterValue.CertificateNotMatchDomain", False),
    ],
)
def test_ambiguous_answers_are_marked_maybe_applied(code: str, maybe_applied: bool) -> None:
    """Answers after which the change may have taken effect are flagged; refusals are not."""
    assert classify.policy_for(code).maybe_applied is maybe_applied


def test_every_table_line_has_a_case() -> None:
    """A table line is a deliberate choice: each has its own case above (a new code is one line plus one case)."""
    assert set(classify.TABLE) <= {code for code, _ in CASES}


def test_no_code_has_two_cases() -> None:
    codes = [code for code, _ in CASES]
    assert sorted(c for c in set(codes) if codes.count(c) > 1) == []


@pytest.mark.parametrize("code", sorted({code for codes in DOCUMENTED.values() for code in codes}))
def test_every_documented_code_is_decided(code: str) -> None:
    """Every code an action of ours documents has its own table line (not only a parent's fallback) and its own
    case above with the disposition chosen for it."""
    assert classify.in_table(code)
    assert code in dict(CASES)
    assert classify.TABLE[code][0] is dict(CASES)[code]


def test_the_table_names_the_actions_that_document_each_code() -> None:
    """Each documented line's comment tag (`# [MC ML …]` or `# [all]`) names exactly the actions whose error list
    has the code, and every tagged line is a documented code."""
    source = inspect.getsource(classify)
    tagged = {
        code: (set(TAGS.values()) if tags == "all" else {TAGS[t] for t in tags.split()})
        for tags, code in re.findall(r'# \[([A-Z ]+|all)\][^\n]*\n(?:\s*#[^\n]*\n)*\s*"([\w.]+)":', source)
    }
    documented: dict[str, set[str]] = {}
    for action, codes in DOCUMENTED.items():
        for code in codes:
            documented.setdefault(code, set()).add(action)
    assert tagged == documented


@pytest.mark.parametrize(
    "code",
    [
        "Transport.Timeout",
        "Transport.ConnectionReset",
        "Transport.InvalidResponse",
        "Transport.ClientError",
        "Transport.Interrupted",
    ],
)
def test_the_tools_own_transport_codes_have_their_own_lines(code: str) -> None:
    """The client's and journal's Transport.* codes are table lines, not only their family's fallback."""
    assert classify.in_table(code)
    assert classify.policy_for(code).maybe_applied


def test_every_table_line_has_advice() -> None:
    """Every policy line tells the operator what to do next."""
    assert all(advice.strip() for _, _, advice in classify.TABLE.values())


@pytest.mark.parametrize(
    ("code", "may_arrive"),
    [
        ("Transport.Timeout", True),
        ("Transport.ConnectionReset", True),
        ("Transport.HTTP502", True),
        ("Transport.ConnectionError", False),  # never left this machine
        ("InternalError", False),  # the service answered: it has handled the request
        ("FailedOperation.ListenerHasTask", False),
    ],
)
def test_requests_that_may_still_reach_the_service(code: str, may_arrive: bool) -> None:
    """After these answers a read must wait before it can prove a change was not applied."""
    assert classify.may_still_arrive(code) is may_arrive


@pytest.mark.parametrize(
    ("code", "scope"),
    [
        ("AuthFailure.UnauthorizedOperation", classify.Scope.DENIED),
        ("UnauthorizedOperation", classify.Scope.DENIED),
        ("UnauthorizedOperation.CrossBorderInIsolating", classify.Scope.CLOSED),
        ("FailedOperation.ProxyStatusNotInRuning", classify.Scope.CLOSED),
        ("FailedOperation.GroupStatusNotInRuning", classify.Scope.CLOSED),
        # ModifyHTTPSListenerAttribute's answer for a listener on a stopped connection (issue 22, point 3)
        ("FailedOperation.InstanceStatusNotInRuning", classify.Scope.CLOSED),
        # a bare AuthFailure: CAM's answer for this resource (classify.TABLE); its unknown sub-codes follow it
        ("AuthFailure", classify.Scope.DENIED),
        ("AuthFailure.SomethingNew", classify.Scope.DENIED),
        ("FailedOperation.ListenerHasTask", None),
        ("FailedOperation.ListenerStatusError", None),
        ("FailedOperation.Migration", None),
        # credential and account codes stop the run: never one listener's, although their parent AuthFailure is
        ("AuthFailure.SecretIdNotFound", None),
        ("AuthFailure.SignatureFailure", None),
        ("AuthFailure.NotEnterpriseAuthorization", None),
        ("RequestLimitExceeded", None),
    ],
)
def test_answers_about_a_whole_listener(code: str, scope: classify.Scope | None) -> None:
    """Denials and closed connections concern the listener, not the run and not only the row."""
    assert classify.listener_scope(code) is scope


def test_scopes_agree_with_the_table() -> None:
    """A closed connection's rows end retryable (rerun when it runs again), a denied listener's terminal; neither
    is a code the run waits out, and each scoped code is decided by its own table line."""
    for code, scope in classify.LISTENER_SCOPE.items():
        assert classify.in_table(code), code
        expected = Disposition.RETRYABLE if scope is classify.Scope.CLOSED else Disposition.TERMINAL
        assert classify.disposition_of(code) is expected, code
        assert code not in classify.WAITED_OUT


def test_waited_out_codes_are_retryable_busy_answers() -> None:
    assert "FailedOperation.ListenerStatusError" in classify.WAITED_OUT
    for code in classify.WAITED_OUT:
        assert classify.disposition_of(code) is Disposition.RETRYABLE, code
        assert not classify.policy_for(code).maybe_applied, code
        assert classify.listener_scope(code) is None, code


@pytest.mark.parametrize(
    ("code", "throttling"),
    [
        ("RequestLimitExceeded", True),
        ("RequestLimitExceeded.UinLimitExceeded", True),
        ("RequestLimitExceeded.IPLimitExceeded", True),
        ("RequestLimitExceeded.GlobalRegionUinLimitExceeded", True),
        ("LimitExceeded.RateLimitExceeded", True),  # the SSL/TEO APIs' word for the same thing
        ("LimitExceeded", False),  # a quota, not a rate
        ("LimitExceeded.TagQuota", False),
        # GAAP's own "too frequent" refusal, in none of our actions' lists: retried with backoff, the gate kept
        ("FailedOperation.ActionOperateTooQuickly", False),
        ("RequestLimitExceededish", False),
        ("InternalError", False),
        ("", False),
    ],
)
def test_throttling_answers_slow_the_gate(code: str, throttling: bool) -> None:
    """`is_throttling` is what the rate gate (batchcert/schedule.py) asks before it slows down."""
    assert classify.is_throttling(code) is throttling
    if throttling:
        assert classify.disposition_of(code) is Disposition.RETRYABLE


@pytest.mark.parametrize(
    ("code", "message", "absent"),
    [
        ("ResourceNotFound", "", True),
        ("InvalidParameter", "ListenerId(listener-abc123) Not Exist.", True),
        ("InvalidParameter", "The parameter `Domain` is invalid.", False),
        ("InvalidParameterValue", "ListenerId(listener-abc123) Not Exist.", False),
    ],
)
def test_a_missing_listener_by_either_answer(code: str, message: str, absent: bool) -> None:
    assert classify.says_listener_absent(code, message) is absent
