"""Value types shared by every layer: rows, outcomes, call results. Stdlib only (and the API's words,
`batchcert.api.vocabulary`), no I/O.

Domain words: a *mapping* is the input file, a *row* one of its records, an *attempt* one request sent for a row,
an *outcome* what a row ended as, a *run* one execution over a mapping (reruns continue the same run).
"""

from __future__ import annotations

import enum
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from batchcert.api.vocabulary import ACTION_MODIFY, ACTION_MODIFY_LISTENER

#: The certificate literal meaning "use the listener's certificate" (docs/gaap-api.md, "The call").
DEFAULT_CERTIFICATE = "default"

#: a row's target certificate, looked up before anything is sent, cannot be installed (batchcert's own codes, never
#: the service's; batchcert.classify says what each means)
PREFLIGHT_NOT_FOUND = "Preflight.CertificateNotFound"
PREFLIGHT_TYPE_MISMATCH = "Preflight.CertificateTypeMismatch"
PREFLIGHT_EXPIRED = "Preflight.CertificateExpired"
PREFLIGHT_SAN_MISMATCH = "Preflight.CertificateNotMatchDomain"
#: a compare-and-swap row (README, "Current → new") whose live state, read before sending, is not the one the file
#: expects: someone changed the place since the file was made; never sent (batchcert's own code)
PRECONDITION_MISMATCH = "Precondition.CurrentCertificateMismatch"
#: a change the service accepted, whose task then failed: the read-back after it shows the old state again
#: (batchcert's own code; retryable: `rerun` reads the row and sends it again)
CHANGE_REVERTED = "Verification.ChangeReverted"
#: a listener row whose ProxyId is not the proxy the listener is on (its own read says which): never sent
PRECONDITION_WRONG_PROXY = "Precondition.ListenerNotOnProxy"


class Outcome(enum.StrEnum):
    """How a row ended. The report's `outcome` column takes exactly these values."""

    SUCCEEDED = "succeeded"
    UNCHANGED = "unchanged"
    RETRYABLE = "retryable"
    TERMINAL = "terminal"
    INVALID = "invalid"
    NOT_ATTEMPTED = "not_attempted"


#: Outcomes a rerun sends again by default; `--include-terminal` adds TERMINAL.
RERUN_OUTCOMES = frozenset({Outcome.RETRYABLE, Outcome.NOT_ATTEMPTED})
#: Outcomes of a row that is done: its place holds the target (README, "Reconciliation")
DONE_OUTCOMES = frozenset({Outcome.SUCCEEDED, Outcome.UNCHANGED})


class Verified(enum.StrEnum):
    """What the read-back after a row's change found (the journal's `rows.verified`, the report's `verified`)."""

    #: not read back (yet): no change, --no-verify, or the run stopped first
    NOT_READ = ""
    #: the domain was still changing when the read-back gave up waiting
    PENDING = "pending"
    AT_TARGET = "true"
    NOT_AT_TARGET = "false"

    @classmethod
    def of(cls, at_target: bool) -> Verified:
        return cls.AT_TARGET if at_target else cls.NOT_AT_TARGET


@dataclass(frozen=True)
class ReadBack:
    """What the read-back after a row's change saw: the live certificates, and whether they are the row's target."""

    row_number: int
    certificate_id: str
    client_ids: tuple[str, ...]
    verified: Verified


class Served(enum.StrEnum):
    """What the edge served for a changed row when it was probed (report.csv's `served`; README, "What the edge
    serves")."""

    #: not probed (`--no-probe`, a row not changed, a read-back that did not show the target, no target content)
    NOT_PROBED = ""
    #: the target's leaf was served
    TRUE = "true"
    #: another certificate was still served when the wait ended
    FALSE = "false"
    #: no TLS handshake was possible (no access address, refused, timed out)
    UNREACHABLE = "unreachable"


@dataclass(frozen=True)
class ServedCheck:
    """What probing a row's domains found: `served`, the served leaf's SHA-256, subject and notAfter (Unix s; None:
    no leaf was served), and a note (why it was not probed or not reachable)."""

    row_number: int
    served: Served
    sha256: str = ""
    subject: str = ""
    not_after_s: int | None = None
    note: str = ""


@dataclass(frozen=True)
class ProbeTarget:
    """A domain to probe on its own (`batchcert probe`): where it is, which certificate it should serve (`default`:
    its listener's), and the line of the file that asks (its row number)."""

    row_number: int
    listener_id: str
    domain: str
    certificate_id: str
    #: the credential profile (the account) whose reads find its access point ("" the command's own credential)
    profile: str = ""


class Basis(enum.StrEnum):
    """What a row's outcome rests on, where that is not simply its own answer (the journal's `rows.basis`)."""

    #: its own answer, the pre-flight read's verdict, or nothing (not sent)
    ANSWER = ""
    #: `succeeded` because a read showed the target where a session had recorded another state before, though no
    #: answer of this row says it was applied (its attempt record is missing)
    READ_BACK = "read_back"


