"""The report's records: one per mapping row, joined with pandas from the journal's tables (`batchcert.journal.views`)
a range of rows at a time (`report_frames`), so memory does not grow with the mapping (a 100,000-row run is never
held whole).

How a chunk is joined (`join_tables`): every join is a LEFT join (`pd.merge`, how="left") on the range's stored rows,
which keep their order, the mapping's —
- outcome, error, request id, the state read before the change and the read-back: the row's primary's when the row
  is a duplicate whose primary the journal holds, else its own. Each of these columns is NOT NULL in the journal, so
  this is `COALESCE(primary.x, row.x)` column by column;
- the history of its change requests across all sessions — how many, the first sent, the last done (answered, else
  sent), their request ids in sending order — is that of the row `duplicate_of` names when set, else its own;
- target_certificate_end_time: the end of the row's certificate as the certificate pre-flight read it.
What is missing shows as none: "" (no state read before the change, no read-back), 0 attempts, no times.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from batchcert.journal import (
    ChangeAttempt,
    Columns,
    Journal,
    PreviousState,
    RowOutcome,
    RowRange,
    StoredRow,
    VerificationResult,
    iso_utc,
)
from batchcert.model import Expected

if TYPE_CHECKING:
    import pandas as pd

#: mapping rows read from the journal, joined and written at a time: memory does not grow with the mapping
CHUNK_ROWS = 5000


@dataclass(frozen=True)
class ReportRecord:
    """One line of the report: a mapping row with its outcome, history, reads and verification. Ids as the mapping
    gave them; `poly_client_certificate_ids` and the `*_ids` text fields are `;`-joined as the CSV shows them."""

    row: int
    listener_id: str
    domain: str
    certificate_id: str
    client_certificate_id: str
    poly_client_certificate_ids: str
    outcome: str
    error_code: str
    error_message: str
    attempts: int
    request_id: str
    request_ids: str
    started_at: str
    finished_at: str
    duplicate_of: int | None
    previous_read: bool
    previous_certificate_id: str
    previous_client_certificate_ids: str
    verified_certificate_id: str
    verified: str
    extra: tuple[tuple[str, str], ...]
    cells: tuple[str, ...]
    #: ISO 8601 UTC end of the server certificate the row installs, as the certificate pre-flight read it
    target_certificate_end_time: str = ""
    #: `domain`, or `listener` for a row that changes the listener's own certificates
    scope: str = "domain"
    proxy_id: str = ""
    #: a compare-and-swap row's expected current state (None: the mapping has no current → new columns)
    expected: Expected | None = None
    #: what the outcome rests on (a `batchcert.model.Basis` value; not a column of report.csv)
    basis: str = ""
    #: what probing the edge found (a `batchcert.model.Served` value) and the leaf it served: SHA-256, subject, and
    #: notAfter (ISO 8601 UTC)
    served: str = ""
    served_certificate_sha256: str = ""
    served_subject: str = ""
    served_not_after: str = ""
    #: the credential profile (the account) the row was sent with ("" the default credentials)
    profile: str = ""


#: the columns of a chunk's frame (`report_frames`): ReportRecord's fields, in order
RECORD_COLUMNS = tuple(f.name for f in fields(ReportRecord))


def _columns(table: type[Any], **renamed: str) -> dict[str, str]:
    """A journal table's record fields → the columns they become in the join (their own names unless `renamed`)."""
    return {f.name: renamed.get(f.name, f.name) for f in fields(table)}


_STORED = _columns(StoredRow)
#: the outcome, previous state and verification are joined on `state_of`: the row whose state a row shows
_OUTCOME = _columns(RowOutcome, row_number="state_of")
_PREVIOUS = _columns(
    PreviousState,
    row_number="state_of",
    certificate_id="previous_certificate_id",
    client_certificate_ids="previous_client_certificate_ids",
)
_VERIFICATION = _columns(VerificationResult, row_number="state_of", certificate_id="verified_certificate_id")
#: the change history is joined on `history_of`: the row whose requests a row shows
_ATTEMPT = _columns(ChangeAttempt, row_number="history_of")
_END_TIME = {"certificate_id": "certificate_id", "end_time_s": "end_time_s"}


def frame_of(table: Columns, columns: Mapping[str, str]) -> pd.DataFrame:
    """`table` (one journal table's columns, `batchcert.journal.Columns`) as a frame of their Python values (dtype
    object): each field named in `columns` becomes the column it maps to. Built from the columns, not from a record
    per line: a frame from a list of rows is built cell by cell."""
    import pandas as pd

    return pd.DataFrame({to: table[name] for name, to in columns.items()}, columns=list(columns.values()), dtype=object)


def _table_of(records: Sequence[Any], columns: Mapping[str, str]) -> Columns:
    """Records (dataclasses) of one table as its columns (the certificates, read as records)."""
    return {name: [getattr(r, name) for r in records] for name in columns}


def _times(values: pd.Series, timespec: str = "milliseconds") -> list[str]:
    """Seconds since the epoch as `iso_utc` shows them; "" where there is none."""
    # t != t: NaN (no time after a join); None: no time stored
    return [iso_utc(None if t is None or t != t else float(t), timespec) for t in values]


