"""What the summary counts while the report's rows stream past, a chunk of rows at a time, so memory does not grow
with the mapping (the lists keep their first LISTED_ROWS rows): outcomes, error codes, verification, the rows not
done, change tickets and the certificate moves — each chunk the pandas frame `batchcert.report.records` joined,
grouped and filtered there — and the rollback's lines with the restores the service would refuse.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from batchcert.live.certificates import CertificateInfo, check_targets
from batchcert.live.state import Rollback
from batchcert.mapping import normalize_header
from batchcert.model import CHANGE_REVERTED, PRECONDITION_MISMATCH, Basis, Outcome, Row, Served, Verified
from batchcert.report.tables import DONE_VALUES, id_list

if TYPE_CHECKING:
    import pandas as pd

#: the summary lists this many rows not done (then "… and N more: see failed.csv"), rollback findings, ticket values
LISTED_ROWS = 50
LISTED_TICKETS = 20
#: headers (as `plan.normalize_header` leaves them) of a mapping column holding the change ticket
TICKET_HEADERS = frozenset({"changeticket", "ticket", "变更单", "工单", "变更单号", "工单号"})
SERVER_MOVE, CLIENT_MOVE = "server certificate", "client CAs"
MOVE_KEYS = ["kind", "from", "to", "scope"]
#: a move whose state before the run was not read (a journal that lost it)
NOT_READ = "(not read)"
#: what the summary lists of a row not done
_NOT_DONE_FIELDS = ["row", "scope", "listener_id", "domain", "outcome", "error_code", "error_message"]
#: what the summary lists of a row whose edge still served another certificate
_NOT_SERVED_FIELDS = (
    "row",
    "listener_id",
    "domain",
    "certificate_id",
    "served_certificate_sha256",
    "served_subject",
    "served_not_after",
)


def _counts_first_seen(values: pd.Series) -> dict[str, int]:
    """How many times each value occurs, in the order first seen (so that ties keep that order)."""
    return {str(value): int(n) for value, n in values.groupby(values, sort=False).size().items()}


def _rows(frame: pd.DataFrame) -> list[int]:
    return [int(n) for n in frame["row"]]


@dataclass
class Tally:
    """What the summary needs, counted a chunk of records at a time (`add`)."""

    rows: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    #: error codes in the order first seen (`most_common` keeps it for equal counts)
    codes: Counter[str] = field(default_factory=Counter)
    checked: int = 0
    verified: int = 0
    not_checked: int = 0
    pending: int = 0
    differs: list[int] = field(default_factory=list)
    #: rows whose change a lost journal record hid, found by reading the live state
    confirmed_by_read_back: list[int] = field(default_factory=list)
    #: the first LISTED_ROWS rows not done, and how many there are
    not_done: list[dict[str, Any]] = field(default_factory=list)
    not_done_total: int = 0
    #: rows whose change the service reverted; rows not sent because the place was not in the expected state
    reverted: list[int] = field(default_factory=list)
    mismatched: list[int] = field(default_factory=list)
    #: rows by what probing the edge found (`Served` values; "" not probed) among the rows done
    served: Counter[str] = field(default_factory=Counter)
    #: the first LISTED_ROWS rows whose edge still served another certificate (served false), and what it served
    not_served: list[dict[str, Any]] = field(default_factory=list)
    not_served_total: int = 0
    #: change-ticket column → its distinct values, in the order first seen
    tickets: dict[str, dict[str, None]] = field(default_factory=dict)
    #: certificate moves of each chunk of rows, grouped (kind, from, to, scope) → places
    moves: list[pd.Series] = field(default_factory=list)
    #: rows of each chunk per (profile, outcome): the summary's section per account
    accounts: list[pd.Series] = field(default_factory=list)

    @classmethod
    def for_columns(cls, extra_names: Sequence[str]) -> Tally:
        """A tally that also collects the change tickets of those of the mapping's extra columns that hold one."""
        return cls(tickets={n: {} for n in extra_names if normalize_header(n) in TICKET_HEADERS})

    def add(self, frame: pd.DataFrame) -> None:
        """Count a chunk of records: a frame of `batchcert.report.records.report_frames` (in mapping order)."""
        self.rows += len(frame)
        self.counts.update(_counts_first_seen(frame["outcome"]))
        self.codes.update(_counts_first_seen(frame.loc[frame["error_code"].astype(bool), "error_code"]))
        done, verified = frame["outcome"].isin(list(DONE_VALUES)), frame["verified"]
        self.checked += int((verified != Verified.NOT_READ).sum())
        self.verified += int((done & (verified == Verified.AT_TARGET)).sum())
        self.not_checked += int((done & (verified == Verified.NOT_READ)).sum())
        self.pending += int((done & (verified == Verified.PENDING)).sum())
        self.differs += _rows(frame[done & (verified == Verified.NOT_AT_TARGET)])
        self.confirmed_by_read_back += _rows(frame[frame["basis"] == Basis.READ_BACK])
        self.served.update(frame.loc[done, "served"])
        stale = frame[frame["served"] == Served.FALSE]
        self.not_served_total += len(stale)
        listed_stale = stale[list(_NOT_SERVED_FIELDS)].head(LISTED_ROWS - len(self.not_served))
        self.not_served += [
            {str(k): v for k, v in line.items()} | {"row": int(line["row"])} for line in listed_stale.to_dict("records")
        ]
        not_done = frame[~done]
        self.not_done_total += len(not_done)
        listed = not_done[_NOT_DONE_FIELDS].head(LISTED_ROWS - len(self.not_done))
        self.not_done += [
            {k: line[k] for k in _NOT_DONE_FIELDS} | {"row": int(line["row"])} for line in listed.to_dict("records")
        ]
        self.reverted += _rows(not_done[not_done["error_code"] == CHANGE_REVERTED])
        self.mismatched += _rows(not_done[not_done["error_code"] == PRECONDITION_MISMATCH])
        if self.tickets:
            extras = [dict(extra) for extra in frame["extra"]]
            for column, values in self.tickets.items():
                values.update(dict.fromkeys(v for e in extras if (v := e.get(column, "").strip())))
        moves = _moves(frame)
        if moves is not None:
            self.moves.append(moves.groupby(MOVE_KEYS).size())
        self.accounts.append(frame.groupby(["profile", "outcome"], sort=False).size())

    def account_table(self) -> dict[str, dict[str, int]]:
        """Rows per outcome of each account (profile, in the order first seen; "" the default credentials)."""
        import pandas as pd

        if not self.accounts:
            return {}
        total = pd.concat(self.accounts).groupby(level=["profile", "outcome"], sort=False).sum()
        table: dict[str, dict[str, int]] = {}
        for (profile, outcome), n in total.items():
            table.setdefault(str(profile), {})[str(outcome)] = int(n)
        return table

    def move_table(self) -> list[dict[str, Any]]:
        """Every move with its number of places, most places first."""
        import pandas as pd

        if not self.moves:
            return []
        total = pd.concat(self.moves).groupby(level=MOVE_KEYS).sum().rename("places").reset_index()
        total = total.sort_values(["places", *MOVE_KEYS], ascending=[False, True, True, True, True])
        return [
            {"kind": str(kind), "from": str(before), "to": str(after), "scope": str(scope), "places": int(places)}
            for kind, before, after, scope, places in total.itertuples(index=False, name=None)
        ]