class SessionKind(enum.StrEnum):
    """Which command a session of a run is (the journal's `sessions.kind`)."""

    RUN = "run"
    RERUN = "rerun"


class SessionStatus(enum.StrEnum):
    """How a run's session ended (the journal's `sessions.status`)."""

    RUNNING = "running"
    FINISHED = "finished"
    #: the run stopped itself (a denied credential, the retry budget spent): `stop_reason` says why
    STOPPED = "stopped"
    #: Ctrl-C, SIGTERM or SIGHUP
    INTERRUPTED = "interrupted"
    #: the process died without ending its session (found by the next session)
    DIED = "died"


#: batchcert's own code for a request the run stopped before it was sent
NOT_SENT = "NotSent"


class Disposition(enum.StrEnum):
    """What an error code means for the row (see `batchcert.classify`)."""

    RETRYABLE = "retryable"
    TERMINAL = "terminal"
    #: the account or credential is unusable: stop dispatching every row
    STOP_RUN = "stop_run"


@dataclass(frozen=True)
class Expected:
    """What a compare-and-swap row expects to find live before it is sent (the mapping's current-certificate
    columns, README "Current → new"): the server certificate as the API reads it (`default` included), and the client
    CA ids, or None when the file does not say (then they are not compared)."""

    certificate_id: str
    client_ids: tuple[str, ...] | None = None

    @property
    def client_text(self) -> str:
        return "" if self.client_ids is None else ";".join(self.client_ids)


@dataclass(frozen=True)
class Row:
    """One mapping record. `row_number` is what a spreadsheet shows (header is 1, first data row is 2).

    Empty optional ids are "" (client id) or () (poly ids). `extra` holds the mapping's other columns, untouched.
    """

    row_number: int
    listener_id: str
    domain: str
    certificate_id: str
    client_certificate_id: str = ""
    poly_client_certificate_ids: tuple[str, ...] = ()
    extra: tuple[tuple[str, str], ...] = ()
    #: SCOPE_DOMAIN (a domain's certificates) or SCOPE_LISTENER (the listener's own; `domain` is "")
    scope: str = "domain"
    #: the listener's proxy, for a listener row (ModifyHTTPSListenerAttribute takes it); "" when not given
    proxy_id: str = ""
    #: a compare-and-swap row's expected current state (None: the mapping has no current → new columns)
    expected: Expected | None = None
    #: the credential profile (the account) the row is sent with: its Profile cell, else the run's --profile, else
    #: "" (the default credentials)
    profile: str = ""

    @property
    def action(self) -> str:
        """The write this row sends."""
        return ACTION_MODIFY_LISTENER if self.scope == "listener" else ACTION_MODIFY

    @property
    def target_key(self) -> tuple[str, str, tuple[str, ...]]:
        """The certificate state this row asks for: (server, client, poly ids)."""
        return (self.certificate_id, self.client_certificate_id, self.poly_client_certificate_ids)

    def request_params(self) -> dict[str, Any]:
        """The parameters of this row's write (`action`); optional ids are sent only when set."""
        params: dict[str, Any] = {"ListenerId": self.listener_id}
        if self.scope == "listener":
            if self.proxy_id:
                params["ProxyId"] = self.proxy_id
        else:
            params["Domain"] = self.domain
        params["CertificateId"] = self.certificate_id
        if self.client_certificate_id:
            params["ClientCertificateId"] = self.client_certificate_id
        if self.poly_client_certificate_ids:
            params["PolyClientCertificateIds"] = list(self.poly_client_certificate_ids)
        return params


@dataclass(frozen=True)
class CallResult:
    """The result of one API call as the client saw it.

    `code` is None on success, an API error code (`FailedOperation.ListenerHasTask`) or a transport code
    (`Transport.Timeout`). `sent` is False only when the request certainly never left (connection refused);
    `sent_at_s` is when it went on the wire (the event loop's monotonic clock); `latency_s` is the time from then to
    the answer or failure.
    """

    code: str | None
    message: str = ""
    request_id: str = ""
    http_status: int | None = None
    latency_s: float = 0.0
    sent: bool = True
    response: dict[str, Any] = field(default_factory=dict)
    sent_at_s: float = 0.0
    #: not an answer to a write: a read found the row's target already live, put there by someone else while this
    #: run waited (nothing was sent) — the row is `unchanged`, never this run's success
    by_others: bool = False

    @property
    def ok(self) -> bool:
        return self.code is None