def change_history(attempts: pd.DataFrame) -> pd.DataFrame:
    """Per `history_of`: attempts (how many), first_sent_at, last_done_at (the latest answer, or sending where no
    answer came) and request_ids (the non-empty ones `;`-joined in sending order: `attempts` is in sending order)."""
    sent = attempts["sent_at"].astype(float)
    done = attempts["finished_at"].astype(float).fillna(sent)
    timed = attempts.assign(sent_at=sent, done_at=done).groupby("history_of", sort=False)
    history = timed.agg(attempts=("sent_at", "size"), first_sent_at=("sent_at", "min"), last_done_at=("done_at", "max"))
    named = attempts[attempts["request_id"] != ""]
    # each id with its `;`, summed per row (pandas concatenates text in order, in C) less the last `;`: the same text
    # as `agg(";".join)`, which calls Python once per row — a third of the join's time
    request_ids = (named["request_id"] + ";").groupby(named["history_of"], sort=False).sum().str[:-1]
    request_ids = request_ids.rename("request_ids")
    return history.join(request_ids).reset_index()


def join_tables(
    stored: pd.DataFrame,
    outcomes: pd.DataFrame,
    previous: pd.DataFrame,
    verification: pd.DataFrame,
    attempts: pd.DataFrame,
    end_times: pd.DataFrame,
) -> pd.DataFrame:
    """One chunk's frame (RECORD_COLUMNS, Python values): the frames of the journal's tables for a range of rows
    (`frame_of` with _STORED, _OUTCOME, _PREVIOUS, _VERIFICATION, _ATTEMPT; the states and attempts cover the rows
    the range's duplicates copy too) and of the certificates (_END_TIME), joined as the module says."""
    import pandas as pd

    states = outcomes.merge(previous.assign(previous_read=True), on="state_of", how="left").merge(
        verification, on="state_of", how="left"
    )
    has_primary = stored["duplicate_of"].isin(states["state_of"])
    joined = (
        stored.assign(
            state_of=stored["duplicate_of"].where(has_primary, stored["row_number"]),
            history_of=stored["duplicate_of"].where(stored["duplicate_of"].notna(), stored["row_number"]),
        )
        .merge(states, on="state_of", how="left")
        .merge(change_history(attempts), on="history_of", how="left")
        .merge(end_times, on="certificate_id", how="left")
    )
    read = joined["previous_read"].notna()
    derived: dict[str, Any] = {
        "row": joined["row_number"],
        "attempts": joined["attempts"].fillna(0).astype(int),
        "request_ids": joined["request_ids"].fillna(""),
        "started_at": _times(joined["first_sent_at"]),
        "finished_at": _times(joined["last_done_at"]),
        "previous_read": read,
        "previous_certificate_id": joined["previous_certificate_id"].where(read, ""),
        "previous_client_certificate_ids": joined["previous_client_certificate_ids"].where(read, ""),
        "verified_certificate_id": joined["verified_certificate_id"].fillna(""),
        "verified": joined["verified"].fillna(""),
        "served": joined["served"].fillna(""),
        "served_certificate_sha256": joined["served_sha256"].fillna(""),
        "served_subject": joined["served_subject"].fillna(""),
        "served_not_after": _times(joined["served_not_after"], "seconds"),
        "target_certificate_end_time": _times(joined["end_time_s"], "seconds"),
    }
    # the other columns are the stored row's and its state's as joined (never missing: every row has an outcome)
    return pd.DataFrame(
        {name: derived[name] if name in derived else joined[name] for name in RECORD_COLUMNS}, dtype=object
    )


def report_frames(journal: Journal, rows_per_chunk: int = CHUNK_ROWS) -> Iterator[pd.DataFrame]:
    """The report's records as frames (`join_tables`) of at most `rows_per_chunk` mapping rows, in mapping order,
    each read from the journal when it is asked for."""
    end_times = frame_of(_table_of(journal.certificates(), _END_TIME), _END_TIME)
    for rows in journal.row_ranges(rows_per_chunk):
        yield _join_range(journal, rows, end_times)


def _join_range(journal: Journal, rows: RowRange, end_times: pd.DataFrame) -> pd.DataFrame:
    return join_tables(
        frame_of(journal.stored_rows(rows), _STORED),
        frame_of(journal.outcome_records(rows), _OUTCOME),
        frame_of(journal.previous_records(rows), _PREVIOUS),
        frame_of(journal.verification_records(rows), _VERIFICATION),
        frame_of(journal.change_attempts(rows), _ATTEMPT),
        end_times,
    )


def records_of(frame: pd.DataFrame) -> list[ReportRecord]:
    """A chunk's frame (`report_frames`) as its records, in order."""
    # column by column (`tolist` hands back the objects the frame holds), not `itertuples`, which goes row by row
    return list(map(ReportRecord, *(frame[name].tolist() for name in RECORD_COLUMNS)))


def report_records(journal: Journal) -> Iterator[ReportRecord]:
    """One record per mapping row, in mapping order, streamed CHUNK_ROWS at a time: its outcome, reads and
    verification (a duplicate takes its primary's) and the history of its change attempts across all sessions."""
    for frame in report_frames(journal):
        yield from records_of(frame)