def _moves(frame: pd.DataFrame) -> pd.DataFrame | None:
    """The certificate moves (MOVE_KEYS) of the rows of `frame` this run changed (succeeded, primary): the server
    certificate from → to where it differs, and the client CA list where the row set one that differs as a set; None
    when there is none."""
    import pandas as pd

    changed = frame[(frame["outcome"] == Outcome.SUCCEEDED) & frame["duplicate_of"].isna()]
    read = changed["previous_read"].astype(bool)
    before = changed["previous_certificate_id"].where(read, NOT_READ)
    server = pd.DataFrame(
        {"kind": SERVER_MOVE, "from": before, "to": changed["certificate_id"], "scope": changed["scope"]}
    )
    poly = changed["poly_client_certificate_ids"]
    clients = poly.where(poly.astype(bool), changed["client_certificate_id"])
    clients_before = changed["previous_client_certificate_ids"]
    clients_before = clients_before.where(clients_before.astype(bool), "(none)").where(read, NOT_READ)
    differ = [
        bool(after) and set(b.split(";")) != set(after.split(";"))
        for b, after in zip(clients_before, clients, strict=True)
    ]
    client = pd.DataFrame({"kind": CLIENT_MOVE, "from": clients_before, "to": clients, "scope": changed["scope"]})
    found = [part for part in (server[before != changed["certificate_id"]], client.loc[differ]) if len(part)]
    return pd.concat(found) if found else None


@dataclass
class RollbackTally:
    """rollback.csv's lines as they are written: how many, and which the service would refuse."""

    #: the account's certificates as the run read them (None: they were not read, the check is not possible)
    certificates: dict[str, CertificateInfo] | None
    now_s: float
    lines: int = 0
    refused: list[dict[str, Any]] = field(default_factory=list)
    refused_total: int = 0
    noted: list[dict[str, Any]] = field(default_factory=list)
    noted_total: int = 0
    #: restore targets whose SubjectCN does not name the domain: the service may refuse them (CertificateNotMatchDomain)
    #: — or accept them, when an alternative name covers the domain
    doubtful: list[dict[str, Any]] = field(default_factory=list)
    doubtful_total: int = 0

    def add(self, row: Row, undo: Rollback) -> None:
        """Count one rollback line: `row` as the run sent it (`tables.rollback_of`), `undo` what restores it."""
        self.lines += 1
        place = {"row": row.row_number, "scope": row.scope, "listener_id": row.listener_id, "domain": row.domain}
        if undo.note:
            self.noted_total += 1
            if len(self.noted) < LISTED_ROWS:
                self.noted.append({**place, "note": undo.note})
        if self.certificates is None:
            return
        restore = replace(
            row,
            certificate_id=undo.certificate_id,
            client_certificate_id=undo.client_certificate_id,
            poly_client_certificate_ids=id_list(undo.poly_client_certificate_ids),
        )
        check = check_targets(restore, self.certificates, self.now_s, 0)
        if not check.code and check.name_mismatch:
            self.doubtful_total += 1
            if len(self.doubtful) < LISTED_ROWS:
                self.doubtful.append({**place, "restores": undo.certificate_id, "reason": check.name_mismatch})
        if check.code:
            self.refused_total += 1
            if len(self.refused) < LISTED_ROWS:
                restores = ";".join(
                    i for i in (undo.certificate_id, undo.client_certificate_id, undo.poly_client_certificate_ids) if i
                )
                self.refused.append({**place, "restores": restores, "code": check.code, "reason": check.message})
