"""What the journal records about the run as a whole: its facts and its mapping rows (the run's setup), the
account's certificates as the pre-flight read them, and each session's start and end (a run, then each rerun).
Setting up the run and ending a session also write run.json (`marker`)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

from batchcert.journal.db import Store, expected_text
from batchcert.journal.marker import write_marker
from batchcert.live.certificates import CertificateInfo
from batchcert.model import Mapping, Outcome, SessionAccount, SessionKind, SessionStatus


def set_facts(store: Store, facts: dict[str, str]) -> None:
    """Record (or replace) facts of the run, in one transaction."""
    with store.tx() as db:
        db.executemany("INSERT OR REPLACE INTO facts(key, value) VALUES (?, ?)", list(facts.items()))


def record_mapping(store: Store, mapping: Mapping) -> None:
    """Store every row of the mapping: invalid rows end `invalid`, the rest start `not_attempted`.

    One transaction, ending with the `ready` fact: a journal without it was cut off while being set up
    (nothing can have been sent), and `open_journal` refuses it."""
    with store.tx() as db:
        db.executemany(
            "INSERT INTO rows(row_number, listener_id, domain, certificate_id, client_certificate_id, "
            "poly_client_certificate_ids, extra, cells, problem, duplicate_of, outcome, error_message, scope, "
            "proxy_id, expected, profile) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    r.row_number,
                    r.listener_id,
                    r.domain,
                    r.certificate_id,
                    r.client_certificate_id,
                    ";".join(r.poly_client_certificate_ids),
                    json.dumps(r.extra),
                    json.dumps(mapping.cells[r.row_number]),
                    mapping.problems.get(r.row_number, ""),
                    mapping.duplicate_of.get(r.row_number),
                    Outcome.INVALID if r.row_number in mapping.problems else Outcome.NOT_ATTEMPTED,
                    mapping.problems.get(r.row_number, ""),
                    r.scope,
                    r.proxy_id,
                    expected_text(r.expected),
                    r.profile,
                )
                for r in mapping.rows
            ],
        )
        db.execute(
            "INSERT OR REPLACE INTO facts(key, value) VALUES ('columns', ?)",
            (json.dumps(mapping.columns),),
        )
        db.execute("INSERT OR REPLACE INTO facts(key, value) VALUES ('ready', 'true')")
    write_marker(store.run_dir, store.connection)


def record_certificates(store: Store, certificates: Iterable[CertificateInfo]) -> None:
    """Record the account's certificates as the certificate pre-flight read them (for the report's
    `target_certificate_end_time`)."""
    with store.tx() as db:
        db.executemany(
            "INSERT OR REPLACE INTO certificates(certificate_id, type, end_time, subject_cn, alias) "
            "VALUES (?, ?, ?, ?, ?)",
            [(c.certificate_id, c.type, c.end_time_s or None, c.subject_cn, c.alias) for c in certificates],
        )


def begin_session(
    store: Store,
    kind: SessionKind,
    settings: dict[str, Any],
    operator: str = "",
    secret_id_masked: str = "",
    credential_source: str = "",
    accounts: Sequence[SessionAccount] = (),
) -> int:
    """Open a session (a run, then each rerun): its settings, who ran it, with which (masked) SecretId and which
    credential provider signed — the first account's, and every account's in `accounts` (a run over several
    profiles). Returns its id. Its status is 'running' until `end_session`."""
    with store.tx() as db:
        cur = db.execute(
            "INSERT INTO sessions(kind, started_at, settings, operator, secret_id_masked, credential_source) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (kind.value, time.time(), json.dumps(settings), operator, secret_id_masked, credential_source),
        )
        session_id = int(cur.lastrowid or 0)
        db.executemany(
            "INSERT INTO session_accounts(session_id, profile, secret_id_masked, credential_source) VALUES (?, ?, ?, ?)",
            [(session_id, a.profile, a.secret_id_masked, a.credential_source) for a in accounts],
        )
    return session_id


def end_session(store: Store, session_id: int | None, status: SessionStatus, note: str = "") -> None:
    """Close the session with its status, fold the `-wal` into journal.sqlite3 (so the file is complete on its own,
    e.g. when the directory is copied) and record in run.json what the journal holds."""
    with store.tx() as db:
        db.execute(
            "UPDATE sessions SET finished_at = ?, status = ?, note = ? WHERE id = ?",
            (time.time(), status.value, note, session_id),
        )
    store.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    write_marker(store.run_dir, store.connection)
