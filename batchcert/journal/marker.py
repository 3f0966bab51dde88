"""`run.json`: a small file outside SQLite, written once the run is set up and after every session — the journal's
own account of what it holds, so a journal that lost its `-wal` is recognised as damaged, never as "nothing was
sent" (`recovery.inspect_journal` compares the two)."""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from batchcert.errors import JournalError
from batchcert.journal.db import JOURNAL_NAME, damaged
from batchcert.journal.views import iso_utc, read_facts

MARKER_NAME = "run.json"


def write_marker(run_dir: Path, db: sqlite3.Connection) -> None:
    """Write run.json durably (temporary file, fsync, rename): how many rows, requests and sessions the journal
    holds now, and the mapping's digest."""
    rows, attempts, sessions = db.execute(
        "SELECT (SELECT COUNT(*) FROM rows), (SELECT COUNT(*) FROM attempts), (SELECT COUNT(*) FROM sessions)"
    ).fetchone()
    marker = {
        "format": 1,
        "journal": JOURNAL_NAME,
        "mapping_sha256": read_facts(db).get("mapping_sha256", ""),
        "rows": rows,
        "attempts": attempts,
        "sessions": sessions,
        "written_at": iso_utc(time.time()),
    }
    target = run_dir / MARKER_NAME
    fd, tmp = tempfile.mkstemp(dir=run_dir, prefix=f".{MARKER_NAME}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(marker, fh, indent=2)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise JournalError(f"cannot write {target}: {exc}") from None


def read_marker(run_dir: Path) -> dict[str, Any] | None:
    """What run.json says (None when there is none, or it holds no object). Raises JournalError when it cannot be
    read."""
    try:
        data = json.loads((run_dir / MARKER_NAME).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise JournalError(damaged(run_dir, f"{MARKER_NAME} cannot be read ({exc})")) from None
    return data if isinstance(data, dict) else None
