"""The run journal: one SQLite file per run directory, written as the run goes, read by reports and reruns.

Contract ("write the journal before you trust it"): an attempt is recorded before it is sent and completed
after; SQLite in WAL mode keeps every committed line across a kill -9, and an attempt without an end is
one that was in flight when the process died. The intents of changes are also appended to `intents.jsonl`, fsynced
with the same commit before the request leaves (one group commit for all requests released together), so a journal
that lost its tail gets them back. Every valid row starts as `not_attempted`, so a crash leaves every
unfinished row resendable. The secret key is never written here (only the masked SecretId).

A run directory is held by one process at a time: `open_journal` takes an exclusive lock on `RUN_DIR/.lock`.

Modules (imports go down this list; sqlite3 is imported nowhere else in batchcert):
- `intents`: intents.jsonl — each change's intent appended and fsynced before it is sent, read back by recovery.
- `db`: the SQLite database — connection, schema, its stored version (migrated, a newer one refused), the stored
  form of a row's expected state, and `Store`: transactions, group commit, the flushes that make intents durable.
- `views`: the read side — facts, rows, outcomes, sessions, certificates, the Errors lines, and the tables the report
  joins (stored rows, outcomes, states before and after, change requests), a range of rows at a time.
- `marker`: run.json, the journal's own account of what it holds (written after setup and each session).
- `sessions`: the run's facts and mapping rows, the certificates read, each session's start and end.
- `writes`: `RowWriter` — attempts journaled before they are sent, answers, reads, before-states, row outcomes,
  verification.
- `recovery`: what a reopened journal proves (`inspect_journal`: setup, run.json, `-wal`, unproven journals) and
  `recover`, which settles what a dead process left open.
- `facade`: `Journal`, composing the parts above for the runner, the workflow and the report.
- `directory`: `create_journal`, `open_journal`, `read_journal` and the run directory's lock.
"""

from batchcert.journal.db import JOURNAL_NAME, SCHEMA_VERSION, WAL_NAME
from batchcert.journal.directory import LOCK_NAME, create_journal, open_journal, read_journal
from batchcert.journal.facade import Journal
from batchcert.journal.intents import INTENTS_NAME
from batchcert.journal.marker import MARKER_NAME
from batchcert.journal.recovery import (
    INTERRUPTED_CODE,
    INTERRUPTED_MESSAGE,
    REREAD_WARNING,
    RESTORED_MESSAGE,
    Inspection,
    inspect_journal,
)
from batchcert.journal.views import (
    ChangeAttempt,
    Columns,
    FailedAttempt,
    FailureKind,
    PreviousState,
    RowOutcome,
    RowRange,
    StoredRow,
    VerificationResult,
    iso_utc,
)
from batchcert.journal.writes import Attempt

__all__ = [
    "INTENTS_NAME",
    "INTERRUPTED_CODE",
    "INTERRUPTED_MESSAGE",
    "JOURNAL_NAME",
    "LOCK_NAME",
    "MARKER_NAME",
    "REREAD_WARNING",
    "RESTORED_MESSAGE",
    "SCHEMA_VERSION",
    "WAL_NAME",
    "Attempt",
    "ChangeAttempt",
    "Columns",
    "FailedAttempt",
    "FailureKind",
    "Inspection",
    "Journal",
    "PreviousState",
    "RowOutcome",
    "RowRange",
    "StoredRow",
    "VerificationResult",
    "create_journal",
    "inspect_journal",
    "iso_utc",
    "open_journal",
    "read_journal",
]