@dataclass(frozen=True)
class Progress:
    """How far a sending session is: `done` of `total` rows settled (identical duplicates counted, as in the
    report), `counts` per outcome (they add up to `done`), seconds since sending began, and — once the run is
    stopping — what it is waiting for."""

    done: int
    total: int
    counts: dict[Outcome, int]
    elapsed_s: float
    stopping: str = ""

    @property
    def rows_per_s(self) -> float:
        return self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the rate so far; None before the first row settled."""
        return (self.total - self.done) / self.rows_per_s if self.rows_per_s > 0 else None


#: what a row or an inventory line changes: a domain's certificates (ModifyCertificate) or a listener's own
#: (ModifyHTTPSListenerAttribute)
SCOPE_DOMAIN = "domain"
SCOPE_LISTENER = "listener"


@dataclass(frozen=True)
class Place:
    """One place certificates are used: an HTTPS listener's own (`scope` listener, `domain` "") or a domain's.
    `certificate_id` as the API says it (a domain may say `default`); `effective_certificate_id` resolves `default`
    to the listener's; `status` is ListenerStatus or DomainStatus."""

    scope: str
    proxy_id: str
    group_id: str
    listener_id: str
    domain: str
    certificate_id: str
    client_certificate_ids: tuple[str, ...]
    effective_certificate_id: str
    listener_name: str
    port: int | None
    status: int
    proxy_name: str
    proxy_status: str


@dataclass(frozen=True)
class MappingLine:
    """A row of the rotation mapping (REPLACE_COLUMNS). `poly_client_certificate_ids` is the full new client list
    when the row changes one (else empty: the server certificate alone changes, client CAs are kept)."""

    scope: str
    proxy_id: str
    listener_id: str
    domain: str
    certificate_id: str
    poly_client_certificate_ids: tuple[str, ...]
    #: what the place uses now, as the inventory read it: the row's expected current state (compare-and-swap), so a
    #: rotation never overwrites a place changed since the inventory. Client ids only on rows that change them.
    current_certificate_id: str = ""
    current_client_certificate_ids: tuple[str, ...] = ()


class Api(Protocol):
    """Something that sends one API call and says how it went: the signed HTTP client, or a test's in-process fake.
    Never raises for a per-call problem (the answer's `code` says it)."""

    async def send(self, action: str, params: dict[str, Any]) -> CallResult: ...


@dataclass(frozen=True)
class MappingSource:
    """Where a mapping comes from and how to read it: the file, the workbook sheet (None: the only visible one), the
    CSV encoding (None: detected) and whether rows hidden in the workbook are sent."""

    path: Path
    sheet: str | None = None
    encoding: str | None = None
    include_hidden_rows: bool = False
    #: columns passed through deliberately although their cells look like certificate ids (`--ignore-column`)
    ignore_columns: tuple[str, ...] = ()
    #: the profile of rows whose Profile cell is empty, or that have no Profile column (`--profile`; "": the default
    #: credentials)
    default_profile: str = ""


@dataclass(frozen=True)
class Mapping:
    """A read and validated mapping. `rows` holds every data record (valid or not) in file order.

    `problems[row_number]` explains why a row is invalid; `duplicate_of[n] = m` marks row n as an identical copy of
    row m (sent once, reported for each). `cells[row_number]` holds the record's original cells, aligned with
    `columns`.
    """

    path: Path
    sha256: str
    columns: tuple[str, ...]
    column_of: dict[str, str]
    rows: tuple[Row, ...]
    cells: dict[int, tuple[str, ...]]
    problems: dict[int, str] = field(default_factory=dict)
    duplicate_of: dict[int, int] = field(default_factory=dict)
    #: the workbook sheet read ("" for a CSV)
    sheet: str = ""
    #: the text encoding a CSV was decoded with ("" for a workbook)
    encoding: str = ""
    #: the spreadsheet row number of the header (rows above it were skipped)
    header_row: int = 1
    #: what the reader decided that the user should see ("header on row 3", "encoding GB18030"), in order
    notes: tuple[str, ...] = ()

    @property
    def extra_columns(self) -> tuple[str, ...]:
        used = set(self.column_of.values())
        return tuple(c for c in self.columns if c not in used)

    def valid_rows(self) -> list[Row]:
        """Rows to send: valid and not a duplicate of an earlier row."""
        return [r for r in self.rows if r.row_number not in self.problems and r.row_number not in self.duplicate_of]


@dataclass(frozen=True)
class SessionAccount:
    """One account a session signed for: its profile ("" the default credentials), the masked SecretId and which
    credential provider signed (a file, the environment, a role)."""

    profile: str
    secret_id_masked: str
    credential_source: str


class OfAccount(Protocol):
    """Something sent or read with one account's credential: a `Row`, a `ProbeTarget`."""

    @property
    def profile(self) -> str: ...


_OfAccount = TypeVar("_OfAccount", bound=OfAccount)


def group_by_profile(items: Iterable[_OfAccount]) -> dict[str, list[_OfAccount]]:
    """`items` by their profile ("" the default credentials): the profiles in the order first seen, each one's items
    in their order (README, "Many accounts in one run")."""
    groups: dict[str, list[_OfAccount]] = {}
    for item in items:
        groups.setdefault(item.profile, []).append(item)
    return groups


def command_to_rerun(run_dir: Path) -> str:
    """The command that continues the run in `run_dir` (its path shell-quoted), as every message and report says it."""
    return f"batchcert rerun {shlex.quote(str(run_dir))}"
