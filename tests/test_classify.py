"""Error-code policy: every code in the reference has the right disposition; unknown codes are terminal."""

from __future__ import annotations

import pytest

from batchcert import classify
from batchcert.model import Disposition

R, T, S = Disposition.RETRYABLE, Disposition.TERMINAL, Disposition.STOP_RUN

CASES = [
    # ModifyCertificate's documented codes
    ("AuthFailure", S),
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
    # other GAAP codes seen
    ("FailedOperation.ActionIsDoing", R),
    ("FailedOperation.ActionOperateTooQuickly", R),
    ("FailedOperation.NonStandardProxy", T),
    ("FailedOperation.NotSupportOldVersionProxy", T),
    ("FailedOperation.NotSupportProxyGroup", T),
    ("Preflight.CertificateNotFound", T),
    ("Preflight.CertificateTypeMismatch", T),
    ("Preflight.CertificateExpired", T),
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
    ("UnauthorizedOperation", T),
    ("UnauthorizedOperation.CrossBorderInIsolating", R),
    ("FailedOperation.UserNotAuthenticated", S),
    ("FailedOperation.UserNotInWhitelist", S),
    ("FailedOperation.ListenerStatusError", R),
    ("FailedOperation.InstanceStatusNotInRuning", R),
    ("FailedOperation.ResourceUpgrading", R),
    ("FailedOperation.Migration", R),
    ("LimitExceeded.RateLimitExceeded", R),
    ("UnsupportedOperation", T),
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
    ("AuthFailure.SomethingNew", S),
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
        ("FailedOperation.ListenerHasTask", None),
        ("AuthFailure.SecretIdNotFound", None),
    ],
)
def test_answers_about_a_whole_listener(code: str, scope: classify.Scope | None) -> None:
    """Denials and closed connections concern the listener, not the run and not only the row."""
    assert classify.listener_scope(code) is scope


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
